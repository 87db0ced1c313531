"""Per-dimension perplexity bands [τ_lo, τ_hi] for IGSP, measured on the model at hand from real corpora aligned
with each dimension (the embedded pools: General = PTB, Wikipedia excerpt, Lee news, Shakespeare; Commonsense =
Social IQa, TimeDial; Code = HumanEval, CodeI/O; Math = GSM8K test, GSM-Symbolic). A band spans the ``quantiles``
(default 10 %-90 %) of the per-sequence perplexities of ``per_source`` sequences of each aligned source.

The study's bands (Table 11, LLaMA-3.1-8B) are kept in ``STUDY_BANDS`` to show beside ours; they do not transfer to
another model.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from ..settings import atomic_write_bytes, cache_dir, read_cache_json

STUDY_BANDS = {"General": (5.0, 12.0), "Commonsense": (4.0, 8.0), "Code": (2.0, 4.5), "Math": (2.0, 4.0)}


def measure_bands(model, tokenizer, seqlen: int, model_name: str, per_source: int = 8,
                  quantiles: tuple[float, float] = (0.1, 0.9), seed: int = 0, progress: bool = True) -> dict:
    from ..data.calibration import draw_source, pools
    from . import perplexities

    from ..models import identity

    key = hashlib.sha256(json.dumps([identity(model_name), seqlen, per_source, list(quantiles), seed],
                                    sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir() / "selfgen" / f"bands-{key}.json"
    cached = read_cache_json(path, "perplexity-band cache")
    if isinstance(cached, dict) and isinstance(cached.get("bands"), dict):
        return cached
    out = {"bands": {}, "sources": {}, "quantiles": list(quantiles), "per_source": per_source, "seqlen": seqlen,
           "study_bands": STUDY_BANDS}
    for dim, names in pools("embedded").items():
        ppl = []
        for name in names:
            seqs = draw_source(name, per_source, seqlen, tokenizer, seed)
            vals = perplexities(model, [s["input_ids"] for s in seqs], progress=False)
            out["sources"][name] = {"dimension": dim, "median_ppl": float(np.median(vals))}
            ppl += vals
        lo, hi = np.quantile(ppl, quantiles)
        out["bands"][dim] = [float(lo), float(hi)]
    atomic_write_bytes(path, json.dumps(out, indent=1).encode())
    return out
