"""A paper-width proxy run that fits a CPU: the vit_b16 heads at full width on a shallow backbone.

The heads (C 512, SFA 512, decoder 256, N_c 32, flatten coefficient pooling) are those of `ASDAConfig.vit_b16()`;
the backbone keeps ViT-B's width (768) but has few layers, and the image is small. A plain Adam loop on the
built-in synthetic data logs, every `log_every` steps: the mean loss, the mask-logit spread, the share of
saturated coefficients and their pre-tanh spread, and the selection's shares and entropy. `init="fan_out"`
re-initialises the heads with the common detection default (kaiming fan_out on convolutions, std 0.02 on
linears) to compare against the model's own initialisation.
"""

import json
import time

import torch

from ..configuration_asda import ASDAConfig
from ..data.synthetic import build_synthetic_dataset
from ..modeling_asda import ASDAForReferringSegmentation
from ..processing_asda import ASDAProcessor
from ..tools.inspection import TANH_LIMIT, _capture_pre_tanh, apply_fan_out_init, selection_summary


def proxy_config(image_size: int = 128, vision_layers: int = 6, text_layers: int = 4, **overrides) -> ASDAConfig:
    """vit_b16 heads at full width on a `vision_layers`-deep ViT-B-wide backbone; candidates split in two halves."""
    half = vision_layers // 2
    config = ASDAConfig.vit_b16(
        image_size=image_size,
        low_candidate_layers=tuple(range(1, half + 1)),
        mid_candidate_layers=tuple(range(half + 1, vision_layers + 1)),
        **overrides,
    )
    config.vision_config.num_hidden_layers = vision_layers
    config.text_config.num_hidden_layers = text_layers
    config._validate()
    return config


def _batches(dataset, processor, batch_size: int, steps: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=generator).tolist()
    position = 0
    for _ in range(steps):
        if position + batch_size > len(order):
            order = torch.randperm(len(dataset), generator=generator).tolist()
            position = 0
        rows = dataset.select(order[position : position + batch_size])
        position += batch_size
        encoded = processor(images=list(rows["image"]), text=list(rows["sentence"]), masks=list(rows["mask"]))
        yield {key: encoded[key] for key in ("pixel_values", "input_ids", "attention_mask", "labels")}


def _iou(logits: torch.Tensor, labels: torch.Tensor, threshold: float) -> torch.Tensor:
    size = logits.shape[-2:]
    labels = torch.nn.functional.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0] > 0.5
    pred = logits[:, 0].sigmoid() > threshold
    inter = (pred & labels).flatten(1).sum(-1).float()
    union = (pred | labels).flatten(1).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def run_proxy(
    init: str = "default",
    steps: int = 300,
    batch_size: int = 2,
    learning_rate: float = 1e-4,
    log_every: int = 25,
    num_train: int = 2000,
    num_eval: int = 100,
    seed: int = 0,
    log=print,
    **config_kwargs,
) -> dict:
    torch.manual_seed(seed)
    model = ASDAForReferringSegmentation(proxy_config(**config_kwargs))
    if init == "fan_out":
        apply_fan_out_init(model)
    elif init != "default":
        raise ValueError(f"init must be 'default' or 'fan_out', got {init!r}")
    config = model.config
    processor = ASDAProcessor.from_model_config(config)
    data = build_synthetic_dataset(num_train, num_eval, 0, seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)  # no clipping, as the published recipe
    head = model.aligner.coefficients if hasattr(model.aligner, "coefficients") else None
    capture, handle = _capture_pre_tanh(head) if head is not None else (None, None)

    history, window = [], []
    start = time.time()
    model.train()
    for step, batch in enumerate(_batches(data["train"], processor, batch_size, steps, seed), start=1):
        out = model(**batch, output_feature_maps=True)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        window.append(
            {
                "loss": out.loss.item(),
                "logit_std": float(out.logits.float().std()),
                "coef_saturated": float((out.coefficients.abs() > TANH_LIMIT).float().mean())
                if out.coefficients is not None
                else None,
                "coef_pre_tanh_std": float(capture.value.std()) if capture is not None else None,
                "low": out.low_selection_probs.detach(),
                "mid": out.mid_selection_probs.detach(),
            }
        )
        if step % log_every == 0 or step == steps:
            entry = {"step": step, "seconds": round(time.time() - start, 1)}
            for key in ("loss", "logit_std", "coef_saturated", "coef_pre_tanh_std"):
                values = [item[key] for item in window if item[key] is not None]
                entry[key] = round(sum(values) / len(values), 4) if values else None
            for level, layers in (("low", config.low_candidate_layers), ("mid", config.mid_candidate_layers)):
                summary = selection_summary(torch.cat([item[level] for item in window]), layers)
                entry[f"{level}_shares"] = {key: round(value, 3) for key, value in summary["shares"].items()}
                entry[f"{level}_entropy"] = round(summary["entropy"], 3)
            history.append(entry)
            log(json.dumps(entry))
            window = []
    if handle is not None:
        handle.remove()

    model.eval()
    ious = []
    with torch.no_grad():
        for batch in _batches(data["val"], processor, min(num_eval, 16), max(1, num_eval // 16), seed):
            out = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
            ious.append(_iou(out.logits, batch["labels"], config.mask_threshold))
    ious = torch.cat(ious)
    result = {
        "init": init,
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "image_size": config.image_size,
        "vision_layers": config.vision_config.num_hidden_layers,
        "history": history,
        "val_mIoU_logit_frame": round(float(ious.mean()), 4),
        "val_samples": int(ious.numel()),
        "seconds": round(time.time() - start, 1),
    }
    return result
