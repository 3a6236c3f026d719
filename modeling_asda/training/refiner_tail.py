"""A short phase after training in which only the mask refiner learns, on the finished model's eval-mode logits.

During the run the refiner learns from decoder logits that keep changing and carry the decoder's dropout; its
input only takes its final form at the end. Training it alone for a few hundred steps on what it will see at
inference (the rest of the model frozen and in eval mode) sharpens the masks for under a minute of CPU time
on the tiny preset (docs/experiments.md). Nothing else changes: every other weight stays bitwise equal.

The phase is a second `Trainer` over the same training rows, so logging, `report_to`, devices and data-parallel
launches work as in the main run.
"""

import dataclasses
import logging
import os

import torch
from torch import nn
from transformers import Trainer

from ..modeling_loss import asda_mask_loss

logger = logging.getLogger(__name__)


class RefinerOnly(nn.Module):
    """Wraps a model with a mask refiner: `train()` puts only the refiner in training mode and the loss is the
    refiner's own, computed on the decoder logits of the frozen model."""

    accepts_loss_kwargs = False  # the loss is a per-batch mean: Trainer must not rescale it

    def __init__(self, model):
        super().__init__()
        self.model = model

    def train(self, mode: bool = True):
        super().train(False)
        self.model.mask_refiner.train(mode)
        return self

    def forward(self, pixel_values, input_ids, attention_mask, labels, **unused):
        with torch.no_grad():
            out = self.model(
                pixel_values=pixel_values,
                input_ids=input_ids,
                attention_mask=attention_mask,
                output_feature_maps=True,
            )
        logits = self.model.mask_refiner(pixel_values, out.decoder_logits)
        return {"loss": asda_mask_loss(logits, labels, self.model.config), "logits": logits}


def refiner_tail_arguments(args):
    """The main run's arguments for the tail: `refiner_tail_steps` steps of cosine decay from the refiner's own
    learning rate, no warm-up, no checkpoints or evaluation, a different shuffle of the same rows, and its own
    run name for the `report_to` backends."""
    return dataclasses.replace(
        args,
        max_steps=args.refiner_tail_steps,
        learning_rate=args.learning_rate * args.refiner_lr_ratio,
        lr_schedule="hf",
        lr_scheduler_type="cosine",
        lr_scheduler_kwargs={},
        warmup_steps=0,
        save_strategy="no",
        eval_strategy="no",
        load_best_model_at_end=False,
        push_to_hub=False,
        resume_from_checkpoint=None,
        selection_gumbel_scale=0.0,
        plateau_check_step=0,
        plateau_check_loss=0.0,
        refiner_tail_steps=0,
        data_seed=(args.data_seed if args.data_seed is not None else args.seed) + 1,
        run_name=f"{args.run_name or os.path.basename(os.path.normpath(args.output_dir or 'asda'))}-refiner-tail",
    )


def train_refiner_tail(model, training_args, train_dataset, data_collator) -> dict:
    """Trains `model.mask_refiner` alone for `training_args.refiner_tail_steps` steps; returns the phase's metrics
    (`refiner_tail_loss`, `refiner_tail_runtime`), or {} when the model has no refiner."""
    if getattr(model, "mask_refiner", None) is None:
        logger.warning("--refiner_tail_steps: the model has no mask refiner (mask_refiner_dim=0); no tail phase.")
        return {}
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    refiner = {id(p) for p in model.mask_refiner.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in refiner)
    try:
        trainer = Trainer(
            model=RefinerOnly(model),
            args=refiner_tail_arguments(training_args),
            train_dataset=train_dataset,
            data_collator=data_collator,
        )
        result = trainer.train()
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(requires_grad[name])
    model.eval()
    metrics = {
        "refiner_tail_loss": result.metrics["train_loss"],
        "refiner_tail_runtime": result.metrics["train_runtime"],
    }
    logger.info(f"Mask refiner trained alone for {training_args.refiner_tail_steps} steps: {metrics}")
    return metrics
