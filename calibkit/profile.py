"""Information profile of a calibration set: the seven OIT metrics of the study (Appendix A.2).

One pure function per metric; ``profile()`` is the one entry point. Set-level metrics read each sequence's
``dimensions`` (capability tags), ``genre`` and ``text``; Distortion and Mismatch run the base model once over
the token ids (batched, no_grad).

- Volume       total tokens, sum_i |Tok(text_i)| (the sequences' token ids).
- Scope        |union of the sequences' dimensions| / 4.
- Variety      observed genres / all genres of the registry.
- Granularity  1 / K, K = number of non-empty (dimension, genre) cells (1 if K = 0).
- Aggregation  1 - unique / total whitespace 4-grams (n-grams taken within each text).
- Distortion   exp(mean_i l_i), l_i the mean next-token NLL of sequence i (tokens 2..L_i are predicted).
- Mismatch     Min-K%++ (Shi et al., 2024): z_t = (log p(x_t) - mu_t) / sigma_t with mu_t, sigma_t^2 the mean
               and variance of log p(.) under the predictive distribution p(. | x_<t); per sequence the mean of
               the lowest k% of z_t (at least one token), averaged over sequences.
"""
from __future__ import annotations

import math
from collections import Counter

import torch
from tqdm.auto import tqdm

from .data.sources import DIMENSIONS, GENRES
from .errors import ConfigError

METRICS = ("volume", "scope", "variety", "granularity", "aggregation", "distortion", "mismatch")


class UndefinedMetric(ValueError):
    """A metric has no value for this input (e.g. no 4-grams, sequences of one token)."""


# --- set-level metrics (pure) ----------------------------------------------------------------------------------------

def volume(token_lengths) -> int:
    return int(sum(token_lengths))


def scope(dimension_sets, all_dimensions=DIMENSIONS) -> float:
    covered = set().union(*map(set, dimension_sets)) if dimension_sets else set()
    unknown = covered - set(all_dimensions)
    if unknown:
        raise ConfigError(f"unknown dimension(s) {sorted(unknown)}; known: {', '.join(all_dimensions)}")
    return len(covered) / len(all_dimensions)


def variety(genres, all_genres=GENRES) -> float:
    if not all_genres:
        return 0.0
    return len({g for g in genres if g is not None}) / len(all_genres)


def granularity(dimension_sets, genres) -> float:
    cells = {(d, g) for dims, g in zip(dimension_sets, genres) for d in dims}
    return 1.0 / len(cells) if cells else 1.0


def ngrams(text: str, n: int = 4) -> list[tuple[str, ...]]:
    """Whitespace-token n-grams of one text (Aggregation's unit; also IGSP's diversity selector)."""
    words = text.split()
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def aggregation(texts, n: int = 4) -> float:
    grams = Counter()
    for text in texts:
        grams.update(ngrams(text, n))
    total = sum(grams.values())
    if total == 0:
        raise UndefinedMetric(f"Aggregation is undefined: no text has {n} or more whitespace tokens")
    return 1.0 - len(grams) / total


# --- model-based metrics -----------------------------------------------------------------------------------------

def token_statistics(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per predicted token: NLL and the Min-K%++ z-score. ``logits`` [T, V] predict ``targets`` [T]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    mu = (p * logp).sum(-1)
    var = (p * logp.square()).sum(-1) - mu.square()
    tok = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    z = (tok - mu) / var.clamp_min(1e-12).sqrt()
    return -tok, z


def distortion(nll_per_sequence) -> float:
    """exp of the mean of the per-sequence mean NLLs (sequences with no predicted token are left out)."""
    means = [float(torch.as_tensor(x).mean()) for x in nll_per_sequence if len(x) > 0]
    if not means:
        raise UndefinedMetric("Distortion is undefined: every sequence has fewer than 2 tokens")
    return math.exp(sum(means) / len(means))


def min_k_plus_plus(z: torch.Tensor, k: float = 0.2) -> float:
    """Mean of the lowest ``k`` fraction of one sequence's z-scores (at least one)."""
    if len(z) == 0:
        raise UndefinedMetric("Min-K%++ is undefined for a sequence with fewer than 2 tokens")
    m = max(1, int(len(z) * k))
    return float(torch.sort(torch.as_tensor(z).float()).values[:m].mean())


def mismatch(z_per_sequence, k: float = 0.2) -> float:
    scores = [min_k_plus_plus(z, k) for z in z_per_sequence if len(z) > 0]
    if not scores:
        raise UndefinedMetric("Mismatch is undefined: every sequence has fewer than 2 tokens")
    return sum(scores) / len(scores)


@torch.no_grad()
def model_statistics(model, sequences: list[list[int]], batch_tokens: int = 4096, progress: bool = True):
    """Per sequence: NLL and z-score of every predicted token, from one batched pass of ``model``."""
    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))  # similar lengths share a batch
    nll, z = [None] * len(sequences), [None] * len(sequences)
    bar = tqdm(total=len(sequences), desc="profile (model)", unit="seq", disable=not progress)
    i = 0
    while i < len(order):
        longest = len(sequences[order[i]])
        take = order[i:i + max(1, batch_tokens // max(longest, 1))]
        ids = torch.zeros(len(take), longest, dtype=torch.long)
        mask = torch.zeros(len(take), longest, dtype=torch.long)
        for r, j in enumerate(take):
            ids[r, :len(sequences[j])] = torch.as_tensor(sequences[j])
            mask[r, :len(sequences[j])] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).logits
        for r, j in enumerate(take):
            n = len(sequences[j])
            nll[j], z[j] = token_statistics(logits[r, : n - 1], ids[r, 1:n].to(device)) if n > 1 else (
                torch.empty(0), torch.empty(0))
            nll[j], z[j] = nll[j].cpu(), z[j].cpu()
        bar.update(len(take))
        i += len(take)
    bar.close()
    return nll, z


# --- entry point ----------------------------------------------------------------------------------------------------

def profile(calibration, model=None, k: float = 0.2, batch_tokens: int = 4096, progress: bool = True) -> dict:
    """All seven metrics of a ``CalibrationSet`` (or list of sequence dicts). Without ``model`` Distortion and
    Mismatch are left out. Metrics that are undefined for this set are ``None`` with the reason in
    ``result["undefined"]``."""
    seqs = calibration.sequences if hasattr(calibration, "sequences") else list(calibration)
    if not seqs:
        raise ConfigError("empty calibration set: nothing to profile")
    if not 0 < k <= 1:
        raise ConfigError(f"k must be a fraction in (0, 1], got {k}")
    dims = [s.get("dimensions") or ([s["dimension"]] if s.get("dimension") else []) for s in seqs]
    genres = [s.get("genre") for s in seqs]
    out = {"sequences": len(seqs), "volume": volume(len(s["input_ids"]) for s in seqs), "scope": scope(dims),
           "variety": variety(genres), "granularity": granularity(dims, genres), "k": k, "undefined": {}}
    try:
        out["aggregation"] = aggregation(s.get("text", "") for s in seqs)
    except UndefinedMetric as e:
        out["aggregation"] = None
        out["undefined"]["aggregation"] = str(e)
    if model is not None:
        nll, z = model_statistics(model, [list(s["input_ids"]) for s in seqs], batch_tokens, progress)
        for name, fn in (("distortion", lambda: distortion(nll)), ("mismatch", lambda: mismatch(z, k))):
            try:
                out[name] = fn()
            except UndefinedMetric as e:
                out[name] = None
                out["undefined"][name] = str(e)
        short = sum(1 for x in nll if len(x) == 0)
        if short and "distortion" not in out["undefined"]:
            out["undefined"]["short_sequences"] = f"{short} sequence(s) of one token left out of Distortion/Mismatch"
    return out
