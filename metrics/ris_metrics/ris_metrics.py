"""Referring image segmentation metrics (mIoU, oIoU, Prec@X) as an `evaluate` module.

Load it by path, which works offline: `evaluate.load("/path/to/metrics/ris_metrics")`.
The numbers come from `modeling_asda.evaluation.metrics`, the functions training and evaluation use, so the
two cannot drift apart. One import per line: `evaluate` reads each import line as text.
"""

import datasets
import evaluate
import numpy as np

from modeling_asda.evaluation.metrics import (
    GENERALIZED_KEYS,  # From: asda-transformers
    METRIC_KEYS,  # From: asda-transformers
    PREC_THRESHOLDS,  # From: asda-transformers
    generalized_summary,  # From: asda-transformers
    intersection_and_union,  # From: asda-transformers
    summarize,  # From: asda-transformers
    to_binary_mask,  # From: asda-transformers
)

_DESCRIPTION = """
Per-expression metrics of referring image segmentation. For each (prediction, reference) pair of
binary masks: I = |pred AND ref|, U = |pred OR ref|, IoU = I/U (1 when both masks are empty).
mIoU is the mean IoU over expressions (what ASDA and most referring-segmentation papers report),
oIoU is sum(I)/sum(U) (1 when every mask is empty), and Prec@X is the share of expressions with
IoU strictly greater than X, for X in 0.5, 0.6, 0.7, 0.8, 0.9. Unlike `mean_iou`, which accumulates
per class over a whole data set, every expression counts once here.

Generalized referring segmentation (gRefCOCO, as ReLA defines it): an empty reference is an expression
with no target, an empty prediction says "no target". gIoU (mean IoU, a correct "no target" scoring 1)
and cIoU (sum I / sum U, a wrong mask on a no-target expression adding its area to sum U) equal mIoU and
oIoU; N_acc is the share of no-target expressions predicted empty, T_acc the share of targeted ones
predicted non-empty, Pr@0.7/0.8/0.9 the share of targeted expressions with IoU >= X. N_acc is left out
when no reference is empty, T_acc and Pr@X when every reference is.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of 2-D binary masks (height x width; values 0/1 or 0/255), one per expression.
    references: list of 2-D binary ground-truth masks, each the same size as its prediction.
        Masks may differ in size from one expression to the next.
Returns:
    dict of floats in [0, 1]: "mIoU", "oIoU", "Prec@0.5", "Prec@0.6", "Prec@0.7", "Prec@0.8", "Prec@0.9",
    and "gIoU", "cIoU", "N_acc", "T_acc", "Pr@0.7", "Pr@0.8", "Pr@0.9" (see above for when some are left out).
Examples:
    >>> metric = evaluate.load("metrics/ris_metrics")
    >>> metric.compute(predictions=[[[1, 1], [0, 0]]], references=[[[1, 0], [0, 0]]])["mIoU"]
    0.5
"""

# The copy of the paper the project works from is the anonymous review version: no author list.
_CITATION = """
@inproceedings{asda2024,
  title = {Adaptive Selection based Referring Image Segmentation},
  booktitle = {ACM International Conference on Multimedia (ACM MM)},
  year = {2024}
}
"""

_MASK = datasets.Sequence(datasets.Sequence(datasets.Value("uint8")))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RisMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # Array2D would fix the width; nested sequences allow any mask size.
            features=datasets.Features({"predictions": _MASK, "references": _MASK}),
        )

    def _compute(self, predictions, references):
        intersections, unions, gt_areas, pred_areas = [], [], [], []
        for k, (pred, ref) in enumerate(zip(predictions, references)):
            try:
                pred, ref = _as_array(pred, "prediction"), _as_array(ref, "reference")
                i, u = intersection_and_union(pred, ref)
                gt_areas.append(int(to_binary_mask(ref, "reference").sum()))
                pred_areas.append(int(to_binary_mask(pred, "prediction").sum()))
            except ValueError as error:
                raise ValueError(f"expression {k}: {error}") from None
            intersections.append(i)
            unions.append(u)
        result = summarize(intersections, unions, PREC_THRESHOLDS)
        result.update(generalized_summary(intersections, unions, gt_areas, pred_areas))
        return {key: result[key] for key in METRIC_KEYS + GENERALIZED_KEYS if key in result}


def _as_array(rows, name):
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise ValueError(f"{name} rows have different lengths {sorted(widths)}; a mask must be rectangular")
    return np.asarray(rows, dtype=np.uint8).reshape(len(rows), widths.pop() if widths else 0)
