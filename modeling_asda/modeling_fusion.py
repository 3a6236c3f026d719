"""Vision-language fusion before the aligner: F_G = F_H ⊙ f_E (eq. 4) and the multi-level aggregators.

`ScaleWiseAggregator` is the SFA of eq. 5. The paper's text says the low/mid features are *down*-sampled
to H/4 and H/2, but its own eq. 5 and the published code build a ViTDet-style simple pyramid: the mid
layer is up-sampled 2x and the low layer 4x with transposed convolutions, merged top-down with 1x1
laterals, passed through a 3x3 convolution and max-pooled back to the ViT grid. We follow eq. 5 + code.
`ConcatFusion` is the CRIS-style concatenation + projection of the paper's Table 2 rows (b) and (c).
"""

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormAct(nn.Sequential):
    """Conv (no bias) + BatchNorm + LeakyReLU(0.1), the published code's basic block.

    With the BatchNorm in eval mode its affine map is folded into the convolution's weight and bias (one pass
    over the output instead of three), and the activation always runs in place. Same result up to rounding;
    gradients still reach the conv and BatchNorm parameters.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
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


class SentenceVisualFusion(nn.Module):
    """F_G = φ_v(F_H) ⊙ φ_t(f_E): the top-layer grid gated by the sentence feature (eq. 4).

    The text side uses LayerNorm where the published code has BatchNorm1d: a batch norm over sentence
    vectors fails at batch size 1 and mixes the samples of a batch.
    """

    def __init__(self, vision_dim: int, dim: int):
        super().__init__()
        self.visual = ConvNormAct(vision_dim, dim, 1)
        self.text = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.LeakyReLU(0.1))
        self.out = nn.Sequential(nn.BatchNorm2d(dim), nn.LeakyReLU(0.1))

    def forward(self, grid: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        return self.out(self.visual(grid) * self.text(sentence)[:, :, None, None])


class ScaleWiseAggregator(nn.Module):
    """SFA: (F_G at 1x, F_M at 2x, F_L at 4x) -> top-down merge -> 3x3 conv -> max-pool to the grid."""

    def __init__(self, vision_dim: int, dim: int, hidden_dim: int):
        super().__init__()
        half, quarter = vision_dim // 2, vision_dim // 4
        self.global_stage = nn.Sequential(ConvNormAct(dim, hidden_dim, 1), ConvNormAct(hidden_dim, hidden_dim, 3))
        self.mid_stage = nn.Sequential(
            nn.ConvTranspose2d(vision_dim, half, kernel_size=2, stride=2),
            ConvNormAct(half, hidden_dim, 1),
            ConvNormAct(hidden_dim, hidden_dim, 3),
        )
        self.low_stage = nn.Sequential(
            nn.ConvTranspose2d(vision_dim, half, kernel_size=2, stride=2),
            nn.BatchNorm2d(half),
            nn.GELU(),
            nn.ConvTranspose2d(half, quarter, kernel_size=2, stride=2),
            ConvNormAct(quarter, hidden_dim, 1),
            ConvNormAct(hidden_dim, hidden_dim, 3),
        )
        # Φ_lateral of eq. 5, one per level.
        self.global_lateral = ConvNormAct(hidden_dim, hidden_dim, 1)
        self.mid_lateral = ConvNormAct(hidden_dim, hidden_dim, 1)
        self.low_lateral = ConvNormAct(hidden_dim, hidden_dim, 1)
        self.aggregate = ConvNormAct(hidden_dim, dim, 3)  # Φ_agg restores C
        self.pool = nn.MaxPool2d(kernel_size=4, stride=4)

    def forward(self, global_grid: torch.Tensor, mid_grid: torch.Tensor, low_grid: torch.Tensor) -> torch.Tensor:
        merged = self.global_lateral(self.global_stage(global_grid))
        merged = F.interpolate(merged, scale_factor=2.0, mode="nearest") + self.mid_lateral(self.mid_stage(mid_grid))
        merged = F.interpolate(merged, scale_factor=2.0, mode="nearest") + self.low_lateral(self.low_stage(low_grid))
        return self.pool(self.aggregate(merged))


class ConcatFusion(nn.Module):
    """CRIS-style fusion: project the low/mid grids, concatenate with F_G, project back to C."""

    def __init__(self, vision_dim: int, dim: int):
        super().__init__()
        self.mid_proj = ConvNormAct(vision_dim, dim, 1)
        self.low_proj = ConvNormAct(vision_dim, dim, 1)
        self.merge = nn.Sequential(ConvNormAct(3 * dim, dim, 1), ConvNormAct(dim, dim, 3))

    def forward(self, global_grid: torch.Tensor, mid_grid: torch.Tensor, low_grid: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat([global_grid, self.mid_proj(mid_grid), self.low_proj(low_grid)], dim=1))
