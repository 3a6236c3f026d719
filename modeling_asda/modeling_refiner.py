# Copyright (c) 2026 The ASDA for Transformers authors. MIT License (see LICENSE in the project repository).
"""Optional mask refiner: logits at the input resolution, sharpened from the image's own pixels.

The decoder draws its masks from the ViT grid (16 pixels a token), so its edges are blobs. The refiner is a small
dilated CNN on the pixels (space-to-depth to the logits' grid) and the decoder's logits, and adds a correction to
the up-sampled logits, sub-pixel shuffled to the input resolution. It reads the decoder's logits *detached*: a
path from the pixels that can lower the mask loss on its own takes the gradient the word-conditioned path needs
to learn which object the words name (measured: trained jointly, such paths drew sharp masks of the wrong
object), so the refiner only ever learns where the edges of the chosen mask are.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .modeling_layers import ASDAConvNormAct


class ASDAMaskRefiner(nn.Module):
    """Pixels + detached decoder logits -> 4 conv blocks (dilations 1, 2, 4, 1) -> a residual on the up-sampled logits."""

    def __init__(self, config):
        super().__init__()
        dim = config.mask_refiner_dim
        self.factor = config.image_size // config.decoder_mask_size
        in_channels = 3 * self.factor**2 + 1
        self.convs = nn.Sequential(
            ASDAConvNormAct(in_channels, dim, 3),
            ASDAConvNormAct(dim, dim, 3, dilation=2),
            ASDAConvNormAct(dim, dim, 3, dilation=4),
            ASDAConvNormAct(dim, dim, 3),
        )
        self.out = nn.Conv2d(dim, self.factor**2, kernel_size=1)

    def forward(self, pixel_values: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) pixels and (B, 1, S/f, S/f) decoder logits -> (B, 1, S, S) refined logits."""
        coarse = logits.detach()
        pixels = F.pixel_unshuffle(pixel_values, self.factor) if self.factor > 1 else pixel_values
        delta = self.out(self.convs(torch.cat([pixels, coarse], dim=1)))
        if self.factor > 1:
            delta = F.pixel_shuffle(delta, self.factor)
            coarse = F.interpolate(coarse, scale_factor=float(self.factor), mode="bilinear", align_corners=False)
        return coarse + delta


__all__ = ["ASDAMaskRefiner"]
