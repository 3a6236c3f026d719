"""Tiny referring-segmentation data sets written in each format users arrive with.

All formats describe the same objects (OBJECTS), whose masks are known here by construction, as
numpy slices, independently of the code under test:

    image 101 (40x32): ref 1 / ann 1001 rectangle (val), ref 2 / ann 1002 L-shaped polygon (testA)
    image 102 (36x30): ref 3 / ann 1003 two OVERLAPPING rectangles (train),
                       ref 4 / ann 1004 RLE, iscrowd (testB), ref 5 / ann 1005 rectangle (val)

lmms-lab holds one flat polygon per row and no train split, so it gets refs 1, 2 and 5 only.
`write_refer(..., with_problems=True)` adds refs that must each be dropped and reported (PROBLEMS).
"""

import io
import json
import os
import struct

import numpy as np
from PIL import Image

IMAGES = {101: (40, 32), 102: (36, 30)}  # image id -> (width, height)


def coco_name(image_id):
    return f"COCO_train2014_{image_id:012d}.jpg"


def _mask(image_id, *boxes):
    """Union of [y0:y1, x0:x1] boxes on the image's canvas."""
    width, height = IMAGES.get(image_id, (40, 32))
    mask = np.zeros((height, width), dtype=np.uint8)
    for y0, y1, x0, x1 in boxes:
        mask[y0:y1, x0:x1] = 1
    return mask


def _rle_counts(mask):
    """Uncompressed COCO RLE of `mask`, written out by hand: runs down the columns, starting with 0."""
    flat = mask.T.reshape(-1)
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return counts


def _object(ref_id, ann_id, image_id, category_id, split, segmentation, mask, bbox, sentences, iscrowd=0):
    return {
        "ref_id": ref_id,
        "ann_id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "split": split,
        "segmentation": segmentation,
        "mask": mask,
        "bbox": bbox,
        "sentences": sentences,  # [(sent_id, raw, sent)]
        "iscrowd": iscrowd,
    }


_BLOB = _mask(102, (20, 26, 22, 30), (24, 28, 5, 9))

OBJECTS = [
    _object(
        1,
        1001,
        101,
        1,
        "val",
        [[4, 5, 20, 5, 20, 15, 4, 15]],
        _mask(101, (5, 15, 4, 20)),
        [4, 5, 16, 10],
        [(11, "Left red box.", "left red box"), (12, "The box on the left", "the box on the left")],
    ),
    _object(
        2,
        1002,
        101,
        2,
        "testA",
        [[22, 2, 36, 2, 36, 8, 28, 8, 28, 20, 22, 20]],
        _mask(101, (2, 8, 22, 36), (2, 20, 22, 28)),
        [22, 2, 14, 18],
        [(21, "The L-shaped café sign", "the l shaped café sign")],
    ),
    _object(
        3,
        1003,
        102,
        3,
        "train",
        [[2, 2, 14, 2, 14, 12, 2, 12], [8, 6, 20, 6, 20, 18, 8, 18]],
        _mask(102, (2, 12, 2, 14), (6, 18, 8, 20)),
        [2, 2, 18, 16],
        [(31, "two boxes", "two boxes"), (32, "Overlapping boxes!", "overlapping boxes")],
    ),
    _object(
        4,
        1004,
        102,
        1,
        "testB",
        {"size": [30, 36], "counts": _rle_counts(_BLOB)},
        _BLOB,
        [5, 20, 25, 8],
        [(41, "crowd blob", "crowd blob")],
        iscrowd=1,
    ),
    _object(
        5,
        1005,
        102,
        2,
        "val",
        [[24, 3, 33, 3, 33, 14, 24, 14]],
        _mask(102, (3, 14, 24, 33)),
        [24, 3, 9, 11],
        [(51, "right box", "right box")],
    ),
]

LMMS_SPLITS = {"val": [1, 5], "testA": [2]}  # lmms-lab has no train; refs 3, 4 need several parts / RLE

# Refs that must be dropped, added by write_refer(with_problems=True): ref id -> (reason, sample ids).
PROBLEMS = {
    6: ("missing_image", ["6_61"]),
    7: ("corrupt_image", ["7_71", "7_72"]),
    8: ("empty_mask", ["8_81"]),
    9: ("bad_segmentation", ["9_91"]),
    10: ("empty_sentence", ["10_101"]),  # its other sentence, 10_102, is kept
    11: ("missing_annotation", ["11_111"]),
    12: ("image_size_mismatch", ["12_121"]),
}


def expected_rows(ref_ids=None):
    """{sample_id: expected canonical values} for the objects (all, or the given ref ids)."""
    rows = {}
    for obj in OBJECTS:
        if ref_ids is not None and obj["ref_id"] not in ref_ids:
            continue
        for sent_id, _, sent in obj["sentences"]:
            width, height = IMAGES[obj["image_id"]]
            rows[f"{obj['ref_id']}_{sent_id}"] = {
                "image_id": obj["image_id"],
                "ref_id": obj["ref_id"],
                "ann_id": obj["ann_id"],
                "sent_id": sent_id,
                "category_id": obj["category_id"],
                "split": obj["split"],
                "sentence": sent,
                "mask": obj["mask"],
                "bbox": obj["bbox"],
                "width": width,
                "height": height,
            }
    return rows


def jpeg_bytes(width, height, seed):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_images(folder):
    """The COCO-named JPEGs of IMAGES; returns {image id: jpeg bytes}."""
    os.makedirs(folder, exist_ok=True)
    data = {}
    for image_id, (width, height) in IMAGES.items():
        data[image_id] = jpeg_bytes(width, height, seed=image_id)
        with open(os.path.join(folder, coco_name(image_id)), "wb") as f:
            f.write(data[image_id])
    return data


# --- REFER ----------------------------------------------------------------------------------------


def py2_pickle(obj):
    """`obj` pickled as Python 2's cPickle (protocol 2) writes it: str as byte strings (BINSTRING),
    which Python 3 can only read with an encoding."""
    out = bytearray(b"\x80\x02")

    def dump(value):
        if value is None:
            out.extend(b"N")
        elif isinstance(value, bool):
            out.extend(b"\x88" if value else b"\x89")
        elif isinstance(value, int):
            out.extend(b"J" + struct.pack("<i", value))
        elif isinstance(value, float):
            out.extend(b"G" + struct.pack(">d", value))
        elif isinstance(value, str):
            data = value.encode("utf-8")
            out.extend((b"U" + bytes([len(data)]) if len(data) < 256 else b"T" + struct.pack("<i", len(data))) + data)
        elif isinstance(value, (list, tuple)):
            out.extend(b"](")
            for item in value:
                dump(item)
            out.extend(b"e")
        elif isinstance(value, dict):
            out.extend(b"}(")
            for key, item in value.items():
                dump(key)
                dump(item)
            out.extend(b"u")
        else:
            raise TypeError(type(value))

    dump(obj)
    out.extend(b".")
    return bytes(out)


def _ref(ref_id, ann_id, image_id, category_id, split, sentences):
    return {
        "ref_id": ref_id,
        "ann_id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "split": split,
        "sent_ids": [s[0] for s in sentences],
        "sentences": [
            {"tokens": sent.split(), "raw": raw, "sent": sent, "sent_id": sent_id} for sent_id, raw, sent in sentences
        ],
        # The REFER crop name: NOT the image file (a loader using it would find nothing).
        "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
    }


def _ann(ann_id, image_id, category_id, segmentation, bbox, iscrowd=0):
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": segmentation,
        "bbox": bbox,
        "area": float(bbox[2] * bbox[3]),
        "iscrowd": iscrowd,
    }


def _image_info(image_id, width, height):
    return {"id": image_id, "file_name": coco_name(image_id), "width": width, "height": height}


def write_refer(root, dataset="refcoco", split_by="unc", with_problems=False):
    """ROOT/<dataset>/refs(<split_by>).p + instances.json, JPEGs in ROOT/images/mscoco/images/train2014.

    Returns (root, image_root).
    """
    image_root = os.path.join(root, "images", "mscoco", "images", "train2014")
    write_images(image_root)
    refs = [
        _ref(o["ref_id"], o["ann_id"], o["image_id"], o["category_id"], o["split"], o["sentences"]) for o in OBJECTS
    ]
    anns = [
        _ann(o["ann_id"], o["image_id"], o["category_id"], o["segmentation"], o["bbox"], o["iscrowd"]) for o in OBJECTS
    ]
    images = [_image_info(i, w, h) for i, (w, h) in IMAGES.items()]
    if with_problems:
        rect = [[4, 5, 20, 5, 20, 15, 4, 15]]
        images += [_image_info(103, 40, 32), _image_info(104, 40, 32), _image_info(105, 50, 50)]
        with open(os.path.join(image_root, coco_name(104)), "wb") as f:
            f.write(jpeg_bytes(40, 32, seed=104)[:300])  # truncated: the header survives, the pixels do not
        with open(os.path.join(image_root, coco_name(105)), "wb") as f:
            f.write(jpeg_bytes(40, 32, seed=105))  # instances.json says 50x50
        anns += [
            _ann(1006, 103, 1, rect, [4, 5, 16, 10]),
            _ann(1007, 104, 1, rect, [4, 5, 16, 10]),
            _ann(1008, 101, 1, [[-20, -20, -10, -20, -10, -10, -20, -10]], [0, 0, 1, 1]),  # outside the image
            _ann(1009, 101, 1, [[1, 2, 3]], [0, 0, 1, 1]),  # odd number of coordinates
            _ann(1010, 101, 1, rect, [4, 5, 16, 10]),
            _ann(1012, 105, 1, rect, [4, 5, 16, 10]),
        ]
        refs += [
            _ref(6, 1006, 103, 1, "train", [(61, "missing image", "missing image")]),
            _ref(7, 1007, 104, 1, "train", [(71, "corrupt", "corrupt"), (72, "corrupt too", "corrupt too")]),
            _ref(8, 1008, 101, 1, "val", [(81, "nothing", "nothing")]),
            _ref(9, 1009, 101, 1, "val", [(91, "bad polygon", "bad polygon")]),
            _ref(10, 1010, 101, 1, "train", [(101, "   ", "   "), (102, "kept sentence", "kept sentence")]),
            _ref(11, 9999, 101, 1, "train", [(111, "no annotation", "no annotation")]),
            _ref(12, 1012, 105, 1, "train", [(121, "wrong size", "wrong size")]),
        ]
    folder = os.path.join(root, dataset)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"refs({split_by}).p"), "wb") as f:
        f.write(py2_pickle(refs))
    with open(os.path.join(folder, "instances.json"), "w", encoding="utf-8") as f:
        json.dump(
            {"images": images, "annotations": anns, "categories": [{"id": i, "name": f"c{i}"} for i in (1, 2, 3)]}, f
        )
    return root, image_root


def write_refer_benchmark(root, num_images=100, refs_per_image=3, sentences_per_ref=3, size=(640, 480)):
    """A larger REFER fixture for throughput measurements: random polygons on COCO-sized JPEGs."""
    rng = np.random.default_rng(0)
    image_root = os.path.join(root, "images", "mscoco", "images", "train2014")
    os.makedirs(image_root, exist_ok=True)
    os.makedirs(os.path.join(root, "refcoco"), exist_ok=True)
    width, height = size
    refs, anns, images = [], [], []
    for i in range(num_images):
        image_id = 1000 + i
        with open(os.path.join(image_root, coco_name(image_id)), "wb") as f:
            f.write(jpeg_bytes(width, height, seed=i))
        images.append(_image_info(image_id, width, height))
        for j in range(refs_per_image):
            ann_id = image_id * 10 + j
            centre = rng.uniform([60, 60], [width - 60, height - 60])
            angles = np.sort(rng.uniform(0, 2 * np.pi, 12))
            radii = rng.uniform(20, 60, 12)
            poly = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], 1).ravel()
            anns.append(_ann(ann_id, image_id, 1, [poly.round(2).tolist()], [0.0, 0.0, 1.0, 1.0]))
            sentences = [
                (ann_id * 10 + k, f"object {j} sentence {k}", f"object {j} sentence {k}")
                for k in range(sentences_per_ref)
            ]
            refs.append(_ref(ann_id, ann_id, image_id, 1, "train", sentences))
    with open(os.path.join(root, "refcoco", "refs(unc).p"), "wb") as f:
        f.write(py2_pickle(refs))
    with open(os.path.join(root, "refcoco", "instances.json"), "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "c1"}]}, f)
    return root, image_root


# --- lmms-lab -------------------------------------------------------------------------------------


def write_lmms(folder):
    """data/<split>-00000-of-00001.parquet with lmms-lab/RefCOCO's columns and embedded JPEGs."""
    import datasets

    jpegs = {i: jpeg_bytes(w, h, seed=i) for i, (w, h) in IMAGES.items()}
    features = datasets.Features(
        {
            "question_id": datasets.Value("string"),
            "image": datasets.Image(),
            "question": datasets.Value("string"),
            "answer": datasets.Sequence(datasets.Value("string")),
            "segmentation": datasets.Sequence(datasets.Value("float32")),
            "bbox": datasets.Sequence(datasets.Value("float32")),
            "iscrowd": datasets.Value("int8"),
            "file_name": datasets.Value("string"),
        }
    )
    by_ref = {o["ref_id"]: o for o in OBJECTS}
    os.makedirs(os.path.join(folder, "data"), exist_ok=True)
    for split, ref_ids in LMMS_SPLITS.items():
        objs = [by_ref[r] for r in ref_ids]
        table = {
            "question_id": [str(o["ann_id"]) for o in objs],
            "image": [{"bytes": jpegs[o["image_id"]], "path": None} for o in objs],
            "question": ["Please carefully observe the area circled in the image and come up with a caption."]
            * len(objs),
            "answer": [[s[2] for s in o["sentences"]] for o in objs],
            "segmentation": [o["segmentation"][0] for o in objs],  # ONE flat polygon
            "bbox": [o["bbox"] for o in objs],
            "iscrowd": [o["iscrowd"] for o in objs],
            "file_name": [f"COCO_train2014_{o['image_id']:012d}_{o['ann_id']}.jpg" for o in objs],
        }
        datasets.Dataset.from_dict(table, features=features).to_parquet(
            os.path.join(folder, "data", f"{split}-00000-of-00001.parquet")
        )
    return folder


# --- jxu124 ---------------------------------------------------------------------------------------

JXU_SPLITS = {"train": "train", "val": "validation", "testA": "test", "testB": "testB"}


def write_jxu(folder, image_root_layout="coco"):
    """data/<split>-00000-of-00001.parquet with jxu124/refcoco's columns (no images), and the JPEGs
    under <folder>/images. image_root_layout "coco": images/coco/train2014/<file> (image_root =
    images, joined with image_path); "flat": images/<file> (image_root = the train2014 folder itself).

    Returns (folder, image_root).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    image_root = os.path.join(folder, "images")
    write_images(os.path.join(image_root, "coco", "train2014") if image_root_layout == "coco" else image_root)
    os.makedirs(os.path.join(folder, "data"), exist_ok=True)
    for split, hub_split in JXU_SPLITS.items():
        rows = []
        for o in (o for o in OBJECTS if o["split"] == split):
            x, y, w, h = o["bbox"]
            width, height = IMAGES[o["image_id"]]
            ann = _ann(o["ann_id"], o["image_id"], o["category_id"], o["segmentation"], o["bbox"], o["iscrowd"])
            rows.append(
                {
                    "sent_ids": [s[0] for s in o["sentences"]],
                    "file_name": f"COCO_train2014_{o['image_id']:012d}_{o['ann_id']}.jpg",
                    "ann_id": o["ann_id"],
                    "ref_id": o["ref_id"],
                    "image_id": o["image_id"],
                    "split": split,
                    "sentences": [
                        {"raw": raw, "sent": sent, "sent_id": sid, "tokens": sent.split()}
                        for sid, raw, sent in o["sentences"]
                    ],
                    "category_id": o["category_id"],
                    "raw_anns": json.dumps(ann),
                    "raw_image_info": json.dumps(_image_info(o["image_id"], width, height)),
                    "raw_sentences": json.dumps([{"sent_id": s[0], "sent": s[2]} for s in o["sentences"]]),
                    "image_path": f"coco/train2014/{coco_name(o['image_id'])}",
                    "bbox": [float(x), float(y), float(x + w), float(y + h)],  # xyxy
                    "captions": [s[2] for s in o["sentences"]],
                    "global_image_id": f"coco.{o['image_id']}",
                    "anns_id": f"refcoco.{o['ann_id']}",
                }
            )
        pq.write_table(pa.Table.from_pylist(rows), os.path.join(folder, "data", f"{hub_split}-00000-of-00001.parquet"))
    return folder, image_root


# --- prepared -------------------------------------------------------------------------------------


def prepared_dataset_dict(image_bytes):
    """The canonical rows of OBJECTS built directly from the expected values (not by the loaders).

    Written without the generalized columns (no_target, num_targets), as data sets prepared before they
    existed are: loading must add them (no target: False, one target).
    """
    import datasets

    from modeling_asda.data.schema import CANONICAL_FEATURES, CORE_COLUMNS

    features = datasets.Features({name: CANONICAL_FEATURES[name] for name in CORE_COLUMNS})

    by_split = {}
    for sample_id, row in expected_rows().items():
        png = io.BytesIO()
        Image.fromarray(row["mask"] * 255).save(png, format="PNG")
        values = {
            k: row[k]
            for k in ("image_id", "ref_id", "ann_id", "sent_id", "category_id", "split", "sentence", "width", "height")
        }
        values.update(
            sample_id=sample_id,
            image={"bytes": image_bytes[row["image_id"]], "path": None},
            mask={"bytes": png.getvalue(), "path": None},
            bbox=row["bbox"],
            source="refer",
        )
        by_split.setdefault(row["split"], []).append(values)
    return datasets.DatasetDict(
        {split: datasets.Dataset.from_list(rows, features=features) for split, rows in by_split.items()}
    )


def write_prepared(folder, kind="save_to_disk"):
    """The prepared form: save_to_disk(folder), or <folder>/<split>.parquet for kind="parquet"."""
    image_bytes = {i: jpeg_bytes(w, h, seed=i) for i, (w, h) in IMAGES.items()}
    dataset = prepared_dataset_dict(image_bytes)
    if kind == "save_to_disk":
        dataset.save_to_disk(folder)
    else:
        os.makedirs(folder, exist_ok=True)
        for split, ds in dataset.items():
            ds.to_parquet(os.path.join(folder, f"{split}.parquet"))
    return folder


# --- checks shared by the tests -------------------------------------------------------------------

_ID_FIELDS = ("image_id", "ref_id", "ann_id", "sent_id", "category_id", "split", "sentence", "width", "height")


def assert_rows_match(dataset_dict, expected, source=None):
    """Every row of `dataset_dict` equals expected[row's sample_id] (ids, sentence, bbox, the mask
    pixel for pixel, the image pixels), and every expected row is there."""
    from modeling_asda.data.schema import CANONICAL_FEATURES

    found = set()
    for split, dataset in dataset_dict.items():
        assert dataset.features == CANONICAL_FEATURES, split
        for row in dataset:
            sample_id = row["sample_id"]
            assert sample_id in expected, f"unexpected row {sample_id}"
            assert sample_id not in found, f"duplicate row {sample_id}"
            found.add(sample_id)
            want = expected[sample_id]
            assert row["split"] == split
            assert (row["no_target"], row["num_targets"]) == (False, 1), sample_id
            for field in _ID_FIELDS:
                assert row[field] == want[field], (sample_id, field, row[field], want[field])
            assert row["mask"].mode == "L", sample_id
            np.testing.assert_array_equal(np.asarray(row["mask"]), want["mask"] * 255, err_msg=sample_id)
            np.testing.assert_allclose(row["bbox"], want["bbox"], atol=1e-5, err_msg=sample_id)
            width, height = IMAGES[want["image_id"]]
            reference = Image.open(io.BytesIO(jpeg_bytes(width, height, seed=want["image_id"])))
            np.testing.assert_array_equal(np.asarray(row["image"]), np.asarray(reference), err_msg=sample_id)
            if source is not None:
                assert row["source"] == source
    assert found == set(expected), f"missing rows {sorted(set(expected) - found)}"
