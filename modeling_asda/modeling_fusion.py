# Copyright (c) 2026 The ASDA for Transformers authors. MIT License (see LICENSE in the project repository).
"""Vision-language fusion before the aligner: F_G = F_H ⊙ f_E (eq. 4) and the multi-level aggregators.

`ASDAScaleWiseAggregator` is the SFA as the published code builds it, which produced the paper's numbers. The
paper's text and its eq. 5 describe something else: F_L and F_M *down*-sampled to H/4 and H/2, merged
bottom-up at those scales with 32-channel 1x1 laterals, with no pooling. The code instead builds a ViTDet-style
simple pyramid: the mid layer up-sampled 2x and the low layer 4x with transposed convolutions, a top-down merge
with 1x1 laterals at C channels, a 3x3 convolution, then max-pooling back to the ViT grid (about 45% of the
model's FLOPs at 416). It is the default (`sfa_scales="pyramid"`). `ASDAGridScaleAggregator` (`sfa_scales="grid"`)
is the text's design: the levels at the grid's own scales with 32-channel laterals, a small fraction of the FLOPs.
`ASDAConcatFusion` is the CRIS-style concatenation + projection of the paper's Table 2 rows (b) and (c).
"""

import torch
import torch.nn.functional as F
from torch import nn

from .modeling_layers import ASDAConvNormAct


class ASDASentenceVisualFusion(nn.Module):
    """F_G = φ_v(F_H) ⊙ φ_t(f_E): the top-layer grid gated by the sentence feature (eq. 4).

    The text side uses LayerNorm where the published code has BatchNorm1d: a batch norm over sentence
    vectors fails at batch size 1 and mixes the samples of a batch.
    """

    def __init__(self, vision_dim: int, dim: int):
        super().__init__()
        self.visual = ASDAConvNormAct(vision_dim, dim, 1)
        self.text = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.LeakyReLU(0.1))
        self.out = nn.Sequential(nn.BatchNorm2d(dim), nn.LeakyReLU(0.1))

    def forward(self, grid: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        return self.out(self.visual(grid) * self.text(sentence)[:, :, None, None])


class ASDAScaleWiseAggregator(nn.Module):
    """SFA: (F_G at 1x, F_M at 2x, F_L at 4x) -> top-down merge -> 3x3 conv -> max-pool to the grid."""

    def __init__(self, vision_dim: int, dim: int, hidden_dim: int):
        super().__init__()
        half, quarter = vision_dim // 2, vision_dim // 4
        self.global_stage = nn.Sequential(
            ASDAConvNormAct(dim, hidden_dim, 1), ASDAConvNormAct(hidden_dim, hidden_dim, 3)
        )
        self.mid_stage = nn.Sequential(
            nn.ConvTranspose2d(vision_dim, half, kernel_size=2, stride=2),
            ASDAConvNormAct(half, hidden_dim, 1),
            ASDAConvNormAct(hidden_dim, hidden_dim, 3),
        )
        self.low_stage = nn.Sequential(
            nn.ConvTranspose2d(vision_dim, half, kernel_size=2, stride=2),
            nn.BatchNorm2d(half),
            nn.GELU(),
            nn.ConvTranspose2d(half, quarter, kernel_size=2, stride=2),
            ASDAConvNormAct(quarter, hidden_dim, 1),
            ASDAConvNormAct(hidden_dim, hidden_dim, 3),
        )
        # Φ_lateral of eq. 5, one per level.
        self.global_lateral = ASDAConvNormAct(hidden_dim, hidden_dim, 1)
        self.mid_lateral = ASDAConvNormAct(hidden_dim, hidden_dim, 1)
        self.low_lateral = ASDAConvNormAct(hidden_dim, hidden_dim, 1)
        self.aggregate = ASDAConvNormAct(hidden_dim, dim, 3)  # Φ_agg restores C
        self.pool = nn.MaxPool2d(kernel_size=4, stride=4)

    def forward(self, global_grid: torch.Tensor, mid_grid: torch.Tensor, low_grid: torch.Tensor) -> torch.Tensor:
        merged = self.global_lateral(self.global_stage(global_grid))
        merged = F.interpolate(merged, scale_factor=2.0, mode="nearest") + self.mid_lateral(self.mid_stage(mid_grid))
        merged = F.interpolate(merged, scale_factor=2.0, mode="nearest") + self.low_lateral(self.low_stage(low_grid))
        return self.pool(self.aggregate(merged))


class ASDAGridScaleAggregator(nn.Module):
    """SFA as the paper's text describes it: F_G at the grid (H), F_M pooled to H/2, F_L to H/4.

    1x1 laterals bring each level to `hidden_dim` (32 in the text), a top-down merge (nearest up-sampling,
    sum) ends at the grid, then a 3x3 convolution and a 1x1 one that restores C (Φ_agg). Nothing runs
    above the grid's resolution, which is where the published pyramid spends its FLOPs.
    """

    def __init__(self, vision_dim: int, dim: int, hidden_dim: int):
        super().__init__()
        self.global_lateral = ASDAConvNormAct(dim, hidden_dim, 1)
        self.mid_lateral = ASDAConvNormAct(vision_dim, hidden_dim, 1)
        self.low_lateral = ASDAConvNormAct(vision_dim, hidden_dim, 1)
        self.smooth = ASDAConvNormAct(hidden_dim, hidden_dim, 3)
        self.aggregate = ASDAConvNormAct(hidden_dim, dim, 1)  # Φ_agg restores C

    def forward(self, global_grid: torch.Tensor, mid_grid: torch.Tensor, low_grid: torch.Tensor) -> torch.Tensor:
        # Pool first (the text's down-sampling): the laterals then run on 1/4 and 1/16 of the positions.
        low = self.low_lateral(F.avg_pool2d(low_grid, kernel_size=4, stride=4, ceil_mode=True))
        mid = self.mid_lateral(F.avg_pool2d(mid_grid, kernel_size=2, stride=2, ceil_mode=True))
        merged = F.interpolate(low, size=mid.shape[-2:], mode="nearest") + mid
        merged = F.interpolate(merged, size=global_grid.shape[-2:], mode="nearest")
        merged = merged + self.global_lateral(global_grid)
        return self.aggregate(self.smooth(merged))


class ASDAConcatFusion(nn.Module):
    """CRIS-style fusion: project the low/mid grids, concatenate with F_G, project back to C."""

    def __init__(self, vision_dim: int, dim: int):
        super().__init__()
        self.mid_proj = ASDAConvNormAct(vision_dim, dim, 1)
        self.low_proj = ASDAConvNormAct(vision_dim, dim, 1)
        self.merge = nn.Sequential(ASDAConvNormAct(3 * dim, dim, 1), ASDAConvNormAct(dim, dim, 3))

    def forward(self, global_grid: torch.Tensor, mid_grid: torch.Tensor, low_grid: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat([global_grid, self.mid_proj(mid_grid), self.low_proj(low_grid)], dim=1))


__all__ = ["ASDAConcatFusion", "ASDAScaleWiseAggregator", "ASDASentenceVisualFusion"]
