#!/usr/bin/env python
"""Which object a checkpoint segments on the built-in synthetic data, and how it differs from the target.

    python scripts/object_confusions.py --model outputs/asda-tiny-synthetic --split test

Counts, for expressions with and without a shape word, how often the mask covers the target, another object
(and in which attributes that object differs: colour, shape, size, or none), or no object.
"""

import sys

from modeling_asda.evaluation.inference import checkpoint_script_parser, parse_and_load
from modeling_asda.evaluation.object_confusions import count_confusions, format_confusion_table, predicted_masks


def _check_synthetic(args, parser):
    if args.dataset_name != "synthetic":
        parser.error("the scenes are regenerated from the built-in generator: --dataset_name must be 'synthetic'")


def main(argv=None) -> int:
    parser = checkpoint_script_parser(__doc__)
    args, model, processor, rows = parse_and_load(parser, argv, check=_check_synthetic)
    counts = count_confusions(rows, predicted_masks(model, processor, rows, batch_size=args.batch_size))
    print(f"{args.model} on the built-in {args.split} split ({len(rows)} expressions):\n")
    print(format_confusion_table(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
