"""Record parsers of the calibration sources: local files of the study's corpora and the embedded assets.

Each parser takes the list of file paths of one source and returns its records (dicts); errors name the file and
line. The registry (``sources.py``) says which parser reads which source.
"""
from __future__ import annotations

import re

from .. import assets
from . import readers as rd
from .readers import DataError


# --- local files of the study sources ----------------------------------------------------------

def jsonl(paths):
    return [r for p in paths for r in rd.read_jsonl(p)]


def json_array(paths):
    return [r for p in paths for r in rd.read_json_array(p)]


def fields(reader, *names):
    def read(paths):
        return [r for p in paths for r in rd.require_fields(reader([p]), names, str(p))]
    return read


def lines(paths):
    return [{"text": line.strip()} for p in paths for line in rd.read_text(p).splitlines() if line.strip()]


def tinystories(paths):
    out = []
    for p in paths:
        text = rd.read_text(p)
        parts = text.split("<|endoftext|>")
        if not text.rstrip().endswith("<|endoftext|>"):
            parts = parts[:-1]  # the last story of a cut file is incomplete
        out += [{"text": s.strip()} for s in parts if s.strip()]
    return out


WIKITEXT_TITLE = re.compile(r"^ = [^=].* = $")


def wikitext_articles(lines: list[str]) -> list[dict]:
    """Group WikiText lines into articles at top-level ' = Title = ' headings."""
    docs, cur = [], []
    for line in lines:
        if WIKITEXT_TITLE.match(line.rstrip("\n")) and cur:
            docs.append({"text": "".join(cur).strip()})
            cur = []
        cur.append(line if line.endswith("\n") else line + "\n")
    if cur:
        docs.append({"text": "".join(cur).strip()})
    return [d for d in docs if d["text"]]


def wikitext_raw(paths):
    return [d for p in paths for d in wikitext_articles(rd.read_text(p).splitlines(keepends=True))]


def mbpp_train(records):
    # MBPP's standard split: 1-10 prompt, 11-510 test, 511-600 validation, 601-974 train.
    return [r for r in records if 601 <= int(r["task_id"]) <= 974]


def hellaswag_derived(paths):
    out = []
    for p in paths:
        lines = rd.read_text(p).splitlines()
        if len(lines) % 6:
            raise DataError(f"{p}:{len(lines)}: expected 6 lines per task, file has {len(lines)} lines")
        for i in range(0, len(lines), 6):
            try:
                label = int(lines[i + 1])
            except ValueError:
                raise DataError(f"{p}:{i + 2}: expected the gold label 0-3, got {lines[i + 1]!r}") from None
            out.append({"context": lines[i], "label": label, "endings": lines[i + 2:i + 6]})
    return out


def tsv(*required):
    def read(paths):
        return [r for p in paths for r in rd.read_tsv(p, required)]
    return read


# --- embedded readers ------------------------------------------------------------------------------

def ptb(paths, lines_per_doc: int = 40):
    lines = rd.ptb_lines("train", paths[0])
    return [{"text": "\n".join(lines[i:i + lines_per_doc])} for i in range(0, len(lines), lines_per_doc)]


SCENE = re.compile(r"^\s*(ACT [IVX]+\.|Scene [IVX]+\.|SCENE [IVX]+\.)", re.MULTILINE)


def shakespeare(paths):
    """Plays split into scenes (sonnets into groups of ten), each a record."""
    out = []
    for p in paths:
        text = rd.read_text(p)
        cuts = [m.start() for m in SCENE.finditer(text)]
        if not cuts:  # the sonnets: numbered poems
            poems = [s.strip() for s in re.split(r"\n\s*[IVXLC]+\s*\n", text) if s.strip()]
            chunks = ["\n\n".join(poems[i:i + 10]) for i in range(0, len(poems), 10)]
        else:
            bounds = cuts + [len(text)]
            chunks = [text[a:b].strip() for a, b in zip(bounds, bounds[1:])]
        out += [{"text": c} for c in chunks if len(c) > 200]
    return out


def humaneval(paths):
    return rd.require_fields(rd.read_jsonl(paths[0]), ("prompt", "canonical_solution"), str(paths[0]))


def codeio(paths):
    return rd.require_fields(rd.read_jsonl(paths[0]), ("task_description", "code_sample"), str(paths[0]))


def gsm_symbolic(paths):
    # the templates are executed: each file only from bytes that match its asset's pinned sha256
    pinned = {a.path: a.sha256 for a in map(assets.get, GSM_SYMBOLIC_KEYS)}
    return rd.gsm_symbolic_problems(paths[:2], paths[2], n=3000, sha256=pinned)


GSM_SYMBOLIC_KEYS = ("gsm-symbolic-00-49", "gsm-symbolic-50-99", "gsm-symbolic-utils")


def bigbench(paths):
    return rd.read_bigbench_task(paths[0])


def enwiki(paths):
    return rd.read_mediawiki_dump(paths[0])


def lee(paths):
    return lines(paths)


def gsm8k_asset(paths):
    return rd.require_fields(rd.read_jsonl(paths[0]), ("question", "answer"), str(paths[0]))
