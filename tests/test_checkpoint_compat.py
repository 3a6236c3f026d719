"""A checkpoint written by an earlier version of the model code still loads, key for key, with the same logits.

tests/fixtures/asda_pre_refactor/ was saved (see tests/fixtures/make_compat_checkpoint.py) before the model code
was reorganised; any renamed or moved parameter would be reported missing and left at its initialisation.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation

FIXTURE = Path(__file__).parent / "fixtures" / "asda_pre_refactor"


def test_old_checkpoint_loads_without_missing_or_unexpected_keys_and_gives_the_same_logits():
    model, info = ASDAForReferringSegmentation.from_pretrained(FIXTURE, output_loading_info=True)
    assert not info["missing_keys"], info["missing_keys"]
    assert not info["unexpected_keys"], info["unexpected_keys"]
    assert not info["mismatched_keys"], info["mismatched_keys"]
    expected = load_file(FIXTURE / "expected.safetensors")
    with torch.no_grad():
        out = model.eval()(
            expected["pixel_values"], expected["input_ids"], expected["attention_mask"], output_feature_maps=True
        )
    # The fixture's numbers were computed on an AVX-512 CPU; an AVX2 one sums in another order (differences up to
    # ~1e-5 measured). A parameter left at its initialisation would move the logits by far more.
    torch.testing.assert_close(out.logits, expected["logits"], rtol=0, atol=1e-4)
    torch.testing.assert_close(out.coefficients, expected["coefficients"], rtol=0, atol=1e-4)
    assert torch.equal(out.low_layer_index, expected["low_layer_index"])
    assert torch.equal(out.mid_layer_index, expected["mid_layer_index"])


def test_every_ablation_keeps_its_state_dict_keys_and_shapes():
    saved = json.loads((FIXTURE / "state_dict_keys.json").read_text())
    base = ASDAConfig.from_pretrained(FIXTURE).to_dict()
    for name, overrides in saved["config_overrides"].items():
        config = ASDAConfig(**{**base, **overrides})
        model = ASDAForReferringSegmentation(config)
        keys = {
            key: list(value.shape)
            for key, value in model.state_dict().items()
            if name == "default" or not key.startswith(("text_model.", "vision_model."))
        }
        assert keys == saved["keys"][name], name
