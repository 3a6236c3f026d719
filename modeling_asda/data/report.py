"""Problems found while converting a referring-segmentation data set, kept so they are never silent.

A bad sample (missing or corrupt image, undecodable or empty mask, empty sentence, ...) never stops a
conversion: its row is dropped and one entry per dropped row is recorded here, with the ids that let a
user find it in the source files. Callers print `report.format()` or save `report.to_json(path)`.
"""

import json
from collections import Counter

MISSING_IMAGE = "missing_image"  # the image file does not exist
CORRUPT_IMAGE = "corrupt_image"  # the image cannot be decoded (truncated, not an image, ...)
IMAGE_SIZE_MISMATCH = "image_size_mismatch"  # the annotation's height/width differ from the image's
MISSING_ANNOTATION = "missing_annotation"  # the ref points at an annotation or image the metadata lacks
BAD_SEGMENTATION = "bad_segmentation"  # the segmentation cannot be decoded into a mask
EMPTY_MASK = "empty_mask"  # the decoded mask has no foreground pixel
EMPTY_SENTENCE = "empty_sentence"  # the expression is empty or whitespace
DUPLICATE_SAMPLE = "duplicate_sample_id"  # a second row with an already used sample_id
BAD_TARGET = "bad_target"  # a gRefCOCO ref whose target list contradicts itself (no_target with annotations)

REASONS = (
    MISSING_IMAGE,
    CORRUPT_IMAGE,
    IMAGE_SIZE_MISMATCH,
    MISSING_ANNOTATION,
    BAD_SEGMENTATION,
    EMPTY_MASK,
    EMPTY_SENTENCE,
    DUPLICATE_SAMPLE,
    BAD_TARGET,
)

_FIELDS = ("reason", "split", "sample_id", "ref_id", "ann_id", "image_id", "detail")


class ProblemReport:
    """Dropped rows with their reason. One entry per dropped row (a ref whose image is missing gives one
    entry per sentence), so `counts()` are numbers of rows lost."""

    def __init__(self, problems=None):
        self.problems = []
        # Refs / images found in the training split and an evaluation split: {"train/val": {"ref_ids", "image_ids"}}.
        # Not dropped (some official splits share images by design), but always reported.
        self.overlaps = {}
        for problem in problems or ():
            self.add(**problem)

    def add(self, reason, *, split=None, sample_id=None, ref_id=None, ann_id=None, image_id=None, detail=""):
        if reason not in REASONS:
            raise ValueError(f"Unknown problem reason {reason!r}; expected one of {REASONS}.")
        self.problems.append(
            {
                "reason": reason,
                "split": split,
                "sample_id": sample_id,
                "ref_id": ref_id,
                "ann_id": ann_id,
                "image_id": image_id,
                "detail": str(detail),
            }
        )

    def extend(self, other):
        for problem in other.problems if isinstance(other, ProblemReport) else other:
            self.add(**{key: problem.get(key) for key in _FIELDS if key in problem})

    def __len__(self):
        return len(self.problems)

    def __iter__(self):
        return iter(self.problems)

    def counts(self, split=None):
        """Number of dropped rows per reason (optionally for one split)."""
        return dict(Counter(p["reason"] for p in self.problems if split is None or p["split"] == split))

    def summary(self):
        """JSON-ready summary: the total, per reason the count and the ref/sample ids, and every entry."""
        by_reason = {}
        for problem in self.problems:
            entry = by_reason.setdefault(problem["reason"], {"count": 0, "ref_ids": {}, "sample_ids": []})
            entry["count"] += 1
            if problem["ref_id"] is not None:
                entry["ref_ids"][problem["ref_id"]] = None  # an ordered set
            if problem["sample_id"] is not None:
                entry["sample_ids"].append(problem["sample_id"])
        for entry in by_reason.values():
            entry["ref_ids"] = list(entry["ref_ids"])
        return {
            "num_dropped_rows": len(self.problems),
            "by_reason": by_reason,
            "problems": list(self.problems),
            "shared_between_splits": self.overlaps,
        }

    def to_json(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.summary(), f, indent=2)

    def format(self, max_ids=10):
        """Human-readable summary, listing at most `max_ids` ids per reason."""
        lines = [f"{len(self.problems)} row(s) dropped:" if self.problems else "No problems: no row was dropped."]
        for reason, entry in sorted(self.summary()["by_reason"].items()):
            lines.append(
                f"  {reason}: {entry['count']} row(s); ref ids: {_short(entry['ref_ids'], max_ids)}; "
                f"sample ids: {_short(entry['sample_ids'], max_ids)}"
            )
        lines += format_overlaps(self.overlaps, max_ids)
        return "\n".join(lines)

    def __repr__(self):
        return f"ProblemReport({self.counts()})"


def split_overlaps(dataset) -> dict:
    """Refs and images of the training split that also appear in another split (ids < 0 mean "none")."""
    if "train" not in dataset:
        return {}

    def ids(split, column):
        return {int(value) for value in dataset[split][column] if value is not None and value >= 0}

    train_refs, train_images = ids("train", "ref_id"), ids("train", "image_id")
    overlaps = {}
    for split in dataset:
        if split == "train":
            continue
        refs, images = sorted(train_refs & ids(split, "ref_id")), sorted(train_images & ids(split, "image_id"))
        if refs or images:
            overlaps[f"train/{split}"] = {"ref_ids": refs, "image_ids": images}
    return overlaps


def format_overlaps(overlaps, max_ids=10) -> list[str]:
    return [
        f"  shared between {pair}: {len(shared['ref_ids'])} ref(s) ({_short(shared['ref_ids'], max_ids)}), "
        f"{len(shared['image_ids'])} image(s) ({_short(shared['image_ids'], max_ids)}): evaluation on them is not "
        "held out"
        for pair, shared in overlaps.items()
    ]


def _short(ids, max_ids):
    if not ids:
        return "-"
    return ", ".join(str(i) for i in ids[:max_ids]) + (" ..." if len(ids) > max_ids else "")
