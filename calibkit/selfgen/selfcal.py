"""Self-Cal (Williams et al., 2025): the model writes its own calibration text, unconditionally, from the
beginning-of-sequence token, with a linear temperature schedule over the generated positions.

Defaults: t_init 0.5 -> t_final 1.0 over the first half of the generated tokens, no top-k/top-p. The schedule's form
is the paper's; these values are calibkit's choice (the paper's own values could not be checked offline) and are
parameters (``--selfgen-param t_init=...``; ``params.SelfCalParams``).
"""
from __future__ import annotations

from .generate import Sampling, cached_pool, generate, sampling_dict
from .params import SelfCalParams


def selfcal(model, tokenizer, n: int, seqlen: int, seed: int, model_name: str, progress: bool = True,
            params: SelfCalParams = SelfCalParams()):
    p = params
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    new = seqlen - 1
    sampling = Sampling(schedule=(p.t_init, p.t_final, max(1, int(new * p.schedule_fraction))))
    key = {"method": "selfcal", "model": model_name, "n": n, "seqlen": seqlen, "seed": seed,
           "sampling": sampling_dict(sampling)}
    pool = cached_pool(key, lambda: {"ids": [[bos] + g for g in generate(
        model, tokenizer, [[bos]] * n, new, sampling, seed, p.batch_size, progress, "Self-Cal")]}, ("ids",))
    seqs = [{"input_ids": ids, "dimension": "General", "genre": "web", "prompt": ""} for ids in pool["ids"]]
    return seqs, {"params": p.as_dict(), "generation_seconds": pool["seconds"]}
