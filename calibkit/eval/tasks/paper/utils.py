"""Datasets and scoring for the `paper` suite's lm-eval task YAMLs (the study's eight benchmarks).

Every loader reads the benchmark from the local data directory (``CALIBKIT_DATA_DIR``, files named below) when the
file is there, and from the Hugging Face hub otherwise (the ids lm-eval's stock tasks use). Where the local copy is
in a converted format it is converted here to the hub record layout, and the YAML says so. A file that is present
but malformed is an error naming the file and line; a missing one with no reachable hub names both.

Generated code is only ever run by :mod:`calibkit.eval.sandbox` (subprocess, limits, no network).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import datasets


def _root() -> Path | None:
    from calibkit.settings import data_dir

    return data_dir()


def _splits(**parts: list[dict]) -> datasets.DatasetDict:
    return datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in parts.items()})


def _local_or_hub(rel: str, local: Callable[[Path], datasets.DatasetDict],
                  hub: Callable[[], datasets.DatasetDict], hub_id: str) -> datasets.DatasetDict:
    from calibkit.data.readers import DataError, _check_hub_reachable

    root = _root()
    if root is not None and (root / rel).is_file():
        return local(root / rel)
    where = f"{root / rel} (CALIBKIT_DATA_DIR={root})" if root else "CALIBKIT_DATA_DIR/" + rel + " (unset)"
    try:
        _check_hub_reachable(hub_id)
        return hub()
    except Exception as e:
        raise DataError(f"benchmark file {where} not found, and {hub_id} could not be loaded from the hub: "
                        f"{type(e).__name__}: {e}") from e


def _jsonl(path: Path, *fields: str) -> list[dict]:
    from calibkit.data import readers as rd

    return rd.require_fields(rd.read_jsonl(path), fields, str(path))


def _hub(path: str, name: str | None = None, **splits: str) -> dict[str, list[dict]]:
    return {k: [dict(r) for r in datasets.load_dataset(path, name, split=v)] for k, v in splits.items()}


# --- General --------------------------------------------------------------------------------------

def lambada_openai(**_) -> datasets.DatasetDict:
    return _local_or_hub("lambada/lambada_test.jsonl",
                         lambda p: _splits(test=[{"text": r["text"]} for r in _jsonl(p, "text")]),
                         lambda: _splits(**_hub("EleutherAI/lambada_openai", "default", test="test")),
                         "EleutherAI/lambada_openai")


def triviaqa(**_) -> datasets.DatasetDict:
    """Converted locally: MosaicML's 3000-question subset (context "Question: …\\nAnswer:", answer, aliases
    clipped to ≤10 tokens) becomes {question_prompt, aliases = [answer] + aliases}."""
    def local(p):
        rows = [{"prompt": r["context"], "aliases": list(dict.fromkeys([r["answer"], *r["aliases"]]))}
                for r in _jsonl(p, "context", "answer", "aliases")]
        return _splits(test=rows)

    def hub():
        recs = _hub("mandarjoshi/trivia_qa", "rc.nocontext", test="validation")["test"]
        return _splits(test=[{"prompt": f"Question: {r['question']}?\nAnswer:", "aliases": r["answer"]["aliases"]}
                             for r in recs])
    return _local_or_hub("triviaqa/triviaqa_sm_sub.jsonl", local, hub, "mandarjoshi/trivia_qa")


# --- Commonsense ----------------------------------------------------------------------------------

def piqa(**_) -> datasets.DatasetDict:
    """Local: the official valid.jsonl with its line-aligned valid-labels.lst."""
    def local(p):
        from calibkit.data.readers import DataError, read_text

        rows = _jsonl(p, "goal", "sol1", "sol2")
        labels_path = p.with_name("valid-labels.lst")
        if not labels_path.is_file():
            raise DataError(f"{labels_path} not found (PIQA labels, line-aligned with {p.name})")
        labels = read_text(labels_path).split()
        if len(labels) != len(rows) or not set(labels) <= {"0", "1"}:
            raise DataError(f"{labels_path}: expected {len(rows)} labels 0/1, found {len(labels)}")
        return _splits(test=[{"goal": r["goal"], "sol1": r["sol1"], "sol2": r["sol2"], "label": int(y)}
                             for r, y in zip(rows, labels)])

    def hub():
        recs = _hub("baber/piqa", None, test="validation")["test"]
        return _splits(test=[{k: r[k] for k in ("goal", "sol1", "sol2", "label")} for r in recs])
    return _local_or_hub("piqa/valid.jsonl", local, hub, "baber/piqa")


def arc_easy(**_) -> datasets.DatasetDict:
    """Local: the original AI2 ARC-V1 jsonl (question.stem, question.choices[{text,label}], answerKey)."""
    def local(p):
        from calibkit.data.readers import DataError

        rows = []
        for i, r in enumerate(_jsonl(p, "question", "answerKey")):
            try:
                ch = r["question"]["choices"]
                rows.append({"question": r["question"]["stem"], "texts": [c["text"] for c in ch],
                             "gold": [c["label"] for c in ch].index(r["answerKey"])})
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"{p}:{i + 1}: not an ARC record ({type(e).__name__}: {e})") from None
        return _splits(test=rows)

    def hub():
        recs = _hub("allenai/ai2_arc", "ARC-Easy", test="test")["test"]
        return _splits(test=[{"question": r["question"], "texts": r["choices"]["text"],
                              "gold": r["choices"]["label"].index(r["answerKey"])} for r in recs])
    return _local_or_hub("arc_easy/ARC-Easy-Test.jsonl", local, hub, "allenai/ai2_arc")


# --- Code -----------------------------------------------------------------------------------------

HUMANEVAL_SHOTS = 3  # HumanEval/0..2 are the fixed 3-shot exemplars and are not evaluated


def humaneval(**_) -> datasets.DatasetDict:
    def split(recs):
        keep = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
        recs = [{k: r[k] for k in keep} for r in recs]
        shots = [r | {"is_fewshot": True} for r in recs[:HUMANEVAL_SHOTS]]
        return _splits(test=recs[HUMANEVAL_SHOTS:], prompt=shots)

    def local(p):
        return split(_jsonl(p, "task_id", "prompt", "canonical_solution", "test", "entry_point"))
    return _local_or_hub("humaneval/HumanEval.jsonl.gz", local,
                         lambda: split(_hub("openai/openai_humaneval", None, test="test")["test"]),
                         "openai/openai_humaneval")


def mbpp(**_) -> datasets.DatasetDict:
    """MBPP's standard splits by task id: 2-4 are the 3-shot prompts (as lm-eval's mbpp), 11-510 the test."""
    def split(recs):
        keep = ("task_id", "text", "code", "test_list", "test_setup_code")
        recs = sorted(({k: r.get(k, "") for k in keep} for r in recs), key=lambda r: int(r["task_id"]))
        test = [r for r in recs if 11 <= int(r["task_id"]) <= 510]
        shots = [r | {"is_fewshot": True} for r in recs if 2 <= int(r["task_id"]) <= 4]
        return _splits(test=test, prompt=shots)

    def hub():
        parts = _hub("google-research-datasets/mbpp", "full", test="test", prompt="prompt")
        return split(parts["test"] + parts["prompt"])
    return _local_or_hub("mbpp/mbpp.jsonl",
                         lambda p: split(_jsonl(p, "task_id", "text", "code", "test_list")),
                         hub, "google-research-datasets/mbpp")


def _sandbox_pass(program: str) -> dict:
    from calibkit.eval.sandbox import run_program

    return {"pass@1": float(run_program(program, timeout=10.0).passed)}


def humaneval_pass(doc: dict, results: list[str]) -> dict:
    """pass@1 of one greedy completion: prompt + completion + the task's tests, run in the sandbox."""
    program = f"{doc['prompt']}{results[0]}\n\n{doc['test']}\n\ncheck({doc['entry_point']})\n"
    return _sandbox_pass(program)


def mbpp_pass(doc: dict, results: list[str]) -> dict:
    program = "\n".join([doc.get("test_setup_code") or "", results[0], *doc["test_list"]]) + "\n"
    return _sandbox_pass(program)


# --- Math -----------------------------------------------------------------------------------------

def gsm8k(**_) -> datasets.DatasetDict:
    def local(p):
        train = p.with_name("train.jsonl")
        return _splits(test=_jsonl(p, "question", "answer"),
                       train=_jsonl(train, "question", "answer") if train.is_file() else [])
    return _local_or_hub("gsm8k/test.jsonl", local,
                         lambda: _splits(**_hub("openai/gsm8k", "main", test="test", train="train")),
                         "openai/gsm8k")


MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                 "prealgebra", "precalculus")


def _interleave(by_subject: dict[str, list[dict]]) -> list[dict]:
    """Round-robin over subjects so that the first N problems cover all seven subjects."""
    out, lists = [], [by_subject[s] for s in sorted(by_subject)]
    for i in range(max(map(len, lists))):
        out += [lst[i] for lst in lists if i < len(lst)]
    return out


def minerva_math(**_) -> datasets.DatasetDict:
    """MATH test (5000 problems, the set Minerva math evaluates on). Local: MosaicML's converted file (context =
    problem, chain_of_thought = solution, category = subject); the answer is re-extracted from the solution exactly
    as lm-eval's minerva_math does, so both roads give the same records."""
    from lm_eval.tasks.minerva_math.utils import last_boxed_only_string, normalize_final_answer, remove_boxed

    def rows(recs):
        by = {}
        for r in recs:
            by.setdefault(r["subject"], []).append(
                {"problem": r["problem"], "solution": r["solution"], "subject": r["subject"],
                 "answer": normalize_final_answer(remove_boxed(last_boxed_only_string(r["solution"])))})
        return _splits(test=_interleave(by))

    def local(p):
        return rows([{"problem": r["context"], "solution": r["chain_of_thought"], "subject": r["category"]}
                     for r in _jsonl(p, "context", "chain_of_thought", "category")])

    def hub():
        return rows([{"problem": r["problem"], "solution": r["solution"], "subject": s}
                     for s in MATH_SUBJECTS for r in _hub("EleutherAI/hendrycks_math", s, test="test")["test"]])
    return _local_or_hub("math/math.jsonl", local, hub, "EleutherAI/hendrycks_math")


def minerva_fewshot() -> list[dict]:
    """The first three of lm-eval's four Minerva exemplars (the study evaluates Math 3-shot)."""
    from lm_eval.tasks.minerva_math.utils import list_fewshot_samples

    return list_fewshot_samples()[:3]
