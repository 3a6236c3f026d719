"""Model cards written from the measured results (Trainer's automatic card drops mIoU/oIoU), and the Hub upload.

The card is rendered from `model_card_template.md` beside this file (Jinja, via `huggingface_hub.ModelCard`),
installed with the package as package data.
The render context is saved next to the card (`model_card.json`), so the upload can render the card
again with the repository id and the commit sha it learns only then (a pinned `revision` in the code).
"""

import json
import logging
import os
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..data.loading import is_hub_id
from .metrics import GENERALIZED_TABLE_METRICS, MODEL_ROW, TABLE_METRICS, format_results_table

logger = logging.getLogger(__name__)

TEMPLATE_NAME = "model_card_template.md"
CONTEXT_FILE = "model_card.json"
DATASET_IDS = {"refcoco": "jxu124/refcoco", "refcoco+": "jxu124/refcocoplus", "refcocog": "jxu124/refcocog"}
SYNTHETIC_ID = "asda-synthetic"


def template_path() -> Path:
    return Path(__file__).resolve().parent / TEMPLATE_NAME


def dataset_id(data_args) -> str:
    """What the card's `datasets` names: a Hub id when there is one, else a readable local name."""
    name, config = data_args.dataset_name, data_args.dataset_config
    if name == "synthetic":
        return SYNTHETIC_ID
    if is_hub_id(name):
        return name
    if config in DATASET_IDS:
        return DATASET_IDS[config]
    return os.path.basename(os.path.normpath(str(name)))


def eval_results(rows: dict, data_args) -> list[dict]:
    """model-index entries (mIoU and oIoU x100 per split) as plain dicts for `EvalResult(**entry)`."""
    results = []
    dataset = dataset_id(data_args)
    display = data_args.dataset_config or data_args.dataset_name
    for split, metrics in rows.get(MODEL_ROW, {}).items():
        for key, name in (("mIoU", "mIoU (mean per-expression IoU)"), ("oIoU", "oIoU (overall IoU)")):
            if key in metrics:
                results.append(
                    dict(
                        task_type="image-segmentation",
                        task_name="Referring Image Segmentation",
                        dataset_type=dataset,
                        dataset_name=display,
                        dataset_split=split,
                        metric_type=key.lower(),
                        metric_name=name,
                        metric_value=round(100 * float(metrics[key]), 2),
                    )
                )
    return results


def _architecture(model, base_model) -> str:
    c = model.config
    v, t = c.vision_config, c.text_config
    if base_model:
        init = f"the weights of `{base_model}`"
    elif c.vision_position_init_scale > 0:
        init = (
            "random weights (no pretrained encoders; the ViT position table started as a 2-D sine-cosine table "
            f"x{c.vision_position_init_scale:g})"
        )
    else:
        init = "random weights (no pretrained encoders)"
    selection = (
        f"adaptive ({c.selection}, {c.selector} selector) among low layers {list(c.low_candidate_layers)} and mid "
        f"layers {list(c.mid_candidate_layers)}"
        if c.feature_selection == "adaptive"
        else f"fixed layers {list(c.manual_layers)}"
        if c.feature_selection == "manual"
        else "none (top layer only)"
    )
    refiner = (
        f" Mask refiner of width {c.mask_refiner_dim}: logits at the input resolution ({c.mask_size}x{c.mask_size}) "
        f"from the pixels and the decoder's {c.decoder_mask_size}x{c.decoder_mask_size} logits."
        if getattr(c, "mask_refiner_dim", 0)
        else ""
    )
    return (
        f"CLIP vision encoder ({v.num_hidden_layers} layers, width {v.hidden_size}, patch {v.patch_size}) and text encoder "
        f"({t.num_hidden_layers} layers, width {t.hidden_size}), joint width {c.projection_dim}, initialised from {init}. "
        f"Input {c.image_size}x{c.image_size}, {c.max_text_length} text tokens. Layer selection: {selection}. "
        f"Fusion `{c.fusion}`, aligner `{c.aligner}` ({c.num_local_attention_layers} local attention layers, "
        f"{c.num_response_masks} response masks).{refiner} {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
        "parameters."
    )


def _warmup(steps) -> str:
    if not steps:
        return "no warmup"
    return f"warmup {steps:.0%} of the steps" if steps < 1 else f"{int(steps)} warmup steps"


def _lr_ratios(training_args) -> str:
    text = f"CLIP encoders x{getattr(training_args, 'encoder_lr_ratio', 1.0)}"
    refiner = getattr(training_args, "refiner_lr_ratio", 1.0)
    return text + (f", mask refiner x{refiner}" if refiner != 1.0 else "")


def _recipe(model_args, data_args, training_args) -> list[tuple[str, str]]:
    a = training_args
    schedule = (
        f"multistep: x{a.lr_decay_rate} at epochs {a.lr_milestones}"
        if getattr(a, "lr_schedule", "hf") == "multistep"
        else f"{getattr(a.lr_scheduler_type, 'value', a.lr_scheduler_type)}, " + _warmup(a.warmup_steps)
    )
    train_data = f"`{data_args.dataset_name}`" + (f" ({data_args.dataset_config})" if data_args.dataset_config else "")
    if data_args.dataset_name == "synthetic":
        train_data += f", {data_args.synthetic_num_train} training expressions (seed {data_args.synthetic_seed})"
    augment = [f"horizontal flip p={data_args.hflip_prob} (swaps left/right)"] if data_args.hflip_prob else []
    augment += [f"colour jitter {data_args.color_jitter}"] if data_args.color_jitter else []
    augment += ["random affine"] if data_args.random_affine else []
    rows = [
        ("data", train_data + f", train split `{data_args.train_split}`, eval splits `{data_args.eval_splits}`"),
        (
            "initialisation",
            model_args.clip_model_name_or_path or model_args.model_name_or_path or _preset_init(model_args),
        ),
        ("optimizer", f"{getattr(a.optim, 'value', a.optim)}, weight decay {a.weight_decay}"),
        ("learning rate", f"{a.learning_rate:g} ({_lr_ratios(a)})"),
        ("schedule", schedule),
        (
            "epochs",
            f"{a.num_train_epochs:g}" + (f" (max_steps {a.max_steps})" if a.max_steps and a.max_steps > 0 else ""),
        ),
        (
            "batch",
            f"{a.per_device_train_batch_size} per device x {a.world_size} device(s) x {a.gradient_accumulation_steps} accumulation",
        ),
        ("augmentation", ", ".join(augment) or "none"),
        ("precision", "bf16" if a.bf16 else "fp16" if a.fp16 else "fp32"),
        ("seed", str(a.seed)),
    ]
    tail = getattr(a, "refiner_tail_steps", 0)
    if tail:
        rows.append(
            (
                "after training",
                f"the mask refiner alone for {tail} steps on the frozen model's eval-mode logits "
                f"(cosine from {a.learning_rate * getattr(a, 'refiner_lr_ratio', 1.0):g}, no warm-up)",
            )
        )
    return rows


def _preset_init(model_args) -> str:
    from ..training.tiny_init import DEFAULT_TINY_INIT, SHIPPED_TINY_INIT, describe_tiny_init, resolve_tiny_init

    value = getattr(model_args, "tiny_init", None) or DEFAULT_TINY_INIT
    path = resolve_tiny_init(value) if model_args.config_preset == "tiny" else None
    if path is None:
        return f"random ({model_args.config_preset} preset)"
    where = " (the default run on the built-in synthetic data)" if path == SHIPPED_TINY_INIT else ""
    return f"`--tiny_init {value}`{where}: {describe_tiny_init(path)}"


def _data_limits(data_args) -> str:
    if data_args.dataset_name == "synthetic":
        return (
            "Trained on the built-in synthetic data (coloured shapes on textured backgrounds): a demonstration "
            "and a test of the training pipeline. It does not segment natural images."
        )
    if (data_args.dataset_config or "") in DATASET_IDS:
        return (
            f"Trained on {data_args.dataset_config} (COCO images, expressions written by annotators): it inherits "
            "COCO's coverage and biases (people and common objects, English only)."
        )
    return f"Trained only on {dataset_id(data_args)}; expect lower quality on other kinds of images."


def _wall_time(seconds, machine) -> str:
    if not seconds:
        return ""
    return f"{seconds / 60:.1f} min wall time" + (f" on {machine}" if machine else "")


def build_card_context(model, model_args, data_args, training_args, rows, summary, table) -> dict:
    """Everything the template needs, JSON-serialisable (saved next to the card for the upload's re-render)."""
    config = model.config
    name = os.path.basename(os.path.normpath(training_args.output_dir))
    base_model = model_args.clip_model_name_or_path or model_args.model_name_or_path
    card_data = dict(
        library_name="transformers",
        pipeline_tag="image-segmentation",
        license="mit",
        tags=["referring-image-segmentation", "image-segmentation", "asda", "clip", "custom_code"],
        datasets=[dataset_id(data_args)],
        metrics=["miou", "oiou"],
        model_name=name,
    )
    if is_hub_id(base_model):
        card_data["base_model"] = base_model
    splits = list(rows.get(MODEL_ROW, {}))
    display = "the built-in synthetic data" if data_args.dataset_name == "synthetic" else f"`{dataset_id(data_args)}`"
    wall = summary.get("wall_seconds")
    return {
        "card_data": card_data,
        "eval_results": eval_results(rows, data_args),
        "model_name": name,
        "repo_id": getattr(training_args, "hub_model_id", None) or name,
        "revision": "main",
        "model_summary": f"This checkpoint: {config.image_size}x{config.image_size} input, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, trained on {display}.",
        "eval_description": f"{display}, split(s) {', '.join(splits)}" if splits else display,
        "results_table": (table or "No evaluation was run.")
        + (
            f"\n\nBy expression type (read from the words; values x100):\n\n{summary['by_expression_type']}"
            if summary.get("by_expression_type")
            else ""
        ),
        "has_baselines": any(row != MODEL_ROW for row in rows),
        "image_size": config.image_size,
        "mask_size": config.mask_size,
        "threshold": config.mask_threshold,
        "max_text_tokens": config.max_text_length - 2,
        "architecture": _architecture(model, base_model),
        "recipe": _recipe(model_args, data_args, training_args),
        "command": summary.get("command") or "",
        "wall_time": _wall_time(wall, summary.get("machine")),
        "data_limits": _data_limits(data_args),
        "selection_markdown": None,
    }


def render_model_card(context: dict) -> ModelCard:
    data = ModelCardData(
        **context["card_data"], eval_results=[EvalResult(**r) for r in context["eval_results"]] or None
    )
    kwargs = {k: v for k, v in context.items() if k not in ("card_data", "eval_results")}
    return ModelCard.from_template(data, template_path=str(template_path()), **kwargs)


def write_model_card(model, output_dir, model_args, data_args, training_args, rows, summary):
    """README.md (the card) and model_card.json (its render context) in `output_dir`; returns the card."""
    generalized = getattr(model.config, "no_target_head", False)  # judged by ReLA's metrics, as trained
    table = (
        format_results_table(rows, metrics=GENERALIZED_TABLE_METRICS if generalized else TABLE_METRICS) if rows else ""
    )
    context = build_card_context(model, model_args, data_args, training_args, rows, summary, table)
    card = render_model_card(context)
    os.makedirs(output_dir, exist_ok=True)
    card.save(os.path.join(output_dir, "README.md"))
    with open(os.path.join(output_dir, CONTEXT_FILE), "w") as handle:
        json.dump(context, handle, indent=2)
    return card


def push_folder_to_hub(output_dir, training_args):
    """Upload the final folder (weights, code, processor, card), then pin the card's code to that commit.

    Checkpoints and logs stay local. The card is rendered again with the full repository id and the sha of
    the upload's commit, and uploaded alone: the pinned revision then holds exactly the uploaded files.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=training_args.hub_token)
    repo = api.create_repo(
        training_args.hub_model_id or os.path.basename(os.path.normpath(output_dir)),
        private=bool(training_args.hub_private_repo),
        exist_ok=True,
    )
    commit = api.upload_folder(
        repo_id=repo.repo_id,
        folder_path=output_dir,
        commit_message="ASDA checkpoint with measured results",
        ignore_patterns=["checkpoint-*", "runs/*", "*.pt", "*.pth", CONTEXT_FILE],
    )
    context_path = os.path.join(output_dir, CONTEXT_FILE)
    if os.path.isfile(context_path):
        with open(context_path) as handle:
            context = json.load(handle)
        context.update(repo_id=repo.repo_id, revision=commit.oid)
        card = render_model_card(context)
        card.save(os.path.join(output_dir, "README.md"))
        api.upload_file(
            path_or_fileobj=os.path.join(output_dir, "README.md"),
            path_in_repo="README.md",
            repo_id=repo.repo_id,
            commit_message=f"Model card: loading code pinned to {commit.oid[:12]}",
        )
    logger.info(f"Pushed {output_dir} to {repo.repo_id} at {commit.oid}")
    return commit
