#!/usr/bin/env python
"""Explain predictions in one figure (the ASDA paper's Fig. 1 and Fig. 4), one row per (image, expression):
the image with its expression, the prediction, the ground truth (when known), the coarse and fine feature
maps, and which low/mid layers the adaptive selection chose (with its probabilities).

    python scripts/visualize.py --model outputs/asda-tiny-synthetic --dataset_name synthetic --split val \
        --indices 0,1,2,3 --output figures/explained.png
    python scripts/visualize.py --model outputs/asda-tiny-synthetic --image scene.png \
        --text "the red circle" --text "the star on the left" --output figures/scene.png

Needs matplotlib (pip install "asda-transformers[viz]").
"""

import argparse
import os
import sys

from modeling_asda.evaluation.inference import (
    add_split_arguments,
    load_model_and_processor,
    load_split_from_args,
    setup_script_logging,
)
from modeling_asda.tools.predict import UnreadableFile, read_image
from modeling_asda.tools.visualization import FEATURE_METHODS, explain_pairs, plot_explanations


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="ASDA checkpoint folder or Hub repo id")
    parser.add_argument("--revision", default=None)
    source = parser.add_argument_group("pairs from a data set (with ground truth)")
    add_split_arguments(source, dataset_name=None)
    source.add_argument("--indices", default="0,1,2,3", help="comma-separated row numbers of the split")
    own = parser.add_argument_group("pairs from your image (no ground truth)")
    own.add_argument("--image", help="an image file")
    own.add_argument("--text", action="append", help="an expression; repeat for several")
    parser.add_argument(
        "--feature_method",
        choices=FEATURE_METHODS,
        default="norm",
        help="feature map shown: channel L2 norm, or first principal component",
    )
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--output", default="asda_explained.png", help="PNG file to write")
    parser.add_argument(
        "--palette", action="store_true", help="store the PNG with a 256-colour palette (smaller, for docs)"
    )
    parser.add_argument(
        "--dpi", type=int, default=110, help="figure resolution in dots per inch (each panel is 2.2 inches wide)"
    )
    args = parser.parse_args(argv)
    if bool(args.dataset_name) == bool(args.image):
        parser.error("pass either --dataset_name (rows with ground truth) or --image with --text")
    if args.image and not args.text:
        parser.error("--image needs at least one --text")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_script_logging()
    if args.image:
        try:
            image = read_image(args.image)
        except UnreadableFile as err:
            raise SystemExit(f"error: --image {args.image}: {err}") from None
        images, texts, masks = [image] * len(args.text), args.text, None
        title = os.path.basename(args.image)
    else:
        try:
            indices = [int(i) for i in args.indices.split(",") if i.strip()]
        except ValueError:
            raise SystemExit(f"error: --indices must be comma-separated integers, got {args.indices!r}") from None
        rows = load_split_from_args(args, synthetic_num=max(args.synthetic_num_eval, max(indices) + 1))
        bad = [i for i in indices if not 0 <= i < len(rows)]
        if bad or not indices:
            raise SystemExit(f"error: --indices {bad or args.indices} outside the split's {len(rows)} rows")
        rows = rows.select(indices)
        images, texts, masks = list(rows["image"]), list(rows["sentence"]), list(rows["mask"])
        title = f"{args.dataset_name} {args.split}, rows {args.indices}"
    model, processor = load_model_and_processor(args.model, args.revision, args.device)
    records = explain_pairs(
        model, processor, images, texts, gt_masks=masks, threshold=args.threshold, method=args.feature_method
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    model_name = os.path.basename(os.path.normpath(args.model))
    columns = plot_explanations(records, args.output, title=f"{title} — {model_name}", dpi=args.dpi)
    if args.palette:
        from PIL import Image

        Image.open(args.output).convert("RGB").quantize(256).save(args.output, optimize=True)
    for r in records:
        iou = "" if r["iou"] is None else f", IoU {r['iou']:.3f}"
        score = "" if r["score"] is None else f", target p={r['score']:.3f}"
        absent = "" if r["target_present"] else ", no target (empty mask)"
        print(f"{r['text']!r}: layers L{r['low_layer']} + L{r['mid_layer']}{iou}{score}{absent}")
    print(f"wrote {args.output} ({len(records)} rows: {', '.join(columns)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
