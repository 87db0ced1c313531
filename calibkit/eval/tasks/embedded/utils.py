"""Datasets and scoring helpers for the `embedded` suite's lm-eval task YAMLs (offline, from calibkit's assets).

Items come from each source's *evaluation* part (``calibkit.data.sources.records(name, "evaluation")``), which is
disjoint from every calibration draw; PTB uses its test split (calibration draws from train).
"""
from __future__ import annotations

import datasets


def _test(rows: list[dict]) -> datasets.DatasetDict:
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def _eval_records(name: str) -> list[dict]:
    from calibkit.data import sources

    return sources.records(name, "evaluation")


def ptb_test(lines_per_doc: int = 4, **_) -> datasets.DatasetDict:
    """PTB test (Mikolov preprocessing) as documents of ``lines_per_doc`` consecutive sentences."""
    from calibkit.data.readers import ptb_lines

    lines = ptb_lines("test")
    return _test([{"text": "\n".join(lines[i:i + lines_per_doc])} for i in range(0, len(lines), lines_per_doc)])


def social_iqa(**_) -> datasets.DatasetDict:
    """Situation + question as context, the gold answer as the continuation scored."""
    return _test([{"context": f"{r['input'].strip()}\nAnswer:", "target": " " + r["choices"][int(r["gold"])]}
                  for r in _eval_records("social-iqa")])


def humaneval(**_) -> datasets.DatasetDict:
    return _test([{"text": r["prompt"] + r["canonical_solution"]} for r in _eval_records("humaneval")])


def gsm8k(**_) -> datasets.DatasetDict:
    return _test([{"context": f"Question: {r['question']}\nAnswer:", "target": " " + r["answer"]}
                  for r in _eval_records("gsm8k-test")])


def continuation_bits_per_byte(doc: dict, results) -> dict:
    """Bits per byte of the reference continuation given its context (lower is better)."""
    loglikelihood, _greedy = results[0]
    return {"bits_per_byte": (loglikelihood, len(doc["target"].encode("utf-8")))}
