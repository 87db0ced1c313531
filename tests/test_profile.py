import math

import pytest
import torch

from calibkit.eval.retention import across_seeds, retention, task_retention
from calibkit.models import tiny_model
from calibkit.profile import (UndefinedMetric, aggregation, granularity, min_k_plus_plus, profile, scope, variety,
                              volume)

torch.set_grad_enabled(False)


def seq(ids, text="", dims=("General",), genre="web"):
    return {"input_ids": list(ids), "text": text, "dimensions": list(dims), "dimension": dims[0], "genre": genre}


def test_set_metrics_by_hand():
    assert aggregation(["a b c d a b c d"]) == pytest.approx(1 - 4 / 5)  # 5 4-grams, 4 distinct
    assert aggregation(["a b c d", "a b c d"]) == pytest.approx(0.5)
    assert aggregation(["a b c d", "b c d e"]) == 0.0
    assert aggregation(["x y z w v"], n=2) == 0.0
    with pytest.raises(UndefinedMetric, match="4 or more"):
        aggregation(["a b c", ""])
    assert scope([["General"], ["Math", "General"]]) == 0.5
    assert scope([["General", "Commonsense"], ["Code"], ["Math"]]) == 1.0
    with pytest.raises(ValueError, match="unknown dimension"):
        scope([["Poetry"]])
    assert variety(["web", "web", "news"], all_genres=("web", "news", "code", "math")) == 0.5
    assert granularity([["General"], ["General", "Math"], ["Code"]], ["web", "web", "code"]) == pytest.approx(1 / 3)
    assert granularity([], []) == 1.0
    assert volume([3, 4, 5]) == 12


def test_profile_set_level_from_sequences():
    seqs = [seq([1, 2, 3], "a b c d e", ("General",), "web"), seq([4, 5], "a b c d e", ("Math", "General"), "math")]
    p = profile(seqs)
    assert p["volume"] == 5 and p["scope"] == 0.5 and p["granularity"] == pytest.approx(1 / 3)
    assert p["aggregation"] == pytest.approx(0.5) and "distortion" not in p


def direct_min_k_pp(model, ids, k=0.2):
    logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    zs = []
    for t in range(1, len(ids)):
        probs = torch.softmax(logits[t - 1], -1)
        logp = torch.log(probs)
        mu = sum(probs * logp)
        sigma = math.sqrt(sum(probs * (logp - mu) ** 2))
        zs.append((float(logp[ids[t]]) - float(mu)) / sigma)
    zs.sort()
    m = max(1, int(len(zs) * k))
    return sum(zs[:m]) / m


def test_distortion_and_mismatch_against_direct_computations():
    model = tiny_model("tiny-llama", seed=0, vocab_size=500)
    g = torch.Generator().manual_seed(0)
    seqs = [seq(torch.randint(0, 500, (n,), generator=g).tolist(), "w " * n) for n in (12, 9, 12, 30)]
    p = profile(seqs, model, k=0.2, batch_tokens=40, progress=False)  # mixed lengths: padded batches
    losses = [float(model(input_ids=torch.tensor([s["input_ids"]]), labels=torch.tensor([s["input_ids"]])).loss)
              for s in seqs]
    assert p["distortion"] == pytest.approx(math.exp(sum(losses) / len(losses)), rel=1e-5)
    direct = [direct_min_k_pp(model, s["input_ids"]) for s in seqs]
    assert p["mismatch"] == pytest.approx(sum(direct) / len(direct), rel=1e-4)
    assert p["k"] == 0.2 and p["undefined"] == {}


def test_one_token_sequences_and_empty_sets_are_reported():
    model = tiny_model("tiny-llama", seed=0, vocab_size=500)
    p = profile([seq([5], "one"), seq([7], "two")], model, progress=False)
    assert p["distortion"] is None and p["mismatch"] is None and p["aggregation"] is None
    assert "fewer than 2 tokens" in p["undefined"]["mismatch"] and "4 or more" in p["undefined"]["aggregation"]
    p = profile([seq([5], "one"), seq([1, 2, 3, 4], "a b c d")], model, progress=False)
    assert p["distortion"] is not None and "1 sequence(s) of one token" in p["undefined"]["short_sequences"]
    with pytest.raises(ValueError, match="empty calibration set"):
        profile([], model)
    with pytest.raises(UndefinedMetric):
        min_k_plus_plus(torch.empty(0))


def test_retention_by_hand():
    dims = {"a": "General", "b": "General", "c": "Math", "bpb": "Code"}
    dense = {"a": 0.8, "b": 0.5, "c": 0.4, "bpb": 1.0}
    pruned = {"a": 0.4, "b": 0.5, "c": 0.1, "bpb": 2.0}
    r = retention(pruned, dense, dims, lower_is_better={"bpb"}, eps=0)
    assert r["tasks"] == pytest.approx({"a": 0.5, "b": 1.0, "c": 0.25, "bpb": 0.5})
    assert r["dimensions"] == pytest.approx({"General": 0.75, "Math": 0.25, "Code": 0.5})
    assert r["total"] == pytest.approx(0.5)
    assert task_retention(0.0, 0.0) == 0.0  # eps keeps a dead task finite
    s = across_seeds([r, retention({**pruned, "c": 0.3}, dense, dims, {"bpb"}, eps=0)])
    assert s["dimensions"]["Math"]["mean"] == pytest.approx(0.5)
    assert s["dimensions"]["Math"]["std"] == pytest.approx(math.sqrt(2 * 0.25 ** 2))
    with pytest.raises(KeyError, match="c"):
        retention({"a": 1, "b": 1, "bpb": 1}, dense, dims)
