"""The model's fast paths compute what their plain formulations compute (written out here independently)."""

import pytest
import torch
import torch.nn.functional as F

from modeling_asda.modeling_aligner import SegmentationDecoder, upsample2x_conv3x3


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_upsample2x_conv3x3_equals_upsample_then_conv(layout):
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
    decoder = SegmentationDecoder(8, 6, 3).eval()
    for module in decoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(decoder(x), decoder.proj(decoder.stages(x)), rtol=1e-5, atol=1e-5)
