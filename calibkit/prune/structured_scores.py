"""Structured importance and selection, as pure functions of tensors (no model, no hooks).

Units. Attention: a *KV group* (one key/value head and the n_rep query heads that read it, with their o_proj
columns): removing a query head alone would leave a KV head shared by a varying number of query heads, which
grouped-query attention cannot express, and removing a KV head alone would orphan its query heads. MLP: an
intermediate *neuron* (a row of gate_proj and up_proj and the column of down_proj that reads it).

Per-weight scores are first-order Taylor terms |w ⊙ ∂f/∂w| (``taylor``): LLM-Pruner's element-wise first-order
importance (f = the calibration loss), NIRVANA's saliency (f = its output objective); a unit's score is the sum over
every weight of the unit in every coupled matrix (LLM-Pruner's default "sum" grouping; NIRVANA's L1 per unit).

Layouts (LLaMA, Qwen2, Mistral): q_proj rows are [n_kv, n_rep, head_dim] (query head h reads KV head h // n_rep),
k_proj and v_proj rows [n_kv, head_dim], o_proj columns as q_proj rows.
"""
from __future__ import annotations

import math

import torch


def taylor(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """|w ⊙ g|, element-wise, in float32 (float64 for float64 inputs)."""
    dtype = torch.promote_types(weight.dtype, torch.float32)
    return (weight.to(dtype) * grad.to(dtype)).abs()


def mlp_unit_scores(s_gate: torch.Tensor, s_up: torch.Tensor, s_down: torch.Tensor) -> torch.Tensor:
    """[intermediate] scores: row sums of gate and up ([I, H]) plus column sums of down ([H, I])."""
    return s_gate.sum(1) + s_up.sum(1) + s_down.sum(0)


def attn_group_scores(s_q: torch.Tensor, s_k: torch.Tensor, s_v: torch.Tensor, s_o: torch.Tensor, n_kv: int,
                      head_dim: int) -> torch.Tensor:
    """[n_kv] scores of the KV groups: q/k/v rows and o columns summed per group (layouts in the module doc)."""
    q = s_q.sum(1).view(n_kv, -1).sum(1)
    k = s_k.sum(1).view(n_kv, head_dim).sum(1)
    v = s_v.sum(1).view(n_kv, head_dim).sum(1)
    o = s_o.sum(0).view(n_kv, -1).sum(1)
    return q + k + v + o


def group_params(hidden: int, head_dim: int, n_rep: int) -> int:
    """Weights of one KV group: q (n_rep heads) and o, k and v (one head each), each head_dim x hidden."""
    return 2 * (n_rep + 1) * head_dim * hidden


def neuron_params(hidden: int) -> int:
    return 3 * hidden


def top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the ``keep`` highest scores, ascending (ties: the lower index first, deterministically)."""
    order = torch.sort(-scores.double(), stable=True).indices  # stable sort of negated scores: ties by index
    return torch.sort(order[:keep]).values


def local_keep(scores: torch.Tensor, fraction: float, unit: str) -> torch.Tensor:
    """Keep the top (1 - fraction) of a layer's units; refuses to remove all of them."""
    n = scores.numel()
    keep = n - round(fraction * n)
    if keep < 1:
        raise ValueError(f"removing {fraction:.0%} of {n} {unit}s would leave none in a layer")
    return top(scores, keep)


def global_keep(scores: list[torch.Tensor], remove: int, unit: str, min_keep: int = 1,
                multiple_of: int = 1) -> list[torch.Tensor]:
    """One threshold across layers: the ``remove`` lowest-scoring units of all layers go, except that each layer
    keeps at least ``min_keep`` and a multiple of ``multiple_of`` (rounded up: the best of the units that would
    have gone stay). Returns the kept indices per layer, ascending."""
    flat = torch.cat([s.double() for s in scores])
    if remove > flat.numel() - min_keep * len(scores):
        raise ValueError(f"removing {remove} of {flat.numel()} {unit}s would leave fewer than {min_keep} in a layer")
    layer_of = torch.cat([torch.full((s.numel(),), i) for i, s in enumerate(scores)])
    order = torch.sort(flat, stable=True).indices
    gone = torch.zeros(flat.numel(), dtype=torch.bool)
    gone[order[:remove]] = True
    out = []
    for i, s in enumerate(scores):
        mine = gone[layer_of == i]
        keep = s.numel() - int(mine.sum())
        keep = max(keep, min_keep)
        keep = min(s.numel(), math.ceil(keep / multiple_of) * multiple_of)
        out.append(top(s, keep))
    return out


def nirvana_budget(n_kv: int, n_rep: int, head_dim: int, intermediate: int, hidden: int, layers: int,
                   sparsity: float, gamma: float) -> tuple[int, int]:
    """(KV groups, neurons) to remove over all layers so that ``sparsity`` of the attention+MLP weights goes and
    the pruned fraction of MLP neurons is ``gamma`` times that of KV groups (NIRVANA's attention/MLP balance)."""
    a, m = group_params(hidden, head_dim, n_rep), neuron_params(hidden)
    total = a * n_kv + m * intermediate
    f_attn = sparsity * total / (a * n_kv + gamma * m * intermediate)
    f_mlp = gamma * f_attn
    if f_mlp > 1 or f_attn > 1:
        raise ValueError(f"sparsity {sparsity} with gamma {gamma} asks for {f_mlp:.0%} of the MLP neurons and "
                         f"{f_attn:.0%} of the KV groups; lower one of them")
    return round(f_attn * n_kv * layers), round(f_mlp * intermediate * layers)
