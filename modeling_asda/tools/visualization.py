"""Pictures that explain a prediction: mask overlays, the paper's Fig. 1 / Fig. 4 panels, training curves.

`overlay_mask` needs only PIL (scripts/predict.py uses it). The figures use matplotlib, an optional extra
(`pip install "asda-transformers[viz]"`); it is imported inside the functions that draw, through the
object-oriented API (no pyplot, so no global backend is switched for the caller).
"""

import re
import textwrap

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from ..evaluation.metrics import intersection_and_union, iou_from_counts
from ..image_processing_asda import letterbox_geometry

# Magenta and lime: far from the synthetic data's six colours and from most natural-image colours.
MASK_COLOR = (255, 0, 255)
GT_COLOR = (0, 255, 0)
FEATURE_METHODS = ("norm", "pca")


def _figure(figsize):
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "ASDA figures need matplotlib, an optional extra: pip install 'asda-transformers[viz]' (or pip install matplotlib)"
        ) from err
    return Figure(figsize=figsize, layout="constrained")


# ----------------------------------------------------------------------------------------- overlays
def _as_bool_mask(mask) -> np.ndarray:
    if isinstance(mask, Image.Image):
        mask = np.asarray(mask.convert("L")) > 0
    elif isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (height, width), got shape {mask.shape}")
    return mask.astype(bool) if mask.dtype == bool else mask > 0


def _boundary(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Pixels of the mask within `width` 4-neighbour steps of a pixel outside it."""
    inner = mask
    for _ in range(width):
        padded = np.pad(inner, 1, constant_values=False)
        inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & inner
    return mask & ~inner


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed bitmap size
        return ImageFont.load_default()


def overlay_mask(image, mask, text: str | None = None, color=MASK_COLOR, alpha: float = 0.5) -> Image.Image:
    """The image with `mask` tinted in `color` (and outlined), `text` written on a banner at the top.

    Args:
        image: a PIL image (any mode) or an (H, W, 3) uint8 array.
        mask: (H, W) bool / 0-1 / 0-255 array, tensor or PIL image, the image's size.
        text: written at the top (wrapped to the image width), e.g. the referring expression.
    """
    image = (image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))).convert("RGB")
    mask = _as_bool_mask(mask)
    if mask.shape != (image.height, image.width):
        raise ValueError(
            f"mask is {mask.shape[0]}x{mask.shape[1]} but the image is {image.height}x{image.width} (height x width)"
        )
    pixels = np.asarray(image, dtype=np.float32).copy()
    tint = np.asarray(color, dtype=np.float32)
    pixels[mask] = pixels[mask] * (1 - alpha) + tint * alpha
    pixels[_boundary(mask, width=max(1, min(mask.shape) // 150))] = tint
    out = Image.fromarray(pixels.round().astype(np.uint8))
    if text:
        _draw_banner(out, text)
    return out


def banner_text(result: dict) -> str:
    """The overlay caption of a pipeline result: the expression, and "no target" when nothing was found
    (the score and target_present are in predictions.jsonl)."""
    if result.get("target_present", True):
        return result["text"]
    return f"{result['text']} [no target, score {result['score']:.2f}]"


def _draw_banner(image: Image.Image, text: str) -> None:
    size = max(10, min(image.width, image.height) // 14)
    font = _font(size)
    draw = ImageDraw.Draw(image, "RGBA")
    chars_per_line = max(8, int(image.width / (0.55 * size)))
    lines = textwrap.wrap(text, chars_per_line)[:3] or [text]
    line_height = size + size // 4
    draw.rectangle([0, 0, image.width, line_height * len(lines) + size // 3], fill=(0, 0, 0, 160))
    for i, line in enumerate(lines):
        draw.text((size // 3, size // 6 + i * line_height), line, fill=(255, 255, 255, 255), font=font)


# ------------------------------------------------------------------------------------ feature maps
def feature_map_to_heatmap(features, original_size, image_size: int, method: str = "norm") -> np.ndarray:
    """A (C, g, g) feature map as a (height, width) heat map in [0, 1] over the ORIGINAL image.

    `method="norm"`: the L2 norm over channels; `"pca"`: the first principal component over positions,
    signed so that it correlates positively with the norm (an SVD's sign is arbitrary). The grid covers the
    letterboxed square, so it is upsampled to `image_size`, the padding is cropped and the rest resized to
    the image, the same mapping as the masks'.
    """
    if method not in FEATURE_METHODS:
        raise ValueError(f"method must be one of {FEATURE_METHODS}, got {method!r}")
    features = torch.as_tensor(features).detach().float().cpu()
    if features.ndim != 3:
        raise ValueError(f"features must be (channels, grid, grid), got shape {tuple(features.shape)}")
    channels, rows, cols = features.shape
    flat = features.reshape(channels, rows * cols).T  # positions x channels
    norm = flat.norm(dim=1)
    if method == "norm":
        values = norm
    else:
        centered = flat - flat.mean(dim=0, keepdim=True)
        _, _, vh = torch.linalg.svd(centered, full_matrices=False)
        values = centered @ vh[0]
        if torch.dot(values - values.mean(), norm - norm.mean()) < 0:
            values = -values
    low, high = values.min(), values.max()
    values = (values - low) / (high - low) if high > low else torch.zeros_like(values)
    grid = values.reshape(1, 1, rows, cols)
    square = F.interpolate(grid, size=(image_size, image_size), mode="bilinear", align_corners=False)
    height, width = (int(v) for v in original_size)
    resized_height, resized_width, top, left = letterbox_geometry(height, width, image_size)
    crop = square[:, :, top : top + resized_height, left : left + resized_width]
    heat = F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    return heat.clamp(0, 1).numpy()


# -------------------------------------------------------------------------------- explaining pairs
def explain_pairs(model, processor, images, texts, gt_masks=None, threshold=None, method="norm") -> list[dict]:
    """Run the model on (image, expression) pairs and collect what the figure shows, one dict per pair.

    Keys: image (PIL RGB), text, pred (bool H x W), gt (bool H x W or None), iou (or None), low_layer,
    mid_layer, low_probs, mid_probs (lists, or None), low_candidates, mid_candidates, coarse, fine
    (heat maps in [0, 1] at the image size; fine is None without a word-level aligner).
    """
    images = [
        image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image)).convert("RGB")
        for image in images
    ]
    texts = list(texts)
    if gt_masks is not None and len(gt_masks) != len(images):
        raise ValueError(f"got {len(images)} images but {len(gt_masks)} ground-truth masks")
    config = model.config
    threshold = config.mask_threshold if threshold is None else threshold
    inputs = processor(images=images, text=texts, return_tensors="pt")
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(
            pixel_values=inputs["pixel_values"].to(device, model.dtype),
            input_ids=inputs["input_ids"].to(device),
            attention_mask=inputs["attention_mask"].to(device),
            output_feature_maps=True,
        )
    target_logits = getattr(out, "target_logits", None)
    results = processor.post_process_masks(
        out.logits.float().cpu(),
        inputs["original_sizes"],
        threshold=threshold,
        target_logits=None if target_logits is None else target_logits.float().cpu(),
        no_target_threshold=getattr(config, "no_target_threshold", 0.5),
        return_scores=True,
    )
    preds = [result["mask"] for result in results]
    records = []
    for i, (image, text) in enumerate(zip(images, texts)):
        size = (image.height, image.width)
        gt = None if gt_masks is None or gt_masks[i] is None else _as_bool_mask(gt_masks[i])
        if gt is not None and gt.shape != size:
            raise ValueError(f"ground-truth mask {i} is {gt.shape} but its image is {size} (height, width)")
        pred = preds[i].numpy()
        iou = None
        if gt is not None:
            iou = iou_from_counts(*intersection_and_union(pred, gt))

        def optional(value, i=i):
            return None if value is None else value[i].float().cpu().tolist()

        records.append(
            {
                "image": image,
                "text": text,
                "pred": pred,
                "gt": gt,
                "iou": iou,
                "score": results[i]["score"],  # P(the expression names something); None without a head
                "target_present": results[i]["target_present"],
                "low_layer": None if out.low_layer_index is None else int(out.low_layer_index[i]),
                "mid_layer": None if out.mid_layer_index is None else int(out.mid_layer_index[i]),
                "low_probs": optional(out.low_selection_probs),
                "mid_probs": optional(out.mid_selection_probs),
                "low_candidates": list(config.low_candidate_layers),
                "mid_candidates": list(config.mid_candidate_layers),
                "coarse": feature_map_to_heatmap(out.coarse_features[i], size, config.image_size, method),
                "fine": None
                if out.fine_features is None
                else feature_map_to_heatmap(out.fine_features[i], size, config.image_size, method),
            }
        )
    return records


def _selection_panel(ax, record):
    """Bars of the selection probabilities over the candidate layers; the chosen layers are coloured."""
    labels, values, colors = [], [], []
    for branch, color in (("low", "tab:blue"), ("mid", "tab:orange")):
        chosen = record[f"{branch}_layer"]
        probs = record[f"{branch}_probs"]
        for j, layer in enumerate(record[f"{branch}_candidates"]):
            labels.append(f"{branch} L{layer}")
            # Without selection probabilities (manual selection) the chosen layer gets a full bar.
            values.append(probs[j] if probs is not None else float(layer == chosen))
            colors.append(color if layer == chosen else "lightgrey")
    positions = np.arange(len(labels))
    ax.barh(positions, values, color=colors)
    ax.set_yticks(positions, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.tick_params(axis="x", labelsize=7)
    chosen = f"L{record['low_layer']} + L{record['mid_layer']}" if record["low_layer"] is not None else "none"
    ax.set_title(f"selected {chosen}", fontsize=8)


def plot_explanations(records: list[dict], path, title: str | None = None, dpi: int = 110) -> list[str]:
    """One row per pair: image + expression, prediction, ground truth (when known), coarse and fine features,
    and the adaptive selection (paper Fig. 1 and Fig. 4). Returns the column titles."""
    if not records:
        raise ValueError("no (image, expression) pairs to plot")
    has_gt = any(r["gt"] is not None for r in records)
    has_fine = any(r["fine"] is not None for r in records)
    has_selection = any(r["low_layer"] is not None for r in records)
    columns = ["image", "prediction"] + (["ground truth"] if has_gt else []) + ["coarse features"]
    columns += (["fine features"] if has_fine else []) + (["selection"] if has_selection else [])
    fig = _figure(figsize=(2.2 * len(columns), 2.3 * len(records) + (0.4 if title else 0)))
    axes = np.atleast_2d(fig.subplots(len(records), len(columns), squeeze=False))
    for row, record in zip(axes, records):
        panels = dict(zip(columns, row))
        image = np.asarray(record["image"])
        panels["image"].imshow(image)
        panels["image"].set_title("\n".join(textwrap.wrap(f'"{record["text"]}"', 28)[:3]), fontsize=8)
        iou = "" if record["iou"] is None else f" (IoU {record['iou']:.2f})"
        score = "" if record.get("score") is None else f"\ntarget p={record['score']:.2f}"
        absent = "" if record.get("target_present", True) else ": no target"
        panels["prediction"].imshow(overlay_mask(record["image"], record["pred"]))
        panels["prediction"].set_title("prediction" + absent + iou + score, fontsize=8)
        if has_gt:
            gt = record["gt"]
            panels["ground truth"].imshow(image if gt is None else overlay_mask(record["image"], gt, color=GT_COLOR))
            panels["ground truth"].set_title("ground truth" if gt is not None else "no ground truth", fontsize=8)
        for name, key in (("coarse features", "coarse"), ("fine features", "fine")):
            if name in panels:
                if record[key] is not None:
                    panels[name].imshow(image)
                    panels[name].imshow(record[key], cmap="jet", alpha=0.55, vmin=0, vmax=1)
                panels[name].set_title(name, fontsize=8)
        for name, ax in panels.items():
            if name != "selection":
                ax.set_axis_off()
        if has_selection:
            _selection_panel(panels["selection"], record)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=dpi)
    return columns


# --------------------------------------------------------------------------------- training curves
_EVAL_KEY = re.compile(r"^eval_(?:(?P<split>.+)_)?(?P<metric>loss|mIoU|oIoU)$")


def training_series(log_history: list[dict]) -> dict:
    """Trainer's log history -> {"loss": [(step, value)], "learning_rate": [...], "eval": {(split, metric): [...]}}."""
    series = {"loss": [], "learning_rate": [], "eval": {}}
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        for key in ("loss", "learning_rate"):
            if key in entry:
                series[key].append((step, float(entry[key])))
        for key, value in entry.items():
            match = _EVAL_KEY.match(key)
            if match and isinstance(value, (int, float)):
                split = match.group("split") or "eval"
                series["eval"].setdefault((split, match.group("metric")), []).append((step, float(value)))
    return series


def plot_training_curves(log_history: list[dict], path, title: str | None = None, dpi: int = 110) -> dict:
    """Training loss (with eval losses), eval mIoU/oIoU per split, and the learning rate against the step."""
    series = training_series(log_history)
    eval_losses = {k: v for k, v in series["eval"].items() if k[1] == "loss"}
    eval_scores = {k: v for k, v in series["eval"].items() if k[1] != "loss"}
    if not (series["loss"] or series["eval"]):
        raise ValueError(
            "the log history has no per-step training loss and no evaluation: train with --logging_steps smaller "
            "than the number of steps, and/or --eval_strategy steps|epoch"
        )
    panels = ["loss"] + (["metrics"] if eval_scores else []) + (["learning_rate"] if series["learning_rate"] else [])
    fig = _figure(figsize=(4.2 * len(panels), 3.4))
    axes = dict(zip(panels, fig.subplots(1, len(panels), squeeze=False, sharex=True)[0]))
    ax = axes["loss"]
    if series["loss"]:
        ax.plot(*zip(*series["loss"]), label="train", color="black")
    for (split, _), points in sorted(eval_losses.items()):
        ax.plot(*zip(*points), marker="o", label=f"{split} (eval)")
    ax.set(xlabel="step", ylabel="loss", title="loss")
    ax.legend(fontsize=8)
    if "metrics" in axes:
        ax = axes["metrics"]
        for (split, metric), points in sorted(eval_scores.items()):
            ax.plot(*zip(*points), marker="o", linestyle="-" if metric == "mIoU" else "--", label=f"{split} {metric}")
        ax.set(xlabel="step", ylabel="IoU", title="evaluation (original size)")
        ax.legend(fontsize=8)
    if "learning_rate" in axes:
        ax = axes["learning_rate"]
        ax.plot(*zip(*series["learning_rate"]), color="tab:green")
        ax.set(xlabel="step", ylabel="learning rate", title="learning rate")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=dpi)
    return series


# ------------------------------------------------------------------------------ selection report
def plot_selection_report(report: dict, path, dpi: int = 110) -> None:
    """Stacked bars: for each group, the share of each candidate low layer (left) and mid layer (right)."""
    groupings = [g for g, groups in report["groupings"].items() if groups]
    fig = _figure(figsize=(10, 2.6 * len(groupings)))
    axes = fig.subplots(len(groupings), 2, squeeze=False)
    for row, grouping in zip(axes, groupings):
        groups = report["groupings"][grouping]
        names = list(groups)
        positions = np.arange(len(names))
        for ax, branch in zip(row, ("low", "mid")):
            candidates = report[f"{branch}_candidates"]
            colors = _layer_colors(len(candidates), branch)
            bottom = np.zeros(len(names))
            for layer, color in zip(candidates, colors):
                share = np.array([groups[n][branch][layer] / groups[n]["n"] for n in names])
                ax.bar(positions, share, bottom=bottom, color=color, label=f"L{layer}")
                bottom += share
            ax.set_xticks(positions, [f"{n}\n(n={groups[n]['n']})" for n in names], fontsize=7)
            ax.set_ylim(0, 1)
            ax.set_ylabel("share", fontsize=8)
            v = report["cramers_v"].get(grouping, {})
            suffix = (
                "" if v.get(branch) is None else f" (Cramér's V {v[branch]:.2f}, chance {v[branch + '_chance']:.2f})"
            )
            ax.set_title(f"{branch} layer, {grouping}{suffix}", fontsize=9)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.savefig(path, dpi=dpi)


def _layer_colors(count: int, branch: str):
    from matplotlib import colormaps

    cmap = colormaps["Blues" if branch == "low" else "Oranges"]
    return [cmap(0.35 + 0.6 * i / max(1, count - 1)) for i in range(count)]
