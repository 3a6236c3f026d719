#!/usr/bin/env python
"""Which vision layers does the adaptive selection choose, and does the choice follow the expression?

    python scripts/selection_report.py --model outputs/asda-tiny-synthetic --dataset_name synthetic --split val
    python scripts/selection_report.py --model ckpt --dataset_name path/to/refcoco --dataset_config refcoco --split testA

Evaluates the split with the training run's own evaluation (RISTrainer: masks at the original size), then
counts the chosen low and mid layers overall, by expression type (relation / position / attributes only,
read from the words), by expression length in words and by category. Writes OUTPUT_DIR/selection_report.md
(tables), .json (counts) and .png (bar chart; needs matplotlib) and prints the tables.
"""

import os
import sys

from modeling_asda.evaluation.inference import checkpoint_script_parser, parse_and_load
from modeling_asda.evaluation.selection_report import (
    build_selection_report,
    format_selection_markdown,
    predict_selection,
    report_to_json,
)


def main(argv=None) -> int:
    parser = checkpoint_script_parser(__doc__)
    parser.add_argument("--output_dir", default="selection_report")
    parser.add_argument("--no_plot", action="store_true", help="tables only (no matplotlib needed)")
    args, model, processor, rows = parse_and_load(parser, argv)
    device = next(model.parameters()).device
    try:
        predictions = predict_selection(
            model, processor, rows, batch_size=args.batch_size, use_cpu=device.type == "cpu"
        )
    except ValueError as err:
        raise SystemExit(f"error: {args.model}: {err}") from None
    synthetic = len(rows) > 0 and set(rows["source"]) == {"synthetic"}
    report = build_selection_report(
        rows["sentence"],
        rows["category_id"],
        predictions,
        model.config.low_candidate_layers,
        model.config.mid_candidate_layers,
        synthetic=synthetic,
    )
    report["model"], report["dataset"], report["split"] = args.model, args.dataset_name, args.split
    markdown = (
        f"# Adaptive selection: {args.model} on {args.dataset_name} {args.split}\n\n"
        + format_selection_markdown(report)
    )
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "selection_report.md"), "w") as handle:
        handle.write(markdown)
    with open(os.path.join(args.output_dir, "selection_report.json"), "w") as handle:
        handle.write(report_to_json(report))
    print(markdown)
    if not args.no_plot:
        from modeling_asda.tools.visualization import plot_selection_report

        plot_selection_report(report, os.path.join(args.output_dir, "selection_report.png"))
    print(f"wrote {args.output_dir}/selection_report.md, .json" + ("" if args.no_plot else ", .png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
