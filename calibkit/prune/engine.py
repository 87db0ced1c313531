"""Layer-sequential pruning of a decoder model (the protocol of the SparseGPT and Wanda papers).

1. Run the calibration tokens up to the first decoder layer once and keep its inputs (and the keyword arguments the
   model passes to every layer: rotary embeddings, masks).
2. For each layer: move it to the device; run it with hooks on its Linear modules; Linears that read the same tensor
   (q/k/v, gate/up) are found from the first batch and form a group; the method collects statistics of each
   group's input and prunes the group; run the pruned layer again to produce the next layer's inputs; move it back.
Embeddings and lm_head are never touched. The model stays where it is (CPU); only the current layer, the captured
activations and the small modules before layer 0 visit the device.

The engine knows methods only through ``base.Pruner`` (``methods.METHODS``): it holds no method's name or math.
Without calibration data (methods that do not need it) no forward pass runs and each Linear is pruned on its own.
"""
from __future__ import annotations

import math
import time
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn
from tqdm.auto import tqdm

from .base import PruneContext, Pruner
from .methods import METHODS
from .owl import OutlierProbe, layer_sparsities
from .options import PruneOptions
from .report import ModuleRecord, PruneReport
from .sparsity import Sparsity
from ..errors import CalibkitError, ConfigError


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
    if torch.isfinite(weight.sum()):  # one reduction: NaN/inf anywhere makes the sum non-finite
        return
    bad = ~torch.isfinite(weight)
    if bad.any():
        raise PruneError(f"{where}: {int(bad.sum())} non-finite (NaN/inf) weight(s) {when}")


# --- the engine --------------------------------------------------------------------------------------------------

def prune_model(model: nn.Module, calibration, method: str | Pruner, sparsity,
                options: PruneOptions | dict | None = None, *, progress: bool = True, model_name: str | None = None,
                **settings) -> PruneReport:
    """Prune ``model`` in place and return a ``PruneReport``.

    calibration: ``[N, L]`` token ids (tensor), a ``CalibrationSet``, or None (methods that need none: magnitude).
    method: a name in ``METHODS`` (or a ``base.Pruner`` object).
    sparsity: a ``Sparsity``, a fraction in [0, 1) or an ``"N:M"`` string.
    options / settings: a ``PruneOptions`` (or dict), and keyword settings that override it: device, blocksize,
    percdamp, batch_tokens, recon_tokens, hessian_precision, offload_activations, owl, owl_m, owl_lambda (see
    ``PruneOptions``); an unknown name is a ``ConfigError``. With ``owl`` a dense pass first measures the layers'
    outlier ratios (``owl.OutlierProbe``) and each layer gets its own sparsity (``owl.layer_sparsities``).
    """
    pruner = _method(method)
    sp = Sparsity.parse(sparsity)
    options = PruneOptions.of(options, settings)
    ids = _calibration_ids(calibration, pruner)
    layers_name, layers = decoder_layers(model)
    for i, layer in enumerate(layers):  # refuse bad shapes and damaged weights before any work
        for name, lin in layer_linears(layer).items():
            sp.check_columns(lin.in_features, f"{layers_name}.{i}.{name}")
            check_finite(lin.weight.data, f"{layers_name}.{i}.{name}", "before pruning (nothing was changed)")
    if options.owl and sp.is_nm:
        raise ConfigError(f"OWL sets an unstructured sparsity per layer; it does not apply to {sp}")
    if options.owl and ids is None:
        raise ConfigError("OWL needs calibration data: it measures the layers' activation outliers")
    options = options.resolved(model)
    report = PruneReport.start(model, model_name, pruner.name, sp, ids, asdict(options))
    ctx = PruneContext(sp, options, torch.device(options.device), int(ids.shape[1]) if ids is not None else 0)
    run = _Run(pruner, ctx, layers_name, layers, report, progress)
    t_start = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if options.owl:
                run.layer_sparsity = _owl(model, run, ids)
            _run(model, run, ids)
    finally:
        model.train(was_training)
    report.finish(model, time.perf_counter() - t_start)
    return report


def _owl(model, run: _Run, ids: torch.Tensor) -> list[Sparsity]:
    """One dense pass of the engine with ``OutlierProbe`` (weights unchanged), then OWL's layer sparsities; both
    go into the report (``report.layers``), the pass's time into ``timing["owl"]``."""
    t0 = time.perf_counter()
    options = run.ctx.options
    probe = OutlierProbe(options.owl_m)
    ctx = replace(run.ctx, options=replace(options, recon_tokens=0))
    scratch = PruneReport.start(model, None, probe.name, run.ctx.sparsity, ids, {})
    _run(model, _Run(probe, ctx, run.layers_name, run.layers, scratch, run.progress), ids)
    ratios = probe.finish()
    targets = layer_sparsities(ratios, run.ctx.sparsity.fraction, options.owl_lambda)
    run.report.layers = [{"layer": i, "outlier_ratio": r, "sparsity": s} for i, (r, s) in enumerate(zip(ratios, targets))]
    run.report.timing["owl"] = time.perf_counter() - t0
    return [Sparsity.unstructured(s) for s in targets]


@dataclass
class _Run:
    """One ``prune_model`` call: what every step of it needs."""
    method: Pruner
    ctx: PruneContext
    layers_name: str
    layers: nn.ModuleList
    report: PruneReport
    progress: bool
    layer_sparsity: list[Sparsity] | None = None  # one per decoder layer (OWL); None: ctx.sparsity everywhere


@dataclass
class _Activations:
    """The current layer's inputs and keyword arguments per batch, and the token rows sampled for recon errors.
    ``offload``: the inputs live in (pinned) host memory and visit the device one batch at a time."""
    inputs: list
    kwargs: list
    recon_rows: torch.Tensor | None
    offload: bool = False

    def batch(self, b: int, device: torch.device) -> torch.Tensor:
        return self.inputs[b].to(device, non_blocking=True) if self.offload else self.inputs[b]

    def keep(self, b: int, out: torch.Tensor) -> None:
        """The layer's output for batch ``b`` becomes the next layer's input (in place in host memory)."""
        if self.offload:
            self.inputs[b].copy_(out, non_blocking=True)
        else:
            self.inputs[b] = out


class _Input:
    """One input tensor read by a group of Linears: the method's statistics of it and the sampled rows."""

    def __init__(self, stats, recon_rows: torch.Tensor | None):
        self.stats = stats
        self.recon_rows = recon_rows
        self.samples: list[torch.Tensor] = []

    def add(self, method: Pruner, x: torch.Tensor, offset: int, ctx: PruneContext) -> None:
        x = x.reshape(-1, x.shape[-1])
        if self.recon_rows is not None:
            sel = self.recon_rows[(self.recon_rows >= offset) & (self.recon_rows < offset + len(x))] - offset
            if len(sel):
                self.samples.append(x[sel.to(x.device)].float())
        method.accumulate(self.stats, x, ctx)

    def check(self, where: str) -> None:
        for t in (self.stats or {}).values():
            if not torch.isfinite(t.sum()):
                raise PruneError(f"non-finite (NaN/inf) activations at the input of {where}")


def _method(method) -> Pruner:
    if not isinstance(method, str) and callable(getattr(method, "prune_group", None)):
        return method
    if not isinstance(method, str) or method not in METHODS:
        raise ConfigError(f"unknown pruning method {method!r}; choose from {', '.join(METHODS)}")
    return METHODS[method]


def _calibration_ids(calibration, method: Pruner) -> torch.Tensor | None:
    if calibration is None:
        if method.needs_calibration:
            raise ConfigError(f"{method.name} needs calibration data")
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


def _start(model, run: _Run, ids: torch.Tensor) -> _Activations:
    """The calibration batches run up to the first decoder layer."""
    device, options = run.ctx.device, run.ctx.options
    batch = max(1, options.batch_tokens // ids.shape[1])
    total_tokens = ids.numel()
    recon_rows, recon_tokens = None, options.recon_tokens
    if recon_tokens > 0:
        recon_rows = torch.linspace(0, total_tokens - 1, min(recon_tokens, total_tokens)).round().long().unique()
    home = next(model.parameters()).device
    outer = _outer_modules(model, run.layers)
    t0 = time.perf_counter()
    for m in outer:
        m.to(device)
    try:
        inputs, kwargs = _capture(model, run.layers[0], ids, batch, device)
    finally:
        for m in outer:
            m.to(home)
    offload = options.offload_activations
    if offload:  # pinned: the copies to and from a CUDA device can run asynchronously (on the CPU: a no-op)
        inputs = [x.cpu().pin_memory() if device.type == "cuda" else x.cpu() for x in inputs]
    _sync(device)
    run.report.timing["capture"] += time.perf_counter() - t0
    return _Activations(inputs, kwargs, recon_rows, offload)


def _run(model, run: _Run, ids: torch.Tensor | None) -> None:
    # Forward passes only where they give something: the method's statistics or the reconstruction errors.
    forwards = ids is not None and (run.method.needs_calibration or run.ctx.options.recon_tokens > 0)
    home = next(model.parameters()).device
    device = run.ctx.device if forwards else home
    acts = _start(model, run, ids) if forwards else None
    timing = run.report.timing
    for i, layer in enumerate(tqdm(run.layers, desc=f"{run.method.name} {run.ctx.sparsity}", unit="layer",
                                   disable=not run.progress)):
        prefix = f"{run.layers_name}.{i}"
        ctx = replace(run.ctx, layer=i, sparsity=run.layer_sparsity[i] if run.layer_sparsity else run.ctx.sparsity)
        layer.to(device)
        linears = layer_linears(layer)
        groups = (_collect(run, ctx, layer, linears, acts, prefix) if forwards
                  else [([name], _Input(None, None)) for name in linears])
        t0 = time.perf_counter()
        for names, inp in groups:
            _prune_group(run, ctx, prefix, names, [linears[n] for n in names], inp)
        _sync(device)
        timing["solve"] += time.perf_counter() - t0
        del groups
        if forwards:
            t0 = time.perf_counter()
            if i + 1 < len(run.layers):  # the last layer's outputs are not needed
                for b, kw in enumerate(acts.kwargs):
                    out = _first_tensor(layer(acts.batch(b, device), **kw))
                    if not torch.isfinite(out.sum()):  # one reduction: NaN/inf anywhere makes the sum non-finite
                        raise PruneError(f"non-finite (NaN/inf) activations at the output of {prefix} after pruning")
                    acts.keep(b, out)
            _sync(device)
            timing["forward"] += time.perf_counter() - t0
        layer.to(home)


def _collect(run: _Run, ctx: PruneContext, layer, linears, acts: _Activations,
             prefix: str) -> list[tuple[list[str], _Input]]:
    """One statistics pass over the calibration batches. Linears fed by the same tensor form a group; after the
    first batch the pass stops at the last group's input (nothing after it is needed)."""
    method = run.method
    stats: dict[str, _Input] = {}
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
                stats[name] = _Input(method.new_stats(mod.in_features, ctx), acts.recon_rows)
            elif name not in stats:
                return
            t0 = time.perf_counter()
            stats[name].add(method, x.detach(), state["offset"], ctx)
            _sync(ctx.device)
            state["stat_time"] += time.perf_counter() - t0
            if not state["first"] and name == order[-1]:
                raise _Stop
        return fn

    t0 = time.perf_counter()
    with _hooks([m.register_forward_pre_hook(hook(n)) for n, m in linears.items()]):
        for b, kw in enumerate(acts.kwargs):
            x = acts.batch(b, ctx.device)
            try:
                layer(x, **kw)
            except _Stop:
                pass
            state["first"] = False
            seen.clear()
            state["offset"] += x.shape[0] * x.shape[1]
    _sync(ctx.device)
    elapsed = time.perf_counter() - t0
    run.report.timing["statistics"] += state["stat_time"]
    run.report.timing["forward"] += elapsed - state["stat_time"]
    missing = [n for n in linears if not any(n in g for g in groups.values())]
    if missing:
        raise PruneError(f"{prefix}: Linear modules never called in the layer's forward: {', '.join(missing)}")
    return [(groups[lead], stats[lead]) for lead in order]


def _prune_group(run: _Run, ctx: PruneContext, prefix: str, names: list[str], mods: list[nn.Linear],
                 inp: _Input) -> None:
    """Prune one group with the method, write the new weights back, record them."""
    inp.check(f"{prefix}.{names[0]}")
    originals = [m.weight.data.clone() for m in mods] if inp.samples else None
    res = run.method.prune_group([m.weight.data for m in mods], inp.stats, ctx)
    if len(res.weights) != len(mods):
        raise PruneError(f"{prefix}: {run.method.name} returned {len(res.weights)} weights for {len(mods)} modules")
    for k, (name, mod, w) in enumerate(zip(names, mods, res.weights)):
        if w.shape != mod.weight.shape:
            raise PruneError(f"{prefix}.{name}: {run.method.name} returned a {tuple(w.shape)} weight for "
                             f"{tuple(mod.weight.shape)}")
        check_finite(w, f"{prefix}.{name}", "after pruning")
        mod.weight.data.copy_(w)
        err = _recon_error(originals[k], mod.weight.data, inp.samples) if originals else None
        run.report.modules.append(ModuleRecord.of(f"{prefix}.{name}", mod.weight, err, **res.extras))
    for w in res.warnings:
        msg = f"{prefix}.{'/'.join(names)}: {w}"
        run.report.warnings.append(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _recon_error(w: torch.Tensor, w_new: torch.Tensor, samples: list[torch.Tensor]) -> float:
    x = torch.cat(samples)
    y = x @ w.float().t()
    return float((x @ (w.float() - w_new.float()).t()).square().sum() / y.square().sum().clamp_min(1e-30))
