"""How the no-target threshold trades N_acc against T_acc on a split (models with a no-target head).

A sample is predicted absent when its target probability is below the threshold (its mask is then empty) or
when its thresholded mask is empty anyway. The masks do not depend on the threshold, so one pass over the
split gives the generalized metrics at every threshold.
"""

from collections.abc import Sequence

import numpy as np
import torch

from .inference import batched_outputs
from .metrics import generalized_summary, intersection_and_union, to_binary_mask

DEFAULT_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@torch.no_grad()
def predict_target_scores(model, processor, dataset, batch_size: int = 32) -> dict:
    """Per row: the target probability, and I, U, gt area, predicted area of the mask as if a target were present."""
    if getattr(model, "no_target_head", None) is None:
        raise ValueError("this checkpoint has no no-target head (config.no_target_head is False): nothing to sweep")
    columns = {name: [] for name in ("score", "intersection", "union", "gt_area", "pred_area")}
    for rows, sizes, out in batched_outputs(model, processor, dataset, batch_size):
        masks = processor.post_process_masks(out.logits.float().cpu(), sizes, threshold=model.config.mask_threshold)
        for mask, gt, score in zip(masks, rows["mask"], out.target_logits.float().sigmoid().cpu()):
            gt = to_binary_mask(np.asarray(gt), "mask")
            intersection, union = intersection_and_union(mask.numpy().astype(bool), gt)
            columns["score"].append(float(score))
            columns["intersection"].append(intersection)
            columns["union"].append(union)
            columns["gt_area"].append(int(gt.sum()))
            columns["pred_area"].append(int(mask.sum()))
    return {name: np.asarray(values) for name, values in columns.items()}


def sweep_thresholds(predictions: dict, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> list[dict]:
    """generalized_summary at each threshold: a sample below it keeps an empty mask (I = 0, U = gt area)."""
    rows = []
    for threshold in thresholds:
        absent = predictions["score"] < threshold
        intersection = np.where(absent, 0, predictions["intersection"])
        pred_area = np.where(absent, 0, predictions["pred_area"])
        union = np.where(absent, predictions["gt_area"], predictions["union"])
        summary = generalized_summary(intersection, union, predictions["gt_area"], pred_area)
        rows.append({"threshold": float(threshold), **summary})
    return rows


def format_sweep_table(rows: list[dict]) -> str:
    keys = [k for k in ("gIoU", "cIoU", "N_acc", "T_acc", "Pr@0.7", "Pr@0.9") if k in rows[0]]
    lines = ["| no-target threshold | " + " | ".join(keys) + " |", "|---:|" + "---:|" * len(keys)]
    for row in rows:
        lines.append(f"| {row['threshold']:.2f} | " + " | ".join(f"{100 * row[k]:.2f}" for k in keys) + " |")
    return "\n".join(lines)
