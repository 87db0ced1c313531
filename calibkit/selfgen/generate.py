"""Batched sampling from the base model, shared by Self-Cal, SGS and IGSP.

Prompts are left-padded into batches (sorted by length, so padding is small) and continued with Hugging Face
``generate`` (KV cache, top-k / top-p / repetition penalty) plus an optional linear temperature schedule over the
generated positions. Every sequence is generated to exactly ``new_tokens`` tokens (end-of-sequence is suppressed),
so a set is a fixed token budget. Each batch draws from its own generator seeded by (seed, batch index): the same
prompts and seed give the same tokens. Finished pools are cached by (model, prompts, parameters, seed).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from .. import cache

POOL_FOLDER = "selfgen"  # under the cache root (or an absolute path)


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    schedule: tuple[float, float, int] | None = None  # (t_init, t_final, n): linear temperature over positions

    def __post_init__(self):
        if self.temperature <= 0 or (self.schedule and min(self.schedule[:2]) <= 0):
            raise ValueError(f"temperatures must be positive: {self}")
        if not 0 < self.top_p <= 1 or self.top_k < 0 or self.repetition_penalty <= 0:
            raise ValueError(f"invalid sampling parameters: {self}")


def scheduled_temperature(i: int, t_init: float, t_final: float, n: int) -> float:
    """Temperature of the i-th generated token (i = 0, 1, ...): t_init + (i/n)(t_final − t_init) for i <= n, then
    t_final (Self-Cal's linear schedule)."""
    if n <= 0 or i >= n:
        return float(t_final)
    return float(t_init + (i / n) * (t_final - t_init))


class _LinearTemperature:
    """A logits processor dividing the scores of generated position i by ``scheduled_temperature(i, ...)``."""

    def __init__(self, prompt_len: int, t_init: float, t_final: float, n: int):
        self.prompt_len, self.t_init, self.t_final, self.n = prompt_len, t_init, t_final, n

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        t = scheduled_temperature(input_ids.shape[1] - self.prompt_len, self.t_init, self.t_final, self.n)
        return scores / t


class _TopKTopP:
    """Top-k, then top-p (nucleus) within the k best: the same tokens survive as with Hugging Face's TopK and TopP
    warpers in that order, but only k logits are sorted instead of the whole vocabulary (on a CPU, sorting a
    49k-entry vocabulary per row per step costs more than the model's decode step)."""

    def __init__(self, top_k: int, top_p: float):
        self.top_k, self.top_p = top_k, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        k = min(self.top_k or scores.shape[-1], scores.shape[-1])
        vals, idx = scores.topk(k, dim=-1)  # descending
        if self.top_p < 1.0:
            probs = vals.softmax(-1)
            before = probs.cumsum(-1) - probs  # mass of the more probable tokens
            vals = vals.masked_fill(before >= self.top_p, float("-inf"))  # the most probable is always kept
        return torch.full_like(scores, float("-inf")).scatter_(-1, idx, vals)


def generate(model, tokenizer, prompts: list[list[int]], new_tokens: int, sampling: Sampling = Sampling(),
             seed: int = 0, batch_size: int = 64, progress: bool = True, desc: str = "generating") -> list[list[int]]:
    """Continue each prompt (token ids) by exactly ``new_tokens`` sampled tokens; returns the continuations in the
    prompts' order."""
    from transformers import LogitsProcessorList

    if new_tokens <= 0:
        raise ValueError(f"new_tokens must be positive, got {new_tokens}")
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (use the BOS token for unconditional generation)")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    out: list[list[int] | None] = [None] * len(prompts)
    bar = tqdm(total=len(prompts) * new_tokens, desc=desc, unit="tok", unit_scale=True, disable=not progress)
    for b, start in enumerate(range(0, len(order), batch_size)):
        idx = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, width - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[r, width - len(prompts[i]):] = 1
        kw = dict(do_sample=True, max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=pad, top_k=0,
                  top_p=1.0, repetition_penalty=sampling.repetition_penalty,
                  temperature=1.0 if sampling.schedule else sampling.temperature, use_cache=True)
        # order as in Hugging Face: repetition penalty, temperature (fixed, or the schedule), then top-k / top-p
        processors = LogitsProcessorList([_LinearTemperature(width, *sampling.schedule)] if sampling.schedule else [])
        if sampling.top_k or sampling.top_p < 1.0:
            processors.append(_TopKTopP(sampling.top_k, sampling.top_p))
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            torch.manual_seed(int.from_bytes(hashlib.sha256(f"{seed}:{b}".encode()).digest()[:4], "big"))
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 logits_processor=processors, **kw)
        for r, i in enumerate(idx):
            out[i] = gen[r, width:].tolist()
        bar.update(len(idx) * new_tokens)
    bar.close()
    return out


def cached_pool(key: dict, make, fields: tuple[str, ...] = ()) -> dict:
    """``make()`` once per ``key`` (a JSON-able description: method, ``model`` name, parameters, seed), kept in
    ``$CALIBKIT_CACHE/selfgen/`` by content: the model enters the cache key as its ``models.identity``, never as the
    name. The value gains ``seconds`` (the generation time when it was made); a stored value lacking one of
    ``fields`` is made again."""
    from ..models import identity

    def timed():
        t0 = time.perf_counter()
        pool = make()
        return pool | {"seconds": time.perf_counter() - t0}

    if not key.get("model"):  # a model without a name cannot be identified: generated every time, never cached
        return timed()
    content = {k: v for k, v in key.items() if k != "model"} | {"model": identity(key["model"])}
    return cache.cached(POOL_FOLDER, content, timed, what="self-generation pool cache",
                        prefix=str(key.get("method", "pool")),
                        valid=lambda v: isinstance(v, dict) and all(f in v for f in (*fields, "seconds")))


def sampling_dict(s: Sampling) -> dict:
    return asdict(s)
