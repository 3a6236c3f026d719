#!/usr/bin/env python
"""Write the REFER-layout shapes data set (a generator unlike the built-in one) for generalisation runs.

    python scripts/make_refer_shapes.py --output_dir data/refer-shapes-dev                    # for tuning
    python scripts/make_refer_shapes.py --output_dir data/refer-shapes-final --variant final  # final check only
    python scripts/run_ris.py --dataset_name data/refer-shapes-dev --dataset_config refcoco --config_preset tiny \
        --num_train_epochs 6 --do_train --do_eval --eval_splits val,testA,testB --output_dir outputs/refer-shapes
"""

import argparse
import json
import time

from modeling_asda.data.refer_shapes import VARIANTS, write_refer_shapes


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write the REFER-layout shapes data set.")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--variant", default="dev", choices=sorted(VARIANTS))
    parser.add_argument("--num_train_images", type=int, default=1000)
    parser.add_argument("--num_eval_images", type=int, default=150, help="images of each of val, testA, testB")
    parser.add_argument("--refs_per_image", type=int, default=2)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    counts = write_refer_shapes(
        args.output_dir, args.num_train_images, args.num_eval_images, args.variant, args.refs_per_image
    )
    print(
        json.dumps({"output_dir": args.output_dir, "refs": counts, "seconds": round(time.perf_counter() - start, 1)})
    )


if __name__ == "__main__":
    main()
