#!/usr/bin/env python
"""Paper-width proxy run on a CPU: vit_b16 heads at full width on a shallow backbone, the built-in data.

    python scripts/proxy_run.py --init default --output proxy-default.json
    python scripts/proxy_run.py --init fan_out --output proxy-fan_out.json   # the detection-default init

Logs loss, mask-logit spread, saturated coefficients and selection shares every --log_every steps and
writes them with a final validation mIoU (at the logits' resolution) to --output.
"""

import argparse
import json

from modeling_asda.training.proxy import run_proxy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init", default="default", choices=("default", "fan_out"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--log_every", type=int, default=25)
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--vision_layers", type=int, default=6)
    parser.add_argument("--num_train", type=int, default=2000)
    parser.add_argument("--num_eval", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    result = run_proxy(
        init=args.init,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        log_every=args.log_every,
        num_train=args.num_train,
        num_eval=args.num_eval,
        seed=args.seed,
        image_size=args.image_size,
        vision_layers=args.vision_layers,
    )
    print(json.dumps({key: value for key, value in result.items() if key != "history"}))
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
