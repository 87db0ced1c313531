"""Evaluation suites run through lm-evaluation-harness on an in-memory model.

A suite maps lm-eval tasks (YAMLs under ``calibkit/eval/tasks/<suite>/``) to the four capability dimensions,
with the metric read from lm-eval's results, whether lower is better, and a default number of items sized for
the suite's purpose. Dense (unpruned) scores are cached per (model, suite, items) so that each pruned model
costs one evaluation.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from unittest import mock
from pathlib import Path

from ..settings import atomic_write_bytes, cache_dir, read_cache_json
from ..errors import CalibkitError

TASK_DIR = Path(__file__).with_name("tasks")


@dataclass(frozen=True)
class SuiteTask:
    name: str
    dimension: str
    metric: str
    lower_is_better: bool
    items: int  # default number of items (the first ones of the task's evaluation set)


SUITES: dict[str, tuple[SuiteTask, ...]] = {
    # Offline, on the embedded assets, sized for a 135 M model on 2 CPU cores; likelihood-based throughout.
    "embedded": (
        SuiteTask("ck_ptb_bpb", "General", "bits_per_byte", True, 3),
        SuiteTask("ck_social_iqa", "Commonsense", "acc", False, 60),
        SuiteTask("ck_humaneval_bpb", "Code", "bits_per_byte", True, 10),
        SuiteTask("ck_gsm8k_bpb", "Math", "bits_per_byte", True, 12),
    ),
    # The study's eight benchmarks (greedy, max length 2048, up to 1000 items each), from CALIBKIT_DATA_DIR or
    # the hub. A metric "name,filter" picks one of lm-eval's filtered variants.
    "paper": (
        SuiteTask("ck_lambada_openai", "General", "acc", False, 1000),
        SuiteTask("ck_triviaqa", "General", "exact_match", False, 1000),
        SuiteTask("ck_piqa", "Commonsense", "acc", False, 1000),
        SuiteTask("ck_arc_easy", "Commonsense", "acc", False, 1000),
        SuiteTask("ck_humaneval", "Code", "pass@1", False, 1000),
        SuiteTask("ck_mbpp", "Code", "pass@1", False, 1000),
        SuiteTask("ck_gsm8k", "Math", "exact_match,flexible-extract", False, 1000),
        SuiteTask("ck_minerva_math", "Math", "exact_match", False, 1000),
    ),
}


class EvalError(CalibkitError, RuntimeError):
    pass


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


def evaluate(model, tokenizer, suite_name: str = "embedded", limit: int | None = None, batch_size: int = 16,
             max_length: int = 2048, tasks: list[str] | None = None) -> dict:
    """Scores of ``model`` on every task of the suite: {"scores": {task: value}, "seconds": s, ...}."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    counts = item_counts(suite_name, limit, tasks)
    tasks = suite(suite_name, tasks)
    tm = task_manager(suite_name)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=max_length)
    t0 = time.perf_counter()
    # lm-eval's --limit (first N items, clipped to each task), or the default sizes per task when they differ
    sizes = set(counts.values())
    how = ({"limit": sizes.pop()} if len(sizes) == 1 else
           {"samples": {t.name: list(range(t.items)) for t in tasks}})
    # lm-eval records the git commit of the *current directory* (``git describe``), which means nothing for calibkit
    # and prints "fatal: not a git repository" outside a repository: that one lookup is skipped.
    with mock.patch("lm_eval.evaluator.get_git_commit_hash", lambda: None):
        res = lm_eval.simple_evaluate(model=lm, tasks=[t.name for t in tasks], task_manager=tm, log_samples=False,
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
    return {"suite": suite_name, "scores": scores, "items": counts, "seconds": seconds,
            "dimensions": {t.name: t.dimension for t in tasks},
            "lower_is_better": sorted(t.name for t in tasks if t.lower_is_better)}


def dense_scores(model_name: str, load, suite_name: str = "embedded", limit: int | None = None,
                 refresh: bool = False, tasks: list[str] | None = None) -> dict:
    """Cached evaluation of an unpruned model; ``load()`` returns (model, tokenizer) when the cache misses."""
    from ..models import identity

    # keyed by what the model *is* (content), never by the name as typed: ./base in two folders are two models
    key = hashlib.sha256(json.dumps([identity(model_name), suite_name, item_counts(suite_name, limit, tasks)])
                         .encode()).hexdigest()[:16]
    path = cache_dir() / "eval" / f"dense-{key}.json"
    cached = None if refresh else read_cache_json(path, "dense-score cache")
    if isinstance(cached, dict) and isinstance(cached.get("scores"), dict):
        return cached | {"cached": str(path)}
    model, tok = load()
    res = evaluate(model, tok, suite_name, limit, tasks=tasks) | {"model": model_name}
    atomic_write_bytes(path, (json.dumps(res, indent=2) + "\n").encode())
    return res | {"cached": None}


SHAPE_KEYS = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "vocab_size")


def check_same_architecture(base_config, pruned_config, where: str) -> None:
    """A pruned checkpoint must have its base's architecture (else retention compares different models)."""
    diff = [f"{k}: base {getattr(base_config, k, None)} vs {getattr(pruned_config, k, None)}" for k in SHAPE_KEYS
            if getattr(base_config, k, None) != getattr(pruned_config, k, None)]
    if diff:
        raise EvalError(f"{where} is not a pruned copy of the base model ({'; '.join(diff)})")
