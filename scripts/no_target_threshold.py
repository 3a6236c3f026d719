#!/usr/bin/env python
"""How the no-target threshold trades N_acc against T_acc on one split (checkpoints with a no-target head).

    python scripts/no_target_threshold.py --model outputs/asda-generalized --dataset_name synthetic \
        --dataset_config generalized --split val --synthetic_num_eval 500
    python scripts/no_target_threshold.py --model ckpt --dataset_name /data/gref --dataset_config grefcoco \
        --split_by unc --split val

Prints gIoU, cIoU, N_acc, T_acc, Pr@0.7 and Pr@0.9 at each threshold (one pass over the split: the masks do
not depend on it). Choose on a validation split, then set `config.no_target_threshold` in the checkpoint.
"""

import json
import sys

from modeling_asda.evaluation.inference import checkpoint_script_parser, parse_and_load
from modeling_asda.evaluation.target_threshold import (
    DEFAULT_THRESHOLDS,
    format_sweep_table,
    predict_target_scores,
    sweep_thresholds,
)


def main(argv=None) -> int:
    parser = checkpoint_script_parser(__doc__, dataset_config="generalized")
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(DEFAULT_THRESHOLDS))
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args, model, processor, rows = parse_and_load(parser, argv)
    try:
        predictions = predict_target_scores(model, processor, rows, batch_size=args.batch_size)
    except ValueError as err:
        raise SystemExit(f"error: {args.model}: {err}") from None
    table = sweep_thresholds(predictions, args.thresholds)
    print(f"{args.model} on {args.dataset_name} {args.split} ({len(rows)} expressions; values x100):\n")
    print(format_sweep_table(table))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(table, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
