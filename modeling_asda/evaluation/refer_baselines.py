"""Language-blind baselines on REFER-layout data (RefCOCO's files or any folder in that layout).

- whole image: predict every pixel (as on the synthetic data).
- random object: the mask of one annotation of the same picture drawn at random (seeded), taken from
  `instances.json`, which in COCO (and in `make_refer_shapes.py`'s data) annotates every object, referred or
  not. A perfect object segmenter that ignores the words scores this.
"""

import json

import numpy as np
from datasets import Dataset

from ..data.masks import decode_segmentation
from .baselines import RANDOM_OBJECT, WHOLE_IMAGE, whole_image_counts
from .metrics import intersection_and_union, summarize


def annotations_by_image(instances_path: str) -> dict:
    with open(instances_path, encoding="utf-8") as handle:
        instances = json.load(handle)
    by_image = {}
    for annotation in instances["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    return by_image


def refer_random_object_counts(dataset: Dataset, by_image: dict, seed: int = 0):
    """Per-expression (intersections, unions) of a random annotated object of each row's picture."""
    rng = np.random.default_rng(seed)
    intersections, unions = [], []
    for row in dataset.select_columns(["sample_id", "image_id", "mask", "width", "height"]):
        candidates = by_image.get(row["image_id"])
        if not candidates:
            raise ValueError(f"row {row['sample_id']}: instances.json has no annotation of image {row['image_id']}")
        choice = candidates[int(rng.integers(len(candidates)))]
        prediction = decode_segmentation(choice["segmentation"], row["height"], row["width"])
        gt = np.asarray(row["mask"].convert("L")) > 0
        i, u = intersection_and_union(prediction, gt)
        intersections.append(i)
        unions.append(u)
    return intersections, unions


def refer_language_blind_baselines(dataset: Dataset, instances_path: str, seed: int = 0) -> dict:
    """{row name: metrics} for both baselines on one split of a REFER-layout data set."""
    return {
        WHOLE_IMAGE: summarize(*whole_image_counts(dataset)),
        RANDOM_OBJECT: summarize(*refer_random_object_counts(dataset, annotations_by_image(instances_path), seed)),
    }
