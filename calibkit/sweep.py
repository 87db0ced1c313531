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
import re
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from .settings import atomic_write_bytes
from .errors import CalibkitError, ConfigError

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


# --- named parameter sets: a typed schema that refuses unknown keys and bad values up front ---------------------

_RUN_KEYS = ("model", "suite", "limit", "n", "seqlen", "seeds", "tasks")  # top-level defaults, per-group overrides


def _refuse_unknown(mapping: dict, allowed, where: str) -> None:
    import difflib

    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SweepError(f"{where}: unknown key {key!r}{hint}; known keys: {', '.join(sorted(allowed))}")


def _int(value, where: str, lo: int, none_ok: bool = False) -> int | None:
    if value is None and none_ok:
        return None
    if type(value) is not int or value < lo:  # bool, float (0.5), str are refused, never truncated
        raise SweepError(f"{where}: expected an integer >= {lo}{' or null' if none_ok else ''}, got {value!r}")
    return value


def _strings(value, where: str) -> tuple[str, ...]:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise SweepError(f"{where}: is empty")
    for v in items:
        if isinstance(v, (dict, list, bool)) or v is None:
            raise SweepError(f"{where}: expected a value or a list of values, got {v!r}")
    return tuple(str(v) for v in items)


@dataclass(frozen=True)
class RunSettings:
    """The settings every run of a group shares (top-level defaults, overridden per group)."""
    model: str
    suite: str = "embedded"
    limit: int | None = None
    n: int = 128
    seqlen: int = 2048
    seeds: tuple[int, ...] = (0,)
    tasks: tuple[str, ...] | None = None

    @classmethod
    def from_dict(cls, d: dict, where: str) -> RunSettings:
        from .eval.harness import SUITES, suite

        if not isinstance(d.get("model"), str) or not d["model"]:
            raise SweepError(f"{where}.model: a model name or path is required, got {d.get('model')!r}")
        name = d.get("suite", "embedded")
        if name not in SUITES:
            raise SweepError(f"{where}.suite: unknown suite {name!r}; known: {', '.join(SUITES)}")
        seeds = d.get("seeds", 0)
        seeds = tuple(_int(v, f"{where}.seeds", 0) for v in (seeds if isinstance(seeds, (list, tuple)) else [seeds]))
        if not seeds:
            raise SweepError(f"{where}.seeds: is empty")
        tasks = d.get("tasks")
        if tasks is not None:
            tasks = _strings(tasks, f"{where}.tasks")
            try:
                suite(name, list(tasks))
            except CalibkitError as e:
                raise SweepError(f"{where}.tasks: {e}") from None
        return cls(d["model"], name, _int(d.get("limit"), f"{where}.limit", 1, none_ok=True),
                   _int(d.get("n", 128), f"{where}.n", 1), _int(d.get("seqlen", 2048), f"{where}.seqlen", 1),
                   seeds, tasks)


@dataclass(frozen=True)
class Group:
    name: str
    calibration: tuple[str, ...]
    methods: tuple[str, ...]
    sparsities: tuple[str, ...]
    settings: RunSettings

    @classmethod
    def from_dict(cls, name: str, d, defaults: dict, where: str) -> Group:
        from .prune import METHODS, Sparsity

        if not isinstance(d, dict):
            raise SweepError(f"{where}: an experiment group must be a mapping, got {d!r}")
        _refuse_unknown(d, ("calibration", "methods", "sparsities", *_RUN_KEYS), where)
        for key in ("calibration", "methods", "sparsities"):
            if d.get(key) in (None, [], ""):
                raise SweepError(f"{where}.{key}: is missing or empty")
        methods = _strings(d["methods"], f"{where}.methods")
        for m in methods:
            if m not in METHODS:
                raise SweepError(f"{where}.methods: unknown method {m!r}; known: {', '.join(METHODS)}")
        sparsities = _strings(d["sparsities"], f"{where}.sparsities")
        for sp in sparsities:
            try:
                Sparsity.parse(sp)
            except CalibkitError as e:
                raise SweepError(f"{where}.sparsities: {e}") from None
        calibration = _strings(d["calibration"], f"{where}.calibration")
        for c in calibration:
            _check_calibration(c, methods, f"{where}.calibration")
        settings = RunSettings.from_dict(defaults | {k: v for k, v in d.items() if k in _RUN_KEYS}, where)
        return cls(name, calibration, methods, sparsities, settings)


def _check_calibration(calib: str, methods: tuple[str, ...], where: str) -> None:
    from .data.calibration import parse_mix
    from .data.sources import names as source_names

    if calib == NO_CALIBRATION:
        needing = [m for m in methods if m != "magnitude"]
        if needing:
            raise SweepError(f"{where}: {', '.join(needing)} need(s) calibration data, not {NO_CALIBRATION!r}")
    elif calib.startswith("selfgen:"):
        from .selfgen import METHODS as SELFGEN

        if calib.removeprefix("selfgen:") not in SELFGEN:
            raise SweepError(f"{where}: unknown self-generation method {calib!r}; "
                             f"known: {', '.join('selfgen:' + m for m in SELFGEN)}")
    elif calib not in source_names():
        try:
            parse_mix(calib)
        except CalibkitError as e:
            raise SweepError(f"{where}: {calib!r} is neither a source nor a mix ({e})") from None


@dataclass(frozen=True)
class Profile:
    name: str
    groups: tuple[Group, ...]
    highest_sparsity: str | None = None
    reference: str | None = None

    @classmethod
    def from_dict(cls, d, path: str | None = None) -> Profile:
        from .prune import Sparsity

        where = path or "sweep profile"
        if not isinstance(d, dict):
            raise SweepError(f"{where}: a sweep profile must be a mapping, got {type(d).__name__}")
        _refuse_unknown(d, ("name", "description", "highest_sparsity", "reference", "experiments", "path",
                            *_RUN_KEYS), where)
        exps = d.get("experiments")
        if not isinstance(exps, dict) or not exps:
            raise SweepError(f"{where}: needs a non-empty 'experiments' mapping of groups")
        defaults = {k: d[k] for k in _RUN_KEYS if k in d}
        groups = tuple(Group.from_dict(str(g), spec, defaults, f"{where}: experiments.{g}") for g, spec in exps.items())
        highest = d.get("highest_sparsity")
        if highest is not None:
            try:
                highest = str(Sparsity.parse(highest))
            except CalibkitError as e:
                raise SweepError(f"{where}: highest_sparsity: {e}") from None
        name = d.get("name", Path(path).stem if path else "sweep")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise SweepError(f"{where}: name must be a plain folder name (letters, digits, _ . -), got {name!r}")
        return cls(name, groups, highest, d.get("reference"))


def load_profile(name_or_path: str) -> dict:
    """A named parameter set (``calibkit/profiles/<name>.yaml``: smoke | embedded | paper) or a YAML file,
    validated in full (``Profile.from_dict``: unknown keys and bad values are refused, naming the key)."""
    path = Path(name_or_path)
    if not path.is_file():
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise SweepError(f"no sweep profile {name_or_path!r}: not a file, and not one of {', '.join(known)}")
    try:
        prof = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise SweepError(f"{path}: not valid YAML: {e}") from None
    typed = Profile.from_dict(prof, str(path))
    return prof | {"path": str(path), "name": typed.name}


def expand(profile: dict, overrides: dict | None = None) -> list[RunConfig]:
    """Every run config of every experiment group, deduplicated, in a stable order.

    Top-level keys are defaults (model, suite, limit, n, seqlen, seeds, tasks); each experiment group may override
    them and lists ``calibration``, ``methods`` and ``sparsities``. The whole profile is validated first."""
    typed = Profile.from_dict({k: v for k, v in profile.items()} | (overrides or {}), profile.get("path"))
    out, seen = [], set()
    for g in typed.groups:
        st = g.settings
        for calib, method, sparsity, seed in itertools.product(g.calibration, g.methods, g.sparsities, st.seeds):
            if method == "magnitude":
                calib, seed = NO_CALIBRATION, 0
            cfg = RunConfig(calib, st.n, st.seqlen, seed, method, sparsity, st.model, st.suite, st.limit, st.tasks)
            if cfg not in seen:
                seen.add(cfg)
                out.append(cfg)
    return out


# --- the store ------------------------------------------------------------------------------------

STORE_MARKER = ".calibkit-store"
RECORD_FIELDS = ("key", "config", "calibration", "retention", "scores", "prune", "seconds")


def checksum(record: dict) -> str:
    """sha256 of a record's canonical JSON without its own ``checksum`` field."""
    body = {k: v for k, v in record.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


class Store:
    """``<root>/runs/<key>.json`` (complete runs only), ``<root>/profiles/<calibration key>.json``.

    Every file carries a checksum of its content and is parsed and checked when read: a truncated, edited or
    otherwise invalid record is reported by path and counts as not done (the sweep recomputes it), never used."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.profiles = self.root / "profiles"
        self.invalid: dict[str, str] = {}  # path -> why, for every invalid file met so far

    def claim(self) -> None:
        """Make ``root`` a store, refusing a non-empty folder that is not one (nothing of the user's is touched)."""
        from .outputs import _check_parent

        if self.root.exists() and not self.root.is_dir():
            raise SweepError(f"store {self.root} exists and is not a folder")
        if self.root.is_dir() and not (self.root / STORE_MARKER).is_file():
            foreign = [p.name for p in self.root.iterdir() if p.name not in ("runs", "profiles")]
            if foreign:
                raise SweepError(f"store {self.root} is a non-empty folder that is not a calibkit store (it holds "
                                 f"{', '.join(sorted(foreign)[:3])}); choose another --store")
        _check_parent(self.root, "store")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / STORE_MARKER).touch()

    def path(self, cfg: RunConfig) -> Path:
        return self.runs / f"{cfg.key}.json"

    def _read(self, path: Path, expect_key: str | None = None, fields=RECORD_FIELDS) -> dict | None:
        """The record in ``path`` if it is valid; else None, with the reason kept in ``self.invalid``."""
        try:
            rec = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            return self._bad(path, f"unreadable or truncated ({e})")
        if not isinstance(rec, dict):
            return self._bad(path, "not a JSON object")
        if "checksum" in rec and rec["checksum"] != checksum(rec):
            return self._bad(path, "checksum mismatch (edited or damaged)")
        missing = [f for f in fields if f not in rec]
        if missing:
            return self._bad(path, f"lacks {', '.join(missing)}")
        if expect_key is not None and rec.get("key") != expect_key:
            return self._bad(path, f"holds the record of run {rec.get('key')!r}, not {expect_key!r}")
        return rec

    def _bad(self, path: Path, why: str) -> None:
        if str(path) not in self.invalid:
            self.invalid[str(path)] = why
            warnings.warn(f"invalid store file {path}: {why}; it is ignored and will be recomputed", RuntimeWarning,
                          stacklevel=3)
        return None

    def get(self, cfg: RunConfig) -> dict | None:
        path = self.path(cfg)
        return self._read(path, cfg.key) if path.is_file() else None

    def done(self, cfg: RunConfig) -> bool:
        return self.get(cfg) is not None

    def put(self, cfg: RunConfig, record: dict) -> Path:
        record = record | {"checksum": checksum(record)}
        path = self.path(cfg)
        atomic_write_bytes(path, (json.dumps(record, indent=1, default=str) + "\n").encode())
        return path

    def records(self) -> list[dict]:
        if not self.runs.is_dir():
            return []
        out = []
        for p in sorted(self.runs.glob("*.json")):
            rec = self._read(p, p.stem)
            if rec is not None:
                out.append(rec)
        return out

    def profile_path(self, calibration_key: str) -> Path:
        return self.profiles / f"{calibration_key}.json"

    def get_profile(self, calibration_key: str) -> dict | None:
        path = self.profile_path(calibration_key)
        return self._read(path, fields=("calibration",)) if path.is_file() else None

    def put_profile(self, calibration_key: str, prof: dict) -> None:
        prof = prof | {"checksum": checksum(prof)}
        atomic_write_bytes(self.profile_path(calibration_key), (json.dumps(prof, indent=1) + "\n").encode())

    def profile_records(self) -> list[dict]:
        if not self.profiles.is_dir():
            return []
        return [r for p in sorted(self.profiles.glob("*.json")) if (r := self._read(p, fields=("calibration",)))]

    def clean_partial(self) -> int:
        """Remove temp files a killed run left behind in the store's own folders (never read as records)."""
        stale = [p for d in (self.runs, self.profiles) if d.is_dir() for p in d.glob(".*.tmp-*")]
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
    cached = store.get_profile(cfg.calibration_key)
    if cached is not None:
        return cached
    prof = profile(cs, model, progress=False) | {"calibration": cfg.calibration, "n": cfg.n, "seqlen": cfg.seqlen,
                                                 "seed": cfg.seed, "model": cfg.model} | _calibration_info(cfg, cs)
    store.put_profile(cfg.calibration_key, prof)
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
    store.claim()
    for c in configs:
        if c.calibration != NO_CALIBRATION and c.calibration_key not in seen:
            seen.add(c.calibration_key)
            if store.get_profile(c.calibration_key) is None:
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

    rows = [_with_label(r) for r in Store(store_root).profile_records()]
    cols = ["label", "kind", "pool", "calibration", "seed", "n", "seqlen", *PROFILE_METRICS]
    return pd.DataFrame([{k: r.get(k) for k in cols} | {"undefined": "; ".join(r.get("undefined", {}).values())}
                         for r in rows], columns=cols + ["undefined"])


# --- executors --------------------------------------------------------------------------------------

def run_sweep(configs: list[RunConfig], store_root: str | os.PathLike, executor: str = "local",
              device: str = "cpu", ray_address: str | None = None, cpus_per_run: int = 2, progress: bool = True,
              ) -> dict:
    """Run every config whose record is missing. Returns {"done": n already there, "ran": n, "seconds": s}."""
    store = Store(store_root)
    store.claim()
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
