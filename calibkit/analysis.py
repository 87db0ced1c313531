"""Analysis of a sweep's results table (``calibkit.sweep.results_table``): the study's tables, correlations and
findings. Pure pandas/scipy/scikit-learn on the table; no model code. Every function takes the table and returns
a DataFrame (or a dict for the findings), so notebooks only call and display.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .data.sources import DIMENSIONS
from .profile import METRICS as PROFILE_METRICS

DIMS = list(DIMENSIONS)
COLUMNS = [f"S_{d}" for d in DIMS] + ["S_total"]
BALANCED = "mix_balanced"


def _sparsity_key(s: str) -> tuple:
    """Unstructured fractions in order, then N:M patterns."""
    return (1, s) if ":" in str(s) else (0, float(s))


def main_sets(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the calibration strategies compared in the main grid: single sources and mix_balanced."""
    return df[(df["kind"] == "source") | (df["label"] == BALANCED)]


def label_order(df: pd.DataFrame) -> list[str]:
    """Single sources grouped by pool (General, Commonsense, Code, Math), then mixes, then no calibration."""
    labels = df[["label", "kind", "pool"]].drop_duplicates("label")
    rank = {"source": 0, "mix": 1, "selfgen": 2, "none": 3}
    pool = {d: i for i, d in enumerate(DIMS)}
    labels = labels.assign(r=labels["kind"].map(rank), p=labels["pool"].map(pool).fillna(9))
    labels = labels.assign(b=labels["label"] != BALANCED)
    return list(labels.sort_values(["r", "p", "b", "label"])["label"])


def _mean_std(df: pd.DataFrame, by: list[str], cols: list[str]) -> pd.DataFrame:
    g = df.groupby(by, sort=False)[cols]
    return g.mean().join(g.std(ddof=1).fillna(0.0).add_suffix("_std")).join(g.size().rename("seeds"))


def table1_sets(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the study's Table 1: single sources, mix_balanced, the 4:3:3 mixes, self-generated sets and
    no calibration (Magnitude); not the leave-one-out or ratio mixes of Tables 8/9."""
    return df[df["kind"].isin(["source", "selfgen", "none"]) | (df["label"] == BALANCED)
              | df["label"].str.startswith("mix_4_3_3_")]


def retention_table(df: pd.DataFrame, sparsity: str, methods=("magnitude", "wanda", "sparsegpt"),
                    sets: str = "main") -> pd.DataFrame:
    """Per-dimension and total retention (mean over seeds, in %), rows = (method, calibration) — Tables 1/4.
    ``sets``: ``main`` (single sources, mix_balanced, none), ``table1`` (``table1_sets``) or ``all``."""
    d = df[df["sparsity"] == str(sparsity)]
    if sets == "main":
        d = pd.concat([main_sets(d), d[d["kind"] == "none"]])
    elif sets == "table1":
        d = table1_sets(d)
    d = d[d["method"].isin(methods)]
    t = _mean_std(d, ["method", "label"], COLUMNS)
    order = {m: i for i, m in enumerate(methods)}
    labels = {lab: i for i, lab in enumerate(label_order(df))}
    t = t.reset_index()
    t = t.assign(_m=t["method"].map(order), _l=t["label"].map(labels)).sort_values(["_m", "_l"])
    t = t.drop(columns=["_m", "_l"]).set_index(["method", "label"])
    return _percent(t)


def _percent(t: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in t.columns if c.startswith("S_")]
    return t.assign(**{c: 100 * t[c] for c in cols})


def mean_sd(t: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """A table with ``<col>`` and ``<col>_std`` columns (and ``seeds``) as "mean ± sd" text per column, for
    reading; columns without a ``_std`` partner are kept as they are."""
    out = {}
    for c in t.columns:
        if c.endswith("_std") or c == "seeds":
            continue
        if f"{c}_std" in t.columns:
            out[c] = ["" if pd.isna(m) else f"{m:.{digits}f}" if pd.isna(s) else f"{m:.{digits}f} ± {s:.{digits}f}"
                      for m, s in zip(t[c], t[f"{c}_std"])]
        else:
            out[c] = t[c]
    res = pd.DataFrame(out, index=t.index)
    return res.assign(seeds=t["seeds"]) if "seeds" in t.columns else res


def pm_pivot(d: pd.DataFrame, index, columns, value: str = "S_total", digits: int = 1) -> pd.DataFrame:
    """Pivot of ``value`` (x100) as "mean ± sd (n seeds)" text: tables by sparsity and pruner for reading."""
    g = d.groupby([*([index] if isinstance(index, str) else index), *([columns] if isinstance(columns, str)
                                                                      else columns)])[value]
    m, s, n = g.mean() * 100, g.std(ddof=1).fillna(0.0) * 100, g.size()
    text = pd.Series([f"{a:.{digits}f} ± {b:.{digits}f} ({c})" for a, b, c in zip(m, s, n)], index=m.index)
    return text.unstack(columns)


def profile_table(df: pd.DataFrame) -> pd.DataFrame:
    """The 7 information metrics per calibration set (mean over seeds), ordered by Distortion — Table 3."""
    d = df[df["kind"] != "none"].drop_duplicates(["label", "seed"])
    t = d.groupby("label")[list(PROFILE_METRICS)].mean()
    return t.sort_values("distortion")


def sparsity_table(df: pd.DataFrame, method: str, labels: list[str] | None = None, sd: bool = False) -> pd.DataFrame:
    """S_total (%) per calibration set (rows) and sparsity (columns) for one method — Tables 2/14, Figure 7;
    ``sd``: as "mean ± sd (seeds)" text."""
    d = df[df["method"] == method]
    if labels is not None:
        d = d[d["label"].isin(labels)]
    t = (pm_pivot(d, "label", "sparsity") if sd else
         d.groupby(["label", "sparsity"])["S_total"].mean().unstack("sparsity") * 100)
    t = t[sorted(t.columns, key=_sparsity_key)]
    return t.loc[[lab for lab in label_order(df) if lab in t.index]]


def dimension_by_sparsity(df: pd.DataFrame, method: str, label: str) -> pd.DataFrame:
    """S_d and S_total (%, mean and sd over seeds) per sparsity for one method and calibration set — Table 5,
    Figure 4."""
    d = df[(df["method"] == method) & (df["label"] == label)]
    t = _percent(_mean_std(d, ["sparsity"], COLUMNS))
    return t.loc[sorted(t.index, key=_sparsity_key)]


def spreads(df: pd.DataFrame, sparsity: str) -> pd.DataFrame:
    """Max − min (points of %) across the main-grid calibration sets, per dimension and total, per method."""
    d = main_sets(df[df["sparsity"] == str(sparsity)])
    g = d.groupby(["method", "label"])[COLUMNS].mean() * 100
    out = g.groupby("method").agg(lambda s: s.max() - s.min())
    return out.assign(sets=g.groupby("method").size())


def spearman_table(df: pd.DataFrame, method: str, sparsity: str, metrics=PROFILE_METRICS,
                   with_mix: bool = False) -> pd.DataFrame:
    """Spearman ρ and p between each profile metric and each dimension's retention across the single sources, seed
    means (scipy.stats.spearmanr; ``with_mix`` adds mix_balanced, which the study leaves out) — Table 6, Figure 2.
    Metrics constant across sets give NaN (no ranking)."""
    from scipy.stats import spearmanr

    d = df[(df["method"] == method) & (df["sparsity"] == str(sparsity))]
    d = main_sets(d) if with_mix else d[d["kind"] == "source"]
    g = d.groupby("label")[list(metrics) + COLUMNS].mean()
    rows = []
    for m in metrics:
        for c in COLUMNS:
            x, y = g[m].astype(float), g[c].astype(float)
            ok = x.notna() & y.notna()
            if ok.sum() < 3 or x[ok].nunique() < 2 or y[ok].nunique() < 2:
                rho, p = np.nan, np.nan
            else:
                rho, p = spearmanr(x[ok], y[ok])
            rows.append({"metric": m, "retention": c.removeprefix("S_"), "rho": float(rho), "p": float(p),
                         "n": int(ok.sum())})
    return pd.DataFrame(rows)


def pca_profiles(df: pd.DataFrame, metrics=PROFILE_METRICS, components: int = 2):
    """PCA of standardised profiles over the main-grid sets (scikit-learn) — Figure 5.
    Returns (coordinates with S_total per method, explained variance ratio, loadings)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    prof = profile_table(main_sets(df))
    cols = [m for m in metrics if prof[m].notna().all() and prof[m].nunique() > 1]  # constant metrics carry no
    x = StandardScaler().fit_transform(prof[cols].to_numpy(float))                   # information
    pca = PCA(n_components=min(components, len(cols), len(prof))).fit(x)
    coords = pd.DataFrame(pca.transform(x), index=prof.index, columns=[f"PC{i + 1}" for i in range(pca.n_components_)])
    loadings = pd.DataFrame(pca.components_.T, index=cols, columns=coords.columns)
    return coords, pd.Series(pca.explained_variance_ratio_, index=coords.columns), loadings


def mix_table(df: pd.DataFrame, sparsity: str, prefix: str, method: str = "sparsegpt") -> pd.DataFrame:
    """mix_balanced beside the mixes whose label starts with ``prefix`` (``mix_loo_`` — Table 8; ratio mixes —
    Table 9), S_d and S_total (%), and the change of S_total against mix_balanced."""
    d = df[(df["method"] == method) & (df["sparsity"] == str(sparsity)) & (df["kind"] == "mix")]
    d = d[(d["label"] == BALANCED) | d["label"].str.startswith(prefix)]
    t = _percent(_mean_std(d, ["label"], COLUMNS))
    if BALANCED in t.index:
        t["delta_total"] = t["S_total"] - t.loc[BALANCED, "S_total"]
        t = t.loc[[BALANCED] + sorted(i for i in t.index if i != BALANCED)]
    return t


def ratio_mixes(df: pd.DataFrame, sparsity: str, method: str = "sparsegpt") -> pd.DataFrame:
    d = df[(df["kind"] == "mix") & ~df["label"].str.startswith("mix_loo_")]
    return mix_table(d, sparsity, "mix_", method)


# --- self-generated calibration (notebook 05) ------------------------------------------------------------

SELFGEN_ORDER = ["selfgen:selfcal", "selfgen:sgs", "selfgen:igsp-no-multi", "selfgen:igsp-no-band",
                 "selfgen:igsp-no-diversity", "selfgen:igsp"]


def selfgen_table(df: pd.DataFrame, reference: str) -> pd.DataFrame:
    """S_total (%) of the self-generation strategies beside ``reference`` and mix_balanced, by pruner and
    sparsity — the self-generation block of Tables 2 and 15."""
    labels = [lab for lab in SELFGEN_ORDER + [reference, BALANCED] if lab in set(df["label"])]
    d = df[df["label"].isin(labels) & df["method"].isin(["wanda", "sparsegpt"])]
    t = pm_pivot(d, "label", ["method", "sparsity"])
    return t.loc[labels].sort_index(axis=1)


def strategy_table(df: pd.DataFrame, sparsity: str, method: str, reference: str) -> pd.DataFrame:
    """S_d and S_total (%, mean over seeds) of the calibration strategies — the reference source, the
    self-generated sets and mix_balanced — at one sparsity and pruner: Tables 7 and 10 (40 %, Wanda)."""
    labels = [lab for lab in [reference, *SELFGEN_ORDER, BALANCED] if lab in set(df["label"])]
    d = df[(df["method"] == method) & (df["sparsity"] == str(sparsity)) & df["label"].isin(labels)]
    t = _percent(_mean_std(d, ["label"], COLUMNS))
    return t.loc[[lab for lab in labels if lab in t.index]]


def igsp_gap(df: pd.DataFrame, sparsity: str, method: str = "sparsegpt") -> pd.DataFrame:
    """S_d (%) of IGSP and mix_balanced and their difference — Table 12."""
    d = df[(df["method"] == method) & (df["sparsity"] == str(sparsity))]
    t = _percent(_mean_std(d[d["label"].isin(["selfgen:igsp", BALANCED])], ["label"], COLUMNS))
    if len(t) == 2:
        t.loc["gap (igsp - mix_balanced)"] = t.loc["selfgen:igsp"] - t.loc[BALANCED]
        t.loc["gap (igsp - mix_balanced)", [f"{c}_std" for c in COLUMNS] + ["seeds"]] = np.nan
    return t


def band_table(bands: dict, model: str) -> pd.DataFrame:
    """IGSP's perplexity bands measured on ``model`` (``selfgen.bands.measure_bands``) beside the study's (Table 11)."""
    from .selfgen.bands import STUDY_BANDS

    return pd.DataFrame({d: {f"tau_lo ({model})": lo, f"tau_hi ({model})": hi,
                             "tau_lo (study, LLaMA-3.1-8B)": STUDY_BANDS[d][0],
                             "tau_hi (study, LLaMA-3.1-8B)": STUDY_BANDS[d][1]}
                         for d, (lo, hi) in bands["bands"].items()}).T


def prune_runs(df: pd.DataFrame) -> pd.DataFrame:
    """What the pruner did, per run: achieved sparsity, mean reconstruction error, warnings, seconds."""
    cols = ["label", "method", "sparsity", "seed", "achieved_sparsity", "mean_recon_error", "prune_warnings",
            "prune_s", "eval_s", "run_s"]
    return df[cols].sort_values(["method", "sparsity", "label"]).set_index(["method", "sparsity", "label", "seed"])


FULL_SHARE = 0.8  # a run's CPU share (``sweep.run.cpu_share``) above which it had its cores to itself


def _stage_sums(df: pd.DataFrame, columns: dict[str, str], total: float) -> str:
    """Each stage's summed seconds and share of ``total``, e.g. "prune 58.8 min (27%), eval ..." (``columns``:
    stage name -> column)."""
    return ", ".join(f"{name} {df[c].sum() / 60:.1f} min ({df[c].sum() / total:.0%})" for name, c in columns.items())


def timing_markdown(df: pd.DataFrame) -> str:
    """Where the time of the runs in the store went: per pruner, and per stage (building the calibration set —
    generation for self-generated sets —, profiling it, pruning, evaluating; the rest is copying the model and
    the dense evaluation, once per process)."""
    stages = [c for c in ("build_s", "profile_s", "prune_s", "eval_s") if c in df.columns]
    t = df.groupby("method").agg(runs=("run_s", "size"), **{c: (c, "sum") for c in stages},
                                 run_s=("run_s", "sum"), mean_run_s=("run_s", "mean")).round(1)
    total = df["run_s"].sum()
    parts = _stage_sums(df, {c.removesuffix("_s"): c for c in stages}, total) if total else ""
    text = (f"{len(df)} runs, {total / 60:.1f} min of run time in the store: {parts}; the rest is copying the model "
            "and the one dense evaluation per process. A profile is computed once per calibration set (0 s where the "
            "store already had it).")
    share = df["eval_cpu_share"] if "eval_cpu_share" in df.columns else pd.Series(np.nan, index=df.index)
    alone = df[share >= FULL_SHARE]
    if len(alone):
        text += (f" Evaluation of one pruned model, over the {len(alone)} of {share.notna().sum()} recorded runs that "
                 f"had the CPU to themselves (CPU share >= {FULL_SHARE}): median {alone['eval_s'].median():.1f} s, range "
                 f"{alone['eval_s'].min():.1f}-{alone['eval_s'].max():.1f} s.")
    if len(alone) < len(df):
        text += (f" {len(df) - len(alone)} of the {len(df)} runs have no CPU share >= {FULL_SHARE} on record (computed "
                 "beside other work, or before the share was recorded): their times include waiting for the CPU, so the "
                 "sums above are an upper bound on the study's compute.")
    return text + "\n\n" + t.to_markdown()


def reproduction_markdown(folder: str | Path, committed: int | None = None) -> str:
    """The recorded reproductions of the study (``calibkit compare ... --csv`` tables in ``folder``): for each, how
    many of the ``committed`` runs were recomputed and reproduced (bit-identical or within tolerance; how many were
    rescored by another scorer), on which kernels, and what the recomputation cost per stage — measured on the runs
    that had the CPU to themselves."""
    files = sorted(Path(folder).glob("*.csv"))
    if not files:
        return f"No reproduction recorded (`calibkit compare COMMITTED FRESH --csv {Path(folder)}/NAME.csv`)."
    out = []
    for f in files:
        t = pd.read_csv(f)
        stages = [c for c in ("build", "profile", "prune", "eval") if f"fresh_{c}_s" in t.columns]
        total = t["fresh_run_s"].sum()
        alone = t[t.get("fresh_cpu_share_run", pd.Series(np.nan, index=t.index)) >= FULL_SHARE]
        cost = _stage_sums(t, {c: f"fresh_{c}_s" for c in stages}, total)
        kernels = ", ".join(map(str, t["fresh_cpu"].unique()))
        packages = ", ".join(str(h)[:12] for h in t["fresh_packages_sha256"].unique())
        pair = t["scorers"].str.split(" → ")  # committed → fresh scorer
        rescored = t[pair.str[0] != pair.str[-1]]
        of = f" (of the {committed} committed runs)" if committed is not None else ""
        text = (f"`{f.name}`: {int(t['reproduced'].sum())} of {len(t)} recomputed runs{of} reproduce their "
                f"committed records ({int(t['exact'].sum())} bit-identical"
                + (f"; {len(rescored)} rescored, {', '.join(sorted(rescored['scorers'].unique()))}: not bit-identical "
                   "by design" if len(rescored) else "")
                + f"; max |Δ retention| {t['retention_pts'].max():.2f} "
                f"pts, max relative |Δ profile| {t['profile_rel'].max():.2g}), recomputed "
                f"{t['fresh_finished'].min()} – {t['fresh_finished'].max()} on {kernels} kernels, package set sha256 "
                f"{packages}. Run time {total / 60:.1f} min: {cost}; {len(alone)} of {len(t)} runs had the CPU to "
                f"themselves (run CPU share >= {FULL_SHARE})")
        if len(alone):
            text += (f", evaluation per pruned model median {alone['fresh_eval_s'].median():.1f} s (range "
                     f"{alone['fresh_eval_s'].min():.1f}–{alone['fresh_eval_s'].max():.1f} s)")
        bad = t[~t["reproduced"].astype(bool)]
        if len(bad):
            text += (f". Not reproduced ({len(bad)}): " + "; ".join(
                f"{r.label} {r.method} {r.sparsity} seed {r.seed} (|Δ retention| {r.retention_pts:.2f} pts, relative "
                f"|Δ profile| {r.profile_rel:.2g})" for r in bad.itertuples()))
        per = t.groupby("method").agg(runs=("key", "size"), prune_s=("fresh_prune_s", "mean"),
                                      eval_s=("fresh_eval_s", "mean"), run_s=("fresh_run_s", "mean")).round(1)
        out.append(text + ".\n\nMean seconds per run:\n\n" + per.to_markdown())
    return "\n\n".join(out)


def drift_rows(folder: str | Path, profile: str, keys: set[str] | None = None) -> list[dict]:
    """The ``bench/drift_runs.py`` rows measured for the profile (``folder/<profile>-*.jsonl``), of the runs ``keys``
    (e.g. ``Study.keys(groups)``; None: all)."""
    import json

    rows = [json.loads(line) for f in sorted(Path(folder).glob(f"{profile}-*.jsonl"))
            for line in f.read_text().splitlines() if line.strip()]
    return [r for r in rows if keys is None or r["key"] in keys]


def drift_table(folder: str | Path, profile: str, keys: set[str] | None = None) -> pd.DataFrame:
    """Measured cross-kernel drift of the profile's capability-study runs (``keys``: those of its groups; single
    sources and mixes): one row per run and kernel variant — method, sparsity, label, seed, variant and, per column
    of COLUMNS, variant − reference retention in points. Empty when nothing was measured. OASIS's runs are read by
    ``samples.drift_table`` and ``selection_study.drift_table``."""
    return drift_frame([r for r in drift_rows(folder, profile, keys)  # OASIS's whole sets: samples.drift_table
                        if r.get("kind", "source") in ("source", "mix") and r.get("suite") != "oasis"])


def drift_frame(rows: list[dict]) -> pd.DataFrame:
    """``bench/drift_runs.py`` rows as a table: run key, method, sparsity, label, seed, variant, Δ of each COLUMN
    (points)."""
    ids = ["key", "method", "sparsity", "label", "seed", "variant"]
    return pd.DataFrame([{k: r[k] for k in ids} | r["delta"] for r in rows], columns=[*ids, *COLUMNS])


def drift_stats(drift: pd.DataFrame) -> dict:
    """Over all runs and per pruner: runs, and per column the mean, sd (None for one run) and max |Δ| (points)."""
    return {name: {"runs": len(d)} | {c: {"mean": float(d[c].mean()),
                                          "sd": float(d[c].std(ddof=1)) if len(d) > 1 else None,
                                          "max_abs": float(d[c].abs().max())} for c in COLUMNS}
            for name, d in [("all", drift)] + list(drift.groupby("method"))}


def drift_markdown(drift: pd.DataFrame) -> str:
    """The measured cross-kernel drift per pruner (``drift_stats``) beside the reproduction check's tolerance
    (``sweep.compare.RETENTION_TOL``); ``verdicts.coverage_markdown`` says which runs it does not cover."""
    from .sweep.compare import RETENTION_TOL as tolerance

    if not len(drift):
        return "No cross-kernel drift measured (`python bench/drift_runs.py`).\n"
    rows = [{"pruner": name, "runs": s["runs"]} | {
        c.removeprefix("S_"): f"{s[c]['mean']:+.2f} ± {s[c]['sd'] or 0:.2f} (max {s[c]['max_abs']:.2f})"
        for c in COLUMNS} for name, s in drift_stats(drift).items()]
    rows.append({"pruner": "tolerance", "runs": ""} | {c.removeprefix("S_"): f"{tolerance[c]:g}" for c in COLUMNS})
    variants = ", ".join(sorted(drift["variant"].unique()))
    return (f"Retention of the same runs pruned on other CPU kernels ({variants}; `bench/drift_runs.py`), minus "
            f"their retention on this machine's, in points: mean ± sd (max |Δ|) over {len(drift)} runs "
            f"(sparsity {', '.join(sorted(drift['sparsity'].unique()))}). The last row is the reproduction check's "
            "per-column tolerance (`calibkit/sweep/compare.py`); every decided verdict is recomputed on tables "
            "perturbed by these runs' drift (`verdicts.robust`).\n\n" + pd.DataFrame(rows).to_markdown(index=False)
            + "\n")


def noise_markdown(df: pd.DataFrame, se: pd.DataFrame) -> str:
    """The noise floor: evaluation-item SEs (``verdicts.se_table``) and the seed-to-seed sd of S_total."""
    sd = df[df["kind"] != "none"].groupby(["method", "sparsity", "label"])["S_total"].std(ddof=1).dropna() * 100
    seeds = df[df["kind"] != "none"].groupby(["method", "sparsity", "label"]).size()
    lines = ["Bootstrap standard error (points of %) of each run's retention over evaluation items (paired resampling "
             "of the same items for the pruned and the dense model, 2000 draws):", "", se.round(2).to_markdown(), ""]
    if len(sd):
        lines.append(f"Seed-to-seed sd of S_total over calibration seeds: median {sd.median():.2f} pts, max "
                     f"{sd.max():.2f} pts ({len(sd)} cells with {int(seeds.min())}-{int(seeds.max())} seeds).")
    return "\n".join(lines) + "\n"


def environment_markdown(store) -> str:
    """The environment the store's runs were computed in (``calibkit.environment.describe`` in every record)."""
    from .sweep import Store

    envs = {}
    for r in Store(store).records():
        e = r.get("environment") or {}
        pk, torch, cpu = e.get("packages") or {}, e.get("torch") or {}, e.get("cpu") or {}
        key = (e.get("python"), torch.get("version"), f"{cpu.get('model')} ({torch.get('cpu_capability')}, "
               f"{cpu.get('cores')} cores, {torch.get('threads')} threads)",
               "yes" if pk.get("lock_sha256") and not pk.get("lock_deviations") else
               f"no: {', '.join(pk.get('lock_deviations') or ['no lock'])}", pk.get("sha256", "")[:12])
        envs[key] = envs.get(key, 0) + 1
    if not envs:
        return "No run records.\n"
    rows = "\n".join(f"| {py} | {torch} | {cpu} | {lock} | {h} | {n} |"
                     for (py, torch, cpu, lock, h), n in envs.items())
    return ("Environment recorded in the run records (`calibkit.environment.describe`):\n\n"
            "| python | torch | CPU (kernels, cores, threads) | packages match requirements.lock "
            "| installed set sha256 | runs |\n|---|---|---|---|---|---|\n" + rows + "\n")


# --- writing tables -----------------------------------------------------------------------------------

def write_table(table: pd.DataFrame, name: str, outdir: str | Path, digits: int = 2) -> Path:
    """``<outdir>/<name>.csv`` and ``<name>.md`` (rounded for reading; the CSV keeps full precision)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if isinstance(table.columns, pd.MultiIndex):
        table = table.set_axis([" ".join(map(str, c)) for c in table.columns], axis=1)
    table.to_csv(outdir / f"{name}.csv")
    (outdir / f"{name}.md").write_text(table.round(digits).to_markdown() + "\n")
    return outdir / f"{name}.md"
