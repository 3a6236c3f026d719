"""The gRefCOCO layout (generalized referring segmentation: an expression names 0, 1 or several objects).

    ROOT/grefcoco/grefs(<split_by>).json   (or grefs(<split_by>).p, a pickle)   a list of refs
    ROOT/grefcoco/instances.json           COCO style: images, annotations, categories
    ROOT/images/train2014/COCO_train2014_%012d.jpg   (or image_root)

A ref is a REFER ref whose `ann_id` and `category_id` are lists: one or several annotation ids, or
`[-1]` when the expression names nothing (a `no_target: true` field may say the same). The mask of a
ref is the union of its annotations' masks, crowd annotations skipped as ReLA does; a no-target ref has
an empty mask. Each sentence becomes a canonical row with sample_id "<ref_id>_<sent_id>", `no_target`
and `num_targets` set; rows that cannot be built are dropped and reported by ref id.
"""

import glob
import json
import os
import re

from .convert import make_record, normalize_split
from .refer import load_refs
from .report import BAD_TARGET, EMPTY_MASK, MISSING_ANNOTATION

DATASET_FOLDER = "grefcoco"
_GREFS = re.compile(r"grefs\((.+)\)\.(json|p)$")


def grefs_files(folder):
    """grefs(*).json and grefs(*).p files in `folder`."""
    pattern = os.path.join(glob.escape(folder), "grefs(*)*")
    return sorted(p for p in glob.glob(pattern) if _GREFS.search(os.path.basename(p)))


def is_grefcoco_folder(folder):
    return bool(grefs_files(folder))


def find_grefcoco_files(folder, split_by=None):
    """(grefs path, instances.json path) in `folder`; a `.json` is preferred over a `.p` of the same split_by."""
    found = grefs_files(folder)
    if not found:
        raise FileNotFoundError(f"No grefs(<split_by>).json or grefs(<split_by>).p file in {folder}.")
    by_split_by = {}
    for path in found:
        name, ext = _GREFS.search(os.path.basename(path)).groups()
        by_split_by.setdefault(name, {})[ext] = path
    if split_by is None:
        if len(by_split_by) > 1:
            raise ValueError(f"{folder} has several splits {sorted(by_split_by)}: pass split_by (e.g. 'unc').")
        split_by = next(iter(by_split_by))
    if split_by not in by_split_by:
        raise FileNotFoundError(
            f"No grefs({split_by}).json or grefs({split_by}).p in {folder}; split_by can be one of {sorted(by_split_by)}."
        )
    files = by_split_by[split_by]
    refs_path = files.get("json", files.get("p"))
    instances_path = os.path.join(folder, "instances.json")
    if not os.path.isfile(instances_path):
        raise FileNotFoundError(f"No instances.json next to {refs_path}.")
    return refs_path, instances_path


def _sentence(sentence, field):
    text = sentence.get(field)
    return sentence.get("sent", sentence.get("raw")) if text is None else text  # the other spelling, if one lacks


def load_grefs(path):
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return load_refs(path)


def _as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _targets(ref, anns, instances_path):
    """(annotations to unite, no_target, problem) of one ref."""
    ids = [int(i) for i in _as_list(ref.get("ann_id"))]
    flagged = bool(ref.get("no_target", False))
    if ids in ([], [-1]):
        return [], True, None
    if -1 in ids or flagged:
        detail = (
            f"ann_id {ids} mixes -1 (no target) with annotations"
            if -1 in ids
            else (f"no_target is true but ann_id lists annotations {ids}")
        )
        return [], False, (BAD_TARGET, detail)
    missing = [i for i in ids if i not in anns]
    if missing:
        return [], False, (MISSING_ANNOTATION, f"annotation(s) {missing} not in {instances_path}")
    listed = [anns[i] for i in ids]
    kept = [ann for ann in listed if not ann.get("iscrowd", 0)]
    if not kept:
        return [], False, (EMPTY_MASK, f"every listed annotation {ids} is a crowd annotation")
    return kept, False, None


def grefcoco_records(refs_path, instances_path, image_root, splits=None, sentence_field="sent"):
    """{split: [record]} for the refs of the wanted splits (all if None)."""
    with open(instances_path, encoding="utf-8") as f:
        instances = json.load(f)
    images = {img["id"]: img for img in instances["images"]}
    anns = {ann["id"]: ann for ann in instances["annotations"]}
    by_split = {}
    for ref in load_grefs(refs_path):
        split = normalize_split(ref["split"], where=refs_path)
        if splits is not None and split not in splits:
            continue
        targets, no_target, problem = _targets(ref, anns, instances_path)
        img = images.get(ref["image_id"])
        if img is None and problem is None:
            problem = (MISSING_ANNOTATION, f"image {ref['image_id']} is not in {instances_path}")
        categories = [int(c) for c in _as_list(ref.get("category_id"))]
        first = targets[0] if targets else None
        by_split.setdefault(split, []).append(
            make_record(
                split=split,
                ref_id=ref["ref_id"],
                ann_id=first["id"] if first else -1,
                image_id=ref["image_id"],
                category_id=categories[0] if categories else (first.get("category_id", -1) if first else -1),
                sentences=[(s["sent_id"], _sentence(s, sentence_field)) for s in ref["sentences"]],
                sample_prefix=ref["ref_id"],
                image={"path": os.path.abspath(os.path.join(image_root, img["file_name"])) if img else None},
                image_key=ref["image_id"],
                segmentation=first["segmentation"] if first else None,
                more_segmentations=[ann["segmentation"] for ann in targets[1:]],
                bbox=first.get("bbox") if first else None,
                width=img.get("width") if img else None,
                height=img.get("height") if img else None,
                source="grefcoco",
                problem=problem,
                no_target=no_target,
            )
        )
    return by_split
