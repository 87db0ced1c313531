"""OASIS Figure 5 form: weight trajectories on a pool with planted quality tiers, with and without embedding noise.

The pool is samples whose tiers are known from the per-sample analysis (``calibkit.samples``: post-pruning
perplexity of each sample alone); the task sequences are the ``task_n`` sequences of the same draw that follow the
highest pool id (disjoint from the pool). Each condition is one OASIS run (``select.oasis``); its trajectory, the
tiers and the settings are kept as one JSON record in ``<folder>`` (the sweep store's ``planted/``), keyed by content,
so that ``make figures`` redraws the figure from committed records without computing.
"""
from __future__ import annotations

import os

from .. import cache


def _key(model_name, of, tiers, pruner, sparsity, seqlen, seed, noise, params) -> dict:
    return {"model": model_name, "of": of, "tiers": tiers, "pruner": pruner, "sparsity": str(sparsity),
            "seqlen": seqlen, "seed": seed, "noise": noise, "params": params}


def planted_runs(folder: str | os.PathLike, tiers: dict[int, str], *, of: str = "ptb", pruner: str = "wanda",
                 sparsity="0.5", seqlen: int = 256, seed: int = 0, noises=(0.1, 0.0), params: dict | None = None,
                 model_name: str = "smollm2-135m", compute: bool = True, progress: bool = True) -> list[dict]:
    """One record per noise level: {label, noise, tiers, trajectory, weights, timing}. ``tiers`` maps a sample id
    of ``of``'s seeded draw to its tier. With ``compute=False`` only stored records are returned."""
    from ..data.calibration import choose
    from ..models import load_model
    from ..spec import build
    from . import OasisParams, oasis

    tiers = {int(k): v for k, v in sorted(tiers.items())}
    ids = list(tiers)
    out, model = [], None
    for noise in noises:
        P = OasisParams.from_dict((params or {}) | {"noise": noise})
        key = _key(model_name, of, {str(k): v for k, v in tiers.items()}, pruner, sparsity, seqlen, seed, noise,
                   P.as_dict())
        rec = cache.load(folder, key, "planted", "planted-tier OASIS record")
        if rec is None and compute:
            if model is None:
                model, tok = load_model(model_name)
                drawn = build(of, max(ids) + 1 + P.task_n, seqlen, seed, model_name=model_name, tokenizer=tok,
                              progress=False)
            pool = choose(drawn, ids, of)
            task = choose(drawn, range(max(ids) + 1, len(drawn)), of)
            res = oasis(model, pool.input_ids, task.input_ids, pruner, sparsity, seed, P, progress)
            rec = cache.store(folder, key, "planted", {
                "label": f"noise {noise:g}" if noise else "no noise", "noise": noise, "ids": ids,
                "tiers": [tiers[i] for i in ids], "trajectory": res.trajectory, "weights": res.weights,
                "timing": res.timing, "memory": res.memory, "pruner": pruner, "sparsity": str(sparsity)})
        if rec is not None:
            out.append(rec)
    return out
