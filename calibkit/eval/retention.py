"""Capability retention (study, Section 3.1 and Appendix A.1).

Per task t: y~ = ybar(m) / (ybar(m0) + eps), ybar the mean raw score over evaluation seeds; for a lower-is-better
metric (bits per byte, perplexity) the ratio is turned round, ybar(m0) / (ybar(m) + eps), so that 1 still means
"all kept". S_d is the mean of y~ over the tasks of dimension d, S_total the mean of S_d over the dimensions
present. Across calibration seeds (one pruned model each): mean and sample standard deviation.

calibkit's evaluations are deterministic (log-likelihood, or greedy decoding with fixed few-shot exemplars), so one
evaluation's score is ybar.
"""
from __future__ import annotations

import statistics

EPS = 1e-6


def task_retention(pruned: float, dense: float, lower_is_better: bool = False, eps: float = EPS) -> float:
    return dense / (pruned + eps) if lower_is_better else pruned / (dense + eps)


def retention(pruned: dict[str, float], dense: dict[str, float], dimension_of: dict[str, str],
              lower_is_better: set[str] | frozenset = frozenset(), eps: float = EPS) -> dict:
    """``pruned``/``dense``: task -> mean score; ``dimension_of``: task -> dimension.
    Returns {"tasks": {t: y~}, "dimensions": {d: S_d}, "total": S_total}."""
    missing = sorted(set(dimension_of) - set(pruned)) + sorted(set(dimension_of) - set(dense))
    if missing:
        raise KeyError(f"no score for task(s) {', '.join(sorted(set(missing)))}")
    tasks = {t: task_retention(pruned[t], dense[t], t in lower_is_better, eps) for t in dimension_of}
    dims: dict[str, list[float]] = {}
    for t, d in dimension_of.items():
        dims.setdefault(d, []).append(tasks[t])
    per_dim = {d: sum(v) / len(v) for d, v in dims.items()}
    return {"tasks": tasks, "dimensions": per_dim, "total": sum(per_dim.values()) / len(per_dim)}


def across_seeds(results: list[dict]) -> dict:
    """Mean and sample standard deviation (n-1; 0 for one seed) of every task, dimension and total retention
    over calibration seeds. ``results``: outputs of ``retention``."""
    def ms(values):
        values = list(values)
        return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "n": len(values)}

    return {"tasks": {t: ms(r["tasks"][t] for r in results) for t in results[0]["tasks"]},
            "dimensions": {d: ms(r["dimensions"][d] for r in results) for d in results[0]["dimensions"]},
            "total": ms(r["total"] for r in results)}


def item_score(values, rows=None, metric: str = ""):
    """A task's score from per-item values (``harness.item_values``), over ``rows`` (an index array, possibly
    repeating, shape [..., n]) or all items, aggregated as lm-eval aggregates ``metric`` (its name, without filter):
    for [log-likelihood, units] pairs bits per byte -sum(ll) / sum(bytes) / ln 2, or for word/byte perplexity
    exp(-sum(ll) / sum(units)); for plain numbers the mean, or exp(-mean) for ``perplexity`` (per-item
    log-likelihoods, as lm-eval's LAMBADA logs them)."""
    import numpy as np

    a = np.asarray(values, dtype=np.float64)
    if rows is not None:
        a = a[rows]
    name = metric.split(",")[0]
    if a.ndim >= 2 and a.shape[-1] == 2 and isinstance(values[0], (list, tuple)):
        mean_nll = -a[..., 0].sum(-1) / a[..., 1].sum(-1)
        return np.exp(mean_nll) if name in ("word_perplexity", "byte_perplexity") else mean_nll / np.log(2)
    return np.exp(-a.mean(-1)) if name == "perplexity" else a.mean(-1)


def bootstrap_se(pruned_items: dict[str, list], dense_items: dict[str, list], dimension_of: dict[str, str],
                 lower_is_better: set[str] | frozenset = frozenset(), iters: int = 2000, seed: int = 0,
                 eps: float = EPS, metrics: dict[str, str] | None = None) -> dict:
    """Bootstrap standard errors of task, dimension and total retention from evaluation-item noise.

    Items are resampled with replacement, the same draw for the pruned and the dense model (paired: both answered the
    same items), independently per task; each replicate recomputes every retention exactly as ``retention`` does.
    ``metrics``: task -> metric name, where the aggregation is not bits per byte or the mean (``item_score``).
    Returns {"tasks": {t: se}, "dimensions": {d: se}, "total": se, "scores": {t: se of the pruned model's raw score},
    "iters": iters} (retention SEs as fractions, x100 for points)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    reps, score_se = {}, {}
    for t in dimension_of:
        n = len(dense_items[t])
        if len(pruned_items[t]) != n:
            raise ValueError(f"{t}: {len(pruned_items[t])} pruned vs {n} dense items")
        rows = rng.integers(0, n, size=(iters, n))
        m = (metrics or {}).get(t, "")
        p, d = item_score(pruned_items[t], rows, m), item_score(dense_items[t], rows, m)
        score_se[t] = float(np.std(p, ddof=1))
        reps[t] = d / (p + eps) if t in lower_is_better else p / (d + eps)
    dims: dict[str, list] = {}
    for t, d in dimension_of.items():
        dims.setdefault(d, []).append(reps[t])
    per_dim = {d: np.mean(v, axis=0) for d, v in dims.items()}
    total = np.mean(list(per_dim.values()), axis=0)
    sd = lambda x: float(np.std(x, ddof=1))  # noqa: E731
    return {"tasks": {t: sd(v) for t, v in reps.items()}, "dimensions": {d: sd(v) for d, v in per_dim.items()},
            "total": sd(total), "scores": score_se, "iters": iters}
