"""What the Trainer's processes actually run, and CPU FSDP (which accelerate leaves out).

accelerate turns an FSDP request into FSDP only for accelerator process groups; for gloo (CPU)
processes it keeps plain DistributedDataParallel without a word, and it runs DeepSpeed only on
accelerators. `promote_cpu_fsdp` makes the FSDP request hold on CPU too (torch's fully_shard works
on gloo); `check_parallelism` stops a run whose Accelerator is not what was asked for;
`ParallelismCallback` logs and saves what each rank holds, so a run can be checked afterwards.
"""

import contextlib
import json
import logging
import os
import socket

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

PARALLELISM_FILE = "parallelism.json"


def fsdp_requested(args) -> bool:
    """--fsdp / --fsdp_config in the arguments, or FSDP chosen in `accelerate launch`/`accelerate config`."""
    return bool(getattr(args, "fsdp_plugin_args", None)) or _env_true("ACCELERATE_USE_FSDP")


def deepspeed_requested(args) -> bool:
    return bool(getattr(args, "deepspeed", None)) or _env_true("ACCELERATE_USE_DEEPSPEED")


def _env_true(name) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def _has_accelerator() -> bool:
    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


DEEPSPEED_ON_CPU = (
    "DeepSpeed was asked for (--deepspeed, or DeepSpeed in `accelerate launch`/`accelerate config`) but this "
    "machine has no GPU, and accelerate runs DeepSpeed only on GPUs (or other accelerators). On CPU use "
    '--fsdp "full_shard auto_wrap" with 2 or more processes (FSDP2 over gloo), or plain data parallelism.'
)


def check_deepspeed_request(deepspeed) -> None:
    """Before TrainingArguments builds its DeepSpeed config: stop where DeepSpeed cannot run."""
    if not (deepspeed or _env_true("ACCELERATE_USE_DEEPSPEED")):
        return
    if not _has_accelerator():
        raise ValueError(DEEPSPEED_ON_CPU)
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise ValueError(
            'DeepSpeed was asked for but the deepspeed package is not installed: pip install -e ".[deepspeed]" '
            "(or pip install deepspeed)."
        )


def check_fsdp_request(args) -> None:
    """Stop an FSDP request that this launch cannot run, before any data is loaded."""
    if not fsdp_requested(args):
        return
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        raise ValueError(
            "FSDP shards the model over several processes, but this run has one. Start 2 or more, e.g. "
            "`torchrun --nproc_per_node 2 scripts/run_ris.py ... --fsdp 'full_shard auto_wrap'` or "
            "`accelerate launch --num_processes 2 scripts/run_ris.py ...` (add --cpu on a machine without GPUs)."
        )
    if _has_accelerator() or getattr(args, "fsdp_plugin_args", None):
        return
    # FSDP from accelerate's own config, on CPU processes: only the parts accelerate can do there.
    if os.environ.get("FSDP_VERSION", "1") != "2":
        raise ValueError(
            "accelerate's FSDP config asks for FSDP version 1, which needs GPUs. On CPU processes use FSDP2: "
            "`accelerate launch --use_fsdp --fsdp_version 2 --fsdp_sync_module_states false "
            "--fsdp_cpu_ram_efficient_loading false ...`, or run_ris.py's own --fsdp 'full_shard auto_wrap'."
        )
    if _env_true("FSDP_SYNC_MODULE_STATES") or _env_true("FSDP_CPU_RAM_EFFICIENT_LOADING"):
        raise ValueError(
            "accelerate's FSDP config has sync_module_states / cpu_ram_efficient_loading, which accelerate "
            "implements for GPUs only. On CPU processes pass --fsdp_sync_module_states false "
            "--fsdp_cpu_ram_efficient_loading false to `accelerate launch`, or use run_ris.py's own --fsdp flag."
        )


def default_fsdp_wrapping(args) -> None:
    """FSDP units = the transformer layers, unless the user named others.

    Without names, accelerate wraps every `_no_split_modules` class, which transformers extends with
    the CLIP embedding modules; its FSDP2 path then shards the word table a second time and fails.
    """
    from ..modeling_asda import ASDAForReferringSegmentation

    layers = ",".join(ASDAForReferringSegmentation._no_split_modules)
    plugin_args = getattr(args, "fsdp_plugin_args", None)
    if plugin_args and plugin_args.get("auto_wrap_policy") == "TRANSFORMER_BASED_WRAP":
        plugin_args.setdefault("transformer_cls_names_to_wrap", layers)
    if _env_true("ACCELERATE_USE_FSDP") and os.environ.get("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP") == (
        "TRANSFORMER_BASED_WRAP"
    ):
        os.environ.setdefault("FSDP_TRANSFORMER_CLS_TO_WRAP", layers)


def promote_cpu_fsdp(accelerator, args) -> bool:
    """Turn a gloo multi-process state into FSDP when FSDP was asked for. True if it did.

    accelerate's AcceleratorState accepts the FSDP plugin only for GPU-like process groups; on CPU
    the plugin is dropped and the model is wrapped in DDP. Its FSDP2 path itself (fully_shard on a
    CPU device mesh) works with gloo, so the state is switched and the plugin attached.
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = accelerator.state
    if state.distributed_type != DistributedType.MULTI_CPU or not fsdp_requested(args):
        return False
    plugin_args = dict(args.fsdp_plugin_args or {})
    plugin = FullyShardedDataParallelPlugin(**plugin_args) if plugin_args else FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        raise SystemExit(
            "FSDP version 1 needs GPUs; on CPU processes only FSDP2 runs (--fsdp_config with 'version': 2, "
            "the default of --fsdp)."
        )
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    logger.info("FSDP2 on %d gloo (CPU) processes: the model is sharded with fully_shard.", state.num_processes)
    return True


@contextlib.contextmanager
def own_class(model):
    """Give an FSDP2-sharded model its own class while it is saved.

    fully_shard swaps the class for a generated FSDP<name> subclass; save_pretrained would write
    that into config.json's auto_map and copy torch's FSDP source files next to the weights.
    """
    from torch.distributed.fsdp import FSDPModule

    sharded_class = type(model)
    if not isinstance(model, FSDPModule):
        yield model
        return
    model.__class__ = next(base for base in sharded_class.__mro__[1:] if not issubclass(base, FSDPModule))
    try:
        yield model
    finally:
        model.__class__ = sharded_class


def check_parallelism(accelerator, args) -> None:
    """Stop, with the reason, when the Accelerator would run something other than what was asked for."""
    from accelerate.utils import DistributedType

    kind = accelerator.state.distributed_type
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and accelerator.num_processes != world:
        raise SystemExit(
            f"{world} processes were launched but they did not form one process group "
            f"(accelerate sees {accelerator.num_processes}); each would train alone."
        )
    if deepspeed_requested(args) and kind != DistributedType.DEEPSPEED:
        raise SystemExit(
            DEEPSPEED_ON_CPU
            if not _has_accelerator()
            else "DeepSpeed was asked for but accelerate set up " + kind.value
        )
    if fsdp_requested(args) and kind != DistributedType.FSDP:
        where = "a single process" if accelerator.num_processes == 1 else f"{kind.value}"
        raise SystemExit(
            f"FSDP was asked for (--fsdp or accelerate's FSDP config) but this run would use {where}: FSDP needs "
            "at least 2 processes (torchrun --nproc_per_node 2 ... or accelerate launch --num_processes 2 ...)."
        )


def _rank_summary(model, accelerator) -> dict:
    from torch.distributed.fsdp import FSDPModule

    local = total = 0
    for param in model.parameters():
        total += param.numel()
        local += param.to_local().numel() if hasattr(param, "to_local") else param.numel()
    return {
        "rank": accelerator.process_index,
        "local_rank": accelerator.local_process_index,
        "host": socket.gethostname(),
        "node_rank": int(os.environ.get("GROUP_RANK", os.environ.get("NODE_RANK", 0))),
        "model_class": type(model).__name__,
        "fsdp_modules": sum(isinstance(module, FSDPModule) for module in model.modules()),
        "parameters": total,
        "local_parameters": local,
    }


class ParallelismCallback(TrainerCallback):
    """At the start of training: every rank logs what it holds; the main process writes parallelism.json."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        accelerator = self.trainer.accelerator
        summary = _rank_summary(self.trainer.model, accelerator)
        logger.warning(
            "rank %d of %d (%s, %s): %s, %d FSDP-sharded modules, holds %d of %d parameters",
            summary["rank"],
            accelerator.num_processes,
            accelerator.state.distributed_type.value,
            accelerator.state.backend or "no process group",
            summary["model_class"],
            summary["fsdp_modules"],
            summary["local_parameters"],
            summary["parameters"],
        )
        ranks = [summary]
        if accelerator.num_processes > 1:
            ranks = [None] * accelerator.num_processes
            torch.distributed.all_gather_object(ranks, summary)
        if accelerator.is_main_process:
            record = {
                "distributed_type": accelerator.state.distributed_type.value,
                "backend": accelerator.state.backend,
                "world_size": accelerator.num_processes,
                "num_nodes": len({(r["host"], r["node_rank"]) for r in ranks}),
                "wrapped_model": type(self.trainer.model_wrapped).__name__,
                "ranks": ranks,
            }
            os.makedirs(args.output_dir, exist_ok=True)
            with open(os.path.join(args.output_dir, PARALLELISM_FILE), "w") as handle:
                json.dump(record, handle, indent=2)
