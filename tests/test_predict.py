"""Retention predictor: leave-one-calibration-set-out errors against predict-the-mean, decided by a test."""
import numpy as np
import pandas as pd
import pytest

from calibkit.predict import FEATURES, TARGETS, PredictError, fit


def _records(signal: bool, sets: int = 12, seeds: int = 3, rng_seed: int = 0) -> pd.DataFrame:
    """Synthetic results: each set a random mixture; retention linear in the fractions (signal) or pure noise."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for s in range(sets):
        frac = rng.dirichlet(np.ones(4))
        prof = {m: rng.normal() for m in FEATURES[4:]}
        for seed in range(seeds):
            y = 0.6 + (0.6 * frac - 0.15 if signal else 0) + rng.normal(0, 0.01, 4)
            rows.append({"method": "sparsegpt", "sparsity": "0.6", "label": f"set{s}", "seed": seed,
                         **{f: v for f, v in zip(FEATURES[:4], frac)}, **prof,
                         **{t: v for t, v in zip(TARGETS[:4], y)}, "S_total": y.mean()})
    return pd.DataFrame(rows)


def test_predictor_finds_a_linear_signal_and_says_when_there_is_none():
    good = fit(_records(True), "sparsegpt", "0.6")
    assert good.sets == 12 and good.runs == 36
    # each pool's retention follows its fraction; S_total (their mean) does not: the fractions sum to 1
    assert all(good.cv[t]["skill"] > 0.5 and good.cv[t]["p"] < 0.05 for t in TARGETS[:4])
    assert set(good.verdicts().values()) >= {"better than the mean"}
    noise = fit(_records(False), "sparsegpt", "0.6")
    assert not any(v == "better than the mean" for v in noise.verdicts().values())
    pred = good.predict({f: 0.25 for f in FEATURES[:4]})
    assert all(p["low"] < p["mean"] < p["high"] for p in pred.values())
    # the held-out unit is the calibration set (its label), whatever the seeds
    assert fit(_records(True, seeds=1), "sparsegpt", "0.6").sets == 12


def test_predictor_refuses_too_few_sets_and_constant_features():
    with pytest.raises(PredictError, match="at least 5 different sets"):
        fit(_records(True, sets=3), "sparsegpt", "0.6")
    with pytest.raises(PredictError, match="0 calibration sets"):
        fit(_records(True), "wanda", "0.6")
    with pytest.raises(PredictError, match="mix calibration budgets"):
        fit(_records(True).assign(n=[16, 32] * 18), "sparsegpt", "0.6")
    flat = _records(True).assign(**{f: 1.0 for f in FEATURES})
    with pytest.raises(PredictError, match="no feature varies"):
        fit(flat, "sparsegpt", "0.6")


def test_cli_predict_on_a_tiny_store(tmp_path, capsys):
    """Fitted on a small real sweep over a tiny model (4 sources), it prints a prediction with its interval and the
    held-out error next to the mean's."""
    from calibkit import sweep
    from calibkit.cli import main

    prof = {"model": "tiny-llama", "suite": "embedded", "limit": 2, "n": 2, "seqlen": 16, "seeds": [0],
            "tasks": ["ck_ptb_bpb"],
            "experiments": {"m": {"calibration": ["ptb", "codeio", "gsm8k-test", "social-iqa", "mix_balanced"],
                                  "methods": ["wanda"], "sparsities": ["0.5"]}}}
    sweep.run_sweep(sweep.expand(prof), tmp_path / "store", progress=False)
    calib = tmp_path / "c.jsonl"
    assert main(["build", "--mix", "1:1:3:1", "--n", "2", "--seqlen", "16", "--out", str(calib)]) == 0
    capsys.readouterr()
    assert main(["predict", str(calib), "--pruner", "wanda", "--sparsity", "0.5", "--store", str(tmp_path / "store"),
                 "--model", "tiny-llama"]) == 0
    out = capsys.readouterr().out
    assert "fitted on 5 runs of 5 calibration sets" in out and "S_total" in out and "held-out-set MAE" in out
    assert main(["predict", str(calib), "--pruner", "sparsegpt", "--sparsity", "0.5", "--store",
                 str(tmp_path / "store"), "--model", "tiny-llama"]) == 2
    assert main(["predict", str(calib), "--pruner", "wanda", "--sparsity", "0.5", "--store", str(tmp_path / "no")]) == 2
    other = tmp_path / "o.jsonl"
    assert main(["build", "--mix", "balanced", "--n", "4", "--seqlen", "16", "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["predict", str(other), "--pruner", "wanda", "--sparsity", "0.5", "--store", str(tmp_path / "store"),
                 "--model", "tiny-llama"]) == 2
    assert "no wanda records of 4x16 calibration sets (it has 2x16)" in capsys.readouterr().err
