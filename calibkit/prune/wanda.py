"""Wanda (Sun et al., 2023): score S_ij = |W_ij| * ||X_j||_2, remove the lowest scores in each output row.

``sq_norms`` is the per-input-column sum of squared activations, sum_t x_tj^2, over the calibration tokens; any
positive rescaling of it (e.g. the mean instead of the sum) gives the same mask.
"""
from __future__ import annotations

import torch

from .sparsity import Sparsity, apply_mask, select


def wanda_scores(weight: torch.Tensor, sq_norms: torch.Tensor) -> torch.Tensor:
    return weight.detach().abs().float() * sq_norms.float().sqrt().reshape(1, -1)


def wanda_mask(weight: torch.Tensor, sq_norms: torch.Tensor, sparsity: Sparsity) -> torch.Tensor:
    if sq_norms.numel() != weight.shape[1]:
        raise ValueError(f"activation norms have {sq_norms.numel()} entries for {weight.shape[1]} input columns")
    sparsity.check_columns(weight.shape[1])
    return select(wanda_scores(weight, sq_norms), sparsity, per_row=True)


def wanda_prune(weight: torch.Tensor, sq_norms: torch.Tensor, sparsity: Sparsity) -> tuple[torch.Tensor, torch.Tensor]:
    """(pruned weight, mask) for a 2-D weight ``[out, in]``."""
    mask = wanda_mask(weight, sq_norms, sparsity)
    return apply_mask(weight, mask), mask
