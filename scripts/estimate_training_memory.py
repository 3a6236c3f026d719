#!/usr/bin/env python
"""Estimate the memory of one ASDA training step at a given batch size, from measurements at small batches.

    python scripts/estimate_training_memory.py --preset vit_b16 --measure 1,2 --target_batch 14

Each measured batch runs in a fresh subprocess: build the model and AdamW, take one warm-up step (so the
optimizer states exist), reset the kernel's peak-RSS counter, take one more step (forward with loss,
backward, AdamW step) and read the peak. The increase per image is fitted on the measured batches and
extrapolated to --target_batch. On a CPU this measures host memory; a GPU holds the same tensors (weights,
gradients, AdamW states, saved activations) plus allocator and kernel workspace, so the result is an
ESTIMATE of the per-GPU memory, not a GPU measurement.
"""

import argparse
import json
import os
import subprocess
import sys

from modeling_asda.benchmark.memory import extrapolate_peak, training_step_peak


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="vit_b16", choices=["tiny", "vit_b16"])
    parser.add_argument("--measure", default="1,2", help="batch sizes to measure (comma-separated)")
    parser.add_argument("--target_batch", type=int, default=14)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (as --bf16 training on a GPU)")
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--_probe", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._probe is not None:
        print(json.dumps(training_step_peak(args.preset, args._probe, args.bf16, args.gradient_checkpointing)))
        return

    rows = []
    for batch in [int(b) for b in args.measure.split(",")]:
        command = [sys.executable, os.path.abspath(__file__), "--preset", args.preset, "--_probe", str(batch)]
        command += ["--bf16"] * args.bf16 + ["--gradient_checkpointing"] * args.gradient_checkpointing
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        print(
            f"batch {batch}: peak {rows[-1]['peak_rss_mb']:.0f} MB (resident before the step {rows[-1]['rss_before_mb']:.0f} MB)"
        )
    if len(rows) < 2:
        return
    fit = extrapolate_peak(rows, args.target_batch)
    per_image, fixed, estimate = fit["per_image_mb"], fit["fixed_mb"], fit["estimate_mb"]
    result = {
        "preset": args.preset,
        "bf16": args.bf16,
        "gradient_checkpointing": args.gradient_checkpointing,
        "measured": rows,
        "per_image_mb": per_image,
        "fixed_mb": fixed,
        "target_batch": args.target_batch,
        "estimate_mb": estimate,
    }
    print(json.dumps(result))
    print(
        f"ESTIMATE at batch {args.target_batch}: {estimate / 1024:.1f} GiB "
        f"({fixed / 1024:.1f} GiB fixed: weights, gradients, AdamW states, runtime; {per_image:.0f} MB per image)"
    )


if __name__ == "__main__":
    main()
