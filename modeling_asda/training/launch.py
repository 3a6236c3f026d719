"""Make CPU multi-process launches do what they say.

Two traps of the current launchers on a machine without GPUs:
- `accelerate launch --cpu --num_processes N script.py` runs ONE process unless MPI is configured
  (accelerate's "simple launcher" only sets MASTER_ADDR/PORT). We detect that case and start the N
  processes ourselves with `torch.distributed.run` (gloo backend).
- `torchrun --nproc_per_node N` / `accelerate launch --multi_gpu` on a CPU-only machine start N processes,
  but each trains alone (accelerate sees no GPU and no `cpu=True`). We set ACCELERATE_USE_CPU so they
  form one gloo process group.
"""

import logging
import os
import subprocess
import sys

logger = logging.getLogger(__name__)

_WORLD_KEYS = ("WORLD_SIZE", "LOCAL_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _truthy(value) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def requested_num_processes(parent_cmdline: list[str]) -> int:
    """N from the `accelerate launch` command line, or from its config file, else 1."""
    for index, token in enumerate(parent_cmdline):
        for flag in ("--num_processes", "--num-processes"):
            if token == flag and index + 1 < len(parent_cmdline):
                return int(parent_cmdline[index + 1])
            if token.startswith(flag + "="):
                return int(token.split("=", 1)[1])
    config_file = None
    for index, token in enumerate(parent_cmdline):
        if token in ("--config_file", "--config-file") and index + 1 < len(parent_cmdline):
            config_file = parent_cmdline[index + 1]
    try:
        from accelerate.commands.config import default_config_file, load_config_from_file

        config = load_config_from_file(config_file or default_config_file)
        return int(getattr(config, "num_processes", 1) or 1)
    except Exception:  # no accelerate config: the flag was not given either
        return 1


def _parent_cmdline() -> list[str]:
    import psutil

    try:
        return psutil.Process(os.getppid()).cmdline()
    except psutil.Error:
        return []


def prepare_cpu_distributed(script: str, argv: list[str]) -> int | None:
    """Call first thing in a training script. Returns an exit code when this process only relaunched."""
    env = os.environ
    if any(key in env for key in _WORLD_KEYS):
        if (
            int(env.get("WORLD_SIZE", "1")) > 1
            and not _has_accelerator()
            and not _truthy(env.get("ACCELERATE_USE_CPU"))
        ):
            env["ACCELERATE_USE_CPU"] = "true"
        return None
    if not (_truthy(env.get("ACCELERATE_USE_CPU")) and "MASTER_ADDR" in env):
        return None
    parent = _parent_cmdline()
    if "launch" not in " ".join(parent):
        return None
    num_processes = requested_num_processes(parent)
    if num_processes <= 1:
        return None
    logger.warning(
        f"`accelerate launch --cpu --num_processes {num_processes}` starts one process without MPI; "
        f"starting {num_processes} gloo processes with torch.distributed.run instead."
    )
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(num_processes),
        "--master_addr",
        env["MASTER_ADDR"],
        "--master_port",
        env.get("MASTER_PORT", "29500"),
        script,
        *argv,
    ]
    return subprocess.call(command, env=dict(env, OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1")))
