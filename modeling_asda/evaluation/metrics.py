"""Referring-segmentation metrics: per-expression intersection and union, and their summaries.

Definitions (as in the referring-segmentation literature):

- Per expression: I = |pred AND gt|, U = |pred OR gt| (pixel counts), IoU = I / U. When U = 0 (both
  masks empty) the IoU is 1: predicting nothing for an expression that refers to nothing is right.
  An empty ground truth with a non-empty prediction gives 0, as does an empty prediction for a
  non-empty ground truth.
- mIoU: the mean of the per-expression IoUs. The published evaluation, which produced ASDA's Table 1,
  computes this one, although the paper's text calls its metric "overall IoU".
- oIoU ("overall IoU"): sum of I / sum of U over all expressions, so large objects weigh more. When
  the sum of U is 0 (every prediction and every ground truth empty) it is 1, for the same reason.
- Prec@X: the share of expressions whose IoU is strictly greater than X, for X in 0.5 ... 0.9
  (an IoU of exactly 0.5 does not count for Prec@0.5).

Generalized referring segmentation (gRefCOCO; ReLA's definitions), where an expression may name nothing:

- a no-target sample (empty ground truth) predicted absent (empty prediction) scores IoU 1 and adds
  nothing to sum I / sum U; predicted present it scores 0 and adds its predicted area to sum U;
- a targeted sample predicted absent has I = 0 (IoU 0, its ground truth area added to sum U);
- gIoU: mean per-sample IoU over all samples; cIoU: sum I / sum U. With the empty-prediction convention
  above these equal mIoU and oIoU; the names are the ones gRefCOCO papers use;
- N-acc = TP / (TP + FN) over no-target samples (predicted absent = TP); T-acc = TN / (TN + FP) over
  targeted samples (predicted present = TN); Pr@X = share of TARGETED samples with IoU >= X, X in 0.7,
  0.8, 0.9 (ReLA counts >=, unlike Prec@X above). A metric over an empty group (N-acc without no-target
  samples, T-acc and Pr@X without targeted ones) is left out, not reported as a made-up number.

"Predicted absent" is an empty final mask: post-processing empties the mask of an expression the model
scores as having no target, so masks alone carry the decision.

Masks are 2-D numpy arrays or torch tensors: bool, or numbers whose only values are 0 and 1 (or 0
and 255, as PNG masks are stored). Anything else (probabilities, label maps) raises a ValueError:
threshold first. Summaries are plain Python floats in [0, 1] under `METRIC_KEYS`.

torch is imported only when a torch tensor is passed, so this module works without torch.
"""

import sys
from collections.abc import Mapping, Sequence

import numpy as np

PREC_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
METRIC_KEYS = ("mIoU", "oIoU") + tuple(f"Prec@{x}" for x in PREC_THRESHOLDS)
GENERALIZED_PR_THRESHOLDS = (0.7, 0.8, 0.9)
GENERALIZED_KEYS = ("gIoU", "cIoU", "N_acc", "T_acc") + tuple(f"Pr@{x}" for x in GENERALIZED_PR_THRESHOLDS)
# The columns of the paper-style results tables (README, results.md, model cards) and their model row.
TABLE_METRICS = ("mIoU", "oIoU", "Prec@0.5", "Prec@0.7", "Prec@0.9")
# Evaluation data with no-target or multi-target expressions (gRefCOCO, generalized synthetic) is reported
# with ReLA's metrics.
GENERALIZED_TABLE_METRICS = ("gIoU", "cIoU", "N_acc", "T_acc", "Pr@0.7", "Pr@0.9")
MODEL_ROW = "ASDA (this run)"


def _is_torch_tensor(value) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _check_binary_values(ok_0_1: bool, ok_0_255: bool, name: str, dtype):
    if not (ok_0_1 or ok_0_255):
        raise ValueError(
            f"{name} must be a binary mask (bool, or only the values 0/1 or 0/255), got {dtype} with other "
            "values; threshold probabilities or select a label first"
        )


def to_binary_mask(mask, name: str = "mask") -> np.ndarray:
    """A 2-D bool numpy array from a numpy array, torch tensor or nested list (see module doc)."""
    if _is_torch_tensor(mask):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (height, width) mask, got shape {tuple(mask.shape)}")
    if mask.dtype == bool:
        return mask
    if not (np.issubdtype(mask.dtype, np.number)):
        raise ValueError(f"{name} must hold bools or numbers, got dtype {mask.dtype}")
    is_zero = mask == 0
    _check_binary_values(bool(np.all(is_zero | (mask == 1))), bool(np.all(is_zero | (mask == 255))), name, mask.dtype)
    return ~is_zero


def intersection_and_union(pred, gt):
    """(I, U) pixel counts, as Python ints, of one predicted and one ground-truth mask."""
    pred_shape, gt_shape = tuple(np.shape(pred)), tuple(np.shape(gt))
    if pred_shape != gt_shape:
        raise ValueError(f"pred and gt masks must have the same shape, got pred {pred_shape} and gt {gt_shape}")
    pred, gt = to_binary_mask(pred, "pred"), to_binary_mask(gt, "gt")
    return int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred | gt))


def iou_from_counts(intersection: int, union: int) -> float:
    """IoU of one expression; 1 when both masks are empty (see the module doc)."""
    return 1.0 if union == 0 else intersection / union


def summarize(
    intersections: Sequence[int], unions: Sequence[int], thresholds: Sequence[float] = PREC_THRESHOLDS
) -> dict:
    """mIoU, oIoU and Prec@X from per-expression counts (see the module doc for the definitions)."""
    intersections = np.asarray([int(i) for i in intersections], dtype=np.int64)
    unions = np.asarray([int(u) for u in unions], dtype=np.int64)
    if len(intersections) != len(unions):
        raise ValueError(f"got {len(intersections)} intersections but {len(unions)} unions")
    if len(intersections) == 0:
        raise ValueError("no expressions to summarize: the metrics of an empty set are undefined")
    bad = np.flatnonzero((intersections < 0) | (intersections > unions))
    if len(bad):
        k = int(bad[0])
        raise ValueError(f"expression {k}: need 0 <= intersection <= union, got I={intersections[k]} U={unions[k]}")
    ious = np.where(unions == 0, 1.0, intersections / np.maximum(unions, 1))
    total_union = int(unions.sum())
    result = {
        "mIoU": float(ious.mean()),
        "oIoU": 1.0 if total_union == 0 else float(intersections.sum() / total_union),
    }
    for x in thresholds:
        result[f"Prec@{x}"] = float(np.mean(ious > x))
    return result


def generalized_summary(
    intersections: Sequence[int],
    unions: Sequence[int],
    gt_areas: Sequence[int],
    pred_areas: Sequence[int],
    thresholds: Sequence[float] = GENERALIZED_PR_THRESHOLDS,
) -> dict:
    """gIoU, cIoU, N_acc, T_acc and Pr@X (ReLA, see the module doc) from per-sample pixel counts.

    An empty ground truth (gt area 0) is a no-target sample; an empty prediction is "predicted absent".
    """
    counts = [np.asarray([int(v) for v in values], dtype=np.int64) for values in (intersections, unions)]
    areas = [np.asarray([int(v) for v in values], dtype=np.int64) for values in (gt_areas, pred_areas)]
    (inter, union), (gt, pred) = counts, areas
    if not len(inter) == len(union) == len(gt) == len(pred):
        raise ValueError(
            f"got {len(inter)} intersections, {len(union)} unions, {len(gt)} gt areas, {len(pred)} predicted areas"
        )
    if len(inter) == 0:
        raise ValueError("no expressions to summarize: the metrics of an empty set are undefined")
    consistent = (inter >= 0) & (inter <= np.minimum(gt, pred)) & (union == gt + pred - inter)
    bad = np.flatnonzero(~consistent)
    if len(bad):
        k = int(bad[0])
        raise ValueError(
            f"expression {k}: need I <= min(gt, pred) and U = gt + pred - I, got I={inter[k]} U={union[k]} "
            f"gt={gt[k]} pred={pred[k]}"
        )
    no_target, absent = gt == 0, pred == 0
    ious = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    total_union = int(union.sum())
    result = {"gIoU": float(ious.mean()), "cIoU": 1.0 if total_union == 0 else float(inter.sum() / total_union)}
    if no_target.any():
        result["N_acc"] = float(np.mean(absent[no_target]))
    if (~no_target).any():
        result["T_acc"] = float(np.mean(~absent[~no_target]))
        for x in thresholds:
            result[f"Pr@{x}"] = float(np.mean(ious[~no_target] >= x))
    return result


def compute_metrics(predictions, references, thresholds: Sequence[float] = PREC_THRESHOLDS) -> dict:
    """Summary over pairs of masks of any size (each pair the same size)."""
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
    counts = []
    for k, (pred, gt) in enumerate(zip(predictions, references)):
        try:
            counts.append(intersection_and_union(pred, gt))
        except ValueError as error:
            raise ValueError(f"expression {k}: {error}") from None
    return summarize([c[0] for c in counts], [c[1] for c in counts], thresholds)


def format_results_table(
    results: Mapping[str, Mapping[str, Mapping[str, float]]],
    splits: Sequence[str] | None = None,
    metrics: Sequence[str] = ("mIoU",),
    percent: bool = True,
    digits: int = 2,
) -> str:
    """A markdown table in the style of the paper: one row per method, one column per split (and metric).

    `results` maps a row name ("ASDA", "baseline: whole image", ...) to {split: {metric: value}}.
    Values are shown x100 when `percent` (as the paper does); missing entries show as "-".
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    if splits is None:
        splits = list(dict.fromkeys(split for per_split in results.values() for split in per_split))
    columns = [(s, m) for s in splits for m in metrics]
    header = [split if len(metrics) == 1 else f"{split} {metric}" for split, metric in columns]
    lines = ["| Method | " + " | ".join(header) + " |", "|---|" + "---:|" * len(columns)]
    for name, per_split in results.items():
        cells = []
        for split, metric in columns:
            value = per_split.get(split, {}).get(metric)
            cells.append("-" if value is None else f"{value * (100 if percent else 1):.{digits}f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
