"""Pruning: pure per-method math (``magnitude``, ``wanda``, ``sparsegpt``), the layer-sequential ``engine``, the
``report``, and saving the pruned model as a Hugging Face checkpoint."""
from __future__ import annotations

import os
from pathlib import Path

from .engine import METHODS, PruneError, decoder_layers, layer_linears, prune_model
from .report import PruneReport
from .sparsity import Sparsity

REPORT_NAME = "prune_report.json"


def prune(model, calibration=None, method: str = "wanda", sparsity="0.5", **options) -> PruneReport:
    """Prune ``model`` in place (see ``engine.prune_model`` for the options) and return its report."""
    return prune_model(model, calibration, method, sparsity, **options)


def save_pruned(model, tokenizer, out: str | os.PathLike, report: PruneReport | None = None) -> Path:
    """``save_pretrained`` (safetensors) of model and tokenizer, plus ``prune_report.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    if report is not None:
        report.save(out / REPORT_NAME)
    return out


__all__ = ["METHODS", "PruneError", "PruneReport", "Sparsity", "decoder_layers", "layer_linears", "prune",
           "prune_model", "save_pruned"]
