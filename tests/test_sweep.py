import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from calibkit import analysis as A
from calibkit import sweep

TINY = {"name": "t", "model": "tiny-llama", "suite": "embedded", "limit": 1, "n": 2, "seqlen": 16, "seeds": [0],
        "experiments": {"main": {"calibration": ["ptb", "codeio"], "methods": ["magnitude", "wanda", "sparsegpt"],
                                 "sparsities": ["0.3", "0.5", "2:4"]}}}


def _write(tmp_path, prof=TINY):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(prof))
    return path


def test_expand_dedupes_and_validates(tmp_path):
    configs = sweep.expand(sweep.load_profile(str(_write(tmp_path))))
    assert len(configs) == 3 + 2 * 2 * 3  # magnitude once per sparsity (no calibration), others per set
    assert len({c.key for c in configs}) == len(configs)
    assert all(c.calibration == "none" for c in configs if c.method == "magnitude")
    bad = TINY | {"experiments": {"x": {"calibration": ["nope"], "methods": ["wanda"], "sparsities": ["0.5"]}}}
    with pytest.raises((KeyError, ValueError), match="nope"):
        sweep.expand(bad)
    with pytest.raises(sweep.SweepError, match="unknown method"):
        sweep.expand(TINY | {"experiments": {"x": {"calibration": ["ptb"], "methods": ["obs"], "sparsities": [0.5]}}})
    with pytest.raises(sweep.SweepError, match="no sweep profile"):
        sweep.load_profile("no-such-profile")
    for name in ("smoke", "embedded", "paper"):
        assert sweep.expand(sweep.load_profile(name))


def test_killed_sweep_resumes_with_one_record_per_config(tmp_path):
    cfg, store = _write(tmp_path), tmp_path / "store"
    configs = sweep.expand(sweep.load_profile(str(cfg)))
    cmd = [sys.executable, "-m", "calibkit", "sweep", str(cfg), "--store", str(store)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((store / "runs").glob("*.json"))) < 2:
        time.sleep(0.2)
    time.sleep(1.0)  # well inside a run: the model is being pruned or evaluated
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(list((store / "runs").glob("*.json")))
    assert 2 <= partial < len(configs), "the sweep must be killed mid-way for this test to mean anything"
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    files = sorted((store / "runs").glob("*.json"))
    records = [json.loads(p.read_text()) for p in files]
    assert sorted(r["key"] for r in records) == sorted(c.key for c in configs)  # each config once, none extra
    assert all(p.stem == r["key"] and "total" in r["retention"] for p, r in zip(files, records))
    assert all(0 < r["cpu_share"]["eval"] < 1.5 and 0 < r["cpu_share"]["run"] < 1.5 for r in records)
    assert not list(store.rglob(".*.tmp-*"))


def test_timing_reports_evaluation_time_only_over_runs_that_had_the_cpu():
    from calibkit.analysis import timing_markdown

    df = pd.DataFrame({"method": ["wanda"] * 4, "build_s": 0.0, "profile_s": 0.0, "prune_s": 10.0,
                       "eval_s": [50.0, 60.0, 200.0, 70.0], "run_s": [60.0, 70.0, 210.0, 80.0],
                       "eval_cpu_share": [0.95, 0.9, 0.5, None]})
    text = timing_markdown(df)
    assert "over the 2 of 3 recorded runs" in text and "median 55.0 s, range 50.0-60.0 s" in text
    assert "2 of the 4 runs have no CPU share >= 0.8 on record" in text


def test_ray_executor_matches_local(tmp_path):
    pytest.importorskip("ray")
    prof = TINY | {"experiments": {"m": {"calibration": ["ptb"], "methods": ["wanda", "sparsegpt"],
                                         "sparsities": ["0.5"]}}}
    configs = sweep.expand(prof)
    sweep.run_sweep(configs, tmp_path / "local", "local", progress=False)
    sweep.run_sweep(configs, tmp_path / "ray", "ray", cpus_per_run=1, progress=False)
    cols = ["key", "S_total", "achieved_sparsity", "mean_recon_error"]
    a = sweep.results_table(tmp_path / "local")[cols].sort_values("key").reset_index(drop=True)
    b = sweep.results_table(tmp_path / "ray")[cols].sort_values("key").reset_index(drop=True)
    assert len(a) == 2
    pd.testing.assert_frame_equal(a, b)


def _table(rows):
    out = []
    for label, kind, pool, method, total, dims, distortion in rows:
        r = {"label": label, "kind": kind, "pool": pool, "method": method, "sparsity": "0.6", "seed": 0,
             "S_total": total, "distortion": distortion, "volume": 100, "scope": 0.25, "variety": 0.1,
             "granularity": 1.0, "aggregation": 0.1, "mismatch": -1.0}
        r |= {f"S_{d}": v for d, v in zip(A.DIMS, dims)}
        out.append(r)
    return pd.DataFrame(out)


def test_spreads_and_spearman_on_a_hand_built_table():
    # SparseGPT: singles spread widely per dimension; mix_balanced has the best total. Wanda: narrow.
    rows = [
        ("a", "source", "General", "sparsegpt", 0.50, (0.9, 0.5, 0.2, 0.4), 10.0),
        ("b", "source", "Code", "sparsegpt", 0.52, (0.5, 0.5, 0.7, 0.38), 20.0),
        ("c", "source", "Math", "sparsegpt", 0.48, (0.4, 0.5, 0.3, 0.72), 30.0),
        ("mix_balanced", "mix", None, "sparsegpt", 0.60, (0.6, 0.6, 0.6, 0.6), 15.0),
        ("a", "source", "General", "wanda", 0.50, (0.52, 0.5, 0.49, 0.49), 10.0),
        ("b", "source", "Code", "wanda", 0.505, (0.5, 0.5, 0.52, 0.49), 20.0),
        ("c", "source", "Math", "wanda", 0.51, (0.5, 0.5, 0.5, 0.54), 30.0),
        ("mix_balanced", "mix", None, "wanda", 0.50, (0.5, 0.5, 0.5, 0.5), 15.0),
    ]
    df = _table(rows)
    sp = A.spreads(df, "0.6")
    assert sp.loc["sparsegpt", "S_total"] == pytest.approx(12.0)
    assert sp.loc["sparsegpt", "S_General"] == pytest.approx(50.0)
    assert sp.loc["wanda", "S_total"] == pytest.approx(1.0)
    # Distortion ranks a<mix<b<c; over the single sources (the study's way) General falls with it, Math rises
    t = A.spearman_table(df, "sparsegpt", "0.6").set_index(["metric", "retention"])
    assert t.loc[("distortion", "General"), "rho"] == pytest.approx(-1.0)
    assert t.loc[("distortion", "Math"), "rho"] == pytest.approx(0.5) and t.loc[("distortion", "Math"), "n"] == 3
    with_mix = A.spearman_table(df, "sparsegpt", "0.6", with_mix=True).set_index(["metric", "retention"])
    assert with_mix.loc[("distortion", "Math"), "rho"] == pytest.approx(0.4)
    assert t.loc["volume"]["rho"].isna().all()  # constant metric: no ranking


def test_damaged_store_records_are_reported_and_recomputed(tmp_path):
    prof = TINY | {"experiments": {"m": {"calibration": ["ptb"], "methods": ["magnitude", "wanda"],
                                         "sparsities": ["0.5"]}}}
    configs = sweep.expand(prof)
    store = tmp_path / "store"
    assert sweep.run_sweep(configs, store, progress=False)["ran"] == 2
    truncated, edited = (sweep.Store(store).path(c) for c in configs)
    good = {p: json.loads(p.read_text()) for p in (truncated, edited)}
    truncated.write_text(truncated.read_text()[:200])  # a half-written file: must not count as done
    rec = json.loads(edited.read_text())
    rec["retention"]["total"] = 9.99  # a hand-edited number: the checksum no longer matches
    edited.write_text(json.dumps(rec))
    with pytest.warns(RuntimeWarning) as caught:
        table = sweep.results_table(store)
    assert table.empty  # neither damaged record is used
    said = " ".join(str(w.message) for w in caught)
    assert str(truncated) in said and "truncated" in said and str(edited) in said and "checksum" in said
    with pytest.warns(RuntimeWarning):
        res = sweep.run_sweep(configs, store, progress=False)
    assert res["ran"] == 2 and res["done"] == 0
    for p in (truncated, edited):
        again = json.loads(p.read_text())
        assert again["retention"] == good[p]["retention"] and again["checksum"] == sweep.checksum(again)
    assert len(sweep.results_table(store)) == 2


def test_store_refuses_a_foreign_folder_and_cleans_only_its_own_temp_files(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / ".notes.tmp-1").write_text("a user's file that looks like a temp file")
    with pytest.raises(sweep.SweepError, match="not a calibkit store"):
        sweep.Store(foreign).claim()
    store = sweep.Store(tmp_path / "store")
    store.claim()
    (store.root / ".x.tmp-9").write_text("not in runs/ or profiles/: not the store's")
    store.runs.mkdir()
    (store.runs / ".abc.json.tmp-9").write_text("{")
    assert store.clean_partial() == 1
    assert (store.root / ".x.tmp-9").exists() and (foreign / ".notes.tmp-1").exists()


def test_expand_runs_seed_by_seed_and_checks_the_eval_dtype():
    prof = TINY | {"seeds": [0, 1], "eval_dtype": "bfloat16",
                   "experiments": {"m": {"calibration": ["ptb", "codeio"], "methods": ["wanda"], "sparsities": [0.5]}}}
    configs = sweep.expand(prof)
    assert [(c.seed, c.calibration) for c in configs] == [(0, "ptb"), (0, "codeio"), (1, "ptb"), (1, "codeio")]
    assert {c.eval_dtype for c in configs} == {"bfloat16"}
    assert len({c.key for c in configs + sweep.expand(prof | {"eval_dtype": "float32"})}) == 8  # dtype is in the key
    with pytest.raises(sweep.SweepError, match="eval_dtype"):
        sweep.expand(prof | {"eval_dtype": "fp8"})


def test_reproduction_tolerance_covers_the_measured_cross_kernel_drift():
    """compare's per-column tolerance is 4 x the RMS of the committed cross-kernel drift (bench/drift_runs.py) of the
    pruner that drifts most, and above every measured |Δ|: a new measurement that moves more fails here."""
    from pathlib import Path

    import numpy as np
    from calibkit.sweep.compare import RETENTION_TOL, tolerance

    rows = A.drift_rows(Path(__file__).resolve().parent.parent / "results" / "drift", "embedded")
    assert set(RETENTION_TOL) == set(A.COLUMNS)
    for suite, n in (("embedded", 20), ("oasis", 50)):  # rows before the suite was recorded: the capability study's
        drift = A.drift_frame([r for r in rows if r.get("suite", "embedded") == suite])
        drift["group"] = [f"{r['method']}/{r.get('kind', 'source')}" for r in rows if r.get("suite", "embedded") == suite]
        assert len(drift) >= n
        tol = tolerance(suite)
        for c in A.COLUMNS:
            if drift[c].isna().all():  # the suite has no task of this column
                continue
            rms = max(float(np.sqrt((d[c].dropna() ** 2).mean())) for _, d in drift.groupby("group")
                      if d[c].notna().any())
            assert 4 * rms <= tol[c] <= 4 * rms + 0.5 and drift[c].abs().max() <= tol[c], (suite, c)


def test_reproduction_check_compares_records_of_the_same_key(tmp_path, capsys):
    from calibkit.cli import main
    from calibkit.sweep.compare import RETENTION_TOL

    prof = TINY | {"experiments": {"m": {"calibration": ["ptb"], "methods": ["wanda", "sparsegpt"],
                                         "sparsities": ["0.5"]}}}
    configs = sweep.expand(prof)
    sweep.run_sweep(configs, tmp_path / "a", progress=False)
    sweep.run_sweep(configs, tmp_path / "b", progress=False)  # recomputed on the same machine: exact
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("reproduced 2/2 runs: max |Δ retention| 0.00 pts, max |Δ profile| 0") and \
        "2 bit-identical" in line
    # a recomputed record that moved by more than the tolerance is reported, and the check fails
    store = sweep.Store(tmp_path / "b")
    rec = store.get(configs[0])
    rec["retention"]["dimensions"]["Code"] += (RETENTION_TOL["S_Code"] + 0.5) / 100
    store.put(configs[0], {k: v for k, v in rec.items() if k != "checksum"})
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    out = capsys.readouterr().out
    moved = RETENTION_TOL["S_Code"] + 0.5
    assert "not reproduced: " + configs[0].key in out
    assert f"reproduced 1/2 runs: max |Δ retention| {moved:.2f} pts" in out
    assert store.get(configs[1])["scorer"] == "calibkit-scored-1"
    old = {k: v for k, v in sweep.Store(tmp_path / "a").get(configs[1]).items() if k not in ("checksum", "scorer")}
    sweep.Store(tmp_path / "a").put(configs[1], old)  # a record from before scorers were recorded: lm-eval's path
    main(["compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert "1 runs rescored (lm-eval-hflm → calibkit-scored-1" in capsys.readouterr().out
    more = old | {"items_requested": {t: n + 1 for t, n in old["items_requested"].items()}}
    sweep.Store(tmp_path / "a").put(configs[1], more)  # evaluated on other items: not a reproduction
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert "1 runs evaluated on other items than committed (not comparable)" in capsys.readouterr().out
    assert len(old["calibration"]["tokens_sha256"]) == 64  # which set the run used
    other_set = old | {"calibration": old["calibration"] | {"tokens_sha256": "0" * 64}}
    sweep.Store(tmp_path / "a").put(configs[1], other_set)  # calibrated on another set: not a reproduction
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert "1 runs calibrated on another set than committed (token digests differ)" in capsys.readouterr().out
    (tmp_path / "b" / "runs" / f"{configs[1].key}.json").unlink()
    main(["compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert "1 committed runs not recomputed yet" in capsys.readouterr().out
    # scoped to some groups of a profile: only their committed runs count (make reproduce ONLY=...)
    two = prof | {"experiments": {"w": {"calibration": ["ptb"], "methods": ["wanda"], "sparsities": ["0.5"]},
                                  "s": {"calibration": ["ptb"], "methods": ["sparsegpt"], "sparsities": ["0.5"]}}}
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(two))
    store.put(configs[0], {k: v for k, v in sweep.Store(tmp_path / "a").get(configs[0]).items() if k != "checksum"})
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--profile", str(tmp_path / "two.yaml"),
                 "--only", "w", "--csv", str(tmp_path / "cmp.csv")]) == 0
    assert capsys.readouterr().out.strip().startswith("reproduced 1/1 runs of groups w: max |Δ retention| 0.00")
    row = pd.read_csv(tmp_path / "cmp.csv").iloc[0]  # the comparison as a record: differences and the fresh cost
    assert row["key"] == configs[0].key and row["exact"] and row["fresh_eval_s"] > 0 and row["fresh_cpu"]
    text = A.reproduction_markdown(tmp_path, 2)  # the reports' "Reproduction" section reads such tables
    assert "`cmp.csv`: 1 of 1 recomputed runs (of the 2 committed runs) reproduce their committed records (1 " \
        "bit-identical; max" in text
    t = pd.read_csv(tmp_path / "cmp.csv").assign(scorers="lm-eval-hflm → calibkit-scored-1", exact=False,
                                                 reproduced=False, profile_rel=0.5)
    t.to_csv(tmp_path / "cmp.csv", index=False)  # rescored and not reproduced runs are named as such
    text = A.reproduction_markdown(tmp_path)
    assert "(0 bit-identical; 1 rescored, lm-eval-hflm → calibkit-scored-1: not bit-identical by design; max" in text
    assert "0 of 1 recomputed runs" in text and "Not reproduced (1): ptb wanda 0.5 seed 0 (|Δ retention| 0.00 pts, " \
        "relative |Δ profile| 0.5)" in text
    assert "No reproduction recorded" in A.reproduction_markdown(tmp_path / "none")
    main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--profile", str(tmp_path / "two.yaml")])
    assert "reproduced 1/2 runs: " in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--only", "w"]) == 2
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--profile", str(tmp_path / "two.yaml"),
                 "--only", "nope"]) == 2
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "nowhere")]) == 2


PER_SAMPLE = {"name": "s", "model": "tiny-llama", "suite": "oasis", "tasks": ["ck_ptb_ppl"], "limit": 1, "n": 4,
              "seqlen": 16, "seeds": [0], "experiments": {
                  "samples_wanda": {"samples": {"of": "ptb", "singles": 4, "pairs": 3}, "methods": ["wanda"],
                                    "sparsities": ["0.5"]},
                  "samples_nirvana": {"samples": {"of": "ptb", "singles": 4, "pairs": 3}, "methods": ["nirvana"],
                              "sparsities": ["0.2"]}}}


def test_per_sample_groups_expand_to_singles_and_seeded_random_pairs():
    configs = sweep.expand(PER_SAMPLE)
    wanda = [c for c in configs if c.method == "wanda"]
    assert [c.calibration for c in wanda[:4]] == ["ptb#0", "ptb#1", "ptb#2", "ptb#3"]
    pairs = [c.calibration for c in wanda[4:]]
    assert len(pairs) == len(set(pairs)) == 3 and all(p.count(",") == 1 for p in pairs)
    assert [c.n for c in wanda] == [1] * 4 + [2] * 3  # a chosen-sample set has one sequence per id
    assert pairs == [c.calibration for c in sweep.expand(PER_SAMPLE) if c.method == "wanda"][4:]  # same seed, same pairs
    other = sweep.sample_specs({"of": "ptb", "singles": 4, "pairs": 3, "pair_seed": 1}, "x")[4:]
    assert sorted(other) != sorted(pairs)  # another seed draws its own pairs
    assert len(sweep.sample_specs({"of": "ptb", "singles": 4, "pairs": 6}, "x")) == 4 + 6  # every pair
    for bad, match in (({"of": "ptb", "singles": 4, "pairs": 7}, "only 6"), ({"of": "ptb", "singles": 1}, ">= 2"),
                       ({"of": "ptb", "singles": 4, "pair": 1}, "did you mean 'pairs'"),
                       ({"singles": 4}, "of: the calibration set")):
        with pytest.raises(sweep.SweepError, match=match):
            sweep.sample_specs(bad, "x")
    exp = PER_SAMPLE["experiments"]
    with pytest.raises(sweep.SweepError, match="not both"):
        sweep.expand(PER_SAMPLE | {"experiments": {"x": exp["samples_wanda"] | {"calibration": ["ptb"]}}})
    with pytest.raises(sweep.SweepError, match="N:M"):
        sweep.expand(PER_SAMPLE | {"experiments": {"x": exp["samples_nirvana"] | {"sparsities": ["2:4"]}}})
    with pytest.raises(sweep.SweepError, match="one seed"):  # ptb#3 of seed 0 and of seed 1 are other texts
        sweep.expand(PER_SAMPLE | {"experiments": {"x": exp["samples_wanda"] | {"seeds": [0, 1]}}})


def test_group_lists_of_set_sizes_and_lengths_expand_as_a_product():
    prof = TINY | {"experiments": {"macro": {"calibration": ["ptb", "codeio"], "methods": ["wanda"],
                                             "sparsities": ["0.5"], "n": [2, 8], "seqlen": [16, 32]}}}
    configs = sweep.expand(prof)
    assert sorted((c.calibration, c.n, c.seqlen) for c in configs) == sorted(
        (c, n, s) for c in ("ptb", "codeio") for n in (2, 8) for s in (16, 32))
    with pytest.raises(sweep.SweepError, match="distinct"):
        sweep.expand(TINY | {"experiments": {"m": prof["experiments"]["macro"] | {"n": [2, 2]}}})
    mag = sweep.expand(TINY | {"experiments": {"m": prof["experiments"]["macro"] | {"methods": ["magnitude"]}}})
    assert len(mag) == 1  # magnitude uses no calibration: one run, whatever the set sizes
    with pytest.raises(sweep.SweepError, match="integer"):
        sweep.expand(TINY | {"experiments": {"m": prof["experiments"]["macro"] | {"seqlen": [16, 0.5]}}})


def test_per_sample_sweep_records_structured_and_unstructured_prunes(tmp_path):
    prof = PER_SAMPLE | {"experiments": {k: v | {"samples": {"of": "ptb", "singles": 2, "pairs": 1}}
                                          for k, v in PER_SAMPLE["experiments"].items()}}
    prof["experiments"]["macro_wanda"] = {"calibration": ["ptb"], "methods": ["wanda"], "sparsities": ["0.5"],
                                          "n": [2, 3]}
    configs = sweep.expand(prof)
    sweep.run_sweep(configs, tmp_path / "store", progress=False)
    recs = {r["config"]["method"] + " " + r["config"]["calibration"]: r for r in sweep.Store(tmp_path / "store").records()
            if r["calibration"]["kind"] == "samples"}
    assert len(recs) == 6
    nir = recs["nirvana ptb#0,1"]
    assert nir["prune"]["widths"] and 0.1 < nir["prune"]["totals"]["sparsity"] < 0.3  # decoder weights removed
    assert nir["prune"]["totals"]["params_after"] < nir["prune"]["totals"]["params_before"]
    assert recs["wanda ptb#1"]["calibration"]["counts"] and recs["wanda ptb#1"]["config"]["n"] == 1
    from calibkit.study import Study

    st = Study(prof, "s", tmp_path / "store", None, "0.5", None)
    d = st.sample_results()
    assert sorted(map(tuple, d["samples"])) == sorted([(0,), (1,), (0, 1)] * 2)
    assert (d["ppl"] > 1).all() and set(d["of"]) == {"ptb"}
    macro = st.macro_results()
    assert sorted(macro["n"]) == [2, 3] and (macro["ppl"] > 1).all() and set(macro["label"]) == {"ptb"}
    assert len(st.results()) == 0  # the capability-study tables never see OASIS's groups
    edited = prof | {"experiments": {k: v for k, v in prof["experiments"].items() if k != "macro_wanda"}}
    assert len(Study(edited, "s", tmp_path / "store", None, "0.5", None).results()) == 0  # stray records: no table


def test_a_record_evaluated_on_other_items_is_stale_and_recomputed(tmp_path, capsys):
    """The run key covers the config, not the suite's task files: a record whose evaluation asked for other item
    counts than the suite asks now is kept and read, but not done; the next sweep recomputes it."""
    prof = TINY | {"tasks": ["ck_ptb_bpb"],
                   "experiments": {"m": {"calibration": ["ptb"], "methods": ["wanda"], "sparsities": ["0.5"]}}}
    [cfg] = sweep.expand(prof)
    sweep.run_sweep([cfg], tmp_path / "s", progress=False)
    store = sweep.Store(tmp_path / "s")
    rec = store.get(cfg)
    assert rec["items_requested"] == {"ck_ptb_bpb": 1} and store.done(cfg) and store.stale([cfg]) == []
    older = {k: v for k, v in rec.items() if k not in ("checksum", "items_requested")}
    older["items"] = {"pruned": {"ck_ptb_bpb": rec["items"]["pruned"]["ck_ptb_bpb"] * 2}, "dense": {}}
    store.put(cfg, older)  # as if written when the task asked for 2 items
    assert store.get(cfg) is not None and not store.done(cfg) and store.stale([cfg]) == [cfg]
    assert sweep.run_sweep([cfg], tmp_path / "s")["ran"] == 1
    assert "1 records were evaluated on other items" in capsys.readouterr().err
    assert store.done(cfg) and store.get(cfg)["items_requested"] == {"ck_ptb_bpb": 1}
