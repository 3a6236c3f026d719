#!/usr/bin/env python
"""Export an ASDA checkpoint to ONNX (and int8) for serving with ONNX Runtime, and check the export.

    python scripts/export_onnx.py --model outputs/asda-tiny-synthetic --output outputs/asda-tiny-onnx --int8
    python scripts/predict.py --backend onnxruntime --model outputs/asda-tiny-onnx --image scene.png --text "the red circle"

OUTPUT gets model.onnx (inputs pixel_values, input_ids, attention_mask; outputs logits, then the selected
layers; dynamic batch), with --int8 model_int8.onnx (ONNX Runtime's dynamic or static quantisation,
whichever the check prefers), the config and processor files, and onnx_export.json with the self-check.
The check runs the built-in synthetic data through PyTorch and ONNX Runtime: max |Δlogits| (fp32) and the
mean mask IoU of int8 against fp32; values out of bounds make the command fail (exit 1). See docs/export.md.
"""

import argparse
import json
import sys

from modeling_asda.export.check import DEFAULT_MAX_LOGIT_DIFF, DEFAULT_MIN_INT8_IOU, ExportCheckError
from modeling_asda.export.onnx_export import DEFAULT_OPSET
from modeling_asda.export.workflow import export_checkpoint


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="ASDA checkpoint folder or Hub repo id")
    parser.add_argument("--output", required=True, help="folder for the ONNX files, config and processor")
    parser.add_argument("--int8", action="store_true", help="also write model_int8.onnx")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--revision", default=None, help="Hub revision (pin a commit sha)")
    parser.add_argument("--check_samples", type=int, default=32, help="synthetic val rows for the self-check")
    parser.add_argument("--calibration_samples", type=int, default=32, help="synthetic train rows for static int8")
    parser.add_argument("--max_logit_diff", type=float, default=DEFAULT_MAX_LOGIT_DIFF)
    parser.add_argument("--min_int8_iou", type=float, default=DEFAULT_MIN_INT8_IOU)
    args = parser.parse_args(argv)
    if args.check_samples < 2 or args.calibration_samples < 1:
        parser.error("--check_samples must be >= 2 and --calibration_samples >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        manifest = export_checkpoint(
            args.model,
            args.output,
            int8=args.int8,
            opset=args.opset,
            check_samples=args.check_samples,
            calibration_samples=args.calibration_samples,
            max_logit_diff=args.max_logit_diff,
            min_int8_iou=args.min_int8_iou,
            revision=args.revision,
        )
    except ExportCheckError as err:
        print(f"error: {err} (files and onnx_export.json left in {args.output} for inspection)", file=sys.stderr)
        return 1
    print(json.dumps({"check": manifest["check"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
