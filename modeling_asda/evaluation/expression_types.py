"""Results by what the expression says: relation / position / attributes only, and with or without a shape word.

The types are read from the words (`selection_report.expression_type`), so they work on any data set;
"shape word" is a cut across them: does the expression name the object's shape, or only its colour, size
or place? A model that reads shapes poorly shows it in that row.
"""

import re

import numpy as np

from .metrics import summarize
from .selection_report import TYPE_ORDER, expression_type

# The built-in generator's shapes, the REFER shapes generator's, and a few common others.
SHAPE_WORDS = (
    "circle",
    "square",
    "triangle",
    "star",
    "hexagon",
    "pentagon",
    "diamond",
    "cross",
    "oval",
    "rectangle",
    "ellipse",
    "heart",
)
_SHAPE = re.compile(r"\b(" + "|".join(SHAPE_WORDS) + r")s?\b")
WITH_SHAPE = "with a shape word"
WITHOUT_SHAPE = "no shape word"
GROUP_ORDER = (*TYPE_ORDER, WITH_SHAPE, WITHOUT_SHAPE)
COLUMNS = ("mIoU", "Prec@0.5", "Prec@0.9")


def expression_groups(text: str) -> tuple[str, str]:
    return expression_type(text), WITH_SHAPE if _SHAPE.search(text.lower()) else WITHOUT_SHAPE


def metrics_by_expression_type(sentences, intersections, unions) -> dict:
    """{group: {"count": n, "mIoU": ..., "Prec@0.5": ..., ...}} for the groups present."""
    intersections, unions = np.asarray(intersections), np.asarray(unions)
    if not len(sentences) == len(intersections) == len(unions):
        raise ValueError(f"got {len(sentences)} sentences for {len(intersections)} / {len(unions)} counts")
    members = {}
    for index, text in enumerate(sentences):
        for group in expression_groups(text):
            members.setdefault(group, []).append(index)
    out = {}
    for group in GROUP_ORDER:
        if group in members:
            rows = np.asarray(members[group])
            out[group] = dict(count=len(rows), **summarize(intersections[rows], unions[rows]))
    return out


def format_by_type_table(by_split: dict) -> str:
    """Markdown: one row per group, (share, mIoU, Prec@0.5, Prec@0.9) per split, values x100."""
    splits = list(by_split)
    header = "| expression type | " + " | ".join(f"{s} n | {s} " + f" | {s} ".join(COLUMNS) for s in splits) + " |"
    lines = [header, "|---|" + "---:|" * (len(splits) * (len(COLUMNS) + 1))]
    for group in GROUP_ORDER:
        if not any(group in by_split[s] for s in splits):
            continue
        cells = []
        for split in splits:
            metrics = by_split[split].get(group)
            cells.append(str(metrics["count"]) if metrics else "-")
            cells += [f"{100 * metrics[c]:.2f}" if metrics else "-" for c in COLUMNS]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# How far above a language-blind answer position / relation expressions must score to count as learned.
UNLEARNED_MARGIN = 0.15


def unlearned_word_types(
    by_split: dict, blind_miou: dict, margin: float = UNLEARNED_MARGIN, groups=("position", "relation")
):
    """{split: [groups]} whose mIoU is less than `margin` above a language-blind answer's mIoU on that split.

    A run can learn colours and shapes and never the position or relation words (a demo run did, with one
    thread); those rows then score like a random object of the scene while the overall number still looks
    like progress. `blind_miou` is {split: mIoU of the language-blind baseline}; splits without one are skipped.
    """
    flagged = {}
    for split, groups_of_split in by_split.items():
        blind = blind_miou.get(split)
        if blind is None:
            continue
        names = [g for g in groups if g in groups_of_split and groups_of_split[g]["mIoU"] < blind + margin]
        if names:
            flagged[split] = names
    return flagged
