"""Self-generated calibration sets: Self-Cal, SGS and IGSP (+ ablations), built from the base model alone.

``build(method, model, tokenizer, n, seqlen, seed)`` returns a ``CalibrationSet`` like every other calibration
spec; in specs and on the command line the methods are named ``selfgen:<method>``.
"""
from __future__ import annotations

import math

from ..errors import ConfigError

METHODS = ("selfcal", "sgs", "igsp", "igsp-no-multi", "igsp-no-band", "igsp-no-diversity")
PREFIX = "selfgen:"


def perplexities(model, sequences: list[list[int]], progress: bool = True) -> list[float]:
    """Per-sequence perplexity exp(mean token NLL) under ``model`` (batched, no_grad)."""
    from ..profile import model_statistics

    nll, _ = model_statistics(model, sequences, progress=progress)
    return [math.exp(float(x.mean())) if len(x) else float("nan") for x in nll]


def build(method: str, model, tokenizer, n: int, seqlen: int, seed: int = 0, model_name: str = "",
          progress: bool = True, **params):
    from ..data.calibration import CalibrationSet
    from .igsp import igsp
    from .selfcal import selfcal
    from .sgs import sgs

    method = method.removeprefix(PREFIX)
    if method not in METHODS:
        raise ConfigError(f"unknown self-generation method {method!r}; known: {', '.join(METHODS)}")
    if n <= 0 or seqlen < 2:
        raise ConfigError(f"need n > 0 and seqlen >= 2, got n={n}, seqlen={seqlen}")
    if method == "selfcal":
        seqs, meta = selfcal(model, tokenizer, n, seqlen, seed, model_name, progress, **params)
    elif method == "sgs":
        seqs, meta = sgs(model, tokenizer, n, seqlen, seed, model_name, progress, **params)
    else:
        seqs, meta = igsp(model, tokenizer, n, seqlen, seed, model_name, progress, variant=method, **params)
    label = PREFIX + method
    for s in seqs:
        s["text"] = tokenizer.decode(s["input_ids"])
        s["source"] = label
        s["dimensions"] = [s["dimension"]]
    meta = meta | {"spec": label, "source": label, "n": int(n), "seqlen": int(seqlen), "seed": int(seed),
                   "tokenizer": model_name, "selfgen": method}
    return CalibrationSet(seqs, meta)
