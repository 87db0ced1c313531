import json

import pytest
from calibkit.cli import main
from calibkit.eval.harness import EvalError, SUITES, evaluate, item_counts, task_manager
from calibkit.models import load_model, tiny_model
from calibkit.prune import prune, save_pruned


def test_embedded_suite_covers_all_dimensions_and_has_yamls():
    dims = {t.dimension for t in SUITES["embedded"]}
    assert dims == {"General", "Commonsense", "Code", "Math"}
    tm = task_manager("embedded")
    assert all(t.name in tm.all_tasks for t in SUITES["embedded"])
    with pytest.raises(EvalError, match="unknown suite"):
        item_counts("nope")
    with pytest.raises(EvalError, match="positive"):
        item_counts("embedded", 0)


def test_evaluate_tiny_model_through_lm_eval():
    model, tok = load_model("tiny-llama")
    res = evaluate(model, tok, "embedded", limit=2, batch_size=4)
    assert set(res["scores"]) == {t.name for t in SUITES["embedded"]}
    assert 0 <= res["scores"]["ck_social_iqa"] <= 1
    assert all(res["scores"][t] > 0 for t in res["lower_is_better"])  # bits per byte of a random model


def test_retention_cli_on_tiny_checkpoints(tmp_path, capsys):
    base, tok = load_model("tiny-llama")
    save_pruned(base, tok, tmp_path / "base")
    pruned = tiny_model("tiny-llama")
    prune(pruned, None, "magnitude", 0.7, progress=False)
    save_pruned(pruned, tok, tmp_path / "p70")
    args = ["retention", "--base", str(tmp_path / "base"), "--pruned", str(tmp_path / "p70"), "--limit", "2",
            "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    run = out["runs"][0]
    assert set(run["dimensions"]) == {"General", "Commonsense", "Code", "Math"}
    assert run["total"] == pytest.approx(sum(run["dimensions"].values()) / 4)
    assert main(args) == 0  # second time the dense scores come from the cache
    assert json.loads(capsys.readouterr().out)["dense"]["cached"]
    other = tiny_model("tiny-llama", num_hidden_layers=3)
    save_pruned(other, tok, tmp_path / "other")
    assert main(["retention", "--base", str(tmp_path / "base"), "--pruned", str(tmp_path / "other")]) == 2
    assert "not a pruned copy" in capsys.readouterr().err
