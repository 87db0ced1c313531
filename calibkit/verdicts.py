"""The study's claims decided by stated tests over calibration seeds: each verdict reads ``holds``, ``fails`` or
``inconclusive``, with its numbers. Pure pandas/numpy/scipy on a results table (``sweep.results_table``).

One rule for every comparative claim, at level ALPHA (two-sided):
- ``holds``: the claimed direction is observed and the test rejects "no difference";
- ``fails``: the opposite direction is observed and the test rejects "no difference" (the data contradict the claim);
- ``inconclusive``: otherwise (the difference is within the noise of this design), or too few seeds to test.
A difference of S_total (paired difference, difference of spreads) must also exceed DRIFT_PTS, a floor set from the
drift between CPU kernel sets (first measured on one run: |Δ S_total| 0.94 pts, ``bench/drift.py``). The drift is
then checked directly (``robust``): other kernels prune each run into another, equally valid model
(``bench/drift_runs.py`` over 22 runs: SparseGPT's S_total moves by RMS 0.79 pts, Commonsense by RMS 2.62), so every
``holds``/``fails`` is recomputed on tables in which each run is moved by a measured run's drift, and a verdict that
changes in more than ALPHA of them — one that could flip between two machines — is ``inconclusive``.

Tests, per claim (see each function): paired differences over calibration seeds (seed i of one set against seed i
of the other, ``scipy.stats.ttest_rel``), permutation nulls for spreads (set labels shuffled over runs), seed
bootstraps for differences of spreads, Spearman with a bootstrap CI over sources. Nothing here is tuned to a result:
the rules are fixed above and every verdict is computed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .analysis import BALANCED, COLUMNS, DIMS, main_sets

ALPHA = 0.05
DRIFT_PTS = 1.0  # points of S_total: smaller differences decide nothing (a floor; ``robust`` checks the drift itself)
FAR = 2.0  # F1: "far exceed" read as at least twice the aggregated spread
MIN_SEEDS = 3
ITERS = 2000


def _verdict(direction: float, significant: bool) -> str:
    if significant and direction > 0:
        return "holds"
    if significant and direction < 0:
        return "fails"
    return "inconclusive"


def _finding(claim: str, test: str, verdict: str, numbers: dict, text: str) -> dict:
    return {"claim": claim, "test": test, "verdict": verdict, "numbers": numbers, "text": text}


def _not_measured(claim: str, test: str, why: str) -> dict:
    return _finding(claim, test, "not measured", {}, why)


def _cell(df: pd.DataFrame, method: str, sparsity: str) -> pd.DataFrame:
    return df[(df["method"] == method) & (df["sparsity"] == str(sparsity))]


def by_seed(df: pd.DataFrame, column: str = "S_total") -> pd.DataFrame:
    """label x seed table of one column (in points of %)."""
    return df.pivot_table(index="label", columns="seed", values=column, aggfunc="mean") * 100


def paired(a: pd.Series, b: pd.Series) -> dict:
    """a - b over the seeds both have: mean, sd, n, how many seeds agree with the mean's sign, paired t-test p."""
    from scipy.stats import ttest_rel

    both = a.dropna().index.intersection(b.dropna().index)
    d = (a[both] - b[both]).to_numpy(float)
    n = len(d)
    out = {"mean": float(d.mean()) if n else np.nan, "sd": float(d.std(ddof=1)) if n > 1 else np.nan, "n": n,
           "agree": int((np.sign(d) == np.sign(d.mean())).sum()) if n else 0, "p": np.nan}
    if n >= 2:
        out["p"] = 0.0 if out["sd"] == 0 and out["mean"] != 0 else float(ttest_rel(a[both], b[both]).pvalue)
    return out


def decide(r: dict) -> str:
    """The verdict of a ``paired`` difference whose claimed direction is positive (the rule at the top)."""
    return _verdict(r["mean"], _significant(r))


def _paired_text(name: str, r: dict) -> str:
    return (f"{name} {r['mean']:+.2f} ± {r['sd']:.2f} pts (n={r['n']}, {r['agree']}/{r['n']} seeds agree, "
            f"paired t p={r['p']:.3f})")


def _significant(r: dict) -> bool:
    return r["n"] >= MIN_SEEDS and np.isfinite(r["p"]) and r["p"] < ALPHA and abs(r["mean"]) > DRIFT_PTS


def _versus_all(claim: str, test: str, reference: pd.Series, others: dict[str, pd.Series], ref_name: str) -> dict:
    """Claim: ``reference`` beats every other set. holds if every paired difference favours the reference
    significantly; fails if any other set beats it significantly; inconclusive otherwise."""
    rows = {k: paired(reference, v) for k, v in others.items()}
    if not rows:
        return _not_measured(claim, test, "no sets to compare")
    losses = [k for k, r in rows.items() if _significant(r) and r["mean"] < 0]
    wins = [k for k, r in rows.items() if _significant(r) and r["mean"] > 0]
    verdict = "fails" if losses else "holds" if len(wins) == len(rows) else "inconclusive"
    parts = [_paired_text(f"{ref_name} − {k}", r) for k, r in rows.items()]
    extra = f" Beaten significantly by: {', '.join(losses)}." if losses else ""
    return _finding(claim, test, verdict, {k: r for k, r in rows.items()}, "; ".join(parts) + "." + extra)


# --- F1 / F4: spreads against a noise null --------------------------------------------------------------

class _Runs:
    """Runs of one cell as arrays (set codes; S_d for each dimension and S_total, in points) so that permutation
    and bootstrap draws cost microseconds."""

    def __init__(self, runs: pd.DataFrame):
        self.codes, self.labels = pd.factorize(runs["label"])
        self.x = runs[COLUMNS].to_numpy(float) * 100
        self.groups = [np.flatnonzero(self.codes == i) for i in range(len(self.labels))]

    def spread(self, codes=None, x=None) -> np.ndarray:
        """max - min over sets of the seed-mean, per column (S_d..., S_total)."""
        codes = self.codes if codes is None else codes
        x = self.x if x is None else x
        k = len(self.labels)
        counts = np.bincount(codes, minlength=k)
        means = np.stack([np.bincount(codes, weights=x[:, j], minlength=k) for j in range(x.shape[1])], 1)
        means = means[counts > 0] / counts[counts > 0, None]
        return means.max(0) - means.min(0)

    def permuted(self, rng) -> np.ndarray:
        """Set labels shuffled over runs, independently per dimension (the no-set-effect null); S_total is
        recomputed from the shuffled dimensions, as retention defines it."""
        n = len(self.codes)
        dims = np.stack([self.x[rng.permutation(n), j] for j in range(len(DIMS))], 1)
        return self.spread(x=np.column_stack([dims, dims.mean(1)]))

    def resampled(self, rng) -> np.ndarray:
        """Seeds resampled with replacement within each set (the calibration-seed noise of a spread)."""
        idx = np.concatenate([rng.choice(g, len(g)) for g in self.groups])
        return self.spread(self.codes[idx], self.x[idx])


def _ratio(s: np.ndarray) -> float:
    """widest dimension spread / S_total spread."""
    return float(s[:len(DIMS)].max() / s[-1]) if s[-1] > 0 else np.inf


def f1(df: pd.DataFrame, sparsity: str, seed: int = 0, iters: int = ITERS) -> dict:
    """F1: per-dimension retention spreads across calibration sets far exceed (>= FAR x) the S_total spread.
    Statistic T = widest dimension spread / S_total spread (seed-means over the main-grid sets), per pruner.
    Null: set labels permuted over runs within each dimension (no set effect; S_total recomputed), p = P(T0 >= T).
    holds: T >= FAR and p < ALPHA under every pruner; fails: under some pruner the seed-bootstrap 95 % upper bound
    of T is below FAR; inconclusive otherwise, and whenever a set has fewer than MIN_SEEDS seeds."""
    claim = f"per-dimension spreads far exceed (>= {FAR:g}x) the spread of S_total"
    test = (f"T = widest S_d spread / S_total spread vs a permutation null (labels shuffled within dimension, "
            f"{iters} draws)")
    rng = np.random.default_rng(seed)
    rows, numbers = [], {}
    for method in ("wanda", "sparsegpt"):
        cell = main_sets(_cell(df, method, sparsity))
        if cell["label"].nunique() < 3:
            continue
        runs = _Runs(cell)
        sp = runs.spread()
        dims = dict(zip(DIMS, sp[:len(DIMS)]))
        widest = max(dims, key=dims.get)
        t = _ratio(sp)
        null = np.array([_ratio(runs.permuted(rng)) for _ in range(iters)])
        p = float((np.sum(null >= t) + 1) / (iters + 1))
        hi = float(np.quantile([_ratio(runs.resampled(rng)) for _ in range(iters)], 0.975))
        numbers[method] = {"T": t, "p": p, "T_upper95": hi, "widest": widest, "widest_spread": float(dims[widest]),
                           "total_spread": float(sp[-1]), "null_median_T": float(np.median(null)),
                           "sets": len(runs.labels), "seeds": int(min(len(g) for g in runs.groups))}
        rows.append((method, t, p, hi))
    if not rows:
        return _not_measured(claim, test, "needs >= 3 main-grid sets under Wanda or SparseGPT at this sparsity")
    few = min(n["seeds"] for n in numbers.values()) < MIN_SEEDS
    if few:
        verdict = "inconclusive"  # a spread from fewer seeds decides nothing
    elif any(hi < FAR for _, _, _, hi in rows):
        verdict = "fails"
    elif all(t >= FAR and p < ALPHA for _, t, p, _ in rows):
        verdict = "holds"
    else:
        verdict = "inconclusive"
    text = "; ".join(f"{m}: {n['widest']} spread {n['widest_spread']:.1f} vs S_total {n['total_spread']:.1f} pts, "
                     f"T = {n['T']:.2f} (null median {n['null_median_T']:.2f}, p = {n['p']:.3f}; seed-bootstrap "
                     f"95 % upper {n['T_upper95']:.2f})" for m, n in numbers.items())
    return _finding(claim, test, verdict, numbers, text)


def spread_difference(df: pd.DataFrame, sparsity: str, seed: int = 0, sets: list[str] | None = None,
                      iters: int = ITERS) -> dict | None:
    """S_total spread across sets under SparseGPT minus under Wanda (points), with a seed-bootstrap 95 % CI and each
    pruner's spread against its permutation null. None when either pruner has < 2 sets or < MIN_SEEDS seeds."""
    rng = np.random.default_rng(seed)
    cells = {m: _cell(df, m, sparsity) for m in ("wanda", "sparsegpt")}
    cells = {m: (c[c["label"].isin(sets)] if sets is not None else main_sets(c)) for m, c in cells.items()}
    common = set(cells["wanda"]["label"]) & set(cells["sparsegpt"]["label"])
    cells = {m: c[c["label"].isin(common)] for m, c in cells.items()}
    if len(common) < 2 or min(c.groupby("label").size().min() for c in cells.values()) < MIN_SEEDS:
        return None
    runs = {m: _Runs(c) for m, c in cells.items()}
    obs = {m: float(r.spread()[-1]) for m, r in runs.items()}
    diffs = [runs["sparsegpt"].resampled(rng)[-1] - runs["wanda"].resampled(rng)[-1] for _ in range(iters)]
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    p_null = {m: float((sum(r.permuted(rng)[-1] >= obs[m] for _ in range(iters)) + 1) / (iters + 1))
              for m, r in runs.items()}
    return {"sparsegpt": obs["sparsegpt"], "wanda": obs["wanda"], "diff": obs["sparsegpt"] - obs["wanda"],
            "ci": [float(lo), float(hi)], "sets": len(common), "p_null": p_null}


def _spread_verdict(r: dict) -> str:
    lo, hi = r["ci"]
    big = abs(r["diff"]) > DRIFT_PTS
    return "holds" if lo > 0 and big else "fails" if hi < 0 and big else "inconclusive"


def f4(df: pd.DataFrame, sparsity: str, seed: int = 0, iters: int = ITERS) -> dict:
    """F4: the calibration spread of S_total is narrower under Wanda than under SparseGPT. Difference of spreads
    (SparseGPT - Wanda) with a seed-bootstrap 95 % CI: holds if the CI is above 0, fails if below, else
    inconclusive. Each pruner's spread is also tested against the no-set-effect permutation null."""
    claim = "the calibration spread of S_total is narrower under Wanda than under SparseGPT"
    test = f"spread(SparseGPT) − spread(Wanda), seed-bootstrap 95 % CI ({iters} draws); spreads vs permutation null"
    r = spread_difference(df, sparsity, seed, iters=iters)
    if r is None:
        return _not_measured(claim, test, f"needs the same >= 2 sets with >= {MIN_SEEDS} seeds under both pruners")
    text = (f"S_total spread SparseGPT {r['sparsegpt']:.2f} vs Wanda {r['wanda']:.2f} pts over {r['sets']} sets: "
            f"difference {r['diff']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}]; spread vs no-set-effect null: "
            + ", ".join(f"{m} p = {p:.3f}" for m, p in r["p_null"].items()))
    return _finding(claim, test, _spread_verdict(r), r, text)


def every_sparsity(df: pd.DataFrame, seed: int = 0, iters: int = ITERS) -> dict:
    """The study: Wanda is less sensitive to calibration data than SparseGPT at every sparsity. Per sparsity with
    both pruners on the same >= 2 sets and >= MIN_SEEDS seeds: the F4 test. holds if it holds at every such
    sparsity, fails if it fails at any, else inconclusive."""
    claim = "Wanda is less sensitive to the calibration set than SparseGPT at every sparsity"
    test = "per sparsity: spread(SparseGPT) − spread(Wanda) over the sets both ran, seed-bootstrap 95 % CI"
    per = {}
    for sp in sorted(set(df["sparsity"]), key=lambda s: (":" in s, s)):
        sets = sorted(set(_cell(df, "wanda", sp)["label"]) & set(_cell(df, "sparsegpt", sp)["label"]))
        sets = [s for s in sets if s in set(main_sets(df)["label"])]
        r = spread_difference(df, sp, seed, sets, iters)
        if r is not None:
            per[sp] = r | {"verdict": _spread_verdict(r)}
    if not per:
        return _not_measured(claim, test, f"no sparsity with both pruners on >= 2 sets and >= {MIN_SEEDS} seeds")
    verdicts = [r["verdict"] for r in per.values()]
    verdict = "fails" if "fails" in verdicts else "holds" if all(v == "holds" for v in verdicts) else "inconclusive"
    text = "; ".join(f"{sp}: {r['diff']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}] over {r['sets']} sets "
                     f"({r['verdict']})" for sp, r in per.items())
    return _finding(claim, test, verdict, per, text)


# --- F2: Spearman over single sources ------------------------------------------------------------------

def spearman_sources(df: pd.DataFrame, method: str, sparsity: str, metric: str = "distortion",
                     with_mix: bool = False, seed: int = 0, iters: int = ITERS) -> pd.DataFrame:
    """Spearman rho between a profile metric and each dimension's retention over single sources (seed-averaged
    metric and retention; ``with_mix`` adds mix_balanced as the study does not), with scipy's p and a bootstrap
    95 % CI over sets (sets resampled with replacement, ``iters`` draws; 0: no CI)."""
    d = _cell(df, method, sparsity)
    d = main_sets(d) if with_mix else d[d["kind"] == "source"]
    g = d.groupby("label")[[metric] + COLUMNS].mean().dropna()
    rng = np.random.default_rng(seed)
    rows = []
    for c in COLUMNS:
        x, y = g[metric].to_numpy(float), g[c].to_numpy(float)
        n = len(x)
        if n < 4 or len(set(x)) < 2 or len(set(y)) < 2:
            rows.append({"retention": c.removeprefix("S_"), "rho": np.nan, "p": np.nan, "lo": np.nan, "hi": np.nan,
                         "n": n})
            continue
        rows.append({"retention": c.removeprefix("S_"), **spearman_ci(x, y, rng, iters), "n": n})
    return pd.DataFrame(rows).set_index("retention")


def spearman_ci(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, iters: int = ITERS) -> dict:
    """Spearman rho and scipy's p of paired values, with a bootstrap 95 % CI (pairs resampled with replacement;
    draws with a constant side have no ranking and are skipped; no draw left: a NaN CI). The caller checks there
    are enough pairs."""
    from scipy.stats import rankdata, spearmanr

    i = rng.integers(0, len(x), (iters, len(x)))  # all draws at once: Spearman = Pearson of the average ranks
    xs, ys = np.asarray(x, float)[i], np.asarray(y, float)[i]
    ok = (xs.min(1) < xs.max(1)) & (ys.min(1) < ys.max(1))
    rx, ry = rankdata(xs[ok], axis=1), rankdata(ys[ok], axis=1)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    boot = (rx * ry).sum(1) / np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))
    rho, p = spearmanr(x, y)
    lo, hi = np.nanquantile(boot, [0.025, 0.975]) if len(boot) else (np.nan, np.nan)
    return {"rho": float(rho), "p": float(p), "lo": float(lo), "hi": float(hi)}


def f2(df: pd.DataFrame, sparsity: str, method: str = "sparsegpt", iters: int = ITERS) -> dict:
    """F2: Distortion correlates with retention in opposite directions for General vs Math and Code. Spearman over
    single sources (seed-averaged, n = sources), p < ALPHA for each of the three. holds: General's rho and both
    Math's and Code's are significant with General's sign opposite to theirs; fails: a significant pair with the
    same sign (General vs Math or Code); inconclusive otherwise, and with fewer than MIN_SEEDS seeds per source.
    The with-mix variant is reported beside it."""
    claim = f"the Distortion–retention correlation has opposite signs for General vs Math and Code ({method})"
    test = f"Spearman rho over single sources (seed means), p < {ALPHA}, bootstrap 95 % CI over sources"
    t = spearman_sources(df, method, sparsity, iters=iters)
    if t["rho"].isna().any() or t["n"].min() < 4:
        return _not_measured(claim, test, "needs >= 4 single sources with Distortion and retention")
    cell = _cell(df, method, sparsity)
    seeds = int(cell[cell["kind"] == "source"].groupby("label")["seed"].nunique().min())
    sig = {d: bool(t.loc[d, "p"] < ALPHA) and seeds >= MIN_SEEDS for d in ("General", "Math", "Code")}
    sign = {d: np.sign(t.loc[d, "rho"]) for d in ("General", "Math", "Code")}
    if all(sig.values()) and sign["General"] == -sign["Math"] == -sign["Code"] != 0:
        verdict = "holds"
    elif any(sig["General"] and sig[o] and sign["General"] == sign[o] for o in ("Math", "Code")):
        verdict = "fails"
    else:
        verdict = "inconclusive"
    mix = spearman_sources(df, method, sparsity, with_mix=True, iters=iters)
    text = (", ".join(f"{d} rho {t.loc[d, 'rho']:+.2f} [{t.loc[d, 'lo']:+.2f}, {t.loc[d, 'hi']:+.2f}] "
                      f"p={t.loc[d, 'p']:.3f}" for d in DIMS) + f" (n = {int(t['n'].min())} sources); with "
            f"mix_balanced: " + ", ".join(f"{d} {mix.loc[d, 'rho']:+.2f} (p={mix.loc[d, 'p']:.3f})" for d in DIMS)
            + ("" if seeds >= MIN_SEEDS else f"; only {seeds} seed(s) per source: not decided"))
    return _finding(claim, test, verdict, {"sources": t.to_dict("index"), "with_mix": mix.to_dict("index")}, text)


# --- F3, F5, Tables 8/9: paired tests over seeds ---------------------------------------------------------

def f3(df: pd.DataFrame, sparsity: str, method: str = "sparsegpt") -> dict:
    """F3: mix_balanced beats every single source on S_total (paired t over seeds against each source)."""
    claim = f"mix_balanced beats every single source on S_total ({method}, {sparsity})"
    test = f"paired t-test over seeds, mix_balanced − source, each source, p < {ALPHA}"
    t = by_seed(_cell(df, method, sparsity))
    singles = sorted(set(_cell(df, method, sparsity).query("kind == 'source'")["label"]))
    if BALANCED not in t.index or not singles:
        return _not_measured(claim, test, "needs mix_balanced and single-source runs")
    return _versus_all(claim, test, t.loc[BALANCED], {s: t.loc[s] for s in singles}, BALANCED)


def mixes_vs_balanced(df: pd.DataFrame, sparsity: str, prefix: str, claim: str, method: str = "sparsegpt",
                      exclude: str | None = None) -> dict:
    """No mix whose label starts with ``prefix`` beats mix_balanced (Table 8: leave-one-out; Table 9: ratios):
    holds if mix_balanced beats each significantly, fails if one beats mix_balanced significantly."""
    test = f"paired t-test over seeds, mix_balanced − mix, each mix, p < {ALPHA}"
    d = _cell(df, method, sparsity)
    d = d[d["kind"] == "mix"]
    t = by_seed(d)
    others = sorted(lab for lab in t.index if lab.startswith(prefix) and lab != BALANCED
                    and not (exclude and lab.startswith(exclude)))
    if BALANCED not in t.index or not others:
        return _not_measured(claim, test, f"needs mix_balanced and {prefix}* runs under {method} at {sparsity}")
    return _versus_all(claim, test, t.loc[BALANCED], {o: t.loc[o] for o in others}, BALANCED)


def f5(df: pd.DataFrame, sparsity: str, method: str = "sparsegpt") -> dict:
    """F5: IGSP beats Self-Cal and SGS on S_total (paired t over seeds against each)."""
    claim = f"IGSP beats Self-Cal and SGS on S_total ({method}, {sparsity})"
    test = f"paired t-test over seeds, IGSP − other, p < {ALPHA}"
    t = by_seed(_cell(df, method, sparsity))
    need = ["selfgen:igsp", "selfgen:selfcal", "selfgen:sgs"]
    if not all(k in t.index for k in need):
        return _not_measured(claim, test, "needs IGSP, Self-Cal and SGS runs")
    return _versus_all(claim, test, t.loc["selfgen:igsp"], {k: t.loc[k] for k in need[1:]}, "IGSP")


def _claims(sparsity: str) -> dict:
    """Every claim the table can speak to: name -> (table, iters) -> finding."""
    return {
        "F1": lambda d, it: f1(d, sparsity, iters=it),
        "F2 (SparseGPT)": lambda d, it: f2(d, sparsity, "sparsegpt", iters=it),
        "F2 (Wanda)": lambda d, it: f2(d, sparsity, "wanda", iters=it),
        "F3 (SparseGPT)": lambda d, it: f3(d, sparsity, "sparsegpt"),
        "F3 (Wanda)": lambda d, it: f3(d, sparsity, "wanda"),
        "F4": lambda d, it: f4(d, sparsity, iters=it),
        "F5": lambda d, it: f5(d, sparsity),
        "Table 8": lambda d, it: mixes_vs_balanced(d, sparsity, "mix_loo_",
                                                   "no leave-one-out mix beats mix_balanced (SparseGPT)"),
        "Table 9": lambda d, it: mixes_vs_balanced(d, sparsity, "mix_", "the uniform ratio (mix_balanced) beats every "
                                                   "other ratio, 4:3:3 included (SparseGPT)", exclude="mix_loo_"),
        "Wanda vs SparseGPT": lambda d, it: every_sparsity(d, iters=it),
    }


def all_verdicts(df: pd.DataFrame, sparsity: str) -> dict:
    """Every claim the table can speak to, decided by its test (``robust`` then checks them against the measured
    cross-kernel drift)."""
    return {k: c(df, ITERS) for k, c in _claims(sparsity).items()}


# --- robustness to the measured cross-kernel drift -------------------------------------------------------

ROBUST_DRAWS = 200  # perturbed tables per decided verdict


def perturb(df: pd.DataFrame, drift: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The results table as another machine's kernels could have computed it: every run's S_d moved by a drift
    vector (variant − reference, points; one measured run's, so the dimensions keep their correlation) drawn with
    replacement from the measured runs of its pruner (of all measured runs for a pruner without its own); S_total
    recomputed as the mean of the run's S_d, as retention defines it. A measured drift holds both kernel sets'
    variation, so these tables vary somewhat more than a second machine's would: the check errs towards
    inconclusive."""
    dims = [c for c in COLUMNS[:-1] if c in df.columns and c in drift.columns]
    out = df.copy()
    for method, idx in out.groupby("method").groups.items():
        out.loc[idx, dims] = out.loc[idx, dims].to_numpy(float) + drawn(drift, dims, len(idx), rng,
                                                                        method=method) / 100
    out["S_total"] = out[dims].mean(axis=1)
    return out


def pool(drift: pd.DataFrame, **match) -> tuple[pd.DataFrame, dict]:
    """The measured runs that match every ``match`` (column=value) and the conditions they match: when none does, the
    last condition is dropped, and so on down to all runs (``{}``)."""
    conds = list(match.items())
    while True:
        rows = drift
        for col, value in conds:
            rows = rows[rows[col] == value]
        if len(rows) or not conds:
            return rows, dict(conds)
        conds.pop()


def drawn(drift: pd.DataFrame, cols: list[str], n: int, rng: np.random.Generator, **match) -> np.ndarray:
    """``n`` rows of ``drift[cols]`` drawn with replacement from ``pool(drift, **match)`` (the perturbations of
    ``perturb``, ``samples.perturb`` and ``selection_study.perturb``)."""
    rows = pool(drift, **match)[0]
    return rows[cols].to_numpy(float)[rng.integers(0, len(rows), n)]


def borrowed(table: pd.DataFrame, drift: pd.DataFrame, cols: list[str]) -> str:
    """Markdown sentence: which combinations of ``cols`` in ``table`` have no measured runs of their own and are
    perturbed by whose (``pool``'s fallback); empty when every one has its own (or ``table`` is empty), "nothing
    measured." when ``drift`` is."""
    if not len(drift) or not len(table):
        return "nothing measured.\n" if len(table) else ""
    out = []
    for combo in table[cols].drop_duplicates().sort_values(cols).itertuples(index=False):
        used = pool(drift, **dict(zip(cols, combo)))[1]
        if len(used) < len(cols):
            out.append(f"{'/'.join(map(str, combo))} ← {'/'.join(map(str, used.values())) or 'all measured runs'}")
    return ("" if not out else "Without measured runs of their own, perturbed by the drift of others' (← whose): "
            + ", ".join(out) + ".\n")


def coverage_markdown(runs: pd.DataFrame, drift: pd.DataFrame) -> str:
    """Which runs of the capability results table ``runs`` the measured drift (``analysis.drift_table``) does not
    cover although ``perturb`` moves them by it: other sparsities, self-generated sets, pruners without runs of their
    own (``borrowed``). Empty when nothing was measured."""
    if not len(drift) or not len(runs):
        return ""
    other = sorted(set(runs["sparsity"]) - set(drift["sparsity"]))
    selfgen = (runs["kind"] == "selfgen").any() and not drift["label"].str.startswith("selfgen:").any()
    parts = ([f"the runs at sparsity {' and '.join(other)}"] if other else []) + (
        ["the self-generated sets (other kernels would generate them anew: not measured)"] if selfgen else [])
    return ("" if not parts else f"Drift measured at sparsity {', '.join(sorted(drift['sparsity'].unique()))} only; "
            f"{', and '.join(parts)} are perturbed by it as measured, which may understate their drift.\n") + \
        borrowed(runs, drift, ["method"])


def shift(df: pd.DataFrame, drift: pd.DataFrame) -> pd.DataFrame:
    """The results table with each measured run (by run key) moved by its own measured drift (the mean over
    variants): the table as the variant's kernels computed those runs (S_total recomputed as the mean of S_d)."""
    dims = [c for c in COLUMNS[:-1] if c in df.columns and c in drift.columns]
    d = drift.groupby("key")[dims].mean()
    out = df.copy()
    hit = out["key"].isin(d.index).to_numpy()
    out.loc[hit, dims] = out.loc[hit, dims].to_numpy(float) + d.loc[out.loc[hit, "key"], dims].to_numpy(float) / 100
    out.loc[hit, "S_total"] = out.loc[hit, dims].mean(axis=1)
    return out


def shifted_markdown(found: dict, moved: dict, runs: int) -> str:
    """Which verdicts differ when the measured runs are replaced by their variant's retention (``shift``)."""
    diff = [f"{k}: {found[k]['verdict']} → {moved[k]['verdict']}" for k in found
            if moved.get(k, {}).get("verdict") != found[k]["verdict"]]
    head = (f"Verdicts recomputed on the table with the {runs} measured runs replaced by their retention under the "
            "other kernels: ")
    return head + ("every verdict the same." if not diff else "; ".join(diff) + ".") + "\n"


def robust(found: dict, df: pd.DataFrame, drift: pd.DataFrame, sparsity: str | None = None,
           claims: dict | None = None, draws: int = ROBUST_DRAWS, seed: int = 0) -> dict:
    """``under_drift`` for the study's claims (``claims``, by default every claim at ``sparsity``) on the results
    table ``df``, perturbed by ``perturb``. Each perturbed table is decided with the ITERS resampling draws (and the
    seeds) ``found`` was decided with, so the same draws meet every table and only the drift can change a verdict."""
    claims = claims or _claims(sparsity)
    decided = [k for k, f in found.items() if f["verdict"] in ("holds", "fails")]
    return under_drift(found, df, drift, perturb, lambda t: {k: claims[k](t, ITERS) for k in decided},
                       draws, seed)


def under_drift(found: dict, df: pd.DataFrame, drift: pd.DataFrame, perturb_fn, decide, draws: int = ROBUST_DRAWS,
                seed: int = 0) -> dict:
    """A verdict that can flip between two machines decides nothing: each ``holds``/``fails`` of ``found`` is made
    again by ``decide(table)`` (claim -> result) on ``draws`` tables ``perturb_fn(df, drift, rng)`` (the data as other
    kernels could have computed them, from the measured ``drift``); one that differs in more than ALPHA of them
    becomes ``inconclusive``. The share that agrees is in its numbers and text either way. No drift measured:
    ``found`` as it is."""
    if drift is None or not len(drift):
        return found
    rng = np.random.default_rng(seed)
    decided = [k for k, f in found.items() if f["verdict"] in ("holds", "fails")]
    same = dict.fromkeys(decided, 0)
    for _ in range(draws):
        now = decide(perturb_fn(df, drift, rng))
        for k in decided:
            same[k] += now[k]["verdict"] == found[k]["verdict"]
    out = dict(found)
    for k in decided:
        share = same[k] / draws
        ok = share >= 1 - ALPHA
        text = (f". Under the measured cross-kernel drift ({len(drift)} runs): the same verdict in {share:.1%} of "
                f"{draws} perturbed tables" + ("." if ok else f" (< {1 - ALPHA:.0%}): not decided."))
        out[k] = found[k] | {"verdict": found[k]["verdict"] if ok else "inconclusive",
                             "text": found[k]["text"].rstrip(".") + text,
                             "numbers": found[k]["numbers"] | {"drift_stability": share}}
    return out


def contrary(found: dict) -> list[str]:
    """The claims the data contradict (verdict ``fails``)."""
    return [k for k, f in found.items() if f["verdict"] == "fails"]


def verdict_block(found: dict, intro: str, whose: str = "the study") -> str:
    """Markdown: the intro, a table of the verdicts (claim, verdict, test, numbers), and the claims the data
    contradict (``contrary``), named as contrary to ``whose`` claims."""
    rows = [f"| **{k}**: {f['claim']} | **{f['verdict']}** | {f['test']} | {f['text']} |" for k, f in found.items()]
    bad = contrary(found)
    return "\n".join([intro, "", "| claim | verdict | test | numbers |", "|---|---|---|---|", *rows, "",
                      f"**Contrary to {whose}** (verdict `fails`): " + (", ".join(
                          f"{k} — {found[k]['claim']}" for k in bad) if bad else "none."), ""])


def verdicts_markdown(found: dict, sparsity: str, profile: str) -> str:
    return verdict_block(found, f"Claims of the study on profile `{profile}` at sparsity {sparsity}, each decided by "
                                f"its stated test (α = {ALPHA}; holds / fails / inconclusive by the rule in "
                                f"`calibkit/verdicts.py`; differences of S_total below {DRIFT_PTS:g} pt decide "
                                f"nothing, and a verdict that the measured cross-kernel drift flips in more than "
                                f"{ALPHA:.0%} of perturbed tables is inconclusive):")


def se_table(df: pd.DataFrame) -> pd.DataFrame:
    """Bootstrap standard error (points of %) of each dimension's retention and of S_total over the runs: mean, max
    and how many runs exceed 1.0 point (``se_*`` columns of the results table)."""
    cols = [c for c in [f"se_{d}" for d in DIMS] + ["se_total"] if c in df.columns]
    s = df[cols] * 100
    return pd.DataFrame({"mean": s.mean(), "max": s.max(), "runs > 1.0": (s > 1.0).sum(), "runs": s.notna().sum()})
