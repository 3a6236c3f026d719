"""ONNX Runtime rows of the benchmark: fp32 and int8 (dynamic, static) next to torch, and the checkpoint's agreement.

vit_b16 runs on random weights (timing does not depend on them); the int8 variants are built the way
scripts/export_onnx.py builds them (static calibrated on the built-in synthetic data). Mask agreement only
means something for a trained model, so it is measured on the --checkpoint through the export's own
workflow, which also picks the int8 method that folder gets.
"""

import gc
import os

import numpy as np
import torch

from .measure import BenchmarkSettings, asda_inputs, build_asda, timed


def _feeds(inputs: dict) -> dict:
    return {
        "pixel_values": inputs["pixel_values"].cpu().numpy().astype(np.float32),
        "input_ids": inputs["input_ids"].cpu().numpy().astype(np.int64),
        "attention_mask": inputs["attention_mask"].cpu().numpy().astype(np.int64),
    }


def session_benchmark(session, make_inputs, settings: BenchmarkSettings, gflops_per_image: float, ceiling: float):
    """Latency at the latency batch and throughput at the throughput batch of an ONNX Runtime session."""
    result = {"gflops_per_image": gflops_per_image}
    for key, batch, repeats in (
        ("latency", settings.latency_batch, settings.repeats),
        ("throughput", settings.throughput_batch, settings.throughput_repeats),
    ):
        feeds = _feeds(make_inputs(batch))
        timing = timed(lambda feeds=feeds: session.run(None, feeds), repeats, settings.warmup)
        images_per_s = batch / timing["median_s"]
        result[key] = {
            "batch": batch,
            **timing,
            "images_per_s": images_per_s,
            "achieved_gflops_per_s": gflops_per_image * images_per_s,
            "fraction_of_ceiling": gflops_per_image * images_per_s / ceiling,
        }
    return result


def build_onnx_files(preset: str, folder: str, overrides=None, calibration_samples: int = 8, log=print) -> dict:
    """model.onnx, dynamic.onnx and static.onnx of a randomly initialised preset in `folder` (files there are reused)."""
    from ..export import check, quantize
    from ..export.onnx_export import export_onnx
    from ..processing_asda import ASDAProcessor

    paths = {name: os.path.join(folder, f"{name}.onnx") for name in ("fp32", "dynamic", "static")}
    paths["fp32"] = os.path.join(folder, "model.onnx")
    if all(os.path.isfile(p) for p in paths.values()):
        log(f"reusing the ONNX files in {folder}")
        return {**paths, "reused": True}
    model = build_asda(preset, **(overrides or {}))
    processor = ASDAProcessor.from_model_config(model.config)
    if not os.path.isfile(paths["fp32"]):
        export_onnx(model, asda_inputs(model.config, 2), folder)
    del model
    gc.collect()
    if not os.path.isfile(paths["dynamic"]):
        quantize.quantize_dynamic_int8(paths["fp32"], paths["dynamic"])
    if not os.path.isfile(paths["static"]):
        calibration = check.synthetic_batch(processor, "train", calibration_samples, seed=1)
        quantize.quantize_static_int8(
            paths["fp32"], paths["static"], check.feed_batches(calibration, 1)
        )  # vit_b16: batches of 8 ran out of memory
    return {**paths, "reused": False}


def onnx_forward_rows(settings: BenchmarkSettings, folder: str, gflops_per_image: float, fp32_rate: float, log=print):
    """ORT fp32 / int8-dynamic / int8-static rows for vit_b16 (same FLOP count as the torch model)."""
    from ..export.onnx_model import make_session

    files = build_onnx_files("vit_b16", folder, log=log)
    config = build_asda_config("vit_b16")
    rows = {"files_reused": files["reused"]}
    for name in ("fp32", "dynamic", "static"):
        session = make_session(files[name], threads=settings.threads)
        rows[name] = session_benchmark(
            session, lambda b: asda_inputs(config, b), settings, gflops_per_image, fp32_rate
        )
        rows[name]["file_mb"] = os.path.getsize(files[name]) / 1e6
        lat = rows[name]["latency"]["median_s"]
        log(
            f"ORT vit_b16 {name}: b1 {lat:.3f} s, b{settings.throughput_batch} {rows[name]['throughput']['images_per_s']:.2f} img/s"
        )
        del session
        gc.collect()
    return rows


def build_asda_config(preset: str):
    from ..configuration_asda import ASDAConfig

    return getattr(ASDAConfig, preset)()


def checkpoint_rows(checkpoint: str, folder: str, settings: BenchmarkSettings, log=print) -> dict:
    """Export the checkpoint with --int8 (the export's own check: IoU of both int8 methods against fp32) and
    time torch fp32, ORT fp32 and ORT int8 on it at both batches."""
    from ..evaluation.inference import load_model_and_processor
    from ..export.check import ExportCheckError
    from ..export.onnx_model import FP32_FILE, INT8_FILE, make_session, read_manifest
    from ..export.workflow import export_checkpoint

    try:  # the export's own bounds, so the int8 kept here is the one scripts/export_onnx.py would keep
        manifest = export_checkpoint(checkpoint, folder, int8=True, log=log)
    except ExportCheckError as err:
        log(f"the export's check failed: {err}")
        manifest = read_manifest(folder)
    model, _ = load_model_and_processor(checkpoint, device="cpu")
    make = lambda b: asda_inputs(model.config, b)  # noqa: E731
    rows = {"check": manifest["check"]}
    with torch.inference_mode():
        for key, batch, repeats in (
            ("latency", settings.latency_batch, settings.repeats),
            ("throughput", settings.throughput_batch, settings.throughput_repeats),
        ):
            inputs = make(batch)
            rows.setdefault("torch_fp32", {})[key] = {
                "batch": batch,
                **timed(lambda inputs=inputs: model(**inputs), repeats, settings.warmup),
            }
    for name, file in (("ort_fp32", FP32_FILE), ("ort_int8", INT8_FILE)):
        session = make_session(os.path.join(folder, file), threads=settings.threads)
        rows[name] = {}
        for key, batch, repeats in (
            ("latency", settings.latency_batch, settings.repeats),
            ("throughput", settings.throughput_batch, settings.throughput_repeats),
        ):
            feeds = _feeds(make(batch))
            rows[name][key] = {
                "batch": batch,
                **timed(lambda feeds=feeds, session=session: session.run(None, feeds), repeats, settings.warmup),
            }
    return rows


def add_onnx_sections(results: dict, settings: BenchmarkSettings, fp32_rate: float, log=print):
    """The "onnx" (vit_b16) and "onnx_checkpoint" sections of `run_benchmark`, into `results`."""
    from .targets import lookup

    sections = set(settings.sections)
    folder = settings.onnx_dir or os.path.join("outputs", "benchmark", "onnx")
    if "onnx" in sections:
        gflops = lookup(results, "forward", "asda_vit_b16_fp32", "gflops_per_image")
        if gflops is None:
            from .measure import count_flops

            asda = build_asda("vit_b16")
            with torch.inference_mode():
                gflops = count_flops(lambda: asda(**asda_inputs(asda.config, 1))) / 1e9
            del asda
        with torch.inference_mode():
            results["onnx"] = onnx_forward_rows(settings, os.path.join(folder, "vit_b16"), gflops, fp32_rate, log=log)
    if "onnx_checkpoint" in sections and settings.checkpoint:
        results["onnx_checkpoint"] = checkpoint_rows(
            settings.checkpoint, os.path.join(folder, "checkpoint"), settings, log=log
        )
        log(f"ONNX checkpoint: {results['onnx_checkpoint']['check'].get('int8')}")
