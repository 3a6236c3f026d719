"""Per-ref records, whatever format they were read from, to canonical rows and a `DatasetDict`.

Every reader (REFER, jxu124, lmms-lab) produces *records*, one per ref (referred object), made by
`make_record`. This module is the one place where images are checked and masks decoded:

- each image is opened and fully decoded once per image id (per shard; readers shard by image), so
  truncated files are caught; JPEGs are decoded at 1/8 scale, which still reads the whole stream;
- each ref's mask is decoded and PNG-encoded once and shared by the ref's sentences;
- a row per sentence is yielded, and every dropped row goes to a `ProblemReport`.

Rows are written with `Dataset.from_generator`, so a conversion streams to an Arrow cache file in
linear time and memory does not grow with the number of rows. The cache is keyed by the inputs (paths,
sizes and modification times of the metadata files) and the options; the problems of each shard are
saved next to it, so a cached load returns the same report as the conversion that made it.
"""

import hashlib
import io
import json
import logging
import os
import uuid

import datasets
import numpy as np
from PIL import Image

from .masks import SegmentationError, decode_segmentation, mask_to_png, mask_to_xywh
from .report import (
    BAD_SEGMENTATION,
    CORRUPT_IMAGE,
    DUPLICATE_SAMPLE,
    EMPTY_MASK,
    EMPTY_SENTENCE,
    IMAGE_SIZE_MISMATCH,
    MISSING_IMAGE,
    ProblemReport,
)
from .schema import CANONICAL_FEATURES, CANONICAL_SPLITS

logger = logging.getLogger(__name__)

# Bump when the rows produced for the same input change, so that old caches are not reused.
CONVERTER_VERSION = "2"

_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testa": "testA",
    "test_a": "testA",
    "testb": "testB",
    "test_b": "testB",
}


def normalize_split(name, where=None):
    """Map a split spelling ('validation', 'TESTA', ...) onto one of CANONICAL_SPLITS."""
    canonical = _SPLIT_ALIASES.get(str(name).strip().lower())
    if canonical is None:
        place = f" in {where}" if where else ""
        raise ValueError(
            f"Unknown split name {name!r}{place}; expected one of {CANONICAL_SPLITS} "
            f"or an alias ({', '.join(sorted(_SPLIT_ALIASES))})."
        )
    return canonical


def make_record(
    *,
    split,
    ref_id,
    ann_id,
    image_id,
    category_id,
    sentences,
    sample_prefix,
    image,
    segmentation,
    bbox,
    source,
    width=None,
    height=None,
    image_key=None,
    problem=None,
    more_segmentations=(),
    no_target=False,
):
    """One ref as the readers hand it over.

    sentences: [(sent_id, text)]; the row's sample_id is f"{sample_prefix}_{sent_id}".
    image: {"path": str} or {"bytes": bytes}. image_key: hashable id under which the image check is
    cached (None: check for every record). width/height: the size the annotation declares (None: take
    the image's). segmentation: COCO polygons/RLE, decoded here. bbox: COCO xywh or None (then the
    mask's tight box). problem: (reason, detail) found while reading metadata; the ref's rows are
    then dropped and reported. more_segmentations: the other targets of a multi-target ref (gRefCOCO);
    the mask is the union of all. no_target: the expression names nothing (segmentation None); its mask
    is empty and its box all zeros.
    """
    return {
        "split": split,
        "ref_id": int(ref_id),
        "ann_id": int(ann_id),
        "image_id": int(image_id),
        "category_id": int(category_id),
        "sentences": [(int(sent_id), text) for sent_id, text in sentences],
        "sample_prefix": str(sample_prefix),
        "image": image,
        "image_key": image_key,
        "segmentation": segmentation,
        "bbox": bbox,
        "width": width,
        "height": height,
        "source": source,
        "problem": problem,
        "more_segmentations": list(more_segmentations),
        "no_target": bool(no_target),
    }


def _inspect_image(image, verify):
    """('ok', (width, height)) or (reason, detail). With verify, the pixels are decoded."""
    data, path = image.get("bytes"), image.get("path")
    if data is None:
        if not path or not os.path.isfile(path):
            return MISSING_IMAGE, f"no image file at {path}"
        source = path
    else:
        source = io.BytesIO(data)
    try:
        with Image.open(source) as img:
            size = img.size
            if verify:
                # JPEG: decode at 1/8 scale; libjpeg still reads every coded block, so truncation shows.
                img.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
                img.load()
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        return CORRUPT_IMAGE, f"{path or 'embedded image'}: {type(err).__name__}: {err}"
    return "ok", size


def _valid_box(bbox):
    if bbox is None or len(bbox) != 4:
        return None
    box = [float(v) for v in bbox]
    return box if all(np.isfinite(box)) else None


def iter_rows(records, report, verify_images=True):
    """Canonical rows for `records`; dropped rows are added to `report`."""
    image_status = {}
    seen_ids = set()
    for rec in records:
        sample_ids = [f"{rec['sample_prefix']}_{sent_id}" for sent_id, _ in rec["sentences"]]
        problem, png, bbox, size = rec["problem"], None, None, None
        if problem is None:
            key = rec["image_key"]
            status = image_status.get(key) if key is not None else None
            if status is None:
                status = _inspect_image(rec["image"], verify_images)
                if key is not None:
                    image_status[key] = status
            if status[0] != "ok":
                problem = status
            else:
                size = status[1]
                declared = (rec["width"], rec["height"])
                if None not in declared and tuple(int(v) for v in declared) != size:
                    problem = (
                        IMAGE_SIZE_MISMATCH,
                        f"annotation says {declared[0]}x{declared[1]}, image is {size[0]}x{size[1]}",
                    )
        no_target = rec.get("no_target", False)
        parts = [] if no_target else [rec["segmentation"], *rec.get("more_segmentations", ())]
        if problem is None and no_target:
            png, bbox = mask_to_png(np.zeros((size[1], size[0]), dtype=np.uint8)), [0.0, 0.0, 0.0, 0.0]
        elif problem is None:
            try:
                mask = np.logical_or.reduce([decode_segmentation(part, size[1], size[0]) for part in parts])
            except SegmentationError as err:
                problem = (BAD_SEGMENTATION, str(err))
            else:
                if not mask.any():
                    problem = (EMPTY_MASK, "the mask has no foreground pixel")
                else:
                    png = mask_to_png(mask)
                    # A given box describes one object; the union's box is the mask's.
                    bbox = (_valid_box(rec["bbox"]) if len(parts) == 1 else None) or mask_to_xywh(mask)
        for sample_id, (sent_id, text) in zip(sample_ids, rec["sentences"]):
            reason = problem
            text = text.strip() if isinstance(text, str) else ""
            if reason is None and not text:
                reason = (EMPTY_SENTENCE, "the sentence is empty")
            if reason is None and sample_id in seen_ids:
                reason = (DUPLICATE_SAMPLE, "a row with this sample_id was already produced")
            if reason is not None:
                report.add(
                    reason[0],
                    split=rec["split"],
                    sample_id=sample_id,
                    ref_id=rec["ref_id"] if rec["ref_id"] >= 0 else None,  # -1: the source has none
                    ann_id=rec["ann_id"],
                    image_id=rec["image_id"],
                    detail=reason[1],
                )
                continue
            seen_ids.add(sample_id)
            yield {
                "sample_id": sample_id,
                "image_id": rec["image_id"],
                "ref_id": rec["ref_id"],
                "ann_id": rec["ann_id"],
                "sent_id": sent_id,
                "category_id": rec["category_id"],
                "split": rec["split"],
                "sentence": text,
                "image": {"path": rec["image"].get("path"), "bytes": rec["image"].get("bytes")},
                "mask": {"path": None, "bytes": png},
                "bbox": bbox,
                "width": size[0],
                "height": size[1],
                "source": rec["source"],
                "no_target": no_target,
                "num_targets": len(parts),
            }


def shard_by_image(records, num_shards):
    """Records grouped by image (in order of first appearance) and cut into at most `num_shards`
    contiguous shards at image boundaries, so that each image is checked in one shard only."""
    groups = {}
    for rec in records:
        groups.setdefault(rec["image_key"], []).append(rec)
    target = max(1, -(-len(records) // max(1, num_shards)))
    shards, current = [], []
    for group in groups.values():
        current.extend(group)
        if len(current) >= target:
            shards.append(current)
            current = []
    if current or not shards:
        shards.append(current)
    return [{"records": shard, "num_rows": len(shard)} for shard in shards]


def records_of(spec):
    """Reader for shards that carry their records in memory (see `shard_by_image`)."""
    return iter(spec["records"])


def _generate(shards, shard_ids, reader, problems_dir, split, verify_images, progress):
    from tqdm.auto import tqdm

    for shard_id, spec in zip(shard_ids, shards):
        report = ProblemReport()
        records = tqdm(
            reader(spec), total=spec.get("num_rows"), desc=f"Converting {split}", unit="ref", disable=not progress
        )
        yield from iter_rows(records, report, verify_images=verify_images)
        # Written atomically once the shard is done: a present file is a complete one.
        path = os.path.join(problems_dir, f"shard-{shard_id}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(report.problems, f)
        os.replace(path + ".tmp", path)


def _read_problems(problems_dir, num_shards):
    report = ProblemReport()
    for shard_id in range(num_shards):
        path = os.path.join(problems_dir, f"shard-{shard_id}.json")
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            report.extend(json.load(f))
    return report


def images_identity(records_by_split):
    """Size and modification time of every image file the records point at, as one digest: a cached
    conversion is redone when an image changed, not only when the metadata files did."""
    paths = sorted({rec["image"].get("path") for recs in records_by_split.values() for rec in recs} - {None})
    digest = hashlib.sha256()
    for path in paths:
        try:
            stat = os.stat(path)
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}|missing\n".encode())
    return [len(paths), digest.hexdigest()]


def drop_duplicate_samples(dataset, split, report):
    """Keep the first row of each sample_id over the whole split (shards are converted apart, so a
    duplicate in another shard is only visible here); the others are dropped and reported."""
    first, drop = {}, []
    for index, sample_id in enumerate(dataset["sample_id"]):
        if sample_id in first:
            drop.append(index)
        else:
            first[sample_id] = index
    if not drop:
        return dataset
    dropped = dataset.select(drop).select_columns(["sample_id", "ref_id", "ann_id", "image_id"])
    for index, row in zip(drop, dropped):
        report.add(
            DUPLICATE_SAMPLE,
            split=split,
            sample_id=row["sample_id"],
            ref_id=row["ref_id"] if row["ref_id"] >= 0 else None,
            ann_id=row["ann_id"],
            image_id=row["image_id"],
            detail=f"row {index} repeats the sample_id of row {first[row['sample_id']]}",
        )
    dropped_set = set(drop)
    return dataset.select([i for i in range(len(dataset)) if i not in dropped_set])


def file_identity(path):
    """What identifies an input file's content for caching: its path, size and modification time."""
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def build_dataset_dict(
    split_shards,
    reader,
    identity,
    cache_dir=None,
    num_proc=None,
    verify_images=True,
    progress=False,
    rebuild=False,
):
    """Run `reader` over the shards of each split and write canonical rows.

    split_shards: {split: [spec, ...]}, each spec a picklable dict with "num_rows" (for progress)
    that `reader(spec)` turns into records. identity: JSON-able facts that identify the input (see
    `file_identity`); with the options they key the cache. Returns (DatasetDict, ProblemReport).
    """
    cache_root = os.path.expanduser(cache_dir or datasets.config.HF_DATASETS_CACHE)
    num_proc = num_proc if num_proc and num_proc > 1 else None
    result, report = {}, ProblemReport()
    for split in sorted(split_shards, key=CANONICAL_SPLITS.index):
        shards = split_shards[split]
        for attempt in range(2):
            key = [CONVERTER_VERSION, identity, split, len(shards), bool(verify_images)]
            if rebuild or attempt:
                key.append(uuid.uuid4().hex)  # a fresh cache entry: the conversion runs again
            fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:32]
            problems_dir = os.path.join(cache_root, "asda_referring_problems", fingerprint)
            os.makedirs(problems_dir, exist_ok=True)
            gen_kwargs = {
                "shards": shards,
                "shard_ids": list(range(len(shards))),
                "reader": reader,
                "problems_dir": problems_dir,
                "split": split,
                "verify_images": verify_images,
                "progress": progress and num_proc is None,
            }
            try:
                dataset = datasets.Dataset.from_generator(
                    _generate,
                    features=CANONICAL_FEATURES,
                    cache_dir=cache_dir,
                    gen_kwargs=gen_kwargs,
                    num_proc=min(num_proc, len(shards)) if num_proc and len(shards) > 1 else None,
                    split=split,
                    fingerprint=fingerprint,
                )
            except ValueError:
                # datasets cannot open a split it wrote no row for. If every shard finished (its
                # problems file exists), all rows were dropped: an empty split, with the report.
                if _read_problems(problems_dir, len(shards)) is None:
                    raise
                dataset = datasets.Dataset.from_dict(
                    {name: [] for name in CANONICAL_FEATURES}, features=CANONICAL_FEATURES, split=split
                )
            split_report = _read_problems(problems_dir, len(shards))
            if split_report is not None:
                break
            # A cached conversion without its problem files (e.g. deleted): redo it rather than
            # return an empty, and so wrong, report.
            logger.info("Problem report of the cached %s split is missing; converting again.", split)
        report.extend(split_report)
        result[split] = drop_duplicate_samples(dataset, split, report)
    return datasets.DatasetDict(result), report
