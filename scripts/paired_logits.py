#!/usr/bin/env python
"""Score the decoder's own logits and the final (refined) logits of one checkpoint on the same rows.

    python scripts/paired_logits.py --model outputs/asda-tiny-synthetic --split test
    python scripts/paired_logits.py --model ckpt --dataset_name data/refer-shapes --dataset_config refcoco --split testA

With a mask refiner the rest of the model trains as without it, so the difference is what the refiner adds.
"""

import sys

from modeling_asda.evaluation.inference import checkpoint_script_parser, parse_and_load
from modeling_asda.evaluation.paired_logits import paired_counts, paired_table


def main(argv=None) -> int:
    parser = checkpoint_script_parser(__doc__)
    args, model, processor, rows = parse_and_load(parser, argv)
    counts = paired_counts(model, processor, rows, batch_size=args.batch_size)
    print(f"{args.model} on {args.dataset_name} {args.split} ({len(rows)} expressions; values x100):\n")
    print(paired_table(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
