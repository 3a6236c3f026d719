"""The benchmark's targets: each judged from the measured results, never from a timed test."""

# Thresholds of the targets `evaluate_targets` judges.
BF16_SPEEDUP_TARGET = 1.8
BF16_IOU_TARGET = 0.98
FP32_CEILING_FRACTION_TARGET = 0.70
PREDICT_OVERHEAD_TARGET = 1.2
DATA_PIPELINE_FACTOR_TARGET = 5.0
MEMORY_TARGET_MB = 2000.0  # "2 GB", decimal megabytes of resident memory
ORT_FP32_SLOWDOWN_TARGET = 1.10  # ONNX Runtime fp32 within 10% of torch fp32
ORT_INT8_SPEEDUP_TARGET = 2.0
ORT_INT8_IOU_TARGET = 0.97
BF16_CEILING_FRACTION_TARGET = 0.60
INT8_METHODS = ("dynamic", "static")


def lookup(results: dict, *keys):
    """results[k1][k2]... or None where a key is missing (a section that did not run)."""
    for key in keys:
        if not isinstance(results, dict) or key not in results:
            return None
        results = results[key]
    return results


def evaluate_targets(results: dict) -> list[dict]:
    """The benchmark's targets: each with the measured value, the threshold and met / not met / not measured."""
    targets = []

    def add(name, value, threshold, met, detail=""):
        targets.append(
            {
                "target": name,
                "value": value,
                "threshold": threshold,
                "met": None if value is None else bool(met),
                "detail": detail,
            }
        )

    fp32 = lookup(results, "forward", "asda_vit_b16_fp32")
    clip = lookup(results, "forward", "clipseg_rd64_fp32")
    bf16 = lookup(results, "forward", "asda_vit_b16_bf16")
    ceiling = lookup(results, "ceilings", "float32", "gflops_per_s")
    for key in ("throughput", "latency"):
        a = lookup(fp32, key, "achieved_gflops_per_s")
        c = lookup(clip, key, "achieved_gflops_per_s")
        add(
            f"ASDA fp32 GFLOP/s >= CLIPSeg's ({key})",
            a,
            c,
            a is not None and c is not None and a >= c,
            f"ASDA {a:.1f} vs CLIPSeg {c:.1f} GFLOP/s" if a and c else "",
        )
        add(
            f"ASDA fp32 GFLOP/s >= {FP32_CEILING_FRACTION_TARGET:.0%} of the fp32 matmul rate ({key})",
            lookup(fp32, key, "fraction_of_ceiling"),
            FP32_CEILING_FRACTION_TARGET,
            (lookup(fp32, key, "fraction_of_ceiling") or 0) >= FP32_CEILING_FRACTION_TARGET,
            f"{a:.1f} of {ceiling:.1f} GFLOP/s" if a and ceiling else "",
        )
    for key, label in (("latency", "batch 1"), ("throughput", "throughput batch")):
        f, h = lookup(fp32, key, "median_s"), lookup(bf16, key, "median_s")
        speedup = f / h if f and h else None
        add(
            f"bf16 autocast >= {BF16_SPEEDUP_TARGET}x faster than fp32 ({label}, vit_b16)",
            speedup,
            BF16_SPEEDUP_TARGET,
            speedup is not None and speedup >= BF16_SPEEDUP_TARGET,
        )
    compiled = lookup(results, "forward", "asda_vit_b16_bf16_compiled", "latency", "median_s")
    eager_fp32 = lookup(fp32, "latency", "median_s")
    speedup = eager_fp32 / compiled if compiled and eager_fp32 else None
    add(
        f"bf16 autocast + torch.compile >= {BF16_SPEEDUP_TARGET}x faster than eager fp32 (batch 1, vit_b16)",
        speedup,
        BF16_SPEEDUP_TARGET,
        speedup is not None and speedup >= BF16_SPEEDUP_TARGET,
        "compiled path, for reference",
    )
    agreement = lookup(results, "bf16_agreement", "mean_iou_bf16_vs_fp32")
    add(
        f"bf16 masks agree with fp32 (mean IoU >= {BF16_IOU_TARGET}) on the checkpoint",
        agreement,
        BF16_IOU_TARGET,
        agreement is not None and agreement >= BF16_IOU_TARGET,
        lookup(results, "bf16_agreement", "checkpoint") or "",
    )
    ratio = lookup(results, "predict", "asda_vit_b16", "overhead_ratio")
    add(
        f"end-to-end predict <= {PREDICT_OVERHEAD_TARGET}x the bare forward (vit_b16, batch 1)",
        ratio,
        PREDICT_OVERHEAD_TARGET,
        ratio is not None and ratio <= PREDICT_OVERHEAD_TARGET,
    )
    for preset in ("tiny", "vit_b16"):
        data = lookup(results, "data_pipeline", preset, "worker_1_thread", "samples_per_s")
        train = lookup(results, "training", preset, "samples_per_s")
        factor = data / train if data and train else None
        add(
            f"data pipeline >= {DATA_PIPELINE_FACTOR_TARGET}x the training step's samples/s ({preset})",
            factor,
            DATA_PIPELINE_FACTOR_TARGET,
            factor is not None and factor >= DATA_PIPELINE_FACTOR_TARGET,
            f"{data:.1f} vs {train:.2f} samples/s" if factor else "",
        )
    bf16_fraction = lookup(bf16, "throughput", "fraction_of_ceiling")
    add(
        f"torch bf16 >= {BF16_CEILING_FRACTION_TARGET:.0%} of the bf16 matmul rate (throughput batch, vit_b16)",
        bf16_fraction,
        BF16_CEILING_FRACTION_TARGET,
        (bf16_fraction or 0) >= BF16_CEILING_FRACTION_TARGET,
    )
    torch_b1 = lookup(fp32, "latency", "median_s")
    ort = results.get("onnx") or {}
    ort_fp32 = lookup(ort, "fp32", "latency", "median_s")
    slowdown = ort_fp32 / torch_b1 if ort_fp32 and torch_b1 else None
    add(
        f"ONNX Runtime fp32 within {ORT_FP32_SLOWDOWN_TARGET - 1:.0%} of torch fp32 (time ratio, batch 1, vit_b16)",
        slowdown,
        ORT_FP32_SLOWDOWN_TARGET,
        slowdown is not None and slowdown <= ORT_FP32_SLOWDOWN_TARGET,
        f"ORT {ort_fp32:.3f} s vs torch {torch_b1:.3f} s" if slowdown else "",
    )
    candidates = lookup(results, "onnx_checkpoint", "check", "int8_candidates") or {}
    judged = []
    for method in INT8_METHODS:
        seconds = lookup(ort, method, "latency", "median_s")
        if seconds and torch_b1:
            iou = lookup(candidates, method, "mean_mask_iou")
            judged.append((torch_b1 / seconds, method, iou))
    good = [j for j in judged if j[2] is not None and j[2] >= ORT_INT8_IOU_TARGET]
    best = max(good or judged, default=None)
    detail = "; ".join(f"{m}: x{speed:.2f}, IoU {'–' if iou is None else f'{iou:.3f}'}" for speed, m, iou in judged)
    add(
        f"ONNX Runtime int8 >= {ORT_INT8_SPEEDUP_TARGET}x torch fp32 (batch 1, vit_b16) with mask IoU >= "
        f"{ORT_INT8_IOU_TARGET} vs fp32 on the checkpoint",
        None if best is None or not candidates else best[0],
        ORT_INT8_SPEEDUP_TARGET,
        bool(good) and best[0] >= ORT_INT8_SPEEDUP_TARGET,
        detail,
    )
    peak = lookup(results, "memory", "asda_vit_b16_fp32", "peak_rss_mb")
    add(
        f"vit_b16 fp32 batch-1 inference peak memory <= {MEMORY_TARGET_MB:.0f} MB",
        peak,
        MEMORY_TARGET_MB,
        peak is not None and peak <= MEMORY_TARGET_MB,
        lookup(results, "memory", "asda_vit_b16_fp32", "method") or "",
    )
    return targets
