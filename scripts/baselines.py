#!/usr/bin/env python
"""Language-blind baselines (whole image, random object) on synthetic splits, as a markdown table."""

import argparse

from datasets import load_from_disk

from modeling_asda.data.synthetic import build_synthetic_dataset
from modeling_asda.evaluation.baselines import RANDOM_OBJECT, WHOLE_IMAGE, language_blind_baselines
from modeling_asda.evaluation.metrics import format_results_table


def main(argv=None):
    parser = argparse.ArgumentParser(description="Language-blind baselines on synthetic splits (markdown table).")
    parser.add_argument("--dataset_dir", help="a save_to_disk DatasetDict of synthetic data; default: generate one")
    parser.add_argument("--splits", nargs="+", default=["val", "test"])
    parser.add_argument("--num_test", type=int, default=1000, help="rows per split when generating")
    parser.add_argument("--data_seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-object choice")
    args = parser.parse_args(argv)

    if args.dataset_dir:
        data = load_from_disk(args.dataset_dir)
    else:
        data = build_synthetic_dataset(num_train=0, num_val=args.num_test, num_test=args.num_test, seed=args.data_seed)
    missing = [s for s in args.splits if s not in data]
    if missing:
        raise SystemExit(f"splits {missing} not in the data set (it has {list(data)})")
    table = {WHOLE_IMAGE: {}, RANDOM_OBJECT: {}}
    for split in args.splits:
        for name, metrics in language_blind_baselines(data[split], args.seed).items():
            table[name][split] = metrics
    print(format_results_table(table, args.splits, metrics=("mIoU", "oIoU", "Prec@0.5")))


if __name__ == "__main__":
    main()
