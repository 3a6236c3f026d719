#!/usr/bin/env python
"""Write the tiny preset's starting weights from a checkpoint (by default the default run's).

    python scripts/run_ris.py            # the default run: 30,000 built-in expressions, from random weights
    python scripts/make_tiny_init.py     # -> modeling_asda/training/tiny_synthetic_init.safetensors

`run_ris.py --config_preset tiny` without a checkpoint starts from that file (`--tiny_init synthetic`, the
default); `--tiny_init scratch` starts from random weights, as the default run itself does.
"""

import argparse
import sys

from modeling_asda.training.tiny_init import SHIPPED_TINY_INIT, save_tiny_init


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="outputs/asda-tiny-synthetic", help="an ASDA checkpoint folder")
    parser.add_argument("--output", default=str(SHIPPED_TINY_INIT), help="the .safetensors file to write")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    metadata = save_tiny_init(args.checkpoint, args.output)
    print(f"wrote {args.output} (half precision) from {args.checkpoint}: {metadata}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
