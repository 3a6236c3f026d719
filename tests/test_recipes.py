"""The recipe files in configs/: each parses with run_ris.py's parser and trains what its README row says."""

import dataclasses
import json
import os

import pytest
from asda_checkpoint import script_module

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation, ASDAProcessor
from modeling_asda.training.arguments import RISTrainingArguments
from modeling_asda.training.experiment import Splits, make_trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")

# The run behind the paper's Table 1 (the published training script): lr 2.5e-5 per 16 images, CLIP at lr/10,
# x0.1 at epochs 18 and 28 of 32, flip + jitter + affine always on, fp16, no clipping, 2 GPUs x 14.
PUBLISHED = dict(
    learning_rate=2.5e-5,
    scale_lr=True,
    encoder_lr_ratio=0.1,
    num_train_epochs=32,
    milestone_epochs=[18.0, 28.0],
    lr_decay_rate=0.1,
    max_grad_norm=0.0,
    weight_decay=0.0,
    per_device_train_batch_size=14,
    fp16=True,
)
# The paper's text (§4.1): Adam, lr 5e-5, 30 epochs, x0.1 at 18 and 25, batch 28; nothing about augmentation
# or clipping.
PAPER_TEXT = dict(
    learning_rate=5e-5,
    scale_lr=False,
    encoder_lr_ratio=1.0,
    num_train_epochs=30,
    milestone_epochs=[18.0, 25.0],
    lr_decay_rate=0.1,
    max_grad_norm=0.0,
    weight_decay=0.0,
    per_device_train_batch_size=14,
)
RECIPES = {
    "paper_refcoco.json": (PUBLISHED, dict(dataset_config="refcoco", split_by="unc", max_text_length=17), True),
    "paper_refcoco_plus.json": (PUBLISHED, dict(dataset_config="refcoco+", split_by="unc", max_text_length=17), True),
    "paper_refcocog.json": (PUBLISHED, dict(dataset_config="refcocog", split_by="umd", max_text_length=22), True),
    "paper_text_refcoco.json": (PAPER_TEXT, dict(dataset_config="refcoco", split_by="unc", max_text_length=17), False),
}


def parse(name):
    return script_module("run_ris").parse_args([os.path.join(CONFIGS, name)])[:3]


def test_every_paper_recipe_file_is_covered():
    files = sorted(name for name in os.listdir(CONFIGS) if name.startswith("paper"))
    assert files == sorted(RECIPES)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_values(name):
    training_values, data_values, augmented = RECIPES[name]
    model_args, data_args, training_args = parse(name)
    assert model_args.clip_model_name_or_path == "openai/clip-vit-base-patch16"
    assert training_args.lr_schedule == "multistep"
    for key, value in training_values.items():
        assert getattr(training_args, key) == pytest.approx(value), key
    for key, value in data_values.items():
        assert getattr(data_args, key) == value, key
    expected_splits = ["val", "test"] if data_values["dataset_config"] == "refcocog" else ["val", "testA", "testB"]
    assert data_args.eval_split_list == expected_splits
    if augmented:
        assert data_args.hflip_prob == 0.5 and data_args.color_jitter > 0 and data_args.random_affine
    else:
        assert data_args.hflip_prob == 0 and data_args.color_jitter == 0 and not data_args.random_affine


def test_clipping_is_off_unless_a_recipe_turns_it_on():
    assert RISTrainingArguments(output_dir="x").max_grad_norm == 0.0
    with open(os.path.join(CONFIGS, "demo_synthetic.json")) as handle:
        assert json.load(handle)["max_grad_norm"] == 1.0  # the demo's numbers were measured with clipping


@pytest.mark.parametrize("name", ["paper_refcoco.json", "paper_text_refcoco.json"])
def test_recipe_builds_the_optimizer_and_schedule_it_names(name, tmp_path):
    """The Trainer made from the file: per-group learning rates and the multi-step decay at the named epochs."""
    training_values = RECIPES[name][0]
    _, _, args = parse(name)
    # fp16 needs a GPU and per-epoch evaluation an eval split; the rest of the arguments are the file's.
    args = dataclasses.replace(args, output_dir=str(tmp_path), fp16=False, eval_strategy="no", save_strategy="no")
    model = ASDAForReferringSegmentation(ASDAConfig.tiny())
    trainer = make_trainer(model, ASDAProcessor.from_model_config(model.config), args, Splits(None, None, {}, {}))
    # One process here: the published lr is per 16 images, scaled by the 14 images of this step.
    base = training_values["learning_rate"] * (14 / 16 if training_values["scale_lr"] else 1.0)
    optimizer = trainer.create_optimizer()
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    for param_name, param in model.named_parameters():
        encoder = param_name.startswith(("text_model.", "vision_model."))
        ratio = training_values["encoder_lr_ratio"] if encoder else 1.0
        assert lr_of[id(param)] == pytest.approx(base * ratio), param_name

    epochs = training_values["num_train_epochs"]
    steps_per_epoch = 10
    trainer.create_scheduler(num_training_steps=epochs * steps_per_epoch, optimizer=optimizer)
    first, second = (int(epoch * steps_per_epoch) for epoch in training_values["milestone_epochs"])
    factor = trainer.lr_scheduler.lr_lambdas[0]
    assert factor(first - 1) == 1.0 and factor(first) == pytest.approx(0.1)
    assert factor(second - 1) == pytest.approx(0.1) and factor(second) == pytest.approx(0.01)
