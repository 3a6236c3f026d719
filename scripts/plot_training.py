#!/usr/bin/env python
"""Plot a run's training loss, evaluation metrics (mIoU/oIoU per split) and learning rate against the step.

    python scripts/plot_training.py outputs/asda-tiny-synthetic            # -> outputs/asda-tiny-synthetic/training_curves.png
    python scripts/plot_training.py outputs/run/checkpoint-500/trainer_state.json --output curves.png

Reads the `log_history` of the run's trainer_state.json (written by run_ris.py) and the final evaluation in
eval_results.json next to it. Per-step losses appear when --logging_steps is smaller than the number of
steps; evaluation points with --eval_strategy steps|epoch, and the final evaluation at the last step. Needs matplotlib (pip install "asda-transformers[viz]").
"""

import argparse
import json
import os
import sys

from modeling_asda.tools.visualization import plot_training_curves


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run's output folder, or its trainer_state.json")
    parser.add_argument("--output", default=None, help="PNG to write (default: training_curves.png next to the state)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    path = os.path.join(args.run, "trainer_state.json") if os.path.isdir(args.run) else args.run
    if not os.path.isfile(path):
        raise SystemExit(f"error: {path} does not exist (run_ris.py writes it at the end of training)")
    try:
        with open(path) as handle:
            state = json.load(handle)
        history = list(state["log_history"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise SystemExit(f"error: {path} is not a trainer_state.json with a log_history ({err})") from None
    # run_ris.py evaluates after saving the state; its final metrics are in eval_results.json beside it.
    final = os.path.join(os.path.dirname(os.path.abspath(path)), "eval_results.json")
    logged = {key for entry in history for key in entry}
    if os.path.isfile(final) and "global_step" in state:
        with open(final) as handle:
            metrics = {k: v for k, v in json.load(handle).items() if k.startswith("eval_") and k not in logged}
        if metrics:
            history.append({**metrics, "step": state["global_step"]})
    output = args.output or os.path.join(os.path.dirname(os.path.abspath(path)), "training_curves.png")
    try:
        series = plot_training_curves(history, output, title=os.path.basename(os.path.dirname(os.path.abspath(path))))
    except ValueError as err:
        raise SystemExit(f"error: {path}: {err}") from None
    evals = ", ".join(f"{split} {metric}" for split, metric in sorted(series["eval"]))
    print(f"wrote {output}: {len(series['loss'])} loss points; evaluation: {evals or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
