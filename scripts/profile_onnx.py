#!/usr/bin/env python
"""Kernel time of an exported ASDA model per ONNX operator type, from ONNX Runtime's profiler.

    python scripts/profile_onnx.py --model outputs/benchmark/onnx/model.onnx --image_size 416
    python scripts/profile_onnx.py --model outputs/asda-tiny-onnx/model.onnx --image_size 128 --batch 8

Random inputs of the given size (timing does not depend on the values); one untimed call, then `--runs`.
"""

import argparse
import sys

from modeling_asda.export.profile import profile_operators


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="an .onnx file written by scripts/export_onnx.py")
    parser.add_argument("--image_size", type=int, required=True)
    parser.add_argument("--text_length", type=int, default=17)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    rows = profile_operators(args.model, args.image_size, args.text_length, args.batch, args.runs)
    print("| operator | ms per call | share | nodes |\n|---|---:|---:|---:|")
    for row in rows[: args.top]:
        print(f"| {row['op']} | {row['ms_per_run']:.1f} | {100 * row['share']:.1f}% | {row['nodes']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
