"""Self-generated calibration sets: Self-Cal, SGS and IGSP (+ ablations), built from the base model alone.

``build(method, model, tokenizer, n, seqlen, seed, **params)`` returns a ``CalibrationSet`` like every other
calibration spec; in specs and on the command line the methods are named ``selfgen:<method>``. ``params`` are the
method's typed parameters (``params.py``); ``parameters(method, values)`` checks them without a model, so a caller
can refuse a typo before loading one.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

from ..errors import ConfigError
from .params import IGSP_VARIANTS, IGSPParams, Params, SelfCalParams, SGSParams

METHODS = ("selfcal", "sgs", *IGSP_VARIANTS)
PREFIX = "selfgen:"
PARAMS: dict[str, type[Params]] = {"selfcal": SelfCalParams, "sgs": SGSParams} | {m: IGSPParams for m in IGSP_VARIANTS}


def method_name(method: str) -> str:
    """``method`` without the ``selfgen:`` prefix, checked."""
    name = str(method).removeprefix(PREFIX)
    if name not in METHODS:
        raise ConfigError(f"unknown self-generation method {method!r}; known: {', '.join(METHODS)}")
    return name


def parameters(method: str, values: Mapping | None = None) -> Params:
    """The typed parameters of ``method`` from ``values`` (defaults for the rest); an unknown key or a bad value is a
    ``ConfigError`` naming it."""
    name = method_name(method)
    return PARAMS[name].from_dict(values, where=PREFIX + name)


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

    method = method_name(method)
    typed = parameters(method, params)
    if n <= 0 or seqlen < 2:
        raise ConfigError(f"need n > 0 and seqlen >= 2, got n={n}, seqlen={seqlen}")
    if method == "selfcal":
        seqs, meta = selfcal(model, tokenizer, n, seqlen, seed, model_name, progress, typed)
    elif method == "sgs":
        seqs, meta = sgs(model, tokenizer, n, seqlen, seed, model_name, progress, typed)
    else:
        seqs, meta = igsp(model, tokenizer, n, seqlen, seed, model_name, progress, variant=method, params=typed)
    label = PREFIX + method
    for s in seqs:
        s["text"] = tokenizer.decode(s["input_ids"])
        s["source"] = label
        s["dimensions"] = [s["dimension"]]
    meta = meta | {"spec": label, "source": label, "n": int(n), "seqlen": int(seqlen), "seed": int(seed),
                   "tokenizer": model_name, "selfgen": method}
    return CalibrationSet(seqs, meta)
