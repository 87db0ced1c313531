"""Wanda (Sun et al., 2023): score S_ij = |W_ij| * ||X_j||_2, remove the lowest scores in each output row.

``sq_norms`` is the per-input-column sum of squared activations, sum_t x_tj^2, over the calibration tokens; any
positive rescaling of it (e.g. the mean instead of the sum) gives the same mask.
"""
from __future__ import annotations

import torch

from .base import PruneContext, Pruned, Stats
from .sparsity import Sparsity, apply_mask, select


def wanda_scores(weight: torch.Tensor, sq_norms: torch.Tensor) -> torch.Tensor:
    dtype = torch.promote_types(weight.dtype, torch.float32)  # float32, or float64 for float64 inputs
    return weight.detach().abs().to(dtype) * sq_norms.to(dtype).sqrt().reshape(1, -1)


def wanda_mask(weight: torch.Tensor, sq_norms: torch.Tensor, sparsity: Sparsity) -> torch.Tensor:
    if sq_norms.numel() != weight.shape[1]:
        raise ValueError(f"activation norms have {sq_norms.numel()} entries for {weight.shape[1]} input columns")
    sparsity.check_columns(weight.shape[1])
    return select(wanda_scores(weight, sq_norms), sparsity, per_row=True)


def wanda_prune(weight: torch.Tensor, sq_norms: torch.Tensor, sparsity: Sparsity) -> tuple[torch.Tensor, torch.Tensor]:
    """(pruned weight, mask) for a 2-D weight ``[out, in]``."""
    mask = wanda_mask(weight, sq_norms, sparsity)
    return apply_mask(weight, mask), mask


def accumulate_sq_norms(sq_norms: torch.Tensor, x: torch.Tensor) -> None:
    """sq_norms += sum_t x_tj^2 over the tokens (rows) of ``x`` ``[tokens, in]``, in fp32."""
    sq_norms.add_(x.float().square().sum(0))


class Wanda:
    """The engine's method object (``base.Pruner``): one ``sq_norms`` per input, shared by the group's weights."""
    name = "wanda"
    needs_calibration = True

    def new_stats(self, columns: int, ctx: PruneContext) -> Stats:
        return {"sq_norms": torch.zeros(columns, device=ctx.device)}

    def accumulate(self, stats: Stats, x: torch.Tensor, ctx: PruneContext) -> None:
        accumulate_sq_norms(stats["sq_norms"], x)

    def prune_group(self, weights: list[torch.Tensor], stats: Stats | None, ctx: PruneContext) -> Pruned:
        return Pruned([wanda_prune(w, stats["sq_norms"], ctx.sparsity)[0] for w in weights])
