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


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise OSError(f"/proc/self/status has no {field}")


def probe(preset: str, batch: int, bf16: bool, checkpointing: bool) -> dict:
    """Runs inside the subprocess."""
    import torch

    from modeling_asda import ASDAConfig, ASDAForReferringSegmentation

    torch.manual_seed(0)
    config = getattr(ASDAConfig, preset)()
    model = ASDAForReferringSegmentation(config).train()
    if checkpointing:
        model.activation_checkpointing_enable()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    size = config.image_size
    pixels = torch.randn(batch, 3, size, size)
    ids = torch.zeros(batch, config.max_text_length, dtype=torch.long)
    ids[:, :4] = torch.tensor([49406, 320, 1929, 49407])
    labels = (torch.rand(batch, size, size) > 0.5).float()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(pixels, ids, (ids != 0).long(), labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    step()
    before = _rss_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset VmHWM to the current resident size
    step()
    return {"batch": batch, "rss_before_mb": before, "peak_mb": _rss_mb("VmHWM")}


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
        print(json.dumps(probe(args.preset, args._probe, args.bf16, args.gradient_checkpointing)))
        return

    rows = []
    for batch in [int(b) for b in args.measure.split(",")]:
        command = [sys.executable, os.path.abspath(__file__), "--preset", args.preset, "--_probe", str(batch)]
        command += ["--bf16"] * args.bf16 + ["--gradient_checkpointing"] * args.gradient_checkpointing
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        print(
            f"batch {batch}: peak {rows[-1]['peak_mb']:.0f} MB (resident before the step {rows[-1]['rss_before_mb']:.0f} MB)"
        )
    if len(rows) < 2:
        return
    (b0, p0), (b1, p1) = (rows[0]["batch"], rows[0]["peak_mb"]), (rows[-1]["batch"], rows[-1]["peak_mb"])
    per_image = (p1 - p0) / (b1 - b0)
    fixed = p0 - per_image * b0
    estimate = fixed + per_image * args.target_batch
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
