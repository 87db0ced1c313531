"""Pruning: one file per method (``magnitude``, ``wanda``, ``sparsegpt``: pure math plus a ``base.Pruner`` object,
registered in ``methods``), the layer-sequential ``engine``, typed ``options``, the ``report``, and saving the
pruned model as a Hugging Face checkpoint. Structured pruning (``llm-pruner``, ``nirvana``): ``structured``
(gradient pass and selection), ``structured_scores`` (the math), ``surgery`` (removing units)."""
from __future__ import annotations

import os
from pathlib import Path

from ..outputs import atomic_dir
from .base import PruneContext, Pruned, Pruner
from .engine import PruneError, decoder_layers, layer_linears, prune_model
from .methods import METHODS
from .options import PruneOptions
from .report import PruneReport
from .sparsity import Sparsity
from .structured import STRUCTURED, StructuredError, StructuredReport, prune_structured

REPORT_NAME = "prune_report.json"


def prune(model, calibration=None, method: str = "wanda", sparsity="0.5", **options) -> PruneReport:
    """Prune ``model`` in place and return its report. ``options``: ``PruneOptions`` fields as keywords (or
    ``options=PruneOptions(...)``), ``progress`` and ``model_name``; see ``engine.prune_model``."""
    return prune_model(model, calibration, method, sparsity, **options)


def save_pruned(model, tokenizer, out: str | os.PathLike, report: PruneReport | None = None, *,
                overwrite: bool = False, inputs=(), card: dict | None = None) -> Path:
    """``save_pretrained`` (safetensors) of model and tokenizer, plus ``prune_report.json``, into a new folder
    (``calibkit.outputs``: never into an input, and an existing non-empty folder only with ``overwrite`` when
    calibkit wrote it). The folder appears complete or not at all. A structurally pruned model gets its config set
    to its widths; where its layers kept different widths (or a head count the config refuses) it is first padded in
    place with exact zero units (``surgery.make_loadable``: same outputs, loadable by ``from_pretrained``); the
    report records what was saved. ``card`` (``calibkit.datacard.data_card``) goes into the report under
    ``data_card`` and becomes the folder's ``README.md`` (a Hugging Face model card)."""
    if isinstance(report, StructuredReport):
        from .surgery import make_loadable

        saved = make_loadable(decoder_layers(model)[1], model.config)
        padded = any(a["kv_groups"] or a["neurons"] for a in saved["added"])
        report.options["saved"] = {"kv_groups": saved["kv_groups"], "neurons": saved["neurons"], "padded": padded,
                                   "params": sum(p.numel() for p in model.parameters())}
    with atomic_dir(out, overwrite, inputs=inputs, what="output folder") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if report is not None:
            report.save(tmp / REPORT_NAME, extra={"data_card": card} if card is not None else None)
        if card is not None:
            from ..datacard import model_card

            (tmp / "README.md").write_text(model_card(card), encoding="utf-8")
    return Path(out)


__all__ = ["METHODS", "STRUCTURED", "PruneContext", "PruneError", "PruneOptions", "PruneReport", "Pruned", "Pruner",
           "Sparsity", "StructuredError", "StructuredReport", "decoder_layers", "layer_linears", "prune", "prune_model",
           "prune_structured", "save_pruned"]
