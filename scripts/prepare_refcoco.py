#!/usr/bin/env python
"""Convert a referring-segmentation data set into the project's prepared form, once.

The input can be the REFER files (refs(<split_by>).p + instances.json + COCO images), lmms-lab or
jxu124 RefCOCO parquet (Hub id or local folder), or an already prepared data set. The output folder
gets `save_to_disk` Arrow files, `parquet/<split>.parquet` and `problems.json` (rows per split, and
every dropped row with its reason and ids). Training then reads the output folder directly.

Example (REFER files, RefCOCO UNC splits):

    python scripts/prepare_refcoco.py --dataset_name /data/refer --dataset_config refcoco --split_by unc \
        --image_root /data/coco/train2014 --output_dir /data/refcoco-unc --num_proc 8

All the logic is in modeling_asda (data_loading, data_hub_formats); this file only parses arguments.
"""

import argparse
import logging
import os
import shutil
import sys

from modeling_asda.data.hub_formats import save_prepared
from modeling_asda.data.loading import load_referring_dataset

logger = logging.getLogger("prepare_refcoco")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset_name", required=True, help="Hub data set id or local folder/file.")
    parser.add_argument("--dataset_config", default=None, help="refcoco, refcoco+ or refcocog (the REFER sub-folder).")
    parser.add_argument("--split_by", default=None, help="unc, umd or google: which refs(<split_by>).p to read.")
    parser.add_argument(
        "--image_root", default=None, help="Folder of the COCO train2014 JPEGs (REFER and jxu124 inputs)."
    )
    parser.add_argument("--splits", nargs="+", default=None, help="Splits to convert (default: all), e.g. train val.")
    parser.add_argument("--output_dir", required=True, help="Where the prepared data set is written.")
    parser.add_argument("--overwrite_output_dir", action="store_true", help="Replace a non-empty output_dir.")
    parser.add_argument(
        "--embed_images",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Store the image bytes in the parquet files (default), so the prepared form is portable. With "
        "--no-embed_images the parquet files keep absolute paths to the files under --image_root: small and "
        "quick to write, but usable only where those paths exist. The save_to_disk copy always holds the "
        "bytes (datasets embeds Image data there).",
    )
    parser.add_argument(
        "--verify_images",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Decode every image once to catch truncated or corrupt files (default).",
    )
    parser.add_argument(
        "--sentence_field", default="sent", choices=["sent", "raw"], help="REFER sentence text to use."
    )
    parser.add_argument("--rebuild", action="store_true", help="Convert again instead of using the conversion cache.")
    parser.add_argument("--num_proc", type=int, default=None, help="Processes for the conversion and saving.")
    parser.add_argument("--cache_dir", default=None, help="datasets cache for the intermediate Arrow files.")
    parser.add_argument("--push_to_hub", action="store_true", help="Also push the prepared data set to the Hub.")
    parser.add_argument(
        "--hub_dataset_id", "--hub_model_id", dest="hub_dataset_id", default=None, help="Hub repo for --push_to_hub."
    )
    parser.add_argument("--private", action="store_true", help="Create the Hub repo as private.")
    parser.add_argument("--hub_token", default=None, help="Hub token (default: the stored login).")
    args = parser.parse_args(argv)
    if args.push_to_hub and not args.hub_dataset_id:
        parser.error("--push_to_hub needs --hub_dataset_id (e.g. your-name/refcoco-unc-asda).")
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    output_dir = os.path.abspath(args.output_dir)
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        if not args.overwrite_output_dir:
            logger.error("%s is not empty; pass --overwrite_output_dir to replace it.", output_dir)
            return 1
        # Only ever delete an earlier output of this script, never a folder that merely was named.
        if not os.path.isfile(os.path.join(output_dir, "problems.json")):
            logger.error("%s does not look like an output of this script; not deleting it.", output_dir)
            return 1

    try:
        dataset, report = load_referring_dataset(
            args.dataset_name,
            args.dataset_config,
            args.split_by,
            args.image_root,
            args.splits,
            sentence_field=args.sentence_field,
            num_proc=args.num_proc,
            verify_images=args.verify_images,
            cache_dir=args.cache_dir,
            rebuild=args.rebuild,
            progress=True,
            return_report=True,
        )
    except (ValueError, OSError) as err:
        logger.error("%s", err)
        return 1
    empty = [split for split, rows in dataset.items() if len(rows) == 0]
    if empty:
        print(report.format(max_ids=20))
        logger.error(
            "Split(s) %s have no rows after the conversion (see the dropped rows above); nothing was written. Fix the "
            "data, or leave them out with --splits.",
            empty,
        )
        return 1
    # Written next to the output and renamed at the end: a failure never leaves a half-written output_dir,
    # and an earlier output is replaced only once the new one is complete.
    partial = f"{output_dir}.partial-{os.getpid()}"
    try:
        summary = save_prepared(dataset, report, partial, embed_images=args.embed_images, num_proc=args.num_proc)
        if os.path.exists(output_dir):
            previous = f"{output_dir}.previous-{os.getpid()}"
            os.replace(output_dir, previous)
            os.replace(partial, output_dir)
            shutil.rmtree(previous)
        else:
            os.replace(partial, output_dir)
    finally:
        if os.path.exists(partial):
            shutil.rmtree(partial)

    print(f"Prepared data set written to {args.output_dir} (save_to_disk) and {args.output_dir}/parquet/")
    for split, rows in summary["rows_per_split"].items():
        print(f"  {split}: {rows} rows")
    print(report.format(max_ids=20))
    print(f"Problems saved to {os.path.join(args.output_dir, 'problems.json')}")

    if args.push_to_hub:
        dataset.push_to_hub(
            args.hub_dataset_id,
            config_name=args.dataset_config or "default",
            private=args.private,
            token=args.hub_token,
        )
        print(f"Pushed to https://huggingface.co/datasets/{args.hub_dataset_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
