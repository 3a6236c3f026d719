#!/usr/bin/env python
"""Measure ASDA's inference and training cost on this machine, next to CLIPSeg and the machine's limits.

    python scripts/benchmark.py --quick                     # development run, a minute or two
    python scripts/benchmark.py --checkpoint outputs/asda-tiny-synthetic --doc docs/benchmark.md

Writes <output_dir>/benchmark.json (every timing) and <output_dir>/benchmark.md (the tables); with --doc
it also replaces the generated block of that markdown file. See docs/benchmark.md for what is measured.
"""

import argparse
import json
import os
import shlex
import sys

from modeling_asda.benchmark.measure import BenchmarkSettings, run_benchmark
from modeling_asda.benchmark.onnx_rows import add_onnx_sections
from modeling_asda.benchmark.report import to_markdown, update_document

SECTIONS = BenchmarkSettings.sections


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller batches, no torch.compile")
    parser.add_argument("--checkpoint", help="trained ASDA folder for the bf16/fp32 mask agreement and predict timing")
    parser.add_argument("--output_dir", default="outputs/benchmark")
    parser.add_argument("--doc", help="markdown file whose generated block receives the tables (docs/benchmark.md)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the CUDA paths are not measured in this repo)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, help="timed repeats per measurement (medians are reported)")
    parser.add_argument("--throughput_batch", type=int)
    parser.add_argument("--no_compile", action="store_true", help="skip torch.compile")
    parser.add_argument(
        "--onnx_dir",
        help="folder for the ONNX files of the onnx section (reused when present; default under outputs/)",
    )
    parser.add_argument("--only", help=f"comma-separated sections to run, from {','.join(SECTIONS)}")
    return parser.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    overrides = {"device": args.device, "threads": args.threads, "checkpoint": args.checkpoint}
    if args.repeats:
        overrides["repeats"] = args.repeats
    if args.throughput_batch:
        overrides["throughput_batch"] = args.throughput_batch
    if args.onnx_dir:
        overrides["onnx_dir"] = args.onnx_dir
    if args.no_compile:
        overrides["compile"] = False
    if args.only:
        sections = tuple(s.strip() for s in args.only.split(",") if s.strip())
        unknown = sorted(set(sections) - set(SECTIONS))
        if unknown:
            raise SystemExit(f"--only: unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
        overrides["sections"] = sections
    if args.checkpoint and not os.path.isfile(os.path.join(args.checkpoint, "config.json")):
        raise SystemExit(f"--checkpoint {args.checkpoint}: no config.json there (expected a save_pretrained folder)")
    settings = BenchmarkSettings.quick_settings(**overrides) if args.quick else BenchmarkSettings(**overrides)

    results = run_benchmark(settings, extra_sections=(add_onnx_sections,))
    command = "python scripts/benchmark.py " + " ".join(shlex.quote(a) for a in argv)
    results["command"] = command
    markdown = to_markdown(results, command)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "benchmark.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    with open(os.path.join(args.output_dir, "benchmark.md"), "w") as handle:
        handle.write(markdown + "\n")
    if args.doc:
        update_document(args.doc, markdown)
    print("\n" + markdown)


if __name__ == "__main__":
    main()
