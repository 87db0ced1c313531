"""Sweep configuration: run configs, their keys, and the typed profile schema (refuses unknown keys up front)."""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from ..errors import CalibkitError, ConfigError

PROFILE_DIR = Path(__file__).parent.parent / "profiles"
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
    eval_dtype: str = "float32"  # dtype the (dense and pruned) models are evaluated in; pruning is always float32

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """The config from ``asdict(cfg)`` as a record stores it or a worker receives it (``tasks`` as a list)."""
        return cls(**(d | {"tasks": tuple(d["tasks"]) if d.get("tasks") else None}))

    @property
    def key(self) -> str:
        return run_key(self)

    @property
    def calibration_identity(self) -> dict:
        """What decides this run's calibration set: spec, N, L, seed, model, and for an OASIS selection the pruner
        and sparsity it selects for. Runs with the same identity share the set and its stored profile."""
        ident = {"calibration": self.calibration, "n": self.n, "seqlen": self.seqlen, "seed": self.seed,
                 "model": self.model}
        if self.calibration.startswith("select:oasis"):
            ident |= {"method": self.method, "sparsity": self.sparsity}
        return ident

    @property
    def calibration_key(self) -> str:
        return hashlib.sha256(json.dumps(self.calibration_identity, sort_keys=True).encode()).hexdigest()[:16]


def run_key(cfg: RunConfig) -> str:
    return hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:20]


# --- named parameter sets: a typed schema that refuses unknown keys and bad values up front ---------------------

_RUN_KEYS = ("model", "suite", "limit", "n", "seqlen", "seeds", "tasks", "eval_dtype")
EVAL_DTYPES = ("float32", "bfloat16")  # top-level defaults, per-group overrides


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


def _ints(value, where: str, lo: int) -> tuple[int, ...]:
    """One integer or a non-empty list of distinct ones."""
    values = tuple(_int(v, where, lo) for v in (value if isinstance(value, (list, tuple)) else [value]))
    if not values or len(set(values)) != len(values):
        raise SweepError(f"{where}: expected an integer or a list of distinct integers, got {value!r}")
    return values


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
    n: tuple[int, ...] = (128,)  # a list in the YAML sweeps the set size (OASIS's macro view), else one value
    seqlen: tuple[int, ...] = (2048,)
    seeds: tuple[int, ...] = (0,)
    tasks: tuple[str, ...] | None = None
    eval_dtype: str = "float32"

    @classmethod
    def from_dict(cls, d: dict, where: str) -> RunSettings:
        from ..eval.harness import SUITES, suite

        if not isinstance(d.get("model"), str) or not d["model"]:
            raise SweepError(f"{where}.model: a model name or path is required, got {d.get('model')!r}")
        name = d.get("suite", "embedded")
        if name not in SUITES:
            raise SweepError(f"{where}.suite: unknown suite {name!r}; known: {', '.join(SUITES)}")
        seeds = _ints(d.get("seeds", 0), f"{where}.seeds", 0)
        tasks = d.get("tasks")
        if tasks is not None:
            tasks = _strings(tasks, f"{where}.tasks")
            try:
                suite(name, list(tasks))
            except CalibkitError as e:
                raise SweepError(f"{where}.tasks: {e}") from None
        eval_dtype = d.get("eval_dtype", "float32")
        if eval_dtype not in EVAL_DTYPES:
            raise SweepError(f"{where}.eval_dtype: expected one of {', '.join(EVAL_DTYPES)}, got {eval_dtype!r}")
        return cls(d["model"], name, _int(d.get("limit"), f"{where}.limit", 1, none_ok=True),
                   _ints(d.get("n", 128), f"{where}.n", 1), _ints(d.get("seqlen", 2048), f"{where}.seqlen", 1),
                   seeds, tasks, eval_dtype)


@dataclass(frozen=True)
class Group:
    name: str
    calibration: tuple[str, ...]
    methods: tuple[str, ...]
    sparsities: tuple[str, ...]
    settings: RunSettings

    @classmethod
    def from_dict(cls, name: str, d, defaults: dict, where: str) -> Group:
        from ..prune import METHODS, STRUCTURED, Sparsity

        if not isinstance(d, dict):
            raise SweepError(f"{where}: an experiment group must be a mapping, got {d!r}")
        _refuse_unknown(d, ("calibration", "samples", "methods", "sparsities", *_RUN_KEYS), where)
        if ("calibration" in d) == ("samples" in d):
            raise SweepError(f"{where}: give either `calibration` (a list of sets) or `samples` (single samples and "
                             "pairs of one set), not " + ("both" if "samples" in d else "neither"))
        for key in ("calibration" if "calibration" in d else "samples", "methods", "sparsities"):
            if d.get(key) in (None, [], ""):
                raise SweepError(f"{where}.{key}: is missing or empty")
        methods = _strings(d["methods"], f"{where}.methods")
        for m in methods:
            if m not in METHODS and m not in STRUCTURED:
                raise SweepError(f"{where}.methods: unknown method {m!r}; known: {', '.join([*METHODS, *STRUCTURED])}")
        sparsities = _strings(d["sparsities"], f"{where}.sparsities")
        try:  # canonical text, so that 0.5, "0.50" and "50%" are one run key
            sparsities = tuple(str(Sparsity.parse(sp)) for sp in sparsities)
        except CalibkitError as e:
            raise SweepError(f"{where}.sparsities: {e}") from None
        if any(m in STRUCTURED for m in methods) and any(":" in sp for sp in sparsities):
            raise SweepError(f"{where}: structured methods ({', '.join(m for m in methods if m in STRUCTURED)}) "
                             "take a fraction of the decoder weights, not an N:M pattern")
        calibration = (_strings(d["calibration"], f"{where}.calibration") if "calibration" in d
                       else sample_specs(d["samples"], f"{where}.samples"))
        for c in calibration:
            _check_calibration(c, methods, f"{where}.calibration")
        settings = RunSettings.from_dict(defaults | {k: v for k, v in d.items() if k in _RUN_KEYS}, where)
        if "samples" in d and len(settings.seeds) != 1:  # ptb#3 is sequence 3 *of one draw*: a sample per seed
            raise SweepError(f"{where}.seeds: a `samples:` group names sequences of one draw; give one seed, not "
                             f"{list(settings.seeds)} (another seed is another set of samples: another group)")
        return cls(name, calibration, methods, sparsities, settings)


SAMPLE_KEYS = ("of", "singles", "pairs", "pair_seed")


def sample_specs(d, where: str) -> tuple[str, ...]:
    """The calibration specs of a per-sample group (OASIS §3.2): ``{of: SPEC, singles: K, pairs: P, pair_seed: S}``
    gives ``SPEC#0`` … ``SPEC#K-1`` (each sequence of the run seed's draw of SPEC alone) and P distinct pairs
    ``SPEC#i,j`` of them, drawn uniformly without replacement with ``random.Random(pair_seed)`` (default 0) before
    anyone knows the samples' tiers, so that intra- and inter-tier pairs come from one unbiased design."""
    import random

    if not isinstance(d, dict):
        raise SweepError(f"{where}: expected a mapping {{of, singles, pairs, pair_seed}}, got {d!r}")
    _refuse_unknown(d, SAMPLE_KEYS, where)
    if not isinstance(d.get("of"), str) or not d["of"]:
        raise SweepError(f"{where}.of: the calibration set the samples come from is required (e.g. ptb)")
    k = _int(d.get("singles"), f"{where}.singles", 2)
    n_pairs = _int(d.get("pairs", 0), f"{where}.pairs", 0)
    if n_pairs > k * (k - 1) // 2:
        raise SweepError(f"{where}.pairs: {n_pairs} pairs asked, but {k} samples have only {k * (k - 1) // 2}")
    base = d["of"]
    every = list(itertools.combinations(range(k), 2))
    random.Random(_int(d.get("pair_seed", 0), f"{where}.pair_seed", 0)).shuffle(every)  # P pairs: the first P
    return tuple(f"{base}#{i}" for i in range(k)) + tuple(f"{base}#{i},{j}" for i, j in sorted(every[:n_pairs]))


def _check_calibration(calib: str, methods: tuple[str, ...], where: str) -> None:
    from ..spec import parse

    try:
        kind = parse(calib).kind
    except CalibkitError as e:
        raise SweepError(f"{where}: {e}") from None
    if calib.startswith("select:oasis"):
        from ..select import PRUNERS

        bad = [m for m in methods if m not in PRUNERS]
        if bad:
            raise SweepError(f"{where}: OASIS selects through a pruner's differentiable saliency "
                             f"({', '.join(PRUNERS)}), not {', '.join(bad)}")
    if kind == "none":
        needing = [m for m in methods if m != "magnitude"]
        if needing:
            raise SweepError(f"{where}: {', '.join(needing)} need(s) calibration data, not {NO_CALIBRATION!r}")


@dataclass(frozen=True)
class Profile:
    name: str
    groups: tuple[Group, ...]
    highest_sparsity: str | None = None
    reference: str | None = None

    @classmethod
    def from_dict(cls, d, path: str | None = None) -> Profile:
        from ..prune import Sparsity

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


def restrict_groups(profile: dict, groups: list[str]) -> dict:
    """The profile with only the named experiment groups (unknown names are refused, listing the known ones)."""
    unknown = [g for g in groups if g not in profile["experiments"]]
    if unknown:
        raise SweepError(f"no experiment group {', '.join(unknown)} in {profile.get('path', profile.get('name'))}; "
                         f"groups: {', '.join(profile['experiments'])}")
    return profile | {"experiments": {g: profile["experiments"][g] for g in groups}}


def expand(profile: dict, overrides: dict | None = None) -> list[RunConfig]:
    """Every run config of every experiment group, deduplicated, in a stable order: group by group, and within a
    group seed by seed (every set's first seed before any second seed, so a study cut short has whole seeds).

    Top-level keys are defaults (model, suite, limit, n, seqlen, seeds, tasks); each experiment group may override
    them and lists ``calibration``, ``methods`` and ``sparsities``. The whole profile is validated first."""
    from ..spec import parse

    typed = Profile.from_dict({k: v for k, v in profile.items()} | (overrides or {}), profile.get("path"))
    out, seen = [], set()
    for g in typed.groups:
        st = g.settings
        for seed, calib, n, seqlen, method, sparsity in itertools.product(st.seeds, g.calibration, st.n, st.seqlen,
                                                                          g.methods, g.sparsities):
            if method == "magnitude":  # no calibration: one run whatever the set's seed, size or length
                calib, seed, n, seqlen = NO_CALIBRATION, 0, st.n[0], st.seqlen[0]
            ids = parse(calib).ids  # chosen samples: the set has one sequence per id, whatever n says
            cfg = RunConfig(calib, len(ids) if ids else n, seqlen, seed, method, sparsity, st.model, st.suite,
                            st.limit, st.tasks, st.eval_dtype)
            if cfg not in seen:
                seen.add(cfg)
                out.append(cfg)
    return out
