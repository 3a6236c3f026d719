import io

import numpy as np
import pytest
from datasets import Dataset
from PIL import Image

from modeling_asda.data.schema import CANONICAL_FEATURES
from modeling_asda.data.synthetic import MAX_OBJECTS, SyntheticConfig, build_synthetic_dataset, scene_for_row
from modeling_asda.evaluation.baselines import (
    RANDOM_OBJECT,
    WHOLE_IMAGE,
    language_blind_baselines,
    random_object_counts,
    whole_image_counts,
)
from modeling_asda.evaluation.metrics import summarize


@pytest.fixture(scope="module")
def tiny():
    return build_synthetic_dataset(num_train=0, num_val=0, num_test=16, seed=3)["test"]


def png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def hand_dataset():
    """Two rows: a 5x4 image with a 3-pixel mask and a 6x4 image with an 8-pixel mask."""
    masks = [np.zeros((4, 5), np.uint8), np.zeros((4, 6), np.uint8)]
    masks[0][1, 1:4] = 255
    masks[1][0:2, 0:4] = 255
    rows = {name: [] for name in CANONICAL_FEATURES}
    for k, mask in enumerate(masks):
        h, w = mask.shape
        values = dict(
            sample_id=f"{k}_{k}",
            image_id=k,
            ref_id=k,
            ann_id=k,
            sent_id=k,
            category_id=1,
            split="test",
            sentence="the thing",
            image=png(np.zeros((h, w, 3), np.uint8)),
            mask=png(mask),
            bbox=[0.0, 0.0, 1.0, 1.0],
            width=w,
            height=h,
            source="synthetic",
            no_target=False,
            num_targets=1,
        )
        for name, value in values.items():
            rows[name].append(value)
    return Dataset.from_dict(rows, features=CANONICAL_FEATURES)


def test_whole_image_baseline_by_hand():
    counts = whole_image_counts(hand_dataset())
    assert counts == ([3, 8], [20, 24])
    result = summarize(*counts)
    assert result["mIoU"] == pytest.approx((3 / 20 + 8 / 24) / 2)
    assert result["oIoU"] == pytest.approx(11 / 44)
    assert result["Prec@0.5"] == 0.0


def test_whole_image_baseline_on_synthetic(tiny):
    ious = []
    for row in tiny:
        mask = np.asarray(row["mask"]) > 0
        ious.append(mask.sum() / (row["width"] * row["height"]))
    result = language_blind_baselines(tiny)[WHOLE_IMAGE]
    assert result["mIoU"] == pytest.approx(np.mean(ious))
    assert result["Prec@0.5"] == 0.0  # no object covers half of its image


def test_random_object_baseline(tiny):
    config = SyntheticConfig(seed=3)
    intersections, unions = random_object_counts(tiny, seed=7)
    rng = np.random.default_rng(7)
    hits = 0
    for row, i, u in zip(tiny, intersections, unions):
        # recomputed here: the seeded choice over the scene's objects, rows in order
        scene = scene_for_row(row, config)
        chosen = scene.objects[rng.integers(len(scene.objects))]
        gt = np.asarray(row["mask"]) > 0
        assert (i, u) == (np.count_nonzero(chosen.mask & gt), np.count_nonzero(chosen.mask | gt))
        # visible masks of different objects are disjoint: the IoU is 1 (right object) or 0
        hit = chosen.index == row["ann_id"] % MAX_OBJECTS
        assert (i == u) == hit and (i == 0) == (not hit)
        hits += hit
    result = language_blind_baselines(tiny, seed=7)[RANDOM_OBJECT]
    assert result["mIoU"] == pytest.approx(hits / len(tiny))
    assert result["Prec@0.9"] == pytest.approx(hits / len(tiny))
    assert random_object_counts(tiny, seed=7) == (intersections, unions)


def test_wrong_config_is_an_error_not_a_number(tiny):
    with pytest.raises(ValueError, match=f"row {tiny[0]['sample_id']}: the scene regenerated"):
        random_object_counts(tiny, config=SyntheticConfig(seed=4))
    with pytest.raises(ValueError, match="no synthetic generator config"):
        random_object_counts(hand_dataset())
