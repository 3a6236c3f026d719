"""The benchmark's markdown report and the rewriting of a document's generated block."""

from .targets import lookup


def _fmt(value, digits=2, scale=1.0, suffix=""):
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value * scale:.{digits}f}{suffix}"


def to_markdown(results: dict, command: str = "") -> str:
    machine = results["machine"]
    settings = results["settings"]
    lines = []
    isa = machine.get("isa")
    if isa:
        lines.append(
            "CPU instruction sets: "
            + ", ".join(f"{name} {'yes' if present else 'no'}" for name, present in isa.items())
        )
    lines.append(
        f"Machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, torch {machine['torch']} "
        f"({machine['cpu_capability']}), {machine['torch_threads']} torch threads, native bf16: "
        f"{', '.join(machine['native_bf16']) or 'none'}; device {machine['device']}. Load average "
        f"{machine['load_average_at_start']} at the start, {machine.get('load_average_at_end')} at the end."
    )
    if command:
        lines.append(
            f"Command: `{command}` ({'quick' if settings['quick'] else 'full'} run, "
            f"{settings['repeats']} timed repeats after {settings['warmup']} warm-up; medians; "
            f"wall {results.get('wall_s', 0) / 60:.1f} min)."
        )
    lines.append("")
    ceilings = results.get("ceilings", {})
    if ceilings:
        lines.append("| ceiling | GFLOP/s |")
        lines.append("|---|---:|")
        for name, entry in ceilings.items():
            others = ", ".join(f"{size}: {e['gflops_per_s']:.0f}" for size, e in entry.get("by_size", {}).items())
            lines.append(f"| {name} matrix product, best of square sizes ({others}) | {entry['gflops_per_s']:.1f} |")
        lines.append("")
    forward, memory = results.get("forward", {}), results.get("memory", {})
    if forward:
        lines.append(
            "| model (inference) | params (M) | GFLOP / image | latency b1 (s) | throughput (img/s) "
            "| achieved GFLOP/s (b1 / batch) | % of matmul ceiling (b1 / batch) | peak RSS b1 (MB) |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        labels = {
            "asda_vit_b16_fp32": "ASDA vit_b16 416², fp32",
            "asda_vit_b16_bf16": "ASDA vit_b16 416², bf16 autocast",
            "asda_vit_b16_fp32_compiled": "ASDA vit_b16 416², fp32, torch.compile",
            "asda_vit_b16_bf16_compiled": "ASDA vit_b16 416², bf16 autocast, torch.compile",
            "clipseg_rd64_fp32": "CLIPSeg rd64-refined 352², fp32",
            "asda_vit_b16_grid_fp32": 'ASDA vit_b16 416², `sfa_scales="grid"` (paper text\'s aggregator), fp32',
        }
        for name, entry in forward.items():
            label = labels.get(name, name)
            mem = lookup(memory, name, "peak_rss_mb")
            if "compiled" in name:
                if not entry.get("works"):
                    lines.append(f"| {label} | | | did not work: {entry.get('error')} | | | | |")
                    continue
                lat = entry["latency"]
                lines.append(
                    f"| {label} (compile {entry['compile_s']:.0f} s; x{entry['speedup_vs_eager']:.2f} vs eager) "
                    f"| | | {lat['median_s']:.3f} | – | "
                    f"{lat['achieved_gflops_per_s']:.1f} / – | {100 * lat['fraction_of_ceiling']:.0f}% / – | – |"
                )
                continue
            lat, thr = entry["latency"], entry["throughput"]
            lines.append(
                f"| {label} | {entry['parameters'] / 1e6:.1f} | {entry['gflops_per_image']:.1f} | {lat['median_s']:.3f} "
                f"| {thr['images_per_s']:.2f} (b{thr['batch']}) | {lat['achieved_gflops_per_s']:.1f} / "
                f"{thr['achieved_gflops_per_s']:.1f} | {100 * lat['fraction_of_ceiling']:.0f}% / "
                f"{100 * thr['fraction_of_ceiling']:.0f}% | {_fmt(mem, 0)} |"
            )
        lines.append("")
        lines.append("bf16 rows are compared with the bf16 matrix-product ceiling, fp32 rows with the fp32 one.")
        pair = results.get("bf16_speedup")
        if pair:
            lines.append(
                f"Cross-check with fp32 and bf16 calls alternating ({len(pair['first_times_s'])} pairs at batch "
                f"{pair['batch']}, immune to load drift): x{pair['ratio']:.2f} (median fp32 "
                f"{pair['first_median_s']:.3f} s, bf16 {pair['second_median_s']:.3f} s). A bf16 call right "
                "after an fp32 call can run slower than in a row of bf16 calls; the targets use the rows above, "
                "i.e. one precision called repeatedly, as in use."
            )
        lines.append("")
    lines.extend(onnx_markdown(results))
    training, data = results.get("training", {}), results.get("data_pipeline", {})
    if training:
        lines.append(
            "| training step (fwd + bwd + AdamW), fp32 | batch | image | step (s) | samples/s "
            "| GFLOP / sample | achieved GFLOP/s | data pipeline samples/s (1 thread / main) | data ÷ train |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for preset, entry in training.items():
            worker = lookup(data, preset, "worker_1_thread", "samples_per_s")
            main = lookup(data, preset, "main_process", "samples_per_s")
            factor = worker / entry["samples_per_s"] if worker else None
            lines.append(
                f"| ASDA {preset} | {entry['batch']} | {entry['image_size']}² | {entry['median_s']:.3f} | "
                f"{entry['samples_per_s']:.2f} | {entry['gflops_per_sample']:.1f} | "
                f"{entry['achieved_gflops_per_s']:.1f} | {_fmt(worker, 1)} / {_fmt(main, 1)} | "
                f"{_fmt(factor, 1, suffix='x')} |"
            )
        lines.append("")
    predict = results.get("predict", {})
    if predict:
        lines.append(
            "| end-to-end predict, batch 1, fp32 | decode (ms) | preprocess (ms) | forward (ms) "
            "| post-process (ms) | predict (ms) | predict ÷ forward |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for name, entry in predict.items():
            s = entry["stages_s"]
            lines.append(
                f"| {name} ({entry['image']} -> {entry['mask_shape'][0]}x{entry['mask_shape'][1]} mask) | "
                f"{s['decode'] * 1e3:.1f} | {s['preprocess'] * 1e3:.1f} | {s['forward'] * 1e3:.1f} | "
                f"{s['postprocess'] * 1e3:.1f} | {s['predict'] * 1e3:.1f} | {entry['overhead_ratio']:.3f} |"
            )
        lines.append("")
    agreement = results.get("bf16_agreement", {})
    if agreement and "skipped" not in agreement:
        lines.append(
            f"bf16 vs fp32 on `{agreement['checkpoint']}` ({agreement['samples']} synthetic val rows, masks at the "
            f"original size, threshold {agreement['threshold']}): mean IoU {agreement['mean_iou_bf16_vs_fp32']:.4f} "
            f"(min {agreement['min_iou_bf16_vs_fp32']:.4f}, pooled {agreement['overall_iou_bf16_vs_fp32']:.4f}); "
            f"mIoU vs ground truth fp32 {agreement['mIoU_vs_ground_truth']['fp32']:.4f}, bf16 "
            f"{agreement['mIoU_vs_ground_truth']['bf16']:.4f}; bf16 speed-up on this checkpoint "
            f"{agreement['bf16_speedup_on_checkpoint']:.2f}x."
        )
        lines.append("")
    elif agreement:
        lines.append(f"bf16 mask agreement: skipped ({agreement['skipped']}).")
        lines.append("")
    targets = results.get("targets", [])
    if targets:
        lines.append("| target | measured | threshold | met |")
        lines.append("|---|---:|---:|---|")
        for t in targets:
            met = "not measured" if t["met"] is None else ("**yes**" if t["met"] else "**no**")
            detail = f" ({t['detail']})" if t["detail"] else ""
            lines.append(f"| {t['target']}{detail} | {_fmt(t['value'], 3)} | {_fmt(t['threshold'], 2)} | {met} |")
        lines.append("")
    return "\n".join(lines)


def onnx_markdown(results: dict) -> list[str]:
    """ONNX Runtime next to torch (vit_b16, random weights) and on the trained checkpoint (with mask IoU)."""
    lines = []
    forward, ort = results.get("forward", {}), results.get("onnx")
    if ort:
        torch_b1 = lookup(forward, "asda_vit_b16_fp32", "latency", "median_s")
        torch_bn = lookup(forward, "asda_vit_b16_fp32", "throughput", "images_per_s")
        lines.append(
            "| vit_b16 416², same run | file (MB) | latency b1 (s) | speed-up b1 vs torch fp32 "
            "| throughput (img/s) | speed-up vs torch fp32 (batch) |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|")
        rows = [
            ("torch fp32 (eager)", forward.get("asda_vit_b16_fp32"), None),
            ("torch bf16 autocast", forward.get("asda_vit_b16_bf16"), None),
            ("ONNX Runtime fp32", ort.get("fp32"), ort.get("fp32", {}).get("file_mb")),
            ("ONNX Runtime int8, dynamic (MatMul)", ort.get("dynamic"), ort.get("dynamic", {}).get("file_mb")),
            ("ONNX Runtime int8, static QDQ (Conv + MatMul)", ort.get("static"), ort.get("static", {}).get("file_mb")),
        ]
        for label, entry, size in rows:
            if not entry:
                continue
            lat, thr = entry["latency"], entry["throughput"]
            lines.append(
                f"| {label} | {_fmt(size, 0)} | {lat['median_s']:.3f} | "
                f"{_fmt(torch_b1 / lat['median_s'] if torch_b1 else None, 2, suffix='x')} | "
                f"{thr['images_per_s']:.2f} (b{thr['batch']}) | "
                f"{_fmt(thr['images_per_s'] / torch_bn if torch_bn else None, 2, suffix='x')} |"
            )
        lines.append("")
    checkpoint = results.get("onnx_checkpoint")
    if checkpoint:
        check = checkpoint["check"]
        lines.append(
            f"On the checkpoint (`{results['settings'].get('checkpoint')}`; mask IoU against torch fp32 on "
            f"{check['samples']} synthetic val rows at the original size, threshold {check['threshold']}):"
        )
        lines.append("")
        lines.append(
            "| checkpoint | latency b1 (ms) | throughput (img/s) | max abs logit diff vs torch | mean mask IoU vs torch fp32 |"
        )
        lines.append("|---|---:|---:|---:|---:|")
        measured = {"ort_fp32": check["fp32"], "ort_int8": check.get("int8", {})}
        for name, label in (
            ("torch_fp32", "torch fp32"),
            ("ort_fp32", "ONNX Runtime fp32"),
            ("ort_int8", f"ONNX Runtime int8 ({check.get('int8', {}).get('method', '?')}, kept by the export)"),
        ):
            entry = checkpoint.get(name)
            if not entry:
                continue
            lat, thr = entry["latency"], entry["throughput"]
            m = measured.get(name, {})
            lines.append(
                f"| {label} | {lat['median_s'] * 1e3:.1f} | {thr['batch'] / thr['median_s']:.1f} (b{thr['batch']}) | "
                f"{_fmt(m.get('max_abs_logit_difference'), 4)} | {_fmt(m.get('mean_mask_iou'), 4)} |"
            )
        for method, m in check.get("int8_candidates", {}).items():
            lines.append(
                f"| (int8 {method}, measured by the export) | {m['latency_b1_s'] * 1e3:.1f} | | "
                f"{m['max_abs_logit_difference']:.4f} | {m['mean_mask_iou']:.4f} |"
            )
        lines.append("")
    return lines


DOC_BEGIN = "<!-- benchmark:begin (generated by scripts/benchmark.py; edits here are overwritten) -->"
DOC_END = "<!-- benchmark:end -->"


def update_document(path: str, markdown: str):
    """Replace the generated block of `path` (between DOC_BEGIN and DOC_END) with `markdown`."""
    with open(path) as handle:
        text = handle.read()
    if DOC_BEGIN not in text or DOC_END not in text:
        raise ValueError(f"{path} has no generated block: add the lines\n{DOC_BEGIN}\n{DOC_END}\nwhere the tables go")
    head, rest = text.split(DOC_BEGIN, 1)
    _, tail = rest.split(DOC_END, 1)
    with open(path, "w") as handle:
        handle.write(f"{head}{DOC_BEGIN}\n{markdown}\n{DOC_END}{tail}")
