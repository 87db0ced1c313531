"""calibkit's likelihood scorer: the same numbers as lm-eval's HFLM path (float32), in other batches."""
import pytest

from calibkit.eval.harness import SUITES, evaluate
from calibkit.eval.scorer import ScoredLM, ScorerError, batches
from calibkit.models import load_model


def test_batches_sort_by_length_and_respect_the_token_budget():
    lengths = [5, 40, 7, 40, 3, 100, 12, 9]
    groups = batches(lengths, token_budget=80)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    flat = [lengths[i] for g in groups for i in g]
    assert flat == sorted(lengths, reverse=True)
    for g in groups:
        assert len(g) == 1 or len(g) * lengths[g[0]] <= 80  # a row over the budget stands alone
    assert groups[0] == [5] and groups[1] == [1, 3]  # ties keep their order
    with pytest.raises(ScorerError, match="positive"):
        batches(lengths, 0)


@pytest.mark.parametrize("suite_name,tasks", [("embedded", None),
                                              ("oasis", ["ck_ptb_ppl", "ck_lambada_ppl", "ck_arc_easy_val",
                                                         "ck_winogrande"])])
def test_scorer_gives_lm_evals_numbers(suite_name, tasks):
    """Per item, the scorer's values equal lm-eval's HFLM path on a float32 model (rolling windows, continuations,
    multiple choice, partial scoring) up to float32 rounding; a different token budget changes nothing."""
    model, tok = load_model("tiny-llama")
    ours = evaluate(model, tok, suite_name, limit=3, progress=False, tasks=tasks)
    theirs = evaluate(model, tok, suite_name, limit=3, progress=False, tasks=tasks, scorer="lm-eval")
    assert ours["scorer"] == "calibkit-scored-1" and theirs["scorer"] == "lm-eval-hflm"
    assert ours["per_item"].keys() == theirs["per_item"].keys()
    for task, values in ours["per_item"].items():
        assert _flat(values) == pytest.approx(_flat(theirs["per_item"][task]), rel=2e-5, abs=1e-5), task
    from unittest import mock

    with mock.patch.object(ScoredLM, "__init__", _budget(ScoredLM.__init__, 16)):
        small = evaluate(model, tok, suite_name, limit=3, progress=False, tasks=tasks)
    for task, values in small["per_item"].items():
        assert _flat(values) == pytest.approx(_flat(ours["per_item"][task]), rel=2e-5, abs=1e-5), task


def _flat(values):
    """Per-item values as one list (an item is a number, or [numerator, denominator])."""
    return [x for v in values for x in (v if isinstance(v, list) else [v])]


def test_scorer_truncates_and_rolls_windows_as_lm_eval_does():
    """With a 32-token context, long documents become several rolling windows and long contexts are cut from the
    left: the scorer gives lm-eval's per-item values there too (bits per byte and multiple-choice accuracy)."""
    model, tok = load_model("tiny-llama")
    tasks = {"embedded": ["ck_ptb_bpb", "ck_humaneval_bpb", "ck_social_iqa_bpb"],  # GSM8K answers exceed 32 tokens
             "oasis": ["ck_ptb_ppl", "ck_arc_easy_val", "ck_hellaswag"]}
    for suite_name, names in tasks.items():
        ours = evaluate(model, tok, suite_name, limit=4, progress=False, tasks=names, max_length=32)
        theirs = evaluate(model, tok, suite_name, limit=4, progress=False, tasks=names, max_length=32,
                          scorer="lm-eval")
        for task, values in ours["per_item"].items():
            assert _flat(values) == pytest.approx(_flat(theirs["per_item"][task]), rel=2e-5, abs=1e-5), task


def _budget(init, budget):
    def patched(self, *a, **k):
        init(self, *a, **(k | {"token_budget": budget}))
    return patched


def test_scorer_refuses_a_model_whose_logits_are_not_the_plain_head():
    model, tok = load_model("tiny-llama")
    plain = model.forward

    def scaled(*a, **k):
        out = plain(*a, **k)
        out.logits = 0.5 * out.logits  # logit scaling, as Cohere's models do
        return out

    model.forward = scaled
    with pytest.raises(ScorerError, match="scorer='lm-eval'"):
        ScoredLM(pretrained=model, tokenizer=tok, batch_size=4)
    res = evaluate(model, tok, "embedded", limit=1, progress=False, tasks=["ck_ptb_bpb"], scorer="lm-eval")
    assert res["scores"]["ck_ptb_bpb"] > 0


def test_unknown_scorer_is_named():
    model, tok = load_model("tiny-llama")
    with pytest.raises(Exception, match="unknown scorer 'fast'"):
        evaluate(model, tok, "embedded", limit=1, progress=False, scorer="fast")


def test_cli_eval_takes_the_scorer_and_refuses_an_unknown_one(capsys):
    from calibkit.cli import main

    assert main(["eval", "--model", "tiny-llama", "--limit", "1", "--tasks", "ck_ptb_bpb", "--scorer", "fast"]) == 2
    assert "unknown scorer 'fast'" in capsys.readouterr().err
    assert main(["eval", "--model", "tiny-llama", "--limit", "1", "--tasks", "ck_ptb_bpb", "--scorer", "lm-eval"]) == 0
    assert "scorer lm-eval-hflm" in capsys.readouterr().out


def test_head_chunks_give_the_same_logprobs(monkeypatch):
    from calibkit.eval import scorer

    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    hidden, head = torch.randn(3, 40, 16, generator=g), torch.nn.Linear(16, 50, bias=False)
    rows = torch.tensor([0] * 30 + [2] * 25)
    positions = torch.tensor(list(range(10, 40)) + list(range(15, 40)))
    targets = torch.randint(0, 50, (55,), generator=g)
    whole = scorer.continuation_logprobs(hidden, head, rows, positions, targets)
    monkeypatch.setattr(scorer, "HEAD_CHUNK", 7)
    chunked = scorer.continuation_logprobs(hidden, head, rows, positions, targets)
    assert torch.allclose(whole[0], chunked[0]) and torch.equal(whole[1], chunked[1])
    ref = torch.log_softmax(head(hidden[rows, positions]), -1).gather(1, targets[:, None]).squeeze(1)
    assert torch.allclose(whole[0], ref)
