"""Pure selection rules of the self-generation methods (lists in, indices out; no model code).

- ``band_filter``: IGSP Phase 2 perplexity band [lo, hi] per dimension.
- ``greedy_ngram_select``: IGSP's greedy diversity — repeatedly add the candidate that maximises
  |∪ ngrams(C ∪ {x})| / Σ |ngrams(C ∪ {x})| (distinct over total whitespace n-grams of the growing set). Each
  candidate keeps a count of its distinct n-grams not yet in the set, decremented through an inverted index when a
  pick adds them, so a step costs O(|P|) and all updates together O(total n-gram occurrences): O(B·|P|) overall
  instead of recomputing the set's n-grams per candidate.
- ``vocabulary_entropy`` and ``ppl_binned_entropy_sample``: SGS's filter (drop the highest-perplexity fraction,
  then sample across perplexity bins preferring high token entropy).
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np

from ..profile import ngrams


def band_filter(ppl: list[float], lo: float, hi: float) -> list[int]:
    """Indices whose perplexity lies in [lo, hi]."""
    if not lo <= hi:
        raise ValueError(f"perplexity band needs lo <= hi, got [{lo}, {hi}]")
    return [i for i, p in enumerate(ppl) if lo <= p <= hi]


def diversity_ratio(texts: list[str], n: int = 4) -> float:
    """|distinct n-grams| / |n-grams| of a set of texts (1 − Aggregation); 1.0 for a set without n-grams."""
    grams = [g for t in texts for g in ngrams(t, n)]
    return len(set(grams)) / len(grams) if grams else 1.0


def greedy_ngram_select(texts: list[str], k: int, n: int = 4, start: list[str] | None = None) -> list[int]:
    """Indices of ``k`` texts picked greedily to maximise the distinct/total n-gram ratio of ``start`` + picks.
    Ties go to the lower index. Texts without n-grams are picked last (they leave the ratio unchanged)."""
    if k > len(texts):
        raise ValueError(f"cannot pick {k} of {len(texts)} candidates")
    counts = [Counter(ngrams(t, n)) for t in texts]
    total = [sum(c.values()) for c in counts]
    seen: set = set()
    distinct, occurrences = 0, 0
    for t in start or []:
        for g in ngrams(t, n):
            occurrences += 1
            if g not in seen:
                seen.add(g)
                distinct += 1
    index: dict[tuple, list[int]] = {}
    novel = []
    for i, c in enumerate(counts):
        fresh = [g for g in c if g not in seen]
        novel.append(len(fresh))
        for g in fresh:
            index.setdefault(g, []).append(i)
    chosen, free = [], np.ones(len(texts), dtype=bool)
    for _ in range(k):
        best, best_score = -1, -math.inf
        for i in np.flatnonzero(free):
            if total[i] == 0:
                score = -1.0  # adds nothing: only when nothing else is left
            else:
                score = (distinct + novel[i]) / (occurrences + total[i])
            if score > best_score:
                best, best_score = int(i), score
        chosen.append(best)
        free[best] = False
        occurrences += total[best]
        for g in counts[best]:
            if g not in seen:
                seen.add(g)
                distinct += 1
                for j in index.pop(g, ()):
                    novel[j] -= 1
    return chosen


def vocabulary_entropy(token_ids: list[int]) -> float:
    """Shannon entropy (nats) of the token frequency distribution of one sequence."""
    if not token_ids:
        return 0.0
    c = np.array(list(Counter(token_ids).values()), dtype=float)
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


def ppl_binned_entropy_sample(ppl: list[float], entropy: list[float], k: int, drop_top: float = 0.2,
                              bins: int = 4) -> list[int]:
    """SGS-style selection: drop the ``drop_top`` fraction with the highest perplexity, split the rest into
    ``bins`` equal-count perplexity bins, and take from each bin (k split evenly, remainder to the lower bins) the
    samples with the highest vocabulary entropy. Returns ``k`` indices (lower perplexity first)."""
    keep = sorted(range(len(ppl)), key=lambda i: (ppl[i], i))[: max(k, int(round(len(ppl) * (1 - drop_top))))]
    if k > len(keep):
        raise ValueError(f"cannot pick {k} of {len(keep)} candidates left after the perplexity filter")
    parts = np.array_split(np.array(keep), bins)
    quota = [k // bins + (1 if b < k % bins else 0) for b in range(bins)]
    chosen, spare = [], []
    for part, q in zip(parts, quota):
        ranked = sorted(part.tolist(), key=lambda i: (-entropy[i], i))
        chosen += ranked[:q]
        spare += ranked[q:]
    if len(chosen) < k:  # a bin smaller than its quota: fill with the highest-entropy leftovers
        chosen += sorted(spare, key=lambda i: (-entropy[i], i))[: k - len(chosen)]
    return sorted(chosen, key=lambda i: (ppl[i], i))
