"""One run: build the calibration set, profile it (once per set), prune a fresh model, evaluate, write the record."""
from __future__ import annotations

import copy
import os
import platform
import time
from dataclasses import asdict

from tqdm.auto import tqdm

from .config import NO_CALIBRATION, RunConfig, SweepError
from .store import Store


def _calibration(cfg: RunConfig, tokenizer, model):
    from ..spec import build

    return build(cfg.calibration, n=cfg.n, seqlen=cfg.seqlen, seed=cfg.seed, model_name=cfg.model,
                 tokenizer=tokenizer, model=model, progress=False, pruner=cfg.method, sparsity=cfg.sparsity)


def _profile(cfg: RunConfig, cs, model, store: Store) -> dict | None:
    from ..profile import profile

    if cs is None:
        return None
    return store.profile(cfg, lambda: profile(cs, model, progress=False) | cfg.calibration_identity
                         | calibration_info(cfg, cs))


def label_info(calibration: str) -> dict:
    """Label, kind (source | mix | selfgen | none) and pool of a calibration spec string."""
    from ..spec import parse

    return parse(calibration).info()


def calibration_info(cfg: RunConfig, cs) -> dict:
    """Label, kind and pool of the run's set; for a built set its sequences per pool and the digest of its tokens
    (records since 2026-11-29: which set a run used, e.g. an OASIS selection that other kernels make otherwise)."""
    return label_info(cfg.calibration) | ({"counts": cs.counts(), "tokens_sha256": cs.tokens_digest()}
                                          if cs is not None else {})


_MODELS: dict[str, tuple] = {}  # model name -> (unpruned model, tokenizer), loaded once per process


def fresh_model(name: str):
    """A private copy of the unpruned model (loaded once per process, copied per run: loading costs seconds)."""
    from ..models import load_model

    if name not in _MODELS:
        _MODELS[name] = load_model(name, device="cpu")
    model, tok = _MODELS[name]
    return copy.deepcopy(model), tok


def _prune(model, cs, cfg: RunConfig, device: str):
    """Prune ``model`` in place with the run's method: unstructured/N:M through the engine, structured
    (llm-pruner, nirvana) through ``prune_structured`` (on the CPU: its gradient pass is small at this scale)."""
    from ..prune import STRUCTURED, prune, prune_structured

    if cfg.method in STRUCTURED:
        return prune_structured(model, cs, cfg.method, float(cfg.sparsity), progress=False)
    return prune(model, cs, cfg.method, cfg.sparsity, device=device, progress=False, model_name=cfg.model)


def _prune_summary(report) -> dict:
    """What a run record keeps of the prune report: totals (achieved sparsity; for structured pruning the fraction
    of decoder weights removed and the parameter counts), timing, warnings, and per-layer widths if structured."""
    from ..prune import StructuredReport

    if isinstance(report, StructuredReport):
        d = report.to_dict()
        return {"totals": {"sparsity": report.reduction, "params_before": report.params_before,
                           "params_after": report.params_after},
                "timing": report.timing, "warnings": [], "widths": d["widths"], "options": d["options"]}
    return {"totals": report.totals, "timing": report.timing, "warnings": report.warnings}


def cpu_share(cpu_seconds: float, wall_seconds: float) -> float:
    """The share of the CPU this process got: its CPU seconds over wall seconds x torch's threads. Near 1 when the
    run had its cores to itself; about 0.5 when another job of the same size ran beside it (its wall times are then
    inflated and are not the tool's speed)."""
    import torch

    return round(cpu_seconds / max(wall_seconds * torch.get_num_threads(), 1e-9), 3)


def run_one(cfg: RunConfig, store_root: str | os.PathLike, device: str = "cpu", profile: bool = True) -> dict:
    """Build the calibration set, profile it (unless ``profile`` is False: the record's profile is then None, e.g.
    for ``calibkit advise``, whose objective does not read it), prune a fresh copy of the model, evaluate, write
    the record."""
    import torch

    from .. import __version__
    from ..environment import describe
    from ..eval.harness import dense_scores, evaluate
    from ..eval.retention import bootstrap_se, retention
    store = Store(store_root)
    t0, c0 = time.perf_counter(), time.process_time()
    model, tok = fresh_model(cfg.model)
    dtype = getattr(torch, cfg.eval_dtype)
    t_build = time.perf_counter()
    cs = _calibration(cfg, tok, model)  # self-generated sets: the generation happens here (cached by the store)
    t_profile = time.perf_counter()
    t_build = t_profile - t_build
    prof = _profile(cfg, cs, model, store) if profile else None
    t_profile = time.perf_counter() - t_profile
    tasks = list(cfg.tasks) if cfg.tasks else None
    dense = dense_scores(cfg.model, lambda: (copy.deepcopy(model).to(dtype), tok), cfg.suite, cfg.limit,
                         tasks=tasks, dtype=cfg.eval_dtype, progress=False)
    report = _prune(model, cs, cfg, device)
    w_eval, c_eval = time.perf_counter(), time.process_time()
    res = evaluate(model.to(device=device, dtype=dtype), tok, cfg.suite, cfg.limit, tasks=tasks, progress=False)
    eval_share = cpu_share(time.process_time() - c_eval, time.perf_counter() - w_eval)  # CPU and wall: one span
    lower = set(res["lower_is_better"])
    ret = retention(res["scores"], dense["scores"], res["dimensions"], lower)
    se = bootstrap_se(res["per_item"], dense["per_item"], res["dimensions"], lower, seed=0,
                      metrics=res["metrics"])
    record = {"key": cfg.key, "config": asdict(cfg), "calibration": calibration_info(cfg, cs), "profile": prof,
              "prune": _prune_summary(report),
              "scores": res["scores"], "dense_scores": dense["scores"], "dimensions": res["dimensions"],
              "lower_is_better": res["lower_is_better"], "scorer": res["scorer"], "items_requested": res["items"],
              "retention": ret,
              "retention_se": se, "items": {"pruned": res["per_item"], "dense": dense["per_item"]},
              "seconds": {"prune": report.timing["total"], "eval": res["seconds"], "profile": t_profile,
                          "build": t_build, "run": time.perf_counter() - t0},
              "cpu_share": {"eval": eval_share,
                            "run": cpu_share(time.process_time() - c0, time.perf_counter() - t0)},
              "versions": {"calibkit": __version__, "torch": torch.__version__, "python": platform.python_version()},
              "environment": describe(),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    store.put(cfg, record)
    return record


def profile_sets(configs: list[RunConfig], store_root: str | os.PathLike, progress: bool = True) -> int:
    """Profile every distinct calibration set of ``configs`` once (kept in the store; runs reuse them).
    Returns how many were computed now."""
    from ..models import load_model

    store, todo, seen = Store(store_root), [], set()
    store.claim()
    for c in configs:
        if c.calibration != NO_CALIBRATION and c.calibration_key not in seen:
            seen.add(c.calibration_key)
            if store.profile(c) is None:
                todo.append(c)
    models = {}
    for c in tqdm(todo, desc="profiles", unit="set", disable=not progress):
        if c.model not in models:
            models[c.model] = load_model(c.model, device="cpu")
        model, tok = models[c.model]
        _profile(c, _calibration(c, tok, model), model, store)
    return len(todo)


def repair_profiles(configs: list[RunConfig], store_root: str | os.PathLike, progress: bool = True) -> list[dict]:
    """Give every finished record of ``configs`` the stored profile of its calibration set where the copy it
    carries has other metric values (profiling missing sets first, ``profile_sets``); each rewritten record keeps
    what it carried under ``profile_replaced``. Until 2026-11-29 the store kept one profile per spec, N, L and seed, so an OASIS
    selection's records carried the profile of the set selected for whichever pruner was profiled first; their
    pruning and evaluation used their own set. Returns one row per rewritten record (key, old and new)."""
    from ..profile import METRICS as PROFILE_METRICS

    store = Store(store_root)
    done = [c for c in configs if c.calibration != NO_CALIBRATION and store.get(c) is not None]
    profile_sets(done, store_root, progress)
    out = []
    for c in done:
        rec, prof = store.get(c), store.profile(c)
        if prof is None:
            raise SweepError(f"run {c.key}: no stored profile of its calibration set {c.calibration!r} after profiling")
        if rec.get("profile") is None or all(rec["profile"].get(m) == prof.get(m) for m in PROFILE_METRICS):
            continue
        ran, profiled = rec["calibration"].get("tokens_sha256"), prof.get("tokens_sha256")
        if ran and profiled and ran != profiled:  # older records carry no digest: nothing to check
            raise SweepError(f"run {c.key}: its calibration set (tokens {ran[:12]}) is not the stored profile's "
                             f"({profiled[:12]}): made otherwise here (e.g. other kernels); not repaired")
        was = rec["profile"]
        earlier = {"before": rec["profile_replaced"]} if "profile_replaced" in rec else {}  # an earlier repair's
        store.put(c, {k: v for k, v in rec.items() if k != "checksum"} | {
            "profile": prof, "profile_replaced": {"was": was, "on": time.strftime("%Y-%m-%d"),
                                                  "why": "the store's profile of this run's calibration set"} | earlier})
        out.append({"key": c.key, "calibration": c.calibration, "method": c.method, "seed": c.seed,
                    "was": was, "now": prof})
    return out
