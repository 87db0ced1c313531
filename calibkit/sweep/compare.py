"""Reproduction check: every recomputed record against the committed record of the same run key.

A run *reproduces* when each dimension's retention and S_total differ by at most ``RETENTION_TOL`` points (of %)
and each profile metric by at most ``PROFILE_TOL`` (relative). Why these tolerances:
- on one machine a run is exact (pruning is deterministic across thread counts; evaluation is deterministic), so
  any difference there is a bug, and ``exact`` counts the runs whose retention and profile are bit-identical;
- across machines, CPU kernels differ and give another, equally valid pruned model. ``bench/drift_runs.py`` pruned
  22 committed runs (SparseGPT and Wanda, 60 %, the 11 main-grid sets, seed 0) on AVX2 instead of AVX-512 kernels
  (``results/drift/embedded-avx2.jsonl``). SparseGPT's retention moved by RMS 0.61 (General), 2.62 (Commonsense),
  0.90 (Code), 0.84 (Math) and 0.79 (S_total) points, at most 0.94 / 6.05 / 1.97 / 1.79 / 1.78; Wanda's by at most
  0.79 (any column). The tolerance of each column is 4 x SparseGPT's RMS, rounded up to half a point: a drift of that
  size has a ~6e-5 chance per column under a normal model, so a full cross-machine reproduction (348 runs x 5
  columns) is expected to flag 0.1 runs for kernels alone. Within it, a cross-machine difference is not a
  reproducible difference; one above it is reported as not reproduced. ``tests/test_sweep.py`` checks that the
  committed measurement stays inside these tolerances.
- OASIS's runs are evaluated on another suite (``oasis``: perplexities and five 100-item accuracy tasks near
  chance at these sparsities) and drift more: over 54 measured OASIS runs the SparseGPT selection runs moved by RMS
  2.58 (General), 8.77 (Commonsense) and 5.02 (S_total) points (max 3.38 / 16.24 / 8.17; OASIS selected other samples
  on AVX2), per-sample and whole-set prunes by at most 1.69. Their tolerance (``SUITE_TOL``) is set the same way from
  the pruner and kind of run that drift most, so a cross-machine check of that suite is wide by measurement.
A record scored by another likelihood scorer than its committed one (``scorer``) is compared all the same and counted
in the summary: calibkit's scorer and lm-eval's differ by bf16 rounding (dense bits per byte +2e-5 to +3.3e-4
relative on SmolLM2), far inside the tolerance, but not bit for bit; on few-item accuracy tasks a near-tied item can
flip (an OASIS NIRVANA run moved 1.48 pts of retention by rescoring alone, its dense scores too).
"""
from __future__ import annotations

import math
import os

from ..profile import METRICS as PROFILE_METRICS
from .store import Store, evaluated_items

# points of %, per column: 4 x the RMS of SparseGPT's measured cross-kernel drift, rounded up to 0.5 (docstring)
RETENTION_TOL = {"S_General": 2.5, "S_Commonsense": 10.5, "S_Code": 4.0, "S_Math": 3.5, "S_total": 3.5}
# suites other than the capability study's: the same rule over their own measured drift (docstring)
SUITE_TOL = {"oasis": RETENTION_TOL | {"S_General": 10.5, "S_Commonsense": 35.5, "S_total": 20.5}}
PROFILE_TOL = 0.01  # relative


def tolerance(suite: str | None) -> dict[str, float]:
    """The retention tolerance (points, per column) of runs evaluated on ``suite``."""
    return SUITE_TOL.get(suite, RETENTION_TOL)


def scorer(rec: dict) -> str:
    """The likelihood scorer of a record (records written before scorers were recorded used lm-eval's path)."""
    return rec.get("scorer", "lm-eval-hflm")


def retention_points(r: dict) -> dict[str, float]:
    """A run's retention (``eval.retention.retention``) as points of %: S_<dimension> and S_total."""
    return {**{f"S_{d}": 100 * v for d, v in r["dimensions"].items()}, "S_total": 100 * r["total"]}


def _rel(a, b) -> float:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)) or (isinstance(b, float) and math.isnan(b)):
        return 0.0 if (a is None) == (b is None) else math.inf
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def within_tolerance(a: dict[str, float], b: dict[str, float], suite: str | None = None) -> bool:
    """Whether two runs' retention (points, ``retention_points``) differ by at most the suite's ``tolerance`` in
    every column."""
    tol = tolerance(suite)
    return all(abs(a[k] - b.get(k, math.inf)) <= tol[k] for k in a)


def compare_records(committed: dict, fresh: dict) -> dict:
    """Differences of one run: max |Δ retention| (pts), max relative |Δ profile metric|, and whether exact. A run
    evaluated on other items than its committed record, or calibrated on another set (token digests differ, where
    both records carry one), measured something else: it does not count as reproduced."""
    a, b = retention_points(committed["retention"]), retention_points(fresh["retention"])
    d_ret = max(abs(a[k] - b.get(k, math.inf)) for k in a)
    pa, pb = committed.get("profile") or {}, fresh.get("profile") or {}
    d_prof = max((_rel(pa.get(m), pb.get(m)) for m in PROFILE_METRICS), default=0.0)
    exact = d_ret == 0 and d_prof == 0 and committed["scores"] == fresh["scores"]
    same_items = evaluated_items(committed) == evaluated_items(fresh)
    digests = [r["calibration"].get("tokens_sha256") for r in (committed, fresh)]
    same_set = None if None in digests else digests[0] == digests[1]  # records before 2026-11-29: no digest
    comparable = same_items and same_set is not False
    return {"retention_pts": d_ret, "profile_rel": d_prof, "exact": exact and comparable,
            "reproduced": within_tolerance(a, b, committed["config"].get("suite")) and d_prof <= PROFILE_TOL
            and comparable,
            "same_items": same_items, "same_calibration": same_set, "scorers": [scorer(committed), scorer(fresh)]}


def _fresh_cost(rec: dict) -> dict:
    """What the recomputation cost and where it ran: seconds per stage, CPU share, kernels, package set."""
    env = rec.get("environment") or {}
    return ({f"fresh_{stage}_s": sec for stage, sec in rec.get("seconds", {}).items()}
            | {f"fresh_cpu_share_{part}": v for part, v in (rec.get("cpu_share") or {}).items()}
            | {"fresh_finished": rec.get("finished"), "fresh_cpu": (env.get("torch") or {}).get("cpu_capability"),
               "fresh_packages_sha256": (env.get("packages") or {}).get("sha256")})


def compare_stores(committed_root: str | os.PathLike, fresh_root: str | os.PathLike,
                   keys: set[str] | None = None) -> dict:
    """Every committed run (of ``keys`` when given: the runs of some experiment groups) against its recomputed
    record. ``missing``: committed keys the fresh store lacks."""
    committed = {r["key"]: r for r in Store(committed_root).records() if keys is None or r["key"] in keys}
    fresh = {r["key"]: r for r in Store(fresh_root).records()}
    rows = {k: compare_records(committed[k], fresh[k]) | {"label": committed[k]["calibration"]["label"],
                                                          "method": committed[k]["config"]["method"],
                                                          "sparsity": committed[k]["config"]["sparsity"],
                                                          "seed": committed[k]["config"]["seed"]}
            | _fresh_cost(fresh[k]) for k in sorted(committed) if k in fresh}
    return {"runs": rows, "missing": sorted(set(committed) - set(fresh)), "committed": len(committed),
            "extra": sorted(set(fresh) - set(committed))}


def comparison_table(result: dict):
    """One row per compared run (``compare_stores``): its differences and what the recomputation cost."""
    import pandas as pd

    return pd.DataFrame([{"key": k} | r | {"scorers": " → ".join(r["scorers"])} for k, r in result["runs"].items()])


def summary_line(result: dict) -> str:
    rows = result["runs"].values()
    k = sum(r["reproduced"] for r in rows)
    exact = sum(r["exact"] for r in rows)
    d_ret = max((r["retention_pts"] for r in rows), default=float("nan"))
    d_prof = max((r["profile_rel"] for r in rows), default=float("nan"))
    missing = f"; {len(result['missing'])} committed runs not recomputed yet" if result["missing"] else ""
    changed = sorted({" → ".join(r["scorers"]) for r in rows if r["scorers"][0] != r["scorers"][1]})
    n_changed = sum(r["scorers"][0] != r["scorers"][1] for r in rows)
    scored = f"; {n_changed} runs rescored ({', '.join(changed)}: not bit-identical by design)" if changed else ""
    other = sum(not r["same_items"] for r in rows)
    scored += f"; {other} runs evaluated on other items than committed (not comparable)" if other else ""
    sets = sum(r.get("same_calibration") is False for r in rows)
    scored += f"; {sets} runs calibrated on another set than committed (token digests differ)" if sets else ""
    groups = f" of groups {', '.join(result['groups'])}" if result.get("groups") else ""
    return (f"reproduced {k}/{result['committed']} runs{groups}: max |Δ retention| {d_ret:.2f} pts, max |Δ profile| "
            f"{d_prof:.2g} (relative); {exact} bit-identical; tolerance {_points(RETENTION_TOL)} pts retention ("
            + "; ".join(f"{suite} suite: " + _points({k: v for k, v in tol.items() if v != RETENTION_TOL[k]})
                        for suite, tol in SUITE_TOL.items())
            + f"), {PROFILE_TOL:.0%} profile{missing}{scored}")


def _points(tol: dict[str, float]) -> str:
    return ", ".join(f"{k.removeprefix('S_')} {v:g}" for k, v in tol.items())
