"""Calibration-sample selection: OASIS's soft masks and gradients, the baselines, specs, CLI and bad input."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from calibkit.data.calibration import CalibrationSet
from calibkit.errors import CalibkitError, ConfigError
from calibkit.models import tiny_model
from calibkit.prune import structured_scores as SS
from calibkit.prune.sparsegpt import inverse_hessian, obs_saliency
from calibkit.prune.structured import gradients, projections
from calibkit.prune.wanda import wanda_mask
from calibkit.prune.sparsity import Sparsity
from calibkit.select import OasisParams, SelectError, oasis, select
from calibkit.select import softmask as M
from calibkit.select.oasis import task_loss
from calibkit.select.soft import soft_pruner
from calibkit.spec import parse

PRUNERS = [("wanda", "0.5"), ("sparsegpt", "0.5"), ("nirvana", "0.2"), ("llm-pruner", "0.3")]


def _small(layers: int = 1, seed: int = 0):
    return tiny_model("tiny-llama", seed=seed, vocab_size=64, hidden_size=16, intermediate_size=32,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2)


def test_soft_mask_tends_to_the_hard_mask_as_alpha_grows():
    torch.manual_seed(0)
    scores = torch.rand(6, 40, dtype=torch.float64)
    k = 17
    t = M.boundary(scores, k)
    hard = M.hard_keep(scores, t)
    assert (hard == 0).sum(-1).tolist() == [k] * 6  # exactly k removed per row
    gaps = [(M.soft_keep_lowest(scores, k, a) - hard).abs().max().item() for a in (1.0, 10.0, 100.0, 1e4)]
    assert gaps == sorted(gaps, reverse=True) and gaps[0] > 0.1 and gaps[-1] < 1e-6
    whole = M.soft_keep_lowest(scores, 100, 1e5, dim=None)  # one group over the whole matrix
    assert int((whole < 0.5).sum()) == 100
    assert torch.equal(M.soft_keep_lowest(scores, 0, 10.0), torch.ones_like(scores))


def test_alpha_schedule_is_linear_from_start_to_end():
    assert [M.alpha_at(i, 5, (10.0, 50.0)) for i in range(5)] == [10.0, 20.0, 30.0, 40.0, 50.0]


def test_obs_saliency_is_sparsegpt_first_block_score():
    torch.manual_seed(0)
    x = torch.randn(300, 24)
    x[:, 5] = 0  # a dead input
    H, W = x.t() @ x, torch.randn(7, 24)
    d = torch.diagonal(inverse_hessian(H).factor)
    ref = W.square() / d.square()
    ref[:, 5] = 0
    got = obs_saliency(W, H)
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-6)


def test_uniform_weights_give_each_pruners_own_statistics():
    """At p = 1/N the soft pruners' scores are the hard pruners' (up to a positive scale): Wanda's mask of the first
    layer (whose inputs do not depend on pruning) and the structured criteria's unit scores."""
    torch.manual_seed(0)
    model = _small(2)
    ids = torch.randint(0, 64, (4, 12))
    p = torch.full((4,), 0.25)
    soft = soft_pruner("wanda", model, ids, "0.5", progress=False)
    masks = soft.masks(p, 1e6)
    lin = model.model.layers[0].self_attn.q_proj
    name = "model.layers.0.self_attn.q_proj"
    xs = []
    h = lin.register_forward_pre_hook(lambda m, a: xs.append(a[0].detach()))
    model(input_ids=ids)
    h.remove()
    norms = xs[0].reshape(-1, 16).square().sum(0)
    assert torch.equal(masks[f"{name}.weight"] < 0.5, wanda_mask(lin.weight, norms, Sparsity.parse("0.5")))
    for method in ("nirvana", "llm-pruner"):
        soft = soft_pruner(method, model, ids, 0.2, stat_dtype=torch.float32, progress=False)
        attn, mlp = soft.unit_scores(p)
        grads = gradients(model, ids, method, batch_size=1, progress=False)
        layer = model.model.layers[1]
        s = {k: SS.taylor(lin.weight, grads[id(lin.weight)]) for k, lin in
             zip(("q", "k", "v", "o", "g", "u", "d"), projections(layer))}
        assert torch.allclose(attn[1], SS.attn_group_scores(s["q"], s["k"], s["v"], s["o"], 2, 4), rtol=1e-4)
        assert torch.allclose(mlp[1], SS.mlp_unit_scores(s["g"], s["u"], s["d"]), rtol=1e-4)


@pytest.mark.parametrize("pruner,sparsity", PRUNERS)
def test_gradient_of_the_task_loss_matches_finite_differences(pruner, sparsity, monkeypatch):
    """d L_task / d u by autograd against central differences, in float64 (LLaMA's RMSNorm computes in float32,
    which would drown the differences: it is replaced by the same formula in the input's dtype)."""
    from transformers.models.llama import modeling_llama

    def rms(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", rms)
    torch.manual_seed(1)
    model = _small(4 if pruner == "llm-pruner" else 1, seed=1).double()
    pool, task = torch.randint(0, 64, (3, 8)), torch.randint(0, 64, (2, 8))
    soft = soft_pruner(pruner, model, pool, sparsity, stat_dtype=torch.float64, progress=False)
    for q in model.parameters():
        q.requires_grad_(False)
    noise = (torch.rand(2, 8, 16, dtype=torch.float64) * 2 - 1) * 0.1
    u = torch.randn(3, dtype=torch.float64) * 0.3

    def loss(v):
        return task_loss(model, soft, torch.softmax(v / 0.8, 0), 3.0, task, noise)

    uu = u.clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(loss(uu), uu)
    h = 1e-4
    fd = torch.stack([(loss(u + h * e) - loss(u - h * e)) / (2 * h) for e in torch.eye(3, dtype=torch.float64)])
    assert g.norm() > 0
    assert (g - fd).norm() / g.norm() < 1e-3, (g, fd)


def _pool(n: int, seqlen: int = 8, seed: int = 0, tokenizer: str = "tiny") -> CalibrationSet:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 64, (n, seqlen), generator=gen)
    return CalibrationSet([{"input_ids": r.tolist(), "text": "x", "source": "test"} for r in ids],
                          {"spec": "test", "tokenizer": tokenizer})


@pytest.mark.parametrize("pruner,sparsity", PRUNERS)
def test_same_seed_same_selection(pruner, sparsity):
    model = _small(4 if pruner == "llm-pruner" else 2)
    params = {"steps": 4, "task_n": 4, "batch_size": 2}
    runs = [select("oasis", _pool(6), 2, model=model, pruner=pruner, sparsity=sparsity, seed=s, task=_pool(4, seed=9),
                   params=params, progress=False) for s in (0, 0, 1)]
    a, b, c = (r.meta["selection"] for r in runs)
    assert a["weights"] == b["weights"] and runs[0].meta["chosen"] == runs[1].meta["chosen"]
    assert a["weights"] != c["weights"]  # the seed moves the noise and the task batches
    assert len(runs[0]) == 2 and abs(sum(a["weights"]) - 1) < 1e-5
    assert len(a["trajectory"]) == 4 and all(len(t["p"]) == 6 for t in a["trajectory"])


def test_oasis_learns_to_prefer_the_samples_that_prune_well():
    """A planted pool: half the candidates are the task's own text, half are one token repeated. With Wanda at
    60 % the weights must move toward the task-like half (no noise, to keep the test short)."""
    torch.manual_seed(0)
    model = _small(2)
    task = _pool(8, seqlen=16, seed=3)
    good = task.input_ids[:4]
    bad = torch.full((4, 16), 7)
    res = oasis(model, torch.cat([good, bad]), task.input_ids, "wanda", "0.6", seed=0,
                params={"steps": 30, "batch_size": 4, "task_n": 8, "noise": 0.0, "lr": 0.05}, progress=False)
    assert sum(res.weights[:4]) > sum(res.weights[4:])


def test_baselines_random_and_entropy():
    model = _small(1)
    pool = _pool(10)
    r1 = select("random", pool, 3, seed=4)
    assert r1.meta["chosen"] == select("random", pool, 3, seed=4).meta["chosen"] and len(set(r1.meta["chosen"])) == 3
    e = select("entropy", pool, 3, model=model, progress=False)
    ent = e.meta["selection"]["entropy"]
    assert sorted(e.meta["chosen"]) == sorted(sorted(range(10), key=lambda i: -ent[i])[:3])
    assert all(0 < x <= torch.log(torch.tensor(64.0)) + 1e-4 for x in ent)


def test_selection_specs():
    s = parse("select:oasis:16:ptb")
    assert (s.kind, s.method, s.pool_n, s.label, s.base.text) == ("select", "oasis", 16, "select:oasis", "ptb")
    assert parse("select:entropy:wiki-excerpt").pool_n == 32
    assert parse("select:synthetic").method == "synthetic"
    for bad in ("select:best:ptb", "select:oasis", "select:oasis:1:ptb", "select:oasis:none",
                "select:oasis:select:random:ptb", "ptb#0"[:0] + "select:oasis:nosuchsource"):
        with pytest.raises(ConfigError):
            parse(bad)


def test_bad_selection_inputs_are_refused():
    model = _small(1)
    pool = _pool(4)
    with pytest.raises(SelectError, match="smaller than n"):
        select("random", pool, 5)
    with pytest.raises(SelectError, match="positive"):
        select("random", pool, 0)
    with pytest.raises(SelectError, match="differentiable saliency"):
        select("oasis", pool, 2, model=model, pruner="magnitude", sparsity="0.5", task=pool)
    with pytest.raises(ConfigError, match="lr"):
        OasisParams.from_dict({"lr": -1})
    with pytest.raises(ConfigError, match="stepz"):
        OasisParams.from_dict({"stepz": 3})
    broken = _small(1)
    with torch.no_grad():
        broken.model.layers[0].mlp.down_proj.weight.fill_(float("nan"))
    with pytest.raises(CalibkitError, match="step 0|not finite"):
        select("oasis", pool, 2, model=broken, pruner="wanda", sparsity="0.5", task=pool,
               params={"steps": 2, "task_n": 2, "batch_size": 2}, progress=False)


def test_a_pool_file_from_another_tokenizer_is_refused(tmp_path):
    from calibkit.spec import build

    path = _pool(6, seqlen=8, tokenizer="other-model").to_jsonl(tmp_path / "pool.jsonl")
    with pytest.raises(ConfigError, match="tokenized for 'other-model'"):
        build(f"select:random:4:{path}", n=2, seqlen=8, model_name="tiny-llama")


def test_select_cli_writes_a_set_that_prune_takes(tmp_path, capsys):
    from calibkit.cli import main

    out = tmp_path / "sel.jsonl"
    rc = main(["select", "--method", "oasis", "--pool", "ptb", "--pool-n", "6", "--n", "2", "--pruner", "wanda",
               "--model", "tiny-llama", "--seqlen", "16", "--param", "steps=2", "--param", "task_n=4",
               "--param", "batch_size=2", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    meta = json.loads((tmp_path / "sel.meta.json").read_text())
    assert meta["selection"]["method"] == "oasis" and len(meta["selection"]["weights"]) == 6
    assert len(out.read_text().splitlines()) == 2
    rc = main(["prune", "--model", "tiny-llama", "--calib", str(out), "--method", "wanda", "--sparsity", "0.5",
               "--out", str(tmp_path / "pruned")])
    assert rc == 0, capsys.readouterr().err
    assert main(["select", "--method", "oasis", "--pool", "ptb", "--n", "2", "--model", "tiny-llama",
                 "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "--pruner" in capsys.readouterr().err


def test_sweep_groups_take_selection_specs():
    from calibkit import sweep

    prof = {"name": "t", "model": "tiny-llama", "suite": "embedded", "limit": 1, "n": 2, "seqlen": 16, "seeds": [0, 1],
            "experiments": {"sel": {"calibration": ["select:oasis:8:ptb", "select:random:8:ptb"],
                                    "methods": ["wanda", "nirvana"], "sparsities": ["0.2"]}}}
    configs = sweep.expand(prof)
    assert len(configs) == 8
    oasis = [c for c in configs if c.calibration.startswith("select:oasis") and c.seed == 0]
    rand = [c for c in configs if c.calibration.startswith("select:random") and c.seed == 0]
    assert oasis[0].calibration_key != oasis[1].calibration_key  # OASIS's set depends on the pruner
    assert rand[0].calibration_key == rand[1].calibration_key  # a random draw does not
    bad = prof | {"experiments": {"sel": {"calibration": ["select:oasis:8:ptb"], "methods": ["magnitude"],
                                          "sparsities": ["0.5"]}}}
    with pytest.raises(sweep.SweepError, match="differentiable saliency"):
        sweep.expand(bad)


def test_stored_profile_of_an_oasis_selection_is_per_pruner(tmp_path):
    """The store once kept one profile per spec, N, L and seed: the OASIS set selected for NIRVANA was given the
    profile of the set selected for Wanda (the committed selection records carried it). Each pruner's set has its
    own."""
    from calibkit import sweep

    prof = {"name": "t", "model": "tiny-llama", "suite": "embedded", "limit": 1, "n": 2, "seqlen": 16, "seeds": [0],
            "experiments": {"sel": {"calibration": ["select:oasis:8:ptb", "select:random:8:ptb"],
                                    "methods": ["wanda", "nirvana"], "sparsities": ["0.2"]}}}
    configs = sweep.expand(prof)
    (ow, on), (rw, rn) = ([c for c in configs if c.calibration.startswith(f"select:{m}")] for m in ("oasis", "random"))
    store, made = sweep.Store(tmp_path / "store"), []

    def make(cfg):
        made.append(cfg.method)
        return {"distortion": float(len(made))} | cfg.calibration_identity

    for cfg in (ow, on, rw, rn):
        store.profile(cfg, lambda: make(cfg))
    assert made == ["wanda", "nirvana", "wanda"]  # the random draw is one set for both pruners
    assert store.profile(on)["method"] == "nirvana" and store.profile(ow)["distortion"] == 1.0
    assert store.profile(rn) == store.profile(rw) and "method" not in store.profile(rn)


def test_repair_profiles_gives_records_their_own_sets_profile(tmp_path):
    from calibkit import sweep

    prof = {"name": "t", "model": "tiny-llama", "suite": "embedded", "limit": 1, "n": 2, "seqlen": 16, "seeds": [0],
            "experiments": {"sel": {"calibration": ["select:oasis:8:ptb"], "methods": ["wanda", "nirvana"],
                                    "sparsities": ["0.2"]}}}
    wanda, nirvana = sweep.expand(prof)
    store = sweep.Store(tmp_path / "store")
    store.claim()
    for cfg, d in ((wanda, 1.0), (nirvana, 2.0)):
        store.profile(cfg, lambda: {"distortion": d} | cfg.calibration_identity)  # what profiling each set gave
        store.put(cfg, {"key": cfg.key, "config": {}, "calibration": {}, "retention": {}, "scores": {}, "prune": {},
                        "seconds": {}, "profile": {"distortion": 1.0} | wanda.calibration_identity})  # Wanda's
    fixed = sweep.repair_profiles([wanda, nirvana], store.root, progress=False)
    assert [r["key"] for r in fixed] == [nirvana.key]
    rec = store.get(nirvana)  # passes its checksum
    assert rec["profile"]["distortion"] == 2.0 and rec["profile_replaced"]["was"]["distortion"] == 1.0
    assert store.get(wanda)["profile"]["distortion"] == 1.0 and "profile_replaced" not in store.get(wanda)
    assert sweep.repair_profiles([wanda, nirvana], store.root, progress=False) == []  # idempotent
    shutil.rmtree(store.profiles)  # the sets profiled again, NIRVANA's to another value
    for cfg, d in ((wanda, 1.0), (nirvana, 3.0)):
        store.profile(cfg, lambda: {"distortion": d} | cfg.calibration_identity)
    sweep.repair_profiles([wanda, nirvana], store.root, progress=False)  # a second repair keeps the first's record
    rep = store.get(nirvana)["profile_replaced"]
    assert rep["was"]["distortion"] == 2.0 and rep["before"]["was"]["distortion"] == 1.0
    assert store.get(nirvana)["profile"]["distortion"] == 3.0
    shutil.rmtree(store.profiles)  # a set profiled here that is not the one the run used (token digests differ)
    for cfg, d in ((wanda, 1.0), (nirvana, 4.0)):
        store.profile(cfg, lambda: {"distortion": d, "tokens_sha256": "b" * 64} | cfg.calibration_identity)
    rec = store.get(nirvana)
    store.put(nirvana, {k: v for k, v in rec.items() if k != "checksum"} | {"calibration": {"tokens_sha256": "c" * 64}})
    with pytest.raises(sweep.SweepError, match="not the stored profile's"):
        sweep.repair_profiles([wanda, nirvana], store.root, progress=False)
    assert store.get(nirvana)["profile"]["distortion"] == 3.0  # left as it was
