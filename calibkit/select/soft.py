"""Every pruner's saliency as a differentiable function of the pool weights p (OASIS §4.1), and its soft masks.

Each pruner's calibration statistic is a sum over the calibration samples, so the p-weighted one is
Σ_i p_i stat_i with per-sample statistics collected once from the dense model:

- Wanda: stat_i = Σ_t x_t^2 per input column of every Linear; S = |W| · sqrt(Σ_i p_i stat_i) (per-row groups);
- SparseGPT (beyond the paper): stat_i = X_i^T X_i (per-sample Hessians, their lower triangles in float32: 6.4 GB
  for SmolLM2 x 32 samples; bfloat16 would break their positive definiteness), H(p) = Σ_i p_i stat_i,
  S = w^2 / [chol(H^-1)]_jj^2 (``prune.sparsegpt.obs_saliency``), one group per weight matrix;
- NIRVANA / LLM-Pruner: stat_i = ∂ℓ_i/∂W (ℓ_i the pruner's own objective on sample i: the causal-LM loss for
  LLM-Pruner, NIRVANA's max-logit objective), G(p) = Σ_i p_i ∂ℓ_i/∂W = ∂L_cal/∂W exactly, since the weights do not
  change while p is learnt; S = |W ⊙ G| summed per KV group / MLP neuron (``prune.structured_scores``), with each
  pruner's selection rule (NIRVANA: global thresholds, its gamma budget; LLM-Pruner: per layer, first/last layers
  kept). Storing the per-sample gradients replaces the release's second-order autograd through the calibration
  loss at every step (the same gradient: a test checks it against finite differences) by a weighted sum.

Choices, stated: statistics come from one pass of the *dense* model (the hard pruners see the already-pruned
earlier layers, which change with the mask); SparseGPT's soft saliency is that of its first block (original
weights, no OBS updates inside the soft model) and one threshold per matrix rather than per 128-column block;
the structured soft masks ignore the hard rules' floors (NIRVANA's multiple of 8 neurons, one KV group per layer).
``masks(p, alpha)`` returns {parameter name: multiplicative mask} for ``torch.func.functional_call``.
"""
from __future__ import annotations

import os

import torch
from tqdm.auto import tqdm

from . import softmask as M
from ..errors import CalibkitError
from ..prune import structured_scores as SS
from ..prune.engine import decoder_layers, layer_linears
from ..prune.sparsegpt import obs_column_weights
from ..prune.sparsity import Sparsity
from ..prune.structured import STRUCTURED, StructuredError, llm_pruner_plan, objective, projections
from ..prune.surgery import check_supported, head_dim
from ..prune.wanda import wanda_scores

UNSTRUCTURED = ("wanda", "sparsegpt")
PRUNERS = UNSTRUCTURED + STRUCTURED


class SelectError(CalibkitError, ValueError):
    pass


def check_memory(nbytes: int, what: str) -> None:
    """Refuse statistics that would not fit in the memory available now (Linux; elsewhere unchecked)."""
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if nbytes > 0.8 * avail:
        raise SelectError(f"{what} need {nbytes / 2**30:.1f} GiB, more than 80 % of the {avail / 2**30:.1f} GiB "
                          "available; use a smaller pool or shorter sequences")


class _WeightedSum(torch.autograd.Function):
    """Σ_i p_i stats[i] in p's dtype, one sample at a time, saving only the stored (e.g. bfloat16) statistics for
    the backward pass: autograd's tensordot would keep a float32 copy of every per-sample gradient (13.6 GB for
    SmolLM2's 32 x 106 M)."""

    @staticmethod
    def forward(ctx, p, stats):
        ctx.save_for_backward(p, stats)
        out = torch.zeros(stats.shape[1:], dtype=p.dtype, device=stats.device)
        for i in range(stats.shape[0]):
            out.add_(stats[i].to(p.dtype), alpha=p[i].item())
        return out

    @staticmethod
    def backward(ctx, grad):
        p, stats = ctx.saved_tensors
        g = grad.reshape(-1)
        return torch.stack([torch.dot(stats[i].reshape(-1).to(p.dtype), g) for i in range(stats.shape[0])]), None


def _symmetric(lower: torch.Tensor, n: int) -> torch.Tensor:
    """The symmetric [n, n] matrix whose lower triangle (row-major, ``torch.tril_indices``) is ``lower``."""
    r, c = torch.tril_indices(n, n, device=lower.device)
    low = torch.zeros(n, n, dtype=lower.dtype, device=lower.device).index_put((r, c), lower)
    return low + low.tril(-1).t()


def _weighted(p: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    """Σ_i p_i stats[i], in p's dtype (differentiable in p)."""
    return _WeightedSum.apply(p, stats)


class SoftUnstructured:
    """Wanda or SparseGPT: per-sample input statistics of every Linear of the decoder layers (grouped by input)."""

    def __init__(self, method: str, model, ids: torch.Tensor, sparsity: Sparsity, stat_dtype=torch.float32,
                 batch_size: int = 4, progress: bool = True):
        if sparsity.is_nm:
            raise SelectError(f"OASIS's soft masks take an unstructured sparsity, not {sparsity}")
        self.method, self.fraction = method, sparsity.fraction
        prefix, layers = decoder_layers(model)
        self.linears = {f"{prefix}.{i}.{n}": m for i, layer in enumerate(layers)
                        for n, m in layer_linears(layer).items()}
        n, t = ids.shape
        per_sample = {"wanda": lambda m: m.in_features,
                      "sparsegpt": lambda m: m.in_features * (m.in_features + 1) // 2}[method]
        # upper bound: every Linear its own input (q/k/v and gate/up are shared, so less is stored)
        check_memory(n * sum(per_sample(m) for m in self.linears.values()) * torch.empty(
            0, dtype=stat_dtype).element_size(), f"{method} per-sample statistics of {n} x {t} tokens")
        self.lead: dict[str, str] = {}  # Linear -> the first Linear that read the same input
        self.stats: dict[str, torch.Tensor] = {}
        chunks = []
        seen: dict[int, tuple] = {}

        def hook(name):
            def fn(_mod, args):
                x = args[0]
                lead = seen.setdefault(id(x), (name, x))[0]  # the tensor is kept so that ids stay unique
                x = x.detach()
                self.lead.setdefault(name, lead)
                if lead == name:
                    x = x.to(torch.promote_types(x.dtype, torch.float32))
                    if method == "wanda":
                        stat = x.square().sum(1)  # [B, in]
                    else:  # the lower triangle of each sample's X_i^T X_i, [B, in (in + 1) / 2]
                        r, c = torch.tril_indices(x.shape[-1], x.shape[-1], device=x.device)
                        stat = (x.transpose(1, 2) @ x)[:, r, c]
                    chunks[-1][name] = stat.to(stat_dtype)
            return fn

        handles = [m.register_forward_pre_hook(hook(n)) for n, m in self.linears.items()]
        try:
            with torch.no_grad():
                for batch in tqdm(ids.split(batch_size), desc=f"{method} statistics", unit="batch",
                                  disable=not progress):
                    chunks.append({})
                    model(input_ids=batch, use_cache=False)
                    seen.clear()
        finally:
            for h in handles:
                h.remove()
        for name in dict.fromkeys(self.lead.values()):  # one input at a time: at most one extra copy in memory
            self.stats[name] = torch.cat([c.pop(name) for c in chunks])
        missing = [n for n in self.linears if n not in self.lead]
        if missing:
            raise SelectError(f"Linear modules never called in the forward pass: {', '.join(missing)}")

    def scores(self, p: torch.Tensor) -> dict[str, torch.Tensor]:
        out, combined = {}, {}
        for name, lin in self.linears.items():
            lead = self.lead[name]
            if lead not in combined:  # Wanda: Σ_i p_i ||X_i||^2 per column; SparseGPT: H(p) = Σ_i p_i X_i^T X_i
                c = _weighted(p, self.stats[lead])  # SparseGPT: the column weights of H(p), once per input
                combined[lead] = c if self.method == "wanda" else obs_column_weights(_symmetric(c, lin.in_features))
            c = combined[lead]
            if self.method == "wanda":
                out[name] = wanda_scores(lin.weight, c)
            else:
                out[name] = lin.weight.to(c.dtype).square() * c.reshape(1, -1)  # = obs_saliency(W, H(p))
        return out

    def masks(self, p: torch.Tensor, alpha: float) -> dict[str, torch.Tensor]:
        out = {}
        for name, s in self.scores(p).items():
            if self.method == "wanda":  # Wanda's comparison group is the output row
                m = M.soft_keep_lowest(s, int(self.fraction * s.shape[1]), alpha, dim=-1)
            else:
                m = M.soft_keep_lowest(s, int(self.fraction * s.numel()), alpha, dim=None)
            out[f"{name}.weight"] = m
        return out


class SoftStructured:
    """NIRVANA or LLM-Pruner: per-sample gradients of the pruner's objective for every projection weight."""

    def __init__(self, method: str, model, ids: torch.Tensor, sparsity: float, gamma: float = 3.0,
                 stat_dtype=torch.bfloat16, progress: bool = True):
        check_supported(model)
        if not 0 < sparsity < 1:
            raise SelectError(f"structured sparsity is a fraction of the decoder weights in (0, 1), got {sparsity}")
        self.method = method
        cfg = model.config
        prefix, layers = decoder_layers(model)
        self.n_kv, self.d = cfg.num_key_value_heads, head_dim(cfg)
        self.n_rep, self.inter = cfg.num_attention_heads // self.n_kv, cfg.intermediate_size
        self.layers = [{k: (f"{prefix}.{i}.{part}.{k}", getattr(getattr(layer, part), k))
                        for part, names in (("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")),
                                            ("mlp", ("gate_proj", "up_proj", "down_proj"))) for k in names}
                       for i, layer in enumerate(layers)]
        n_layers = len(layers)
        if method == "nirvana":
            try:
                self.remove = SS.nirvana_budget(self.n_kv, self.n_rep, self.d, self.inter, cfg.hidden_size, n_layers,
                                                sparsity, gamma)
            except ValueError as e:
                raise StructuredError(f"nirvana: {e}") from None
            self.pruned = list(range(n_layers))
        else:
            self.pruned, self.fraction = llm_pruner_plan(layers, self.n_kv, self.inter, sparsity)
        weights = [lin.weight for layer in layers for lin in projections(layer)]
        n = ids.shape[0]
        check_memory(n * sum(w.numel() for w in weights) * torch.empty(0, dtype=stat_dtype).element_size(),
                     f"per-sample gradients of {n} samples")
        self.grads = {id(w): torch.empty((n, *w.shape), dtype=stat_dtype) for w in weights}
        saved = {id(q): q.requires_grad for q in model.parameters()}
        for q in model.parameters():
            q.requires_grad_(False)
        try:
            for w in weights:
                w.requires_grad_(True)
            for i in tqdm(range(n), desc=f"{method} per-sample gradients", unit="sample", disable=not progress):
                with torch.enable_grad():
                    loss = objective(model, ids[i:i + 1], method)
                    if not torch.isfinite(loss):
                        raise SelectError(f"the {method} objective is not finite on pool sample {i}")
                    gs = torch.autograd.grad(loss, weights)
                for w, g in zip(weights, gs):
                    self.grads[id(w)][i] = g.to(stat_dtype)
        finally:
            for q in model.parameters():
                q.requires_grad_(saved[id(q)])

    def unit_scores(self, p: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per layer: [n_kv] KV-group scores and [intermediate] neuron scores under the weights p."""
        attn, mlp = [], []
        for lay in self.layers:
            s = {k: SS.taylor(lin.weight, _weighted(p, self.grads[id(lin.weight)])) for k, (_, lin) in lay.items()}
            attn.append(SS.attn_group_scores(s["q_proj"], s["k_proj"], s["v_proj"], s["o_proj"], self.n_kv, self.d))
            mlp.append(SS.mlp_unit_scores(s["gate_proj"], s["up_proj"], s["down_proj"]))
        return attn, mlp

    def unit_masks(self, p: torch.Tensor, alpha: float) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        attn, mlp = self.unit_scores(p)
        if self.method == "nirvana":
            out = []
            for scores, k in zip((attn, mlp), self.remove):
                flat = M.soft_keep_lowest(torch.cat(scores), k, alpha, dim=None)
                out.append(list(flat.split([s.numel() for s in scores])))
            return out[0], out[1]
        keep_a, keep_m = [], []
        for i, (a, m) in enumerate(zip(attn, mlp)):
            if i in self.pruned:
                keep_a.append(M.soft_keep_lowest(a, round(self.fraction * a.numel()), alpha, dim=None))
                keep_m.append(M.soft_keep_lowest(m, round(self.fraction * m.numel()), alpha, dim=None))
            else:
                keep_a.append(torch.ones_like(a))
                keep_m.append(torch.ones_like(m))
        return keep_a, keep_m

    def masks(self, p: torch.Tensor, alpha: float) -> dict[str, torch.Tensor]:
        out = {}
        attn, mlp = self.unit_masks(p, alpha)
        for lay, a, m in zip(self.layers, attn, mlp):
            q_rows = a.repeat_interleave(self.n_rep * self.d)
            kv_rows = a.repeat_interleave(self.d)
            for k, rows in (("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows), ("gate_proj", m),
                            ("up_proj", m)):
                name, lin = lay[k]
                out[f"{name}.weight"] = rows.unsqueeze(1)
                if lin.bias is not None:
                    out[f"{name}.bias"] = rows
            out[f"{lay['o_proj'][0]}.weight"] = q_rows.unsqueeze(0)
            out[f"{lay['down_proj'][0]}.weight"] = m.unsqueeze(0)
        return out


def soft_pruner(method: str, model, ids: torch.Tensor, sparsity, *, gamma: float = 3.0, stat_dtype=None,
                progress: bool = True):
    """The soft (differentiable) version of ``method`` over the pool ``ids`` ([N, T])."""
    if method not in PRUNERS:
        raise SelectError(f"no differentiable saliency for pruner {method!r}; OASIS supports {', '.join(PRUNERS)}")
    if method in STRUCTURED:
        return SoftStructured(method, model, ids, float(sparsity), gamma, stat_dtype or torch.bfloat16, progress)
    return SoftUnstructured(method, model, ids, Sparsity.parse(sparsity), stat_dtype or torch.float32,
                            progress=progress)
