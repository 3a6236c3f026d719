"""sfa_scales="grid": the paper text's aggregator as a config option next to the published pyramid."""

import pytest
import torch

from modeling_asda import ASDAConfig, ASDAForReferringSegmentation
from modeling_asda.benchmark.measure import asda_inputs, count_flops
from modeling_asda.modeling_fusion import ASDAGridScaleAggregator, ASDAScaleWiseAggregator


def test_grid_aggregator_keeps_the_grid_and_is_far_cheaper():
    torch.manual_seed(0)
    pyramid, grid = ASDAScaleWiseAggregator(96, 64, 64).eval(), ASDAGridScaleAggregator(96, 64, 32).eval()
    # A grid that does not divide by 4 (26 at 416 / 16): ceil-mode pooling keeps 13 and 7 cells.
    inputs = (torch.randn(2, 64, 26, 26), torch.randn(2, 96, 26, 26), torch.randn(2, 96, 26, 26))
    with torch.no_grad():
        assert grid(*inputs).shape == pyramid(*inputs).shape == (2, 64, 26, 26)
        # 1x1 convs: C*32 + 2 * 96*32 (+ the 3x3 32x32 and the 32->C 1x1) multiply-adds per position, far
        # below the pyramid's 3x3 convolutions at 4x the grid.
        assert count_flops(lambda: grid(*inputs)) * 50 < count_flops(lambda: pyramid(*inputs))


def test_each_level_reaches_the_output_and_gets_gradients():
    torch.manual_seed(0)
    grid = ASDAGridScaleAggregator(96, 64, 32).train()
    inputs = [torch.randn(2, c, 8, 8, requires_grad=True) for c in (64, 96, 96)]
    grid(*inputs).square().mean().backward()
    for tensor in inputs:
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    assert all(p.grad is not None for p in grid.parameters() if p.requires_grad)


def test_config_option_builds_the_grid_aggregator_and_round_trips(tmp_path):
    config = ASDAConfig.tiny(sfa_scales="grid")
    assert config.sfa_hidden_dim == 32 and ASDAConfig.tiny().sfa_hidden_dim == config.projection_dim
    model = ASDAForReferringSegmentation(config).eval()
    assert isinstance(model.aggregator, ASDAGridScaleAggregator)
    with torch.no_grad():
        logits = model(**asda_inputs(config, 2)).logits
    assert logits.shape == (2, 1, config.mask_size, config.mask_size)
    model.save_pretrained(tmp_path)
    loaded = ASDAForReferringSegmentation.from_pretrained(tmp_path).eval()
    assert loaded.config.sfa_scales == "grid"
    with torch.no_grad():
        assert torch.allclose(loaded(**asda_inputs(config, 2)).logits, logits)
    with pytest.raises(ValueError, match="sfa_scales"):
        ASDAConfig.tiny(sfa_scales="pyramids")
