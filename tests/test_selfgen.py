import random

import pytest
from calibkit.selfgen.generate import Sampling, scheduled_temperature
from calibkit.selfgen.select import (band_filter, diversity_ratio, greedy_ngram_select, ppl_binned_entropy_sample,
                                     vocabulary_entropy)


def test_linear_temperature_schedule():
    assert scheduled_temperature(0, 0.5, 1.5, 10) == pytest.approx(0.5)
    assert scheduled_temperature(5, 0.5, 1.5, 10) == pytest.approx(1.0)
    assert scheduled_temperature(10, 0.5, 1.5, 10) == pytest.approx(1.5)
    assert scheduled_temperature(50, 0.5, 1.5, 10) == pytest.approx(1.5)
    assert [scheduled_temperature(i, 1.0, 0.0 + 1e-9, 4) for i in range(5)][:4] == pytest.approx([1, .75, .5, .25])
    with pytest.raises(ValueError):
        Sampling(temperature=0)


def test_band_filter():
    assert band_filter([1.0, 5.0, 12.0, 12.5, 4.99], 5, 12) == [1, 2]
    with pytest.raises(ValueError):
        band_filter([1.0], 3, 2)


def _exhaustive_greedy(texts, k, n=4):
    chosen = []
    for _ in range(k):
        best = max((i for i in range(len(texts)) if i not in chosen),
                   key=lambda i: (diversity_ratio([texts[j] for j in chosen + [i]], n), -i))
        chosen.append(best)
    return chosen


def test_greedy_selector_equals_exhaustive_greedy():
    words = "a b c d e f g h".split()
    rng = random.Random(0)
    for trial in range(20):
        pool = [" ".join(rng.choice(words[: rng.randint(2, 8)]) for _ in range(rng.randint(4, 14)))
                for _ in range(9)]
        for k in (1, 3, 6):
            assert greedy_ngram_select(pool, k) == _exhaustive_greedy(pool, k), (trial, k, pool)


def test_greedy_prefers_novel_text_and_handles_start():
    pool = ["x y z w x y z w", "x y z w x y z w", "p q r s t u v"]
    assert greedy_ngram_select(pool, 2) == [2, 0]
    assert greedy_ngram_select(pool, 1, start=["p q r s t u v"]) == [0]
    with pytest.raises(ValueError):
        greedy_ngram_select(pool, 4)


def test_vocabulary_entropy_and_sgs_sampling():
    assert vocabulary_entropy([1, 1, 1]) == 0.0
    assert vocabulary_entropy([1, 2]) == pytest.approx(0.6931, abs=1e-4)
    ppl = [float(i) for i in range(10)]          # 8, 9 are the top 20 % and must go
    ent = [0, 5, 1, 4, 2, 9, 3, 1, 99, 99]
    picked = ppl_binned_entropy_sample(ppl, ent, 4, drop_top=0.2, bins=2)
    assert 8 not in picked and 9 not in picked
    assert picked == [1, 3, 5, 6]  # bins {0..3}, {4..7}: two highest-entropy from each
    assert sorted(ppl_binned_entropy_sample(ppl, ent, 8, drop_top=0.2, bins=4)) == list(range(8))


@pytest.fixture(scope="module")
def tiny():
    from calibkit.models import load_model

    return load_model("tiny-llama")


def test_generator_is_seeded_and_exact_length(tiny):
    from calibkit.selfgen.generate import generate

    model, tok = tiny
    prompts = [[1], [1, 5, 9], [1, 7]]
    s = Sampling(schedule=(0.5, 1.0, 4))
    a = generate(model, tok, prompts, 6, s, seed=3, batch_size=2, progress=False)
    assert a == generate(model, tok, prompts, 6, s, seed=3, batch_size=2, progress=False)
    assert a != generate(model, tok, prompts, 6, s, seed=4, batch_size=2, progress=False)
    assert [len(x) for x in a] == [6, 6, 6]
    with pytest.raises(ValueError):
        generate(model, tok, [[]], 4, s, progress=False)


@pytest.mark.parametrize("method", ["selfcal", "sgs", "igsp", "igsp-no-multi", "igsp-no-band", "igsp-no-diversity"])
def test_every_method_builds_a_fixed_budget_set_reproducibly(tiny, method, tmp_path, monkeypatch):
    from calibkit import selfgen

    model, tok = tiny
    a = selfgen.build(method, model, tok, n=4, seqlen=16, seed=0, model_name="tiny-llama", progress=False)
    assert len(a) == 4 and all(len(s["input_ids"]) == 16 for s in a.sequences)
    assert a.meta["spec"] == f"selfgen:{method}"
    b = selfgen.build(method, model, tok, n=4, seqlen=16, seed=0, model_name="tiny-llama", progress=False)
    assert [s["input_ids"] for s in a.sequences] == [s["input_ids"] for s in b.sequences]
    if method in ("igsp", "igsp-no-band", "igsp-no-diversity"):
        assert a.counts() == {"General": 1, "Commonsense": 1, "Code": 1, "Math": 1}
    import calibkit.selfgen.generate as g
    monkeypatch.setattr(g, "POOL_FOLDER", tmp_path / "selfgen")  # a cold pool cache regenerates the same set
    c = selfgen.build(method, model, tok, n=4, seqlen=16, seed=0, model_name="tiny-llama", progress=False)
    assert [s["input_ids"] for s in a.sequences] == [s["input_ids"] for s in c.sequences]
    assert list((tmp_path / "selfgen").glob("*.json"))


def test_cli_build_selfgen_and_bad_method(tmp_path, capsys):
    from calibkit.cli import main

    out = tmp_path / "s.jsonl"
    assert main(["build", "--selfgen", "selfcal", "--n", "2", "--seqlen", "8", "--model", "tiny-llama",
                 "--selfgen-param", "t_init=0.7", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2
    assert main(["build", "--selfgen", "nope", "--n", "2", "--seqlen", "8", "--model", "tiny-llama",
                 "--out", str(out)]) == 2
    assert "unknown self-generation method" in capsys.readouterr().err


# --- typed parameters ---------------------------------------------------------------------------------

TYPOS = {"selfcal": ("t_inti", "t_init"), "sgs": ("pool_factr", "pool_factor"), "igsp": ("ngrm", "ngram"),
         "igsp-no-band": ("t_inti", None)}


@pytest.mark.parametrize("method", sorted(TYPOS))
def test_a_typo_in_a_parameter_is_refused_with_the_known_ones(method):
    from dataclasses import fields

    from calibkit import selfgen
    from calibkit.errors import ConfigError

    typo, closest = TYPOS[method]
    with pytest.raises(ConfigError, match=rf"unknown parameter '{typo}'") as e:
        selfgen.parameters(method, {typo: 0.7})
    known = [f.name for f in fields(selfgen.PARAMS[method])]
    assert f"known: {', '.join(known)}" in str(e.value)
    assert (f"did you mean '{closest}'" in str(e.value)) if closest else "did you mean" not in str(e.value)
    with pytest.raises(ConfigError, match=typo):  # build refuses it before it touches the model
        selfgen.build(f"selfgen:{method}", None, None, 4, 16, 0, model_name="tiny-llama", **{typo: 0.7})


def test_parameters_have_the_defaults_and_check_values():
    from dataclasses import asdict

    from calibkit import selfgen
    from calibkit.errors import ConfigError
    from calibkit.selfgen.params import IGSP_VARIANTS, IGSPParams, SelfCalParams, SGSParams

    assert asdict(selfgen.parameters("selfcal")) == {"t_init": 0.5, "t_final": 1.0, "schedule_fraction": 0.5,
                                                     "batch_size": 64}
    assert asdict(SGSParams()) == {"prefix_source": "wiki-excerpt", "prefix_tokens": 16, "pool_factor": 2.0,
                                   "drop_top": 0.2, "bins": 4, "batch_size": 64}
    assert asdict(IGSPParams()) == {"pool_factor": 2.0, "ngram": 4, "batch_size": 64, "alpha": None,
                                    "band_pools": "embedded"}
    p = selfgen.parameters("selfgen:sgs", {"batch_size": 8.0, "pool_factor": 3})
    assert (p.batch_size, type(p.batch_size), p.pool_factor, type(p.pool_factor)) == (8, int, 3.0, float)
    assert SGSParams.from_dict(asdict(p)) == p
    assert selfgen.parameters("igsp", {"alpha": [4, 3, 3, 0]}).alpha == (4.0, 3.0, 3.0, 0.0)
    for method, bad in [("selfcal", {"t_init": 0}), ("selfcal", {"schedule_fraction": 1.5}),
                        ("selfcal", {"batch_size": True}), ("sgs", {"prefix_source": "wiki-exerpt"}),
                        ("sgs", {"drop_top": 1.0}), ("sgs", {"bins": 2.5}), ("igsp", {"alpha": [1, 2]}),
                        ("igsp", {"alpha": [0, 0, 0, 0]}), ("igsp", {"ngram": "4"}), ("igsp", {"pool_factor": 0.5})]:
        with pytest.raises(ConfigError, match=next(iter(bad))):
            selfgen.parameters(method, bad)
    with pytest.raises(ConfigError, match="did you mean 'wiki-excerpt'"):
        SGSParams(prefix_source="wiki-exerpt")
    with pytest.raises(Exception):  # frozen
        SelfCalParams().t_init = 2.0
    assert [v.multi_domain for v in IGSP_VARIANTS.values()] == [True, False, True, True]
    assert not IGSP_VARIANTS["igsp-no-band"].band_filter and not IGSP_VARIANTS["igsp-no-diversity"].diversity
    assert selfgen.METHODS == ("selfcal", "sgs", "igsp", "igsp-no-multi", "igsp-no-band", "igsp-no-diversity")


def test_cli_refuses_a_mistyped_selfgen_parameter(tmp_path, capsys):
    from calibkit.cli import main

    out = tmp_path / "s.jsonl"
    assert main(["build", "--selfgen", "igsp", "--n", "2", "--seqlen", "8", "--model", "tiny-llama",
                 "--selfgen-param", "t_inti=0.7", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter 't_inti'" in err and "known: pool_factor, ngram, batch_size, alpha" in err
    assert not out.exists()


def test_topk_topp_keeps_the_same_tokens_as_transformers_warpers():
    import torch
    from calibkit.selfgen.generate import _TopKTopP
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 500, generator=g) * 3
    for k, p in [(50, 0.95), (10, 0.5), (0, 0.9), (20, 1.0)]:
        ref = scores.clone()
        if k:
            ref = TopKLogitsWarper(k)(None, ref)
        if p < 1:
            ref = TopPLogitsWarper(p)(None, ref)
        ours = _TopKTopP(k, p)(None, scores.clone())
        assert torch.equal(torch.isinf(ours), torch.isinf(ref)), (k, p)
        assert torch.equal(ours[~torch.isinf(ours)], scores[~torch.isinf(ours)])
