"""Magnitude pruning: remove the smallest |W_ij|; calibration data is not used.

Unstructured: one comparison group per matrix (as the Wanda repository's magnitude baseline); N:M: per group.
"""
from __future__ import annotations

import torch

from .base import PruneContext, Pruned, Stats
from .sparsity import Sparsity, apply_mask, select


def magnitude_mask(weight: torch.Tensor, sparsity: Sparsity) -> torch.Tensor:
    sparsity.check_columns(weight.shape[1])
    return select(weight.detach().abs().float(), sparsity, per_row=False)


def magnitude_prune(weight: torch.Tensor, sparsity: Sparsity) -> tuple[torch.Tensor, torch.Tensor]:
    """(pruned weight, mask) for a 2-D weight ``[out, in]``."""
    mask = magnitude_mask(weight, sparsity)
    return apply_mask(weight, mask), mask


class Magnitude:
    """The engine's method object (``base.Pruner``): no statistics, each weight on its own."""
    name = "magnitude"
    needs_calibration = False

    def new_stats(self, columns: int, ctx: PruneContext) -> Stats:
        return {}

    def accumulate(self, stats: Stats, x: torch.Tensor, ctx: PruneContext) -> None:
        pass

    def prune_group(self, weights: list[torch.Tensor], stats: Stats | None, ctx: PruneContext) -> Pruned:
        return Pruned([magnitude_prune(w, ctx.sparsity)[0] for w in weights])
