#!/usr/bin/env python
"""Write the built-in synthetic referring-segmentation data set to disk (datasets' save_to_disk)."""

import argparse
import time

from modeling_asda.data.synthetic import SyntheticConfig, build_synthetic_dataset


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Write the synthetic referring-segmentation data set with save_to_disk."
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_train", type=int, default=20000)
    parser.add_argument("--num_val", type=int, default=1000)
    parser.add_argument("--num_test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min_objects", type=int, default=SyntheticConfig.min_objects)
    parser.add_argument("--max_objects", type=int, default=SyntheticConfig.max_objects)
    parser.add_argument("--no_relations", action="store_true", help="no 'X left of Y' expressions")
    parser.add_argument("--no_positions", action="store_true", help="no 'X on the left' expressions")
    parser.add_argument("--no_sizes", action="store_true", help="no 'big'/'small' words")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    data = build_synthetic_dataset(
        args.num_train,
        args.num_val,
        args.num_test,
        seed=args.seed,
        min_objects=args.min_objects,
        max_objects=args.max_objects,
        relations=not args.no_relations,
        positions=not args.no_positions,
        sizes=not args.no_sizes,
    )
    seconds = time.perf_counter() - start
    rows = sum(len(d) for d in data.values())
    data.save_to_disk(args.output_dir)
    print(f"{rows} rows in {seconds:.1f} s ({rows / seconds:.0f} samples/s) -> {args.output_dir}")
    for split, d in data.items():
        print(f"  {split}: {len(d)} rows, {len(set(d['image_id']))} scenes")


if __name__ == "__main__":
    main()
