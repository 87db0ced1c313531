"""OASIS's selection experiments (Tables 1, 2 and 4 form) read from a results table (``Study.selection_results``):
per pruner and selector (random, entropy, synthetic, OASIS), perplexities and commonsense accuracies over seeds,
the paper's Δ, and each "OASIS improves on X" claim decided by a paired test over seeds. Pure pandas/scipy.

Two claims per pruner and baseline X, each a paired t-test over the seeds both have (seed i of OASIS against seed i
of X: the same pool draw, so the pairing removes the pool's own variation), at α = ``verdicts.ALPHA``:
- perplexity: the mean over the perplexity tasks of log ppl(OASIS) − log ppl(X) is below 0;
- accuracy (the paper's Δ): the mean over the commonsense tasks of acc(OASIS) − acc(X), in points, is above 0.
``holds``: significant in the claimed direction; ``fails``: significant the other way; else ``inconclusive``
(also with fewer than ``verdicts.MIN_SEEDS`` seeds).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .verdicts import ALPHA, MIN_SEEDS, _verdict, borrowed, drawn, paired, verdict_block

SELECTORS = ("random", "entropy", "synthetic", "oasis")
PPL = ("ck_wikitext2_ppl", "ck_ptb_ppl", "ck_lambada_ppl")
ACC = ("ck_arc_easy_val", "ck_winogrande", "ck_hellaswag", "ck_boolq", "ck_piqa_val")


def tasks(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The perplexity and accuracy tasks the runs of ``df`` have scores for."""
    have = [c.removeprefix("score_") for c in df.columns if c.startswith("score_") and df[c].notna().any()]
    return [t for t in PPL if t in have], [t for t in ACC if t in have]


def _summaries(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``log_ppl`` (mean over perplexity tasks of log ppl) and ``acc`` (mean over accuracy tasks,
    points) from its ``score_<task>`` columns."""
    ppl, acc = tasks(df)
    d = df.copy()
    d["log_ppl"] = np.log(d[[f"score_{t}" for t in ppl]].astype(float)).mean(axis=1) if ppl else np.nan
    d["acc"] = d[[f"score_{t}" for t in acc]].astype(float).mean(axis=1) * 100 if acc else np.nan
    return d


def per_seed(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, selector, seed): ``log_ppl`` (mean over perplexity tasks of log ppl) and ``acc`` (mean
    over accuracy tasks, points), beside every task's score."""
    ppl, acc = tasks(df)
    d = _summaries(df)
    cols = ["method", "selector", "seed", "log_ppl", "acc", *[f"score_{t}" for t in ppl + acc]]
    return d[cols].sort_values(["method", "selector", "seed"]).reset_index(drop=True)


def table(df: pd.DataFrame) -> pd.DataFrame:
    """Tables 1/2 form: per method and selector, every task's mean ± sd over seeds (perplexities as they are,
    accuracies in %), and Δ = mean accuracy minus random's (points)."""
    ppl, acc = tasks(df)
    d = per_seed(df)
    rows = []
    for (m, s), g in d.groupby(["method", "selector"], sort=False):
        row = {"method": m, "selector": s, "seeds": len(g)}
        for t in ppl:
            row[t] = f"{g[f'score_{t}'].mean():.1f} ± {g[f'score_{t}'].std(ddof=1):.1f}" if len(g) > 1 else \
                f"{g[f'score_{t}'].mean():.1f}"
        for t in acc:
            v = g[f"score_{t}"] * 100
            row[t] = f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(g) > 1 else f"{v.mean():.1f}"
        base = d[(d["method"] == m) & (d["selector"] == "random")]["acc"].mean()
        row["Δ acc vs random"] = g["acc"].mean() - base if s != "random" else np.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    order = {s: i for i, s in enumerate(SELECTORS)}
    return out.sort_values(["method", "selector"], key=lambda c: c.map(order) if c.name == "selector" else c) \
        .reset_index(drop=True)


def _paired(a: pd.Series, b: pd.Series, sign: int, claim: str, test: str, unit: str) -> dict:
    """``verdicts.paired`` (a − b over the seeds both have, paired t-test) read against the claimed ``sign``."""
    r = paired(a, b)
    n = r["n"]
    if n < MIN_SEEDS:
        return {"claim": claim, "test": test, "verdict": "inconclusive", "numbers": {"n": n},
                "text": f"{n} paired seed(s): too few to test"}
    agree = r["agree"] if np.sign(r["mean"]) == sign else n - r["agree"]
    verdict = _verdict(np.sign(r["mean"]) * sign, bool(np.isfinite(r["p"]) and r["p"] < ALPHA))
    return {"claim": claim, "test": test, "verdict": verdict, "numbers": r | {"agree": agree},
            "text": f"{r['mean']:+.3f} ± {r['sd']:.3f} {unit} over {n} seeds ({agree}/{n} in the claimed "
                    f"direction), paired t p = {r['p']:.3f}"}


def verdicts(df: pd.DataFrame) -> dict:
    """Every "OASIS improves on X" claim (module doc) for every method with OASIS runs."""
    return seed_verdicts(per_seed(df))


def seed_verdicts(d: pd.DataFrame) -> dict:
    """``verdicts`` from the ``per_seed`` table."""
    found = {}
    for m in sorted(d["method"].unique()):
        mine = d[d["method"] == m]
        oasis = mine[mine["selector"] == "oasis"].set_index("seed")
        if not len(oasis):
            continue
        for x in SELECTORS[:-1]:
            other = mine[mine["selector"] == x].set_index("seed")
            if not len(other):
                continue
            if oasis["log_ppl"].notna().any():
                found[f"ppl/{m}/{x}"] = _paired(
                    oasis["log_ppl"], other["log_ppl"], -1, f"OASIS lowers perplexity against {x} ({m})",
                    "paired t-test over seeds, mean log ppl over the perplexity tasks", "log ppl")
            if oasis["acc"].notna().any():
                found[f"acc/{m}/{x}"] = _paired(
                    oasis["acc"], other["acc"], 1, f"OASIS raises commonsense accuracy against {x} ({m})",
                    "paired t-test over seeds, mean accuracy over the commonsense tasks (Δ)", "pts")
    return found


def drift_table(folder, profile: str, keys: set[str] | None = None) -> pd.DataFrame:
    """Measured cross-kernel drift of the profile's selection runs (``keys``: those of its selection groups;
    ``bench/drift_runs.py --kinds select`` rows in ``folder/<profile>-*.jsonl``; the selection is made again on the
    variant's kernels): ``drift_frame``."""
    from .analysis import drift_rows

    return drift_frame([r for r in drift_rows(folder, profile, keys) if r.get("kind") == "select"])


def drift_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per measured selection run and variant: method, selector, seed, variant, whether the variant selected
    the same samples, and the variant's minus the reference's ``log_ppl`` and ``acc`` (points)."""
    cols = ["method", "selector", "seed", "variant", "same_calibration", "log_ppl", "acc"]
    if not rows:
        return pd.DataFrame(columns=cols)
    ids = [{"method": r["method"], "selector": r["label"].split(":")[1], "seed": r["seed"], "variant": r["variant"],
            "same_calibration": r.get("same_calibration")} for r in rows]
    ref, var = (_summaries(pd.DataFrame([{f"score_{t}": v for t, v in r["scores"][side].items()} for r in rows]))
                for side in ("reference", "variant"))
    return pd.DataFrame(ids).assign(log_ppl=(var["log_ppl"] - ref["log_ppl"]).to_numpy(),
                                    acc=(var["acc"] - ref["acc"]).to_numpy())[cols]


def perturb(d: pd.DataFrame, drift: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The ``per_seed`` table as other kernels could have computed it: each run's ``log_ppl`` and ``acc`` moved by
    one measured run's drift (both from the same run) drawn with replacement from the measured runs of its pruner and
    selector (of its pruner when that selector was not measured, of all runs when the pruner was not).
    ``verdicts.under_drift(found, per_seed(df), drift, perturb, seed_verdicts)`` checks the verdicts against it."""
    out, cols = d.copy(), ["log_ppl", "acc"]
    for (method, selector), idx in out.groupby(["method", "selector"]).groups.items():
        out.loc[idx, cols] = out.loc[idx, cols].to_numpy(float) + drawn(drift, cols, len(idx), rng, method=method,
                                                                        selector=selector)
    return out


def drift_markdown(drift: pd.DataFrame, runs: pd.DataFrame | None = None) -> str:
    """The measured cross-kernel drift of the selection runs per pruner and selector (``drift_table``); with the
    ``per_seed`` table ``runs``, which of its pruners and selectors borrow others' drift (``perturb``)."""
    if not len(drift):
        return ("No cross-kernel drift of the selection runs measured (`python bench/drift_runs.py --kinds select "
                "--suite oasis`): the selection verdicts are not checked against it.\n")
    rows = [{"pruner": m, "selector": s, "runs": len(d),
             "same samples": f"{int(d['same_calibration'].fillna(False).sum())}/{len(d)}",
             "Δ log ppl": f"{d['log_ppl'].mean():+.4f} (max {d['log_ppl'].abs().max():.4f})",
             "Δ acc (pts)": f"{d['acc'].mean():+.2f} (max {d['acc'].abs().max():.2f})"}
            for (m, s), d in drift.groupby(["method", "selector"])]
    variants = ", ".join(sorted(drift["variant"].unique()))
    return (f"Cross-kernel drift of the selection runs ({variants}: the set selected and the model pruned on the "
            f"variant's kernels, evaluated here; mean over runs, max |Δ|):\n\n"
            + pd.DataFrame(rows).to_markdown(index=False) + "\n"
            + ("" if runs is None else "\n" + borrowed(runs, drift, ["method", "selector"])))


def verdicts_markdown(found: dict, profile: str, coverage: dict | None = None) -> str:
    """The verdict table, with how many of the selection runs the store holds (``Study.coverage``)."""
    done = (f" From {coverage['done']} of the {coverage['total']} selection runs of the profile"
            f"{' (the rest not computed yet: the claims over them are missing)' if coverage['missing'] else ''}."
            if coverage else "")
    return verdict_block(found, f"OASIS's selection claims on profile `{profile}` (each pruner with calibration sets "
                                f"selected from one pool by random draw, token entropy, synthetic generation and "
                                f"OASIS), each decided by a paired test over seeds (α = {ALPHA}; "
                                f"`calibkit/selection_study.py`).{done}", "OASIS")


def trajectories(records: list[dict]) -> pd.DataFrame:
    """Long table of OASIS weight trajectories (``select.planted.planted_runs`` records): one row per (condition,
    step, pool sample) with ``weight``, the sample's ``tier`` and the condition's ``label``."""
    rows = []
    for r in records:
        for t in r["trajectory"]:
            for i, w in enumerate(t["p"]):
                rows.append({"label": r["label"], "step": t["step"], "sample": r["ids"][i], "tier": r["tiers"][i],
                             "weight": w, "loss": t["loss"]})
    return pd.DataFrame(rows)


def tier_weights(records: list[dict]) -> pd.DataFrame:
    """Per condition and tier: the final mean weight, and its ratio to uniform (1 / pool size)."""
    rows = []
    for r in records:
        n = len(r["weights"])
        for tier in dict.fromkeys(r["tiers"]):
            w = [x for x, t in zip(r["weights"], r["tiers"]) if t == tier]
            rows.append({"condition": r["label"], "tier": tier, "samples": len(w), "final mean weight": np.mean(w),
                         "x uniform": np.mean(w) * n})
    return pd.DataFrame(rows)


def planted_tiers(sample_df: pd.DataFrame, method: str, per_tier: int = 3) -> dict[int, str]:
    """``per_tier`` samples of each tier of ``method``'s single-sample prunes (``samples.tiers``), the most typical
    ones (closest to the tier's median perplexity), as {sample id: tier}."""
    from .samples import TIERS, singles, tiers

    one = singles(sample_df, method)
    tier = tiers(one)
    out = {}
    for t in TIERS:
        s = one[tier == t]
        pick = (s - s.median()).abs().sort_values(kind="stable").index[:per_tier]
        out |= {int(i): t for i in pick}
    return dict(sorted(out.items()))
