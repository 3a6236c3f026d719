# Copyright (c) 2026 The ASDA for Transformers authors. MIT License (see LICENSE in the project repository).
"""Mask loss of ASDA: a linear combination of a focal term and a dice term (paper §3.4)."""

import torch
import torch.nn.functional as F


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = -1.0, gamma: float = 0.0):
    """Mean focal loss over all pixels. alpha < 0 disables alpha-balancing; alpha < 0 and gamma = 0 is plain BCE."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if gamma != 0:
        p_t = prob * targets + (1 - prob) * (1 - targets)
        ce = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        ce = ce * (alpha * targets + (1 - alpha) * (1 - targets))
    return ce.mean()


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0):
    """1 - (2|P∩T| + s) / (|P| + |T| + s) per sample on soft predictions, averaged over the batch."""
    prob = logits.sigmoid().flatten(1)
    targets = targets.flatten(1)
    numerator = 2 * (prob * targets).sum(-1) + smooth
    denominator = prob.sum(-1) + targets.sum(-1) + smooth
    return (1 - numerator / denominator).mean()


def lovasz_hinge_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Lovász hinge (Berman et al., CVPR 2018) per sample, averaged over the batch.

    The hinge errors 1 - logit * sign are sorted in decreasing order and weighted by the gains of the Jaccard
    loss as pixels are added in that order; the sum is the Lovász extension of 1 - IoU, a tight convex surrogate.
    """
    logits, targets = logits.flatten(1), targets.flatten(1)
    errors = 1 - logits * (2 * targets - 1)
    errors, order = errors.sort(dim=1, descending=True)
    sorted_targets = targets.gather(1, order)
    positives = sorted_targets.sum(dim=1, keepdim=True)
    intersection = positives - sorted_targets.cumsum(dim=1)
    union = positives + (1 - sorted_targets).cumsum(dim=1)
    jaccard = 1 - intersection / union
    gains = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)
    return (F.relu(errors) * gains).sum(dim=1).mean()


def prepare_labels(labels: torch.Tensor, logits: torch.Tensor, image_size: int) -> torch.Tensor:
    """Check and resize ground-truth masks to the logits' grid (nearest, as in the published code).

    Accepts (B, H, W) or (B, 1, H, W) with H = W = the model's input size or the logits' size, values in [0, 1].
    """
    batch, _, height, width = logits.shape
    if labels.dim() == 3:
        labels = labels.unsqueeze(1)
    if labels.dim() != 4 or labels.shape[1] != 1 or labels.shape[0] != batch:
        raise ValueError(
            f"labels must have shape (batch, H, W) or (batch, 1, H, W) with batch={batch}; got {tuple(labels.shape)}."
        )
    size = tuple(labels.shape[-2:])
    if size not in ((image_size, image_size), (height, width)):
        raise ValueError(
            f"labels have spatial size {size}; expected the letterboxed input size ({image_size}, {image_size}) "
            f"or the logits size ({height}, {width}). Letterbox masks with the processor's image processor."
        )
    labels = labels.to(logits.dtype)
    if labels.numel() and (labels.min() < 0 or labels.max() > 1):
        raise ValueError(
            f"labels must be binary masks with values in [0, 1]; got values in [{labels.min().item()}, "
            f"{labels.max().item()}] (a 0/255 mask must be divided by 255)."
        )
    if size != (height, width):
        labels = F.interpolate(labels, size=(height, width), mode="nearest")
    return labels


def asda_mask_loss(logits: torch.Tensor, labels: torch.Tensor, config) -> torch.Tensor:
    """focal_weight * focal + dice_weight * dice (+ lovasz_weight * Lovász hinge), in float32 for stability
    under autocast."""
    labels = prepare_labels(labels, logits, config.image_size).float()
    logits = logits.float()
    focal = sigmoid_focal_loss(logits, labels, config.focal_alpha, config.focal_gamma)
    dice = dice_loss(logits, labels)
    loss = config.focal_weight * focal + config.dice_weight * dice
    lovasz_weight = getattr(config, "lovasz_weight", 0.0)
    if lovasz_weight:
        loss = loss + lovasz_weight * lovasz_hinge_loss(logits, labels)
    return loss
