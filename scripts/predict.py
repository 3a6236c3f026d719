#!/usr/bin/env python
"""Masks for your own images with a trained ASDA checkpoint (a local folder or a Hub repo).

    python scripts/predict.py --model outputs/asda-tiny-synthetic --image photo.png --text "the red circle"
    python scripts/predict.py --model outputs/asda-tiny-synthetic --image photos/ --text "the star" --text "the big square"
    python scripts/predict.py --model outputs/asda-tiny-synthetic --image photos/ --expressions expressions.json

For every (image, expression) pair, OUTPUT_DIR gets `<image>_<k>_<expression>_mask.png` (0/255, the
image's original size) and `<image>_<k>_<expression>_overlay.png` (the mask tinted on the image, the
expression written on it), and predictions.jsonl lists them with the score, `target_present` and the
selected layers. A checkpoint with a no-target head (gRefCOCO) gives an empty mask, target_present false
and "no target" on the overlay for an expression that names nothing; its score is the probability that the
expression names something (without the head: the mean mask probability).
--expressions takes a JSON {"image name": "expression" or ["expression", ...]} or a CSV with the header
`image,text` (one row per pair); names are relative to the --image folder. Unreadable files (missing,
unsupported type, corrupt) are reported by name and skipped; the last line is a timing summary.
"""

import argparse
import sys

from modeling_asda.evaluation.inference import load_model_and_processor, resolve_device, setup_script_logging
from modeling_asda.pipeline_asda import ReferringSegmentationPipeline
from modeling_asda.tools.predict import format_summary, plan_jobs, predict_files


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="ASDA checkpoint folder or Hub repo id")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="onnxruntime: --model is a folder written by scripts/export_onnx.py (CPU)",
    )
    parser.add_argument("--int8", action="store_true", help="with --backend onnxruntime: run model_int8.onnx")
    parser.add_argument("--revision", default=None, help="Hub revision (pin a commit sha)")
    parser.add_argument("--image", required=True, help="an image file or a folder of images")
    parser.add_argument("--text", action="append", help="an expression; repeat for several (applied to every image)")
    parser.add_argument("--expressions", help="JSON or CSV file mapping image names to expressions")
    parser.add_argument("--output_dir", default="predictions")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--bf16", action="store_true", help="run the model under bfloat16 autocast")
    parser.add_argument("--batch_size", type=int, default=8, help="(image, expression) pairs per forward pass")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="mask probability threshold (default: the checkpoint's config.mask_threshold)",
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.threshold is not None and not 0 <= args.threshold < 1:
        parser.error(f"--threshold must be in [0, 1), got {args.threshold}")
    if args.backend == "onnxruntime" and (args.bf16 or args.device not in (None, "cpu")):
        parser.error("--backend onnxruntime runs on the CPU in fp32/int8: drop --bf16 and --device")
    if args.int8 and args.backend != "onnxruntime":
        parser.error("--int8 needs --backend onnxruntime")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_script_logging()
    try:
        plan = plan_jobs(args.image, args.text, args.expressions)
        device = resolve_device(args.device)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    if args.backend == "onnxruntime":
        from modeling_asda.export.onnx_model import load_onnx_model_and_processor

        try:
            model, processor = load_onnx_model_and_processor(args.model, int8=args.int8)
        except (FileNotFoundError, ImportError, ValueError) as err:
            raise SystemExit(f"error: {err}") from None
    else:
        try:
            model, processor = load_model_and_processor(args.model, revision=args.revision, device=device)
        except (ValueError, OSError) as err:  # a damaged or foreign checkpoint: the message names the file
            raise SystemExit(f"error: {err}") from None
    pipe = ReferringSegmentationPipeline(model=model, processor=processor, device=device)
    summary = predict_files(
        pipe,
        plan,
        args.output_dir,
        batch_size=args.batch_size,
        threshold=args.threshold,
        bf16=args.bf16,
        progress=len(plan.jobs) > 1,
    )
    print(format_summary(summary, device, args.bf16))
    return 0 if summary["pairs"] else 1


if __name__ == "__main__":
    sys.exit(main())
