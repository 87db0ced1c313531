"""SparseGPT (Frantar & Alistarh, 2023): one-shot OBS pruning with the inverse Hessian of the layer-wise
reconstruction loss, column blocks of ``blocksize`` with lazy updates.

``hessian`` is X^T X accumulated over the calibration tokens (any positive scale: the paper's 2 X^T X / n gives the
same result, since dampening is relative to the mean diagonal). Several weights that read the same input (q/k/v,
gate/up) are solved in one pass over the stacked rows; the mask is still chosen per weight.

Work is done on W^T (columns as contiguous rows) in fp32 whatever the weight dtype. Inside each block of
``blocksize`` columns the rank-1 updates are confined to sub-blocks of 16 columns and the rest of the block gets one
matrix product per sub-block: the same arithmetic as the paper's lazy batch updates, moved from BLAS-2 to BLAS-3.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .base import PruneContext, Pruned, Stats
from .precision import gram, read_as
from .sparsity import Sparsity, _lowest

MAX_DAMP_TRIES = 8
SUBBLOCK = 16  # inner blocking of the lazy updates (speed only; the result is the same)


def accumulate_lower(H: torch.Tensor, x: torch.Tensor, blocks: int = 4, precision: str = "fp32") -> None:
    """H += x^T x on the block lower triangle only (column blocks), ~5/8 of the full product's work; the upper
    blocks of H are left stale. The symmetric matrix is ``hessian_from_lower(H)``. ``precision``: how the GEMMs
    read x (``precision.gram``; float32 accumulation always)."""
    cols = x.shape[1]
    edges = [round(i * cols / blocks) for i in range(blocks + 1)]
    if x.device.type != "cuda" or precision == "fp32":
        x = read_as(x, precision)  # once, not per block
        precision = "fp32" if x.device.type != "cuda" else precision
    for a, b in zip(edges[:-1], edges[1:]):
        if b > a:
            gram(x[:, a:], x[:, a:b], precision, out=H[a:, a:b])


def hessian_from_lower(H: torch.Tensor) -> torch.Tensor:
    """X^T X from its lower triangle accumulated by ``accumulate_lower``."""
    return H.tril() + H.tril(-1).t()


@dataclass
class InverseHessian:
    factor: torch.Tensor  # upper Cholesky factor of (H + damp*mean(diag H)*I)^-1
    damp: float  # dampening fraction actually used
    dead: torch.Tensor  # bool [cols]: inputs that were always zero
    warnings: list[str] = field(default_factory=list)


@dataclass
class SparseGPTResult:
    weight: torch.Tensor
    mask: torch.Tensor  # True where removed (dead input columns included)
    damp: float
    dead_columns: int
    warnings: list[str]


@contextmanager
def _one_thread_on_cpu(device: torch.device):
    """LAPACK's blocked Cholesky and triangular solve split their work by the thread count, and the float64 result
    of an ill-conditioned Hessian differs between thread counts by more than float32's rounding: on the CPU they run
    on one thread, so the factor (and the mask) is the same on a 1-core and a 64-core machine."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def inverse_hessian(hessian: torch.Tensor, percdamp: float = 0.01) -> InverseHessian:
    """Cholesky factor of the dampened inverse Hessian. Dead inputs (zero diagonal) get a unit diagonal; if the
    matrix is still not positive definite the dampening is raised tenfold, with a warning, up to 8 times.

    The factorisation runs in float64, on one CPU thread, and the factor is returned in float32: LAPACK's blocked
    Cholesky and triangular solve give thread-count-dependent results (measured: 0.65 % of a 3-layer model's
    SparseGPT mask entries flipped between 1 and 2 threads in float32; in float64 on SmolLM2-135M the factor still
    differed in float32's last bits, which the sequential updates amplify to ~10 % of the mask over 30 layers), so
    the same inputs give the same mask and weights on any thread count (tests/test_determinism.py). It costs one
    n^3/3 float64 factorisation per group of Linears sharing an input."""
    H = hessian.detach().double().clone()
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"Hessian must be square, got {tuple(H.shape)}")
    if not torch.isfinite(H).all():
        raise FloatingPointError("Hessian has NaN/inf entries (non-finite activations)")
    if percdamp < 0:
        raise ValueError(f"dampening must be >= 0, got {percdamp}")
    diag = torch.diagonal(H)
    dead = diag == 0
    diag[dead] = 1.0
    mean_diag = diag.mean()
    warnings = []
    frac = percdamp
    eye = torch.eye(len(H), dtype=H.dtype, device=H.device)
    for _ in range(MAX_DAMP_TRIES + 1):
        # Upper factor U of H^-1 (U^T U = H^-1) from one Cholesky of the reversed matrix: with J the reversal,
        # J H J = L L^T gives H^-1 = (J L^-1 J)^T (J L^-1 J), and J L^-1 J is upper triangular.
        with _one_thread_on_cpu(H.device):
            L, info = torch.linalg.cholesky_ex((H + frac * mean_diag * eye).flip(0, 1))
            U = torch.linalg.solve_triangular(L, eye, upper=False).flip(0, 1) if info == 0 else None
        if U is not None and torch.isfinite(U).all():
            return InverseHessian(U.float(), frac, dead, warnings)
        nxt = frac * 10 if frac > 0 else 1e-4
        warnings.append(f"Hessian not positive definite with dampening {frac:g}; raised to {nxt:g}")
        frac = nxt
    raise FloatingPointError(f"Hessian could not be factorised even with dampening {frac / 10:g}")


def obs_column_weights(hessian: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    """1 / [U]_jj^2 per input column (U the upper Cholesky factor of the dampened H^-1, as in ``inverse_hessian``;
    0 for dead inputs), differentiable in ``hessian``: SparseGPT's mask-selection score is w^2 times this (OASIS's
    soft SparseGPT; ``obs_saliency``). With J the reversal, J H J = L L^T gives U = J L^-1 J, so
    [U]_jj = 1 / L_(n-1-j)(n-1-j): one Cholesky, no inverse. In the Hessian's dtype; no dampening retries."""
    diag = torch.diagonal(hessian)
    dead = (diag == 0).to(hessian.dtype)
    H = hessian + torch.diag(dead)
    H = H + percdamp * torch.diagonal(H).mean() * torch.eye(len(H), dtype=H.dtype, device=H.device)
    L = torch.linalg.cholesky(H.flip(0, 1))
    return torch.diagonal(L).flip(0).square() * (1 - dead)


def obs_saliency(weight: torch.Tensor, hessian: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    """SparseGPT's mask-selection score w^2 / [U]_jj^2 for every weight at once (see ``obs_column_weights``)."""
    cw = obs_column_weights(hessian, percdamp)
    return weight.to(cw.dtype).square() * cw.reshape(1, -1)


def sparsegpt_prune_many(weights: list[torch.Tensor], hessian: torch.Tensor, sparsity: Sparsity,
                         blocksize: int = 128, percdamp: float = 0.01) -> list[SparseGPTResult]:
    """Prune weights ``[out_i, in]`` that share one input (and so one Hessian ``[in, in]``)."""
    cols = hessian.shape[0]
    for w in weights:
        if w.ndim != 2 or w.shape[1] != cols:
            raise ValueError(f"weight {tuple(w.shape)} does not match a Hessian over {cols} inputs")
        sparsity.check_columns(cols)
    if blocksize <= 0 or (sparsity.is_nm and blocksize % sparsity.m):
        raise ValueError(f"blocksize {blocksize} must be positive and a multiple of M for {sparsity}")
    inv = inverse_hessian(hessian, percdamp)
    Hinv = inv.factor
    Wt = torch.cat([w.detach().float() for w in weights], 0).t().contiguous()  # [cols, rows]
    Wt[inv.dead] = 0
    Mt = torch.zeros_like(Wt, dtype=torch.bool)
    bounds = torch.tensor([0] + [w.shape[0] for w in weights]).cumsum(0).tolist()
    n, m = sparsity.n, sparsity.m
    sub = m * max(1, SUBBLOCK // m) if sparsity.is_nm else SUBBLOCK
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1, M1 = Wt[i1:i2], Mt[i1:i2]  # views
        Hinv1 = Hinv[i1:i2, i1:i2]
        d = torch.diagonal(Hinv1).unsqueeze(1)
        if not sparsity.is_nm:
            score = W1.square() / d.square()
            for r1, r2 in zip(bounds[:-1], bounds[1:]):  # per weight: floor(f*rows*i2) - floor(f*rows*i1) removed
                k = int(sparsity.fraction * (r2 - r1) * i2) - int(sparsity.fraction * (r2 - r1) * i1)
                M1[:, r1:r2] = _lowest(score[:, r1:r2].reshape(-1), k).view(i2 - i1, r2 - r1)
        # err_i = w_i * [removed] / [Hinv]_ii for column i (a row of W^T here); precomputed row views save
        # Python overhead in the one loop that runs per column.
        P1 = M1 / d
        Err1 = torch.empty_like(W1)
        w_rows, p_rows, e_rows, h_rows = W1.unbind(0), P1.unbind(0), Err1.unbind(0), Hinv1.unbind(0)
        for j1 in range(0, i2 - i1, sub):  # sub-blocks: rank-1 updates inside, one GEMM for the rest of the block
            j2 = min(j1 + sub, i2 - i1)
            for i in range(j1, j2):
                if sparsity.is_nm and i % m == 0:
                    score = W1[i:i + m].square() / d[i:i + m].square()
                    M1[i:i + m] = _lowest(score.t(), n).t()
                    torch.div(M1[i:i + m], d[i:i + m], out=P1[i:i + m])
                torch.mul(w_rows[i], p_rows[i], out=e_rows[i])
                W1[i + 1:j2].addr_(h_rows[i][i + 1:j2], e_rows[i], alpha=-1)
            W1[j2:].addmm_(Hinv1[j1:j2, j2:].t(), Err1[j1:j2], alpha=-1)
        W1.masked_fill_(M1, 0)
        Wt[i2:].addmm_(Hinv[i1:i2, i2:].t(), Err1, alpha=-1)
    Mt[inv.dead] = True
    out = []
    for w, r1, r2 in zip(weights, bounds[:-1], bounds[1:]):
        out.append(SparseGPTResult(Wt[:, r1:r2].t().to(w.dtype).contiguous(), Mt[:, r1:r2].t().contiguous(),
                                   inv.damp, int(inv.dead.sum()), list(inv.warnings)))
    return out


def sparsegpt_prune(weight: torch.Tensor, hessian: torch.Tensor, sparsity: Sparsity, blocksize: int = 128,
                    percdamp: float = 0.01) -> SparseGPTResult:
    """Prune one weight ``[out, in]`` given ``hessian`` = X^T X over its inputs."""
    return sparsegpt_prune_many([weight], hessian, sparsity, blocksize, percdamp)[0]


class SparseGPT:
    """The engine's method object (``base.Pruner``): X^T X per input, the group solved in one pass."""
    name = "sparsegpt"
    needs_calibration = True

    def new_stats(self, columns: int, ctx: PruneContext) -> Stats:
        return {"hessian": torch.zeros(columns, columns, device=ctx.device)}  # lower triangle only

    def accumulate(self, stats: Stats, x: torch.Tensor, ctx: PruneContext) -> None:
        accumulate_lower(stats["hessian"], x, precision=ctx.options.hessian_precision)

    def prune_group(self, weights: list[torch.Tensor], stats: Stats | None, ctx: PruneContext) -> Pruned:
        res = sparsegpt_prune_many(weights, hessian_from_lower(stats["hessian"]), ctx.sparsity,
                                   ctx.options.blocksize, ctx.options.percdamp)
        dead = [f"{res[0].dead_columns} dead input(s) (always zero)"] if res[0].dead_columns else []
        return Pruned([r.weight for r in res], res[0].warnings + dead, {"damp": res[0].damp})
