"""scripts/inspect_model.py and its module: figures and per-module rows against independent computations."""

import json

import pytest
import torch
from asda_checkpoint import script_main

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation
from modeling_asda.tools.inspection import head_figures, module_statistics, random_inputs, selection_summary


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = ASDAForReferringSegmentation(ASDAConfig.tiny(hidden_dropout=0.0))
    return model, random_inputs(model.config, batch=3, seed=1)


def test_head_figures_match_the_model_outputs(tiny):
    model, inputs = tiny
    figures = head_figures(model, inputs)
    assert not model.training or figures  # the model's mode is restored (built in train mode)
    model.train()
    with torch.no_grad():
        out = model(**inputs, output_feature_maps=True)
    logits, coefficients = out.logits.float(), out.coefficients.float()
    assert figures["logit_std"] == pytest.approx(float(logits.std()), rel=1e-5)
    assert figures["logit_beyond_5"] == pytest.approx(float((logits.abs() > 5).float().mean()))
    assert figures["coef_saturated"] == pytest.approx(float((coefficients.abs() > 0.96).float().mean()))
    # The hooked pre-tanh values are what the tanh was applied to: compare where tanh is invertible.
    assert coefficients.abs().max() < 0.99
    assert figures["coef_pre_tanh_std"] == pytest.approx(float(torch.atanh(coefficients).std()), rel=1e-3)
    probs = out.low_selection_probs.float()
    uniform_entropy = torch.log(torch.tensor(3.0))
    entropy = -(probs * probs.log()).sum(-1) / uniform_entropy
    assert figures["low_entropy"] == pytest.approx(float(entropy.mean()), rel=1e-5)
    assert figures["low_max_prob"] == pytest.approx(float(probs.max(-1).values.mean()), rel=1e-5)


def test_selection_summary_counts_choices():
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2], [1.0, 0.0, 0.0]])
    summary = selection_summary(probs, (4, 5, 6))
    assert summary["shares"] == {"L4": 0.75, "L5": 0.0, "L6": 0.25}
    assert summary["max_prob"] == pytest.approx((0.5 + 0.8 + 0.6 + 1.0) / 4)


def test_module_rows_hold_the_gradient_norms_of_one_backward(tiny):
    model, inputs = tiny
    rows = {row["module"]: row for row in module_statistics(model, inputs)}
    # Independent: the same backward, norms read straight from the parameters.
    model.zero_grad(set_to_none=True)
    model.train()
    model(**inputs).loss.backward()
    for name in ("aligner.decoder.proj", "aligner.coefficients", "feature_selection.low_selector", "fusion.text"):
        module = model.get_submodule(name)
        expected = torch.sqrt(sum((p.grad**2).sum() for p in module.parameters()))
        assert rows[name]["grad_norm"] == pytest.approx(float(expected), rel=1e-4), name
        assert rows[name]["params"] == sum(p.numel() for p in module.parameters())
    # Output statistics come from a forward hook on the module.
    proj = rows["aligner.decoder.proj"]
    assert proj["out_std"] > 0 and 0 <= proj["saturated"] <= 1
    assert "vision_model.encoder" not in rows  # the encoders' internals are left out by default


def test_script_prints_and_writes_json(tmp_path, capsys):
    out = tmp_path / "stats.json"
    figures = script_main("inspect_model")(
        ["--preset", "tiny", "--config_overrides", "aligner=single,image_size=64", "--json", str(out)]
    )
    printed = capsys.readouterr().out
    assert "logit_std" in printed and "| aligner.decoder.proj | Conv2d |" in printed
    saved = json.loads(out.read_text())
    assert saved["figures"]["logit_std"] == pytest.approx(figures["logit_std"])
    assert "coef_saturated" not in saved["figures"]  # the single-branch aligner has no coefficients
    assert any(row["module"] == "aligner.word_attention" for row in saved["modules"])
