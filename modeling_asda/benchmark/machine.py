"""What machine a number was measured on: CPU model, instruction sets, threads, library versions.

Timings depend on all of these, and so do trained weights: the same run with another thread count or on a CPU
with other vector instructions sums floats in another order and follows another trajectory.
"""

import os
import platform

import torch

# /proc/cpuinfo flags of the instruction sets that decide low-precision speed, with their usual names.
ISA_FLAGS = (
    ("avx2", "AVX2"),
    ("avx512f", "AVX-512"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx512_bf16", "AVX-512 BF16"),
    ("avx512_fp16", "AVX-512 FP16"),
    ("amx_tile", "AMX"),
    ("amx_bf16", "AMX-BF16"),
    ("amx_int8", "AMX-INT8"),
)


def _cpuinfo(field: str) -> str | None:
    """The value of the first `field` line of /proc/cpuinfo (None where there is none, e.g. not Linux)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set:
    return set((_cpuinfo("flags") or "").split())


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def machine_info(device: str) -> dict:
    import transformers

    flags = cpu_flags()
    info = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": sorted(flag for flag in flags if flag in ("avx512_bf16", "amx_bf16", "amx_tile")),
        "isa": {label: flag in flags for flag, label in ISA_FLAGS},
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def machine_summary(device: str = "cpu") -> str:
    """One line for a run's report, e.g. 'AMD EPYC (AVX2), torch threads: 2, torch 2.13.0'."""
    if device.startswith("cuda") and torch.cuda.is_available():
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()})"
    return f"{where}, torch threads: {torch.get_num_threads()}, torch {torch.__version__}"
