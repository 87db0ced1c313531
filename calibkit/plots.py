"""Seaborn figures of the study, drawn from ``calibkit.analysis`` tables. Each function returns the Figure;
``save`` writes it as PNG. No computation beyond reshaping for plotting."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg") if not matplotlib.get_backend().lower().startswith(("module://", "inline")) else None
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from . import analysis as A  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")
SEED = 0  # seaborn's bootstrap CIs and stripplot's jitter are random: seeded, same records -> same PNG


@contextmanager
def _jitter_seeded():
    """stripplot draws its jitter from numpy's global generator: seeded inside the block, restored after."""
    state = np.random.get_state()
    np.random.seed(SEED)
    try:
        yield
    finally:
        np.random.set_state(state)


def save(fig, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def _long(table: pd.DataFrame, cols=A.COLUMNS) -> pd.DataFrame:
    t = table.reset_index()
    ids = [c for c in t.columns if c not in cols and not c.endswith("_std") and c != "seeds"]
    out = t.melt(id_vars=ids, value_vars=[c for c in cols if c in t.columns], var_name="dimension",
                 value_name="retention (%)")
    out["dimension"] = out["dimension"].str.removeprefix("S_")
    return out


def decomposed_vs_aggregated(df: pd.DataFrame, sparsity: str, method: str = "sparsegpt"):
    """Figure 1/8: per-dimension retention of every main-grid calibration set (left) beside S_total (right)."""
    t = A.retention_table(df, sparsity, (method,), sets="main").loc[method]
    long = _long(t)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [3, 1]})
    per_dim = long[long["dimension"] != "total"]
    sns.barplot(seed=SEED, data=per_dim, x="dimension", y="retention (%)", hue="label", ax=ax1)
    ax1.set_title(f"(a) per dimension — {method} {sparsity}")
    ax1.legend(fontsize=8, ncol=2, loc="lower left", framealpha=0.9)
    sns.barplot(seed=SEED, data=long[long["dimension"] == "total"], x="label", y="retention (%)", ax=ax2,
                color="0.5")
    ax2.set_title("(b) aggregated S_total")
    ax2.tick_params(axis="x", rotation=60)
    lo = max(0.0, long["retention (%)"].min() - 5)
    ax2.set_ylim(lo, None)
    fig.tight_layout()
    return fig


def spearman_heatmap(df: pd.DataFrame, method: str, sparsity: str):
    """Figure 2: ρ between profile metrics (rows) and retention (columns); * marks p < 0.05."""
    t = A.spearman_table(df, method, sparsity)
    rho = t.pivot(index="metric", columns="retention", values="rho").reindex(index=list(A.PROFILE_METRICS))
    p = t.pivot(index="metric", columns="retention", values="p").reindex(index=rho.index)
    cols = [c for c in A.DIMS + ["total"] if c in rho.columns]
    rho, p = rho[cols], p[cols]
    annot = rho.map(lambda v: "" if pd.isna(v) else f"{v:+.2f}") + p.map(lambda v: "*" if v < 0.05 else "")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.heatmap(rho, vmin=-1, vmax=1, cmap="RdBu_r", annot=annot, fmt="", ax=ax, cbar_kws={"label": "Spearman ρ"})
    ax.set_title(f"Spearman ρ, {method} {sparsity} (n = {int(t['n'].max())} sets; * p < 0.05)")
    return fig


def spread_by_method(df: pd.DataFrame, sparsity: str):
    """Figure 3: S_total of each main-grid calibration set under SparseGPT and Wanda, with their spreads."""
    d = A.main_sets(df[(df["sparsity"] == str(sparsity)) & df["method"].isin(["sparsegpt", "wanda"])])
    d = d.assign(**{"S_total (%)": 100 * d["S_total"]})
    sp = A.spreads(df, sparsity)["S_total"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, m in zip(axes, ["sparsegpt", "wanda"]):
        sub = d[d["method"] == m]
        order = [lab for lab in A.label_order(df) if lab in set(sub["label"])]
        sns.barplot(seed=SEED, data=sub, x="label", y="S_total (%)", order=order, ax=ax,
                    color="tab:blue" if m == "wanda" else "tab:red")
        ax.set_title(f"{m} {sparsity}: spread {sp.get(m, float('nan')):.1f} pts")
        ax.tick_params(axis="x", rotation=60)
    lo = max(0.0, d["S_total (%)"].min() - 5)
    axes[0].set_ylim(lo, None)
    fig.tight_layout()
    return fig


def dimensions_by_sparsity(df: pd.DataFrame, method: str, label: str):
    """Figure 4: per-dimension retention across unstructured sparsities (left) and N:M patterns (right)."""
    t = A.dimension_by_sparsity(df, method, label)
    long = _long(t.rename_axis("sparsity"))
    unstructured = long[~long["sparsity"].str.contains(":")]
    nm = long[long["sparsity"].str.contains(":")]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    sns.lineplot(seed=SEED, data=unstructured, x="sparsity", y="retention (%)", hue="dimension", marker="o", ax=ax1)
    ax1.set_title(f"{method}, {label}: unstructured")
    if len(nm):
        sns.barplot(seed=SEED, data=nm, x="sparsity", y="retention (%)", hue="dimension", ax=ax2)
    ax2.set_title("N:M")
    fig.tight_layout()
    return fig


def pca_scatter(df: pd.DataFrame, sparsity: str, method: str = "sparsegpt"):
    """Figure 5: calibration sets in the PCA plane of their standardised profiles, coloured by S_total."""
    coords, var, _ = A.pca_profiles(df)
    tot = A.main_sets(df[(df["method"] == method) & (df["sparsity"] == str(sparsity))]).groupby("label")["S_total"]
    coords = coords.assign(S_total=100 * tot.mean().reindex(coords.index))
    fig, ax = plt.subplots(figsize=(6.5, 5))
    sns.scatterplot(coords, x="PC1", y="PC2" if "PC2" in coords else "PC1", hue="S_total", palette="viridis",
                    s=120, ax=ax)
    for lab, r in coords.iterrows():
        ax.annotate(lab, (r["PC1"], r.get("PC2", r["PC1"])), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel(f"PC1 ({100 * var.iloc[0]:.0f} %)")
    if len(var) > 1:
        ax.set_ylabel(f"PC2 ({100 * var.iloc[1]:.0f} %)")
    ax.set_title(f"profiles in PCA space; colour = S_total ({method} {sparsity})")
    return fig


def total_by_sparsity(df: pd.DataFrame, labels: list[str] | None = None):
    """Figure 7: S_total as a function of unstructured sparsity per calibration set, SparseGPT and Wanda."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, m in zip(axes, ["sparsegpt", "wanda"]):
        t = A.sparsity_table(df, m, labels)
        t = t[[c for c in t.columns if ":" not in str(c)]]
        t = t.dropna(thresh=2)  # sets measured at two sparsities or more
        long = t.reset_index().melt(id_vars="label", var_name="sparsity", value_name="S_total (%)").dropna()
        sns.lineplot(seed=SEED, data=long, x="sparsity", y="S_total (%)", hue="label", marker="o", ax=ax)
        ax.set_title(m)
    fig.tight_layout()
    return fig


def selfgen_components(df: pd.DataFrame, sparsity: str, reference: str, method: str = "sparsegpt"):
    """Figure 9: S_total of the self-generation strategies (ablations to full IGSP), with mix_balanced (real data,
    the ceiling) and the reference single source as lines."""
    d = df[(df["method"] == method) & (df["sparsity"] == str(sparsity))]
    tot = d.groupby("label")["S_total"].mean() * 100
    order = [lab for lab in A.SELFGEN_ORDER if lab in tot.index]
    fig, ax = plt.subplots(figsize=(8, 4))
    sns.barplot(seed=SEED, x=[o.removeprefix("selfgen:") for o in order], y=[tot[o] for o in order], ax=ax,
                color="tab:purple")
    for lab, style in ((A.BALANCED, "--"), (reference, ":")):
        if lab in tot.index:
            ax.axhline(tot[lab], ls=style, color="k", label=f"{lab} {tot[lab]:.1f}")
    ax.set_ylabel("S_total (%)")
    ax.set_title(f"self-generated calibration, {method} {sparsity}")
    if order:
        lo = min(tot[order].min(), tot.get(reference, tot[order].min())) - 5
        ax.set_ylim(max(0, lo), None)
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def profile_heatmap(table3: pd.DataFrame):
    """Each profile metric standardised across calibration sets (metrics constant across sets left out),
    annotated with the raw values."""
    z = table3.drop(columns=[c for c in table3 if table3[c].nunique() < 2]).astype(float)
    z = (z - z.mean()) / z.std(ddof=0)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(z) + 1.5))
    sns.heatmap(z, cmap="RdBu_r", center=0, annot=table3[z.columns].round(3), fmt="", ax=ax,
                cbar_kws={"label": "z-score"})
    ax.set_title("calibration profiles (annotated with raw values)")
    return fig


def recon_error_box(df: pd.DataFrame):
    """Mean layer reconstruction error by pruner and sparsity (log scale); Magnitude has none."""
    d = df[df["method"] != "magnitude"].dropna(subset=["mean_recon_error"])
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.boxplot(d, x="sparsity", y="mean_recon_error", hue="method", ax=ax)
    ax.set_yscale("log")
    return fig


def sample_quality(samples_df: pd.DataFrame):
    """Figure 6 form: post-pruning perplexity of every single sample, per pruner, coloured by its tier (None when
    there is no single-sample prune)."""
    from . import samples as S

    rows = []
    for m in sorted(samples_df["method"].unique()):
        one = S.singles(samples_df, m)
        if not one.empty:
            rows.append(pd.DataFrame({"sample": one.index.astype(str), "perplexity": one.values, "method": m,
                                      "tier": S.tiers(one).values}))
    if not rows:
        return None
    d = pd.concat(rows)
    g = sns.catplot(d, x="sample", y="perplexity", hue="tier", hue_order=list(S.TIERS), row="method", kind="bar",
                    seed=SEED, height=2.4, aspect=4, sharey=False, palette={"golden": "#d4a017", "mediocre": "#8c8c8c",
                                                                 "detrimental": "#b03a2e"}, dodge=False)
    g.set_axis_labels("sample (sequence id)", "post-pruning perplexity")
    return g.figure


def pair_effects(samples_df: pd.DataFrame):
    """Figure 3 form: perplexity of each pair over that of its better member alone (intra-tier pairs) or of its
    higher-tier member alone (inter-tier pairs), per tier combination and pruner; below 1 the pair helps (None when
    there is no pair prune)."""
    from . import samples as S

    parts = []
    for m in sorted(samples_df["method"].unique()):
        d = S.pair_table(samples_df, m)
        if d.empty:
            continue
        d["change"] = d["ppl"] / np.where(d["kind"] == "intra", d["best_single"], d["better_member"])
        parts.append(d[["pair", "kind", "change"]].assign(method=m))
    if not parts:
        return None
    d = pd.concat(parts)
    order = [f"{a} + {b}" for i, a in enumerate(S.TIERS) for b in S.TIERS[i:]]
    g = sns.catplot(d, x="pair", y="change", col="method", kind="box", order=[o for o in order if o in set(d["pair"])],
                    height=3.4, aspect=1.5, sharey=False, color="#9ecae1")
    with _jitter_seeded():
        g.map_dataframe(sns.stripplot, x="pair", y="change", order=[o for o in order if o in set(d["pair"])],
                        color="black", size=3)
    for ax in g.axes.flat:
        ax.axhline(1, color="firebrick", lw=1, ls="--")
        ax.set_yscale("log")
        ax.tick_params(axis="x", rotation=30)
    g.set_axis_labels("tiers of the pair", "ppl(pair) / ppl(reference member)")
    return g.figure


def context_scatter(samples_df: pd.DataFrame):
    """Figure 6 (context dependency): rank of each sample's perplexity under one pruner against another."""
    from . import samples as S

    methods = [m for m in sorted(samples_df["method"].unique()) if not S.singles(samples_df, m).empty]
    pairs = [(a, b) for i, a in enumerate(methods) for b in methods[i + 1:]]
    fig, axes = plt.subplots(1, max(len(pairs), 1), figsize=(3.6 * max(len(pairs), 1), 3.4), squeeze=False)
    for ax, (a, b) in zip(axes[0], pairs):
        x, y = S.singles(samples_df, a).rank(), S.singles(samples_df, b).rank()
        common = x.index.intersection(y.index)
        ax.scatter(x[common], y[common], s=18)
        ax.set_xlabel(f"rank under {a}")
        ax.set_ylabel(f"rank under {b}")
    fig.tight_layout()
    return fig


def macro_view(macro_df: pd.DataFrame, reference: str = "ptb", n: int = 16, seqlen: int = 256):
    """Figure 2 form: post-pruning perplexity against the number of samples, their length, and the source (one
    point per random draw, the line through the means), per pruner."""
    methods = sorted(macro_df["method"].unique())
    fig, axes = plt.subplots(len(methods), 3, figsize=(12, 3.2 * len(methods)), squeeze=False)
    for row, m in zip(axes, methods):
        d = macro_df[macro_df["method"] == m]
        ref = d[d["label"] == reference]
        for ax, part, x in ((row[0], ref[ref["seqlen"] == seqlen], "n"), (row[1], ref[ref["n"] == n], "seqlen")):
            if len(part):
                sns.pointplot(part, x=x, y="ppl", ax=ax, errorbar=None, color="black", markers="_")
                with _jitter_seeded():
                    sns.stripplot(part, x=x, y="ppl", ax=ax, color="#3182bd", size=5)
            ax.set_xlabel({"n": f"samples ({reference}, {seqlen} tokens)", "seqlen": f"tokens per sample ({n})"}[x])
            ax.set_ylabel(f"{m}: perplexity")
        src = d[(d["n"] == n) & (d["seqlen"] == seqlen)]
        if len(src):
            with _jitter_seeded():
                sns.stripplot(src, x="label", y="ppl", ax=row[2], color="#3182bd", size=5)
            row[2].tick_params(axis="x", rotation=30)
        row[2].set_xlabel(f"source ({n} x {seqlen})")
        row[2].set_ylabel("")
    fig.tight_layout()
    return fig


def selection_effects(per_seed: pd.DataFrame):
    """OASIS Tables 1/2 as a picture: per pruner, each selector's mean log perplexity and commonsense accuracy
    relative to random's, one point per seed (``selection_study.per_seed``)."""
    d = per_seed.copy()
    base = d[d["selector"] == "random"].groupby("method")[["log_ppl", "acc"]].mean()
    d["Δ log ppl vs random"] = d["log_ppl"] - d["method"].map(base["log_ppl"])
    d["Δ accuracy vs random (pts)"] = d["acc"] - d["method"].map(base["acc"])
    cols = [c for c in ("Δ log ppl vs random", "Δ accuracy vs random (pts)") if d[c].notna().any()]
    fig, axes = plt.subplots(1, len(cols), figsize=(5.2 * len(cols), 3.6), squeeze=False)
    for ax, c in zip(axes[0], cols):
        with _jitter_seeded():
            sns.stripplot(data=d, x="method", y=c, hue="selector", dodge=True, ax=ax, size=6)
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("")
    fig.tight_layout()
    return fig


def weight_trajectories(traj: pd.DataFrame):
    """OASIS Figure 5 form: each pool sample's weight over the optimisation steps, coloured by its tier, one panel
    per condition (``label``: with / without embedding noise)."""
    labels = list(dict.fromkeys(traj["label"]))
    fig, axes = plt.subplots(1, len(labels), figsize=(4.6 * len(labels), 3.4), squeeze=False, sharey=True)
    palette = {"golden": "#d4a017", "mediocre": "#7f7f7f", "detrimental": "#b22222"}
    for ax, label in zip(axes[0], labels):
        d = traj[traj["label"] == label]
        sns.lineplot(seed=SEED, data=d, x="step", y="weight", hue="tier", hue_order=list(palette), units="sample",
                     estimator=None, ax=ax, palette=palette, lw=1.2)
        ax.set_title(label)
    fig.tight_layout()
    return fig
