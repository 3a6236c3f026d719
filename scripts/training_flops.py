#!/usr/bin/env python
"""FLOPs of one training step (forward with loss + backward) per sample, for presets with config overrides.

    python scripts/training_flops.py --preset tiny "" "decoder_upsampling=16" "vision_config.patch_size=8"

Counted by torch's FlopCounterMode (matmuls, convolutions, attention), so independent of the machine's load:
the ratio between two variants is the ratio of their training cost where these operations dominate.
"""

import argparse
import functools

import torch

from modeling_asda.benchmark.measure import count_flops
from modeling_asda.modeling_asda import ASDAForReferringSegmentation
from modeling_asda.training.arguments import parse_config_overrides
from modeling_asda.training.experiment import preset_config


def training_step(model, pixels, ids, mask, labels):
    model(pixels, ids, mask, labels=labels).loss.backward()


def main(argv=None):
    parser = argparse.ArgumentParser(description="Training FLOPs per sample of config variants.")
    parser.add_argument("overrides", nargs="+", help="--config_overrides strings; '' is the preset itself")
    parser.add_argument("--preset", default="tiny", choices=("tiny", "vit_b16"))
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    base = None
    print(
        "| overrides | parameters (M) | mask logits | training GFLOP / sample | x preset |\n|---|---:|---:|---:|---:|"
    )
    for text in args.overrides:
        config = preset_config(args.preset, parse_config_overrides(text))
        model = ASDAForReferringSegmentation(config).train()
        size, batch = config.image_size, args.batch
        pixels = torch.randn(batch, 3, size, size)
        ids = torch.zeros(batch, config.max_text_length, dtype=torch.long)
        ids[:, 0], ids[:, 1:6], ids[:, 6] = 49406, 320, 49407
        mask = (ids != 0).long()
        labels = (torch.rand(batch, size, size) > 0.8).float()
        flops = count_flops(functools.partial(training_step, model, pixels, ids, mask, labels)) / batch / 1e9
        base = base or flops
        params = sum(p.numel() for p in model.parameters()) / 1e6
        side = config.mask_size
        print(f"| `{text or '(preset)'}` | {params:.2f} | {side}x{side} | {flops:.3f} | {flops / base:.2f} |")


if __name__ == "__main__":
    main()
