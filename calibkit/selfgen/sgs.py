"""SGS (Ji et al., 2025, as the study describes it): the model continues short prefixes of real general-domain text
(top-k 50, top-p 0.95, temperature 0.6, repetition penalty 1.2); the generated pool is filtered by perplexity under
the same model (the highest-perplexity 20 % dropped) and sampled across perplexity bins preferring high vocabulary
entropy (``select.ppl_binned_entropy_sample``).

Prefixes: the first ``prefix_tokens`` tokens (at most half the sequence) of documents of ``prefix_source`` (default the embedded Wikipedia
excerpt; ``wikipedia`` reads the study's source from CALIBKIT_DATA_DIR or the hub).
"""
from __future__ import annotations

import numpy as np

from .generate import Sampling, cached_pool, generate, sampling_dict
from .params import SGSParams
from .select import ppl_binned_entropy_sample, vocabulary_entropy

SAMPLING = Sampling(temperature=0.6, top_k=50, top_p=0.95, repetition_penalty=1.2)
# The documents whose beginnings become prefixes are drawn from numpy's generator seeded [seed, PREFIX_DRAW_SALT]:
# a stream of its own, apart from the other draws of the same seed (IGSP's random pick, IGSP's prompt topics, the
# order of a mix in data/calibration.py), so that changing one of them never moves the others.
PREFIX_DRAW_SALT = 0x5465


def prefixes(tokenizer, source: str, count: int, length: int, seed: int) -> list[list[int]]:
    from ..data import sources as S

    texts = [t for t in S.texts(source, "all") if t.strip()]
    rng = np.random.default_rng([int(seed), PREFIX_DRAW_SALT])
    picks = rng.choice(len(texts), size=count, replace=count > len(texts))
    return [tokenizer(texts[int(i)], add_special_tokens=False)["input_ids"][:length] for i in picks]


def sgs(model, tokenizer, n: int, seqlen: int, seed: int, model_name: str, progress: bool = True,
        params: SGSParams = SGSParams()):
    from . import perplexities

    p = params
    size = max(n, int(np.ceil(n * p.pool_factor)))
    key = {"method": "sgs", "model": model_name, "size": size, "seqlen": seqlen, "seed": seed,
           "sampling": sampling_dict(SAMPLING), "prefix_source": p.prefix_source, "prefix_tokens": p.prefix_tokens}

    def make():
        pre = prefixes(tokenizer, p.prefix_source, size, min(p.prefix_tokens, seqlen // 2), seed)
        out = []
        for length in sorted({len(x) for x in pre}):  # equal prefix lengths share one generation call
            idx = [i for i, x in enumerate(pre) if len(x) == length]
            gen = generate(model, tokenizer, [pre[i] for i in idx], seqlen - length, SAMPLING, seed + length,
                           p.batch_size, progress, "SGS")
            out += [(i, pre[i] + g) for i, g in zip(idx, gen)]
        ids = [x for _, x in sorted(out)]
        return {"ids": ids, "ppl": perplexities(model, ids, progress)}
    pool = cached_pool(key, make, ("ids", "ppl"))
    entropy = [vocabulary_entropy(x) for x in pool["ids"]]
    pick = ppl_binned_entropy_sample(pool["ppl"], entropy, n, p.drop_top, p.bins)
    seqs = [{"input_ids": pool["ids"][i], "dimension": "General", "genre": "encyclopedic", "ppl": pool["ppl"][i],
             "prompt": "prefix"} for i in pick]
    return seqs, {"params": p.as_dict(), "pool": len(pool["ids"]), "generation_seconds": pool["seconds"]}
