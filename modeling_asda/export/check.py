"""The export's self-check: ONNX Runtime against PyTorch on sample inputs from the built-in synthetic data.

- fp32: the largest |logit difference| between `model.onnx` and the torch model (fp32), and whether both
  pick the same layers;
- int8: the mean IoU of the int8 masks against the fp32 (torch) masks, at each image's original size and
  the checkpoint's threshold, as users get them from `post_process_masks`.

Out-of-bound values raise `ExportCheckError`: an export that disagrees with its checkpoint is an error.
"""

import statistics
import time

import numpy as np
import torch

from ..evaluation.metrics import intersection_and_union, iou_from_counts
from .onnx_model import INPUT_NAMES

DEFAULT_MAX_LOGIT_DIFF = 5e-3
DEFAULT_MIN_INT8_IOU = 0.97


class ExportCheckError(RuntimeError):
    """The exported model disagrees with the checkpoint by more than the check allows."""


def synthetic_batch(processor, split: str, num_rows: int, seed: int = 0) -> dict:
    """`num_rows` rows of the built-in synthetic data through the checkpoint's processor (+ original sizes)."""
    from ..data.synthetic import SyntheticConfig, generate_split

    rows = generate_split(split, num_rows, SyntheticConfig(seed=seed))
    batch = processor(images=[r["image"] for r in rows], text=[r["sentence"] for r in rows], return_tensors="pt")
    return {name: batch[name] for name in (*INPUT_NAMES, "original_sizes")}


def feeds(batch: dict, start: int = 0, stop: int | None = None) -> dict:
    """numpy ONNX Runtime inputs of rows [start, stop) of a processor batch."""
    return {
        "pixel_values": batch["pixel_values"][start:stop].numpy().astype(np.float32),
        "input_ids": batch["input_ids"][start:stop].numpy().astype(np.int64),
        "attention_mask": batch["attention_mask"][start:stop].numpy().astype(np.int64),
    }


def feed_batches(batch: dict, size: int) -> list[dict]:
    total = batch["pixel_values"].shape[0]
    return [feeds(batch, start, start + size) for start in range(0, total, size)]


def run_session(session, batch: dict, size: int = 8) -> dict:
    """All outputs of `session` over a processor batch, run `size` rows at a time and concatenated."""
    names = [o.name for o in session.get_outputs()]
    parts = [dict(zip(names, session.run(None, f))) for f in feed_batches(batch, size)]
    return {name: np.concatenate([p[name] for p in parts]) for name in names}


def masks(processor, logits, original_sizes, threshold: float) -> list[torch.Tensor]:
    return processor.post_process_masks(torch.as_tensor(logits).float(), original_sizes, threshold=threshold)


def mean_mask_iou(masks_a, masks_b) -> float:
    """Mean over samples of the IoU of two lists of boolean masks (each pair at the same size)."""
    ious = []
    for a, b in zip(masks_a, masks_b):
        ious.append(iou_from_counts(*intersection_and_union(np.asarray(a), np.asarray(b))))
    return statistics.fmean(ious)


def latency(session, batch: dict, repeats: int = 5) -> float:
    """Median seconds of one batch-1 call (after one warm-up)."""
    single = feeds(batch, 0, 1)
    session.run(None, single)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, single)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_reference(model, batch: dict, size: int = 8) -> dict:
    """fp32 torch outputs over the batch, in the export's output fields."""
    outputs = {}
    with torch.inference_mode():
        for start in range(0, batch["pixel_values"].shape[0], size):
            result = model(**{name: batch[name][start : start + size] for name in INPUT_NAMES})
            for name in ("logits", "low_layer_index", "mid_layer_index", "target_logits"):
                value = getattr(result, name, None)
                if value is not None:
                    outputs.setdefault(name, []).append(
                        value.float().numpy() if value.is_floating_point() else value.numpy()
                    )
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


def compare(reference: dict, candidate: dict, processor, batch: dict, threshold: float) -> dict:
    """Logit difference, layer agreement and mask IoU of `candidate` outputs against `reference` outputs."""
    result = {"max_abs_logit_difference": float(np.abs(candidate["logits"] - reference["logits"]).max())}
    for name in ("low_layer_index", "mid_layer_index"):
        if name in reference and name in candidate:
            result[f"{name}_agreement"] = float(np.mean(reference[name] == candidate[name]))
    if "target_logits" in reference and "target_logits" in candidate:
        result["max_abs_target_logit_difference"] = float(
            np.abs(candidate["target_logits"] - reference["target_logits"]).max()
        )
    sizes = batch["original_sizes"]
    result["mean_mask_iou"] = mean_mask_iou(
        masks(processor, reference["logits"], sizes, threshold),
        masks(processor, candidate["logits"], sizes, threshold),
    )
    return result


def choose_int8(measured: dict, min_iou: float) -> str:
    """Of {name: {"mean_mask_iou", "latency_b1_s"}}: the fastest that meets `min_iou`, else the most accurate."""
    good = [name for name, m in measured.items() if m["mean_mask_iou"] >= min_iou]
    if good:
        return min(good, key=lambda name: measured[name]["latency_b1_s"])
    return max(measured, key=lambda name: measured[name]["mean_mask_iou"])


def enforce(check: dict, max_logit_diff: float, min_int8_iou: float):
    """Raise `ExportCheckError` naming every value out of bounds."""
    problems = []
    fp32 = check["fp32"]["max_abs_logit_difference"]
    if not fp32 <= max_logit_diff:
        problems.append(f"fp32 ONNX vs PyTorch: max |Δlogits| {fp32:.3g} > {max_logit_diff:g}")
    int8 = check.get("int8")
    if int8 is not None and not int8["mean_mask_iou"] >= min_int8_iou:
        problems.append(f"int8 vs fp32: mean mask IoU {int8['mean_mask_iou']:.4f} < {min_int8_iou:g}")
    if problems:
        raise ExportCheckError("export self-check failed: " + "; ".join(problems))
