"""IGSP (study, Section 3.3 and Algorithm 1): capability-stratified self-generated pools, then per dimension a
perplexity band and greedy 4-gram diversity selection.

Phase 1: per dimension d, a pool of ``pool_factor`` x b_d sequences generated from d's prompt template
(``prompts.py``; all pools in one batched generation call); the calibration sequence is the generated text only (the chat prompt is not part of it, so the
set does not repeat a template). Phase 2: per dimension, keep the pool members whose perplexity lies in d's band
[τ_lo, τ_hi] and pick b_d = α_d·B of them greedily maximising distinct/total 4-grams of the growing set.

Bands are measured on *this* model (``bands.py``), not copied from the study (whose values are for LLaMA-3.1-8B).
When a dimension has fewer in-band candidates than b_d, the candidates nearest to the band (in log perplexity) fill
the rest; the count in band is reported in the set's metadata and as a warning, never hidden.

Ablations: ``igsp-no-multi`` (one prompt distribution, the General template, for the whole budget),
``igsp-no-band`` (no perplexity band), ``igsp-no-diversity`` (seeded random pick instead of the greedy selector).
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from ..data.sources import DIMENSIONS
from .generate import Sampling, cached_pool, generate, sampling_dict
from .params import IGSP_VARIANTS, IGSPParams
from .prompts import encode, prompts
from .select import band_filter, greedy_ngram_select
from .sgs import SAMPLING

GENRE = {"General": "encyclopedic", "Commonsense": "narrative", "Code": "code", "Math": "math-word-problem"}
# igsp-no-diversity picks candidates at random from numpy's generator seeded [seed, RANDOM_PICK_SALT]: a stream of
# its own, apart from the other draws of the same seed (prompt topics, SGS's prefix documents, a mix's order).
RANDOM_PICK_SALT = 0x16579


def _pools(model, tokenizer, sizes: dict[str, int], seqlen: int, seed: int, model_name: str, sampling: Sampling,
           batch_size: int, progress: bool) -> dict:
    """One generation call for every dimension's pool (large batches are what make CPU decoding fast)."""
    from . import perplexities

    key = {"method": "igsp-pool", "model": model_name, "sizes": sizes, "seqlen": seqlen, "seed": seed,
           "sampling": sampling_dict(sampling)}

    def make():
        texts = {d: prompts(d, k, seed) for d, k in sizes.items()}
        flat = [(d, t) for d in sizes for t in texts[d]]
        ids = generate(model, tokenizer, [encode(tokenizer, t) for _, t in flat], seqlen, sampling, seed,
                       batch_size, progress, "IGSP pools")
        ppl = perplexities(model, ids, progress)
        out = {d: {"ids": [], "prompts": [], "ppl": []} for d in sizes}
        for (d, t), x, q in zip(flat, ids, ppl):
            out[d]["ids"].append(x)
            out[d]["prompts"].append(t)
            out[d]["ppl"].append(q)
        return {"pools": out}
    return cached_pool(key, make, ("pools",))


def _nearest_to_band(ppl: list[float], lo: float, hi: float, exclude: set[int], k: int) -> list[int]:
    def dist(i):
        lp = math.log(ppl[i])
        return max(math.log(lo) - lp, lp - math.log(hi), 0.0)
    return sorted((i for i in range(len(ppl)) if i not in exclude), key=lambda i: (dist(i), i))[:k]


def igsp(model, tokenizer, n: int, seqlen: int, seed: int, model_name: str, progress: bool = True,
         variant: str = "igsp", params: IGSPParams = IGSPParams()):
    from ..data.calibration import allocate
    from .bands import measure_bands

    if variant not in IGSP_VARIANTS:
        raise ValueError(f"unknown IGSP variant {variant!r}; known: {', '.join(IGSP_VARIANTS)}")
    v, p = IGSP_VARIANTS[variant], params
    multi, use_band = v.multi_domain, v.band_filter
    dims = list(DIMENSIONS) if multi else ["General"]
    alpha = p.alpha or [1.0] * len(dims)
    budgets = allocate(n, list(alpha)) if multi else [n]
    bands = (measure_bands(model, tokenizer, seqlen, model_name, progress=progress, family=p.band_pools)
             if use_band else None)
    rng = np.random.default_rng([int(seed), RANDOM_PICK_SALT])
    sizes = {d: max(b, int(math.ceil(b * p.pool_factor))) for d, b in zip(dims, budgets) if b > 0}
    generated = _pools(model, tokenizer, sizes, seqlen, seed, model_name, SAMPLING, p.batch_size, progress)
    chosen_texts, seqs, report = [], [], {}
    for d, b in zip(dims, budgets):
        if b == 0:
            continue
        pool = generated["pools"][d]
        texts = [tokenizer.decode(x) for x in pool["ids"]]
        cand = list(range(len(texts)))
        in_band_pool = None
        if use_band:
            lo, hi = bands["bands"][d]
            cand = band_filter(pool["ppl"], lo, hi)
            in_band_pool = len(cand)
            if len(cand) < b:
                fill = _nearest_to_band(pool["ppl"], lo, hi, set(cand), b - len(cand))
                warnings.warn(f"IGSP {d}: {len(cand)} of {len(texts)} generated samples lie in the perplexity band "
                              f"[{lo:.2f}, {hi:.2f}]; {len(fill)} nearest to it fill the budget of {b}")
                cand += fill
        if v.diversity:
            pick = [cand[i] for i in greedy_ngram_select([texts[i] for i in cand], b, p.ngram, chosen_texts)]
        else:
            pick = [cand[int(i)] for i in rng.choice(len(cand), size=b, replace=False)]
        in_band = sum(1 for i in pick if not use_band or bands["bands"][d][0] <= pool["ppl"][i] <= bands["bands"][d][1])
        report[d] = {"pool": len(texts), "budget": b, "in_band": in_band_pool, "candidates": len(cand),
                     "picked_in_band": in_band,
                     "pool_ppl_median": float(np.median(pool["ppl"])), "generation_seconds": generated["seconds"]}
        chosen_texts += [texts[i] for i in pick]
        label = d if multi else "General"
        seqs += [{"input_ids": pool["ids"][i], "dimension": label, "genre": GENRE[label], "ppl": pool["ppl"][i],
                  "prompt": pool["prompts"][i]} for i in pick]
    meta = {"params": p.as_dict(), "variant": variant, "dimensions": report, "bands": bands}
    return seqs, meta
