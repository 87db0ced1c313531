"""Per-dimension perplexity bands [τ_lo, τ_hi] for IGSP, measured on the model at hand from real corpora aligned
with each dimension (the embedded pools: General = PTB, Wikipedia excerpt, Lee news, Shakespeare; Commonsense =
Social IQa, TimeDial; Code = HumanEval, CodeI/O; Math = GSM8K test, GSM-Symbolic). A band spans the ``quantiles``
(default 10 %-90 %) of the per-sequence perplexities of ``per_source`` sequences of each aligned source.

The study's bands (Table 11, LLaMA-3.1-8B) are kept in ``STUDY_BANDS`` to show beside ours; they do not transfer to
another model.
"""
from __future__ import annotations

import numpy as np

from .. import cache

STUDY_BANDS = {"General": (5.0, 12.0), "Commonsense": (4.0, 8.0), "Code": (2.0, 4.5), "Math": (2.0, 4.0)}


def measure_bands(model, tokenizer, seqlen: int, model_name: str, per_source: int = 8,
                  quantiles: tuple[float, float] = (0.1, 0.9), seed: int = 0, progress: bool = True,
                  family: str = "embedded", folder="selfgen", compute: bool = True) -> dict | None:
    """Per dimension, the ``quantiles`` of per-sequence perplexity under ``model`` of the dimension-aligned sources of
    the ``family`` pools (embedded, or the study's 15 sources at paper scale). Cached per (model identity, sources of
    each dimension, seqlen, per_source, quantiles, seed) in ``folder`` (a cache name, or a path such as a study's
    store, where the committed study keeps its bands); ``compute=False`` only reads it (None when missing)."""
    from ..data.calibration import draw_source, pools
    from ..models import identity
    from . import perplexities

    aligned = pools(family)

    def make():
        out = {"bands": {}, "sources": {}, "quantiles": list(quantiles), "per_source": per_source, "seqlen": seqlen,
               "family": family, "study_bands": STUDY_BANDS}
        for dim, names in aligned.items():
            ppl = []
            for name in names:
                seqs = draw_source(name, per_source, seqlen, tokenizer, seed)
                vals = perplexities(model, [s["input_ids"] for s in seqs], progress=False)
                out["sources"][name] = {"dimension": dim, "median_ppl": float(np.median(vals))}
                ppl += vals
            lo, hi = np.quantile(ppl, quantiles)
            out["bands"][dim] = [float(lo), float(hi)]
        return out

    if not model_name:  # a model without a name cannot be identified: measured every time, never cached
        return make()
    key = {"model": identity(model_name), "sources": aligned, "seqlen": seqlen, "per_source": per_source,
           "quantiles": list(quantiles), "seed": seed}
    valid = lambda v: isinstance(v, dict) and isinstance(v.get("bands"), dict)  # noqa: E731
    if not compute:
        return cache.load(folder, key, "bands", "perplexity-band cache", valid=valid)
    return cache.cached(folder, key, make, what="perplexity-band cache", prefix="bands", valid=valid)
