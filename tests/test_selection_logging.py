"""Selection health numbers of the Trainer: per-candidate shares and mean normalised entropy, in training and evaluation."""

import math

import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from modeling_asda.training.trainer import SelectionStatistics, compute_ris_metrics


def test_training_statistics_match_a_hand_computation_and_reset():
    stats = SelectionStatistics()
    first = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    second = torch.tensor([[0.6, 0.3, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    stats.add("low", first)
    stats.add("low", second)
    stats.add("mid", torch.tensor([[0.0, 0.0, 1.0]] * 4))
    logs = stats.pop({"low": (4, 5, 6), "mid": (7, 8, 9)})

    def entropy(row):
        return -sum(p * math.log(p) for p in row if p > 0) / math.log(3)

    rows = torch.cat([first, second]).tolist()
    assert logs["selection_low_L4"] == pytest.approx(3 / 4)  # argmax of the uniform row is the first candidate
    assert logs["selection_low_L5"] == pytest.approx(1 / 4) and logs["selection_low_L6"] == 0
    assert logs["selection_low_entropy"] == pytest.approx(np.mean([entropy(r) for r in rows]), abs=1e-4)
    assert logs["selection_mid_L9"] == 1 and logs["selection_mid_entropy"] == pytest.approx(0, abs=1e-6)
    assert stats.pop({"low": (4, 5, 6)}) == {}  # nothing since the last log: no numbers rather than zeros


def test_sums_over_processes_before_dividing():
    stats = SelectionStatistics()
    stats.add("low", torch.tensor([[0.9, 0.05, 0.05]]))
    # A second process with three samples on candidate 2 and entropy 0: row = [0, 0, 3, 0, 3].
    other = torch.tensor([0.0, 0.0, 3.0, 0.0, 3.0])
    logs = stats.pop({"low": (1, 2, 3)}, reduce=lambda row: row + other)
    assert logs["selection_low_L1"] == pytest.approx(0.25) and logs["selection_low_L3"] == pytest.approx(0.75)


def test_evaluation_reports_each_candidates_share():
    # [I, U, low, mid] per sample; layers 4-6 low, 7-9 mid.
    predictions = np.array([[1, 2, 4, 9], [2, 2, 4, 9], [0, 3, 6, 9], [3, 3, 4, 8]])
    metrics = compute_ris_metrics(
        EvalPrediction(predictions=predictions, label_ids=np.arange(4)), low_layers=(4, 5, 6), mid_layers=(7, 8, 9)
    )
    assert (
        metrics["selection_low_L4"] == 0.75
        and metrics["selection_low_L5"] == 0
        and metrics["selection_low_L6"] == 0.25
    )
    assert metrics["selection_mid_L9"] == 0.75 and metrics["selection_mid_L8"] == 0.25
    assert metrics["mIoU"] == pytest.approx(np.mean([0.5, 1, 0, 1]))
    # Without adaptive selection the columns hold -1 and no shares are reported.
    predictions[:, 2:] = -1
    plain = compute_ris_metrics(EvalPrediction(predictions=predictions, label_ids=np.arange(4)), low_layers=(4, 5, 6))
    assert not any(key.startswith("selection_") for key in plain)
