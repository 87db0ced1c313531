"""Per-sample analysis of calibration quality (OASIS §3.2, Appendix B), as pure pandas/scipy functions of a table of
prunes with single samples and pairs. Verdicts follow ``calibkit.verdicts``: holds / fails / inconclusive at ALPHA.

Input: one row per prune, columns ``samples`` (a tuple of sample ids: one for a single-sample prune, two for a
pair), ``method`` and ``ppl`` (post-pruning perplexity, lower is better; any other lower-is-better quality works).
Sample ids name sequences of one draw (one calibration seed: sweeps refuse several seeds in a ``samples:`` group);
repeated prunes of the same sample (a pruner with randomness of its own) are averaged.

Replication: the tests treat pairs and samples as independent replicates; pairs share members (30 pairs from 24
samples), so their p-values are somewhat optimistic — a verdict near α deserves that caveat.

Tier rule (stated, not tuned): per method, the single-sample perplexities (mean over seeds) are ranked and cut into
thirds — the best third "golden", the middle "mediocre", the worst "detrimental" (OASIS names the tiers, not the
cut; thirds are the rule that needs no threshold).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .verdicts import ALPHA, borrowed, drawn, spearman_ci, verdict_block

TIERS = ("golden", "mediocre", "detrimental")


def singles(df: pd.DataFrame, method: str) -> pd.Series:
    """Mean perplexity per sample id of the single-sample prunes of ``method``."""
    d = df[(df["method"] == method) & (df["samples"].map(len) == 1)]
    return d.groupby(d["samples"].map(lambda s: s[0]))["ppl"].mean().sort_index()


def tiers(ppl: pd.Series) -> pd.Series:
    """Tier of each sample by thirds of its rank (lowest perplexity = golden); ties broken by sample id."""
    order = ppl.sort_values(kind="stable").index
    n = len(order)
    cut = [round(n / 3), round(2 * n / 3)]
    labels = [TIERS[0] if i < cut[0] else TIERS[1] if i < cut[1] else TIERS[2] for i in range(n)]
    return pd.Series(labels, index=order).reindex(ppl.index)


def pair_table(df: pd.DataFrame, method: str) -> pd.DataFrame:
    """Every pair prune of ``method`` whose two members were also pruned with alone, with the members' tiers and
    perplexities: ``best_single`` (the better member alone), ``better_member`` (the tier-wise higher member alone),
    ``members_mean`` (the mean of the two alone) and ``delta = ppl(pair) - best_single`` (< 0: the pair beats both
    members). Pairs with a member lacking its single-sample prune (a store still filling) are left out; their count
    is ``attrs["untiered"]``."""
    one = singles(df, method)
    tier = tiers(one)
    d = df[(df["method"] == method) & (df["samples"].map(len) == 2)].copy()
    rank = {t: i for i, t in enumerate(TIERS)}
    a, b = d["samples"].map(lambda s: s[0]), d["samples"].map(lambda s: s[1])
    d["tier_a"], d["tier_b"] = a.map(tier), b.map(tier)
    d["ppl_a"], d["ppl_b"] = a.map(one), b.map(one)
    untiered = int((d["tier_a"].isna() | d["tier_b"].isna()).sum())
    d = d[d["tier_a"].notna() & d["tier_b"].notna()].copy()
    d["kind"] = np.where(d["tier_a"] == d["tier_b"], "intra", "inter")
    d["pair"] = [" + ".join(sorted((x, y), key=rank.get)) for x, y in zip(d["tier_a"], d["tier_b"])]
    d["best_single"] = d[["ppl_a", "ppl_b"]].min(axis=1)
    higher_a = d["tier_a"].map(rank) <= d["tier_b"].map(rank)
    d["better_member"] = np.where(higher_a, d["ppl_a"], d["ppl_b"])
    d["members_mean"] = d[["ppl_a", "ppl_b"]].mean(axis=1)
    d["delta"] = d["ppl"] - d["best_single"]
    d.attrs["untiered"] = untiered
    return d


def _log_ratio(pair: pd.Series, ref: pd.Series) -> np.ndarray:
    """log(ppl(pair) / ppl(reference)): scale-free, so that the detrimental pairs' large perplexities do not
    dominate the ranks; a diverged pair (inf) stays the largest change."""
    x = np.log(pair.to_numpy(float)) - np.log(ref.to_numpy(float))
    return np.where(np.isposinf(x), np.finfo(float).max, x)


def _wilcoxon(x: np.ndarray, claim_sign: int, claim: str, test: str, what: str) -> dict:
    from scipy.stats import wilcoxon

    x = x[~np.isnan(x)]
    if len(x) < 6 or np.all(x == 0):  # below 6, no outcome of the signed-rank test reaches p < 0.05
        return {"claim": claim, "test": test, "verdict": "inconclusive", "numbers": {"n": len(x)},
                "text": f"{len(x)} {what}: too few to test"}
    p = float(wilcoxon(x).pvalue)
    med = float(np.median(x))
    agree = int((np.sign(x) == claim_sign).sum())
    verdict = ("holds" if p < ALPHA and np.sign(med) == claim_sign else
               "fails" if p < ALPHA and np.sign(med) == -claim_sign else "inconclusive")
    return {"claim": claim, "test": test, "verdict": verdict,
            "numbers": {"n": len(x), "median_log_ratio": med, "p": p, "agree": agree},
            "text": f"median ppl ratio {np.exp(med):.3f} over {len(x)} {what} ({agree} in the claimed direction), "
                    f"Wilcoxon p = {p:.3f}"}


def synergy(df: pd.DataFrame, method: str) -> dict:
    """Intra-tier synergy (OASIS Figure 3, top): a pair from one tier prunes better than the better of its two
    members alone. Wilcoxon signed-rank test of log(ppl(pair) / ppl(better member)) over the intra-tier pairs."""
    d = pair_table(df, method)
    d = d[d["kind"] == "intra"]
    return _wilcoxon(_log_ratio(d["ppl"], d["best_single"]), -1,
                     f"intra-tier synergy ({method}): a same-tier pair beats its better member alone",
                     "Wilcoxon signed-rank, log ppl(pair) / ppl(better member), intra-tier pairs", "intra-tier pairs")


def degradation(df: pd.DataFrame, method: str) -> dict:
    """Inter-tier degradation as OASIS shows it (Figure 3, bottom): a pair mixing tiers prunes worse than its
    higher-tier member alone. Wilcoxon of log(ppl(pair) / ppl(higher-tier member)) over the inter-tier pairs.
    A pair that merely averaged its members would already satisfy this; ``poisoning`` asks for more."""
    d = pair_table(df, method)
    d = d[d["kind"] == "inter"]
    return _wilcoxon(_log_ratio(d["ppl"], d["better_member"]), 1,
                     f"inter-tier degradation ({method}): a mixed-tier pair is worse than its higher-tier member",
                     "Wilcoxon signed-rank, log ppl(pair) / ppl(higher-tier member), inter-tier pairs",
                     "inter-tier pairs")


def poisoning(df: pd.DataFrame, method: str) -> dict:
    """The stronger reading of OASIS's "poisoning": a mixed-tier pair is worse than the mean of its two members
    alone, i.e. the lower-tier sample costs more than averaging would. Wilcoxon of log(ppl(pair) / mean of the
    members' ppl) over the inter-tier pairs."""
    d = pair_table(df, method)
    d = d[d["kind"] == "inter"]
    return _wilcoxon(_log_ratio(d["ppl"], d["members_mean"]), 1,
                     f"poisoning ({method}): a mixed-tier pair is worse than the mean of its members",
                     "Wilcoxon signed-rank, log ppl(pair) / mean ppl(members), inter-tier pairs", "inter-tier pairs")


def context_dependency(df: pd.DataFrame, a: str, b: str, iters: int = 2000, seed: int = 0) -> dict:
    """Which sample is golden depends on the pruner (OASIS Figure 6): Spearman rho between two pruners' per-sample
    perplexities (finite ones) with a bootstrap 95 % CI over samples. The claim ("not universal") holds when the CI
    excludes rho = 1 by a margin, i.e. its upper end is below 0.9; fails when the lower end is above 0.9."""
    x, y = singles(df, a), singles(df, b)
    common = x.index.intersection(y.index)
    x, y = x[common].to_numpy(float), y[common].to_numpy(float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    claim = f"sample quality depends on the pruner ({a} vs {b})"
    test = "Spearman rho of per-sample perplexity, bootstrap 95 % CI over samples; holds if the CI is below 0.9"
    r = (spearman_ci(x, y, np.random.default_rng(seed), iters)
         if len(x) >= 5 and len(set(x)) > 1 and len(set(y)) > 1 else None)
    if r is None or np.isnan(r["lo"]):
        return {"claim": claim, "test": test, "verdict": "inconclusive", "numbers": {"n": len(x)},
                "text": f"{len(x)} samples with finite perplexity under both: too few or constant"}
    rho, lo, hi = r["rho"], r["lo"], r["hi"]
    verdict = "holds" if hi < 0.9 else "fails" if lo > 0.9 else "inconclusive"
    return {"claim": claim, "test": test, "verdict": verdict, "numbers": {"rho": rho, "lo": lo, "hi": hi,
                                                                          "n": len(x)},
            "text": f"rho {rho:+.2f} [{lo:+.2f}, {hi:+.2f}] over {len(x)} samples"}


def tier_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per method and tier: how many samples, their perplexity range and median, and the sample ids."""
    rows = []
    for m in sorted(df["method"].unique()):
        one = singles(df, m)
        if one.empty:
            continue
        tier = tiers(one)
        for t in TIERS:
            p = one[tier == t]
            rows.append({"method": m, "tier": t, "samples": len(p), "ppl_min": p.min(), "ppl_median": p.median(),
                         "ppl_max": p.max(), "ids": " ".join(str(i) for i in p.sort_values().index)})
    return pd.DataFrame(rows)


def pair_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per method and tier combination (Figure 3 form): pairs, median perplexity of the pair, of its better member
    alone, of its higher-tier member alone, and how many pairs beat their better member."""
    rows = []
    for m in sorted(df["method"].unique()):
        d = pair_table(df, m)
        for (pair, kind), g in d.groupby(["pair", "kind"]):
            rows.append({"method": m, "pair": pair, "kind": kind, "pairs": len(g), "ppl_pair": g["ppl"].median(),
                         "ppl_best_single": g["best_single"].median(),
                         "ppl_higher_tier_member": g["better_member"].median(),
                         "beat_best_single": int((g["delta"] < 0).sum())})
    return pd.DataFrame(rows)


def sample_verdicts(df: pd.DataFrame) -> dict:
    """OASIS's per-sample claims on the prunes of ``df``: intra-tier synergy and inter-tier degradation for every
    method with pair prunes, and context dependency for every two methods with single-sample prunes."""
    methods = sorted(df["method"].unique())
    with_pairs = [m for m in methods if (df.loc[df["method"] == m, "samples"].map(len) == 2).any()]
    found = {}
    for m in with_pairs:
        found[f"synergy/{m}"] = synergy(df, m)
        found[f"degradation/{m}"] = degradation(df, m)
        found[f"poisoning/{m}"] = poisoning(df, m)
    for i, a in enumerate(methods):
        for b in methods[i + 1:]:
            found[f"context/{a}-{b}"] = context_dependency(df, a, b)
    return found


def drift_table(folder, profile: str, keys: set[str] | None = None, task: str = "ck_ptb_ppl") -> pd.DataFrame:
    """Measured cross-kernel drift of the profile's per-sample and macro prunes (``keys``: those of its sample and
    macro groups; ``bench/drift_runs.py`` rows): one row per run and variant — method, label, kind (samples or
    source), seed, variant and ``log_ppl``, the variant's minus the reference's log perplexity on ``task``. A run
    whose perplexity is not finite on either side has no log ratio: it is left out and named in a warning."""
    import warnings

    from .analysis import drift_rows

    rows = [r for r in drift_rows(folder, profile, keys) if r.get("kind") in ("samples", "source")
            and task in r.get("scores", {}).get("reference", {})]
    d = pd.DataFrame([{k: r[k] for k in ("method", "label", "kind", "seed", "variant")}
                      | {"log_ppl": float(np.log(r["scores"]["variant"][task] / r["scores"]["reference"][task]))}
                      for r in rows], columns=["method", "label", "kind", "seed", "variant", "log_ppl"])
    bad = ~np.isfinite(d["log_ppl"].to_numpy(float))
    if bad.any():
        warnings.warn(f"drift rows without a finite perplexity ratio left out: {', '.join(d.loc[bad, 'label'])}")
    return d[~bad].reset_index(drop=True)


def perturb(df: pd.DataFrame, drift: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The prunes as other kernels could have computed them: each prune's ``ppl`` times exp(Δ log ppl) of one
    measured run drawn with replacement from the measured runs of its pruner (of all runs for a pruner without).
    ``verdicts.under_drift(found, df, drift, perturb, sample_verdicts)`` checks the verdicts against it (tiers are
    re-cut on every perturbed table)."""
    out = df.copy()
    for method, idx in out.groupby("method").groups.items():
        out.loc[idx, "ppl"] = out.loc[idx, "ppl"].to_numpy(float) * np.exp(
            drawn(drift, ["log_ppl"], len(idx), rng, method=method)[:, 0])
    return out


def drift_markdown(drift: pd.DataFrame, samples: pd.DataFrame | None = None, macro: pd.DataFrame | None = None) -> str:
    """The measured cross-kernel drift of the per-sample and macro prunes per pruner and kind (``drift_table``); with
    the ``samples`` and ``macro`` tables, which of their pruners borrow others' drift (``perturb``)."""
    if not len(drift):
        return ("No cross-kernel drift of the per-sample or macro prunes measured (`python bench/drift_runs.py "
                "--kinds samples,source --suite oasis`): their verdicts are not checked against it.\n")
    rows = [{"pruner": m, "prunes": {"samples": "chosen samples", "source": "whole sets"}.get(k, k), "runs": len(d),
             "Δ log ppl": f"{d['log_ppl'].mean():+.4f} ± {d['log_ppl'].std(ddof=1) if len(d) > 1 else 0:.4f} "
                          f"(max {d['log_ppl'].abs().max():.4f})"}
            for (m, k), d in drift.groupby(["method", "kind"])]
    variants = ", ".join(sorted(drift["variant"].unique()))
    return (f"Cross-kernel drift of the prunes ({variants}: pruned on the variant's kernels, evaluated here; mean ± sd "
            f"over runs, max |Δ|):\n\n" + pd.DataFrame(rows).to_markdown(index=False) + "\n"
            + "".join(f"\n{kind} prunes: {b}" for kind, t in (("samples", samples), ("source", macro))
                      if t is not None and (b := borrowed(t, drift[drift["kind"] == kind], ["method"]))))


def verdicts_markdown(found: dict, profile: str) -> str:
    return verdict_block(found, f"OASIS's claims on profile `{profile}` (single-sample and pair prunes, and whole "
                                f"sets of several sizes, lengths and sources; quality = post-pruning perplexity), "
                                f"each decided by its stated test (α = {ALPHA}; `calibkit/samples.py`):", "OASIS")


# --- the macro view (OASIS Figure 2 form): whole sets varying in size, length, random draw and source ----------------

def _trend(x: np.ndarray, y: np.ndarray, what: str, method: str) -> dict:
    from scipy.stats import spearmanr

    claim = f"more calibration {what} do not improve pruning ({method})"
    test = f"Spearman rho of {what} vs post-pruning perplexity over runs (seeds as replicates)"
    if len(set(x)) < 2 or len(x) < 5:
        return {"claim": claim, "test": test, "verdict": "inconclusive", "numbers": {"n": len(x)},
                "text": f"{len(x)} runs over {len(set(x))} values: too few"}
    rho, p = (float(v) for v in spearmanr(x, y))
    verdict = "fails" if p < ALPHA and rho < 0 else "holds" if p < ALPHA and rho > 0 else "inconclusive"
    return {"claim": claim, "test": test, "verdict": verdict, "numbers": {"rho": rho, "p": p, "n": len(x)},
            "text": f"rho {rho:+.2f}, p = {p:.3f} over {len(x)} runs ({', '.join(map(str, sorted(set(x))))})"
                    + (" — more helps" if verdict == "fails" else " — more hurts" if verdict == "holds" else "")}


def macro_verdicts(df: pd.DataFrame, reference: str = "ptb", n: int = 16, seqlen: int = 256) -> dict:
    """OASIS §3.1's macro claims on whole-set prunes (``Study.macro_results``), per method: more samples (runs of
    ``reference`` at ``seqlen``) and longer sequences (``reference`` at ``n``) do not lower perplexity (Spearman:
    fails if they significantly do, holds if they significantly raise it, else inconclusive); the source dominates
    (runs at ``n`` x ``seqlen``: Kruskal-Wallis over sources with the random draws as replicates — holds if the
    sources differ at α, and the largest source-mean gap exceeds the largest within-source seed range)."""
    from scipy.stats import kruskal

    found = {}
    for m in sorted(df["method"].unique()):
        d = df[df["method"] == m]
        ref = d[d["label"] == reference]
        by_n = ref[ref["seqlen"] == seqlen]
        found[f"size/{m}"] = _trend(by_n["n"].to_numpy(), by_n["ppl"].to_numpy(float), "samples", m)
        by_len = ref[ref["n"] == n]
        found[f"length/{m}"] = _trend(by_len["seqlen"].to_numpy(), by_len["ppl"].to_numpy(float), "tokens per sample", m)
        src = d[(d["n"] == n) & (d["seqlen"] == seqlen)]
        groups = [g["ppl"].to_numpy(float) for _, g in src.groupby("label")]
        claim = f"the calibration source matters more than the random draw ({m})"
        test = "Kruskal-Wallis over sources (random draws as replicates); source-mean gap vs within-source seed range"
        if len(groups) < 2 or min(map(len, groups)) < 2:
            found[f"source/{m}"] = {"claim": claim, "test": test, "verdict": "inconclusive",
                                    "numbers": {"sources": len(groups)}, "text": "too few sources or draws"}
            continue
        p = float(kruskal(*groups).pvalue)
        means = [g.mean() for g in groups]
        gap, within = max(means) - min(means), max(g.max() - g.min() for g in groups)
        verdict = "holds" if p < ALPHA and gap > within else "inconclusive"
        found[f"source/{m}"] = {"claim": claim, "test": test, "verdict": verdict,
                                "numbers": {"p": p, "gap": gap, "within": within, "sources": len(groups)},
                                "text": f"Kruskal-Wallis p = {p:.3f} over {len(groups)} sources; source means span "
                                        f"{gap:.1f}, the widest seed range within a source {within:.1f}"}
    return found
