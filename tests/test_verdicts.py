"""Verdicts by stated tests (calibkit.verdicts) on hand-built multi-seed tables whose truth is known: each claim
reads holds when the data carry it, fails when they contradict it, inconclusive when the difference is noise — and
pure noise does not make F1 hold (the old single-run rule held ~85 % of the time on noise)."""
import numpy as np
import pandas as pd
import pytest
from calibkit import analysis as A
from calibkit import verdicts as V

SOURCES = [("g1", "General"), ("g2", "General"), ("c1", "Commonsense"), ("k1", "Code"), ("m1", "Math"),
           ("m2", "Math")]


def table(effects: dict, noise: float = 0.005, seeds=(0, 1, 2), methods=("wanda", "sparsegpt"), rng_seed=0,
          distortion: dict | None = None, sparsity="0.6") -> pd.DataFrame:
    """effects: (method, label) -> 4 dimension retentions (fractions); each seed adds N(0, noise) per dimension."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for (method, label), dims in effects.items():
        if method not in methods:
            continue
        kind = "mix" if label.startswith("mix_") else "selfgen" if label.startswith("selfgen:") else "source"
        for s in seeds:
            d = np.asarray(dims, float) + rng.normal(0, noise, 4)
            rows.append({"key": f"{method}-{label}-{sparsity}-{s}", "label": label, "kind": kind, "pool": None,
                         "method": method, "sparsity": sparsity,
                         "seed": s, "S_total": d.mean(), **{f"S_{k}": v for k, v in zip(A.DIMS, d)},
                         "distortion": (distortion or {}).get(label, float(rng.uniform(1, 10)))})
    return pd.DataFrame(rows)


def trade_off(method: str, width: float) -> dict:
    """Each source keeps its own pool (+width) at the expense of the others (-width/3): S_total equal for all."""
    out = {}
    for label, pool in SOURCES:
        out[(method, label)] = [0.6 + (width if d == pool else -width / 3) for d in A.DIMS]
    out[(method, "mix_balanced")] = [0.6] * 4
    return out


def test_f1_holds_on_trade_offs_and_not_on_noise():
    df = table(trade_off("wanda", 0.2) | trade_off("sparsegpt", 0.2))
    f = V.f1(df, "0.6")
    assert f["verdict"] == "holds", f["text"]
    noise_holds = 0
    for r in range(8):
        flat = {(m, lab): [0.6] * 4 for m in ("wanda", "sparsegpt") for lab, _ in SOURCES + [("mix_balanced", "")]}
        noise_holds += V.f1(table(flat, noise=0.02, rng_seed=r), "0.6")["verdict"] == "holds"
    assert noise_holds <= 1
    # a set effect on S_total as large as in the dimensions: F1 is contradicted
    level = {(m, lab): [0.3 + 0.1 * i] * 4 for m in ("wanda", "sparsegpt")
             for i, (lab, _) in enumerate(SOURCES + [("mix_balanced", "")])}
    assert V.f1(table(level), "0.6")["verdict"] == "fails"
    assert V.f1(table(level, seeds=(0,)), "0.6")["verdict"] == "inconclusive"  # one run decides nothing


def test_f3_holds_fails_and_is_inconclusive_by_the_paired_test():
    base = {("sparsegpt", lab): [0.5] * 4 for lab, _ in SOURCES}
    assert V.f3(table(base | {("sparsegpt", "mix_balanced"): [0.6] * 4}), "0.6")["verdict"] == "holds"
    worse = base | {("sparsegpt", "mix_balanced"): [0.6] * 4, ("sparsegpt", "k1"): [0.7] * 4}
    f = V.f3(table(worse), "0.6")
    assert f["verdict"] == "fails" and "k1" in f["text"]
    tiny = base | {("sparsegpt", "mix_balanced"): [0.5005] * 4}
    assert V.f3(table(tiny, noise=0.02), "0.6")["verdict"] == "inconclusive"
    below_drift = base | {("sparsegpt", "mix_balanced"): [0.505] * 4}  # +0.5 pt, consistent over seeds
    r = V.f3(table(below_drift, noise=0.0001), "0.6")
    assert r["verdict"] == "inconclusive" and all(x["p"] < 0.05 for x in r["numbers"].values())
    one_seed = table(base | {("sparsegpt", "mix_balanced"): [0.6] * 4}, seeds=(0,))
    assert V.f3(one_seed, "0.6")["verdict"] == "inconclusive"  # a single run decides nothing


def test_f4_and_every_sparsity_use_the_spread_difference():
    df = table(trade_off("sparsegpt", 0.0) | trade_off("wanda", 0.0))
    for i, (lab, _) in enumerate(SOURCES):  # SparseGPT: S_total differs by set; Wanda: flat
        df.loc[(df.method == "sparsegpt") & (df.label == lab), "S_total"] += 0.02 * i
    r = V.f4(df, "0.6")
    assert r["verdict"] == "holds" and r["numbers"]["diff"] > 5
    swapped = df.assign(method=df["method"].map({"wanda": "sparsegpt", "sparsegpt": "wanda"}))
    assert V.f4(swapped, "0.6")["verdict"] == "fails"
    assert V.every_sparsity(swapped)["verdict"] == "fails"


def test_f2_spearman_over_single_sources_only():
    dist = {lab: float(i) for i, (lab, _) in enumerate(SOURCES)} | {"mix_balanced": 100.0}
    eff = {}
    for i, (lab, _) in enumerate(SOURCES):  # General falls with distortion, Math and Code rise
        eff[("sparsegpt", lab)] = [0.9 - 0.05 * i, 0.5, 0.3 + 0.05 * i, 0.3 + 0.05 * i]
    eff[("sparsegpt", "mix_balanced")] = [0.0, 0.0, 0.0, 0.0]  # would break the ranks if it were included
    f = V.f2(table(eff, noise=0.001, methods=("sparsegpt",), distortion=dist), "0.6")
    assert f["verdict"] == "holds", f["text"]
    src = f["numbers"]["sources"]
    assert src["General"]["n"] == len(SOURCES) and src["General"]["rho"] == pytest.approx(-1.0)
    assert f["numbers"]["with_mix"]["General"]["n"] == len(SOURCES) + 1
    one = V.f2(table(eff, noise=0.001, methods=("sparsegpt",), distortion=dist, seeds=(0,)), "0.6")
    assert one["verdict"] == "inconclusive" and "not decided" in one["text"]


def test_mixes_vs_balanced_and_contrary_list():
    eff = {("sparsegpt", "mix_balanced"): [0.6] * 4, ("sparsegpt", "mix_loo_code"): [0.7] * 4,
           ("sparsegpt", "mix_loo_math"): [0.5] * 4}
    df = table(eff)
    t8 = V.mixes_vs_balanced(df, "0.6", "mix_loo_", "no leave-one-out mix beats mix_balanced")
    assert t8["verdict"] == "fails" and "mix_loo_code" in t8["text"]
    found = V.all_verdicts(df, "0.6")
    assert "Table 8" in V.contrary(found)
    md = V.verdicts_markdown(found, "0.6", "test")
    assert "Contrary to the study" in md and "mix_loo_code" in md
    assert found["F5"]["verdict"] == "not measured"


def test_se_table_counts_runs_above_one_point():
    df = pd.DataFrame({"kind": ["source"] * 3, **{f"se_{d}": [0.005, 0.009, 0.012] for d in A.DIMS},
                       "se_total": [0.003] * 3})
    t = V.se_table(df)
    assert t.loc["se_Math", "runs > 1.0"] == 1 and t.loc["se_total", "max"] == pytest.approx(0.3)


def drift_rows(sd: float, n: int = 12, method: str = "sparsegpt", seed: int = 0) -> pd.DataFrame:
    """Measured-drift rows as ``analysis.drift_table`` returns them: Δ retention (points) per run, N(0, sd)."""
    rng = np.random.default_rng(seed)
    d = rng.normal(0, sd, (n, 4))
    return pd.DataFrame([{"key": f"{method}-s{i}-0.6-0", "method": method, "sparsity": "0.6", "label": f"s{i}",
                          "seed": 0, "variant": "avx2"}
                         | {f"S_{k}": v for k, v in zip(A.DIMS, row)} | {"S_total": row.mean()}
                         for i, row in enumerate(d)])


def test_a_verdict_that_flips_under_the_measured_drift_is_inconclusive():
    base = {("sparsegpt", lab): [0.5] * 4 for lab, _ in SOURCES}
    df = table(base | {("sparsegpt", "mix_balanced"): [0.515] * 4}, noise=0.001)  # +1.5 pts on every seed
    claims = {"F3": lambda d, it: V.f3(d, "0.6")}
    found = {"F3": V.f3(df, "0.6")}
    assert found["F3"]["verdict"] == "holds"
    calm = V.robust(found, df, drift_rows(0.05), claims=claims, draws=40)["F3"]
    assert calm["verdict"] == "holds" and calm["numbers"]["drift_stability"] == 1.0 and "100.0%" in calm["text"]
    rough = V.robust(found, df, drift_rows(3.0), claims=claims, draws=40)["F3"]  # other kernels move S_d by ~3 pts
    assert rough["verdict"] == "inconclusive" and rough["numbers"]["drift_stability"] < 0.95
    assert "not decided" in rough["text"] and found["F3"]["verdict"] == "holds"  # the input is left as it was
    # a perturbed table moves each run's S_d by one measured run's drift, and S_total is their mean
    moved = V.perturb(df, drift_rows(1.0), np.random.default_rng(0))
    dims = [f"S_{d}" for d in A.DIMS]
    assert not np.allclose(moved[dims], df[dims]) and np.allclose(moved["S_total"], moved[dims].mean(axis=1))
    assert V.robust(found, df, drift_rows(0.0).iloc[:0], "0.6") is found  # nothing measured: nothing to check


def test_perturbed_tables_are_decided_with_the_draws_of_the_verdict():
    """Only the drift may change a verdict: each perturbed table meets the resampling draws ``found`` met."""
    df = table(trade_off("sparsegpt", 0.0) | trade_off("wanda", 0.0))
    dims = [f"S_{d}" for d in A.DIMS] + ["S_total"]
    for i, (lab, _) in enumerate(SOURCES):  # S_d moved too: a perturbed table recomputes S_total from them
        df.loc[(df.method == "sparsegpt") & (df.label == lab), dims] += 0.02 * i
    found = {"F4": V.f4(df, "0.6")}
    assert found["F4"]["verdict"] == "holds"
    seen = []
    claims = {"F4": lambda d, it: seen.append(it) or V.f4(d, "0.6", iters=it)}
    kept = V.robust(found, df, drift_rows(0.0), claims=claims, draws=3)["F4"]
    assert set(seen) == {V.ITERS} and kept["numbers"]["drift_stability"] == 1.0


def test_pool_falls_back_condition_by_condition_and_borrowed_says_whose():
    drift = pd.DataFrame({"method": ["wanda", "wanda", "sparsegpt"], "selector": ["oasis", "random", "oasis"],
                          "x": [1.0, 2.0, 3.0]})
    rows, used = V.pool(drift, method="wanda", selector="oasis")
    assert list(rows["x"]) == [1.0] and used == {"method": "wanda", "selector": "oasis"}
    rows, used = V.pool(drift, method="sparsegpt", selector="random")  # selector not measured: the pruner's runs
    assert list(rows["x"]) == [3.0] and used == {"method": "sparsegpt"}
    rows, used = V.pool(drift, method="nirvana", selector="oasis")  # pruner not measured: all runs
    assert len(rows) == 3 and used == {}
    assert set(V.drawn(drift, ["x"], 50, np.random.default_rng(0), method="sparsegpt", selector="random")[:, 0]) == {3.0}
    runs = pd.DataFrame({"method": ["wanda", "sparsegpt", "nirvana"], "selector": ["oasis", "random", "oasis"]})
    text = V.borrowed(runs, drift, ["method", "selector"])
    assert "nirvana/oasis ← all measured runs" in text and "sparsegpt/random ← sparsegpt" in text
    assert "wanda/oasis" not in text and V.borrowed(runs.iloc[:1], drift, ["method", "selector"]) == ""


def test_drift_table_reads_the_measured_runs(tmp_path):
    import json

    rows = [{"key": "k", "method": "wanda", "sparsity": "0.6", "label": "ptb", "seed": 0, "variant": "avx2-threads2",
             "delta": {"S_General": -0.5, "S_Commonsense": 2.0, "S_Code": 0.0, "S_Math": 0.5, "S_total": 0.5}}]
    (tmp_path / "embedded-avx2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "smoke-avx2.jsonl").write_text("")
    t = A.drift_table(tmp_path, "embedded")
    assert len(t) == 1 and t.loc[0, "S_Commonsense"] == 2.0 and len(A.drift_table(tmp_path, "smoke")) == 0
    md = A.drift_markdown(t)
    assert "| wanda" in md and "+2.00" in md and "tolerance" in md
    runs = table({("sparsegpt", lab): [0.5] * 4 for lab, _ in SOURCES} | {("wanda", "selfgen:igsp"): [0.5] * 4})
    md = V.coverage_markdown(pd.concat([runs, runs.assign(sparsity="2:4")]), t)
    assert "sparsegpt ← all measured runs" in md and "wanda ←" not in md
    assert "sparsity 2:4" in md and "self-generated sets" in md
    assert "sparsity 2:4" not in V.coverage_markdown(runs[runs["kind"] != "selfgen"], t)


def test_shift_moves_only_the_measured_runs_by_their_own_drift():
    df = table({("sparsegpt", lab): [0.5] * 4 for lab, _ in SOURCES})
    drift = drift_rows(1.0, n=1).assign(label="g1", key="sparsegpt-g1-0.6-0")
    moved = V.shift(df, drift)
    hit = (df["label"] == "g1") & (df["seed"] == 0)
    other_n = df[hit].assign(key="another n")  # the same pruner, set, sparsity and seed, another run
    assert np.allclose(V.shift(pd.concat([df, other_n]), drift).iloc[-1][A.COLUMNS].to_numpy(float),
                       other_n[A.COLUMNS].to_numpy(float)[0])
    dims = [f"S_{d}" for d in A.DIMS]
    assert np.allclose(moved.loc[hit, dims].to_numpy() - df.loc[hit, dims].to_numpy(), drift[dims].to_numpy() / 100)
    assert np.allclose(moved.loc[~hit, A.COLUMNS], df.loc[~hit, A.COLUMNS])
    assert np.allclose(moved["S_total"], moved[dims].mean(axis=1))
    found = {"F3": V.f3(df, "0.6")}
    assert V.shifted_markdown(found, found, 1).endswith("every verdict the same.\n")
    assert "F3: holds → fails" in V.shifted_markdown({"F3": {"verdict": "holds"}}, {"F3": {"verdict": "fails"}}, 1)
