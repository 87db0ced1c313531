"""Layer-sequential pruning of a decoder model (the protocol of the SparseGPT and Wanda papers).

1. Run the calibration tokens up to the first decoder layer once and keep its inputs (and the keyword arguments the
   model passes to every layer: rotary embeddings, masks).
2. For each layer: move it to the device; run it with hooks on its Linear modules to collect statistics (X^T X for
   SparseGPT, sum of x^2 per input for Wanda); Linears that read the same tensor (q/k/v, gate/up) are found from
   the first batch and share one statistic; prune every Linear with the pure function of its method; run the
   pruned layer again to produce the next layer's inputs; move it back.
Embeddings and lm_head are never touched. The model stays where it is (CPU); only the current layer, the captured
activations and the small modules before layer 0 visit the device.
"""
from __future__ import annotations

import math
import time
import warnings
from collections import OrderedDict
from contextlib import contextmanager

import torch
from torch import nn
from tqdm.auto import tqdm

from .magnitude import magnitude_prune
from .report import ModuleRecord, PruneReport
from .sparsegpt import sparsegpt_prune_many
from .sparsity import Sparsity
from .wanda import wanda_prune
from ..errors import CalibkitError, ConfigError

METHODS = ("magnitude", "wanda", "sparsegpt")


class PruneError(CalibkitError, RuntimeError):
    pass


class _Stop(Exception):
    """Raised by a hook to end a forward pass early once nothing after it is needed."""


# --- model structure ---------------------------------------------------------------------------------------------

def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The model's stack of decoder layers: the longest ``nn.ModuleList`` whose blocks hold ``nn.Linear`` modules
    (``model.layers`` in LLaMA/Qwen2/Mistral, ``model.decoder.layers`` in OPT)."""
    best = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and all(
                any(isinstance(m, nn.Linear) for m in block.modules()) for block in mod):
            if best is None or len(mod) > len(best[1]):
                best = (name, mod)
    if best is None:
        kinds = sorted({type(m).__name__ for m in model.modules() if "Conv1D" in type(m).__name__})
        hint = f" (it uses {', '.join(kinds)} instead of nn.Linear)" if kinds else ""
        raise PruneError(f"{type(model).__name__}: no stack of decoder layers with nn.Linear modules found{hint}; "
                         "supported: LLaMA-, Qwen2-, Mistral- and OPT-style models")
    return best


def layer_linears(layer: nn.Module) -> "OrderedDict[str, nn.Linear]":
    return OrderedDict((n, m) for n, m in layer.named_modules() if isinstance(m, nn.Linear))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _hooks(handles: list):
    try:
        yield handles
    finally:
        for h in handles:
            h.remove()


def _first_tensor(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def check_finite(weight: torch.Tensor, where: str, when: str) -> None:
    """Stop on NaN/inf weights: a pruner must never write (or start from) a damaged matrix."""
    bad = ~torch.isfinite(weight)
    if bad.any():
        raise PruneError(f"{where}: {int(bad.sum())} non-finite (NaN/inf) weight(s) {when}")


# --- the engine --------------------------------------------------------------------------------------------------

def accumulate_lower(H: torch.Tensor, x: torch.Tensor, blocks: int = 4) -> None:
    """H += x^T x on the block lower triangle only (column blocks), ~5/8 of the full product's work; the upper
    blocks of H are left stale. The symmetric matrix is ``H.tril() + H.tril(-1).t()``."""
    cols = x.shape[1]
    edges = [round(i * cols / blocks) for i in range(blocks + 1)]
    for a, b in zip(edges[:-1], edges[1:]):
        if b > a:
            H[a:, a:b].addmm_(x[:, a:].t(), x[:, a:b])


class _Stats:
    """Statistics of one input shared by a group of Linears."""

    def __init__(self, method: str, columns: int, device: torch.device, recon_rows: torch.Tensor | None):
        self.tokens = 0
        self.hessian = torch.zeros(columns, columns, device=device) if method == "sparsegpt" else None
        self.sq_norms = torch.zeros(columns, device=device) if method == "wanda" else None
        self.samples: list[torch.Tensor] = []
        self.recon_rows = recon_rows

    def add(self, x: torch.Tensor, offset: int) -> None:
        x = x.reshape(-1, x.shape[-1])
        if self.recon_rows is not None:
            sel = self.recon_rows[(self.recon_rows >= offset) & (self.recon_rows < offset + len(x))] - offset
            if len(sel):
                self.samples.append(x[sel.to(x.device)].float())
        xf = x.float()
        if self.hessian is not None:
            accumulate_lower(self.hessian, xf)
        if self.sq_norms is not None:
            self.sq_norms.add_(xf.square().sum(0))
        self.tokens += len(x)

    def finished_hessian(self) -> torch.Tensor:
        """X^T X from its accumulated lower triangle."""
        return self.hessian.tril() + self.hessian.tril(-1).t()

    def check(self, where: str) -> None:
        for t in (self.hessian, self.sq_norms):
            if t is not None and not torch.isfinite(t.sum()):
                raise PruneError(f"non-finite (NaN/inf) activations at the input of {where}")


def prune_model(model: nn.Module, calibration, method: str, sparsity, *, device=None, blocksize: int = 128,
                percdamp: float = 0.01, batch_tokens: int = 16384, recon_tokens: int = 256,
                progress: bool = True, model_name: str | None = None) -> PruneReport:
    """Prune ``model`` in place and return a ``PruneReport``.

    calibration: ``[N, L]`` token ids (tensor), a ``CalibrationSet``, or None (magnitude only).
    sparsity: a ``Sparsity``, a fraction in [0, 1) or an ``"N:M"`` string.
    device: where each layer is run (default: CUDA if available, else CPU). The model itself stays put.
    batch_tokens: tokens per forward batch (whole sequences; at least one).
    recon_tokens: calibration tokens (evenly spaced) on which ||WX - W'X||^2 / ||WX||^2 is measured; 0 = skip.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown pruning method {method!r}; choose from {', '.join(METHODS)}")
    sp = Sparsity.parse(sparsity)
    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ids = _calibration_ids(calibration, method)
    layers_name, layers = decoder_layers(model)
    for i, layer in enumerate(layers):  # refuse bad shapes and damaged weights before any work
        for name, lin in layer_linears(layer).items():
            sp.check_columns(lin.in_features, f"{layers_name}.{i}.{name}")
            check_finite(lin.weight.data, f"{layers_name}.{i}.{name}", "before pruning (nothing was changed)")
    report = PruneReport.start(model, model_name, method, sp, ids, dict(
        blocksize=blocksize, percdamp=percdamp, batch_tokens=batch_tokens, recon_tokens=recon_tokens,
        device=str(device), dtype=str(next(model.parameters()).dtype).removeprefix("torch.")))
    t_start = time.perf_counter()
    if ids is None:
        for i, layer in enumerate(tqdm(layers, desc=f"{method} {sp}", unit="layer", disable=not progress)):
            for name, lin in layer_linears(layer).items():
                t0 = time.perf_counter()
                w, _ = magnitude_prune(lin.weight.data, sp)
                check_finite(w, f"{layers_name}.{i}.{name}", "after pruning")
                lin.weight.data.copy_(w)
                report.timing["solve"] += time.perf_counter() - t0
                report.modules.append(ModuleRecord.of(f"{layers_name}.{i}.{name}", lin.weight))
        report.finish(model, time.perf_counter() - t_start)
        return report

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _run(model, layers_name, layers, ids, method, sp, device, blocksize, percdamp, batch_tokens,
                 recon_tokens, progress, report)
    finally:
        model.train(was_training)
    report.finish(model, time.perf_counter() - t_start)
    return report


def _calibration_ids(calibration, method: str) -> torch.Tensor | None:
    if calibration is None:
        if method != "magnitude":
            raise ConfigError(f"{method} needs calibration data")
        return None
    ids = calibration.input_ids if hasattr(calibration, "input_ids") else torch.as_tensor(calibration)
    if ids.ndim != 2 or ids.numel() == 0:
        raise ConfigError(f"calibration token ids must be a non-empty [sequences, length] array, got {tuple(ids.shape)}")
    return ids.long()


def _capture(model, layer0, ids, batch, device):
    """Inputs (hidden states) and keyword arguments of the first decoder layer, per batch, on ``device``."""
    inputs, kwargs = [], []

    def grab(_mod, args, kw):
        hidden = args[0] if args else kw["hidden_states"]
        inputs.append(hidden)
        kwargs.append({k: v for k, v in kw.items() if k != "hidden_states"} | {"use_cache": False})
        raise _Stop

    with _hooks([layer0.register_forward_pre_hook(grab, with_kwargs=True)]):
        for chunk in ids.split(batch):
            try:
                model(input_ids=chunk.to(device), use_cache=False)
            except _Stop:
                pass
    if len(inputs) != math.ceil(len(ids) / batch):
        raise PruneError("could not capture the inputs of the first decoder layer")
    return inputs, [k if "past_key_values" not in k else {**k, "past_key_values": None} for k in kwargs]


def _outer_modules(model, layers):
    """Parameters/buffers outside the decoder layers (embeddings, rotary, norms, lm_head): these run in capture."""
    inside = {id(p) for p in layers.parameters()} | {id(b) for b in layers.buffers()}
    return [m for m in model.modules() if any(id(t) not in inside for t in
                                              list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)))]


def _run(model, layers_name, layers, ids, method, sp, device, blocksize, percdamp, batch_tokens, recon_tokens,
         progress, report):
    batch = max(1, batch_tokens // ids.shape[1])
    total_tokens = ids.numel()
    recon_rows = None
    if recon_tokens > 0:
        recon_rows = torch.linspace(0, total_tokens - 1, min(recon_tokens, total_tokens)).round().long().unique()
    home = next(model.parameters()).device
    outer = _outer_modules(model, layers)
    t0 = time.perf_counter()
    for m in outer:
        m.to(device)
    try:
        inputs, kwargs = _capture(model, layers[0], ids, batch, device)
    finally:
        for m in outer:
            m.to(home)
    _sync(device)
    report.timing["capture"] += time.perf_counter() - t0

    for i, layer in enumerate(tqdm(layers, desc=f"{method} {sp}", unit="layer", disable=not progress)):
        prefix = f"{layers_name}.{i}"
        layer.to(device)
        linears = layer_linears(layer)
        groups, stats = _collect(layer, linears, inputs, kwargs, method, device, recon_rows, prefix, report)
        t0 = time.perf_counter()
        for names in groups:
            st = stats[names[0]]
            st.check(f"{prefix}.{names[0]}")
            mods = [linears[n] for n in names]
            originals = [m.weight.data.clone() for m in mods] if st.samples else None
            new, extra = _prune_group(method, mods, st, sp, blocksize, percdamp)
            group_warnings = extra.pop("warnings", [])
            for k, (name, mod, w) in enumerate(zip(names, mods, new)):
                check_finite(w, f"{prefix}.{name}", "after pruning")
                mod.weight.data.copy_(w)
                err = _recon_error(originals[k], mod.weight.data, st.samples) if originals else None
                report.modules.append(ModuleRecord.of(f"{prefix}.{name}", mod.weight, err, **extra))
            for w in group_warnings:
                msg = f"{prefix}.{'/'.join(names)}: {w}"
                report.warnings.append(msg)
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
        _sync(device)
        report.timing["solve"] += time.perf_counter() - t0
        del stats
        t0 = time.perf_counter()
        if i + 1 < len(layers):  # the last layer's outputs are not needed
            for b, (x, kw) in enumerate(zip(inputs, kwargs)):
                out = _first_tensor(layer(x, **kw))
                if not torch.isfinite(out.sum()):  # one reduction: NaN/inf anywhere makes the sum non-finite
                    raise PruneError(f"non-finite (NaN/inf) activations at the output of {prefix} after pruning")
                inputs[b] = out
        _sync(device)
        report.timing["forward"] += time.perf_counter() - t0
        layer.to(home)


def _collect(layer, linears, inputs, kwargs, method, device, recon_rows, prefix, report):
    """One statistics pass over the calibration batches. Linears fed by the same tensor form a group; after the
    first batch the pass stops at the last group's input (nothing after it is needed)."""
    stats: dict[str, _Stats] = {}
    seen: dict[int, tuple] = {}  # id(input) -> (first Linear that read it, the tensor: kept so ids stay unique)
    groups: dict[str, list[str]] = {}
    order: list[str] = []
    state = {"offset": 0, "first": True, "stat_time": 0.0}

    def hook(name):
        def fn(mod, args):
            x = args[0]
            if state["first"]:
                lead = seen.setdefault(id(x), (name, x))[0]
                groups.setdefault(lead, []).append(name)
                if lead != name:
                    return
                order.append(name)
                stats[name] = _Stats(method, mod.in_features, device, recon_rows)
            elif name not in stats:
                return
            t0 = time.perf_counter()
            stats[name].add(x.detach(), state["offset"])
            _sync(device)
            state["stat_time"] += time.perf_counter() - t0
            if not state["first"] and name == order[-1]:
                raise _Stop
        return fn

    t0 = time.perf_counter()
    with _hooks([m.register_forward_pre_hook(hook(n)) for n, m in linears.items()]):
        for x, kw in zip(inputs, kwargs):
            try:
                layer(x, **kw)
            except _Stop:
                pass
            state["first"] = False
            seen.clear()
            state["offset"] += x.shape[0] * x.shape[1]
    _sync(device)
    elapsed = time.perf_counter() - t0
    report.timing["statistics"] += state["stat_time"]
    report.timing["forward"] += elapsed - state["stat_time"]
    missing = [n for n in linears if not any(n in g for g in groups.values())]
    if missing:
        raise PruneError(f"{prefix}: Linear modules never called in the layer's forward: {', '.join(missing)}")
    return [groups[lead] for lead in order], stats


def _prune_group(method, mods, st: _Stats, sp, blocksize, percdamp):
    if method == "sparsegpt":
        res = sparsegpt_prune_many([m.weight.data for m in mods], st.finished_hessian(), sp, blocksize, percdamp)
        warn = res[0].warnings + ([f"{res[0].dead_columns} dead input(s) (always zero)"] if res[0].dead_columns else [])
        return [r.weight for r in res], {"damp": res[0].damp, "warnings": warn}
    if method == "wanda":
        return [wanda_prune(m.weight.data, st.sq_norms, sp)[0] for m in mods], {}
    return [magnitude_prune(m.weight.data, sp)[0] for m in mods], {}


def _recon_error(w: torch.Tensor, w_new: torch.Tensor, samples: list[torch.Tensor]) -> float:
    x = torch.cat(samples)
    y = x @ w.float().t()
    return float((x @ (w.float() - w_new.float()).t()).square().sum() / y.square().sum().clamp_min(1e-30))
