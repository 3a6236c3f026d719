"""`Trainer` subclass for referring segmentation: the paper's optimiser/schedule and original-size evaluation."""

import logging
import math
import os

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import Trainer, TrainerCallback

from ..evaluation.metrics import generalized_summary, intersection_and_union, summarize
from .parallelism import ParallelismCallback, check_parallelism, own_class, promote_cpu_fsdp

logger = logging.getLogger(__name__)

ENCODER_PREFIXES = ("text_model.", "vision_model.")
REFINER_PREFIX = "mask_refiner."


def multistep_factor(step: int, milestones: list[int], rate: float) -> float:
    return rate ** sum(step >= milestone for milestone in milestones)


def milestone_steps(milestone_epochs, num_train_epochs: float, num_training_steps: int) -> list[int]:
    """Epoch milestones -> optimizer steps. With --max_steps the milestones keep their share of training."""
    return [round(epoch / num_train_epochs * num_training_steps) for epoch in milestone_epochs]


class EpochToTransformCallback(TrainerCallback):
    """Tells the training transform which epoch it is, for per-(sample, epoch) augmentation seeds."""

    def __init__(self, transform):
        self.transform = transform

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.transform.epoch = int(state.epoch or 0)


class SelectionExplorationCallback(TrainerCallback):
    """Anneals the selection's Gumbel noise linearly from `scale` at step 0 to 0 at `fraction` of training.

    Early in training the selector's choice barely depends on the expression; a layer that happens to win
    the first steps gets trained features and keeps winning. Noise on the selection logits lets every
    candidate be tried (and its straight-through gradient seen) before the choice settles.
    """

    def __init__(self, scale: float, fraction: float):
        self.scale = scale
        self.fraction = fraction

    def noise_at(self, step: int, max_steps: int) -> float:
        horizon = self.fraction * max_steps
        if self.scale <= 0 or horizon <= 0:
            return 0.0
        return self.scale * max(0.0, 1.0 - step / horizon)

    def _apply(self, model, value: float):
        for module in model.modules():
            if hasattr(module, "exploration_noise"):
                module.exploration_noise = value

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if model is not None:
            self._apply(model, self.noise_at(state.global_step, state.max_steps))

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if model is not None:
            self._apply(model, 0.0)


class LossPlateauCallback(TrainerCallback):
    """Warns once, at the first logged loss at or after `step`, when the training loss is still above `max_loss`.

    A run can sit on a plateau where it grounds colours and shapes but not position or relation words; with a
    decaying learning rate it then stays there, and only the evaluation at the end shows it. For a recipe whose
    runs were measured, the loss at a mid-run step separates those runs from the rest, so the user can stop and
    rerun with another seed instead of waiting for the end. It only warns: the run continues unchanged.
    """

    def __init__(self, step: int, max_loss: float):
        self.step = step
        self.max_loss = max_loss
        self.checked = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.checked or self.step <= 0 or state.global_step < self.step or "loss" not in (logs or {}):
            return
        self.checked = True
        loss = float(logs["loss"])
        if loss > self.max_loss and state.is_world_process_zero:
            logger.warning(
                f"WARNING: training loss {loss:.3f} at step {state.global_step} is above {self.max_loss:g} "
                f"(--plateau_check_loss): the measured runs of this recipe that were this high here never learned "
                f"the position and relation words (docs/experiments.md). The run goes on; stopping it and rerunning "
                f"with another --seed saves the remaining {state.max_steps - state.global_step} steps."
            )


class SelectionStatistics:
    """Running per-candidate choice counts and the summed normalised entropy of the selection probabilities.

    A selector whose softmax collapses onto one layer early never explores the others; these numbers make
    that visible in the training logs (and every `report_to` backend) instead of only after training.
    """

    def __init__(self):
        self.sums = {}  # level -> tensor [count per candidate..., entropy sum, samples]

    def add(self, level: str, probs: torch.Tensor):
        probs = probs.detach().float()
        counts = torch.bincount(probs.argmax(-1), minlength=probs.shape[-1]).float()
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1) / math.log(max(probs.shape[-1], 2))
        row = torch.cat([counts, entropy.sum()[None], torch.tensor([float(probs.shape[0])], device=probs.device)])
        self.sums[level] = row if level not in self.sums else self.sums[level] + row

    def pop(self, layers: dict, reduce=None) -> dict:
        """{'selection_low_L2': share, ..., 'selection_low_entropy': mean} and reset; `reduce` sums over processes."""
        logs = {}
        for level in sorted(layers):
            row = self.sums.get(level)
            if row is None:
                row = torch.zeros(len(layers[level]) + 2)
            if reduce is not None:
                row = reduce(row)
            samples = float(row[-1])
            if samples == 0:
                continue
            for layer, count in zip(layers[level], row[:-2].tolist()):
                logs[f"selection_{level}_L{layer}"] = round(count / samples, 4)
            logs[f"selection_{level}_entropy"] = round(float(row[-2]) / samples, 4)
        self.sums = {}
        return logs


class RISTrainer(Trainer):
    """Adds to `Trainer`:

    - parameter groups with the CLIP encoders at `learning_rate * encoder_lr_ratio` (published code: 0.1) and
      the mask refiner at `learning_rate * refiner_lr_ratio`;
    - the paper's multi-step schedule (x`lr_decay_rate` at each epoch of `lr_milestones`);
    - selection health in every training log: each candidate layer's share of the samples since the last log
      and the mean normalised entropy of the selection probabilities (adaptive selection only);
    - evaluation at the ORIGINAL image resolution: every prediction step post-processes the logits to each
      image's size (an expression the no-target head rejects gets an empty mask) and returns per-sample
      [intersection, union, low layer, mid layer, gt area, predicted area] with the row index,
      so `gather_for_metrics` counts each sample exactly once across processes.
    """

    def __init__(self, *args, mask_threshold: float | None = None, no_target_threshold: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.mask_threshold = mask_threshold  # None: the model config's
        self.no_target_threshold = no_target_threshold
        self.selection_statistics = SelectionStatistics()
        self.add_callback(ParallelismCallback(self))

    def create_accelerator_and_postprocess(self):
        super().create_accelerator_and_postprocess()
        if promote_cpu_fsdp(self.accelerator, self.args):
            self.is_fsdp_enabled = True
        check_parallelism(self.accelerator, self.args)

    def _load_optimizer_and_scheduler(self, checkpoint):
        if checkpoint is not None and not self.is_deepspeed_enabled and not _has_optimizer_state(checkpoint):
            logger.warning(
                f"{checkpoint} has no optimizer state (optimizer.pt): training goes on from its weights and step count "
                "with a FRESH optimizer and learning-rate schedule, which is not how the original run would have "
                "continued. To continue a run exactly, resume from one of its checkpoint-<step> folders."
            )
        super()._load_optimizer_and_scheduler(checkpoint)

    def save_model(self, output_dir=None, _internal_call=False):
        if not _internal_call and self.is_fsdp_enabled:
            # The final folder must be a loadable checkpoint: gather the full weights even when the FSDP
            # config keeps sharded state dicts (accelerate's default) for the intermediate checkpoints.
            self.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        super().save_model(output_dir, _internal_call)

    def _save(self, output_dir=None, state_dict=None):
        with own_class(self.model):
            super()._save(output_dir, state_dict=state_dict)

    def _clip_grad_norm(self, model):
        """The mask refiner is clipped on its own: its gradient must not shrink the rest of the model's steps.

        The refiner learns from its own loss on detached inputs; inside one global norm its gradient would
        lower the clipping factor of every other parameter and so change how the rest of the model trains.
        Returns the norm of the rest (the usual norm without a refiner). Sharded and DeepSpeed runs clip as usual.
        """
        refiner = getattr(self.accelerator.unwrap_model(model), "mask_refiner", None)
        if refiner is None or self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return super()._clip_grad_norm(model)
        own = {id(p) for p in refiner.parameters()}
        self.accelerator.unscale_gradients()  # once, for both groups (a no-op without a gradient scaler)
        rest = [p for p in model.parameters() if id(p) not in own]
        norm = torch.nn.utils.clip_grad_norm_(rest, self.args.max_grad_norm)
        torch.nn.utils.clip_grad_norm_(list(refiner.parameters()), self.args.max_grad_norm)
        return norm

    # ------------------------------------------------------------------------------ selection health
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:
            for level in ("low", "mid"):
                probs = getattr(outputs, f"{level}_selection_probs", None)
                if probs is not None:
                    self.selection_statistics.add(level, probs)
        return (loss, outputs) if return_outputs else loss

    def _candidate_layers(self) -> dict:
        config = self.accelerator.unwrap_model(self.model).config
        if getattr(config, "feature_selection", None) != "adaptive":
            return {}
        return {"low": config.low_candidate_layers, "mid": config.mid_candidate_layers}

    def log(self, logs: dict, *args, **kwargs):
        # Training logs carry "loss"; every process reaches this call, so the sum over processes is safe here.
        if "loss" in logs:
            layers = self._candidate_layers()
            if layers:
                device = self.args.device
                logs.update(
                    self.selection_statistics.pop(
                        layers, reduce=lambda row: self.accelerator.reduce(row.to(device), reduction="sum").cpu()
                    )
                )
        super().log(logs, *args, **kwargs)

    # -------------------------------------------------------------------------------- optimisation
    def create_optimizer(self, model=None):
        if self.optimizer is not None:
            return self.optimizer
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        ratios = {
            "encoder": getattr(self.args, "encoder_lr_ratio", 1.0),
            "refiner": getattr(self.args, "refiner_lr_ratio", 1.0),
            "rest": 1.0,
        }
        groups = {}
        for name, param in opt_model.named_parameters():
            if not param.requires_grad:
                continue
            part = "encoder" if name.startswith(ENCODER_PREFIXES) else "rest"
            part = "refiner" if name.startswith(REFINER_PREFIX) else part
            key = (part, name in decay)
            if key not in groups:
                groups[key] = {
                    "params": [],
                    "weight_decay": self.args.weight_decay if key[1] else 0.0,
                    "lr": self.args.learning_rate * ratios[part],
                }
            groups[key]["params"].append(param)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(list(groups.values()), **optimizer_kwargs)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None and getattr(self.args, "lr_schedule", "hf") == "multistep":
            optimizer = optimizer if optimizer is not None else self.optimizer
            milestones = milestone_steps(self.args.milestone_epochs, self.args.num_train_epochs, num_training_steps)
            rate = self.args.lr_decay_rate
            self.lr_scheduler = LambdaLR(optimizer, lambda step: multistep_factor(step, milestones, rate))
            self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)

    # ---------------------------------------------------------------------------------- evaluation
    def _broadcast_buffers(self):
        """Give every rank the main process's buffers (BatchNorm statistics) before evaluating.

        BatchNorm is not synchronised across processes, so each rank's running statistics drift apart
        during training, and Trainer evaluates the unwrapped model. Without this, a distributed evaluation
        would not equal an evaluation of the saved checkpoint (which holds rank 0's statistics).
        """
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for buffer in self.model.buffers():
                dist.broadcast(buffer.data, src=0)

    def evaluate(self, *args, **kwargs):
        self._broadcast_buffers()
        return super().evaluate(*args, **kwargs)

    def predict(self, *args, **kwargs):
        self._broadcast_buffers()
        return super().predict(*args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        gt_masks = inputs.pop("gt_masks", None)
        original_sizes = inputs.pop("original_sizes", None)
        row_index = inputs.pop("row_index", None)
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            outputs = model(**inputs)
        loss = outputs.loss.detach().float() if outputs.loss is not None else None
        if prediction_loss_only or gt_masks is None:
            return loss, None, None

        processor = self.processing_class
        target_logits = getattr(outputs, "target_logits", None)
        masks = processor.post_process_masks(
            outputs.logits.float(),
            original_sizes,
            threshold=self.model.config.mask_threshold if self.mask_threshold is None else self.mask_threshold,
            target_logits=None if target_logits is None else target_logits.float(),
            no_target_threshold=self.no_target_threshold,
        )
        stats = []
        for pred, gt in zip(masks, gt_masks):
            pred, gt = pred.cpu().bool(), gt.cpu().bool()
            stats.append([*intersection_and_union(pred, gt), int(gt.sum()), int(pred.sum())])
        stats = torch.tensor(stats, dtype=torch.long)
        batch = stats.shape[0]
        missing = torch.full((batch,), -1, dtype=torch.long, device=stats.device)
        low = outputs.low_layer_index if outputs.low_layer_index is not None else missing
        mid = outputs.mid_layer_index if outputs.mid_layer_index is not None else missing
        layers = [low.long().to(stats.device)[:, None], mid.long().to(stats.device)[:, None]]
        predictions = torch.cat([stats[:, :2], *layers, stats[:, 2:]], 1)  # I, U, low, mid, gt area, pred area
        if row_index is None:
            row_index = torch.full((batch,), -1, dtype=torch.long)
        device = self.args.device
        return loss, predictions.to(device), row_index.long().to(device)


def _has_optimizer_state(checkpoint) -> bool:
    # optimizer.pt (DDP / one process), optimizer.bin (accelerate), optimizer_0 (FSDP sharded state)
    return any(
        os.path.exists(os.path.join(checkpoint, name)) for name in ("optimizer.pt", "optimizer.bin", "optimizer_0")
    )


def compute_ris_metrics(eval_prediction, low_layers=(), mid_layers=()) -> dict:
    """EvalPrediction(predictions=[I, U, low, mid, gt area, predicted area] per sample, label_ids=row index) ->
    metric dict: mIoU, oIoU, Prec@X, and the generalized gIoU, cIoU, N_acc, T_acc, Pr@X (see evaluation.metrics).

    With candidate layers given, also the share of the split's samples that chose each of them
    (`selection_low_L4`, ...): a selection that collapsed on one layer shows as a share near 1.

    Row indices must be 0..N-1, each exactly once: a sample counted twice or lost by a distributed
    gather would silently bias the metrics, so it is an error.
    """
    predictions = np.asarray(eval_prediction.predictions)
    rows = np.asarray(eval_prediction.label_ids).reshape(-1)
    if rows.size and rows.min() >= 0 and not np.array_equal(np.sort(rows), np.arange(rows.size)):
        counts = np.bincount(rows)
        raise RuntimeError(
            f"evaluation saw {rows.size} predictions but rows {np.flatnonzero(counts != 1)[:10].tolist()} "
            "were not counted exactly once"
        )
    metrics = summarize(predictions[:, 0], predictions[:, 1])
    if predictions.shape[1] >= 6:
        metrics.update(generalized_summary(predictions[:, 0], predictions[:, 1], predictions[:, 4], predictions[:, 5]))
    metrics["num_samples"] = int(predictions.shape[0])
    for level, column, layers in (("low", 2, low_layers), ("mid", 3, mid_layers)):
        chosen = predictions[:, column]
        if layers and chosen.size and (chosen >= 0).all():
            for layer in layers:
                metrics[f"selection_{level}_L{layer}"] = float(np.mean(chosen == layer))
    return metrics
