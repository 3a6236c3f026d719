"""The refiner-only phase after training (`--refiner_tail_steps`)."""

import json
import logging

import pytest
import torch
from test_no_target_head import inputs_for, small_config

from modeling_asda import ASDAForReferringSegmentation, ASDAProcessor
from modeling_asda.data.transforms import collate_ris
from modeling_asda.modeling_loss import asda_mask_loss
from modeling_asda.training import parallelism
from modeling_asda.training.arguments import RISTrainingArguments
from modeling_asda.training.refiner_tail import RefinerOnly, refiner_tail_arguments, train_refiner_tail


def _model(**kwargs):
    torch.manual_seed(0)
    return ASDAForReferringSegmentation(small_config(**kwargs))


def test_only_the_refiner_trains_and_it_reads_the_eval_mode_logits():
    model = _model(mask_refiner_dim=8, hidden_dropout=0.3)
    processor = ASDAProcessor.from_model_config(model.config)
    batch = inputs_for(processor)
    wrapper = RefinerOnly(model).train()
    assert wrapper.model.mask_refiner.training
    assert not any(m.training for name, m in model.named_modules() if not name.startswith("mask_refiner"))

    inputs = {k: batch[k] for k in ("pixel_values", "input_ids", "attention_mask", "labels")}
    out = wrapper(**inputs)
    out["loss"].backward()
    # The expected loss from an independent eval-mode pass: dropout off, the refiner (BatchNorm) in train mode.
    with torch.no_grad():
        decoder = model.eval()(**{k: v for k, v in inputs.items() if k != "labels"}, output_feature_maps=True)
        model.mask_refiner.train()
        expected = asda_mask_loss(
            model.mask_refiner(batch["pixel_values"], decoder.decoder_logits), batch["labels"], model.config
        )
    assert float(out["loss"].detach()) == pytest.approx(float(expected), rel=1e-5)
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad and all(name.startswith("mask_refiner.") for name in with_grad)


def test_tail_arguments_start_at_the_refiners_learning_rate_and_decay_without_warm_up(tmp_path):
    args = RISTrainingArguments(
        output_dir=str(tmp_path),
        learning_rate=1e-3,
        refiner_lr_ratio=3.0,
        refiner_tail_steps=40,
        warmup_steps=0.05,
        lr_schedule="hf",
        save_strategy="steps",
        selection_gumbel_scale=1.0,
        plateau_check_step=10,
        plateau_check_loss=1.0,
        seed=7,
        report_to="none",
    )
    tail = refiner_tail_arguments(args)
    assert tail.max_steps == 40 and tail.learning_rate == pytest.approx(3e-3)
    assert tail.get_warmup_steps(40) == 0 and tail.lr_scheduler_type == "cosine"
    assert tail.save_strategy == "no" and tail.eval_strategy == "no" and tail.data_seed == 8
    assert tail.refiner_tail_steps == 0 and tail.selection_gumbel_scale == 0 and tail.plateau_check_step == 0
    assert tail.run_name == f"{tmp_path.name}-refiner-tail"
    assert args.max_steps == -1 and args.learning_rate == 1e-3  # the main run's arguments are untouched


def test_a_model_without_refiner_is_left_alone_with_a_warning(tmp_path, caplog):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = RISTrainingArguments(output_dir=str(tmp_path), refiner_tail_steps=5, report_to="none")
    with caplog.at_level(logging.WARNING):
        assert train_refiner_tail(model, args, None, collate_ris) == {}
    assert "no mask refiner" in caplog.text
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_bad_tail_settings_are_refused_by_name(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="--refiner_tail_steps must be >= 0"):
        RISTrainingArguments(output_dir=str(tmp_path), refiner_tail_steps=-1)
    # As in a multi-process FSDP launch (the one-process refusal and the wrapping are checked elsewhere).
    monkeypatch.setattr(parallelism, "check_fsdp_request", lambda args: None)
    monkeypatch.setattr(parallelism, "default_fsdp_wrapping", lambda args: None)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ValueError, match="refiner_tail_steps is not supported with FSDP"):
        RISTrainingArguments(output_dir=str(tmp_path), refiner_tail_steps=5)


def test_run_ris_tail_changes_the_refiner_only_and_reports_its_loss(tmp_path):
    """Two runs from the same seed, with and without the tail: every tensor outside the refiner (BatchNorm
    statistics included) is bitwise equal, the refiner's weights are not, and the run reports the phase."""
    from safetensors.torch import load_file
    from test_run_ris import TINY_RUN, run_script

    common = TINY_RUN + ["--synthetic_num_train", "48", "--num_train_epochs", "1", "--max_grad_norm", "1.0"]
    common += ["--do_train", "--do_eval", "false", "--save_strategy", "no", "--seed", "5"]
    common += ["--config_overrides", "mask_refiner_dim=8"]
    weights, results = {}, {}
    for name, steps in (("plain", 0), ("tail", 5)):
        out = tmp_path / name
        run_script(common + ["--refiner_tail_steps", steps, "--output_dir", out])
        weights[name] = load_file(str(out / "model.safetensors"))
        results[name] = json.loads((out / "train_results.json").read_text())
    plain, tail = weights["plain"], weights["tail"]
    assert set(plain) == set(tail)
    changed = [key for key in plain if not torch.equal(plain[key], tail[key])]
    assert changed and all(key.startswith("mask_refiner.") for key in changed)
    assert any(key.endswith("running_mean") for key in changed)  # its BatchNorm saw the eval-mode logits
    assert "refiner_tail_loss" not in results["plain"]
    assert results["tail"]["refiner_tail_loss"] > 0 and results["tail"]["train_loss"] == results["plain"]["train_loss"]
