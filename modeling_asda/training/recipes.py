"""Training defaults that belong to a model preset rather than to the paper's recipe.

The argument dataclasses default to the paper's recipe (CLIP weights, lr 5e-5 with a step decay). The `tiny`
preset without a checkpoint (random weights, or its shipped starting weights: tiny_init.py) needs another
one (lr 1e-3 with warm-up and cosine decay, flips), so that
`run_ris.py --config_preset tiny --dataset_name <data> --num_train_epochs 6 ...` trains well without the
user knowing it. Only the values the user did not give (flag or JSON key) are replaced, and the run says so.
"""

import logging

from transformers.trainer_utils import SchedulerType

logger = logging.getLogger(__name__)

# The demo's recipe (configs/demo_synthetic.json), measured on the synthetic data.
TINY_FROM_SCRATCH = {
    "learning_rate": 1e-3,
    "lr_schedule": "hf",
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.05,
    "weight_decay": 0.01,
    "per_device_train_batch_size": 16,
    "hflip_prob": 0.5,
    "max_grad_norm": 1.0,  # the demo's numbers were measured with clipping; the paper's recipes have none
    "refiner_lr_ratio": 3.0,  # the refiner learns from the decoder's logits, which settle only late in the run
}


def explicit_keys(argv: list[str], json_values: dict | None = None) -> set[str]:
    """Argument names given on the command line (`--name value`, `--name=value`) or in the JSON file."""
    keys = set(json_values or ())
    for token in argv:
        if token.startswith("--"):
            keys.add(token[2:].split("=", 1)[0].replace("-", "_"))
    return keys


def apply_preset_defaults(model_args, data_args, training_args, explicit: set[str]) -> dict:
    """Fill in the tiny-from-scratch recipe where the user gave nothing; returns what was changed."""
    from_scratch = not (model_args.model_name_or_path or model_args.clip_model_name_or_path)
    if model_args.config_preset != "tiny" or not from_scratch:
        return {}
    changed = {}
    for key, value in TINY_FROM_SCRATCH.items():
        if key in explicit:
            continue
        target = data_args if hasattr(data_args, key) else training_args
        if key == "lr_scheduler_type":
            value = SchedulerType(value)
        if getattr(target, key) != value:
            setattr(target, key, value)
            changed[key] = value.value if isinstance(value, SchedulerType) else value
    if changed:
        logger.warning(
            f"--config_preset tiny without a checkpoint: using its training recipe for unset arguments {changed}."
        )
    return changed
