# Copyright (c) 2026 The ASDA for Transformers authors. MIT License (see LICENSE in the project repository).
"""Building blocks shared by the ASDA heads: conv block, attention, feed-forward, sine positions, fused upsampling."""

import math

import torch
import torch.nn.functional as F
from torch import nn


class ASDAConvNormAct(nn.Sequential):
    """Conv (no bias) + BatchNorm + LeakyReLU(0.1), the published code's basic block.

    With the BatchNorm in eval mode its affine map is folded into the convolution's weight and bias (one pass
    over the output instead of three), and the activation always runs in place. Same result up to rounding;
    gradients still reach the conv and BatchNorm parameters.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                padding=dilation * (kernel_size // 2),
                dilation=dilation,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.1),
        )

    def forward(self, x: torch.Tensor, conv_fn=None) -> torch.Tensor:
        """`conv_fn(x, weight, bias)` replaces the plain convolution (the decoder's fused upsample + conv)."""
        conv, norm, activation = self
        conv_fn = conv_fn or conv._conv_forward
        if norm.training or norm.running_var is None:
            out = norm(conv_fn(x, conv.weight, conv.bias))
        else:
            scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
            bias = norm.bias - norm.running_mean * scale
            if conv.bias is not None:
                bias = bias + conv.bias * scale
            out = conv_fn(x, conv.weight * scale[:, None, None, None], bias)
        # In place is safe: neither the conv's nor the BatchNorm's backward reads this output.
        return F.leaky_relu_(out, activation.negative_slope)


class ASDAAttention(nn.Module):
    """Multi-head attention on `F.scaled_dot_product_attention` (flash / memory-efficient kernels when available)."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def forward(self, query, key, value, key_padding_mask=None):
        q, k, v = self._heads(self.q_proj(query)), self._heads(self.k_proj(key)), self._heads(self.v_proj(value))
        mask = None if key_padding_mask is None else key_padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class ASDAFeedForward(nn.Sequential):
    """Linear -> ReLU -> dropout -> linear, the MLP of the aligner's attention layers."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float):
        super().__init__(nn.Linear(dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, dim))


def sine_position_encoding(
    height: int, width: int, dim: int, temperature: float = 10000.0, normalize: bool = True
) -> torch.Tensor:
    """2-D sine encoding: (height * width, dim); half the channels encode y, half x.

    `normalize=True` is DETR's (coordinates scaled to (0, 2π]); `normalize=False` uses the integer grid
    coordinates 0..n-1 (MAE's ViT position table), whose fast channels separate neighbouring tokens.
    """
    if dim % 4 != 0:
        raise ValueError(f"the 2-D sine position encoding needs a width divisible by 4, got {dim}")
    quarter = dim // 4
    freqs = temperature ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    if normalize:
        y = torch.arange(1, height + 1, dtype=torch.float64) / height * 2 * math.pi
        x = torch.arange(1, width + 1, dtype=torch.float64) / width * 2 * math.pi
    else:
        y = torch.arange(height, dtype=torch.float64)
        x = torch.arange(width, dtype=torch.float64)
    pos_y = torch.cat([(y[:, None] / freqs).sin(), (y[:, None] / freqs).cos()], dim=-1)  # (H, dim/2)
    pos_x = torch.cat([(x[:, None] / freqs).sin(), (x[:, None] / freqs).cos()], dim=-1)  # (W, dim/2)
    grid = torch.cat([pos_y[:, None, :].expand(-1, width, -1), pos_x[None, :, :].expand(height, -1, -1)], dim=-1)
    return grid.reshape(height * width, dim).float()


class ASDAPositionMixin(nn.Module):
    """Base of the aligners: holds the sine table of the configured grid, computes other sizes on the fly.

    The table is a non-persistent buffer (not in checkpoints): `ASDAPreTrainedModel._init_weights` refills it
    with `reset_position`, because from_pretrained leaves such buffers uninitialised.
    """

    def __init__(self, config):
        super().__init__()
        self.grid_size = config.grid_size
        self.normalize_positions = config.normalize_local_positions
        table = sine_position_encoding(
            self.grid_size, self.grid_size, config.projection_dim, normalize=self.normalize_positions
        )
        self.register_buffer("position", table, persistent=False)

    @torch.no_grad()
    def reset_position(self):
        table = sine_position_encoding(
            self.grid_size, self.grid_size, self.position.shape[-1], normalize=self.normalize_positions
        )
        self.position.copy_(table.to(self.position.device))

    def position_for(self, height: int, width: int, tokens: torch.Tensor) -> torch.Tensor:
        position = self.position
        if position.shape[0] != height * width:  # another input size: computed on the fly, not cached
            position = sine_position_encoding(height, width, tokens.shape[-1], normalize=self.normalize_positions).to(
                tokens.device
            )
        return position.to(tokens.dtype)


def grid_to_tokens(feature_map: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H * W, C)."""
    return feature_map.flatten(2).transpose(1, 2)


def tokens_to_grid(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H * W, C) -> (B, C, H, W)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], height, width)


def _fold_taps(weight: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The 3 taps of a kernel along `dim` -> the 2 taps seen by even and by odd outputs after a nearest 2x upsampling."""
    first, middle, last = weight.unbind(dim)
    return torch.stack([first, middle + last], dim), torch.stack([first + middle, last], dim)


def upsample2x_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`conv2d(interpolate(x, scale_factor=2, mode="nearest"), weight, bias, padding=1)` without the upsampled map.

    Output row 2i sees input rows (i-1, i) with taps (w0, w1 + w2); row 2i + 1 sees (i, i+1) with (w0 + w1, w2);
    columns likewise. Each of the 4 output parities is therefore a 2x2 convolution of the small map: 16 instead of
    36 multiply-adds per output, and no 4x larger intermediate. The same sums up to floating-point rounding.
    """
    batch, _, height, width = x.shape
    padded = F.pad(x, (1, 1, 1, 1))
    row_taps = _fold_taps(weight, 2)

    def phases():  # (a, b, output rows 2i + a and columns 2j + b), one at a time
        for a in (0, 1):
            column_taps = _fold_taps(row_taps[a], 3)
            for b in (0, 1):
                yield a, b, F.conv2d(padded[:, :, a : a + height + 1, b : b + width + 1], column_taps[b], bias)

    if torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting():
        # Exporters turn the in-place interleave below into ScatterElements, which took 41% of ONNX Runtime's
        # time on vit_b16; stack + reshape exports as plain copies.
        even_b, odd_b = [], []
        for _, b, phase in phases():
            (odd_b if b else even_b).append(phase)
        rows = [torch.stack(pair, dim=-1).flatten(-2) for pair in zip(even_b, odd_b)]  # (B, C, H, 2W) per a
        out = torch.stack(rows, dim=-2)  # (B, C, H, 2, 2W): row 2i + a
        return out.reshape(batch, out.shape[1], 2 * height, 2 * width)
    out = None
    for a, b, phase in phases():
        if out is None:
            channels_last = phase.is_contiguous(memory_format=torch.channels_last) and not phase.is_contiguous()
            layout = torch.channels_last if channels_last else torch.contiguous_format
            shape = (batch, phase.shape[1], 2 * height, 2 * width)
            out = torch.empty(shape, dtype=phase.dtype, device=phase.device, memory_format=layout)
        # Interleave in place: one write of the output instead of stack + permute copies.
        if out.is_contiguous():
            out.view(batch, -1, height, 2, width, 2)[:, :, :, a, :, b] = phase
        else:
            out.permute(0, 2, 3, 1).view(batch, height, 2, width, 2, -1)[:, :, a, :, b] = phase.permute(0, 2, 3, 1)
    return out


__all__ = [
    "ASDAAttention",
    "ASDAConvNormAct",
    "ASDAFeedForward",
    "ASDAPositionMixin",
    "grid_to_tokens",
    "sine_position_encoding",
    "tokens_to_grid",
    "upsample2x_conv3x3",
]
