"""What to prune: a target (unstructured fraction or N:M pattern) and the mask selections shared by the pruners.

Convention (as in the SparseGPT and Wanda code): a mask is ``True`` where a weight is *removed*. N:M means N of
every M consecutive weights along the input dimension are removed (2:4 keeps 2 of 4). Selections break ties by
position, so the same scores always give the same mask.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class Sparsity:
    fraction: float
    n: int = 0
    m: int = 0

    @property
    def is_nm(self) -> bool:
        return self.m > 0

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" if self.is_nm else f"{self.fraction:g}"

    @classmethod
    def unstructured(cls, fraction: float) -> Sparsity:
        try:
            f = float(fraction)
        except (TypeError, ValueError):
            raise ConfigError(f"sparsity must be a number in [0, 1), got {fraction!r}") from None
        if not (0.0 <= f < 1.0) or math.isnan(f):
            raise ConfigError(f"sparsity must be in [0, 1), got {fraction!r}")
        return cls(f)

    @classmethod
    def nm(cls, n: int, m: int) -> Sparsity:
        if not (isinstance(n, int) and isinstance(m, int)) or not (0 < n < m):
            raise ConfigError(f"invalid N:M pattern {n}:{m}: need integers 0 < N < M (e.g. 2:4, 4:8, 8:16)")
        return cls(n / m, n, m)

    @classmethod
    def parse(cls, text) -> Sparsity:
        """``0.5``, ``50%`` or ``2:4``."""
        if isinstance(text, Sparsity):
            return text
        if isinstance(text, (int, float)):
            return cls.unstructured(text)
        s = str(text).strip()
        if ":" in s:
            a, _, b = s.partition(":")
            try:
                return cls.nm(int(a), int(b))
            except ValueError as e:
                raise ConfigError(f"invalid N:M pattern {text!r}: {e}") from None
        if s.endswith("%"):
            try:
                return cls.unstructured(float(s[:-1]) / 100)
            except ValueError:
                raise ConfigError(f"sparsity must be in [0, 1) or 0-100%, got {text!r}") from None
        return cls.unstructured(s)

    def check_columns(self, columns: int, what: str = "matrix") -> None:
        if self.is_nm and columns % self.m:
            raise ConfigError(f"{what}: {columns} input columns are not a multiple of M={self.m} for {self}")


def _lowest(score: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` lowest entries along the last dim; among equal scores the first positions go.
    (Long rows: the k-th value and a running count of ties, linear time where a full sort is n log n.)"""
    size = score.shape[-1]
    if k <= 0:
        return torch.zeros_like(score, dtype=torch.bool)
    if k >= size:
        return torch.ones_like(score, dtype=torch.bool)
    if size <= 8:  # 2:4 / 4:8 groups: rank = number of smaller entries + equal ones placed earlier
        rank = torch.zeros_like(score, dtype=torch.int8)
        for i in range(size):
            col = score[..., i:i + 1]
            rank += col < score
            rank[..., i + 1:] += col == score[..., i + 1:]
        return rank < k
    if size <= 64:
        return torch.zeros_like(score, dtype=torch.bool).scatter_(
            -1, torch.sort(score, dim=-1, stable=True).indices[..., :k], True)
    if score.device.type == "cpu":  # numpy's introselect is ~10x faster than torch.kthvalue on CPU
        t = torch.from_numpy(np.partition(score.detach().numpy(), k - 1, axis=-1)[..., k - 1:k])
    else:
        t = score.kthvalue(k, dim=-1, keepdim=True).values
    below = score < t
    tie = score == t
    need = k - below.sum(-1, keepdim=True)
    return below | (tie & (tie.cumsum(-1) <= need))


def row_mask(score: torch.Tensor, fraction: float) -> torch.Tensor:
    """Remove ``floor(fraction * columns)`` lowest-scoring weights in every row (Wanda's comparison group)."""
    return _lowest(score, int(fraction * score.shape[-1]))


def matrix_mask(score: torch.Tensor, fraction: float) -> torch.Tensor:
    """Remove ``floor(fraction * numel)`` lowest-scoring weights of the whole matrix (magnitude pruning)."""
    return _lowest(score.reshape(-1), int(fraction * score.numel())).view_as(score)


def nm_mask(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Remove the ``n`` lowest-scoring weights of every group of ``m`` consecutive input columns."""
    rows, cols = score.shape
    if cols % m:
        raise ConfigError(f"{cols} columns are not a multiple of M={m}")
    return _lowest(score.reshape(rows, cols // m, m), n).view(rows, cols)


def select(score: torch.Tensor, sparsity: Sparsity, per_row: bool) -> torch.Tensor:
    if sparsity.is_nm:
        return nm_mask(score, sparsity.n, sparsity.m)
    return row_mask(score, sparsity.fraction) if per_row else matrix_mask(score, sparsity.fraction)


def apply_mask(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return weight.masked_fill(mask, 0)
