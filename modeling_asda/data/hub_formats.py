"""Parquet formats found on the Hub, and the project's own prepared form.

- lmms-lab/RefCOCO{,plus,g}: one row per annotation with the image bytes embedded, ONE flat polygon,
  `answer` = the expressions, `question_id` = the annotation id, a constant `question` (ignored). It
  has no ref id: rows get ref_id -1, category_id -1, image_id read from `file_name`
  (COCO_train2014_<12 digits>_...), sent_id k and sample_id "<ann_id>_<k>", k counting the
  expressions of that annotation through the split in file order (unique even if an annotation
  appears in several rows). Objects drawn with several polygons keep only the one the source kept.
- jxu124/refcoco{,plus,g}: one row per ref, no images (read from image_root + `image_path`, or its
  file name directly under image_root), `bbox` in xyxy (converted to xywh), the COCO annotation as a
  JSON string in `raw_anns`, the image size in `raw_image_info`. Its split "test" is testA when a
  testB split exists (refcoco/refcoco+), else test (refcocog).
- prepared: canonical rows (data_schema) saved with `save_to_disk` or as parquet (one or more files
  per split); loaded as they are (files written before the `no_target` / `num_targets` columns existed
  get no_target False and one target per row).
"""

import json
import os
import re

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from .convert import file_identity, images_identity, make_record, normalize_split, shard_by_image
from .masks import xyxy_to_xywh
from .report import BAD_SEGMENTATION, MISSING_IMAGE
from .schema import CANONICAL_COLUMNS, CANONICAL_FEATURES, CANONICAL_SPLITS, CORE_COLUMNS, GENERALIZED_DEFAULTS

LMMS_COLUMNS = frozenset({"question_id", "image", "answer", "segmentation", "bbox"})
JXU_COLUMNS = frozenset({"ref_id", "ann_id", "image_id", "sentences", "raw_anns", "image_path", "bbox"})

_COCO_IMAGE_ID = re.compile(r"COCO_[a-z]+\d{4}_(\d{12})")


def parquet_format(columns):
    """'prepared', 'lmms-lab', 'jxu124' or None, from a parquet file's column names."""
    columns = set(columns)
    if set(CORE_COLUMNS) <= columns:  # prepared before the generalized columns existed, or after
        return "prepared"
    if LMMS_COLUMNS <= columns:
        return "lmms-lab"
    if JXU_COLUMNS <= columns:
        return "jxu124"
    return None


def parquet_columns(path):
    return pq.read_schema(path).names


def _is_image_struct(arrow_type):
    return pa.types.is_struct(arrow_type) and "bytes" in {field.name for field in arrow_type}


def _is_text(arrow_type):
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def _is_text_list(arrow_type):
    return _is_text(arrow_type) or (pa.types.is_list(arrow_type) and _is_text(arrow_type.value_type))


# Per format: column -> (test of its arrow type, what it should be). Only the columns the readers use.
_COLUMN_TYPES = {
    "lmms-lab": {
        "image": (_is_image_struct, "an image struct {bytes, path} (datasets Image)"),
        "answer": (_is_text_list, "a string or a list of strings"),
        "question_id": (lambda t: pa.types.is_integer(t) or _is_text(t), "an integer or string id"),
    },
    "jxu124": {
        "ref_id": (pa.types.is_integer, "an integer"),
        "ann_id": (pa.types.is_integer, "an integer"),
        "image_id": (pa.types.is_integer, "an integer"),
        "image_path": (_is_text, "a string (the COCO file path)"),
        "raw_anns": (lambda t: _is_text(t) or pa.types.is_struct(t), "a JSON string of the COCO annotation"),
        "sentences": (lambda t: _is_text(t) or pa.types.is_list(t), "a list of {sent_id, sent, raw} (or its JSON)"),
    },
    "prepared": {
        "image": (_is_image_struct, "an image struct {bytes, path} (datasets Image)"),
        "mask": (_is_image_struct, "an image struct {bytes, path} (datasets Image)"),
        "sentence": (_is_text, "a string"),
        "sample_id": (_is_text, "a string"),
        "ref_id": (pa.types.is_integer, "an integer"),
        "image_id": (pa.types.is_integer, "an integer"),
    },
}


def check_column_types(path, kind):
    """A clear error naming the file and column when a column has a type its reader cannot use."""
    schema = pq.read_schema(path)
    for column, (test, expected) in _COLUMN_TYPES.get(kind, {}).items():
        if column in schema.names and not test(schema.field(column).type):
            raise ValueError(
                f"{path}: column '{column}' is {schema.field(column).type}, expected {expected} for the {kind} format. "
                "Write the file with that type (for images: datasets' Image feature, e.g. "
                "dataset.cast_column('image', datasets.Image()) before to_parquet)."
            )


def parquet_files_by_split(files):
    """{split as named in the files: [paths]}, from Hub-style names ("val-00000-of-00004.parquet",
    "validation.parquet") or, failing that, the parent folder's name ("testA/0000.parquet")."""
    by_split = {}
    for path in files:
        stem = os.path.basename(path)[: -len(".parquet")]
        candidates = (stem.split("-")[0], os.path.basename(os.path.dirname(path)))
        name = next((c for c in candidates if _is_split_name(c)), None)
        if name is None:
            raise ValueError(
                f"Cannot tell the split of {path}: name the file '<split>-*.parquet' or '<split>.parquet'."
            )
        by_split.setdefault(name, []).append(path)
    return by_split


def _is_split_name(name):
    try:
        normalize_split(name)
        return True
    except ValueError:
        return False


def _select(canonical_by_source, splits, where):
    """Keep the wanted canonical splits; {source split: canonical split}."""
    if splits is None:
        return canonical_by_source
    missing = sorted(set(splits) - set(canonical_by_source.values()))
    if missing:
        raise ValueError(f"Split(s) {missing} not in {where}; it has {sorted(set(canonical_by_source.values()))}.")
    return {src: split for src, split in canonical_by_source.items() if split in splits}


# --- lmms-lab -------------------------------------------------------------------------------------


def lmms_split_shards(files_by_split, splits, where):
    """One shard per split (the sample id counter runs through the whole split)."""
    names = _select({name: normalize_split(name, where) for name in files_by_split}, splits, where)
    shards = {}
    for name, split in names.items():
        files = sorted(files_by_split[name])
        num_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        shards[split] = [{"files": files, "split": split, "num_rows": num_rows}]
    identity = ["lmms-lab", [file_identity(f) for name in names for f in sorted(files_by_split[name])]]
    return shards, identity


def read_lmms(spec):
    """Records of one lmms-lab split, streamed from its parquet files a few rows at a time."""
    columns = ["question_id", "image", "answer", "segmentation", "bbox", "file_name"]
    sentences_seen = {}  # annotation id -> expressions already numbered
    for path in spec["files"]:
        parquet = pq.ParquetFile(path)
        present = [c for c in columns if c in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(batch_size=16, columns=present):
            for row in batch.to_pylist():
                question_id = str(row["question_id"])
                ann_id = int(question_id) if question_id.isdigit() else -1
                start = sentences_seen.get(question_id, 0)
                answers = row["answer"] or []
                answers = [answers] if isinstance(answers, str) else answers
                sentences_seen[question_id] = start + len(answers)
                match = _COCO_IMAGE_ID.search(row.get("file_name") or "")
                image = row["image"] or {}
                problem = (
                    None if image.get("bytes") else (MISSING_IMAGE, f"row {question_id} of {path} has no image bytes")
                )
                yield make_record(
                    split=spec["split"],
                    ref_id=-1,
                    ann_id=ann_id,
                    image_id=int(match.group(1)) if match else -1,
                    category_id=-1,
                    sentences=list(enumerate(answers, start=start)),
                    sample_prefix=question_id,
                    image={"bytes": image.get("bytes")},
                    segmentation=row["segmentation"],
                    bbox=row["bbox"],
                    source="lmms-lab",
                    problem=problem,
                )


# --- jxu124 ---------------------------------------------------------------------------------------


def jxu_split_names(split_names, where):
    """{jxu124 split: canonical split}; 'test' means testA when there is a testB (refcoco/refcoco+)."""
    has_test_b = any(normalize_split(name, where) == "testB" for name in split_names)
    mapping = {}
    for name in split_names:
        split = normalize_split(name, where)
        mapping[name] = "testA" if split == "test" and has_test_b else split
    return mapping


def _resolve_image(image_root, image_path):
    """image_root/image_path, else image_root/<file name> (a folder that holds train2014 directly)."""
    candidates = [os.path.join(image_root, image_path), os.path.join(image_root, os.path.basename(image_path))]
    return os.path.abspath(next((c for c in candidates if os.path.isfile(c)), candidates[0]))


def _parse_annotation(raw_anns, ann_id):
    ann = json.loads(raw_anns) if isinstance(raw_anns, str) else raw_anns
    if isinstance(ann, list):  # a list of annotations: take the referred one
        ann = next((a for a in ann if a.get("id") == ann_id), ann[0] if len(ann) == 1 else None)
    if not isinstance(ann, dict) or "segmentation" not in ann:
        raise ValueError("raw_anns holds no annotation with a 'segmentation'")
    return ann


def jxu_records(files_by_split, image_root, splits, where, sentence_field="sent"):
    """{canonical split: [record]} for the jxu124 files (metadata only, so read at once)."""
    if image_root is None:
        raise ValueError(f"{where} is in the jxu124 format, which has no images: pass image_root (the COCO folder).")
    names = _select(jxu_split_names(files_by_split, where), splits, where)
    columns = [
        "ref_id",
        "ann_id",
        "image_id",
        "category_id",
        "sentences",
        "raw_anns",
        "raw_image_info",
        "image_path",
        "bbox",
    ]
    by_split, image_paths = {}, {}
    for name, split in names.items():
        records = by_split.setdefault(split, [])
        for path in sorted(files_by_split[name]):
            table = pq.read_table(path, columns=[c for c in columns if c in pq.read_schema(path).names])
            for row in table.to_pylist():
                records.append(_jxu_record(row, split, image_root, image_paths, sentence_field))
    return by_split


def _jxu_record(row, split, image_root, image_paths, sentence_field):
    image_id = row["image_id"]
    if image_id not in image_paths:  # one file-system look-up per image
        image_paths[image_id] = _resolve_image(image_root, row["image_path"])
    sentences = row["sentences"]
    if isinstance(sentences, str):  # an older revision stored them as a JSON string
        sentences = json.loads(sentences)
    problem, segmentation, ann_box = None, None, None
    try:
        ann = _parse_annotation(row["raw_anns"], row["ann_id"])
        segmentation, ann_box = ann["segmentation"], ann.get("bbox")
    except (ValueError, TypeError, AttributeError, IndexError) as err:
        problem = (BAD_SEGMENTATION, f"raw_anns of ref {row['ref_id']}: {err}")
    info = {}
    try:
        info = json.loads(row.get("raw_image_info") or "{}")
    except ValueError:
        pass  # the image's own size is used instead
    bbox = xyxy_to_xywh(row["bbox"]) if row.get("bbox") and len(row["bbox"]) == 4 else ann_box
    return make_record(
        split=split,
        ref_id=row["ref_id"],
        ann_id=row["ann_id"],
        image_id=image_id,
        category_id=row.get("category_id", -1),
        sentences=[(s["sent_id"], s.get(sentence_field, s.get("sent", s.get("raw")))) for s in sentences],
        sample_prefix=row["ref_id"],
        image={"path": image_paths[image_id]},
        image_key=image_id,
        segmentation=segmentation,
        bbox=bbox,
        width=info.get("width"),
        height=info.get("height"),
        source="jxu124",
        problem=problem,
    )


def jxu_split_shards(files_by_split, image_root, splits, where, num_shards, sentence_field="sent"):
    by_split = jxu_records(files_by_split, image_root, splits, where, sentence_field)
    shards = {split: shard_by_image(records, num_shards) for split, records in by_split.items()}
    identity = ["jxu124", [file_identity(f) for files in files_by_split.values() for f in sorted(files)]]
    identity += [os.path.abspath(image_root), sentence_field, images_identity(by_split)]
    return shards, identity


# --- prepared -------------------------------------------------------------------------------------


def is_saved_dataset(folder):
    return any(os.path.isfile(os.path.join(folder, name)) for name in ("dataset_dict.json", "state.json"))


def load_prepared(folder, parquet_files_split, splits, cache_dir=None):
    """A prepared data set: a `save_to_disk` folder, or {split: parquet files}."""
    if parquet_files_split is None:
        loaded = datasets.load_from_disk(folder)
        if isinstance(loaded, datasets.Dataset):
            names = set(loaded.unique("split"))
            if len(names) != 1:
                raise ValueError(
                    f"{folder} is a single Dataset with splits {sorted(names)}; save a DatasetDict instead."
                )
            loaded = datasets.DatasetDict({names.pop(): loaded})
    else:
        loaded = datasets.load_dataset(
            "parquet",
            data_files={name: sorted(files) for name, files in parquet_files_split.items()},
            cache_dir=cache_dir,
        )
    names = _select({name: normalize_split(name, folder) for name in loaded}, splits, folder)
    result = {}
    for name, split in sorted(names.items(), key=lambda item: CANONICAL_SPLITS.index(item[1])):
        dataset = loaded[name]
        for column, value in GENERALIZED_DEFAULTS.items():
            if column not in dataset.column_names:  # prepared by an older version: RefCOCO-style rows
                dataset = dataset.add_column(column, [value] * len(dataset))
        if set(dataset.column_names) != set(CANONICAL_COLUMNS):
            raise ValueError(
                f"Split {name} of {folder} does not have the canonical columns: missing "
                f"{sorted(set(CANONICAL_COLUMNS) - set(dataset.column_names))}, extra "
                f"{sorted(set(dataset.column_names) - set(CANONICAL_COLUMNS))}."
            )
        if dataset.features != CANONICAL_FEATURES:
            try:
                dataset = dataset.cast(CANONICAL_FEATURES)
            except Exception as err:  # pyarrow / datasets cast errors do not name the column
                wrong = [
                    f"{column}: {dataset.features[column]} (expected {CANONICAL_FEATURES[column]})"
                    for column in CANONICAL_COLUMNS
                    if dataset.features[column] != CANONICAL_FEATURES[column]
                ]
                raise ValueError(
                    f"Split {name} of {folder} has column types the canonical form cannot take: {'; '.join(wrong)} "
                    f"({type(err).__name__}: {err}). Prepare it again with scripts/prepare_refcoco.py."
                ) from err
        result[split] = dataset.select_columns(list(CANONICAL_COLUMNS))
    return datasets.DatasetDict(result)


def save_prepared(dataset, report, output_dir, embed_images=True, num_proc=None):
    """Write the prepared form of `dataset` (a canonical DatasetDict) into `output_dir`:

    - `save_to_disk(output_dir)`: Arrow; datasets always stores Image bytes there, so it is portable;
    - `output_dir/parquet/<split>.parquet`: with the image bytes (embed_images) or, if not, with the
      absolute image paths the loader found (small and quick, but only usable where those exist);
    - `output_dir/problems.json`: rows per split and the ProblemReport's summary.

    Returns that summary.
    """
    smallest = min((len(d) for d in dataset.values()), default=0)
    dataset.save_to_disk(output_dir, num_proc=num_proc if num_proc and num_proc > 1 and smallest >= num_proc else None)
    # The saved copy holds the bytes: writing parquet from it embeds them without a second pass.
    source = datasets.load_from_disk(output_dir) if embed_images else dataset
    parquet_dir = os.path.join(output_dir, "parquet")
    os.makedirs(parquet_dir, exist_ok=True)
    for split, split_dataset in source.items():
        split_dataset.to_parquet(os.path.join(parquet_dir, f"{split}.parquet"))
    summary = {"rows_per_split": {split: len(d) for split, d in dataset.items()}, **report.summary()}
    with open(os.path.join(output_dir, "problems.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return summary
