# Copyright (c) 2026 The ASDA for Transformers authors. MIT License (see LICENSE in the project repository).
"""The no-target head: does the expression name anything in the image? (generalized RIS, gRefCOCO)

ASDA always paints a mask. With `config.no_target_head`, a small head reads what the aligner already
computed (the word-conditioned grid F_fine, or F_coarse for the decoder-only ablation), the sentence
feature f_E and the mask logits, and returns one logit per sample: the log-odds that the expression has
a target. It is trained with BCE next to the mask loss; at inference a probability below
`config.no_target_threshold` empties the mask (`post_process_masks(..., target_logits=...)`).
"""

import torch
import torch.nn.functional as F
from torch import nn


class ASDANoTargetHead(nn.Module):
    """Mean- and max-pooled grid features + sentence feature + mask-logit statistics -> MLP -> one logit.

    Max pooling keeps "one place matches the words" visible, which a mean over the grid would dilute; the
    mask's maximum and mean probability say how much the decoder is willing to paint. Both are probabilities, not
    logits: a raw logit of -40 would dominate the LayerNorm's statistics and make the head's output the same for
    every expression whose mask is empty, which is where its verdict is needed most.
    """

    def __init__(self, config):
        super().__init__()
        dim = config.projection_dim
        self.norm = nn.LayerNorm(3 * dim + 2)
        self.hidden = nn.Linear(3 * dim + 2, dim)
        self.out = nn.Linear(dim, 1)

    def forward(self, feature_map: torch.Tensor, sentence: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([feature_map.mean(dim=(-2, -1)), feature_map.amax(dim=(-2, -1))], dim=-1)
        mask_logits = mask_logits.flatten(1).float()
        mask_stats = torch.stack([mask_logits.amax(dim=1).sigmoid(), mask_logits.sigmoid().mean(dim=1)], dim=-1)
        features = torch.cat([pooled, sentence, mask_stats.to(pooled.dtype)], dim=-1)
        return self.out(F.gelu(self.hidden(self.norm(features)))).squeeze(-1)


def no_target_loss(target_logits: torch.Tensor, target_labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE of the target logits against 1 (the expression names something) / 0 (it names nothing)."""
    if target_labels.shape != target_logits.shape:
        raise ValueError(
            f"target_labels must have shape (batch,) = {tuple(target_logits.shape)}; got {tuple(target_labels.shape)}."
        )
    return F.binary_cross_entropy_with_logits(target_logits.float(), target_labels.float())


def target_labels_from_masks(labels: torch.Tensor) -> torch.Tensor:
    """1 where a ground-truth mask has a foreground pixel, 0 where it is empty (a no-target expression)."""
    return (labels.flatten(1) > 0).any(dim=1).float()
