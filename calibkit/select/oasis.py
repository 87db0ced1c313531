"""OASIS (§4): learn weights over a pool of candidate calibration samples through the pruner's soft mask.

p = softmax(u / temperature) over the pool; the pruner's saliency is a differentiable function of p
(``soft.py``); the soft mask σ(α (S − t)/s) (``softmask.py``) multiplies the weights; the task loss is the causal-LM
loss of the soft-pruned model on task sequences whose input embeddings carry uniform noise in [−noise, noise]; AdamW
on u with a linear warm-up and cosine decay, the gradient of u clipped to norm 1. The selection is the top-n of p.

Defaults (``OasisParams``), from the paper's public release where it sets them: lr 1e-2, AdamW betas (0.9, 0.998),
eps 1e-8, weight decay 1e-3, temperature 0.8, noise 0.1, warm-up 10 % of the steps (from 1e-3 × lr), cosine to 0,
clip 1.0, u initialised uniform. calibkit's choices where the paper and release leave it open or do not fit this
scale: α from 10 to 1000 in units of the scores' spread (the release: 50 → 1e4 on raw saliencies); the task loss is
the perturbed loss only (the paper's L_pert; the release also back-propagates the clean loss); task sequences are
drawn from the pool's source, disjoint from the pool (the paper: "drawn from the calibration dataset"; the release:
Alpaca); 48 steps of 4 task sequences (the release: 4096 Alpaca samples in batches of 8 per epoch on a GPU).
"""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch.func import functional_call
from tqdm.auto import tqdm

from . import softmask as M
from .soft import SelectError, soft_pruner
from ..selfgen.params import Params

STAT_DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class OasisParams(Params):
    """OASIS's optimisation settings (module doc); ``stat_dtype`` stores the per-sample statistics ("auto":
    bfloat16 for the structured pruners' per-sample gradients, float32 otherwise)."""

    method: ClassVar[str] = "oasis"
    prefix: ClassVar[str] = "select:"
    steps: int = 48
    batch_size: int = 4
    task_n: int = 64
    lr: float = 1e-2
    weight_decay: float = 1e-3
    temperature: float = 0.8
    noise: float = 0.1
    alpha_start: float = 10.0
    alpha_end: float = 1000.0
    warmup: float = 0.1
    clip: float = 1.0
    gamma: float = 3.0
    stat_dtype: str = "auto"

    def __post_init__(self):
        self._integer("steps", 1)
        self._integer("batch_size", 1)
        self._integer("task_n", 1)
        self._real("lr", 0, low_open=True)
        self._real("weight_decay", 0)
        self._real("temperature", 0, low_open=True)
        self._real("noise", 0)
        self._real("alpha_start", 0, low_open=True)
        self._real("alpha_end", 0, low_open=True)
        self._real("warmup", 0, 1, high_open=True)
        self._real("clip", 0, low_open=True)
        self._real("gamma", 0, low_open=True)
        self._choice("stat_dtype", ("auto", *STAT_DTYPES))


@dataclass
class OasisResult:
    weights: list[float]  # p over the pool, final
    ranking: list[int]  # pool indices by descending weight (ties: the lower index first)
    trajectory: list[dict] = field(default_factory=list)  # per step: loss, alpha, lr, p
    timing: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)


def _schedule(opt, steps: int, warmup: float):
    warm = int(steps * warmup)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps - warm), eta_min=0.0)
    if warm == 0:
        return cos
    lin = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1e-3, end_factor=1.0, total_iters=warm)
    return torch.optim.lr_scheduler.SequentialLR(opt, [lin, cos], milestones=[warm])


def ranking(p: torch.Tensor) -> list[int]:
    return torch.sort(-p.detach().double(), stable=True).indices.tolist()


def task_loss(model, soft, p: torch.Tensor, alpha: float, ids: torch.Tensor, noise: torch.Tensor | None):
    """The causal-LM loss on ``ids`` of the model with the soft masks of ``soft`` at weights ``p``; ``noise`` is
    added to the input embeddings."""
    params = dict(model.named_parameters())
    masked = {name: params[name] * m for name, m in soft.masks(p, alpha).items()}
    emb = model.get_input_embeddings()(ids).detach()
    if noise is not None:
        emb = emb + noise
    logits = functional_call(model, masked, args=(), kwargs={"inputs_embeds": emb, "use_cache": False}).logits
    logits = logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32))  # float64 stays (tests)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def oasis(model, pool_ids: torch.Tensor, task_ids: torch.Tensor, pruner: str, sparsity, seed: int = 0,
          params: OasisParams | dict | None = None, progress: bool = True) -> OasisResult:
    """Learn the weights of the pool samples ``pool_ids`` ([N, T]) for ``pruner`` at ``sparsity``."""
    P = params if isinstance(params, OasisParams) else OasisParams.from_dict(params)
    if pool_ids.shape[0] < 2:
        raise SelectError(f"OASIS needs a pool of at least 2 samples, got {pool_ids.shape[0]}")
    t0 = time.perf_counter()
    saved = {id(q): q.requires_grad for q in model.parameters()}
    was_training = model.training
    model.eval()
    stat_dtype = None if P.stat_dtype == "auto" else getattr(torch, P.stat_dtype)
    try:
        soft = soft_pruner(pruner, model, pool_ids, sparsity, gamma=P.gamma, stat_dtype=stat_dtype,
                           progress=progress)
        t_stats = time.perf_counter() - t0
        for q in model.parameters():
            q.requires_grad_(False)
        gen = torch.Generator().manual_seed(int(seed))
        order = np.random.default_rng([int(seed), 0x6F61]).permutation(task_ids.shape[0])
        u = torch.zeros(pool_ids.shape[0], requires_grad=True)  # uniform p, as the release's 1/N
        opt = torch.optim.AdamW([u], lr=P.lr, betas=(0.9, 0.998), eps=1e-8, weight_decay=P.weight_decay)
        sched = _schedule(opt, P.steps, P.warmup)
        trajectory = []
        emb_dim = model.get_input_embeddings().embedding_dim
        bar = tqdm(range(P.steps), desc=f"oasis ({pruner})", unit="step", disable=not progress)
        for step in bar:
            take = [order[(step * P.batch_size + j) % len(order)] for j in range(P.batch_size)]
            ids = task_ids[take]
            alpha = M.alpha_at(step, P.steps, (P.alpha_start, P.alpha_end))
            noise = (torch.rand((*ids.shape, emb_dim), generator=gen) * 2 - 1) * P.noise if P.noise else None
            with torch.enable_grad():  # whatever the caller's grad mode (a notebook's or a test's global switch)
                p = torch.softmax(u / P.temperature, 0)
                loss = task_loss(model, soft, p, alpha, ids, noise)
            if not torch.isfinite(loss):
                raise SelectError(f"OASIS step {step}: the task loss is {loss.item()} on task sequences "
                                  f"{sorted(int(i) for i in take)}; the largest pool weights are on samples "
                                  f"{ranking(p)[:5]}. Lower lr or alpha_end, or check the pool")
            opt.zero_grad()
            with torch.enable_grad():
                loss.backward()
            if not torch.isfinite(u.grad).all():
                raise SelectError(f"OASIS step {step}: non-finite gradient of the pool weights (samples "
                                  f"{torch.nonzero(~torch.isfinite(u.grad)).flatten().tolist()})")
            torch.nn.utils.clip_grad_norm_([u], P.clip)
            trajectory.append({"step": step, "loss": loss.item(), "alpha": alpha, "lr": sched.get_last_lr()[0],
                               "p": p.detach().tolist()})
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        p = torch.softmax(u.detach() / P.temperature, 0)
    finally:
        for q in model.parameters():
            q.requires_grad_(saved[id(q)])
        model.train(was_training)
    total = time.perf_counter() - t0
    steps_time = total - t_stats
    return OasisResult(p.tolist(), ranking(p), trajectory,
                       {"statistics": t_stats, "steps": steps_time, "per_step": steps_time / P.steps, "total": total},
                       {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20})

