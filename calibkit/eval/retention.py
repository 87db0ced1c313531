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
