"""Evaluation suites run through lm-evaluation-harness on an in-memory model.

A suite is a folder of lm-eval task YAMLs, ``calibkit/eval/tasks/<suite>/``. Each task declares what calibkit needs in
its ``metadata: {calibkit: {...}}`` block: the capability ``dimension``, the ``metric`` read from lm-eval's results
("name" or "name,filter"), the default number of ``items`` (the first ones of the task's evaluation set) and its
``order`` in the suite. Whether lower is better is lm-eval's own ``higher_is_better`` of that metric in the task's
``metric_list``, negated (one declaration, which lm-eval's reports use too). Dense (unpruned) scores are cached per
(model, suite, items, task files) so that each pruned model costs one evaluation.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from unittest import mock
from pathlib import Path

import yaml

from .. import cache
from ..data.sources import DIMENSIONS
from ..errors import CalibkitError


class _QuietLmEvalHints(logging.Filter):
    """lm-eval's hints for its own command line that do not apply to calibkit's calls, dropped: every task with a
    Python dataset function ("kwargs can be passed with --metadata"), and passing an in-memory model to HFLM (which
    calibkit does on purpose, one process, no accelerate)."""

    HINTS = ("Custom kwargs can be passed", "`pretrained` model kwarg is not of type `str`",
             "Passed an already-initialized model through `pretrained`")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(h in message for h in self.HINTS)


for _name in ("lm_eval.api.task", "lm_eval.models.huggingface"):
    logging.getLogger(_name).addFilter(_QuietLmEvalHints())

TASK_DIR = Path(__file__).with_name("tasks")
META_KEY = "calibkit"  # the block of a task YAML's ``metadata`` that calibkit reads
META_FIELDS = {"dimension": str, "metric": str, "items": int, "order": int}


@dataclass(frozen=True)
class SuiteTask:
    name: str
    dimension: str
    metric: str
    lower_is_better: bool
    items: int  # default number of items (the first ones of the task's evaluation set)


class EvalError(CalibkitError, RuntimeError):
    pass


class _TaskLoader(yaml.SafeLoader):
    """YAML as lm-eval writes it; ``!function module.name`` stays a string (nothing is imported to read a suite)."""


_TaskLoader.add_constructor("!function", lambda loader, node: "!function " + loader.construct_scalar(node))


def read_task(path: Path) -> tuple[int, SuiteTask]:
    """(order, task) from one task YAML; errors name the file and what is wrong."""
    try:
        cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise EvalError(f"{path}: cannot read the task YAML ({e})") from e
    if not isinstance(cfg, dict) or not isinstance(cfg.get("task"), str):
        raise EvalError(f"{path}: not an lm-eval task YAML (no `task:` name)")
    metadata = cfg.get("metadata")
    meta = metadata.get(META_KEY) if isinstance(metadata, dict) else None
    if not isinstance(meta, dict):
        raise EvalError(f"{path}: no `metadata: {{{META_KEY}: {{...}}}}` block (needs {', '.join(META_FIELDS)})")
    unknown = sorted(set(meta) - set(META_FIELDS))
    missing = [k for k in META_FIELDS if k not in meta]
    problems = ([f"unknown key(s) {', '.join(unknown)}"] if unknown else []) + (
        [f"missing {', '.join(missing)}"] if missing else [])
    if problems:
        hint = ("; whether lower is better is the metric's `higher_is_better` in metric_list"
                if "lower_is_better" in unknown else "")
        raise EvalError(f"{path}: metadata.{META_KEY}: {'; '.join(problems)} (known: {', '.join(META_FIELDS)}){hint}")
    for key, kind in META_FIELDS.items():
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise EvalError(f"{path}: metadata.{META_KEY}.{key} must be {'an integer' if kind is int else 'text'}, "
                            f"got {meta[key]!r}")
    if meta["dimension"] not in DIMENSIONS:
        raise EvalError(f"{path}: metadata.{META_KEY}.dimension {meta['dimension']!r} is not one of "
                        f"{', '.join(DIMENSIONS)}")
    if meta["items"] <= 0:
        raise EvalError(f"{path}: metadata.{META_KEY}.items must be positive, got {meta['items']}")
    name = meta["metric"].split(",")[0]
    entry = next((m for m in cfg.get("metric_list") or [] if isinstance(m, dict) and m.get("metric") == name), None)
    if entry is None or not isinstance(entry.get("higher_is_better"), bool):
        raise EvalError(f"{path}: metric {name!r} needs an entry with `higher_is_better: true|false` in metric_list")
    return meta["order"], SuiteTask(cfg["task"], meta["dimension"], meta["metric"], not entry["higher_is_better"],
                                    meta["items"])


def read_suite(folder: Path) -> tuple[SuiteTask, ...]:
    """The tasks of one suite folder (its ``*.yaml``), in their declared order."""
    rows = sorted((read_task(p) for p in sorted(folder.glob("*.yaml"))), key=lambda r: r[0])
    orders = [o for o, _ in rows]
    if len(set(orders)) != len(orders):
        raise EvalError(f"{folder}: two tasks declare the same metadata.{META_KEY}.order ({orders})")
    return tuple(t for _, t in rows)


def read_suites(root: Path = TASK_DIR) -> dict[str, tuple[SuiteTask, ...]]:
    """Every suite under ``root``: a sub-folder holding task YAMLs (suite membership is the folder)."""
    return {d.name: read_suite(d) for d in sorted(root.iterdir()) if d.is_dir() and any(d.glob("*.yaml"))}


# embedded: offline, on the embedded assets, sized for a 135 M model on 2 CPU cores, likelihood-based throughout.
# paper: the study's eight benchmarks (greedy, max length 2048, up to 1000 items each), from CALIBKIT_DATA_DIR or the
# hub; a metric "name,filter" picks one of lm-eval's filtered variants.
SUITES: dict[str, tuple[SuiteTask, ...]] = read_suites()


def task_files_digest(suite_name: str) -> str:
    """sha256 over the suite folder's task files (YAMLs and their Python helpers), names and bytes."""
    h = hashlib.sha256()
    folder = TASK_DIR / suite_name
    for p in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def suite(name: str, tasks: list[str] | None = None) -> tuple[SuiteTask, ...]:
    """The suite's tasks, or the named subset of them (in the suite's order)."""
    if name not in SUITES:
        raise EvalError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    if not tasks:
        return SUITES[name]
    known = {t.name for t in SUITES[name]}
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise EvalError(f"unknown task(s) {', '.join(unknown)} in suite {name!r}; known: {', '.join(sorted(known))}")
    return tuple(t for t in SUITES[name] if t.name in tasks)


def task_manager(suite_name: str):
    """An lm-eval TaskManager over the suite's YAML folder (without lm-eval's own task index)."""
    from lm_eval.tasks import TaskManager

    suite(suite_name)
    folder = TASK_DIR / suite_name
    if not folder.is_dir():
        raise EvalError(f"task folder missing: {folder}")
    return TaskManager(include_path=str(folder), include_defaults=False)


def item_counts(suite_name: str, limit: int | None = None, tasks: list[str] | None = None) -> dict[str, int]:
    if limit is not None and limit <= 0:
        raise EvalError(f"--limit must be positive, got {limit}")
    return {t.name: t.items if limit is None else limit for t in suite(suite_name, tasks)}


def _quiet_lm_eval():
    """lm-eval's own progress bars (building contexts, tokenizing, requests) switched off, for callers with a bar
    of their own (a sweep shows runs done / total, elapsed and ETA)."""
    import contextlib

    from tqdm import tqdm

    silent = lambda *a, **k: tqdm(*a, **(k | {"disable": True}))  # noqa: E731
    stack = contextlib.ExitStack()
    for module in ("lm_eval.api.task", "lm_eval.api.model", "lm_eval.models.huggingface", "calibkit.eval.scorer"):
        stack.enter_context(mock.patch(f"{module}.tqdm", silent))
    return stack


# scorer -> the name recorded with its numbers (bump calibkit's when the numbers it gives change)
SCORERS = {"calibkit": "calibkit-scored-1", "lm-eval": "lm-eval-hflm"}


def scorer_name(scorer: str) -> str:
    """The recorded name of a scorer; an unknown one is refused."""
    if scorer not in SCORERS:
        raise EvalError(f"unknown scorer {scorer!r}; known: {', '.join(SCORERS)}")
    return SCORERS[scorer]


def _lm(model, tokenizer, scorer: str, batch_size: int, max_length: int):
    """The lm-eval model: calibkit's scorer (``calibkit.eval.scorer``: sorted and packed requests, the output head
    only at scored positions, float32 log-softmax) or lm-eval's own ``HFLM``; the name goes into the results."""
    name = scorer_name(scorer)
    if scorer == "calibkit":
        from .scorer import ScoredLM as LM
    else:
        from lm_eval.models.huggingface import HFLM as LM
    return LM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length), name


def evaluate(model, tokenizer, suite_name: str = "embedded", limit: int | None = None, batch_size: int = 8,
             max_length: int = 2048, tasks: list[str] | None = None, progress: bool = True,
             scorer: str = "calibkit") -> dict:
    """Scores of ``model`` on every task of the suite: {"scores": {task: value}, "per_item": {task: [...]},
    "seconds": s, "scorer": name, ...}. ``batch_size`` is lm-eval's (its generation requests, and every request
    with ``scorer="lm-eval"``; 8 beat 16, 32 and 64 on a 2-core CPU); calibkit's scorer packs likelihood requests
    under a token budget of its own."""
    import lm_eval

    counts = item_counts(suite_name, limit, tasks)
    tasks = suite(suite_name, tasks)
    tm = task_manager(suite_name)
    lm, scorer_name = _lm(model, tokenizer, scorer, batch_size, max_length)
    t0 = time.perf_counter()
    # lm-eval's --limit (first N items, clipped to each task), or the default sizes per task when they differ
    sizes = set(counts.values())
    how = ({"limit": sizes.pop()} if len(sizes) == 1 else
           {"samples": {t.name: list(range(t.items)) for t in tasks}})
    # lm-eval records the git commit of the *current directory* (``git describe``), which means nothing for calibkit
    # and prints "fatal: not a git repository" outside a repository: that one lookup is skipped.
    import contextlib

    with mock.patch("lm_eval.evaluator.get_git_commit_hash", lambda: None), \
            (contextlib.nullcontext() if progress else _quiet_lm_eval()):
        res = lm_eval.simple_evaluate(model=lm, tasks=[t.name for t in tasks], task_manager=tm, log_samples=True,
                                      bootstrap_iters=0, verbosity="ERROR", confirm_run_unsafe_code=True, **how)
    seconds = time.perf_counter() - t0
    scores = {}
    for t in tasks:
        row = res["results"].get(t.name, {})
        key = next((k for k in row if k == t.metric or ("," not in t.metric and k.split(",")[0] == t.metric)),
                   None)
        if key is None:
            raise EvalError(f"lm-eval returned no {t.metric} for {t.name}: {sorted(row)}")
        scores[t.name] = float(row[key])
    per_item = {t.name: item_values(res["samples"].get(t.name, []), t) for t in tasks}
    return {"suite": suite_name, "scores": scores, "items": counts, "seconds": seconds, "per_item": per_item,
            "scorer": scorer_name,
            "dimensions": {t.name: t.dimension for t in tasks}, "metrics": {t.name: t.metric for t in tasks},
            "lower_is_better": sorted(t.name for t in tasks if t.lower_is_better)}


def item_values(samples: list[dict], task: SuiteTask) -> list:
    """Per-item values of the task's metric in item order, as lm-eval's process_results gave them: a number (e.g.
    acc), or [numerator, denominator] for weighted aggregations (bits per byte: [log-likelihood, bytes])."""
    name = task.metric.split(",")[0]
    rows = sorted(samples, key=lambda s: s["doc_id"])
    if not rows or name not in rows[0]:
        raise EvalError(f"lm-eval logged no per-item {name} for {task.name}")
    return [list(map(float, r[name])) if isinstance(r[name], (list, tuple)) else float(r[name]) for r in rows]


def dense_scores(model_name: str, load, suite_name: str = "embedded", limit: int | None = None,
                 refresh: bool = False, tasks: list[str] | None = None, dtype: str = "float32",
                 scorer: str = "calibkit", progress: bool = True) -> dict:
    """Cached evaluation of an unpruned model; ``load()`` returns (model, tokenizer) when the cache misses, the model
    already in ``dtype`` (part of the key: a float32 and a bfloat16 evaluation are different measurements).
    ``"cached"`` in the answer is the cache file when the scores came from it, else None."""
    from importlib.metadata import version

    from ..models import identity

    # keyed by what the model *is* (content), never by the name as typed: ./base in two folders are two models;
    # and by the task files and lm-eval's version, so that a changed task is evaluated again
    key = {"model": identity(model_name), "suite": suite_name, "items": item_counts(suite_name, limit, tasks),
           "task_files": task_files_digest(suite_name), "lm_eval": version("lm_eval"), "dtype": dtype,
           "scorer": scorer_name(scorer)}
    computed = []

    def make():
        model, tok = load()
        computed.append(True)
        return evaluate(model, tok, suite_name, limit, tasks=tasks, scorer=scorer, progress=progress) | {
            "model": model_name}

    res = cache.cached("eval", key, make, what="dense-score cache", prefix="dense", refresh=refresh,
                       valid=lambda v: isinstance(v, dict) and isinstance(v.get("scores"), dict)
                       and isinstance(v.get("per_item"), dict))
    return res | {"cached": None if computed else str(cache.path_for("eval", key, "dense"))}


SHAPE_KEYS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "vocab_size")


def check_same_architecture(base_config, pruned_config, where: str) -> None:
    """A pruned checkpoint must have its base's architecture (else retention compares different models)."""
    diff = [f"{k}: base {getattr(base_config, k, None)} vs {getattr(pruned_config, k, None)}" for k in SHAPE_KEYS
            if getattr(base_config, k, None) != getattr(pruned_config, k, None)]
    if diff:
        raise EvalError(f"{where} is not a pruned copy of the base model ({'; '.join(diff)})")
