"""The REFER layout (lichengunc/refer), what every RIS code base starts from.

    ROOT/<dataset>/refs(<split_by>).p   Python-2 pickle: a list of refs
    ROOT/<dataset>/instances.json       COCO style: images, annotations, categories
    IMAGE_ROOT/COCO_train2014_%012d.jpg

The image file is `instances.json`'s `images[image_id].file_name`, not the ref's `file_name` (that one
names a crop the REFER authors made). Each sentence of a ref becomes a row with
sample_id "<ref_id>_<sent_id>".
"""

import glob
import json
import os
import pickle

from .convert import make_record, normalize_split
from .report import MISSING_ANNOTATION

# Where the REFER repository and common forks put the COCO images, relative to ROOT.
_IMAGE_ROOT_CANDIDATES = ("images/mscoco/images/train2014", "images/train2014", "train2014")


def refs_files(folder):
    return sorted(glob.glob(os.path.join(glob.escape(folder), "refs(*).p")))


def is_refer_folder(folder):
    """True if `folder` holds refs(*).p files, or is a ROOT whose sub-folders do."""
    if refs_files(folder):
        return True
    return any(refs_files(os.path.join(folder, d)) for d in _subdirs(folder))


def _subdirs(folder):
    return sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))


def find_refer_files(root, dataset_config=None, split_by=None):
    """(refs path, instances.json path) for ROOT (or ROOT/<dataset_config>), with clear errors."""
    folder = os.path.join(root, dataset_config) if dataset_config and not refs_files(root) else root
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"No folder {folder}: the REFER layout is ROOT/<dataset>/refs(<split_by>).p with "
            f"dataset_config one of {[d for d in _subdirs(root) if refs_files(os.path.join(root, d))]}."
        )
    found = refs_files(folder)
    if not found:
        datasets_here = [d for d in _subdirs(folder) if refs_files(os.path.join(folder, d))]
        if datasets_here:
            raise ValueError(
                f"{folder} holds several REFER data sets {datasets_here}: pass dataset_config (e.g. 'refcoco')."
            )
        raise FileNotFoundError(f"No refs(<split_by>).p file in {folder}.")
    choices = [os.path.basename(p)[len("refs(") : -len(").p")] for p in found]
    if split_by is not None:
        refs_path = os.path.join(folder, f"refs({split_by}).p")
        if not os.path.isfile(refs_path):
            raise FileNotFoundError(f"No {os.path.basename(refs_path)} in {folder}; split_by can be one of {choices}.")
    elif len(found) == 1:
        refs_path = found[0]
    else:
        raise ValueError(f"{folder} has several splits {choices}: pass split_by (e.g. 'unc' or 'umd').")
    instances_path = os.path.join(folder, "instances.json")
    if not os.path.isfile(instances_path):
        raise FileNotFoundError(f"No instances.json next to {refs_path}.")
    return refs_path, instances_path


def find_image_root(root, image_root=None):
    if image_root is not None:
        if not os.path.isdir(image_root):
            raise FileNotFoundError(f"image_root {image_root} is not a folder.")
        return image_root
    for candidate in _IMAGE_ROOT_CANDIDATES:
        for base in (root, os.path.dirname(os.path.abspath(root))):
            if os.path.isdir(os.path.join(base, candidate)):
                return os.path.join(base, candidate)
    raise ValueError(
        f"Pass image_root, the folder of the COCO train2014 images (COCO_train2014_*.jpg); none of "
        f"{list(_IMAGE_ROOT_CANDIDATES)} exists under {root}."
    )


REFER_HINT = (
    "The REFER files come from the lichengunc/refer data (refs(<split_by>).p and instances.json of one data set); "
    "download them again if a file is damaged"
)


def load_refs(path):
    """The refs list. REFER's files are Python-2 pickles whose `str` are bytes: read them as UTF-8,
    and as latin-1 (never fails; the tokenizer's ftfy repairs the text) if that is not valid."""
    with open(path, "rb") as f:
        try:
            try:
                refs = pickle.load(f, encoding="utf-8")
            except UnicodeDecodeError:
                f.seek(0)
                refs = pickle.load(f, encoding="latin1")
        except Exception as err:  # truncated or not a pickle: EOFError, UnpicklingError, ValueError, ...
            raise ValueError(
                f"{path} cannot be read as a REFER refs pickle ({type(err).__name__}: {err}). {REFER_HINT}."
            ) from err
    if not isinstance(refs, list) or not all(isinstance(ref, dict) for ref in refs):
        raise ValueError(f"{path} does not hold a list of refs (dicts), but a {type(refs).__name__}. {REFER_HINT}.")
    return refs


def load_instances(path):
    """instances.json as {image id: image entry}, {annotation id: annotation}, checked field by field."""
    try:
        with open(path, encoding="utf-8") as f:
            instances = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}). {REFER_HINT}.") from err
    if not isinstance(instances, dict):
        raise ValueError(f"{path} must be a JSON object with 'images' and 'annotations'. {REFER_HINT}.")
    for key in ("images", "annotations"):
        if not isinstance(instances.get(key), list):
            raise ValueError(
                f"{path} has no '{key}' list (it has {sorted(instances)}); it must be the COCO-style instances.json of "
                f"the REFER data set. {REFER_HINT}."
            )
    images = {}
    for index, img in enumerate(instances["images"]):
        _require(img, ("id", "file_name"), f"{path}: images[{index}]", "the COCO image entry")
        images[img["id"]] = img
    anns = {}
    for index, ann in enumerate(instances["annotations"]):
        _require(ann, ("id", "segmentation"), f"{path}: annotations[{index}]", "the COCO annotation")
        anns[ann["id"]] = ann
    return images, anns


def _require(item, fields, where, what):
    if not isinstance(item, dict):
        raise ValueError(f"{where} is a {type(item).__name__}, expected {what} (an object). {REFER_HINT}.")
    missing = [field for field in fields if field not in item]
    if missing:
        name = f" (id {item['id']})" if "id" in item else ""
        raise ValueError(f"{where}{name} has no {' / '.join(repr(f) for f in missing)} field. {REFER_HINT}.")


def _sentence_text(sentence, field):
    text = sentence.get(field)
    if text is None:  # the other spelling of the sentence, when a file lacks the one asked for
        text = sentence.get("sent", sentence.get("raw"))
    return text


def refer_records(refs_path, instances_path, image_root, splits=None, sentence_field="sent"):
    """{split: [record]} for the refs of the wanted splits (all if None)."""
    images, anns = load_instances(instances_path)
    by_split = {}
    for index, ref in enumerate(load_refs(refs_path)):
        where = f"{refs_path}: ref {ref['ref_id']}" if "ref_id" in ref else f"{refs_path}: refs[{index}]"
        _require(ref, ("ref_id", "ann_id", "image_id", "split", "sentences"), where, "a REFER ref")
        for sentence in ref["sentences"]:
            if not isinstance(sentence, dict) or "sent_id" not in sentence or not ({"sent", "raw"} & set(sentence)):
                raise ValueError(
                    f"{where}: a sentence lacks 'sent_id' or its text ('sent' / 'raw'): {sentence!r}. {REFER_HINT}."
                )
        split = normalize_split(ref["split"], where=refs_path)
        if splits is not None and split not in splits:
            continue
        ann, img = anns.get(ref["ann_id"]), images.get(ref["image_id"])
        problem = None
        if ann is None or img is None:
            missing = f"annotation {ref['ann_id']}" if ann is None else f"image {ref['image_id']}"
            problem = (MISSING_ANNOTATION, f"{missing} is not in {instances_path}")
        by_split.setdefault(split, []).append(
            make_record(
                split=split,
                ref_id=ref["ref_id"],
                ann_id=ref["ann_id"],
                image_id=ref["image_id"],
                category_id=ref.get("category_id", ann.get("category_id", -1) if ann else -1),
                sentences=[(s["sent_id"], _sentence_text(s, sentence_field)) for s in ref["sentences"]],
                sample_prefix=ref["ref_id"],
                image={"path": os.path.abspath(os.path.join(image_root, img["file_name"])) if img else None},
                image_key=ref["image_id"],
                segmentation=ann["segmentation"] if ann else None,
                bbox=ann.get("bbox") if ann else None,
                width=img.get("width") if img else None,
                height=img.get("height") if img else None,
                source="refer",
                problem=problem,
            )
        )
    return by_split
