"""The GPU benchmark (bench/prune_gpu.py) runs at reduced width on the CPU: same weights for every tool, the
final-hidden-state error per run, calibkit's phases and a summary line; a tool that cannot run says why."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent.parent / "bench" / "prune_gpu.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("prune_gpu", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_bench_at_reduced_width_on_cpu(tmp_path, capsys):
    bench = load_bench()
    config = bench.llama31_8b_config(2, 32)
    a, b = bench.random_model(config, 0), bench.random_model(config, 0)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))  # every tool gets these weights
    out = tmp_path / "bench.json"
    assert bench.main(["--layers", "2", "--scale", "32", "--nsamples", "4", "--seqlen", "32", "--device", "cpu",
                       "--tools", "calibkit,ist", "--precisions", "auto,fp32,tf32", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    ours = [r for r in rows if r["tool"] == "calibkit"]
    assert [(r["method"], r["precision"]) for r in ours] == [("sparsegpt", "auto"), ("sparsegpt", "fp32"),
                                                             ("sparsegpt", "tf32"), ("wanda", None)]
    assert all(r["wall_s"] > 0 and 0 < r["hidden_error"] < 1 and r["phases"]["solve"] > 0 for r in ours)
    by = {r["precision"]: r["hidden_error"] for r in ours if r["method"] == "sparsegpt"}
    assert by["auto"] == by["fp32"]  # bf16 weights: auto reads the bf16 activations exactly
    assert [r["skipped"].split(":")[0] for r in rows if r["tool"] == "ist"] == \
        ["give --ist-sparsegpt PATH", "the IST-DASLab class implements SparseGPT only"]
    text = capsys.readouterr().out
    assert "sparsegpt ist: skipped: give --ist-sparsegpt PATH" in text and "summary: sparsegpt calibkit" in text


def test_drift_bench_on_a_tiny_model(tmp_path):
    """bench/drift.py: each variant in its own process; the same environment twice gives the same mask and scores;
    an interpreter variant lists the packages that differ (none for the same interpreter)."""
    import subprocess
    import sys

    out = tmp_path / "drift.json"
    drift = BENCH.with_name("drift.py")
    subprocess.run([sys.executable, str(drift), "--model", "tiny-llama", "--spec", "ptb", "--n", "2", "--seqlen",
                    "16", "--limit", "2", "--variants", "threads2", "--python", f"same={sys.executable}",
                    "--json", str(out)], check=True, capture_output=True, text=True)
    rep = json.loads(out.read_text())
    a, b = rep["variants"]
    assert (a["variant"], b["variant"]) == ("threads2", "same")
    assert b["mask_flips_vs_first"] == 0 and b["max_rel_weight_diff_vs_first"] == 0 and a["S_total"] == b["S_total"]
    assert b["packages_differing_from_first"] == {} and b["scorer"] == "calibkit-scored-1"
    assert rep["spread_points"]["S_total"] == 0
    assert a["calibkit_file"] == b["calibkit_file"] == str(BENCH.parent.parent / "calibkit" / "__init__.py")


def test_drift_over_committed_runs_on_a_tiny_store(tmp_path):
    """bench/drift_runs.py: each committed run is pruned again in a child process under a variant, recomputed as the
    sweep does into a fresh store (bit-identical to the committed record here) and its variant evaluated; pruning is
    deterministic across thread counts, so the 1-thread variant drifts by exactly 0; a rerun resumes."""
    import subprocess
    import sys

    from calibkit import sweep

    prof = {"name": "t", "model": "tiny-llama", "suite": "embedded", "limit": 2, "n": 2, "seqlen": 16, "seeds": [0],
            "experiments": {"m": {"calibration": ["ptb"], "methods": ["wanda", "sparsegpt"], "sparsities": ["0.5"]}}}
    sweep.run_sweep(sweep.expand(prof), tmp_path / "committed", progress=False)
    out, fresh = tmp_path / "t-threads1.jsonl", tmp_path / "fresh"
    cmd = [sys.executable, str(BENCH.with_name("drift_runs.py")), "--store", str(tmp_path / "committed"), "--fresh",
           str(fresh), "--out", str(out), "--variant", "threads1", "--sparsity", "0.5", "--labels", "ptb",
           "--summary", str(tmp_path / "summary.json")]
    subprocess.run(cmd + ["--max-runs", "1"], check=True, capture_output=True, text=True)
    assert len(out.read_text().splitlines()) == 1
    run = subprocess.run(cmd, check=True, capture_output=True, text=True)  # resumes: the second run only
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and len({r["key"] for r in rows}) == 2 and len(list((fresh / "runs").glob("*.json"))) == 2
    assert all(r["reference_vs_committed"]["exact"] for r in rows)
    assert all(v == 0 for r in rows for v in r["delta"].values()) and "embedded all (2 runs)" in run.stdout
    assert json.loads((tmp_path / "summary.json").read_text())["embedded"]["all"]["S_total"]["max_abs"] == 0


def test_drift_over_selection_runs_remakes_the_selection_on_the_variant(tmp_path, monkeypatch):
    """bench/drift_runs.py --kinds select: the child starts from a cache without OASIS selections (so the variant
    selects again on its own kernels); rows carry the raw scores and whether the same samples were selected."""
    import subprocess
    import sys

    from calibkit import selection_study as SS, sweep

    sys.path.insert(0, str(BENCH.parent))
    import drift_runs

    cache = tmp_path / "root"
    for d in ("select", "selfgen", "models", "eval"):
        (cache / d).mkdir(parents=True)
    with monkeypatch.context() as m:
        m.setenv("CALIBKIT_CACHE", str(cache))
        shadow = Path(drift_runs.shadow_cache(str(tmp_path)))
    assert sorted(p.name for p in shadow.iterdir()) == ["eval", "models"] and (shadow / "models").is_symlink()

    prof = {"name": "t", "model": "tiny-llama", "suite": "oasis", "limit": 2, "n": 2, "seqlen": 16, "seeds": [0],
            "experiments": {"s": {"calibration": ["select:oasis:4:ptb", "select:random:4:ptb"], "methods": ["wanda"],
                                  "sparsities": ["0.5"], "tasks": ["ck_ptb_ppl", "ck_arc_easy_val"]},
                            "n": {"calibration": ["ptb"], "methods": ["nirvana"], "sparsities": ["0.2"],
                                  "tasks": ["ck_ptb_ppl", "ck_arc_easy_val"]}}}
    sweep.run_sweep(sweep.expand(prof), tmp_path / "committed", progress=False)
    out = tmp_path / "t-sel.jsonl"
    run = subprocess.run([sys.executable, str(BENCH.with_name("drift_runs.py")), "--store", str(tmp_path / "committed"),
                          "--fresh", str(tmp_path / "fresh"), "--out", str(out), "--variant", "threads1", "--sparsity",
                          "0.5,0.2", "--kinds", "select,source", "--suite", "oasis", "--methods", "wanda,nirvana"],
                         check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["label"] for r in rows) == ["ptb", "select:oasis", "select:random"]
    assert [r["kind"] for r in rows if r["label"] == "ptb"] == ["source"]  # NIRVANA: the pruned model's own shapes
    assert all(np.isfinite(v) for r in rows for v in r["delta"].values() if v is not None)
    assert all(r["same_calibration"] is True for r in rows if r["label"] == "select:random")
    d = SS.drift_table(tmp_path, "t")
    assert len(d) == 2 and d["log_ppl"].notna().all() and "wanda random (1 runs)" in run.stdout
