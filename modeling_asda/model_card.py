"""Model cards written from measured results (Trainer's automatic card drops mIoU/oIoU), and the Hub upload."""

import logging
import os

from huggingface_hub import ModelCard, ModelCardData

logger = logging.getLogger(__name__)

DATASET_IDS = {"refcoco": "jxu124/refcoco", "refcoco+": "jxu124/refcocoplus", "refcocog": "jxu124/refcocog"}


def _model_index(model_name, data_args, rows):
    results = []
    dataset_name = data_args.dataset_config or data_args.dataset_name
    for split, metrics in rows.get("ASDA (this run)", {}).items():
        results.append(
            {
                "task": {"type": "image-segmentation", "name": "Referring Image Segmentation"},
                "dataset": {"type": DATASET_IDS.get(dataset_name, dataset_name), "name": dataset_name, "split": split},
                "metrics": [
                    {"type": "mean_iou", "name": "mIoU", "value": round(100 * metrics["mIoU"], 2)},
                    {"type": "overall_iou", "name": "oIoU", "value": round(100 * metrics["oIoU"], 2)},
                ],
            }
        )
    return [{"name": model_name, "results": results}] if results else None


def build_model_card(model, model_args, data_args, training_args, rows, summary, table) -> ModelCard:
    config = model.config
    name = os.path.basename(os.path.normpath(training_args.output_dir))
    base_model = model_args.clip_model_name_or_path or model_args.model_name_or_path
    dataset_name = data_args.dataset_config or data_args.dataset_name
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-segmentation",
        license="mit",
        tags=["referring-image-segmentation", "asda", "clip", "custom_code"],
        datasets=[DATASET_IDS.get(dataset_name, dataset_name)],
        metrics=["mean_iou"],
        base_model=base_model,
        model_index=_model_index(name, data_args, rows),
    )
    repo_id = getattr(training_args, "hub_model_id", None) or f"<user>/{name}"
    init = "random initialisation (no pretrained weights)" if not base_model else f"`{base_model}`"
    body = f"""
# {name}

ASDA (Adaptive Selection with Dual Alignment, ACM MM 2024) for referring image segmentation: given an image
and an expression, it predicts the mask of the object the words name. Encoders initialised from {init};
preset `{model_args.config_preset}`, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters,
input {config.image_size}x{config.image_size}, {config.max_text_length} text tokens,
selection `{config.feature_selection}/{config.selection}`, fusion `{config.fusion}`, aligner `{config.aligner}`.

## Results (measured by the run that produced this checkpoint)

{table or "No evaluation was run."}

Values x100. mIoU is the mean of per-expression IoU (what the ASDA paper's tables report), oIoU is
sum(I)/sum(U); Prec@X is the share of expressions with IoU > X. Evaluation protocol: letterboxed input,
sigmoid, bilinear upsampling, crop of the padding, resize to the ORIGINAL image size, threshold
{config.mask_threshold}, compared with the full-resolution ground truth.
Run: `{summary.get("command")}`; wall time {summary.get("wall_seconds")} s.

## Use

```python
from transformers import AutoModel, AutoProcessor
from PIL import Image

repo = "{repo_id}"
model = AutoModel.from_pretrained(repo, trust_remote_code=True, revision="<commit sha>").eval()
processor = AutoProcessor.from_pretrained(repo, trust_remote_code=True, revision="<commit sha>")
image = Image.open("street.jpg")
inputs = processor(images=image, text="the man on the left", return_tensors="pt")
logits = model(**{{k: v for k, v in inputs.items() if k != "original_sizes"}}).logits
mask = processor.post_process_masks(logits, inputs["original_sizes"])[0]  # bool, original size
```

Pin `revision` to a commit: `trust_remote_code=True` runs this repository's Python files.

## Training recipe

Learning rate {training_args.learning_rate:g}, {training_args.num_train_epochs:g} epochs,
{training_args.per_device_train_batch_size} images per device, schedule `{training_args.lr_schedule}`
(milestones {training_args.lr_milestones}, x{training_args.lr_decay_rate}), encoder lr ratio
{training_args.encoder_lr_ratio}, seed {training_args.seed}. Data: `{data_args.dataset_name}`
({dataset_name}), train split `{data_args.train_split}`, eval splits `{data_args.eval_splits}`.

## Intended use and limits

For research on referring segmentation: one expression, one object. Trained on the data above only; the
synthetic demo data set contains coloured shapes, so a model trained on it does not segment natural images.
RefCOCO-family models inherit COCO's biases (people and common objects, English expressions).
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def write_model_card(model, output_dir, model_args, data_args, training_args, rows, summary):
    from .experiment import TABLE_METRICS
    from .metrics import format_results_table

    table = format_results_table(rows, metrics=TABLE_METRICS) if rows else ""
    card = build_model_card(model, model_args, data_args, training_args, rows, summary, table)
    card.save(os.path.join(output_dir, "README.md"))
    return card


def push_folder_to_hub(output_dir, training_args):
    """Upload the final folder (weights, code, processor, card); checkpoints and logs stay local."""
    from huggingface_hub import HfApi

    repo_id = training_args.hub_model_id or os.path.basename(os.path.normpath(output_dir))
    api = HfApi(token=training_args.hub_token)
    api.create_repo(repo_id, private=bool(training_args.hub_private_repo), exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id, folder_path=output_dir, ignore_patterns=["checkpoint-*", "runs/*", "*.pt", "*.pth"],
        commit_message="ASDA checkpoint with measured results",
    )
    logger.info(f"Pushed {output_dir} to {repo_id}: {commit}")
    return commit
