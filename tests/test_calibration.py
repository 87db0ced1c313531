import json

import pytest

from calibkit.data import calibration as C
from calibkit.data import sources as S
from calibkit.data.readers import DataError


def test_allocate_largest_remainder():
    assert C.allocate(128, [1, 1, 1, 1]) == [32, 32, 32, 32]
    assert C.allocate(128, [3, 3, 3, 4]) == [30, 30, 29, 39]  # 29.54 x3, 39.38
    assert C.allocate(10, [1, 1, 1]) == [4, 3, 3]
    assert C.allocate(5, [0, 1, 0, 1]) == [0, 3, 0, 2]
    assert sum(C.allocate(127, [0.85, 0.85, 1.15, 1.15])) == 127


def test_parse_mix():
    assert dict(C.parse_mix("balanced").weights) == {d: 1 for d in S.DIMENSIONS}
    assert C.parse_mix("mix_balanced").label == "mix_balanced"
    assert dict(C.parse_mix("4_3_3_math").weights)["Math"] == 4
    assert dict(C.parse_mix("3:1:1:1").weights) == {"General": 3, "Commonsense": 1, "Code": 1, "Math": 1}
    loo = dict(C.parse_mix("loo_code").weights)
    assert loo["Code"] == 0 and loo["Math"] == 1
    assert C.parse_mix("balanced@study").pool == "study"


@pytest.mark.parametrize("bad,msg", [("1:-1:1:1", "non-negative"), ("0:0:0:0", "sum to zero"),
                                     ("weird", "unknown mix .*balanced"), ("1:a:1:1", "four numbers"),
                                     ("balanced@nowhere", "pool family"), ("loo_poetry", "unknown dimension")])
def test_bad_mixes_are_refused(bad, msg):
    with pytest.raises(ValueError, match=msg):
        C.parse_mix(bad)


def test_pools_partition_sources_by_primary_dimension():
    study = C.pools("study")
    assert study["Math"] == ["gsm8k", "metamath"] and study["Code"] == ["mbpp", "codealpaca"]
    assert set(study["Commonsense"]) == {"hellaswag", "openbookqa", "winogrande"}
    assert len(study["General"]) == 8
    emb = C.pools("embedded")
    assert all(emb[d] for d in S.DIMENSIONS)


@pytest.fixture(scope="module")
def balanced(tokenizer):
    return C.build("balanced", n=128, seqlen=256, seed=0, tokenizer=tokenizer, progress=False)


def test_balanced_mix_has_32_per_dimension_of_exact_length(balanced, tokenizer):
    assert len(balanced) == 128
    assert balanced.counts() == {d: 32 for d in S.DIMENSIONS}
    assert all(len(s["input_ids"]) == 256 for s in balanced.sequences)
    assert balanced.input_ids.shape == (128, 256)
    s = balanced.sequences[0]
    assert s["text"] == tokenizer.decode(s["input_ids"])
    assert set(s) >= {"input_ids", "text", "source", "dimension", "genre", "dimensions"}


def test_same_seed_same_bytes_other_seed_other_set(balanced, tokenizer, tmp_path):
    again = C.build("balanced", n=128, seqlen=256, seed=0, tokenizer=tokenizer, progress=False)
    balanced.to_jsonl(tmp_path / "a.jsonl")
    again.to_jsonl(tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    other = C.build("balanced", n=128, seqlen=256, seed=1, tokenizer=tokenizer, progress=False)
    assert other.input_ids.tolist() != balanced.input_ids.tolist()
    assert other.counts() == balanced.counts()


def test_a_pool_draw_does_not_depend_on_the_other_pools(tokenizer):
    full = C.build("balanced", n=40, seqlen=128, seed=3, tokenizer=tokenizer, progress=False)
    loo = C.build("loo_general", n=30, seqlen=128, seed=3, tokenizer=tokenizer, progress=False)
    assert "General" not in loo.counts()
    key = lambda cs: sorted(tuple(s["input_ids"]) for s in cs.sequences if s["dimension"] == "Math")
    assert key(full) == key(loo)  # 10 Math sequences in both, drawn identically


def test_single_source_and_weighted_mix(tokenizer):
    cs = C.build("gsm8k-test", n=8, seqlen=128, seed=0, tokenizer=tokenizer, progress=False)
    assert cs.counts("source") == {"gsm8k-test": 8}
    texts = S.texts("gsm8k-test")
    for s in cs.sequences:  # each sequence is a window of its records' texts, joined by blank lines
        assert s["text"] in "\n\n".join(texts[i] for i in s["records"])
    w = C.build("4_3_3_code", n=20, seqlen=64, seed=0, tokenizer=tokenizer, progress=False)
    # 20 * (3, 3, 4, 3) / 13 = 4.6, 4.6, 6.2, 4.6 -> floors 4, 4, 6, 4; the two spare go to the first ties
    assert w.counts() == {"General": 5, "Commonsense": 5, "Code": 6, "Math": 4}


def test_calibration_draws_never_touch_evaluation_records(tokenizer):
    ev = set(S.texts("humaneval", "evaluation"))
    cs = C.build("humaneval", n=16, seqlen=128, seed=0, tokenizer=tokenizer, progress=False)
    cal = S.texts("humaneval", "calibration")
    used = {cal[i] for s in cs.sequences for i in s["records"]}
    assert used and not used & ev


def test_budget_larger_than_pool_is_an_error(tokenizer):
    with pytest.raises(DataError, match="can give only .* sequences of 2048 tokens"):
        C.build("humaneval", n=128, seqlen=2048, seed=0, tokenizer=tokenizer, progress=False)


@pytest.mark.parametrize("kw,msg", [(dict(seqlen=0), "seqlen"), (dict(seqlen=-5), "seqlen"), (dict(n=0), "n must")])
def test_bad_budget_is_refused(tokenizer, kw, msg):
    args = dict(n=4, seqlen=16, seed=0, tokenizer=tokenizer, progress=False) | kw
    with pytest.raises(ValueError, match=msg):
        C.build("ptb", **args)


def test_unknown_source_or_mix(tokenizer):
    with pytest.raises(ValueError, match="unknown mix"):
        C.build("nonexistent", n=4, seqlen=16, tokenizer=tokenizer)


def test_jsonl_roundtrip_and_hf_dataset(balanced, tmp_path):
    path = balanced.to_jsonl(tmp_path / "set.jsonl")
    back = C.CalibrationSet.from_jsonl(path)
    assert back.sequences == json.loads(json.dumps(balanced.sequences))
    assert back.meta["spec"] == "mix_balanced" and back.meta["seed"] == 0
    ds = balanced.to_hf_dataset()
    assert ds.num_rows == 128 and {"input_ids", "attention_mask", "text", "source"} <= set(ds.column_names)
    assert list(C.CalibrationSet.from_jsonl(path).to_hf_dataset(tokenized_only=True).column_names) == [
        "input_ids", "attention_mask"]


def test_malformed_calibration_file_names_the_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"input_ids": [1, 2]}\n{"input_ids": \n')
    with pytest.raises(DataError, match="x.jsonl:2"):
        C.CalibrationSet.from_jsonl(p)
    p.write_text("")
    with pytest.raises(DataError, match="empty calibration set"):
        C.CalibrationSet.from_jsonl(p)
