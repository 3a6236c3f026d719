#!/usr/bin/env python
"""Check a configuration in a minute before spending GPU hours: statistics of one forward/backward pass.

    python scripts/inspect_model.py --preset vit_b16
    python scripts/inspect_model.py --preset vit_b16 --config_overrides aligner=single,coefficient_pooling=mean
    python scripts/inspect_model.py --model outputs/asda-tiny-synthetic --json stats.json
    python scripts/inspect_model.py --preset vit_b16 --all_variants [--init fan_out]   # head figures per variant

Prints the head figures (mask logit spread and share beyond |5|, share of coefficients with |tanh| > 0.96,
their pre-tanh spread, the selection's mean max probability and normalised entropy) and, per module, the
output spread, its saturated share and the gradient norm of its parameters, in training mode on random
images and expressions (batch 2). Healthy at initialisation: logit std <= 3 with < 5% beyond |5|, < 10%
saturated coefficients, selection entropy well above 0.
"""

import argparse
import json
import sys

import torch

from modeling_asda import ASDAForReferringSegmentation
from modeling_asda.tools.inspection import (
    VARIANTS,
    apply_fan_out_init,
    format_figures,
    format_module_table,
    format_variant_table,
    head_figures,
    module_statistics,
    random_inputs,
    variant_figures,
)
from modeling_asda.training.arguments import parse_config_overrides
from modeling_asda.training.experiment import preset_config


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="vit_b16", choices=("vit_b16", "tiny"), help="model size at random init")
    parser.add_argument("--config_overrides", default=None, help="ASDAConfig fields, e.g. 'aligner=single'")
    parser.add_argument("--model", default=None, help="inspect this checkpoint (folder or Hub id) instead")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--depth", type=int, default=3, help="module names up to this many dots")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the figures and the module rows here")
    parser.add_argument(
        "--all_variants", action="store_true", help="head figures of every aligner/fusion/pooling/selector variant"
    )
    parser.add_argument(
        "--variants",
        default=None,
        help="with --all_variants: only these (comma-separated names, e.g. default,aligner=none)",
    )
    parser.add_argument(
        "--init",
        default="default",
        choices=("default", "fan_out"),
        help="fan_out: re-initialise the heads with kaiming fan_out / std 0.02, for comparison",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.manual_seed(args.seed)
    overrides = parse_config_overrides(args.config_overrides)
    if args.all_variants:
        variants = VARIANTS
        if args.variants:
            names = [name.strip() for name in args.variants.split(",") if name.strip()]
            unknown = [name for name in names if name not in VARIANTS]
            if unknown:
                raise SystemExit(f"--variants: unknown {unknown}; known: {sorted(VARIANTS)}")
            variants = {name: VARIANTS[name] for name in names}
        results = variant_figures(args.preset, variants, init=args.init, seed=args.seed, **overrides)
        print(format_variant_table(results))
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(results, handle, indent=2)
        return results
    if args.model:
        model = ASDAForReferringSegmentation.from_pretrained(args.model, **overrides)
    else:
        model = ASDAForReferringSegmentation(preset_config(args.preset, overrides))
    if args.init == "fan_out":
        apply_fan_out_init(model)
    inputs = random_inputs(model.config, args.batch_size, args.seed)
    figures = head_figures(model, inputs)
    rows = module_statistics(model, inputs, max_depth=args.depth)
    print(format_figures(figures))
    print()
    print(format_module_table(rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"figures": figures, "modules": rows}, handle, indent=2)
    return figures


if __name__ == "__main__":
    main()
