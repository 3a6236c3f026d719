"""One entry point for every referring-segmentation format: `load_referring_dataset`.

It finds out what it was given from the files and columns, not from the name:

- "synthetic": the built-in synthetic data (modeling_asda.data_synthetic);
- a local folder or file, or a Hub data set id (downloaded with `huggingface_hub.snapshot_download`
  and then read like a local folder) holding one of
  - the REFER layout: refs(<split_by>).p + instances.json in ROOT/<dataset_config>/ (data_refer);
  - the gRefCOCO layout: grefs(<split_by>).json or .p + instances.json in ROOT/grefcoco/ (data_grefcoco);
  - lmms-lab or jxu124 parquet files, or the prepared form (data_hub_formats).

Every format becomes a `DatasetDict` of canonical rows (data_schema), split names normalised to
CANONICAL_SPLITS. Rows with a problem are dropped and reported (data_report), never silently.
"""

import glob
import logging
import os
import re
from collections import namedtuple

from huggingface_hub.utils import HFValidationError, validate_repo_id

from .convert import (
    build_dataset_dict,
    file_identity,
    images_identity,
    normalize_split,
    records_of,
    shard_by_image,
)
from .grefcoco import find_grefcoco_files, grefcoco_records, is_grefcoco_folder
from .hub_formats import (
    check_column_types,
    is_saved_dataset,
    jxu_split_shards,
    lmms_split_shards,
    load_prepared,
    parquet_columns,
    parquet_files_by_split,
    parquet_format,
    read_lmms,
)
from .refer import find_image_root, find_refer_files, is_refer_folder, refer_records
from .report import ProblemReport, format_overlaps, split_overlaps

logger = logging.getLogger(__name__)

FORMATS = ("refer", "grefcoco", "lmms-lab", "jxu124", "prepared")

DetectedFormat = namedtuple("DetectedFormat", ["kind", "path", "parquet_files"])


def detect_format(path, dataset_config=None):
    """What `path` (a local folder or file) holds, as a DetectedFormat; a clear error if nothing known.

    A folder is looked at as is, or as path/<dataset_config> when that sub-folder exists (the REFER
    ROOT, or a Hub repo pushed with a config name).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such file or folder: {path}")
    if os.path.isfile(path):
        if path.endswith(".parquet"):
            return _detect_parquet(path, [path])
        if re.fullmatch(r"refs\(.+\)\.p", os.path.basename(path)):
            return DetectedFormat("refer", os.path.dirname(os.path.abspath(path)), None)
        if re.fullmatch(r"grefs\(.+\)\.(json|p)", os.path.basename(path)):
            return DetectedFormat("grefcoco", os.path.dirname(os.path.abspath(path)), None)
        raise ValueError(f"Unrecognised data file {path}: expected a .parquet file or a REFER refs(<split_by>).p.")
    if dataset_config and os.path.isdir(os.path.join(path, dataset_config)):
        path = os.path.join(path, dataset_config)
    if is_saved_dataset(path):
        return DetectedFormat("prepared", path, None)
    if is_refer_folder(path):
        return DetectedFormat("refer", path, None)
    for folder in (path, os.path.join(path, "grefcoco")):  # ROOT/grefcoco without dataset_config too
        if is_grefcoco_folder(folder):
            return DetectedFormat("grefcoco", folder, None)
    files = sorted(glob.glob(os.path.join(glob.escape(path), "**", "*.parquet"), recursive=True))
    if files:
        return _detect_parquet(path, files)
    listing = sorted(os.listdir(path))
    shown = ", ".join(listing[:10]) + (" ..." if len(listing) > 10 else "") if listing else "nothing"
    raise ValueError(
        f"Could not recognise a referring-segmentation data set in {path} (it holds: {shown}). Expected "
        "the REFER layout (refs(<split_by>).p + instances.json), the gRefCOCO layout (grefcoco/grefs(<split_by>)"
        ".json + instances.json), lmms-lab or jxu124 RefCOCO parquet files, "
        "or a prepared data set (save_to_disk folder or parquet with the canonical columns)."
    )


def _detect_parquet(where, files):
    kinds = {}
    for f in files:
        kinds.setdefault(parquet_format(parquet_columns(f)), []).append(f)
    if None in kinds:
        bad = kinds[None][0]
        raise ValueError(
            f"Unrecognised parquet file {bad}: columns {parquet_columns(bad)} match none of the lmms-lab, "
            "jxu124 or prepared formats."
        )
    if len(kinds) > 1:
        raise ValueError(f"{where} mixes parquet formats: {sorted(kinds)}; point at one data set.")
    (kind,) = kinds
    for f in files:
        check_column_types(f, kind)
    if os.path.isdir(where):
        # Parquet files in several sub-folders are several configs (push_to_hub(config_name=...)):
        # merging them would mix e.g. refcoco and refcoco+ rows in one split.
        tops = sorted(
            {os.path.relpath(f, where).split(os.sep)[0] for f in files if os.sep in os.path.relpath(f, where)}
        )
        if len(tops) > 1:
            raise ValueError(
                f"{where} holds parquet files in several folders {tops}: pass dataset_config (one of them)."
            )
    return DetectedFormat(kind, where, files)


def is_hub_id(name) -> bool:
    """True for an `owner/name` Hub repository id that is not also an existing local path."""
    name = str(name or "")
    if name.count("/") != 1 or os.path.exists(name):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _local_path(name_or_path, revision=None, token=None, cache_dir=None):
    if os.path.exists(name_or_path):
        return name_or_path
    if not is_hub_id(name_or_path):
        raise FileNotFoundError(
            f"{name_or_path} is neither an existing file/folder nor a Hub data set id (owner/name)."
        )
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(
            repo_id=name_or_path,
            repo_type="dataset",
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            # The data and the metadata; never README images or scripts.
            allow_patterns=["*.parquet", "*.json", "*.p", "*.arrow"],
        )
    except Exception as err:
        raise OSError(
            f"{name_or_path} is not an existing local path, and downloading it as a Hub data set failed: {err}"
        ) from err


def load_referring_dataset(
    name_or_path,
    dataset_config=None,
    split_by=None,
    image_root=None,
    splits=None,
    *,
    sentence_field="sent",
    num_proc=None,
    verify_images=True,
    cache_dir=None,
    rebuild=False,
    progress=False,
    revision=None,
    token=None,
    return_report=False,
    **kwargs,
):
    """Load any supported referring-segmentation data set as canonical rows.

    Args:
        name_or_path: "synthetic", a local folder/file, or a Hub data set id.
        dataset_config: refcoco / refcoco+ / refcocog / grefcoco: the sub-folder of a REFER or gRefCOCO ROOT
            (or of a Hub repo).
        split_by: unc / umd / google, picks refs(<split_by>).p; needed when there are several.
        image_root: folder of the COCO train2014 images (REFER and jxu124; lmms-lab and prepared
            data carry their images).
        splits: canonical split names (or aliases) to load; all by default.
        sentence_field: "sent" (REFER's normalised text, used by CRIS/ASDA) or "raw".
        num_proc: processes for the conversion (REFER, jxu124).
        verify_images: decode every image once to catch truncated files (slower; on by default).
        cache_dir: where the converted Arrow files go (default: the datasets cache).
        rebuild: convert again even if a cached conversion of the same inputs exists. The cache is
            keyed by the metadata files and the size and modification time of every image file, so a
            changed file is noticed; rebuild covers what that cannot see (e.g. an edit that kept both).
        progress: show a progress bar per split.
        return_report: also return the ProblemReport of dropped rows.
        **kwargs: passed to `build_synthetic_dataset` for "synthetic" only.

    Returns:
        `DatasetDict` {canonical split: Dataset with CANONICAL_FEATURES}, and with return_report the
        `ProblemReport` as a second value. Dropped rows are also logged as a warning.
    """
    if name_or_path == "synthetic":
        from .synthetic import build_synthetic_dataset  # written separately; imported on use

        dataset = build_synthetic_dataset(**kwargs)
        return (dataset, ProblemReport()) if return_report else dataset
    if kwargs:
        raise TypeError(f"Unexpected argument(s) {sorted(kwargs)}; extra keyword arguments go to 'synthetic' only.")
    if sentence_field not in ("sent", "raw"):
        raise ValueError(f"sentence_field must be 'sent' or 'raw', got {sentence_field!r}.")
    if isinstance(splits, str):
        splits = [splits]
    wanted = None if splits is None else {normalize_split(s) for s in splits}
    path = _local_path(name_or_path, revision=revision, token=token, cache_dir=cache_dir)
    detected = detect_format(path, dataset_config)
    num_shards = max(1, num_proc or 1)
    convert = dict(
        cache_dir=cache_dir, num_proc=num_proc, verify_images=verify_images, progress=progress, rebuild=rebuild
    )

    if detected.kind == "prepared":
        files = None if detected.parquet_files is None else parquet_files_by_split(detected.parquet_files)
        dataset, report = load_prepared(detected.path, files, wanted, cache_dir=cache_dir), ProblemReport()
    elif detected.kind in ("refer", "grefcoco"):
        # Same layout and conversion; only the refs file and how a ref becomes rows differ.
        if detected.kind == "refer":
            refs_path, instances_path = find_refer_files(detected.path, dataset_config, split_by)
            read_records = refer_records
        else:
            refs_path, instances_path = find_grefcoco_files(detected.path, split_by)
            read_records = grefcoco_records
        image_root = find_image_root(os.path.dirname(os.path.dirname(refs_path)), image_root)
        by_split = read_records(refs_path, instances_path, image_root, wanted, sentence_field)
        if wanted is not None and wanted - set(by_split):
            raise ValueError(
                f"Split(s) {sorted(wanted - set(by_split))} not in {refs_path}; it has {sorted(by_split)}."
            )
        shards = {split: shard_by_image(records, num_shards) for split, records in by_split.items()}
        identity = [
            detected.kind,
            file_identity(refs_path),
            file_identity(instances_path),
            os.path.abspath(image_root),
        ]
        identity += images_identity(by_split)
        dataset, report = build_dataset_dict(shards, records_of, identity + [sentence_field], **convert)
    elif detected.kind == "jxu124":
        files = parquet_files_by_split(detected.parquet_files)
        shards, identity = jxu_split_shards(files, image_root, wanted, detected.path, num_shards, sentence_field)
        dataset, report = build_dataset_dict(shards, records_of, identity, **convert)
    else:  # lmms-lab
        files = parquet_files_by_split(detected.parquet_files)
        shards, identity = lmms_split_shards(files, wanted, detected.path)
        dataset, report = build_dataset_dict(shards, read_lmms, identity, **convert)

    report.overlaps = split_overlaps(dataset)
    if len(report):
        logger.warning("%s (%s format): %s", name_or_path, detected.kind, report.format())
    elif report.overlaps:
        logger.warning("%s (%s format):\n%s", name_or_path, detected.kind, "\n".join(format_overlaps(report.overlaps)))
    return (dataset, report) if return_report else dataset
