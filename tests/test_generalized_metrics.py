"""gIoU, cIoU, N-acc, T-acc and Pr@X (ReLA's definitions) against an independent count on hand-built cases."""

import numpy as np
import pytest

from modeling_asda.evaluation.metrics import GENERALIZED_KEYS, generalized_summary, intersection_and_union


def rela_count(preds, gts):
    """ReLA's evaluation loop, written out case by case from its definitions (not from our code)."""
    total_iou = total_i = total_u = 0.0
    tp = fn = fp = tn = 0
    pr = {0.7: 0, 0.8: 0, 0.9: 0}
    targeted = 0
    for pred, gt in zip(preds, gts):
        pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
        absent = not pred.any()
        if not gt.any():  # no-target sample
            if absent:
                tp += 1
                total_iou += 1
            else:
                fn += 1
                total_u += pred.sum()  # its whole predicted area joins the cumulative union
            continue
        targeted += 1
        if absent:
            fp += 1
            i = 0
        else:
            tn += 1
            i = (pred & gt).sum()
        u = (pred | gt).sum()
        total_iou += i / u
        total_i += i
        total_u += u
        for x in pr:
            pr[x] += i / u >= x
    out = {"gIoU": total_iou / len(gts), "cIoU": total_i / total_u, "N_acc": tp / (tp + fn), "T_acc": tn / (tn + fp)}
    out.update({f"Pr@{x}": pr[x] / targeted for x in pr})
    return out


def box(h, w, y0, y1, x0, x1):
    mask = np.zeros((h, w), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


# (prediction, ground truth) pairs, 10x10 unless said
CASES = [
    (box(10, 10, 0, 5, 0, 5), box(10, 10, 0, 5, 0, 5)),  # targeted, exact: IoU 1
    (box(10, 10, 0, 5, 0, 4), box(10, 10, 0, 5, 0, 5)),  # targeted, IoU 20/25 = 0.8 (counts for Pr@0.8: >=)
    (box(10, 10, 0, 2, 0, 10), box(10, 10, 0, 10, 0, 10)),  # targeted, IoU 0.2
    (np.zeros((10, 10)), box(10, 10, 2, 4, 2, 4)),  # targeted predicted ABSENT: FP, IoU 0, U = 4
    (np.zeros((6, 8)), np.zeros((6, 8))),  # no target, predicted absent: TP, IoU 1, adds nothing
    (box(10, 10, 0, 3, 0, 10), np.zeros((10, 10))),  # no target predicted present: FN, adds 30 to the union
    (np.zeros((4, 4)), np.zeros((4, 4))),  # another TP
]


def counts(cases):
    i, u, g, p = [], [], [], []
    for pred, gt in cases:
        a, b = intersection_and_union(pred, gt)
        i.append(a)
        u.append(b)
        g.append(int(np.count_nonzero(gt)))
        p.append(int(np.count_nonzero(pred)))
    return i, u, g, p


def test_generalized_metrics_by_hand():
    result = generalized_summary(*counts(CASES))
    # By hand: IoUs 1, 0.8, 0.2, 0, 1, 0, 1; sum I = 25 + 20 + 20 = 65; sum U = 25 + 25 + 100 + 4 + 30 = 184.
    hand = {
        "gIoU": (1 + 0.8 + 0.2 + 0 + 1 + 0 + 1) / 7,
        "cIoU": 65 / 184,
        "N_acc": 2 / 3,
        "T_acc": 3 / 4,
        "Pr@0.7": 2 / 4,
        "Pr@0.8": 2 / 4,
        "Pr@0.9": 1 / 4,
    }
    assert list(result) == list(GENERALIZED_KEYS)
    for key in GENERALIZED_KEYS:
        assert result[key] == pytest.approx(hand[key], abs=1e-12), key
        assert result[key] == pytest.approx(rela_count(*zip(*CASES))[key], abs=1e-12), key


def test_no_target_false_positive_grows_the_union():
    base = generalized_summary(*counts(CASES[:5]))
    more = generalized_summary(*counts(CASES))
    assert base["cIoU"] == pytest.approx(65 / 154) and more["cIoU"] == pytest.approx(65 / 184)


def test_random_cases_match_the_independent_count():
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(200):
        h, w = rng.integers(3, 9, size=2)
        kind = rng.integers(4)
        gt = np.zeros((h, w), np.uint8) if kind == 0 else (rng.random((h, w)) < 0.4).astype(np.uint8)
        pred = np.zeros((h, w), np.uint8) if kind == 1 else (rng.random((h, w)) < 0.4).astype(np.uint8)
        cases.append((pred, gt))
    result = generalized_summary(*counts(cases))
    expected = rela_count(*zip(*cases))
    for key in GENERALIZED_KEYS:
        assert result[key] == pytest.approx(expected[key], abs=1e-12), key


def test_undefined_groups_are_left_out_and_bad_counts_refused():
    only_targets = generalized_summary([1], [2], [2], [1])
    assert "N_acc" not in only_targets and only_targets["T_acc"] == 1.0
    only_empty = generalized_summary([0], [0], [0], [0])
    assert only_empty == {"gIoU": 1.0, "cIoU": 1.0, "N_acc": 1.0}
    with pytest.raises(ValueError, match="expression 0"):
        generalized_summary([3], [4], [2], [2])  # I larger than either mask
