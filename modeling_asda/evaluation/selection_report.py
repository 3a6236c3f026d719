"""Does the adaptive selection follow the language? Counts of the chosen low/mid layers over an evaluation split.

The predictions come from `RISTrainer.predict` (the evaluation the training run uses: per sample
[intersection, union, low layer, mid layer] with its row index), then are grouped by what the expression
says: overall, by its type (relation / position / attributes only, read from the words), by its length
in words, and by the referred object's category. Cramér's V per grouping summarises the dependence of
the chosen layer on the group: 0 = the layer is chosen independently of the group, 1 = the group
determines it; its value with the groups shuffled gives the chance level for a split of that size.
"""

import json
import math
import re
import tempfile
from collections import Counter

import numpy as np

from ..data.synthetic import SHAPES
from ..processing_asda import normalize_expression
from .metrics import iou_from_counts

TYPE_RELATION = "relation"
TYPE_POSITION = "position"
TYPE_ATTRIBUTES = "attributes only"
TYPE_ORDER = (TYPE_RELATION, TYPE_POSITION, TYPE_ATTRIBUTES)

# A relation names a second object ("the star left of the red circle"); a position word places the target
# in the image ("the circle on the left"). Relations are tested first: "left of" also contains "left".
RELATION_PHRASES = (
    "left of",
    "right of",
    "above",
    "below",
    "behind",
    "in front of",
    "next to",
    "beside",
    "near",
    "under",
    "underneath",
    "beneath",
    "on top of",
    "between",
    "close to",
)
POSITION_WORDS = (
    "left",
    "right",
    "top",
    "bottom",
    "middle",
    "center",
    "centre",
    "leftmost",
    "rightmost",
    "highest",
    "lowest",
    "furthest",
    "upper",
    "lower",
    "front",
    "back",
    "corner",
)
_RELATION = re.compile(r"\b(" + "|".join(re.escape(p) for p in RELATION_PHRASES) + r")\b")
_POSITION = re.compile(r"\b(" + "|".join(POSITION_WORDS) + r")\b")

LENGTH_EDGES = (2, 4, 6, 8)  # buckets 1-2, 3-4, 5-6, 7-8, 9+

GROUPINGS = ("overall", "expression type", "expression length (words)", "category")


def expression_type(text: str) -> str:
    """'relation' when the expression places the target against another object, 'position' when it places it
    in the image, else 'attributes only' (on the synthetic data: colour, shape and size words only)."""
    text = normalize_expression(text)
    if _RELATION.search(text):
        return TYPE_RELATION
    if _POSITION.search(text):
        return TYPE_POSITION
    return TYPE_ATTRIBUTES


def length_bucket(text: str, edges=LENGTH_EDGES) -> str:
    words = len(normalize_expression(text).split())
    low = 1
    for edge in edges:
        if words <= edge:
            return f"{low}-{edge}" if edge > low else str(edge)
        low = edge + 1
    return f"{low}+"


def _length_order(edges=LENGTH_EDGES):
    names, low = [], 1
    for edge in edges:
        names.append(f"{low}-{edge}" if edge > low else str(edge))
        low = edge + 1
    return names + [f"{low}+"]


def category_name(category_id: int, synthetic: bool) -> str:
    if synthetic and 1 <= category_id <= len(SHAPES):
        return f"{category_id} ({SHAPES[category_id - 1]})"
    return str(category_id)


def predict_selection(model, processor, dataset, batch_size: int = 16, use_cpu: bool | None = None) -> np.ndarray:
    """(N, 4) int64 [intersection, union, low layer, mid layer], row i = dataset row i, by `RISTrainer.predict`.

    `use_cpu` defaults to whether the model is on the CPU.
    """
    from transformers import TrainingArguments

    from ..data.transforms import RISTransform, collate_ris
    from ..training.trainer import RISTrainer

    if model.config.feature_selection != "adaptive":
        raise ValueError(
            f"this checkpoint has feature_selection={model.config.feature_selection!r}: the layers are fixed, so there "
            "is no selection to report"
        )
    if len(dataset) == 0:
        raise ValueError("the evaluation split is empty")
    if use_cpu is None:
        use_cpu = next(model.parameters()).device.type == "cpu"
    indexed = dataset.add_column("row_index", list(range(len(dataset)))).with_transform(
        RISTransform(processor, train=False)
    )
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            per_device_eval_batch_size=batch_size,
            report_to=[],
            remove_unused_columns=False,
            use_cpu=use_cpu,
            dataloader_num_workers=0,
            dataloader_pin_memory=not use_cpu,
            disable_tqdm=True,
        )
        trainer = RISTrainer(
            model=model,
            args=args,
            data_collator=collate_ris,
            processing_class=processor,
        )
        output = trainer.predict(indexed)
    rows = np.asarray(output.label_ids).astype(np.int64)
    if sorted(rows.tolist()) != list(range(len(dataset))):
        raise RuntimeError(f"the evaluation returned {len(rows)} rows for {len(dataset)} samples")
    values = np.asarray(output.predictions).astype(np.int64)
    predictions = np.empty((len(dataset), values.shape[1]), dtype=np.int64)
    predictions[rows] = values
    return predictions


def cramers_v(groups: list, layers: list):
    """Cramér's V of the contingency table group x layer; None when either has a single value."""
    group_values, layer_values = sorted(set(groups), key=str), sorted(set(layers))
    if len(group_values) < 2 or len(layer_values) < 2:
        return None
    table = np.zeros((len(group_values), len(layer_values)))
    for group, layer in zip(groups, layers):
        table[group_values.index(group), layer_values.index(layer)] += 1
    n = table.sum()
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = ((table - expected) ** 2 / expected).sum()
    return math.sqrt(chi2 / (n * (min(table.shape) - 1)))


def cramers_v_chance(groups: list, layers: list, rounds: int = 200, seed: int = 0):
    """The mean Cramér's V after shuffling the groups: what V reaches by chance on a split this size."""
    if cramers_v(groups, layers) is None:
        return None
    rng = np.random.default_rng(seed)
    groups = list(groups)
    return float(
        np.mean([cramers_v([groups[i] for i in rng.permutation(len(groups))], layers) for _ in range(rounds)])
    )


def build_selection_report(
    sentences, category_ids, predictions, low_candidates, mid_candidates, synthetic=False
) -> dict:
    """Group the per-sample predictions ([I, U, low, mid] rows) by overall / type / length / category."""
    predictions = np.asarray(predictions)
    if len(sentences) != len(predictions) or len(category_ids) != len(predictions):
        raise ValueError(
            f"{len(sentences)} sentences, {len(category_ids)} categories and {len(predictions)} predictions"
        )
    keys = {
        "overall": ["all"] * len(sentences),
        "expression type": [expression_type(s) for s in sentences],
        "expression length (words)": [length_bucket(s) for s in sentences],
        "category": [category_name(int(c), synthetic) for c in category_ids],
    }
    orders = {
        "overall": ["all"],
        "expression type": list(TYPE_ORDER),
        "expression length (words)": _length_order(),
        "category": sorted(set(keys["category"]), key=lambda name: int(name.split()[0])),
    }
    low, mid = predictions[:, 2].tolist(), predictions[:, 3].tolist()
    report = {
        "num_samples": len(sentences),
        "low_candidates": [int(layer) for layer in low_candidates],
        "mid_candidates": [int(layer) for layer in mid_candidates],
        "groupings": {},
        "cramers_v": {},
    }
    for grouping in GROUPINGS:
        groups = {}
        for name in orders[grouping]:
            index = [i for i, key in enumerate(keys[grouping]) if key == name]
            if not index:
                continue
            low_counts, mid_counts = Counter(low[i] for i in index), Counter(mid[i] for i in index)
            groups[name] = {
                "n": len(index),
                "low": {int(layer): low_counts.get(layer, 0) for layer in low_candidates},
                "mid": {int(layer): mid_counts.get(layer, 0) for layer in mid_candidates},
                "mIoU": float(
                    np.mean([iou_from_counts(int(predictions[i, 0]), int(predictions[i, 1])) for i in index])
                ),
            }
        report["groupings"][grouping] = groups
        if grouping != "overall":
            report["cramers_v"][grouping] = {
                "low": cramers_v(keys[grouping], low),
                "mid": cramers_v(keys[grouping], mid),
                "low_chance": cramers_v_chance(keys[grouping], low),
                "mid_chance": cramers_v_chance(keys[grouping], mid),
            }
    return report


def format_selection_markdown(report: dict) -> str:
    """One markdown table per grouping: share (count) of each candidate layer, and mIoU."""
    low_c, mid_c = report["low_candidates"], report["mid_candidates"]
    header = ["group", "n"] + [f"low L{layer}" for layer in low_c] + [f"mid L{layer}" for layer in mid_c] + ["mIoU"]
    parts = [f"Adaptive selection over {report['num_samples']} expressions: share (count) of each candidate layer."]
    for grouping, groups in report["groupings"].items():
        lines = [
            f"### {grouping}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * 2 + "---:|" * (len(header) - 2),
        ]
        for name, stats in groups.items():
            cells = [name, str(stats["n"])]
            for branch, candidates in (("low", low_c), ("mid", mid_c)):
                for layer in candidates:
                    count = stats[branch][layer]
                    cells.append(f"{100 * count / stats['n']:.1f}% ({count})")
            cells.append(f"{100 * stats['mIoU']:.2f}")
            lines.append("| " + " | ".join(cells) + " |")
        if grouping in report["cramers_v"]:
            v = report["cramers_v"][grouping]
            show = {k: "n/a" if x is None else f"{x:.3f}" for k, x in v.items()}
            lines += [
                "",
                f"Cramér's V (group vs chosen layer): low {show['low']} (chance {show['low_chance']}), "
                f"mid {show['mid']} (chance {show['mid_chance']}).",
            ]
        parts.append("\n".join(lines))
    parts.append(
        "mIoU x100 at the original image size. Cramér's V: 0 = the chosen layer does not depend on the group, "
        "1 = the group determines it; n/a when only one layer (or one group) occurs. On a finite split V is above "
        '0 even without any dependence: "chance" is its mean with the groups shuffled (200 shuffles), so only '
        "V well above chance says that the selection follows the group."
    )
    return "\n\n".join(parts) + "\n"


def report_to_json(report: dict) -> str:
    def keys_to_str(value):
        if isinstance(value, dict):
            return {str(k): keys_to_str(v) for k, v in value.items()}
        return value

    return json.dumps(keys_to_str(report), indent=2)
