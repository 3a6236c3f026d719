"""A tiny data set in the gRefCOCO layout, with masks known by construction (numpy slices).

image 201 (40x32): ann 2001 rectangle A, ann 2002 rectangle B, ann 2003 crowd RLE, ann 2004 polygon
                   overlapping A (two annotations whose union is not their sum)
image 202 (36x30): ann 2005 rectangle; its JPEG is MISSING on disk (ref 26 must be reported)

ref 20 train  [2001]         one target        "the left box"
ref 21 train  [2001, 2002]   two targets       "both boxes", "the two boxes"   mask A | B
ref 22 val    [-1] + no_target: true            "the dog"                       empty
ref 23 val    [-1] (no flag)                    "a cat on the sofa"             empty
ref 24 testA  [2002, 2003]   crowd skipped     "the right box"                 mask B
ref 25 testB  [2001, 2004]   overlapping       "the overlapping shapes"        mask A | D
ref 26 testA  [2005]         image missing     "the box"                       reported, ref id 26
ref 27 train  [-1, 2001]     contradictory     "odd"                           reported (bad_target)
"""

import json
import os

import numpy as np
from fixtures_data import coco_name, jpeg_bytes, py2_pickle

IMAGES = {201: (40, 32), 202: (36, 30)}


def _box_mask(width, height, *boxes):
    mask = np.zeros((height, width), dtype=np.uint8)
    for y0, y1, x0, x1 in boxes:
        mask[y0:y1, x0:x1] = 1
    return mask


A = _box_mask(40, 32, (4, 14, 2, 12))  # polygon [2,4, 12,4, 12,14, 2,14]
B = _box_mask(40, 32, (6, 20, 25, 35))  # polygon [25,6, 35,6, 35,20, 25,20]
CROWD = _box_mask(40, 32, (24, 30, 10, 20))
D = _box_mask(40, 32, (10, 18, 8, 18))  # overlaps A on rows 10-13, cols 8-11


def _poly(y0, y1, x0, x1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _rle(mask):
    flat, counts, current, run = mask.T.reshape(-1), [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


ANNOTATIONS = [
    {"id": 2001, "image_id": 201, "category_id": 1, "segmentation": _poly(4, 14, 2, 12), "iscrowd": 0},
    {"id": 2002, "image_id": 201, "category_id": 1, "segmentation": _poly(6, 20, 25, 35), "iscrowd": 0},
    {"id": 2003, "image_id": 201, "category_id": 2, "segmentation": _rle(CROWD), "iscrowd": 1},
    {"id": 2004, "image_id": 201, "category_id": 3, "segmentation": _poly(10, 18, 8, 18), "iscrowd": 0},
    {"id": 2005, "image_id": 202, "category_id": 1, "segmentation": _poly(2, 10, 2, 10), "iscrowd": 0},
]
for _ann in ANNOTATIONS:
    _ann["bbox"] = [0, 0, 1, 1]  # per-object boxes; a union's box is recomputed from its mask
    _ann["area"] = 1.0


def _ref(ref_id, ann_ids, split, sentences, no_target=None, image_id=201):
    ref = {
        "ref_id": ref_id,
        "ann_id": ann_ids,
        "image_id": image_id,
        "category_id": [-1] if ann_ids == [-1] else [1] * len(ann_ids),
        "split": split,
        "sent_ids": [s[0] for s in sentences],
        "sentences": [{"tokens": t.split(), "raw": t, "sent": t, "sent_id": i} for i, t in sentences],
        "file_name": f"COCO_train2014_{image_id:012d}_{ref_id}.jpg",
    }
    if no_target is not None:
        ref["no_target"] = no_target
    return ref


REFS = [
    _ref(20, [2001], "train", [(200, "the left box")], no_target=False),
    _ref(21, [2001, 2002], "train", [(210, "both boxes"), (211, "the two boxes")], no_target=False),
    _ref(22, [-1], "val", [(220, "the dog")], no_target=True),
    _ref(23, [-1], "val", [(230, "a cat on the sofa")]),
    _ref(24, [2002, 2003], "testA", [(240, "the right box")]),
    _ref(25, [2001, 2004], "testB", [(250, "the overlapping shapes")]),
    _ref(26, [2005], "testA", [(260, "the box")], image_id=202),
    _ref(27, [-1, 2001], "train", [(270, "odd")]),
    _ref(28, [-1], "train", [(280, "the purple elephant")], no_target=True),
]

# sample_id -> (split, mask, no_target, num_targets) of every row that must be loaded
EXPECTED = {
    "20_200": ("train", A, False, 1),
    "21_210": ("train", A | B, False, 2),
    "21_211": ("train", A | B, False, 2),
    "28_280": ("train", np.zeros_like(A), True, 0),
    "22_220": ("val", np.zeros_like(A), True, 0),
    "23_230": ("val", np.zeros_like(A), True, 0),
    "24_240": ("testA", B, False, 1),
    "25_250": ("testB", A | D, False, 2),
}
REPORTED = {26: "missing_image", 27: "bad_target"}


def write_grefcoco(root, refs_format="json", split_by="unc"):
    """ROOT/grefcoco/grefs(<split_by>).<json|p> + instances.json, JPEGs in ROOT/images/train2014. Returns root."""
    image_root = os.path.join(root, "images", "train2014")
    os.makedirs(image_root, exist_ok=True)
    with open(os.path.join(image_root, coco_name(201)), "wb") as f:  # image 202 is left out on purpose
        f.write(jpeg_bytes(*IMAGES[201], seed=201))
    folder = os.path.join(root, "grefcoco")
    os.makedirs(folder, exist_ok=True)
    if refs_format == "json":
        with open(os.path.join(folder, f"grefs({split_by}).json"), "w", encoding="utf-8") as f:
            json.dump(REFS, f)
    else:
        with open(os.path.join(folder, f"grefs({split_by}).p"), "wb") as f:
            f.write(py2_pickle(REFS))
    images = [{"id": i, "file_name": coco_name(i), "width": w, "height": h} for i, (w, h) in IMAGES.items()]
    with open(os.path.join(folder, "instances.json"), "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": ANNOTATIONS, "categories": [{"id": 1, "name": "box"}]}, f)
    return root
