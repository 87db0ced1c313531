"""Structured pruning (LLM-Pruner- and NIRVANA-style) on tiny GQA models: the scores equal a direct implementation
of each formula, the surgery removes exactly the chosen units (a masked copy computes the same logits), and the
saved checkpoint reloads with `from_pretrained` to the same logits — uniform widths physically smaller, per-layer
widths padded with exact zero units."""
import copy

import pytest
import torch
from calibkit.models import tiny_model
from calibkit.prune import structured_scores as S
from calibkit.prune.structured import StructuredError, gradients, prune_structured
from calibkit.prune.surgery import SurgeryError, keep_units, make_loadable, widths

ARCHS = ["tiny-llama", "tiny-qwen2", "tiny-mistral"]


def _ids(n=4, t=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 1000, (n, t), generator=g)


def _model(arch="tiny-llama", **kw):
    shape = dict(vocab_size=1000, hidden_size=48, num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=3,
                 intermediate_size=48)
    return tiny_model(arch, **(shape | kw))


def test_group_scores_equal_a_direct_sum_over_each_groups_weights():
    torch.manual_seed(0)
    n_kv, n_rep, d, hidden, inter = 3, 2, 4, 8, 5
    s_q, s_o = torch.rand(n_kv * n_rep * d, hidden), torch.rand(hidden, n_kv * n_rep * d)
    s_k, s_v = torch.rand(n_kv * d, hidden), torch.rand(n_kv * d, hidden)
    got = S.attn_group_scores(s_q, s_k, s_v, s_o, n_kv, d)
    for g in range(n_kv):
        want = 0.0
        for h in range(g * n_rep, (g + 1) * n_rep):  # query head h reads KV head h // n_rep
            want += s_q[h * d:(h + 1) * d].sum() + s_o[:, h * d:(h + 1) * d].sum()
        want += s_k[g * d:(g + 1) * d].sum() + s_v[g * d:(g + 1) * d].sum()
        assert got[g] == pytest.approx(float(want), rel=1e-6)
    s_gate, s_up, s_down = torch.rand(inter, hidden), torch.rand(inter, hidden), torch.rand(hidden, inter)
    got = S.mlp_unit_scores(s_gate, s_up, s_down)
    for i in range(inter):
        assert got[i] == pytest.approx(float(s_gate[i].sum() + s_up[i].sum() + s_down[:, i].sum()), rel=1e-6)
    w, g = torch.tensor([[1.0, -2.0]]), torch.tensor([[-3.0, -0.5]])
    assert S.taylor(w, g).tolist() == [[3.0, 1.0]]


def test_gradients_are_those_of_the_objective():
    model = _model()
    ids = _ids()
    grads = gradients(model, ids, "llm-pruner", batch_size=2, progress=False)
    ref = copy.deepcopy(model)
    ref.zero_grad()
    with torch.enable_grad():  # other test modules switch autograd off globally
        ref(input_ids=ids[:2], labels=ids[:2]).loss.div(2).backward()
        ref(input_ids=ids[2:], labels=ids[2:]).loss.div(2).backward()
    w = model.model.layers[1].mlp.down_proj.weight
    torch.testing.assert_close(grads[id(w)], ref.model.layers[1].mlp.down_proj.weight.grad)
    assert all(not p.requires_grad or p.grad is None for p in model.parameters())
    g2 = gradients(model, ids, "nirvana", batch_size=4, progress=False)
    ref.zero_grad()
    with torch.enable_grad():
        ref(input_ids=ids).logits.max(dim=1).values.mean().backward()
    torch.testing.assert_close(g2[id(w)], ref.model.layers[1].mlp.down_proj.weight.grad)


def _masked(model, keep_g, keep_n):
    """The same model with the removed units zeroed instead of removed."""
    m = copy.deepcopy(model)
    cfg = m.config
    d, n_rep = cfg.head_dim if getattr(cfg, "head_dim", None) else cfg.hidden_size // cfg.num_attention_heads, \
        cfg.num_attention_heads // cfg.num_key_value_heads
    with torch.no_grad():
        for layer, g, n in zip(m.model.layers, keep_g, keep_n):
            at, mlp = layer.self_attn, layer.mlp
            for k in set(range(cfg.num_key_value_heads)) - set(g.tolist()):
                at.q_proj.weight[k * n_rep * d:(k + 1) * n_rep * d] = 0
                at.o_proj.weight[:, k * n_rep * d:(k + 1) * n_rep * d] = 0
                for lin in (at.k_proj, at.v_proj):
                    lin.weight[k * d:(k + 1) * d] = 0
                for lin in (at.q_proj, at.k_proj, at.v_proj):
                    if lin.bias is not None:
                        width = n_rep * d if lin is at.q_proj else d
                        lin.bias[k * width:(k + 1) * width] = 0
            for i in set(range(cfg.intermediate_size)) - set(n.tolist()):
                mlp.gate_proj.weight[i] = 0
                mlp.up_proj.weight[i] = 0
                mlp.down_proj.weight[:, i] = 0
    return m


@pytest.mark.parametrize("arch", ARCHS)
def test_surgery_removes_exactly_the_chosen_units(arch):
    model = _model(arch)
    keep_g = [torch.tensor([0, 2]), torch.tensor([1]), torch.tensor([0, 1, 2])]
    keep_n = [torch.arange(0, 48, 2), torch.tensor([3, 5, 40]), torch.arange(48)]
    masked = _masked(model, keep_g, keep_n)
    for layer, g, n in zip(model.model.layers, keep_g, keep_n):
        keep_units(layer, model.config, g, n)
    assert [w["kv_groups"] for w in widths(model.model.layers)] == [2, 1, 3]
    assert [w["q_heads"] for w in widths(model.model.layers)] == [4, 2, 6]  # GQA: each group keeps its 2 heads
    ids = _ids()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, masked(ids).logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", ["llm-pruner", "nirvana"])
def test_prune_save_and_reload_give_the_same_logits(method, tmp_path):
    from transformers import AutoModelForCausalLM
    from calibkit.prune import save_pruned

    model = _model(num_hidden_layers=4 if method == "nirvana" else 3)
    ids = _ids()
    rep = prune_structured(model, ids, method, 0.3, gamma=1.0, progress=False)
    assert 0.2 < rep.reduction < 0.45, rep.to_dict()
    with torch.no_grad():
        before = model(ids).logits
    out = save_pruned(model, None, tmp_path / "p", rep)
    back = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, before, rtol=1e-4, atol=1e-4)
    if rep.uniform:
        assert sum(p.numel() for p in back.parameters()) == rep.params_after  # physically smaller
    else:
        assert back.config.intermediate_size == max(w["neurons"] for w in rep.widths)


def test_llm_pruner_is_local_and_nirvana_global():
    ids = _ids()
    m1 = _model(num_hidden_layers=3)
    r1 = prune_structured(m1, ids, "llm-pruner", 0.3, progress=False)
    assert r1.uniform and len({(w["kv_groups"], w["neurons"]) for w in r1.widths}) == 1
    m2 = _model(num_hidden_layers=4)
    r2 = prune_structured(m2, ids, "nirvana", 0.3, gamma=1.0, progress=False)
    assert all(w["kv_groups"] >= 1 and w["neurons"] % 8 == 0 for w in r2.widths)
    assert r2.options["remove"]["neurons"] > 0


def test_make_loadable_is_exact():
    model = _model()
    for layer, g, n in zip(model.model.layers, [torch.tensor([1]), torch.tensor([0, 2]), torch.tensor([2])],
                           [torch.arange(10), torch.arange(30), torch.arange(5, 25)]):
        keep_units(layer, model.config, g, n)
    ids = _ids()
    with torch.no_grad():
        before = model(ids).logits
        make_loadable(model.model.layers, model.config)
        torch.testing.assert_close(model(ids).logits, before, rtol=1e-5, atol=1e-5)
    assert {(w["kv_groups"], w["neurons"]) for w in widths(model.model.layers)} == {(2, 30)}
    # 5 of 8 KV groups (10 heads) do not divide a hidden size of 64: padded to the nearest count that does (8)
    big = tiny_model("tiny-llama", vocab_size=1000, hidden_size=64, num_attention_heads=16, num_key_value_heads=8)
    for layer in big.model.layers:
        keep_units(layer, big.config, torch.arange(5), None)
    with torch.no_grad():
        before = big(ids).logits
        out = make_loadable(big.model.layers, big.config)
        torch.testing.assert_close(big(ids).logits, before, rtol=1e-5, atol=1e-5)
    assert out["kv_groups"] == 8 and big.config.num_attention_heads == 16


def test_bad_structured_inputs_are_refused_before_any_weight_changes():
    model = _model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ids = _ids()
    for call, needle in [
        (lambda: prune_structured(model, ids, "llm-pruner", 0.97, progress=False), "would leave none"),
        (lambda: prune_structured(model, ids, "nirvana", 0.9, gamma=3.0, progress=False), "nirvana"),
        (lambda: prune_structured(model, ids[:, :1], "nirvana", 0.2, progress=False), ">= 2 tokens"),
        (lambda: prune_structured(model, ids[:0], "nirvana", 0.2, progress=False), ">= 2 tokens"),
        (lambda: prune_structured(model, ids + 5000, "nirvana", 0.2, progress=False), "vocabulary"),
        (lambda: prune_structured(model, ids, "obs", 0.2, progress=False), "unknown structured method"),
        (lambda: prune_structured(model, ids, "nirvana", 1.5, progress=False), "fraction"),
    ]:
        with pytest.raises(StructuredError, match=needle):
            call()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    odd = tiny_model("tiny-llama", vocab_size=1000, num_attention_heads=4, num_key_value_heads=4)
    odd.config.num_key_value_heads = 3
    with pytest.raises(SurgeryError, match="not divisible"):
        prune_structured(odd, ids, "nirvana", 0.2, progress=False)
    gpt2_like = tiny_model("tiny-llama", vocab_size=1000)
    gpt2_like.config.model_type = "gpt2"
    with pytest.raises(SurgeryError, match="supports llama"):
        prune_structured(gpt2_like, ids, "nirvana", 0.2, progress=False)


def test_prune_cli_structured_on_a_tiny_model(tmp_path, monkeypatch, capsys):
    import json

    from calibkit.cli import main
    from transformers import AutoModelForCausalLM

    monkeypatch.chdir(tmp_path)
    assert main(["build", "--source", "ptb", "--n", "4", "--seqlen", "24", "--out", "c.jsonl"]) == 0
    assert main(["prune", "--model", "tiny-llama", "--method", "nirvana", "--sparsity", "0.2", "--gamma", "1",
                 "--calib", "c.jsonl", "--out", "p"]) == 0
    rep = json.loads((tmp_path / "p" / "prune_report.json").read_text())
    assert rep["kind"] == "structured" and 0.1 < rep["decoder_params"]["reduction"] < 0.3
    assert rep["options"]["calibration"]["sequences"] == 4 and "saved" in rep["options"]
    AutoModelForCausalLM.from_pretrained(tmp_path / "p")
    assert main(["prune", "--model", "tiny-llama", "--method", "llm-pruner", "--nm", "2:4", "--calib", "c.jsonl",
                 "--out", "q"]) == 2
    assert "not --nm" in capsys.readouterr().err
    assert main(["prune", "--model", "tiny-llama", "--method", "nirvana", "--sparsity", "0.2", "--out", "q"]) == 2
    assert not (tmp_path / "q").exists()
