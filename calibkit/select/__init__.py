"""Calibration-sample selection from a pool of candidates: OASIS (``oasis.py``: learnt pool weights through the
pruner's soft mask) and the baselines (``baselines.py``: random, entropy; synthetic data is self-generation).

``select(method, pool, n, ...)`` takes the pool as a ``CalibrationSet`` and returns an ordinary ``CalibrationSet``
of n of its sequences, with what the selection did under ``meta["selection"]`` (method, pruner, weights, timing).
Specs (``select:<method>[:<pool size>]:<pool spec>``) and the pool's draw live in ``calibkit.spec``.
"""
from __future__ import annotations

import time
from dataclasses import asdict

from ..data import calibration as C
from ..data.calibration import CalibrationSet, choose
from .baselines import highest, mean_entropies, random_pick
from .oasis import OasisParams, OasisResult, oasis
from .soft import PRUNERS, SelectError

METHODS = ("oasis", "entropy", "random", "synthetic")  # synthetic: built by calibkit.spec (selfgen:sgs)
POOL_N = 32  # pool size when a spec does not say
CACHE_VERSION = 1  # bump when OASIS's computation changes (cached selections are then made again)

__all__ = ["METHODS", "POOL_N", "PRUNERS", "OasisParams", "OasisResult", "SelectError", "check", "oasis",
           "select"]


def check(method: str, n: int, pool_size: int | None = None, pruner: str | None = None) -> None:
    """Refuse a bad selection before any model work."""
    if method not in METHODS:
        raise SelectError(f"unknown selection method {method!r}; known: {', '.join(METHODS)}")
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise SelectError(f"the number of samples to select must be a positive integer, got {n!r}")
    if pool_size is not None and method != "synthetic" and pool_size < n:
        raise SelectError(f"a pool of {pool_size} samples is smaller than n = {n}")
    if method == "oasis" and pruner not in PRUNERS:
        raise SelectError(f"OASIS needs a pruner with a differentiable saliency ({', '.join(PRUNERS)}), got "
                          f"{pruner!r}")


def _learn(model, pool: CalibrationSet, task: CalibrationSet, pruner, sparsity, seed, P: OasisParams, progress,
           model_name: str | None) -> dict:
    """OASIS's result as a dict, kept in ``$CALIBKIT_CACHE/select/`` by content when the model has a name (the
    pool's and task's token ids, the model's identity, pruner, sparsity, seed, parameters)."""
    from .. import cache
    from ..models import identity

    def make():
        return asdict(oasis(model, pool.input_ids, task.input_ids[:P.task_n], pruner, sparsity, seed, P, progress))

    if model_name is None:
        return make()
    key = {"version": CACHE_VERSION, "model": identity(model_name), "pool": pool.tokens_digest(),
           "task": C.choose(task, range(min(P.task_n, len(task))), "task").tokens_digest(), "pruner": pruner,
           "sparsity": str(sparsity), "seed": int(seed), "params": P.as_dict()}
    return cache.cached("select", key, make, what="OASIS selection cache", prefix="oasis",
                        valid=lambda v: isinstance(v, dict) and "ranking" in v and "weights" in v)


def select(method: str, pool: CalibrationSet, n: int, *, model=None, pruner: str | None = None, sparsity=None,
           seed: int = 0, task: CalibrationSet | None = None, params: OasisParams | dict | None = None,
           progress: bool = True, model_name: str | None = None) -> CalibrationSet:
    """The ``n`` samples of ``pool`` that ``method`` selects (``oasis`` learns with ``model``, ``pruner``,
    ``sparsity`` and the task sequences ``task``, cached by content when ``model_name`` is given; ``entropy``
    scores with ``model``; ``random`` draws with ``seed``)."""
    if method == "synthetic":
        raise SelectError("synthetic calibration data is generated, not selected: use the spec selfgen:sgs")
    check(method, n, len(pool), pruner)
    t0 = time.perf_counter()
    info: dict = {"method": method, "pool": pool.meta.get("spec"), "pool_n": len(pool), "seed": int(seed)}
    if method == "random":
        ids = random_pick(len(pool), n, seed)
    elif method == "entropy":
        if model is None:
            raise SelectError("entropy selection needs the model")
        scores = mean_entropies(model, pool.input_ids, progress=progress)
        ids = highest(scores, n)
        info["entropy"] = scores
    else:
        if model is None or task is None:
            raise SelectError("OASIS needs the model and task sequences (disjoint from the pool)")
        P = params if isinstance(params, OasisParams) else OasisParams.from_dict(params)
        res = _learn(model, pool, task, pruner, sparsity, seed, P, progress, model_name)
        ids = res["ranking"][:n]
        info |= {"pruner": pruner, "sparsity": str(sparsity), "params": P.as_dict(), "weights": res["weights"],
                 "task": task.meta.get("spec"), "trajectory": res["trajectory"], "timing_detail": res["timing"],
                 "memory": res["memory"]}
    info["seconds"] = time.perf_counter() - t0
    return choose(pool, ids, f"select:{method}", selection=info)
