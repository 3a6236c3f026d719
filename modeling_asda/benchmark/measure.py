"""Measuring what ASDA costs on the current machine, next to CLIPSeg and the machine's own limits.

Used by scripts/benchmark.py; `targets` judges the results and `report` writes them as markdown.
Every model runs on random weights built from its config (timing does not depend on weight values;
nothing is downloaded), except the mask agreements, which need a trained checkpoint to mean anything.

How things are measured (the markdown report repeats this):

* time: wall clock (`time.perf_counter`, CUDA synchronised when on a GPU); `warmup` untimed runs, then
  the MEDIAN of `repeats` timed runs (the minimum is kept in the JSON too).
* FLOPs: `torch.utils.flop_counter.FlopCounterMode` on one run, per image. It counts matrix products,
  convolutions and attention (the CPU flash-attention kernel is added here: PyTorch has no formula for
  it); element-wise work (norms, activations, copies) is not counted. "Achieved GFLOP/s" = counted
  FLOPs / median time, and its share of the measured matrix-product rate.
* memory (CPU): each measurement runs in a fresh subprocess; after the model is built the kernel's
  peak-RSS counter is reset (`/proc/self/clear_refs`), so the peak is the whole process (weights, the
  torch runtime and the forward's activations) during the forward only. Where that reset is not
  allowed the peak falls back to `ru_maxrss` (then it includes model construction). On CUDA:
  `torch.cuda.max_memory_allocated`.
"""

import contextlib
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from .machine import machine_info
from .memory import peak_rss_of
from .targets import evaluate_targets

SOT, EOT = 49406, 49407
TOKENS = 17  # ASDA's expression length (SOT + 15 words + EOT); CLIPSeg gets the same length
SENTENCE = "the small red circle left of the blue square"


@dataclass
class BenchmarkSettings:
    quick: bool = False
    repeats: int = 5
    throughput_repeats: int = 3  # batch-8 forwards are long; 3 medians of them are enough
    warmup: int = 1
    latency_batch: int = 1
    throughput_batch: int = 8
    tiny_train_batch: int = 16
    vit_train_batch: int = 2
    data_rows: int = 128
    agreement_samples: int = 64
    matmul_sizes: tuple = (2048, 3072, 4096)
    checkpoint: str | None = None
    compile: bool = True
    memory: bool = True
    device: str = "cpu"
    threads: int | None = None
    sections: tuple = (
        "ceilings",
        "forward",
        "clipseg",
        "onnx",
        "onnx_checkpoint",
        "memory",
        "compile",
        "training",
        "data",
        "predict",
        "agreement",
    )
    onnx_dir: str | None = None  # where the ONNX files of the "onnx" section go (reused when present)
    notes: list = field(default_factory=list)

    @classmethod
    def quick_settings(cls, **kwargs):
        """A development run (about a minute or two): fewer repeats, smaller batches, no compile."""
        defaults = dict(
            quick=True,
            repeats=2,
            throughput_repeats=2,
            warmup=1,
            throughput_batch=2,
            vit_train_batch=1,
            data_rows=48,
            agreement_samples=16,
            matmul_sizes=(1024, 2048),
            compile=False,
        )
        defaults.update(kwargs)
        return cls(**defaults)


# --------------------------------------------------------------------------------------- primitives
def synchronize(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time_call(fn, device: str) -> float:
    """Wall time of one `fn()`, with garbage collected beforehand and the device drained on both sides."""
    gc.collect()
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def timed(fn, repeats: int, warmup: int, device: str = "cpu") -> dict:
    """Median / min wall time of `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = [_time_call(fn, device) for _ in range(max(1, repeats))]
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times}


def paired(first, second, repeats: int, warmup: int, device: str = "cpu") -> dict:
    """Alternate `first()` and `second()`; the median of the per-pair time ratios first/second.

    Both sides see the same moments of machine load, so their ratio is steadier than the ratio of two
    separately timed medians.
    """
    for _ in range(warmup):
        first()
        second()
    a_times, b_times = [], []
    for _ in range(max(1, repeats)):
        a_times.append(_time_call(first, device))
        b_times.append(_time_call(second, device))
    ratios = [a / b for a, b in zip(a_times, b_times)]
    return {
        "ratio": statistics.median(ratios),
        "first_median_s": statistics.median(a_times),
        "second_median_s": statistics.median(b_times),
        "first_times_s": a_times,
        "second_times_s": b_times,
    }


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs):
    return sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs):
    return sdpa_backward_flop_count(grad_out, query, key, value)


def _flop_counter() -> FlopCounterMode:
    aten = torch.ops.aten
    mapping = {}
    # PyTorch counts the CUDA attention kernels but has no formula for the CPU flash kernel.
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flops
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_sdpa_backward_flops
    return FlopCounterMode(display=False, custom_mapping=mapping)


def count_flops(fn) -> int:
    """FLOPs of one call of `fn` (matmuls, convolutions, attention; forward and backward if it runs one)."""
    counter = _flop_counter()
    with counter:
        fn()
    return int(counter.get_total_flops())


@contextlib.contextmanager
def num_threads(threads: int | None):
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def autocast(device: str, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def matmul_ceiling(dtype: torch.dtype, sizes, settings: BenchmarkSettings) -> dict:
    """The best GFLOP/s of large square matrix products: the practical ceiling of every model below.

    Several sizes, because the BLAS rate depends on the size (and its best is what "the machine can do").
    """
    generator = torch.Generator().manual_seed(0)
    by_size = {}
    for size in sizes:
        a = torch.randn(size, size, generator=generator).to(settings.device, dtype)
        b = torch.randn(size, size, generator=generator).to(settings.device, dtype)
        with torch.inference_mode():
            timing = timed(lambda a=a, b=b: a @ b, max(3, settings.repeats), 1, settings.device)
        by_size[size] = {"gflops_per_s": 2 * size**3 / timing["median_s"] / 1e9, **timing}
    best = max(by_size, key=lambda size: by_size[size]["gflops_per_s"])
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "size": best,
        "gflops_per_s": by_size[best]["gflops_per_s"],
        "by_size": by_size,
    }


# ------------------------------------------------------------------------------------------- models
def build_asda(preset: str, **overrides):
    from ..configuration_asda import ASDAConfig
    from ..modeling_asda import ASDAForReferringSegmentation

    torch.manual_seed(0)
    return ASDAForReferringSegmentation(getattr(ASDAConfig, preset)(**overrides)).eval()


def clipseg_config():
    """CIDAS/clipseg-rd64-refined's dimensions: ViT-B/16 + CLIP text, reduce_dim 64, complex transposed conv.

    Its vision config keeps CLIP's 224 position table; at 352 CLIPSeg interpolates it in every forward
    pass, as the released model does.
    """
    from transformers import CLIPSegConfig

    return CLIPSegConfig(
        text_config={"bos_token_id": 0, "eos_token_id": 2},
        vision_config={"patch_size": 16},
        projection_dim=512,
        reduce_dim=64,
        extract_layers=[3, 6, 9],
        conditional_layer=0,
        decoder_num_attention_heads=4,
        decoder_intermediate_size=2048,
        use_complex_transposed_convolution=True,
    )


def build_clipseg():
    from transformers import CLIPSegForImageSegmentation

    torch.manual_seed(0)
    return CLIPSegForImageSegmentation(clipseg_config()).eval()


def text_batch(batch: int, length: int = TOKENS, eos: int = EOT, bos: int = SOT, seed: int = 0):
    """Random CLIP-like ids: [SOT, 10 words, EOT, 0 ...] with its attention mask."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros(batch, length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    words = min(10, length - 2)
    ids[:, 0] = bos
    ids[:, 1 : 1 + words] = torch.randint(300, 40000, (batch, words), generator=generator)
    ids[:, 1 + words] = eos
    mask[:, : 2 + words] = 1
    return ids, mask


def asda_inputs(config, batch: int, device: str = "cpu", labels: bool = False, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    size = config.image_size
    ids, mask = text_batch(batch, config.max_text_length, seed=seed)
    inputs = {
        "pixel_values": torch.randn(batch, 3, size, size, generator=generator),
        "input_ids": ids,
        "attention_mask": mask,
    }
    if labels:
        inputs["labels"] = (torch.rand(batch, size, size, generator=generator) > 0.7).float()
    return {key: value.to(device) for key, value in inputs.items()}


def clipseg_inputs(batch: int, device: str = "cpu", size: int = 352, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    ids, mask = text_batch(batch, TOKENS, eos=2, bos=0, seed=seed)
    inputs = {
        "pixel_values": torch.randn(batch, 3, size, size, generator=generator),
        "input_ids": ids,
        "attention_mask": mask,
    }
    return {key: value.to(device) for key, value in inputs.items()}


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------ forward
def forward_benchmark(
    model, make_inputs, settings: BenchmarkSettings, ceiling_gflops: float, dtype: torch.dtype | None = None
) -> dict:
    """Latency at the latency batch, throughput at the throughput batch, FLOPs and achieved GFLOP/s."""
    device = settings.device
    model = model.to(device)
    result = {"parameters": parameter_count(model)}

    def run(inputs):
        with autocast(device, dtype):  # entered per call, as a user would
            return model(**inputs)

    with torch.inference_mode():
        single = make_inputs(1)
        result["gflops_per_image"] = count_flops(lambda: run(single)) / 1e9
        for key, batch, repeats in (
            ("latency", settings.latency_batch, settings.repeats),
            ("throughput", settings.throughput_batch, settings.throughput_repeats),
        ):
            inputs = make_inputs(batch)
            timing = timed(lambda inputs=inputs: run(inputs), repeats, settings.warmup, device)
            images_per_s = batch / timing["median_s"]
            result[key] = {
                "batch": batch,
                **timing,
                "images_per_s": images_per_s,
                "achieved_gflops_per_s": result["gflops_per_image"] * images_per_s,
                "fraction_of_ceiling": result["gflops_per_image"] * images_per_s / ceiling_gflops,
            }
    return result


def bf16_speedup(model, inputs: dict, settings: BenchmarkSettings) -> dict:
    """fp32 and bf16-autocast forwards alternating at the latency batch: median of the fp32/bf16 time ratios."""
    device = settings.device

    def fp32():
        return model(**inputs)

    def bf16():
        with autocast(device, torch.bfloat16):
            return model(**inputs)

    with torch.inference_mode():
        return {"batch": settings.latency_batch, **paired(fp32, bf16, settings.repeats, settings.warmup, device)}


def compile_benchmark(
    model,
    make_inputs,
    settings: BenchmarkSettings,
    ceiling_gflops: float,
    gflops_per_image: float,
    dtype: torch.dtype | None = None,
) -> dict:
    """`torch.compile` (inductor): compile time, latency at the latency batch, and its deviation from eager."""
    device = settings.device
    inputs = make_inputs(settings.latency_batch)

    def run(module):
        with autocast(device, dtype):
            return module(**inputs)

    try:
        with torch.inference_mode():
            reference = run(model).logits.float()
            compiled = torch.compile(model)
            start = time.perf_counter()
            first = run(compiled).logits.float()
            synchronize(device)
            compile_s = time.perf_counter() - start
            timing = timed(lambda: run(compiled), settings.repeats, 1, device)
    except Exception as error:  # the report says plainly that and why compile did not work
        return {"works": False, "error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
    finally:
        torch._dynamo.reset()
    images_per_s = settings.latency_batch / timing["median_s"]
    return {
        "works": True,
        "compile_s": compile_s,
        "latency": {
            "batch": settings.latency_batch,
            **timing,
            "images_per_s": images_per_s,
            "achieved_gflops_per_s": gflops_per_image * images_per_s,
            "fraction_of_ceiling": gflops_per_image * images_per_s / ceiling_gflops,
        },
        "max_abs_logit_difference_vs_eager": float((first - reference).abs().max()),
    }


# ------------------------------------------------------------------------------------------- memory
def memory_probe(spec: dict) -> dict:
    """Runs INSIDE a fresh subprocess: build one model, reset the peak-RSS counter, run one forward."""
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    dtype = torch.bfloat16 if spec["precision"] == "bf16" else None
    if spec["model"] == "clipseg":
        model = build_clipseg()
        inputs = clipseg_inputs(spec["batch"])
    else:
        model = build_asda(spec["model"])
        inputs = asda_inputs(model.config, spec["batch"])

    def forward():
        with torch.inference_mode(), autocast("cpu", dtype):
            model(**inputs)

    peak = peak_rss_of(forward)
    return {
        "rss_before_forward_mb": peak["rss_before_mb"],
        "peak_rss_mb": peak["peak_rss_mb"],
        "forward_increase_mb": peak["peak_rss_mb"] - peak["rss_before_mb"],
        "method": peak["method"],
    }


def peak_memory(model_name: str, batch: int, precision: str, settings: BenchmarkSettings) -> dict:
    """Peak memory of one forward pass: a subprocess on CPU, the allocator's peak on CUDA."""
    if settings.device.startswith("cuda"):
        model = build_clipseg() if model_name == "clipseg" else build_asda(model_name)
        model = model.to(settings.device)
        inputs = (
            clipseg_inputs(batch, settings.device)
            if model_name == "clipseg"
            else asda_inputs(model.config, batch, settings.device)
        )
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
        with torch.inference_mode(), autocast(settings.device, torch.bfloat16 if precision == "bf16" else None):
            model(**inputs)
        peak = torch.cuda.max_memory_allocated() / 2**20
        return {
            "rss_before_forward_mb": before,
            "peak_rss_mb": peak,
            "forward_increase_mb": peak - before,
            "method": "torch.cuda.max_memory_allocated",
        }
    spec = {"model": model_name, "batch": batch, "precision": precision, "threads": torch.get_num_threads()}
    code = (
        "import json, sys; from modeling_asda.benchmark.measure import memory_probe; "
        "print(json.dumps(memory_probe(json.loads(sys.argv[1]))))"
    )
    done = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------- training
def training_benchmark(preset: str, batch: int, settings: BenchmarkSettings, ceiling_gflops: float) -> dict:
    """One optimisation step (forward with loss, backward, AdamW step) on random inputs and labels."""
    device = settings.device
    model = build_asda(preset).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
    inputs = asda_inputs(model.config, batch, device, labels=True)

    def forward_backward():
        loss = model(**inputs).loss
        loss.backward()

    def step():
        optimizer.zero_grad(set_to_none=True)
        forward_backward()
        optimizer.step()

    flops = count_flops(forward_backward)
    timing = timed(
        step, settings.repeats if preset == "tiny" else max(1, settings.repeats - 2), settings.warmup, device
    )
    samples_per_s = batch / timing["median_s"]
    gc.collect()
    return {
        "preset": preset,
        "batch": batch,
        "image_size": build_config(preset).image_size,
        **timing,
        "samples_per_s": samples_per_s,
        "gflops_per_sample": flops / batch / 1e9,
        "achieved_gflops_per_s": flops / timing["median_s"] / 1e9,
        "fraction_of_ceiling": flops / timing["median_s"] / 1e9 / ceiling_gflops,
    }


def build_config(preset: str):
    from ..configuration_asda import ASDAConfig

    return getattr(ASDAConfig, preset)()


# ------------------------------------------------------------------------------------- data pipeline
def synthetic_rows(split: str, num_rows: int):
    from ..data.synthetic import SyntheticConfig, generate_split

    return generate_split(split, num_rows, SyntheticConfig(seed=0))


def data_pipeline_benchmark(
    rows, image_size: int, batch: int, settings: BenchmarkSettings, threads: int | None
) -> dict:
    """Samples/s of the training input pipeline: decode + augment + letterbox + tokenize (RISTransform) + collate.

    Batches are fetched as the DataLoader fetches them (`Dataset.__getitems__`), in this process.
    """
    from ..data.transforms import AugmentationConfig, RISTransform, collate_ris
    from ..processing_asda import ASDAProcessor

    processor = ASDAProcessor(image_size=image_size, max_length=TOKENS)
    # The demo recipe's augmentation (configs/demo_synthetic.json): horizontal flip with p = 0.5.
    transform = RISTransform(processor, train=True, augmentation=AugmentationConfig(hflip_prob=0.5), seed=0)
    dataset = rows.with_transform(transform)
    starts = range(0, len(rows), batch)

    def one_pass():
        for start in starts:
            collate_ris(dataset.__getitems__(list(range(start, min(start + batch, len(rows))))))

    with num_threads(threads):
        timing = timed(one_pass, max(1, settings.repeats - 2), 1)
        used = torch.get_num_threads()
    return {
        "image_size": image_size,
        "batch": batch,
        "rows": len(rows),
        "torch_threads": used,
        **timing,
        "samples_per_s": len(rows) / timing["median_s"],
    }


# --------------------------------------------------------------------------------------- end to end
def demo_jpeg(rows, width: int = 640, height: int = 480) -> tuple[bytes, str]:
    """A COCO-sized JPEG (a synthetic scene, resized) and its expression."""
    from PIL import Image

    row = rows[0]
    image = row["image"].convert("RGB").resize((width, height), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue(), row["sentence"]


def predict_benchmark(model, processor, jpeg: bytes, sentence: str, settings: BenchmarkSettings) -> dict:
    """decode -> processor -> forward -> post_process_masks (original size), each stage and the whole, at batch 1."""
    from PIL import Image

    device = settings.device
    threshold = model.config.mask_threshold

    def decode():
        image = Image.open(io.BytesIO(jpeg))
        image.load()
        return image

    def preprocess(image):
        return processor(images=image, text=sentence, return_tensors="pt")

    def forward(inputs):
        return model(
            pixel_values=inputs["pixel_values"].to(device),
            input_ids=inputs["input_ids"].to(device),
            attention_mask=inputs["attention_mask"].to(device),
        ).logits

    def postprocess(logits, inputs):
        return processor.post_process_masks(logits, inputs["original_sizes"], threshold=threshold)

    def predict():
        inputs = preprocess(decode())
        return postprocess(forward(inputs), inputs)

    with torch.inference_mode():
        image = decode()
        inputs = preprocess(image)
        logits = forward(inputs)
        mask = predict()[0]
        stages = {
            "decode": timed(decode, settings.repeats, settings.warmup),
            "preprocess": timed(lambda: preprocess(image), settings.repeats, settings.warmup),
            "postprocess": timed(lambda: postprocess(logits, inputs), settings.repeats, settings.warmup),
        }
        # predict and the bare forward alternate, so that both see the same machine load.
        pair = paired(predict, lambda: forward(inputs), settings.repeats, settings.warmup, device)
    stage_s = {name: t["median_s"] for name, t in stages.items()}
    stage_s.update(forward=pair["second_median_s"], predict=pair["first_median_s"])
    return {
        "image": f"{image.width}x{image.height} JPEG",
        "mask_shape": list(mask.shape),
        "stages_s": stage_s,
        "overhead_ratio": pair["ratio"],
        "timings": {**stages, "predict_vs_forward": pair},
    }


# ----------------------------------------------------------------------------------- bf16 agreement
def load_checkpoint(path: str):
    from ..modeling_asda import ASDAForReferringSegmentation
    from ..processing_asda import ASDAProcessor

    model = ASDAForReferringSegmentation.from_pretrained(path).eval()
    try:
        processor = ASDAProcessor.from_pretrained(path)
    except (OSError, ValueError):
        processor = ASDAProcessor.from_model_config(model.config)
    return model, processor


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def bf16_agreement(checkpoint: str, rows, settings: BenchmarkSettings) -> dict:
    """fp32 vs bf16-autocast masks of a trained checkpoint on synthetic validation rows, at the original size."""
    model, processor = load_checkpoint(checkpoint)
    device = settings.device
    model = model.to(device)
    threshold = model.config.mask_threshold
    images = [row["image"] for row in rows]
    inputs = processor(images=images, text=[row["sentence"] for row in rows], return_tensors="pt")
    model_inputs = {key: inputs[key].to(device) for key in ("pixel_values", "input_ids", "attention_mask")}
    ious, intersection, union, gt_ious = [], 0, 0, {"fp32": [], "bf16": []}
    with torch.inference_mode():
        full = model(**model_inputs).logits.float()
        with autocast(device, torch.bfloat16):
            half = model(**model_inputs).logits.float()
        masks_full = processor.post_process_masks(full.cpu(), inputs["original_sizes"], threshold=threshold)
        masks_half = processor.post_process_masks(half.cpu(), inputs["original_sizes"], threshold=threshold)
    for row, a, b in zip(rows, masks_full, masks_half):
        ious.append(mask_iou(a, b))
        intersection += (a & b).sum().item()
        union += (a | b).sum().item()
        gt = torch.from_numpy(np.asarray(row["mask"]) > 0)
        gt_ious["fp32"].append(mask_iou(a, gt))
        gt_ious["bf16"].append(mask_iou(b, gt))

    make = lambda batch: {key: value[:batch] for key, value in model_inputs.items()}  # noqa: E731
    speed = {}
    with torch.inference_mode():
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            with autocast(device, dtype):
                batch = make(min(settings.throughput_batch, len(rows)))
                speed[name] = timed(lambda batch=batch: model(**batch), settings.repeats, settings.warmup, device)[
                    "median_s"
                ]
    return {
        "checkpoint": checkpoint,
        "samples": len(rows),
        "threshold": threshold,
        "mean_iou_bf16_vs_fp32": statistics.fmean(ious),
        "min_iou_bf16_vs_fp32": min(ious),
        "overall_iou_bf16_vs_fp32": 1.0 if union == 0 else intersection / union,
        "max_abs_logit_difference": float((full - half).abs().max()),
        "mIoU_vs_ground_truth": {k: statistics.fmean(v) for k, v in gt_ious.items()},
        "bf16_speedup_on_checkpoint": speed["fp32"] / speed["bf16"],
    }


# -------------------------------------------------------------------------------------------- run it
def run_benchmark(settings: BenchmarkSettings, log=print, extra_sections=()) -> dict:
    """Every section in `settings.sections`; `extra_sections` are callables (results, settings, fp32 rate, log)."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
    results = {
        "settings": {k: v for k, v in asdict(settings).items() if k != "notes"},
        "machine": machine_info(settings.device),
    }
    started = time.perf_counter()
    sections = set(settings.sections)
    dev = settings.device

    def stamp(message):
        log(f"[{time.perf_counter() - started:6.1f}s] {message}")

    ceiling = {}
    if "ceilings" in sections or "forward" in sections or "training" in sections:
        for dtype in (torch.float32, torch.bfloat16):
            ceiling[dtype] = matmul_ceiling(dtype, settings.matmul_sizes, settings)
            stamp(f"matmul {dtype}: {ceiling[dtype]['gflops_per_s']:.1f} GFLOP/s")
        results["ceilings"] = {str(k).removeprefix("torch."): v for k, v in ceiling.items()}
    fp32_rate = ceiling[torch.float32]["gflops_per_s"] if ceiling else float("nan")
    bf16_rate = ceiling[torch.bfloat16]["gflops_per_s"] if ceiling else float("nan")

    forward = results["forward"] = {}
    if "forward" in sections:
        asda = build_asda("vit_b16")
        make = lambda batch: asda_inputs(asda.config, batch, dev)  # noqa: E731
        forward["asda_vit_b16_fp32"] = forward_benchmark(asda, make, settings, fp32_rate)
        stamp(f"ASDA fp32: {_summary(forward['asda_vit_b16_fp32'])}")
        forward["asda_vit_b16_bf16"] = forward_benchmark(asda, make, settings, bf16_rate, torch.bfloat16)
        stamp(f"ASDA bf16 autocast: {_summary(forward['asda_vit_b16_bf16'])}")
        if not settings.quick:
            results["bf16_speedup"] = bf16_speedup(asda, make(settings.latency_batch), settings)
            stamp(f"bf16 vs fp32, alternating calls: x{results['bf16_speedup']['ratio']:.3f}")
        if "compile" in sections and settings.compile:
            gflops = forward["asda_vit_b16_fp32"]["gflops_per_image"]
            for name, dtype, rate in (("fp32", None, fp32_rate), ("bf16", torch.bfloat16, bf16_rate)):
                entry = compile_benchmark(asda, make, settings, rate, gflops, dtype)
                if entry["works"]:
                    eager = forward[f"asda_vit_b16_{name}"]["latency"]["median_s"]
                    entry["speedup_vs_eager"] = eager / entry["latency"]["median_s"]
                forward[f"asda_vit_b16_{name}_compiled"] = entry
                stamp(f"ASDA torch.compile {name}: {entry}")
        del asda
        gc.collect()
        # The paper text's aggregator (sfa_scales="grid") next to the published pyramid, fp32.
        grid = build_asda("vit_b16", sfa_scales="grid")
        forward["asda_vit_b16_grid_fp32"] = forward_benchmark(
            grid, lambda b: asda_inputs(grid.config, b, dev), settings, fp32_rate
        )
        stamp(f"ASDA sfa_scales=grid fp32: {_summary(forward['asda_vit_b16_grid_fp32'])}")
        del grid
        gc.collect()
    if "forward" in sections and "clipseg" in sections:
        clipseg = build_clipseg()
        forward["clipseg_rd64_fp32"] = forward_benchmark(
            clipseg, lambda b: clipseg_inputs(b, dev), settings, fp32_rate
        )
        stamp(f"CLIPSeg fp32: {_summary(forward['clipseg_rd64_fp32'])}")
        del clipseg
        gc.collect()

    for add_section in extra_sections:  # sections that live in their own modules (the ONNX rows)
        add_section(results, settings, fp32_rate, stamp)

    if "memory" in sections and settings.memory:
        memory = results["memory"] = {}
        for name, model_name, precision in (
            ("asda_vit_b16_fp32", "vit_b16", "fp32"),
            ("asda_vit_b16_bf16", "vit_b16", "bf16"),
            ("clipseg_rd64_fp32", "clipseg", "fp32"),
        ):
            if settings.quick and name != "asda_vit_b16_fp32":
                continue
            memory[name] = peak_memory(model_name, settings.latency_batch, precision, settings)
            stamp(f"memory {name}: {memory[name]}")

    need_rows = {"data", "predict", "agreement"} & sections
    rows = synthetic_rows("train", settings.data_rows) if need_rows else None
    if "training" in sections:
        training = results["training"] = {}
        for preset, batch in (("tiny", settings.tiny_train_batch), ("vit_b16", settings.vit_train_batch)):
            training[preset] = training_benchmark(preset, batch, settings, fp32_rate)
            stamp(f"training {preset}: {training[preset]['samples_per_s']:.2f} samples/s")
    if "data" in sections:
        data = results["data_pipeline"] = {}
        for preset, batch in (("tiny", settings.tiny_train_batch), ("vit_b16", settings.vit_train_batch)):
            size = build_config(preset).image_size
            # 1 thread: what a DataLoader worker gets; the main-process count: dataloader_num_workers=0.
            data[preset] = {
                "worker_1_thread": data_pipeline_benchmark(rows, size, batch, settings, threads=1),
                "main_process": data_pipeline_benchmark(rows, size, batch, settings, threads=None),
            }
            stamp(
                f"data pipeline {preset}: {data[preset]['worker_1_thread']['samples_per_s']:.1f} samples/s (1 thread)"
            )
    if "predict" in sections:
        from ..processing_asda import ASDAProcessor

        jpeg, sentence = demo_jpeg(rows)
        predict = results["predict"] = {}
        candidates = [("asda_vit_b16", lambda: build_asda("vit_b16"))]
        if settings.checkpoint:
            candidates.append(("checkpoint", lambda: load_checkpoint(settings.checkpoint)[0]))
        else:
            candidates.append(("asda_tiny", lambda: build_asda("tiny")))
        for name, build in candidates:
            model = build().to(dev)
            processor = ASDAProcessor.from_model_config(model.config)
            predict[name] = predict_benchmark(model, processor, jpeg, sentence, settings)
            stamp(f"predict {name}: x{predict[name]['overhead_ratio']:.3f} of the forward")
            del model
            gc.collect()
    if "agreement" in sections:
        if settings.checkpoint:
            val = synthetic_rows("val", settings.agreement_samples)
            results["bf16_agreement"] = bf16_agreement(
                settings.checkpoint, [val[i] for i in range(len(val))], settings
            )
            stamp(f"bf16 agreement: {results['bf16_agreement']}")
        else:
            results["bf16_agreement"] = {"skipped": "no --checkpoint given"}
    results["targets"] = evaluate_targets(results)
    results["wall_s"] = time.perf_counter() - started
    results["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return results


def _summary(entry: dict) -> str:
    lat, thr = entry["latency"], entry["throughput"]
    return (
        f"{entry['gflops_per_image']:.1f} GFLOP/img, b{lat['batch']} {lat['median_s']:.3f} s, "
        f"b{thr['batch']} {thr['images_per_s']:.2f} img/s = {thr['achieved_gflops_per_s']:.1f} GFLOP/s "
        f"({100 * thr['fraction_of_ceiling']:.0f}% of ceiling)"
    )
