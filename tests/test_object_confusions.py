"""Which object a prediction covers on the built-in data: outcomes against masks chosen by hand."""

from collections import Counter

import numpy as np
import pytest
from asda_checkpoint import script_main, synthetic_rows, trained_checkpoint  # noqa: F401 (fixture)
from datasets import Dataset

from modeling_asda.data.synthetic import MAX_OBJECTS, scene_for_row, synthetic_config_from_dataset
from modeling_asda.evaluation.object_confusions import classify_prediction, count_confusions, format_confusion_table


def _scenes(rows):
    config = synthetic_config_from_dataset(rows)
    return [scene_for_row(row, config) for row in rows]


def test_outcomes_of_chosen_masks_match_an_independent_count():
    rows = synthetic_rows(12, "test", seed=5)
    scenes = _scenes(rows)
    predictions, expected = [], {}
    for k, (row, scene) in enumerate(zip(rows, scenes)):
        target = row["ann_id"] % MAX_OBJECTS
        group = (
            "with a shape word"
            if any(w in row["sentence"] for w in ("circle", "square", "triangle", "star"))
            else "no shape word"
        )
        others = [obj for obj in scene.objects if obj.index != target]
        if k % 3 == 0:  # the target itself
            predictions.append(scene.objects[target].mask)
            outcome = "target"
        elif k % 3 == 1:  # the first other object
            obj, tgt = others[0], scene.objects[target]
            names = [
                n
                for n, key in (("colour", "color"), ("shape", "shape"), ("size", "size"))
                if getattr(obj, key) != getattr(tgt, key)
            ]
            predictions.append(obj.mask)
            outcome = "other: " + ("+".join(names) or "twin")
        else:  # nothing
            predictions.append(np.zeros_like(scene.objects[target].mask))
            outcome = "no object"
        expected.setdefault(group, Counter())[outcome] += 1
    assert count_confusions(rows, predictions) == expected
    table = format_confusion_table(expected)
    assert table.splitlines()[2].startswith("| target |")


def test_a_partial_target_mask_is_counted_as_a_weak_hit():
    rows = synthetic_rows(1, "test", seed=5)
    scene = _scenes(rows)[0]
    target = scene.objects[rows[0]["ann_id"] % MAX_OBJECTS]
    ys, xs = np.nonzero(target.mask)
    partial = np.zeros_like(target.mask)
    keep = ys < np.quantile(ys, 0.45)  # the top ~45% of the target's pixels: IoU ~0.45
    partial[ys[keep], xs[keep]] = True
    assert classify_prediction(partial, scene.objects, target.index) == "target, IoU <= 0.5"
    assert classify_prediction(partial, scene.objects, target.index, min_iou=0.9) == "no object"


def test_rows_of_another_generator_config_name_themselves():
    rows = synthetic_rows(2, "test", seed=5)
    other = synthetic_rows(2, "test", seed=6)  # the same image ids, other scenes
    mislabelled = Dataset.from_dict(other.to_dict(), features=other.features, info=rows.info)
    with pytest.raises(ValueError, match=rf"row {other[0]['sample_id']}: the scene regenerated"):
        count_confusions(mislabelled, [np.asarray(mask) > 0 for mask in other["mask"]])


def test_script_prints_the_table(trained_checkpoint, capsys):  # noqa: F811
    folder, _, _ = trained_checkpoint
    assert (
        script_main("object_confusions")(["--model", str(folder), "--split", "test", "--synthetic_num_eval", "6"]) == 0
    )
    out = capsys.readouterr().out
    assert "| outcome |" in out and "(6 expressions)" in out
    with pytest.raises(SystemExit):
        script_main("object_confusions")(
            ["--model", str(folder), "--dataset_name", "data/x", "--dataset_config", "refcoco"]
        )
