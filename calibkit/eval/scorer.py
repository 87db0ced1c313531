"""Log-likelihood scoring for lm-eval that computes what is scored and nothing else.

lm-eval's ``HFLM`` runs every likelihood request through the whole causal LM: the output head and a log-softmax over
the vocabulary at every position, context and right-padding included, in the model's dtype (a bf16 model's
log-probabilities are rounded to bf16 and summed from there); rolling windows are batched in document order, so a
batch is padded to its longest window. For the embedded suite that is 52 k forward tokens for 43 k real ones, and
the head (49 k × 576 for SmolLM2) at 12 k context positions of Social IQa that nothing reads.

``ScoredLM`` keeps lm-eval's requests, tokenisation, task logic and results and changes only how a batch of
(context, continuation) token lists becomes (log-likelihood, is-greedy):

- requests (rolling windows of every document together) are sorted by length and packed under a token budget;
- the model body runs once per batch; the output head runs only at the positions whose next token is scored;
- log-softmax and sums are float32 (the head's output is upcast), whatever the model's dtype.

The truncation and slicing are lm-eval's (``(context + continuation)[-(max_length + 1):][:-1]``, the continuation's
tokens scored at the last positions). Generation requests are lm-eval's own. A model whose logits are more than
its output embedding applied to its last hidden state (logit soft-capping or scaling) is refused when the scorer is
built; ``scorer="lm-eval"`` in ``harness.evaluate`` evaluates it with lm-eval's path instead.
"""
from __future__ import annotations

import torch
from lm_eval.models.huggingface import HFLM
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

from ..errors import CalibkitError

HEAD_CHUNK = 1024  # scored positions per output-head call: bounds the float32 logits (1024 x vocab) in memory


class ScorerError(CalibkitError, RuntimeError):
    pass


def batches(lengths: list[int], token_budget: int) -> list[list[int]]:
    """Indices sorted by length (longest first, ties by index) and cut into batches whose padded size (rows ×
    longest row) stays within ``token_budget``; a row longer than the budget is a batch of its own."""
    if token_budget <= 0:
        raise ScorerError(f"token_budget must be positive, got {token_budget}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    out: list[list[int]] = []
    for i in order:
        if out and (len(out[-1]) + 1) * lengths[out[-1][0]] <= token_budget:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def continuation_logprobs(hidden: torch.Tensor, head, rows: torch.Tensor, positions: torch.Tensor,
                          targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per scored token: float32 log-probability of its target and whether the target is the argmax. ``hidden``
    (batch, seq, d); ``rows``/``positions`` index the positions whose next token is ``targets``; the head runs on
    ``HEAD_CHUNK`` positions at a time."""
    logps, greedy = [], []
    for start in range(0, len(targets), HEAD_CHUNK):
        sl = slice(start, start + HEAD_CHUNK)
        logits = head(hidden[rows[sl], positions[sl]]).float()
        target = targets[sl].to(logits.device)
        logps.append(torch.log_softmax(logits, dim=-1).gather(1, target[:, None]).squeeze(1).cpu())
        greedy.append((logits.argmax(-1) == target).cpu())
    return torch.cat(logps), torch.cat(greedy)


class ScoredLM(HFLM):
    """``HFLM`` whose likelihood requests are scored as the module says; ``token_budget`` bounds a batch's padded
    tokens. 1024: the embedded suite on SmolLM2 bf16, 2 cores, took 47.0 s with it, 48.3–50.2 s with 2048 and
    50.7 s with 4096 (lm-eval's path: 64.4 s)."""

    def __init__(self, *args, token_budget: int = 1024, **kwargs):
        super().__init__(*args, **kwargs)
        if self.backend != "causal":
            raise ScorerError(f"the scorer handles causal LMs; this model's backend is {self.backend!r}")
        self.token_budget = int(token_budget)
        self._body = self.model.get_decoder()
        self._head = self.model.get_output_embeddings()
        if self._body is None or self._head is None:
            raise ScorerError(f"{type(self.model).__name__} exposes no decoder/output embedding to score with")
        self._check_plain_head()

    @torch.no_grad()
    def _check_plain_head(self) -> None:
        """Refuse a model whose logits are not head(last hidden state) (soft-capping, scaling): compared once on a
        short input against the model's own forward."""
        x = torch.arange(1, 9, device=self.device)[None] % self.model.config.vocab_size
        full = self.model(x).logits.float().cpu()
        mine = self._head(self._body(x).last_hidden_state).float().cpu()
        if full.shape != mine.shape or not torch.allclose(full, mine, rtol=1e-3, atol=1e-3):
            raise ScorerError(f"{type(self.model).__name__}'s logits are not its output embedding of the last hidden "
                              "state (soft-capping or scaling?); evaluate it with scorer='lm-eval'")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """lm-eval's rolling windows (disjoint, one token of context), all documents' windows scored together."""
        windows, counts = [], []
        for (text,) in (r.args for r in requests):
            doc = [(None,) + make_disjoint_window(w) for w in get_rolling_token_windows(
                token_list=self.tok_encode(text), prefix_token=self.prefix_token_id, max_seq_len=self.max_length,
                context_len=1)]
            windows += doc
            counts.append(len(doc))
        scored = self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)
        out, start = [], 0
        for request, n in zip(requests, counts):
            total = sum(ll for ll, _ in scored[start:start + n])
            start += n
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return out

    @torch.no_grad()
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        inputs, conts = [], []
        for _, context, continuation in requests:
            if not context:  # lm-eval gives an empty context the prefix token; a request without one is malformed
                raise ScorerError("a likelihood request without context tokens cannot be scored")
            if not continuation or len(continuation) > self.max_length:
                raise ScorerError(f"a continuation of {len(continuation)} tokens cannot be scored with max_length "
                                  f"{self.max_length}")
            inputs.append((list(context) + list(continuation))[-(self.max_length + 1):][:-1])
            conts.append(list(continuation))
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        groups = batches([len(x) for x in inputs], self.token_budget)
        for group in tqdm(groups, desc="Scoring likelihood requests", disable=disable_tqdm or self.rank != 0):
            width = len(inputs[group[0]])
            ids = torch.zeros(len(group), width, dtype=torch.long)
            rows, positions, targets, sizes = [], [], [], []
            for r, i in enumerate(group):
                n_in, n_cont = len(inputs[i]), len(conts[i])
                ids[r, :n_in] = torch.tensor(inputs[i])
                rows += [r] * n_cont
                positions += range(n_in - n_cont, n_in)
                targets += conts[i]
                sizes.append(n_cont)
            hidden = self._body(ids.to(self.device)).last_hidden_state
            logp, greedy = continuation_logprobs(  # indices where the hidden states are (a sharded model's last)
                hidden, self._head, *(torch.tensor(v, device=hidden.device) for v in (rows, positions, targets)))
            for i, lp, g in zip(group, logp.double().split(sizes), greedy.split(sizes)):
                results[i] = (float(lp.sum()), bool(g.all()))
        for (key, _, _), answer in zip(requests, results):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, answer)
        return results
