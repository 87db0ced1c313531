"""OASIS's soft mask (§4.3), as pure functions of tensors: m = σ(α (S − t) / s), differentiable in the scores S.

Choices the paper leaves open, stated:
- the threshold t is the midpoint between the k-th and (k+1)-th lowest score of the comparison group (k = the
  number the hard mask removes), so that every score not tied at the boundary is strictly on one side and the soft
  mask tends to the hard mask (exactly k removed) as α grows; t stays in the graph (its gradient reaches the two
  scores that define it), as in the paper's m = σ(α(S − Top_k(S)));
- the score differences are divided by ``scale``, the standard deviation of the group's scores (in the graph: the
  mask is a function of p through it too), so α
  is in units of the group's spread and one α schedule serves every pruner (their raw saliencies differ by orders
  of magnitude);
- α is annealed linearly from ``alpha[0]`` to ``alpha[1]`` over the steps (the public release's linear schedule).
"""
from __future__ import annotations

import numpy as np
import torch


def boundary(scores: torch.Tensor, k: int, dim: int = -1) -> torch.Tensor:
    """Midpoint of the k-th and (k+1)-th lowest scores along ``dim`` (keepdim); 0 < k < size."""
    size = scores.shape[dim]
    if not 0 < k < size:
        raise ValueError(f"a soft mask removes between 1 and {size - 1} of {size} scores, not {k}")
    d = dim % scores.ndim
    s = scores.detach()
    if s.device.type == "cpu":  # numpy's introselect: ~10x faster than torch.kthvalue / topk on the CPU
        part = np.argpartition(s.movedim(d, -1).numpy(), (k - 1, k), axis=-1)[..., k - 1:k + 1]
        idx = torch.from_numpy(part).movedim(-1, d)
    else:
        idx = torch.stack([torch.kthvalue(s, j, dim=d).indices for j in (k, k + 1)], d)
    return torch.gather(scores, d, idx).mean(dim=d, keepdim=True)  # in the graph: gradient to the two scores


def spread(scores: torch.Tensor, dim: int | None = -1) -> torch.Tensor:
    """Standard deviation of the scores (per group along ``dim``; over all when None), never 0."""
    sd = scores.std() if dim is None else scores.std(dim=dim, keepdim=True)
    return sd.clamp_min(torch.finfo(scores.dtype).tiny)


def soft_keep(scores: torch.Tensor, threshold: torch.Tensor, alpha: float, scale: torch.Tensor) -> torch.Tensor:
    """σ(α (S − t) / scale): ~1 for scores above the threshold (kept), ~0 below (removed)."""
    return torch.sigmoid(alpha * (scores - threshold) / scale)


def hard_keep(scores: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """The limit of ``soft_keep`` as α → ∞ (away from the threshold): 1 above, 0 below."""
    return (scores > threshold).to(scores.dtype)


def soft_keep_lowest(scores: torch.Tensor, k: int, alpha: float, dim: int | None = -1) -> torch.Tensor:
    """The soft mask that removes (softly) the ``k`` lowest scores along ``dim`` (of all scores when None); all ones
    when ``k`` is 0."""
    if k <= 0:
        return torch.ones_like(scores)
    flat = scores.reshape(-1) if dim is None else scores
    d = -1 if dim is None else dim
    m = soft_keep(flat, boundary(flat, k, d), alpha, spread(flat, d))
    return m.view_as(scores)


def alpha_at(step: int, steps: int, alpha: tuple[float, float]) -> float:
    """Linear anneal from alpha[0] (step 0) to alpha[1] (the last step)."""
    a0, a1 = alpha
    return a0 if steps <= 1 else a0 + (a1 - a0) * step / (steps - 1)
