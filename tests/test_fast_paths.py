"""The model's fast paths compute what their plain formulations compute (written out here independently)."""

import pytest
import torch
import torch.nn.functional as F

from modeling_asda.modeling_aligner import ASDASegmentationDecoder
from modeling_asda.modeling_layers import ASDAConvNormAct, upsample2x_conv3x3


@pytest.mark.parametrize("exporting", [False, True])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_upsample2x_conv3x3_equals_upsample_then_conv(layout, exporting, monkeypatch):
    # Under an exporter the output is assembled by stack + reshape instead of in-place writes.
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: exporting)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 5, 7, generator=generator).contiguous(memory_format=layout).requires_grad_()
    weight = torch.randn(4, 6, 3, 3, generator=generator, requires_grad=True)
    bias = torch.randn(4, generator=generator)

    fast = upsample2x_conv3x3(x, weight, bias)
    upsampled = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # nearest 2x, written out
    plain = F.conv2d(upsampled, weight, bias, padding=1)
    assert fast.shape == (2, 4, 10, 14)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)

    grads = torch.autograd.grad(fast.square().sum(), (x, weight))
    plain_grads = torch.autograd.grad(plain.square().sum(), (x, weight))
    for got, expected in zip(grads, plain_grads):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)


def test_decoder_forward_equals_its_module_stack():
    torch.manual_seed(0)
    decoder = ASDASegmentationDecoder(8, 6, 3).eval()
    for module in decoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(decoder(x), decoder.proj(decoder.stages(x)), rtol=1e-5, atol=1e-5)


def _block_with_statistics(in_channels=6, out_channels=5, kernel_size=3):
    torch.manual_seed(0)
    block = ASDAConvNormAct(in_channels, out_channels, kernel_size)
    norm = block[1]
    norm.running_mean.uniform_(-0.5, 0.5)
    norm.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.3, 0.3)
    return block


def _reference(block, x, use_batch_statistics):
    """conv -> BatchNorm (running or batch statistics) -> LeakyReLU(0.1), written out."""
    conv, norm, _ = block
    y = F.conv2d(x, conv.weight, padding=conv.padding)
    if use_batch_statistics:
        mean, var = y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3), unbiased=False)
    else:
        mean, var = norm.running_mean, norm.running_var
    y = (y - mean[:, None, None]) / torch.sqrt(var[:, None, None] + norm.eps) * norm.weight[:, None, None] + norm.bias[
        :, None, None
    ]
    return torch.where(y > 0, y, 0.1 * y)


def test_conv_norm_act_folds_eval_batchnorm_exactly_and_keeps_gradients():
    block = _block_with_statistics().eval()
    x = torch.randn(2, 6, 7, 7)
    out = block(x)
    torch.testing.assert_close(out, _reference(block, x, use_batch_statistics=False), rtol=1e-5, atol=1e-5)
    out.sum().backward()
    for name, param in block.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_conv_norm_act_in_training_uses_batch_statistics_and_updates_running_stats():
    block = _block_with_statistics().train()
    before = block[1].running_mean.clone()
    x = torch.randn(3, 6, 5, 5)
    expected = _reference(block, x, use_batch_statistics=True)
    torch.testing.assert_close(block(x), expected, rtol=1e-4, atol=1e-5)
    assert not torch.equal(block[1].running_mean, before)
