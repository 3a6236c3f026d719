"""Process memory as the kernel counts it (resident set size), and the peak of one piece of work.

Linux only: `/proc/self/status` gives VmRSS (now) and VmHWM (the peak); writing 5 to
`/proc/self/clear_refs` resets the peak to the current size, so the peak of one step excludes model
construction. Where the reset is not allowed, the peak falls back to `ru_maxrss` (the whole process).
"""

import gc
import resource


def resident_mb(field_name: str = "VmRSS") -> float | None:
    """A memory field of /proc/self/status in MB (VmRSS: resident now, VmHWM: peak); None where there is none."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_of(work) -> dict:
    """Run `work()` and return the resident size before it, the peak while it ran, and how the peak was read."""
    gc.collect()
    before = resident_mb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM (peak RSS) to the current RSS
        method = "VmHWM after reset (/proc/self/clear_refs)"
    except OSError:
        method = "ru_maxrss (includes everything before)"
    work()
    if method.startswith("VmHWM"):
        peak = resident_mb("VmHWM")
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rss_before_mb": before, "peak_rss_mb": peak, "method": method}


def training_step_peak(preset: str, batch: int, bf16: bool = False, checkpointing: bool = False) -> dict:
    """Peak RSS of one ASDA training step (forward with loss, backward, AdamW) after a warm-up step.

    Meant for a fresh process per call: the warm-up creates the optimizer states, so the peak is that of
    a steady-state step.
    """
    import torch

    from ..configuration_asda import ASDAConfig
    from ..modeling_asda import ASDAForReferringSegmentation

    torch.manual_seed(0)
    config = getattr(ASDAConfig, preset)()
    model = ASDAForReferringSegmentation(config).train()
    if checkpointing:
        model.activation_checkpointing_enable()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    size = config.image_size
    pixels = torch.randn(batch, 3, size, size)
    ids = torch.zeros(batch, config.max_text_length, dtype=torch.long)
    ids[:, :4] = torch.tensor([49406, 320, 1929, 49407])
    labels = (torch.rand(batch, size, size) > 0.5).float()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(pixels, ids, (ids != 0).long(), labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)

    step()
    return {"batch": batch, **peak_rss_of(step)}


def extrapolate_peak(rows: list[dict], target_batch: int) -> dict:
    """A line through the first and last measured (batch, peak): fixed part, per-image part, estimate."""
    (b0, p0), (b1, p1) = (rows[0]["batch"], rows[0]["peak_rss_mb"]), (rows[-1]["batch"], rows[-1]["peak_rss_mb"])
    if b1 == b0:
        raise ValueError("measure at least two different batch sizes")
    per_image = (p1 - p0) / (b1 - b0)
    fixed = p0 - per_image * b0
    return {"per_image_mb": per_image, "fixed_mb": fixed, "estimate_mb": fixed + per_image * target_batch}
