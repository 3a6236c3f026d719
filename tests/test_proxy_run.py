"""The paper-width proxy run (scripts/proxy_run.py) on a few steps: its logs, and the two initialisations it compares."""

import json

import pytest
from asda_checkpoint import script_main

from modeling_asda.training.proxy import proxy_config


def test_proxy_config_keeps_the_paper_width_heads():
    config = proxy_config(image_size=64, vision_layers=4)
    assert (config.projection_dim, config.sfa_hidden_dim, config.decoder_hidden_dim) == (512, 512, 256)
    assert config.num_response_masks == 32 and config.coefficient_pooling == "flatten"
    assert config.vision_config.hidden_size == 768 and config.vision_config.num_hidden_layers == 4
    assert config.low_candidate_layers == (1, 2) and config.mid_candidate_layers == (3, 4)


@pytest.mark.slow  # two runs with 512-wide heads: minutes on a shared 2-core machine
def test_proxy_run_logs_and_separates_the_initialisations(tmp_path):
    results = {}
    for init in ("default", "fan_out"):
        out = tmp_path / f"{init}.json"
        script_main("proxy_run")(
            ["--init", init, "--steps", "2", "--log_every", "1", "--num_train", "4", "--num_eval", "2",
             "--image_size", "64", "--vision_layers", "4", "--output", str(out)]
        )  # fmt: skip
        results[init] = json.loads(out.read_text())
    for result in results.values():
        assert [entry["step"] for entry in result["history"]] == [1, 2]
        first = result["history"][0]
        assert sum(first["low_shares"].values()) == pytest.approx(1.0) and 0 <= first["low_entropy"] <= 1
        assert 0 <= result["val_mIoU_logit_frame"] <= 1
    # The first step's forward is at initialisation: fan_out starts with saturated coefficients, ours does not.
    assert results["default"]["history"][0]["coef_saturated"] < 0.1
    assert (
        results["fan_out"]["history"][0]["coef_pre_tanh_std"]
        > 3 * results["default"]["history"][0]["coef_pre_tanh_std"]
    )
