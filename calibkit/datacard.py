"""The data card of a pruned model: which calibration data shaped it, what that data looks like, how it was pruned.

``data_card`` gathers it as a dict (it goes into ``prune_report.json`` under ``data_card``); ``model_card`` renders
it as the checkpoint's ``README.md``: a Hugging Face model card (YAML metadata the hub reads: ``base_model``,
``library_name``, ``pipeline_tag``, ``tags``) followed by tables. Provenance names the set's spec, seed, tokenizer and
N × L, how many sequences each source and capability gave, and two digests: of the records each sequence was drawn
from (source + record indices, in order) and of the token ids themselves, so that two cards tell whether two
checkpoints saw the same calibration data.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .profile import METRICS

# embedded model names -> the hub checkpoint they are a copy of (for the card's ``base_model``)
HUB_BASE = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}
CARD_VERSION = 1


def _sha256(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def provenance(cs) -> dict:
    """Where a ``CalibrationSet``'s sequences came from (see the module docstring)."""
    meta = cs.meta
    lengths = sorted({len(s["input_ids"]) for s in cs.sequences})
    return {"spec": meta.get("spec"), "seed": meta.get("seed"), "tokenizer": meta.get("tokenizer"),
            "n": len(cs), "seqlen": lengths[0] if len(lengths) == 1 else lengths,
            "file": Path(cs.origin).name if cs.origin else None,  # the name only: the card may be published
            "sources": cs.counts("source"), "dimensions": cs.counts("dimension"),
            "records_sha256": _sha256([[s.get("source"), s.get("records"), s.get("chosen")] for s in cs.sequences]),
            "tokens_sha256": cs.tokens_digest()}


def pruning_settings(report) -> dict:
    """The card's pruning part from a ``PruneReport`` or ``StructuredReport``: method, target, what was achieved,
    the options used, the time and the versions (the per-module details stay in the report)."""
    d = report.to_dict()
    keep = ("method", "kind", "sparsity", "settings", "options", "totals", "params", "decoder_params", "versions")
    return {k: d[k] for k in keep if k in d} | {"seconds": d["timing"]["total"]}


def data_card(model: str, pruning: dict, cs=None, profile: dict | None = None, profile_skipped: str | None = None) -> dict:
    """The card: base model, pruning settings (method, sparsity, options, timing), the calibration set's provenance
    and its profile (the seven metrics, or why it is absent)."""
    card = {"card_version": CARD_VERSION, "base_model": model, "pruning": pruning,
            "calibration": provenance(cs) if cs is not None else None}
    if cs is None:
        card["profile"], card["profile_skipped"] = None, "the method uses no calibration data"
    elif profile is None:
        card["profile"], card["profile_skipped"] = None, profile_skipped or "not computed"
    else:
        card["profile"] = {m: profile.get(m) for m in METRICS}
        card["profile_undefined"] = profile.get("undefined", {})
    return card


def _hub_base(model: str) -> str | None:
    """The hub id of the base model, or None for a local folder or a test model."""
    if model in HUB_BASE:
        return HUB_BASE[model]
    local = model.startswith((".", "/", "~")) or os.path.exists(model)
    return model if model.count("/") == 1 and not local else None


def _yaml_list(items) -> str:
    return "".join(f"\n- {json.dumps(str(i))}" for i in items)


def model_card(card: dict) -> str:
    """``README.md`` text for the checkpoint folder: hub metadata, then the card as tables."""
    p, cal = card["pruning"], card["calibration"]
    base = _hub_base(card["base_model"])
    tags = ["calibkit", "pruned", str(p.get("method")), f"sparsity-{p.get('sparsity')}"]
    front = ["---", "library_name: transformers", "pipeline_tag: text-generation"]
    front += [f"base_model: {json.dumps(base)}"] if base else []
    front += [f"tags:{_yaml_list(tags)}", "---", ""]  # no `datasets:`: calibkit's source names are not hub ids
    lines = [f"# {card['base_model']} pruned with calibkit ({p.get('method')}, {p.get('sparsity')})", ""]
    if base and base != card["base_model"]:
        lines += [f"Base: `{card['base_model']}` (calibkit's embedded copy of `{base}`).", ""]
    lines += ["## Pruning", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in p.items()]
    lines += ["", "## Calibration data", ""]
    if cal is None:
        lines += ["None: the method uses no calibration data.", ""]
    else:
        lines += ["| field | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in cal.items()]
        lines += ["", "### Profile (seven information metrics)", ""]
        if card["profile"] is None:
            lines += [f"Not computed: {card['profile_skipped']}.", ""]
        else:
            lines += ["| metric | value |", "|---|---|"]
            lines += [f"| {m} | {_cell(v) if v is not None else 'undefined: ' + card['profile_undefined'].get(m, '')} |"
                      for m, v in card["profile"].items()]
            lines += [""]
    lines += ["Written by `calibkit prune`; the same data is in `prune_report.json` under `data_card`.", ""]
    return "\n".join(front + lines)


def _cell(v) -> str:
    """A markdown table cell (a ``|`` inside would end it)."""
    if isinstance(v, float):
        return f"{v:.4g}"
    text = "`" + json.dumps(v, sort_keys=True) + "`" if isinstance(v, (dict, list)) else str(v)
    return text.replace("|", "\\|")
