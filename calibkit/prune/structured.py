"""Structured pruning of decoder models: whole KV groups (with their query heads) and MLP neurons go, so the model
gets physically smaller and faster. Two importance criteria, both from one gradient pass over the calibration set:

- ``llm-pruner`` (Ma et al., 2023; read from horseee/LLM-Pruner): element-wise first-order Taylor importance
  sum |w ⊙ ∂L/∂w| of each coupled unit, L the causal-LM cross-entropy of the calibration set; *local*: every pruned
  layer loses the same fraction of its KV groups and of its neurons; the first 4/32 and last 2/32 of the layers are
  kept whole (LLM-Pruner's 4..30 of 32), so the pruned layers lose more to reach the target.
- ``nirvana`` (Ai et al., 2025; read from iDEA-iSAIL-Lab-UIUC/NIRVANA): saliency |w ⊙ ∂f/∂w| with f the mean over
  batch and vocabulary of the largest logit over positions (its output objective, not the loss), summed per unit;
  *global*: one threshold across layers for KV groups and one for neurons, their budgets set by ``gamma`` (the
  pruned fraction of neurons is gamma times that of KV groups; 3.0, the paper's setting for 3B LLaMA), every layer
  keeping at least one KV group and a multiple of 8 neurons (rounded up). Layers end up with different widths.

Choices the papers leave open, stated: LLM-Pruner removes whole KV groups under grouped-query attention (the
only unit that keeps the GQA layout uniform), rounds each layer's count to the nearest unit, and uses no second-order
term (its code's default); both criteria accumulate the gradient over the whole calibration set (mean over
batches of the objective) in float32; the target ``sparsity`` is the fraction of the attention and MLP projection
weights of all decoder layers removed (embeddings, norms and the LM head are not counted and never pruned).

The math (scores and selection) is ``structured_scores``; the surgery ``surgery``; this module runs the passes.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import structured_scores as S
from .engine import decoder_layers
from .surgery import check_supported, head_dim, keep_units, widths
from ..errors import CalibkitError
from ..settings import atomic_write_bytes

STRUCTURED = ("llm-pruner", "nirvana")


class StructuredError(CalibkitError, ValueError):
    pass


@dataclass
class StructuredReport:
    method: str
    sparsity: float
    params_before: int
    params_after: int
    decoder_before: int
    decoder_after: int
    widths: list[dict]
    uniform: bool
    timing: dict
    options: dict = field(default_factory=dict)

    @property
    def reduction(self) -> float:
        """Fraction of the decoder layers' projection weights removed."""
        return 1 - self.decoder_after / self.decoder_before

    def save(self, path, extra: dict | None = None) -> Path:
        path = Path(path)
        atomic_write_bytes(path, (json.dumps(self.to_dict() | (extra or {}), indent=2) + "\n").encode())
        return path

    def summary(self) -> str:
        return (f"{self.method} {self.sparsity}: {self.reduction:.1%} of the decoder projection weights removed "
                f"({self.params_before:,} -> {self.params_after:,} parameters); widths "
                f"{'uniform' if self.uniform else 'per layer'}; {self.timing['total']:.1f} s")

    def to_dict(self) -> dict:
        return {"method": self.method, "kind": "structured", "sparsity": self.sparsity,
                "params": {"before": self.params_before, "after": self.params_after},
                "decoder_params": {"before": self.decoder_before, "after": self.decoder_after,
                                   "reduction": self.reduction},
                "widths": self.widths, "uniform": self.uniform, "timing": self.timing, "options": self.options}


def projections(layer) -> list:
    at, mlp = layer.self_attn, layer.mlp
    return [at.q_proj, at.k_proj, at.v_proj, at.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj]


def decoder_params(layers) -> int:
    return sum(lin.weight.numel() for layer in layers for lin in projections(layer))


def llm_pruner_plan(layers, n_kv: int, inter: int, sparsity: float) -> tuple[list[int], float]:
    """LLM-Pruner's pruned layers (all but the first 4/32 and last 2/32) and the fraction of each one's KV groups and
    neurons that goes so that ``sparsity`` of all decoder projection weights does; refuses a layer left empty."""
    n_layers = len(layers)
    skip_first, skip_last = round(n_layers * 4 / 32), round(n_layers * 2 / 32)
    pruned = list(range(skip_first, n_layers - skip_last))
    share = decoder_params(layers) / decoder_params([layers[i] for i in pruned]) if pruned else float("inf")
    fraction = sparsity * share
    for count, unit in ((n_kv, "KV group"), (inter, "MLP neuron")):
        if not pruned or count - round(fraction * count) < 1:
            raise StructuredError(f"llm-pruner: sparsity {sparsity} means removing {fraction:.0%} of each of "
                                  f"{len(pruned)} pruned layers' {unit}s, which would leave none")
    return pruned, fraction


def objective(model, ids: torch.Tensor, method: str) -> torch.Tensor:
    if method == "llm-pruner":
        return model(input_ids=ids, labels=ids, use_cache=False).loss
    logits = model(input_ids=ids, use_cache=False).logits
    return logits.float().max(dim=1).values.mean()


def gradients(model, ids: torch.Tensor, method: str, batch_size: int = 4, progress: bool = True) -> dict:
    """float32 gradients of the method's objective (mean over batches) for every projection weight."""
    _, layers = decoder_layers(model)
    weights = [lin.weight for layer in layers for lin in projections(layer)]
    saved = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for w in weights:
        w.requires_grad_(True)
        w.grad = None
    grads = {id(w): torch.zeros(w.shape, dtype=torch.float32, device=w.device) for w in weights}
    batches = list(ids.split(batch_size))
    try:
        for batch in tqdm(batches, desc="gradients", unit="batch", disable=not progress):
            with torch.enable_grad():  # whatever the caller's grad mode (no_grad, a test's global switch)
                loss = objective(model, batch.to(weights[0].device), method) / len(batches)
                loss.backward()
            for w in weights:
                grads[id(w)] += w.grad.float()
                w.grad = None
            if not torch.isfinite(loss):
                raise StructuredError(f"the {method} objective is not finite on the calibration set")
    finally:
        for p in model.parameters():
            p.requires_grad_(saved[id(p)])
    return grads


def prune_structured(model, calibration, method: str = "nirvana", sparsity: float = 0.2, *, gamma: float = 3.0,
                     batch_size: int = 4, progress: bool = True) -> StructuredReport:
    """Remove KV groups and MLP neurons of ``model`` in place (see the module doc); returns the report."""
    if method not in STRUCTURED:
        raise StructuredError(f"unknown structured method {method!r}; known: {', '.join(STRUCTURED)}")
    if not 0 < float(sparsity) < 1:
        raise StructuredError(f"structured sparsity is a fraction of the decoder weights in (0, 1), got {sparsity}")
    sparsity = float(sparsity)
    check_supported(model)
    ids = calibration.input_ids if hasattr(calibration, "input_ids") else calibration
    if ids is None or ids.ndim != 2 or ids.shape[0] < 1 or ids.shape[1] < 2:
        raise StructuredError("structured pruning needs a calibration set of at least one sequence of >= 2 tokens "
                              f"(the gradient of its objective), got {None if ids is None else tuple(ids.shape)}")
    if ids.max() >= model.config.vocab_size or ids.min() < 0:
        raise StructuredError(f"calibration token ids outside the model's vocabulary ({model.config.vocab_size})")
    cfg = model.config
    _, layers = decoder_layers(model)
    n_layers, n_kv = len(layers), cfg.num_key_value_heads
    n_rep, d, inter, hidden = cfg.num_attention_heads // n_kv, head_dim(cfg), cfg.intermediate_size, cfg.hidden_size
    before, dec_before = sum(p.numel() for p in model.parameters()), decoder_params(layers)
    t0 = time.perf_counter()

    # selection first needs the scores, the scores the gradients; refuse impossible targets before any pass
    if method == "llm-pruner":
        pruned, fraction = llm_pruner_plan(layers, n_kv, inter, sparsity)
        skip_first, skip_last = pruned[0], n_layers - 1 - pruned[-1]
    else:
        try:
            remove_g, remove_n = S.nirvana_budget(n_kv, n_rep, d, inter, hidden, n_layers, sparsity, gamma)
        except ValueError as e:
            raise StructuredError(f"nirvana: {e}") from None
        if remove_g > n_layers * (n_kv - 1):
            raise StructuredError(f"nirvana: removing {remove_g} of {n_layers * n_kv} KV groups would leave a layer "
                                  "without attention; lower the sparsity or raise gamma")
        if remove_n > n_layers * (inter - 8):
            raise StructuredError(f"nirvana: removing {remove_n} of {n_layers * inter} MLP neurons would leave a "
                                  "layer with fewer than 8; lower the sparsity or gamma")

    was_training = model.training
    model.eval()
    grads = gradients(model, ids, method, batch_size, progress)
    t_grad = time.perf_counter() - t0
    attn, mlp = [], []
    for layer in layers:
        at, m = layer.self_attn, layer.mlp
        s = {lin: S.taylor(lin.weight.data, grads[id(lin.weight)]) for lin in projections(layer)}
        attn.append(S.attn_group_scores(s[at.q_proj], s[at.k_proj], s[at.v_proj], s[at.o_proj], n_kv, d))
        mlp.append(S.mlp_unit_scores(s[m.gate_proj], s[m.up_proj], s[m.down_proj]))
    del grads
    try:
        if method == "llm-pruner":
            keep_g = [S.local_keep(attn[i], fraction, "KV group") if i in pruned else torch.arange(n_kv)
                      for i in range(n_layers)]
            keep_n = [S.local_keep(mlp[i], fraction, "MLP neuron") if i in pruned else torch.arange(inter)
                      for i in range(n_layers)]
        else:
            keep_g = S.global_keep(attn, remove_g, "KV group", min_keep=1)
            keep_n = S.global_keep(mlp, remove_n, "MLP neuron", min_keep=8, multiple_of=8)
    except ValueError as e:  # the checks above should make this unreachable; never a half-pruned model
        model.train(was_training)
        raise StructuredError(f"{method}: {e}") from None
    if method == "llm-pruner":
        options = {"skip_first": skip_first, "skip_last": skip_last, "layer_fraction": fraction,
                   "objective": "causal-LM cross-entropy", "importance": "sum |w * dL/dw| per unit"}
    else:
        options = {"gamma": gamma, "objective": "mean over batch and vocabulary of the max logit over positions",
                   "importance": "sum |w * df/dw| per unit", "remove": {"kv_groups": remove_g, "neurons": remove_n}}
    t1 = time.perf_counter()
    for layer, g, n in zip(layers, keep_g, keep_n):
        keep_units(layer, cfg, g, n)
    w = widths(layers)
    uniform = len({(x["kv_groups"], x["neurons"]) for x in w}) == 1
    cfg.head_dim = d  # the modules carry their widths; the config's are set when saving (surgery.make_loadable)
    model.train(was_training)
    return StructuredReport(method, sparsity, before, sum(p.numel() for p in model.parameters()), dec_before,
                            decoder_params(layers), w, uniform,
                            {"gradients": t_grad, "select": t1 - t0 - t_grad, "surgery": time.perf_counter() - t1,
                             "total": time.perf_counter() - t0}, options)
