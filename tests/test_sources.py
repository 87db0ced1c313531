import json

import pytest

from calibkit.data import sources as S
from calibkit.data.readers import DataError

STUDY = {"c4", "dclm", "wikipedia", "wikitext2", "arxiv", "alpaca", "dolly", "tinystories", "gsm8k", "metamath",
         "mbpp", "codealpaca", "hellaswag", "openbookqa", "winogrande"}


def test_registry_has_the_study_sources_and_embedded_ones_for_every_dimension():
    assert set(S.names("study")) == STUDY
    embedded = [S.get(n) for n in S.names("embedded")]
    assert len(embedded) >= 6
    assert {s.dimension for s in embedded} == set(S.DIMENSIONS)
    for s in S.SOURCES:
        assert set(s.dimensions) <= set(S.DIMENSIONS) and s.genre in S.GENRES
        assert (s.hub is not None and s.local is not None) if s.family == "study" else s.embedded is not None


@pytest.mark.parametrize("name", S.names("embedded"))
def test_embedded_sources_are_available_offline(name):
    info = S.describe(name)
    assert info["available"] and info["road"] == "asset", info
    texts = S.texts(name)
    assert len(texts) >= 50 and all(t.strip() for t in texts)


def test_formatters_follow_the_literature():
    gsm = S.texts("gsm8k-test")[0]
    assert gsm.startswith("Question: ") and "\nAnswer: " in gsm
    he = S.texts("humaneval")[0]
    assert "def " in he and "return" in he
    assert "<MASK>" not in "".join(S.texts("timedial")[:50])


@pytest.mark.parametrize("name", [s.name for s in S.SOURCES if s.eval_fraction > 0])
def test_calibration_and_evaluation_parts_are_disjoint(name):
    cal = S.records(name, "calibration")
    ev = S.records(name, "evaluation")
    allr = S.records(name, "all")
    key = lambda r: json.dumps(r, sort_keys=True)
    assert len(cal) + len(ev) == len(allr)
    assert not {key(r) for r in cal} & {key(r) for r in ev}
    frac = len(ev) / len(allr)
    assert abs(frac - S.get(name).eval_fraction) < 0.1
    # stable: the split does not depend on anything but (source, index)
    S.clear_cache()
    assert [key(r) for r in S.records(name, "evaluation")] == [key(r) for r in ev]


def test_unknown_source_lists_known_ones():
    with pytest.raises(KeyError, match="known sources: .*c4"):
        S.get("c5")


def test_study_sources_without_local_copy_say_how_to_get_them():
    info = S.describe("dolly")
    assert not info["available"] and "hub" in info["why"] and "CALIBKIT_DATA_DIR" in info["why"]


def test_local_data_directory_roads(shared_data_dir):
    present = {n for n in STUDY if S.describe(n)["available"]}
    # the shared copy has 11 of the 15 (no DCLM, Dolly, MetaMath, WikiText-2 raw)
    assert {"c4", "wikipedia", "arxiv", "alpaca", "tinystories", "gsm8k", "mbpp", "codealpaca", "hellaswag",
            "openbookqa", "winogrande"} <= present
    for name in present:
        assert S.road(name).startswith("local:")
        texts = S.texts(name)
        assert texts and all(t.strip() for t in texts), name
    # MBPP calibration uses only the train split (task ids 601-974), never the evaluation test split
    ids = {int(r["task_id"]) for r in S.records("mbpp")}
    assert min(ids) == 601 and max(ids) == 974
    assert S.road("gsm8k").endswith("gsm8k/train.jsonl")


@pytest.mark.parametrize("content,msg", [
    ('{"question": "q", "answer": "a"}\n{"question": oops}\n', r"train.jsonl:2: malformed JSON"),
    ('{"question": "q"}\n', r"train.jsonl: record 1 lacks field\(s\) \['answer'\]"),
])
def test_bad_local_file_is_named(tmp_path, monkeypatch, content, msg):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "train.jsonl").write_text(content)
    monkeypatch.setenv("CALIBKIT_DATA_DIR", str(tmp_path))
    S.clear_cache()
    with pytest.raises(DataError, match=msg):
        S.texts("gsm8k")


def test_hub_only_source_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://calibkit-unresolvable.invalid")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with pytest.raises(DataError, match="cannot be reached.*CALIBKIT_DATA_DIR"):
        S.texts("dolly")
