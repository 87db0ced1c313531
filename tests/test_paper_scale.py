"""The `paper` profile's analysis, on a synthetic results table that uses the profile's real run labels: every
table and figure of the study is produced and every finding is computed (not "not measured"). Regression tests for
three paper-scale bugs: mixes labelled `mix_balanced@study` (the analysis looked for `mix_balanced`), IGSP's bands
always measured on the embedded pools, and a ratio group that was not the study's Table 9."""
import matplotlib
import numpy as np
import pandas as pd
import pytest
from calibkit import analysis as A
from calibkit import plots as P
from calibkit import spec, sweep
from calibkit import verdicts as V

matplotlib.use("Agg")
METRICS = list(A.PROFILE_METRICS)


@pytest.fixture(scope="module")
def paper_table():
    rng = np.random.default_rng(0)
    rows = []
    configs = sweep.expand(sweep.load_profile("paper"))
    profiles = {}
    for c in configs:
        info = spec.parse(c.calibration).info()
        key = (c.calibration, c.seed)
        profiles.setdefault(key, {m: float(rng.uniform(1, 10)) for m in METRICS})
        dims = rng.uniform(0.2, 0.95, 4)
        rows.append({"calibration": c.calibration, "n": c.n, "seqlen": c.seqlen, "seed": c.seed, "method": c.method,
                     "sparsity": c.sparsity, "model": c.model, "suite": c.suite, "key": c.key, **info,
                     "S_total": float(dims.mean()), **{f"S_{d}": float(v) for d, v in zip(A.DIMS, dims)},
                     **(profiles[key] if info["kind"] != "none" else {m: None for m in METRICS}),
                     "achieved_sparsity": 0.6, "mean_recon_error": 0.1, "prune_warnings": 0, "prune_s": 1.0,
                     "eval_s": 1.0, "run_s": 2.0})
    return pd.DataFrame(rows)


def test_paper_labels_leave_the_pool_family_out(paper_table):
    labels = set(paper_table["label"])
    assert {"mix_balanced", "mix_4_3_3_code", "mix_loo_math", "selfgen:igsp"} <= labels
    assert not any("@" in lab for lab in labels)
    assert set(paper_table[paper_table["kind"] == "mix"]["family"]) == {"study"}


def test_paper_ratio_group_is_table_9():
    group = next(g for g in sweep.Profile.from_dict(sweep.load_profile("paper")).groups if g.name == "ratios")
    assert {spec.parse(c).label for c in group.calibration} == {
        "mix_3_1_1_1", "mix_1_3_1_1", "mix_1_1_3_1", "mix_1_1_1_3", "mix_0.85_0.85_1.15_1.15",
        "mix_1.15_1.15_0.85_0.85", "mix_balanced"}


def test_paper_igsp_bands_come_from_the_study_pools():
    from calibkit import selfgen

    group = next(g for g in sweep.Profile.from_dict(sweep.load_profile("paper")).groups if g.name == "selfgen")
    igsp = [spec.parse(c) for c in group.calibration if "igsp" in c]
    assert len(igsp) == 4 and all(s.family == "study" for s in igsp)
    assert selfgen.parameters("igsp", {"band_pools": igsp[0].family}).band_pools == "study"
    with pytest.raises(Exception, match="band_pools"):
        selfgen.parameters("igsp", {"band_pools": "nowhere"})


def test_every_table_figure_and_finding_of_the_study_is_produced(paper_table):
    df, hi = paper_table, "0.6"
    t1 = A.retention_table(df, hi, sets="table1")
    t1_labels = set(t1.index.get_level_values("label"))
    assert {"c4", "mix_balanced", "mix_4_3_3_math", "mix_4_3_3_code", "selfgen:igsp", "none"} <= t1_labels
    assert not any(lab.startswith("mix_loo_") for lab in t1_labels)
    for sparsity in ("0.4", "0.6"):  # Tables 4 (40 %) and 1 (60 %)
        assert len(A.retention_table(df, sparsity)) >= 2 * 15
    for m in ("sparsegpt", "wanda"):
        t = A.sparsity_table(df, m)  # Tables 2, 14
        assert {"0.3", "0.4", "0.5", "0.6"} <= set(map(str, t.columns)) and "mix_balanced" in t.index
    assert len(A.dimension_by_sparsity(df, "wanda", "c4")) >= 6  # Table 5 (with N:M)
    assert len(A.strategy_table(df, "0.4", "wanda", "c4")) == 8  # Tables 7, 10: c4, 6 selfgen, mix_balanced
    assert set(A.mix_table(df, hi, "mix_loo_").index) == {"mix_balanced", "mix_loo_general", "mix_loo_commonsense",
                                                          "mix_loo_code", "mix_loo_math"}  # Table 8
    assert len(A.ratio_mixes(df, hi)) >= 7  # Table 9
    assert len(A.selfgen_table(df, "c4")) == 8 and len(A.igsp_gap(df, hi)) == 3  # Tables 15, 12
    assert A.spreads(df, hi).shape[0] == 2
    assert A.spearman_table(df, "sparsegpt", hi)["rho"].notna().all()  # Table 6
    coords, var, loadings = A.pca_profiles(df)
    assert len(coords) >= 15
    found = V.all_verdicts(df, hi)
    assert {"F1", "F2 (SparseGPT)", "F3 (SparseGPT)", "F4", "F5", "Table 8", "Table 9", "Wanda vs SparseGPT"} <= set(found)
    assert all(f["verdict"] in ("holds", "fails", "inconclusive") for f in found.values()), {
        k: f["text"] for k, f in found.items() if f["verdict"] == "not measured"}
    assert len(found["Table 9"]["numbers"]) == 8 and len(found["Table 8"]["numbers"]) == 4
    figures = [P.decomposed_vs_aggregated(df, hi, "sparsegpt"), P.spread_by_method(df, hi),
               P.total_by_sparsity(df), P.dimensions_by_sparsity(df, "wanda", "c4"),
               P.spearman_heatmap(df, "sparsegpt", hi), P.pca_scatter(df, hi), P.selfgen_components(df, hi, "c4"),
               P.profile_heatmap(A.profile_table(df)), P.recon_error_box(df)]
    assert all(f.axes for f in figures)


def test_figures_with_bootstrap_cis_and_jitter_are_deterministic(paper_table):
    """seaborn's CI bootstrap and stripplot jitter are seeded (plots.SEED): the same records give the same PNG."""
    import io

    import matplotlib.pyplot as plt
    import pandas as pd

    def png(fig):
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        return buf.getvalue()

    df = paper_table
    assert png(P.spread_by_method(df, "0.6")) == png(P.spread_by_method(df, "0.6"))
    per_seed = pd.DataFrame({"method": ["wanda"] * 6, "selector": ["random", "oasis"] * 3, "seed": [0, 0, 1, 1, 2, 2],
                             "log_ppl": [5.0, 4.9, 5.1, 5.0, 5.2, 5.1], "acc": [40.0, 41, 39, 42, 40, 40]})
    assert png(P.selection_effects(per_seed)) == png(P.selection_effects(per_seed))
