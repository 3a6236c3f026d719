"""Language-blind baselines on the synthetic data: what a model scores without reading the expression.

- whole image: predict every pixel. Its IoU is the target's share of the image.
- random object: predict the mask of one object of the scene drawn at random (seeded), i.e. a
  perfect object segmenter that ignores the words. Its mIoU is about the mean of 1 / (objects per scene).

On generalized splits (expressions that name nothing or several objects) the rows are:

- all objects: the union of every object of the scene (right for "all the shapes", never "no target");
- random object: as above; on a no-target row it is always wrong, on a multi-target row partly right;
- always no target: an empty mask for every expression (right exactly on the no-target rows).

All are computed at the original image resolution with `evaluation.metrics`, so their numbers
compare directly with the model's. A model that reads the expressions must beat both by far.
"""

import numpy as np
from datasets import Dataset

from ..data.synthetic import (
    SyntheticConfig,
    referred_object,
    scene_for_row,
    synthetic_config_from_dataset,
)
from .metrics import generalized_summary, intersection_and_union, summarize

WHOLE_IMAGE = "baseline: whole image"
RANDOM_OBJECT = "baseline: random object"
ALL_OBJECTS = "baseline: all objects"
ALWAYS_NO_TARGET = "baseline: always no target"


def _gt_mask(row) -> np.ndarray:
    mask = np.asarray(row["mask"].convert("L")) > 0
    if mask.shape != (row["height"], row["width"]):
        raise ValueError(
            f"row {row['sample_id']}: mask is {mask.shape[1]}x{mask.shape[0]} but the row says "
            f"{row['width']}x{row['height']} (width x height)"
        )
    return mask


def whole_image_counts(dataset: Dataset):
    """Per-expression (intersections, unions) of the all-foreground prediction."""
    intersections, unions = [], []
    for row in dataset:
        gt = _gt_mask(row)
        i, u = intersection_and_union(np.ones_like(gt), gt)
        intersections.append(i)
        unions.append(u)
    return intersections, unions


def random_object_counts(dataset: Dataset, seed: int = 0, config: SyntheticConfig | None = None):
    """Per-expression (intersections, unions) of a random object's mask, rows taken in order.

    The scene of each row is regenerated from its image_id; `config` defaults to the one stored in
    the data set. A regenerated mask that differs from the stored one is an error (wrong config),
    never a silently wrong number.
    """
    config = config or synthetic_config_from_dataset(dataset)
    rng = np.random.default_rng(seed)
    intersections, unions = [], []
    scene = None
    for row in dataset:
        if scene is None or scene.image_id != row["image_id"]:  # rows of a scene are adjacent
            scene = scene_for_row(row, config)
        gt = _gt_mask(row)
        if row.get("num_targets", 1) == 1 and not row.get("no_target", False):
            referred_object(row, scene, gt, config)
        choice = scene.objects[int(rng.integers(len(scene.objects)))]
        i, u = intersection_and_union(choice.mask, gt)
        intersections.append(i)
        unions.append(u)
    return intersections, unions


def language_blind_baselines(dataset: Dataset, seed: int = 0, config: SyntheticConfig | None = None) -> dict:
    """{row name: metrics} for both baselines on one split."""
    return {
        WHOLE_IMAGE: summarize(*whole_image_counts(dataset)),
        RANDOM_OBJECT: summarize(*random_object_counts(dataset, seed, config)),
    }


def is_generalized(dataset: Dataset) -> bool:
    """True when some row names no object or several (then the generalized baselines and metrics apply)."""
    columns = dataset.column_names
    if "no_target" not in columns:
        return False
    return any(dataset["no_target"]) or any(n != 1 for n in dataset["num_targets"])


def generalized_baseline_counts(dataset: Dataset, seed: int = 0, config: SyntheticConfig | None = None) -> dict:
    """{row name: (intersections, unions, gt areas, predicted areas)} of the three generalized baselines."""
    config = config or synthetic_config_from_dataset(dataset)
    rng = np.random.default_rng(seed)
    counts = {name: ([], [], [], []) for name in (ALL_OBJECTS, RANDOM_OBJECT, ALWAYS_NO_TARGET)}
    scene = None
    for row in dataset:
        if scene is None or scene.image_id != row["image_id"]:
            scene = scene_for_row(row, config)
        gt = _gt_mask(row)
        everything = np.logical_or.reduce([obj.mask for obj in scene.objects])
        one = scene.objects[int(rng.integers(len(scene.objects)))].mask
        for name, pred in ((ALL_OBJECTS, everything), (RANDOM_OBJECT, one), (ALWAYS_NO_TARGET, np.zeros_like(gt))):
            i, u = intersection_and_union(pred, gt)
            for values, value in zip(counts[name], (i, u, int(gt.sum()), int(pred.sum()))):
                values.append(value)
    return counts


def synthetic_generalized_baselines(dataset: Dataset, seed: int = 0, config: SyntheticConfig | None = None) -> dict:
    """{row name: metrics} (RefCOCO-style and generalized keys) of the three generalized baselines on one split."""
    results = {}
    for name, (inter, union, gt, pred) in generalized_baseline_counts(dataset, seed, config).items():
        results[name] = {**summarize(inter, union), **generalized_summary(inter, union, gt, pred)}
    return results


def no_target_baseline(dataset: Dataset) -> dict:
    """{ALWAYS_NO_TARGET: metrics} for any data set: an empty mask for every row (needs only the ground truth)."""
    gt_areas = [
        int(np.count_nonzero(_gt_mask(row)))
        for row in dataset.select_columns(["sample_id", "mask", "width", "height"])
    ]
    zeros = [0] * len(gt_areas)
    return {ALWAYS_NO_TARGET: {**summarize(zeros, gt_areas), **generalized_summary(zeros, gt_areas, gt_areas, zeros)}}


def annotation_baseline_counts(dataset: Dataset, instances_path: str, seed: int = 0) -> dict:
    """Like `generalized_baseline_counts`, for a data set read from COCO-style annotations (gRefCOCO layout):
    "all objects" unites every non-crowd annotation of the row's image, "random object" takes one of them."""
    import json

    from ..data.masks import decode_segmentation

    with open(instances_path, encoding="utf-8") as f:
        annotations = json.load(f)["annotations"]
    by_image = {}
    for ann in annotations:
        if not ann.get("iscrowd", 0):
            by_image.setdefault(ann["image_id"], []).append(ann["segmentation"])
    rng = np.random.default_rng(seed)
    counts = {name: ([], [], [], []) for name in (ALL_OBJECTS, RANDOM_OBJECT, ALWAYS_NO_TARGET)}
    cache = {}
    for row in dataset.select_columns(["sample_id", "image_id", "mask", "width", "height"]):
        gt = _gt_mask(row)
        key = row["image_id"]
        if key not in cache:  # rows of one image are usually adjacent; keep only the current image
            shape = (row["height"], row["width"])
            cache = {key: [decode_segmentation(seg, *shape).astype(bool) for seg in by_image.get(key, [])]}
        objects = cache[key] or [np.zeros_like(gt)]
        choices = (
            (ALL_OBJECTS, np.logical_or.reduce(objects)),
            (RANDOM_OBJECT, objects[int(rng.integers(len(objects)))]),
            (ALWAYS_NO_TARGET, np.zeros_like(gt)),
        )
        for name, pred in choices:
            i, u = intersection_and_union(pred, gt)
            for values, value in zip(counts[name], (i, u, int(gt.sum()), int(pred.sum()))):
                values.append(value)
    return counts


def annotation_baselines(dataset: Dataset, instances_path: str, seed: int = 0) -> dict:
    """{row name: metrics} of the three generalized baselines from the annotations file of the data set."""
    results = {}
    for name, (inter, union, gt, pred) in annotation_baseline_counts(dataset, instances_path, seed).items():
        results[name] = {**summarize(inter, union), **generalized_summary(inter, union, gt, pred)}
    return results
