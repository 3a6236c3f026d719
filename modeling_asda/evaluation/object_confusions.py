"""Which object of a built-in synthetic scene a predicted mask covers, and how that object differs from the target.

The built-in scenes are regenerated from each row's `image_id` (`scene_for_row`), so every object's mask is
known. A prediction is assigned to the object it overlaps best (IoU). Outcomes: `target` (that object is the
target, IoU > 0.5), `target, IoU <= 0.5`, `no object` (best IoU below `min_iou`), or `other: <attributes>`
naming the attributes in which the covered object differs from the target (`colour`, `shape`, `size`, joined
by `+`; `twin` when it differs in none, i.e. position or relation words were misread). Counted separately for
expressions with and without a shape word: "other: shape" among the former says the shape word was misread.
"""

from collections import Counter

import numpy as np

from ..data.synthetic import referred_object, scene_for_row, synthetic_config_from_dataset
from .expression_types import WITH_SHAPE, expression_groups
from .inference import batched_outputs
from .metrics import intersection_and_union, iou_from_counts, to_binary_mask

ATTRIBUTES = (("color", "colour"), ("shape", "shape"), ("size", "size"))


def predicted_masks(model, processor, dataset, batch_size: int = 32) -> list:
    """The model's final binary masks at each row's original size, post-processed as `run_ris.py` does."""
    masks = []
    for _, sizes, out in batched_outputs(model, processor, dataset, batch_size):
        target = None if out.target_logits is None else out.target_logits.float().cpu()
        masks += processor.post_process_masks(
            out.logits.float().cpu(),
            sizes,
            threshold=model.config.mask_threshold,
            target_logits=target,
            no_target_threshold=model.config.no_target_threshold,
        )
    return [mask.numpy().astype(bool) for mask in masks]


def classify_prediction(prediction: np.ndarray, objects: list, target_index: int, min_iou: float = 0.3) -> str:
    """The outcome of one prediction among a scene's `objects` (each with .mask, .color, .shape, .size)."""
    ious = [iou_from_counts(*intersection_and_union(prediction, obj.mask)) for obj in objects]
    best = int(np.argmax(ious))
    if ious[best] < min_iou:
        return "no object"
    if best == target_index:
        return "target" if ious[best] > 0.5 else "target, IoU <= 0.5"
    covered, target = objects[best], objects[target_index]
    differs = [name for key, name in ATTRIBUTES if getattr(covered, key) != getattr(target, key)]
    return "other: " + ("+".join(differs) if differs else "twin")


def count_confusions(dataset, predictions, min_iou: float = 0.3) -> dict:
    """{"with a shape word": Counter, "no shape word": Counter} over the single-target rows of built-in data.

    `predictions` are binary masks at each row's original size, in row order.
    """
    config = synthetic_config_from_dataset(dataset)
    counts = {}
    scene = None
    for row, prediction in zip(dataset, predictions, strict=True):
        if row.get("no_target", False) or row.get("num_targets", 1) != 1:
            continue
        if scene is None or scene.image_id != row["image_id"]:  # rows of a scene are adjacent
            scene = scene_for_row(row, config)
        index = referred_object(row, scene, np.asarray(row["mask"]) > 0, config).index
        group = expression_groups(row["sentence"])[1]
        outcome = classify_prediction(
            to_binary_mask(np.asarray(prediction), "prediction"), scene.objects, index, min_iou
        )
        counts.setdefault(group, Counter())[outcome] += 1
    return counts


def format_confusion_table(counts: dict) -> str:
    """Markdown: each outcome's count and share of its group, groups as columns (shape-word group first)."""
    groups = sorted(counts, key=lambda group: group != WITH_SHAPE)
    outcomes = sorted({outcome for counter in counts.values() for outcome in counter}, key=_outcome_order)
    header = "| outcome | " + " | ".join(f"{group} (n={sum(counts[group].values())})" for group in groups) + " |"
    lines = [header, "|---" + "|---:" * len(groups) + "|"]
    for outcome in outcomes:
        cells = []
        for group in groups:
            total = sum(counts[group].values())
            cells.append(f"{counts[group][outcome]} ({100 * counts[group][outcome] / total:.1f}%)")
        lines.append(f"| {outcome} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _outcome_order(outcome: str):
    fixed = ("target", "target, IoU <= 0.5", "no object")
    return (fixed.index(outcome), "") if outcome in fixed else (len(fixed), outcome)
