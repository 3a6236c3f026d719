import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_asda.data.loading import is_hub_id
from modeling_asda.evaluation.metrics import (
    METRIC_KEYS,
    compute_metrics,
    format_results_table,
    intersection_and_union,
    iou_from_counts,
    summarize,
)

REPO = Path(__file__).resolve().parents[1]

# Five expressions whose pixels can be counted by eye.
#   A: pred 3x3 all on (9 px), gt the top two rows (6 px)  -> I=6, U=9, IoU=2/3
#   B: pred top row of 2x2, gt top-left pixel                -> I=1, U=2, IoU=1/2 exactly
#   C: both empty (2x3)                                      -> I=0, U=0, IoU=1
#   D: empty prediction, gt one pixel                        -> I=0, U=1, IoU=0
#   E: prediction one pixel, empty gt                        -> I=0, U=1, IoU=0
PREDS = [
    np.ones((3, 3), dtype=np.uint8),
    np.array([[1, 1], [0, 0]], dtype=np.uint8),
    np.zeros((2, 3), dtype=np.uint8),
    np.zeros((2, 2), dtype=np.uint8),
    np.array([[0, 1], [0, 0]], dtype=np.uint8),
]
GTS = [
    np.array([[1, 1, 1], [1, 1, 1], [0, 0, 0]], dtype=np.uint8),
    np.array([[1, 0], [0, 0]], dtype=np.uint8),
    np.zeros((2, 3), dtype=np.uint8),
    np.array([[0, 0], [1, 0]], dtype=np.uint8),
    np.zeros((2, 2), dtype=np.uint8),
]
COUNTS = [(6, 9), (1, 2), (0, 0), (0, 1), (0, 1)]
EXPECTED = {
    "mIoU": (2 / 3 + 1 / 2 + 1 + 0 + 0) / 5,  # 13/30
    "oIoU": 7 / 13,  # (6+1+0+0+0) / (9+2+0+1+1)
    "Prec@0.5": 2 / 5,  # A and C; B sits exactly on 0.5 and does not count
    "Prec@0.6": 2 / 5,
    "Prec@0.7": 1 / 5,  # only C
    "Prec@0.8": 1 / 5,
    "Prec@0.9": 1 / 5,
}


def assert_metrics(result, expected):
    assert list(result) == list(METRIC_KEYS)
    assert all(type(v) is float for v in result.values())
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key


def test_counts_by_hand():
    assert [intersection_and_union(p, g) for p, g in zip(PREDS, GTS)] == COUNTS


def test_summary_by_hand():
    assert_metrics(compute_metrics(PREDS, GTS), EXPECTED)
    assert_metrics(summarize(*zip(*COUNTS)), EXPECTED)


def test_iou_exactly_on_threshold_is_not_counted():
    result = summarize([1], [2])  # IoU = 0.5
    assert result["mIoU"] == 0.5 and result["Prec@0.5"] == 0.0
    result = summarize([3], [5])  # IoU = 0.6
    assert result["Prec@0.5"] == 1.0 and result["Prec@0.6"] == 0.0
    result = summarize([7, 4], [10, 5])  # IoU = 0.7 and 0.8
    assert result["Prec@0.6"] == 1.0 and result["Prec@0.7"] == 0.5 and result["Prec@0.8"] == 0.0


def test_empty_cases():
    # both empty -> 1; gt empty with a prediction -> 0; prediction empty with a gt -> 0
    assert summarize([0], [0])["mIoU"] == 1.0
    assert compute_metrics([PREDS[4]], [GTS[4]])["mIoU"] == 0.0
    assert compute_metrics([PREDS[3]], [GTS[3]])["mIoU"] == 0.0
    # all empty: oIoU is 1 by the documented convention, not a division by zero
    all_empty = summarize([0, 0], [0, 0])
    assert all_empty["oIoU"] == 1.0 and all_empty["mIoU"] == 1.0 and all_empty["Prec@0.9"] == 1.0


def test_oiou_weighs_large_objects():
    # large: I=12, U=16 (IoU 0.75); small: I=0, U=2 (IoU 0) -> mIoU 0.375, oIoU 12/18
    large_pred = np.ones((4, 4), dtype=bool)
    large_gt = np.zeros((4, 4), dtype=bool)
    large_gt[:3] = True
    small_pred, small_gt = np.array([[1, 0]]), np.array([[0, 1]])
    result = compute_metrics([large_pred, small_pred], [large_gt, small_gt])
    assert result["mIoU"] == pytest.approx(0.375)
    assert result["oIoU"] == pytest.approx(12 / 18)


def test_input_kinds_agree():
    pred, gt = PREDS[0], GTS[0]
    as_255 = (gt * 255).astype(np.uint8)
    assert intersection_and_union(pred.astype(bool), as_255) == (6, 9)
    assert intersection_and_union(torch.from_numpy(pred), torch.from_numpy(gt).bool()) == (6, 9)
    assert intersection_and_union(torch.from_numpy(pred).float(), gt.tolist()) == (6, 9)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"pred \(2, 3\) and gt \(3, 2\)"):
        intersection_and_union(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"expression 1: .*pred \(2, 2\) and gt \(2, 3\)"):
        compute_metrics([PREDS[0], PREDS[1]], [GTS[0], GTS[2]])


def test_bad_masks_are_refused():
    with pytest.raises(ValueError, match="pred must be a binary mask"):
        intersection_and_union(np.full((2, 2), 0.7), np.zeros((2, 2)))  # probabilities
    with pytest.raises(ValueError, match="gt must be a binary mask"):
        intersection_and_union(np.zeros((2, 2)), np.array([[0, 1], [2, 0]]))  # a label map
    with pytest.raises(ValueError, match=r"2-D.*\(1, 2, 2\)"):
        intersection_and_union(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="empty set"):
        summarize([], [])
    with pytest.raises(ValueError, match="expression 1: .*I=3 U=2"):
        summarize([1, 3], [1, 2])
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        compute_metrics(PREDS[:2], GTS[:1])


def test_iou_of_one_pair():
    assert [iou_from_counts(*intersection_and_union(p, g)) for p, g in zip(PREDS, GTS)] == [
        2 / 3,
        1 / 2,
        1.0,
        0.0,
        0.0,
    ]


def test_hub_ids_are_told_from_local_paths(tmp_path, monkeypatch):
    assert is_hub_id("jxu124/refcoco") and is_hub_id("lmms-lab/RefCOCO")
    assert not is_hub_id("refcoco")  # no owner
    assert not is_hub_id("a/b/c") and not is_hub_id("bad name/x") and not is_hub_id("x/..") and not is_hub_id(None)
    (tmp_path / "owner").mkdir()
    (tmp_path / "owner" / "name").mkdir()
    assert is_hub_id("owner/name")
    monkeypatch.chdir(tmp_path)
    assert not is_hub_id("owner/name")  # an existing local folder wins


def test_results_table():
    results = {
        "ASDA": {"val": {"mIoU": 0.7506, "oIoU": 0.7}, "test": {"mIoU": 0.77144}},
        "baseline: whole image": {"val": {"mIoU": 0.0572, "oIoU": 0.0573}},
    }
    assert format_results_table(results) == (
        "| Method | val | test |\n|---|---:|---:|\n| ASDA | 75.06 | 77.14 |\n| baseline: whole image | 5.72 | - |"
    )
    assert format_results_table(results, splits=["val"], metrics=("mIoU", "oIoU"), percent=False, digits=3) == (
        "| Method | val mIoU | val oIoU |\n"
        "|---|---:|---:|\n"
        "| ASDA | 0.751 | 0.700 |\n"
        "| baseline: whole image | 0.057 | 0.057 |"
    )


def test_evaluate_module_offline_by_path(tmp_path):
    """The evaluate module, loaded by path with the Hub switched off, gives the hand numbers."""
    script = f"""
import json
import evaluate
import numpy as np
metric = evaluate.load({str(REPO / "metrics" / "ris_metrics")!r})
preds = {[p.tolist() for p in PREDS]!r}
gts = {[g.tolist() for g in GTS]!r}
out = {{"all": metric.compute(predictions=preds, references=gts)}}
for p, g in zip(preds, gts):  # incremental use, numpy inputs
    metric.add(prediction=np.array(p, dtype=np.uint8), reference=np.array(g, dtype=np.uint8))
out["incremental"] = metric.compute()
try:
    metric.compute(predictions=[[[1, 0]]], references=[[[1], [0]]])
except ValueError as error:
    out["error"] = str(error)
print(json.dumps(out))
"""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for result in (out["all"], out["incremental"]):
        assert_metrics({key: result[key] for key in METRIC_KEYS}, EXPECTED)
        # C is a no-target sample predicted absent, E one predicted present, D a targeted one predicted absent.
        assert result["gIoU"] == pytest.approx(EXPECTED["mIoU"]) and result["cIoU"] == pytest.approx(7 / 13)
        assert (result["N_acc"], result["T_acc"]) == pytest.approx((1 / 2, 2 / 3))
    assert "expression 0" in out["error"] and "(1, 2)" in out["error"] and "(2, 1)" in out["error"]
