"""calibkit advise: a seeded Optuna search over pool mixtures, every trial a real prune + eval through the store."""
import json

import pytest

from calibkit.advise import AdviseConfig, advise, compare, mixture, parse_budget, parse_weights, Measured, weighted
from calibkit.errors import ConfigError


def test_weights_budget_and_mixture_specs():
    assert parse_weights("general=1, code=2") == {"General": 1.0, "Commonsense": 0.0, "Code": 2.0, "Math": 0.0}
    for bad, why in (("code", "<dimension>=<weight>"), ("coding=1", "<dimension>=<weight>"), ("code=-1", ">= 0"),
                     ("code=x", "not a number"), ("code=0", "at least one"), ("code=nan", "finite")):
        with pytest.raises(ConfigError, match=why):
            parse_weights(bad)
    assert parse_budget("128x2048") == (128, 2048)
    with pytest.raises(ConfigError, match="NxL"):
        parse_budget("128")
    assert mixture([1, 1, 1, 1], 16) == mixture([0.3, 0.3, 0.3, 0.3], 16) == "balanced"
    assert mixture([1, 0, 2, 1], 16) == "4:0:8:4" and mixture([0.5, 0, 1, 0.5], 16) == "4:0:8:4"
    assert weighted({"General": 0.5, "Code": 0.8, "Math": 0.1}, {"General": 1, "Code": 3, "Math": 0}) == \
        pytest.approx((0.5 + 2.4) / 4)


def _measured(name, objectives):
    return Measured(name, [{"seed": i, "objective": o, "dimensions": {}, "total": o} for i, o in enumerate(objectives)])


def test_compare_needs_a_significant_margin_above_the_seed_sd():
    clear = compare(_measured("a", [0.70, 0.71, 0.72]), _measured("b", [0.60, 0.605, 0.61]))
    assert clear["verdict"] == "holds" and clear["margin_pts"] == pytest.approx(10.5) and clear["agree"] == 3
    worse = compare(_measured("a", [0.60, 0.605, 0.61]), _measured("b", [0.70, 0.71, 0.72]))
    assert worse["verdict"] == "fails"
    noisy = compare(_measured("a", [0.70, 0.60, 0.74]), _measured("b", [0.62, 0.58, 0.66]))
    assert noisy["verdict"] == "inconclusive"
    # a steady 2-point margin (the paired test alone would decide) within a 10-point seed-to-seed sd: inconclusive
    steady = compare(_measured("a", [0.52, 0.72, 0.62]), _measured("b", [0.50, 0.70, 0.60]))
    assert steady["p"] == 0.0 and steady["seed_sd_pts"] == pytest.approx(10) and steady["verdict"] == "inconclusive"
    assert compare(_measured("a", [0.50, 0.70, 0.60]), _measured("b", [0.52, 0.72, 0.62]))["verdict"] == "inconclusive"
    two = compare(_measured("a", [0.70, 0.71]), _measured("b", [0.60, 0.61]))
    assert two["verdict"] == "inconclusive"  # fewer than 3 seeds decide nothing


def test_the_recommended_set_is_the_searched_one_only_when_it_beats_balanced():
    from calibkit.advise import recommend

    better = compare(_measured("2:2:8:4", [0.70, 0.71, 0.72]), _measured("balanced", [0.60, 0.605, 0.61]))
    assert recommend("2:2:8:4", [better])["calibration"] == "2:2:8:4"
    noisy = compare(_measured("2:2:8:4", [0.70, 0.60, 0.74]), _measured("balanced", [0.62, 0.58, 0.66]))
    single = compare(_measured("2:2:8:4", [0.70, 0.71, 0.72]), _measured("codeio", [0.60, 0.605, 0.61]))
    r = recommend("2:2:8:4", [noisy, single])  # beating a single source is not enough
    assert r["calibration"] == "balanced" and "inconclusive" in r["why"]
    assert recommend("balanced", [single])["calibration"] == "balanced"


def test_advise_on_a_tiny_model_is_reproducible_and_resumes(tmp_path):
    cfg = AdviseConfig(model="tiny-llama", pruner="wanda", sparsity="0.5", weights=parse_weights("code=2,general=1"),
                       n=8, seqlen=16, out=str(tmp_path / "out"), store=str(tmp_path / "runs"), trials=4,
                       limit=1, tasks=("ck_ptb_bpb", "ck_humaneval_bpb"), singles=("codeio",))
    report = advise(cfg, progress=False)
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} >= {"calibration.jsonl", "calibration.meta.json", "calibration_dataset",
                                                "advise_report.json", "README.md", "trajectory.png"}
    assert len(report["trials"]) == 4 and report["trials"][0]["calibration"] == "balanced"
    best = report["chosen"]
    assert best["objective"] == max(t["objective"] for t in report["trials"])
    assert set(report["final"]) == {best["calibration"], "balanced", "codeio"}
    assert all(len(m["seeds"]) == 3 for m in report["final"].values())
    assert json.loads((out / "calibration.meta.json").read_text())["n"] == 8
    vs = {c["against"]: c["verdict"] for c in report["comparisons"]}
    rec = report["recommended"]["calibration"]
    assert rec == (best["calibration"] if vs.get("balanced") == "holds" else "balanced")
    assert f"Recommended set: `{rec}`" in (out / "README.md").read_text()
    assert report["runs"] >= 6 and report["seconds"]["runs"] > 0
    records = [json.loads(f.read_text()) for f in (tmp_path / "runs" / "runs").glob("*.json")]
    assert records and all(r["profile"] is None for r in records)  # advise does not profile its sets
    runs = len(records)
    # the same command again (same seed): the same trials and choice, every run read from the store
    again = advise(AdviseConfig(**{**cfg.__dict__, "out": str(tmp_path / "again")}), progress=False)
    assert [t["calibration"] for t in again["trials"]] == [t["calibration"] for t in report["trials"]]
    assert again["chosen"] == best and len(list((tmp_path / "runs" / "runs").glob("*.json"))) == runs
    assert (tmp_path / "again" / "calibration.jsonl").read_bytes() == (out / "calibration.jsonl").read_bytes()


def test_advise_refuses_an_existing_output_before_searching(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("x")
    cfg = AdviseConfig(model="tiny-llama", pruner="wanda", sparsity="0.5", weights=parse_weights("code=1"), n=4,
                       seqlen=16, out=str(tmp_path / "out"), store=str(tmp_path / "runs"), trials=2, limit=1)
    with pytest.raises(Exception, match="advise output folder"):
        advise(cfg, progress=False)
    assert not (tmp_path / "runs").exists()  # refused before any run
    for bad, why in (({"final_seeds": (0, 1, 2)}, "search seed"), ({"tasks": ("ck_ptb_bpb",)}, "do not measure"),
                     ({"store": str(tmp_path / "out" / "runs")}, "inside --out")):
        with pytest.raises(ConfigError, match=why):
            advise(AdviseConfig(**{**cfg.__dict__, **bad}), progress=False)


def test_cli_advise_refuses_bad_weights_and_budgets(tmp_path, capsys):
    from calibkit.cli import main

    base = ["advise", "--model", "tiny-llama", "--pruner", "wanda", "--sparsity", "0.5", "--out", str(tmp_path / "o")]
    assert main(base + ["--weights", "coding=1"]) == 2
    assert "general, gen, commonsense" in capsys.readouterr().err
    assert main(base + ["--weights", "code=1", "--budget", "16"]) == 2
    assert main(base + ["--weights", "code=1", "--final-seeds", "0,0,1"]) == 2
    assert not (tmp_path / "o").exists()
