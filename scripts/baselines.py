#!/usr/bin/env python
"""Language-blind baselines (whole image, random object) on synthetic or REFER-layout splits, as a markdown table.

python scripts/baselines.py --splits val test                                     # built-in synthetic data
python scripts/baselines.py --refer_root data/refer-shapes-dev --dataset_config refcoco --splits val testA testB
"""

import argparse

from datasets import load_from_disk

from modeling_asda.data.loading import load_referring_dataset
from modeling_asda.data.refer import find_refer_files
from modeling_asda.data.synthetic import build_synthetic_dataset
from modeling_asda.evaluation.baselines import RANDOM_OBJECT, WHOLE_IMAGE, language_blind_baselines
from modeling_asda.evaluation.metrics import format_results_table
from modeling_asda.evaluation.refer_baselines import refer_language_blind_baselines


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Language-blind baselines on synthetic or REFER-layout splits (markdown table)."
    )
    parser.add_argument("--dataset_dir", help="a save_to_disk DatasetDict of synthetic data; default: generate one")
    parser.add_argument("--refer_root", help="a REFER-layout folder (refs(*).p + instances.json + images) instead")
    parser.add_argument("--dataset_config", help="refcoco | refcoco+ | refcocog (with --refer_root)")
    parser.add_argument("--split_by", help="unc | umd | google (with --refer_root)")
    parser.add_argument("--splits", nargs="+", default=["val", "test"])
    parser.add_argument("--num_test", type=int, default=1000, help="rows per split when generating")
    parser.add_argument("--data_seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-object choice")
    args = parser.parse_args(argv)

    instances = None
    if args.refer_root:
        data = load_referring_dataset(
            args.refer_root, dataset_config=args.dataset_config, split_by=args.split_by, splits=args.splits
        )
        _, instances = find_refer_files(args.refer_root, args.dataset_config, args.split_by)
    elif args.dataset_dir:
        data = load_from_disk(args.dataset_dir)
    else:
        data = build_synthetic_dataset(num_train=0, num_val=args.num_test, num_test=args.num_test, seed=args.data_seed)
    missing = [s for s in args.splits if s not in data]
    if missing:
        raise SystemExit(f"splits {missing} not in the data set (it has {list(data)})")
    table = {WHOLE_IMAGE: {}, RANDOM_OBJECT: {}}
    for split in args.splits:
        if instances:
            baselines = refer_language_blind_baselines(data[split], instances, args.seed)
        else:
            baselines = language_blind_baselines(data[split], args.seed)
        for name, metrics in baselines.items():
            table[name][split] = metrics
    print(format_results_table(table, args.splits, metrics=("mIoU", "oIoU", "Prec@0.5")))


if __name__ == "__main__":
    main()
