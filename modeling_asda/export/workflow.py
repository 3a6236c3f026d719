"""scripts/export_onnx.py's steps: load, export fp32, quantise (dynamic and static, keep the better), check, save."""

import json
import os
import tempfile

import torch

from . import check, quantize
from .onnx_export import DEFAULT_OPSET, export_onnx
from .onnx_model import FP32_FILE, INT8_FILE, MANIFEST_FILE, make_session


def export_checkpoint(
    model_dir: str,
    output_dir: str,
    int8: bool = False,
    opset: int = DEFAULT_OPSET,
    check_samples: int = 32,
    calibration_samples: int = 32,
    max_logit_diff: float = check.DEFAULT_MAX_LOGIT_DIFF,
    min_int8_iou: float = check.DEFAULT_MIN_INT8_IOU,
    revision: str | None = None,
    log=print,
) -> dict:
    """Export `model_dir` to `output_dir` (+ int8 with `int8=True`), check it, write the manifest; returns it.

    Raises `check.ExportCheckError` after writing everything (files and manifest, for inspection) when the
    check is out of bounds.
    """
    from ..evaluation.inference import load_model_and_processor

    model, processor = load_model_and_processor(model_dir, revision=revision, device="cpu")
    model = model.float().eval()
    threshold = model.config.mask_threshold
    os.makedirs(output_dir, exist_ok=True)
    # What the folder needs to be served: the config (threshold, size) and the processor (tokenizer, letterbox).
    model.config.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)

    sample = check.synthetic_batch(processor, "val", max(2, check_samples))
    log(f"exporting {model_dir} (ONNX opset {opset}) ...")
    exported = export_onnx(model, {k: sample[k][:2] for k in sample}, output_dir, opset)
    log(f"wrote {exported['path']} (outputs: {', '.join(exported['outputs'])})")

    reference = check.torch_reference(model, sample)
    fp32_session = make_session(exported["path"])
    fp32_outputs = check.run_session(fp32_session, sample)
    report = {"fp32": check.compare(reference, fp32_outputs, processor, sample, threshold)}
    report["fp32"]["latency_b1_s"] = check.latency(fp32_session, sample)
    log(f"check fp32: {json.dumps(report['fp32'])}")

    if int8:
        calibration = check.synthetic_batch(processor, "train", calibration_samples, seed=1)
        candidates = {}
        with tempfile.TemporaryDirectory() as tmp:
            paths = {"dynamic": os.path.join(tmp, "dynamic.onnx"), "static": os.path.join(tmp, "static.onnx")}
            quantize.quantize_dynamic_int8(exported["path"], paths["dynamic"])
            quantize.quantize_static_int8(exported["path"], paths["static"], check.feed_batches(calibration, 8))
            for name, path in paths.items():
                session = make_session(path)
                measured = check.compare(reference, check.run_session(session, sample), processor, sample, threshold)
                measured["latency_b1_s"] = check.latency(session, sample)
                measured["size_mb"] = os.path.getsize(path) / 1e6
                candidates[name] = measured
                log(f"check int8 {name}: {json.dumps(measured)}")
                del session
            chosen = check.choose_int8(candidates, min_int8_iou)
            quantize.replace_file(paths[chosen], os.path.join(output_dir, INT8_FILE))
        report["int8"] = {"method": chosen, **candidates[chosen]}
        report["int8_candidates"] = candidates
        log(f"kept int8 {chosen} -> {os.path.join(output_dir, INT8_FILE)}")

    manifest = {
        "source": model_dir,
        "files": {"fp32": FP32_FILE, **({"int8": INT8_FILE} if int8 else {})},
        "inputs": ["pixel_values", "input_ids", "attention_mask"],
        "outputs": exported["outputs"],
        "opset": opset,
        "exporter": exported["exporter"],
        "check": {
            "samples": int(sample["pixel_values"].shape[0]),
            "data": "built-in synthetic val rows (seed 0) through the checkpoint's processor",
            "threshold": threshold,
            "bounds": {"max_abs_logit_difference": max_logit_diff, "min_int8_mean_mask_iou": min_int8_iou},
            "torch_threads": torch.get_num_threads(),
            **report,
        },
    }
    try:
        check.enforce(report, max_logit_diff, min_int8_iou)
        manifest["check"]["passed"] = True
    except check.ExportCheckError:
        manifest["check"]["passed"] = False
        raise
    finally:
        with open(os.path.join(output_dir, MANIFEST_FILE), "w") as handle:
            json.dump(manifest, handle, indent=2)
    return manifest
