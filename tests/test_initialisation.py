"""The heads start in their working range at both presets and for every variant.

Checkpoints saved before this initialisation load with identical logits: tests/test_checkpoint_compat.py.

Working range, measured in training mode on random images and expressions (batch 2): mask logits std <= 3 with
< 5% of pixels beyond |5|; < 10% of the coefficients beyond |tanh| 0.96; the selection softmax not collapsed
(mean max probability < 0.9, mean normalised entropy > 0.5). vit_b16 runs at a small input: the flatten head's
fan-in is then smaller than at 416, but the initialisation scales by fan-in, so the figures do not depend on the
grid (docs/experiments.md has both sizes); the detection default (kaiming fan_out) fails the same checks there.
"""

import pytest
import torch

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation
from modeling_asda.tools.inspection import VARIANTS, apply_fan_out_init, head_figures, random_inputs

FAST_VIT_VARIANTS = ("default", "aligner=single", "aligner=none", "coefficient_pooling=mean", "selector=conv")


def problems(figures: dict) -> list[str]:
    found = []
    if not figures["logit_std"] <= 3:
        found.append(f"logit std {figures['logit_std']:.2f} > 3")
    if not figures["logit_beyond_5"] < 0.05:
        found.append(f"{figures['logit_beyond_5']:.1%} of logits beyond |5|")
    if figures.get("coef_saturated") is not None and not figures["coef_saturated"] < 0.10:
        found.append(f"{figures['coef_saturated']:.1%} of coefficients beyond |tanh| 0.96")
    for level in ("low", "mid"):
        if figures.get(f"{level}_max_prob") is not None:
            if not (figures[f"{level}_max_prob"] < 0.9 and figures[f"{level}_entropy"] > 0.5):
                found.append(f"{level} selection collapsed: {figures[f'{level}_max_prob']:.2f} max probability")
    return found


def figures_of(preset: str, variant: str, init: str = "default", seed: int = 0, **overrides) -> dict:
    torch.manual_seed(seed)
    switches = dict(VARIANTS[variant])
    if preset == "tiny" and switches.get("selection_text_feature") == "same_layer":
        # The tiny text encoder has 3 layers: same-layer scoring needs candidates among them.
        switches.update(low_candidate_layers=(1, 2), mid_candidate_layers=(2, 3))
    config = getattr(ASDAConfig, preset)(**{**overrides, **switches})
    model = ASDAForReferringSegmentation(config)
    if init == "fan_out":
        apply_fan_out_init(model)
    return head_figures(model, random_inputs(config, 2, seed))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_tiny_preset_starts_in_working_range(variant):
    assert problems(figures_of("tiny", variant)) == []


@pytest.mark.parametrize("variant", FAST_VIT_VARIANTS)
def test_vit_b16_starts_in_working_range(variant):
    assert problems(figures_of("vit_b16", variant, image_size=160)) == []


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(set(VARIANTS) - set(FAST_VIT_VARIANTS)))
def test_vit_b16_other_variants_start_in_working_range(variant):
    assert problems(figures_of("vit_b16", variant, image_size=160)) == []


def test_the_checks_catch_the_fan_out_initialisation_at_paper_width():
    found = problems(figures_of("vit_b16", "default", init="fan_out", image_size=160))
    assert any("coefficients" in problem for problem in found) and any("logit" in problem for problem in found)
