# Copyright (c) 2026 The ASDA for Transformers authors. MIT License (see LICENSE in the project repository).
"""Adaptive Feature Selection (AFS, paper §3.3 eq. 1-3).

Each expression picks its own low- and mid-level ViT layer: the class token of every candidate layer
is projected to the joint space (Φ_T, shared), multiplied with the sentence feature f_E, and a small
selection network Φ_as turns the concatenated scores into one probability per candidate.
"""

from typing import NamedTuple

import torch
from torch import nn


class ASDASelectionOutput(NamedTuple):
    """The selected low / mid hidden states (B, 1 + HW, D), their 1-based layer numbers and the selectors' softmax."""

    low_features: torch.Tensor
    mid_features: torch.Tensor
    low_layer_index: torch.Tensor
    mid_layer_index: torch.Tensor
    low_selection_probs: torch.Tensor | None = None
    mid_selection_probs: torch.Tensor | None = None


class ASDASelectionNetwork(nn.Module):
    """Φ_as: scores (B, K, C) -> logits (B, K). The three variants of the paper's Table 5 and the published one."""

    def __init__(self, kind: str, num_candidates: int, dim: int, hidden_dim: int):
        super().__init__()
        self.kind = kind
        if kind == "linear":
            # The paper's choice: one linear layer over the concatenated score tokens.
            self.net = nn.Linear(num_candidates * dim, num_candidates)
        elif kind == "mlp":
            self.net = nn.Sequential(
                nn.Linear(num_candidates * dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, num_candidates)
            )
        elif kind == "conv":
            # Convolution along the candidate axis: neighbouring layers are compared with each other.
            self.net = nn.Sequential(
                nn.Conv1d(dim, hidden_dim, kernel_size=3, padding=1),
                nn.GELU(),
                nn.Conv1d(hidden_dim, 1, kernel_size=1),
            )
        elif kind == "shared_linear":
            # The published code: one C -> 1 linear scores each candidate on its own.
            self.net = nn.Linear(dim, 1)
        else:
            raise ValueError(f"Unknown selector {kind!r}; expected linear, mlp, conv or shared_linear.")

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        if self.kind == "conv":
            return self.net(scores.transpose(1, 2)).squeeze(1)
        if self.kind == "shared_linear":
            return self.net(scores).squeeze(-1)
        return self.net(scores.flatten(1))


class ASDAAdaptiveFeatureSelection(nn.Module):
    """Selects one low- and one mid-level layer per sample.

    `selection` decides how the argmax is differentiated:
      - "hard": argmax only (published code). Φ_T and Φ_as get no gradient and stay at their init.
      - "straight_through": the forward pass uses exactly the argmax layer; the backward pass uses the
        softmax gradient, so the selector learns which layer lowers the mask loss.
      - "soft": a probability-weighted mix of the candidate layers (forward and backward).

    `exploration_noise` (set by the training loop, 0 otherwise) adds Gumbel noise of that scale to the
    selection logits in training mode, so the argmax (and its straight-through gradient) also visits
    candidates the selector does not yet prefer; the returned probabilities are those that were used.
    """

    def __init__(self, config):
        super().__init__()
        vision_dim = config.vision_config.hidden_size
        dim = config.projection_dim
        self.selection = config.selection
        # Plain tuples, not buffers: non-persistent buffers are not restored by from_pretrained.
        self.low_layers = tuple(config.low_candidate_layers)
        self.mid_layers = tuple(config.mid_candidate_layers)
        same_layer = config.selection_text_feature == "same_layer"
        if same_layer:  # scored against the text encoder's own width, Φ_T without bias (published code)
            dim = config.text_config.hidden_size
        self.class_token_proj = nn.Linear(vision_dim, dim, bias=not same_layer)  # Φ_T, shared by both sets
        self.low_selector = ASDASelectionNetwork(
            config.selector, len(config.low_candidate_layers), dim, config.selector_hidden_dim
        )
        self.mid_selector = ASDASelectionNetwork(
            config.selector, len(config.mid_candidate_layers), dim, config.selector_hidden_dim
        )
        self.exploration_noise = 0.0

    def _select(self, selector: ASDASelectionNetwork, candidates: torch.Tensor, text: torch.Tensor):
        # candidates: (B, K, 1 + HW, D) hidden states of the candidate layers; text: f_E (B, C), or the EOT
        # feature of each candidate's own text layer (B, K, C)
        if text.dim() == 2:
            text = text.unsqueeze(1)
        scores = text * self.class_token_proj(candidates[:, :, 0])  # eq. 1: (B, K, C)
        logits = selector(scores).float()
        if self.training and self.exploration_noise > 0:
            uniform = torch.rand_like(logits).clamp_(1e-9, 1 - 1e-9)
            logits = logits - self.exploration_noise * torch.log(-torch.log(uniform))
        probs = logits.softmax(dim=-1).to(candidates.dtype)
        index = probs.argmax(dim=-1)
        if self.selection == "soft":
            selected = torch.einsum("bk,bknd->bnd", probs, candidates)
        else:
            selected = candidates[torch.arange(candidates.shape[0], device=candidates.device), index]
            if self.selection == "straight_through" and probs.requires_grad:
                # Adds exactly zero to the forward value but carries d(loss)/d(probs) to the selector
                # (skipped when nothing is differentiated: it would cost a pass over all candidates).
                selected = selected + torch.einsum("bk,bknd->bnd", probs - probs.detach(), candidates)
        return selected, index, probs

    def forward(self, low_candidates, mid_candidates, sentence, low_text=None, mid_text=None):
        """`low_text` / `mid_text` (B, K, C): per-candidate text features (same-layer scoring); else f_E for all."""
        low, low_index, low_probs = self._select(
            self.low_selector, low_candidates, sentence if low_text is None else low_text
        )
        mid, mid_index, mid_probs = self._select(
            self.mid_selector, mid_candidates, sentence if mid_text is None else mid_text
        )
        return ASDASelectionOutput(
            low_features=low,
            mid_features=mid,
            low_layer_index=torch.tensor(self.low_layers, device=low_index.device)[low_index],
            mid_layer_index=torch.tensor(self.mid_layers, device=mid_index.device)[mid_index],
            low_selection_probs=low_probs,
            mid_selection_probs=mid_probs,
        )


__all__ = ["ASDAAdaptiveFeatureSelection", "ASDASelectionNetwork", "ASDASelectionOutput"]
