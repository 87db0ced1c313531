"""Structural surgery on decoder layers: keep chosen KV groups and MLP neurons, physically (LLaMA, Qwen2, Mistral).

Removing KV group k removes rows [k*d, (k+1)*d) of k_proj and v_proj, rows [k*n_rep*d, (k+1)*n_rep*d) of q_proj and
the same columns of o_proj (with the biases of those rows, Qwen2's q/k/v biases); removing neuron i removes row i of
gate_proj and up_proj and column i of down_proj. Embeddings, norms, rotary embeddings and the LM head are untouched
(the hidden size stays). The config's ``head_dim`` is set explicitly, since a narrower layer must not recompute it
from hidden_size / num_attention_heads.

Transformers builds every layer from one set of widths, and its LLaMA config also insists that the hidden size be a
multiple of the number of attention heads, so a checkpoint whose layers kept different widths (or, e.g., 24 of
LLaMA-3-8B's 32 heads) cannot be loaded by ``from_pretrained`` as it is. ``make_loadable`` widens every layer to the
widest one — and the KV groups to the nearest count the config accepts — with zero units: a zero KV group (zero
q/k/v rows and biases, zero o columns) and a zero neuron (zero gate/up rows, zero down column) add exactly nothing
to the output, so the padded model computes what the pruned one does and loads anywhere, but it is only as small
as its widest layer.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import CalibkitError

SUPPORTED = ("llama", "qwen2", "mistral")


class SurgeryError(CalibkitError, ValueError):
    pass


def check_supported(model) -> None:
    cfg = model.config
    if cfg.model_type not in SUPPORTED:
        raise SurgeryError(f"structured pruning supports {', '.join(SUPPORTED)} decoders, not {cfg.model_type!r}")
    if cfg.num_attention_heads % cfg.num_key_value_heads:
        raise SurgeryError(f"{cfg.num_attention_heads} attention heads are not divisible into "
                           f"{cfg.num_key_value_heads} KV groups")
    for name, p in model.named_parameters():
        if name.endswith(("proj.weight",)) and not p.is_floating_point():
            raise SurgeryError(f"{name} is {p.dtype}: structured pruning needs gradients of floating-point weights "
                               "(quantised models are not supported)")


def head_dim(cfg) -> int:
    return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


def _rows(lin: nn.Linear, idx: torch.Tensor) -> None:
    lin.weight = nn.Parameter(lin.weight.data.index_select(0, idx).clone(), requires_grad=lin.weight.requires_grad)
    if lin.bias is not None:
        lin.bias = nn.Parameter(lin.bias.data.index_select(0, idx).clone(), requires_grad=lin.bias.requires_grad)
    lin.out_features = idx.numel()


def _cols(lin: nn.Linear, idx: torch.Tensor) -> None:
    lin.weight = nn.Parameter(lin.weight.data.index_select(1, idx).clone(), requires_grad=lin.weight.requires_grad)
    lin.in_features = idx.numel()


def head_rows(groups: torch.Tensor, width: int) -> torch.Tensor:
    """Row indices of the chosen groups when each group is ``width`` consecutive rows."""
    return (groups[:, None] * width + torch.arange(width)[None, :]).reshape(-1)


def keep_units(layer: nn.Module, cfg, groups: torch.Tensor | None = None, neurons: torch.Tensor | None = None) -> None:
    """Keep KV groups ``groups`` (indices into the layer's current groups) and MLP neurons ``neurons``, in place."""
    d, n_rep = head_dim(cfg), cfg.num_attention_heads // cfg.num_key_value_heads
    if groups is not None:
        at = layer.self_attn
        dev = at.q_proj.weight.device
        groups = groups.to(dev)
        kv, q = head_rows(groups, d), head_rows(groups, n_rep * d)
        _rows(at.q_proj, q)
        _rows(at.k_proj, kv)
        _rows(at.v_proj, kv)
        _cols(at.o_proj, q)
        for attr, value in (("num_heads", groups.numel() * n_rep), ("num_key_value_heads", groups.numel())):
            if hasattr(at, attr):  # older transformers keep these on the module
                setattr(at, attr, value)
    if neurons is not None:
        mlp = layer.mlp
        neurons = neurons.to(mlp.gate_proj.weight.device)
        _rows(mlp.gate_proj, neurons)
        _rows(mlp.up_proj, neurons)
        _cols(mlp.down_proj, neurons)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = neurons.numel()


def widths(layers) -> list[dict]:
    """Per layer: KV groups, query heads and MLP neurons it has now."""
    out = []
    for layer in layers:
        at, mlp = layer.self_attn, layer.mlp
        d = at.head_dim if hasattr(at, "head_dim") else None
        kv = at.k_proj.out_features // d
        out.append({"kv_groups": kv, "q_heads": at.q_proj.out_features // d,
                    "neurons": mlp.gate_proj.out_features})
    return out


def set_config(cfg, n_rep: int, groups: int, neurons: int, d: int) -> None:
    cfg.num_key_value_heads = groups
    cfg.num_attention_heads = groups * n_rep
    cfg.intermediate_size = neurons
    cfg.head_dim = d


def make_loadable(layers, cfg) -> dict:
    """Widen every layer to the widest one's KV groups (raised to the nearest count whose heads divide the hidden
    size) and neurons with zero units (exact; see the module doc) and set the config to those widths. Returns the
    widths and what was added per layer (nothing when the layers are uniform and the head count valid)."""
    d = head_dim(cfg)
    w = widths(layers)
    n_rep = w[0]["q_heads"] // w[0]["kv_groups"]
    gmax, nmax = max(x["kv_groups"] for x in w), max(x["neurons"] for x in w)
    while cfg.hidden_size % (gmax * n_rep):
        gmax += 1
    added = []
    for layer, x in zip(layers, w):
        at, mlp = layer.self_attn, layer.mlp
        dg, dn = gmax - x["kv_groups"], nmax - x["neurons"]
        for lin, extra in ((at.q_proj, dg * n_rep * d), (at.k_proj, dg * d), (at.v_proj, dg * d),
                           (mlp.gate_proj, dn), (mlp.up_proj, dn)):
            if extra:
                _pad_rows(lin, extra)
        if dg:
            _pad_cols(at.o_proj, dg * n_rep * d)
        if dn:
            _pad_cols(mlp.down_proj, dn)
        added.append({"kv_groups": dg, "neurons": dn})
    set_config(cfg, n_rep, gmax, nmax, d)
    return {"kv_groups": gmax, "neurons": nmax, "added": added}


def _pad_rows(lin: nn.Linear, extra: int) -> None:
    w = lin.weight.data
    lin.weight = nn.Parameter(torch.cat([w, w.new_zeros(extra, w.shape[1])]), requires_grad=False)
    if lin.bias is not None:
        lin.bias = nn.Parameter(torch.cat([lin.bias.data, lin.bias.data.new_zeros(extra)]), requires_grad=False)
    lin.out_features += extra


def _pad_cols(lin: nn.Linear, extra: int) -> None:
    w = lin.weight.data
    lin.weight = nn.Parameter(torch.cat([w, w.new_zeros(w.shape[0], extra)], 1), requires_grad=False)
    lin.in_features += extra
