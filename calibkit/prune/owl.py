"""OWL (Yin et al., 2024, "Outlier Weighed Layerwise Sparsity"): a sparsity per decoder layer instead of one for all.

A layer's outlier ratio D_l is the fraction of its Wanda scores |W_ij| * ||X_j|| (all of its Linears together, on the
dense model's activations) above ``m`` times the layer's mean score. Layers with more outliers keep more weights:
the ratios are scaled min-max to [0, 2*lambda] and the layer sparsity is target - (r_l - mean r), so the targets
average the global one (every decoder layer of a LLaMA-style model has the same number of weights, so the model's
sparsity is the target too) and span at most target +- 2*lambda. Defaults from the paper and llm-compressor's
``sparsity_profile="owl"``: m = 5, lambda = 0.08.

``layer_sparsities`` and ``outlier_ratio`` are the math; ``OutlierProbe`` is a ``base.Pruner`` that measures the
ratios during one dense pass of the engine (it returns every weight unchanged); ``engine.prune_model`` runs it first
when ``PruneOptions.owl`` is set.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError
from .base import PruneContext, Pruned, Stats
from .wanda import accumulate_sq_norms, wanda_scores


def outlier_ratio(scores: list[torch.Tensor], m: float) -> float:
    """Fraction of all entries of ``scores`` (one layer's score matrices) above ``m`` x their common mean."""
    total = sum(float(s.sum(dtype=torch.float64)) for s in scores)
    count = sum(s.numel() for s in scores)
    threshold = m * total / count
    return sum(int(torch.count_nonzero(s > threshold)) for s in scores) / count


def layer_sparsities(ratios: list[float], target: float, lam: float) -> list[float]:
    """OWL's per-layer sparsities for outlier ratios ``ratios`` around the global ``target``."""
    r = torch.tensor(ratios, dtype=torch.float64)
    spread = float(r.max() - r.min()) if len(r) else 0.0
    scaled = (r - r.min()) / spread * 2 * lam if spread > 0 else torch.zeros_like(r)
    out = (target - (scaled - scaled.mean())).tolist()
    bad = [f"layer {i}: {s:.3f}" for i, s in enumerate(out) if not 0.0 <= s < 1.0]
    if bad:
        raise ConfigError(f"OWL with lambda {lam:g} around sparsity {target:g} gives layer sparsities outside [0, 1) "
                          f"({', '.join(bad)}): lower --owl-lambda")
    return out


class OutlierProbe:
    """A ``base.Pruner`` that prunes nothing: it keeps each layer's outlier ratio (Wanda statistics per input)."""
    name = "owl-probe"
    needs_calibration = True

    def __init__(self, m: float):
        self.m = m
        self.ratios: list[float] = []
        self._layer, self._scores = None, []

    def new_stats(self, columns: int, ctx: PruneContext) -> Stats:
        return {"sq_norms": torch.zeros(columns, device=ctx.device)}

    def accumulate(self, stats: Stats, x: torch.Tensor, ctx: PruneContext) -> None:
        accumulate_sq_norms(stats["sq_norms"], x)

    def prune_group(self, weights: list[torch.Tensor], stats: Stats | None, ctx: PruneContext) -> Pruned:
        if ctx.layer != self._layer:
            self.finish()
            self._layer = ctx.layer
        self._scores += [wanda_scores(w, stats["sq_norms"]) for w in weights]
        return Pruned(list(weights))

    def finish(self) -> list[float]:
        """Close the last layer seen; the ratios of all layers, in order."""
        if self._scores:
            self.ratios.append(outlier_ratio(self._scores, self.m))
            self._scores = []
        return self.ratios
