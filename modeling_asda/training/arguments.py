"""Command-line arguments of scripts/run_ris.py (HfArgumentParser dataclasses; a JSON file works too).

Defaults are the paper's recipe (§4.2): Adam, lr 5e-5, 30 epochs, lr x0.1 at epochs 18 and 25,
14 images per device (2 GPUs x 14 = 28), 416x416. The published code's variants are flags.
"""

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class ModelArguments:
    config_preset: str = field(
        default="vit_b16", metadata={"help": "Model size when not loading a checkpoint: tiny | vit_b16."}
    )
    clip_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Initialise the encoders from this CLIPModel (Hub id or folder), e.g. openai/clip-vit-base-patch16."
        },
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "An ASDA checkpoint (Hub id or folder) to evaluate or fine-tune."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated ASDAConfig overrides for ablations, e.g. "
            "'feature_selection=manual,fusion=concat,aligner=none' or 'selector=mlp,num_response_masks=16'."
        },
    )
    revision: str = field(default="main", metadata={"help": "Hub revision of --model_name_or_path."})
    tiny_init: str | None = field(
        default=None,
        metadata={
            "help": "Starting weights of --config_preset tiny without a checkpoint: synthetic (the default: the default run's "
            "weights on the built-in data, shipped with the package), scratch (random), or an ASDA checkpoint "
            "folder / .safetensors file. Tensors of another shape or missing from the file keep their random init."
        },
    )
    no_target_head: bool | None = field(
        default=None,
        metadata={
            "help": "A head that scores whether the expression names anything (gRefCOCO). Default: added when the "
            "training data has no-target rows (or the checkpoint has one); true/false forces it either way."
        },
    )


@dataclass
class DataArguments:
    dataset_name: str = field(
        default="synthetic",
        metadata={
            "help": "Hub id or local folder in any supported format (REFER layout, lmms-lab or jxu124 parquet, "
            "prepared), or 'synthetic' for the built-in procedurally drawn data set."
        },
    )
    dataset_config: str | None = field(
        default=None,
        metadata={
            "help": "refcoco | refcoco+ | refcocog | grefcoco; for synthetic data: generalized (no-target and "
            "multi-target expressions)"
        },
    )
    split_by: str | None = field(default=None, metadata={"help": "unc | umd | google (REFER layout)"})
    image_root: str | None = field(default=None, metadata={"help": "COCO train2014 image folder (REFER, jxu124)."})
    train_split: str = field(default="train")
    eval_splits: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated, e.g. val,testA,testB. Default: every split but the training one (synthetic: val)."
        },
    )
    rebuild: bool = field(
        default=False,
        metadata={"help": "Convert the data set again instead of using the conversion cache."},
    )
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)
    max_text_length: int | None = field(
        default=None, metadata={"help": "Tokens per expression incl. SOT/EOT; default 17, 22 for refcocog (paper)."}
    )
    synthetic_num_train: int = field(default=20000)
    synthetic_num_eval: int = field(default=1000, metadata={"help": "Rows of each synthetic eval split (val, test)."})
    synthetic_seed: int = field(default=0)
    synthetic_overrides: str | None = field(
        default=None,
        metadata={"help": "Comma-separated SyntheticConfig fields, e.g. 'max_objects=4,relations=false'."},
    )
    hflip_prob: float = field(default=0.0, metadata={"help": "Horizontal flip probability (swaps left/right words)."})
    color_jitter: float = field(default=0.0, metadata={"help": "Brightness/contrast/saturation jitter strength."})
    random_affine: bool = field(default=False, metadata={"help": "±5° rotation, ±10% shift, 0.9-1.1 scale."})
    baselines: bool = field(
        default=True,
        metadata={"help": "Also evaluate the language-blind baselines (synthetic data and REFER-layout folders)."},
    )

    @property
    def eval_split_list(self) -> list[str]:
        return [split.strip() for split in (self.eval_splits or "").split(",") if split.strip()]


@dataclass
class RISTrainingArguments(TrainingArguments):
    output_dir: str | None = field(default="outputs/asda")
    learning_rate: float = field(default=5e-5, metadata={"help": "Paper: 5e-5 (Adam)."})
    num_train_epochs: float = field(default=30.0)
    per_device_train_batch_size: int = field(default=14)
    per_device_eval_batch_size: int = field(default=16)
    weight_decay: float = field(default=0.0, metadata={"help": "0: AdamW is then exactly the paper's Adam."})
    remove_unused_columns: bool = field(default=False)
    max_grad_norm: float = field(
        default=0.0,
        metadata={"help": "Gradient clipping norm; 0 = none (neither the paper nor the published code clips)."},
    )
    lr_schedule: str = field(
        default="multistep",
        metadata={
            "help": "multistep (paper: x lr_decay_rate at lr_milestones epochs) or hf (use --lr_scheduler_type)."
        },
    )
    lr_milestones: str = field(default="18,25", metadata={"help": "Epochs of the lr decay (published code: 18,28)."})
    lr_decay_rate: float = field(default=0.1)
    encoder_lr_ratio: float = field(
        default=1.0, metadata={"help": "lr multiplier of the CLIP encoders (published code: 0.1)."}
    )
    refiner_lr_ratio: float = field(
        default=1.0,
        metadata={
            "help": "lr multiplier of the mask refiner (models with mask_refiner_dim > 0). It learns from detached "
            "inputs that only settle late in training, so it needs larger steps than the rest (tiny preset: 3)."
        },
    )
    scale_lr: bool = field(
        default=False,
        metadata={"help": "Published code: learning_rate is per 16 images, scaled by the total batch / 16."},
    )

    selection_gumbel_scale: float = field(
        default=0.0,
        metadata={
            "help": "Exploration of the adaptive selection: Gumbel noise of this scale on the selection logits at "
            "the first step, annealed linearly to 0 over --selection_exploration_fraction of training. 0 = off."
        },
    )
    selection_exploration_fraction: float = field(
        default=0.3, metadata={"help": "Share of the training steps over which the Gumbel noise anneals to 0."}
    )

    plateau_check_step: int = field(
        default=0,
        metadata={
            "help": "With --plateau_check_loss: warn if the training loss logged at this step (or the first log "
            "after it) is above that value, i.e. the run looks stuck where measured runs never learned position "
            "and relation words (the demo: 1000 and 1.12). 0 = off. It only warns."
        },
    )
    plateau_check_loss: float = field(default=0.0, metadata={"help": "See --plateau_check_step."})

    refiner_tail_steps: int = field(
        default=0,
        metadata={
            "help": "After training, train only the mask refiner for this many steps on the frozen model's "
            "eval-mode logits (cosine from learning_rate * refiner_lr_ratio; the demo: 400). 0 = off."
        },
    )

    def __post_init__(self):
        from .parallelism import (
            check_deepspeed_request,
            check_fsdp_request,
            deepspeed_requested,
            default_fsdp_wrapping,
            fsdp_requested,
        )

        check_deepspeed_request(self.deepspeed)  # before the base class imports deepspeed for it
        if self.plateau_check_step > 0 and self.plateau_check_loss <= 0:
            raise ValueError("--plateau_check_step needs --plateau_check_loss > 0 (the loss above which to warn)")
        if self.refiner_tail_steps < 0:
            raise ValueError(f"--refiner_tail_steps must be >= 0, got {self.refiner_tail_steps}")
        super().__post_init__()
        check_fsdp_request(self)
        default_fsdp_wrapping(self)
        if self.refiner_tail_steps and (fsdp_requested(self) or deepspeed_requested(self)):
            raise ValueError(
                "--refiner_tail_steps is not supported with FSDP or DeepSpeed (it trains a few thousand parameters "
                "of a frozen model); pass --refiner_tail_steps 0"
            )

    @property
    def milestone_epochs(self) -> list[float]:
        return [float(value) for value in self.lr_milestones.split(",") if value.strip()]


def parse_config_overrides(text: str | None) -> dict:
    """'a=1,b=x,c=true,d=4|5|6' -> {'a': 1, 'b': 'x', 'c': True, 'd': (4, 5, 6)}."""
    overrides = {}
    if not text:
        return overrides
    for item in text.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(f"--config_overrides item {item!r} is not key=value")
        key, value = (part.strip() for part in item.split("=", 1))
        overrides[key] = _parse_value(value)
    return overrides


def _parse_value(value: str):
    if "|" in value:
        return tuple(_parse_value(part) for part in value.split("|"))
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value
