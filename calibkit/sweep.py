"""Sweeps: expand a named parameter set into run configs, run each once, keep one atomic record per config.

A *run* = calibration spec (source or mix, N, L, seed) x pruner x sparsity (or N:M) x model x eval suite. Its
identity is the hash of its full config (``run_key``); its record (profile of the calibration set, prune report
totals, per-task scores, retention against the cached dense scores) is written atomically to
``<store>/runs/<key>.json`` only when the run is complete. Re-running a sweep skips every key already there, so a
sweep killed at any moment resumes with nothing lost and nothing duplicated. Profiles of calibration sets are kept
under ``<store>/profiles/`` (shared by the runs that use the same set).

Executors: ``local`` (sequential, in this process) and ``ray`` (one Ray task per run, declaring its CPUs/GPU;
``ray_address`` for an existing cluster). Results load into one pandas table with ``results_table``.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from .settings import atomic_write_bytes
from .errors import ConfigError

PROFILE_DIR = Path(__file__).with_name("profiles")
NO_CALIBRATION = "none"  # Magnitude ignores calibration data: one run per (model, sparsity), not per set


class SweepError(ConfigError):
    pass


@dataclass(frozen=True)
class RunConfig:
    calibration: str  # source name, mix (balanced, loo_math, 4_3_3_code, G:C:K:M[@study]) or "none"
    n: int
    seqlen: int
    seed: int
    method: str
    sparsity: str  # "0.6" or "2:4"
    model: str
    suite: str
    limit: int | None = None  # eval items per task (None: the suite's own sizes)
    tasks: tuple[str, ...] | None = None  # subset of the suite's tasks (None: all)

    @property
    def key(self) -> str:
        return run_key(self)

    @property
    def calibration_key(self) -> str:
        return hashlib.sha256(json.dumps([self.calibration, self.n, self.seqlen, self.seed, self.model])
                              .encode()).hexdigest()[:16]


def run_key(cfg: RunConfig) -> str:
    return hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:20]


# --- named parameter sets -------------------------------------------------------------------------

def load_profile(name_or_path: str) -> dict:
    """A named parameter set (``calibkit/profiles/<name>.yaml``: smoke | embedded | paper) or a YAML file."""
    path = Path(name_or_path)
    if not path.is_file():
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise SweepError(f"no sweep profile {name_or_path!r}: not a file, and not one of {', '.join(known)}")
    try:
        prof = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SweepError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(prof, dict) or not isinstance(prof.get("experiments"), dict):
        raise SweepError(f"{path}: a sweep profile needs a mapping with an 'experiments' mapping")
    return prof | {"path": str(path), "name": prof.get("name", path.stem)}


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def expand(profile: dict, overrides: dict | None = None) -> list[RunConfig]:
    """Every run config of every experiment group, deduplicated, in a stable order.

    Top-level keys are defaults (model, suite, limit, n, seqlen, seeds); each experiment group may override them
    and lists ``calibration``, ``methods`` and ``sparsities``."""
    from .data.calibration import parse_mix
    from .data.sources import names as source_names
    from .prune import METHODS, Sparsity

    base = {k: v for k, v in profile.items() if k != "experiments"} | (overrides or {})
    out, seen = [], set()
    for group, spec in profile["experiments"].items():
        p = base | (spec or {})
        for field_ in ("calibration", "methods", "sparsities"):
            if not p.get(field_):
                raise SweepError(f"experiment {group!r}: '{field_}' is missing or empty")
        for calib, method, sparsity, seed in itertools.product(_as_list(p["calibration"]), _as_list(p["methods"]),
                                                               _as_list(p["sparsities"]), _as_list(p.get("seeds", 0))):
            if method not in METHODS:
                raise SweepError(f"experiment {group!r}: unknown method {method!r}; known: {', '.join(METHODS)}")
            Sparsity.parse(str(sparsity))
            calib = str(calib)
            if method == "magnitude":
                calib, seed = NO_CALIBRATION, 0
            elif calib == NO_CALIBRATION:
                raise SweepError(f"experiment {group!r}: {method} needs calibration data")
            elif calib.startswith("selfgen:"):
                from .selfgen import METHODS as SELFGEN

                if calib.removeprefix("selfgen:") not in SELFGEN:
                    raise SweepError(f"experiment {group!r}: unknown self-generation method {calib!r}; "
                                     f"known: {', '.join('selfgen:' + m for m in SELFGEN)}")
            elif calib not in source_names():
                parse_mix(calib)  # unknown names fail here with the list of known ones
            tasks = tuple(p["tasks"]) if p.get("tasks") else None
            cfg = RunConfig(calib, int(p.get("n", 128)), int(p.get("seqlen", 2048)), int(seed), method,
                            str(sparsity), str(p["model"]), str(p.get("suite", "embedded")), p.get("limit"), tasks)
            if cfg not in seen:
                seen.add(cfg)
                out.append(cfg)
    return out


# --- the store ------------------------------------------------------------------------------------

class Store:
    """``<root>/runs/<key>.json`` (complete runs only), ``<root>/profiles/<calibration key>.json``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.profiles = self.root / "profiles"

    def path(self, cfg: RunConfig) -> Path:
        return self.runs / f"{cfg.key}.json"

    def done(self, cfg: RunConfig) -> bool:
        return self.path(cfg).is_file()

    def put(self, cfg: RunConfig, record: dict) -> Path:
        path = self.path(cfg)
        atomic_write_bytes(path, (json.dumps(record, indent=1, default=str) + "\n").encode())
        return path

    def records(self) -> list[dict]:
        if not self.runs.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(self.runs.glob("*.json"))]

    def clean_partial(self) -> int:
        """Remove temp files a killed run left behind (they are never read as records)."""
        stale = list(self.root.rglob(".*.tmp-*")) if self.root.is_dir() else []
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)


# --- one run ----------------------------------------------------------------------------------------

def _calibration(cfg: RunConfig, tokenizer):
    from .data.calibration import build

    if cfg.calibration == NO_CALIBRATION:
        return None
    return build(cfg.calibration, n=cfg.n, seqlen=cfg.seqlen, seed=cfg.seed, tokenizer=tokenizer, model=cfg.model,
                 progress=False)


def _profile(cfg: RunConfig, cs, model, store: Store) -> dict | None:
    from .profile import profile

    if cs is None:
        return None
    path = store.profiles / f"{cfg.calibration_key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    prof = profile(cs, model, progress=False) | {"calibration": cfg.calibration, "n": cfg.n, "seqlen": cfg.seqlen,
                                                 "seed": cfg.seed, "model": cfg.model} | _calibration_info(cfg, cs)
    atomic_write_bytes(path, (json.dumps(prof, indent=1) + "\n").encode())
    return prof


def _label_info(calibration: str) -> dict:
    """Label, kind (source | mix | selfgen | none) and pool of a calibration spec string."""
    from .data import sources as S
    from .data.calibration import parse_mix

    if calibration == NO_CALIBRATION:
        return {"label": NO_CALIBRATION, "kind": NO_CALIBRATION, "pool": None}
    if calibration.startswith("selfgen:"):
        return {"label": calibration, "kind": "selfgen", "pool": None}
    if calibration in S.names():
        return {"label": calibration, "kind": "source", "pool": S.get(calibration).dimension}
    return {"label": parse_mix(calibration).label, "kind": "mix", "pool": None}


def _calibration_info(cfg: RunConfig, cs) -> dict:
    return _label_info(cfg.calibration) | ({"counts": cs.counts()} if cs is not None else {})


def run_one(cfg: RunConfig, store_root: str | os.PathLike, device: str = "cpu") -> dict:
    """Build the calibration set, profile it, prune a fresh copy of the model, evaluate, write the record."""
    import torch

    from . import __version__
    from .eval.harness import dense_scores, evaluate
    from .eval.retention import retention
    from .models import load_model
    from .prune import prune

    store = Store(store_root)
    t0 = time.perf_counter()
    model, tok = load_model(cfg.model, device="cpu")
    cs = _calibration(cfg, tok)
    prof = _profile(cfg, cs, model, store)
    tasks = list(cfg.tasks) if cfg.tasks else None
    dense = dense_scores(cfg.model, lambda: (model, tok), cfg.suite, cfg.limit, tasks=tasks)
    report = prune(model, cs, cfg.method, cfg.sparsity, device=device, progress=False, model_name=cfg.model)
    res = evaluate(model.to(device), tok, cfg.suite, cfg.limit, tasks=tasks)
    ret = retention(res["scores"], dense["scores"], res["dimensions"], set(res["lower_is_better"]))
    record = {"key": cfg.key, "config": asdict(cfg), "calibration": _calibration_info(cfg, cs), "profile": prof,
              "prune": {"totals": report.totals, "timing": report.timing, "warnings": report.warnings},
              "scores": res["scores"], "dense_scores": dense["scores"], "dimensions": res["dimensions"],
              "lower_is_better": res["lower_is_better"], "retention": ret,
              "seconds": {"prune": report.timing["total"], "eval": res["seconds"], "run": time.perf_counter() - t0},
              "versions": {"calibkit": __version__, "torch": torch.__version__, "python": platform.python_version()},
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    store.put(cfg, record)
    return record


def profile_sets(configs: list[RunConfig], store_root: str | os.PathLike, progress: bool = True) -> int:
    """Profile every distinct calibration set of ``configs`` once (kept in the store; runs reuse them).
    Returns how many were computed now."""
    from .models import load_model

    store, todo, seen = Store(store_root), [], set()
    for c in configs:
        if c.calibration != NO_CALIBRATION and c.calibration_key not in seen:
            seen.add(c.calibration_key)
            if not (store.profiles / f"{c.calibration_key}.json").is_file():
                todo.append(c)
    models = {}
    for c in tqdm(todo, desc="profiles", unit="set", disable=not progress):
        if c.model not in models:
            models[c.model] = load_model(c.model, device="cpu")
        model, tok = models[c.model]
        _profile(c, _calibration(c, tok), model, store)
    return len(todo)


def _with_label(prof: dict) -> dict:
    """Label/kind/pool of a profile record (derived from its calibration string when the record lacks them)."""
    return prof if "label" in prof else prof | _label_info(prof["calibration"])


def profiles_table(store_root: str | os.PathLike):
    """One row per profiled calibration set: label, kind, pool, seed, the 7 metrics, and undefined reasons."""
    import pandas as pd

    folder = Store(store_root).profiles
    rows = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    rows = [_with_label(r) for r in rows]
    cols = ["label", "kind", "pool", "calibration", "seed", "n", "seqlen", *PROFILE_METRICS]
    return pd.DataFrame([{k: r.get(k) for k in cols} | {"undefined": "; ".join(r.get("undefined", {}).values())}
                         for r in rows], columns=cols + ["undefined"])


# --- executors --------------------------------------------------------------------------------------

def run_sweep(configs: list[RunConfig], store_root: str | os.PathLike, executor: str = "local",
              device: str = "cpu", ray_address: str | None = None, cpus_per_run: int = 2, progress: bool = True,
              ) -> dict:
    """Run every config whose record is missing. Returns {"done": n already there, "ran": n, "seconds": s}."""
    store = Store(store_root)
    store.clean_partial()
    todo = [c for c in configs if not store.done(c)]
    t0 = time.perf_counter()
    bar = tqdm(total=len(configs), initial=len(configs) - len(todo), desc="sweep", unit="run", disable=not progress)
    if executor == "local":
        for cfg in todo:
            bar.set_postfix_str(f"{cfg.calibration} {cfg.method} {cfg.sparsity}")
            run_one(cfg, store.root, device)
            bar.update()
    elif executor == "ray":
        _run_ray(todo, store, device, ray_address, cpus_per_run, bar)
    else:
        raise SweepError(f"unknown executor {executor!r}; use local or ray")
    bar.close()
    return {"total": len(configs), "done": len(configs) - len(todo), "ran": len(todo),
            "seconds": time.perf_counter() - t0}


def _run_ray(todo: list[RunConfig], store: Store, device: str, address: str | None, cpus: int, bar) -> None:
    try:
        import ray
    except ImportError:
        raise SweepError("the ray executor needs Ray: pip install 'calibkit[ray]'") from None
    env = {k: v for k, v in os.environ.items() if k.startswith(("CALIBKIT_", "HF_"))}
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, runtime_env={"env_vars": env}, include_dashboard=False, log_to_driver=False,
                 **({} if address else {"num_cpus": max(cpus, os.cpu_count() or 1)}))
    try:
        task = ray.remote(num_cpus=cpus, num_gpus=1 if device.startswith("cuda") else 0)(_ray_run)
        pending = [task.remote(asdict(c), str(store.root.resolve()), device) for c in todo]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            ray.get(ready)  # re-raises a failed run's error here
            bar.update(len(ready))
    finally:
        if started:
            ray.shutdown()


def _ray_run(cfg: dict, store_root: str, device: str) -> str:
    cfg = RunConfig(**(cfg | {"tasks": tuple(cfg["tasks"]) if cfg.get("tasks") else None}))
    run_one(cfg, store_root, device)
    return cfg.key


# --- results ---------------------------------------------------------------------------------------

PROFILE_METRICS = ("volume", "scope", "variety", "granularity", "aggregation", "distortion", "mismatch")


def results_table(store_root: str | os.PathLike):
    """One row per run: config, calibration label/kind/pool, S_total, S_<dimension>, per-task retention
    (ret_<task>), raw scores (score_<task>), profile metrics, seconds."""
    import pandas as pd

    rows = []
    for r in Store(store_root).records():
        c = r["config"]
        row = {k: c[k] for k in ("calibration", "n", "seqlen", "seed", "method", "sparsity", "model", "suite")}
        row |= {"key": r["key"], "label": r["calibration"]["label"], "kind": r["calibration"]["kind"],
                "pool": r["calibration"]["pool"], "S_total": r["retention"]["total"]}
        row |= {f"S_{d}": v for d, v in r["retention"]["dimensions"].items()}
        row |= {f"ret_{t}": v for t, v in r["retention"]["tasks"].items()}
        row |= {f"score_{t}": v for t, v in r["scores"].items()}
        row |= {m: (r["profile"] or {}).get(m) for m in PROFILE_METRICS}
        row |= {"achieved_sparsity": r["prune"]["totals"].get("sparsity"),
                "mean_recon_error": r["prune"]["totals"].get("mean_recon_error"),
                "prune_warnings": len(r["prune"]["warnings"])}
        row |= {"prune_s": r["seconds"]["prune"], "eval_s": r["seconds"]["eval"], "run_s": r["seconds"]["run"]}
        rows.append(row)
    return pd.DataFrame(rows)
