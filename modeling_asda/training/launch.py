"""Start exactly the processes a launch command asked for, or stop and say why.

Two traps of the usual launchers, handled before anything else runs:

- `accelerate launch` uses its "simple launcher" whenever it does not see several GPUs (always on a
  CPU machine, or with --cpu): it starts ONE process, whatever --num_processes, --num_machines and
  --machine_rank say (it starts more only through MPI). Each machine would then train alone and exit 0.
  We read the accelerate command line with accelerate's own parser and start the requested processes
  with torch.distributed.run: num_processes // num_machines on this machine, as machine `machine_rank`
  of `num_machines`, meeting at main_process_ip:main_process_port. What cannot be honoured (an
  uneven split, a machine rank out of range, more processes per machine than GPUs) is refused.
- processes started by torchrun (or accelerate's multi-GPU launcher, or mpirun) on a machine without
  an accelerator: accelerate joins them in one gloo group only when told the run is on CPU, otherwise
  each trains alone. We set ACCELERATE_USE_CPU for them.

Machine 0 of N waits for the others at the rendezvous and fails (non-zero exit) when they do not
come; the wait is --ddp_timeout seconds when given (torch.distributed.run's 600 s otherwise).
"""

import logging
import os
import subprocess
import sys
from dataclasses import dataclass

logger = logging.getLogger(__name__)

_WORLD_KEYS = ("WORLD_SIZE", "LOCAL_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class LaunchError(SystemExit):
    """A launch that cannot run as asked; the message says why and what to do."""


@dataclass
class LaunchRequest:
    """What an `accelerate launch` command asked for (accelerate's meaning: num_processes is the total)."""

    num_processes: int
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str = "127.0.0.1"
    main_process_port: int = 29500
    cpu: bool = False
    rdzv_backend: str = "static"

    @property
    def processes_per_machine(self) -> int:
        return self.num_processes // self.num_machines


def _truthy(value) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def _accelerator_count() -> int:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count()
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return torch.xpu.device_count()
    return 0


def _launch_arguments(parent_cmdline: list[str]) -> list[str] | None:
    """The arguments after `accelerate launch` (or `python -m accelerate.commands.launch`), else None."""
    for index, token in enumerate(parent_cmdline):
        if token == "accelerate.commands.launch" or (
            token == "launch" and index > 0 and os.path.basename(parent_cmdline[index - 1]).startswith("accelerate")
        ):
            return parent_cmdline[index + 1 :]
    return None


def read_launch_request(parent_cmdline: list[str]) -> LaunchRequest | None:
    """The request of an `accelerate launch` command line, with its config file's values where flags are
    missing, exactly as accelerate resolves them. None if the command line is not accelerate's."""
    arguments = _launch_arguments(parent_cmdline)
    if arguments is None:
        return None
    from accelerate.commands.launch import launch_command_parser

    args = launch_command_parser().parse_args(arguments)
    try:  # accelerate's own resolution of flags + config file (private; its absence only loses the config)
        from accelerate.commands.launch import _validate_launch_command

        logging.disable(logging.WARNING)  # it repeats the launcher's "values were not passed" warnings
        try:
            args = _validate_launch_command(args)[0]
        finally:
            logging.disable(logging.NOTSET)
    except ImportError:
        pass
    num_machines = int(args.num_machines or 1)
    return LaunchRequest(
        num_processes=int(args.num_processes or 0) or num_machines,
        num_machines=num_machines,
        machine_rank=int(args.machine_rank or 0),
        main_process_ip=args.main_process_ip or "127.0.0.1",
        main_process_port=int(args.main_process_port or 29500),
        cpu=bool(args.cpu),
        rdzv_backend=getattr(args, "rdzv_backend", None) or "static",
    )


def check_request(request: LaunchRequest, accelerators: int) -> None:
    """Refuse what cannot run as asked."""
    if request.num_machines < 1 or not 0 <= request.machine_rank < request.num_machines:
        raise LaunchError(
            f"--machine_rank {request.machine_rank} is not a rank of --num_machines {request.num_machines} "
            f"(0 .. {request.num_machines - 1})."
        )
    if request.num_processes % request.num_machines:
        raise LaunchError(
            f"--num_processes {request.num_processes} cannot be split evenly over --num_machines "
            f"{request.num_machines}: in accelerate, --num_processes is the total over all machines "
            f"(e.g. 2 machines x 8 processes = --num_processes 16)."
        )
    if not request.cpu and accelerators and request.processes_per_machine > accelerators:
        raise LaunchError(
            f"{request.processes_per_machine} processes per machine were asked for but this machine has "
            f"{accelerators} GPU(s); pass --num_processes {accelerators * request.num_machines} (one per GPU), "
            "or --cpu to train on CPU processes."
        )


def _timeout_from(argv: list[str]) -> str | None:
    for index, token in enumerate(argv):
        if token == "--ddp_timeout" and index + 1 < len(argv):
            return argv[index + 1]
        if token.startswith("--ddp_timeout="):
            return token.split("=", 1)[1]
    return None


def torchrun_command(request: LaunchRequest, script: str, argv: list[str]) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        str(request.num_machines),
        "--node_rank",
        str(request.machine_rank),
        "--nproc_per_node",
        str(request.processes_per_machine),
    ]
    if request.rdzv_backend == "static":
        command += ["--master_addr", request.main_process_ip, "--master_port", str(request.main_process_port)]
    else:
        command += [
            "--rdzv_backend",
            request.rdzv_backend,
            "--rdzv_endpoint",
            f"{request.main_process_ip}:{request.main_process_port}",
        ]
    timeout = _timeout_from(argv)
    if timeout is not None:
        command += ["--rdzv_conf", f"timeout={int(float(timeout))}"]
    return command + [script, *argv]


def _parent_cmdline() -> list[str]:
    import psutil

    try:
        return psutil.Process(os.getppid()).cmdline()
    except psutil.Error:
        return []


def prepare_distributed(script: str, argv: list[str]) -> int | None:
    """Call first thing in a training script. Returns an exit code when this process only relaunched."""
    env = os.environ
    if any(key in env for key in _WORLD_KEYS):  # the launcher started the processes itself
        if (
            int(env.get("WORLD_SIZE", "1")) > 1
            and not _accelerator_count()
            and not _truthy(env.get("ACCELERATE_USE_CPU"))
        ):
            env["ACCELERATE_USE_CPU"] = "true"
        return None
    # accelerate's simple launcher sets these two; MASTER_ADDR only when several processes or machines were asked.
    if not ("ACCELERATE_USE_CPU" in env and "ACCELERATE_MIXED_PRECISION" in env):
        return None
    request = read_launch_request(_parent_cmdline())
    if request is None:
        if "MASTER_ADDR" in env:
            raise LaunchError(
                "accelerate was asked for several processes or machines but started this one process alone, and "
                "its command line could not be read to start the others. Launch with torchrun instead: "
                "torchrun --nnodes M --node_rank R --nproc_per_node N --master_addr IP --master_port PORT "
                f"{os.path.basename(script)} ..."
            )
        return None
    if request.num_processes <= 1 and request.num_machines <= 1:
        return None
    accelerators = _accelerator_count()
    check_request(request, accelerators)
    cpu = request.cpu or not accelerators
    logger.warning(
        "`accelerate launch` started one process for %d process(es) on %d machine(s); starting %d %s process(es) "
        "as machine %d of %d with torch.distributed.run.",
        request.num_processes,
        request.num_machines,
        request.processes_per_machine,
        "CPU (gloo)" if cpu else "GPU",
        request.machine_rank,
        request.num_machines,
    )
    child_env = dict(env, OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    if cpu:
        child_env["ACCELERATE_USE_CPU"] = "true"
    code = subprocess.call(torchrun_command(request, script, argv), env=child_env)
    if code and request.num_machines > 1:
        logger.error(
            "Machine %d of %d failed (exit code %d). If the rendezvous timed out, not every machine joined at %s:%d: "
            "start the same command with each --machine_rank 0..%d.",
            request.machine_rank,
            request.num_machines,
            code,
            request.main_process_ip,
            request.main_process_port,
            request.num_machines - 1,
        )
    return code
