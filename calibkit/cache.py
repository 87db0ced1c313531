"""The one cache helper: content-keyed, atomic, one convention.

``cached(folder, key, make, what=...)`` returns the JSON value stored for ``key`` in
``<folder>/<prefix>-<digest(key)>.json``, or computes ``make()``, stores it atomically and returns it.

- ``key`` is a JSON-able description of *what the value is derived from*, by content: asset hashes, a model's
  ``models.identity``, parameters, seeds, versions of the code that derives it. Never a name as typed.
- The file holds ``{"key": key, "value": value, "sha256": <of the value's JSON>}``; a file that is damaged or
  edited, holds another key, or whose value fails ``valid`` is derived again with a one-line note on stderr naming
  it, never used.
- A miss returns the value as stored (JSON types: lists, not tuples), so a hit and a miss give the same thing.
- ``folder`` is a sub-folder of the cache root (``CALIBKIT_CACHE``) or an absolute path (a sweep store's
  ``profiles/``).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

from .settings import atomic_write_bytes, cache_dir, cache_note, read_cache_json


def digest(key: Any) -> str:
    """20 hex digits of the sha256 of ``key``'s canonical JSON."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


def path_for(folder: str | os.PathLike, key: Any, prefix: str) -> Path:
    base = Path(folder) if Path(folder).is_absolute() else cache_dir() / folder
    return base / f"{prefix}-{digest(key)}.json"


def load(folder: str | os.PathLike, key: Any, prefix: str, what: str,
         valid: Callable[[Any], bool] | None = None) -> Any | None:
    """The stored value for ``key``, or None (missing, damaged, another key, or not ``valid``: noted on stderr)."""
    path = path_for(folder, key, prefix)
    data = read_cache_json(path, what)
    if data is None:
        return None
    canonical = json.loads(json.dumps(key, sort_keys=True, default=str))
    if not isinstance(data, dict) or "value" not in data or data.get("key") != canonical:
        cache_note(path, what, "holds another key or an older layout")
        return None
    if data.get("sha256") != _value_sha(data["value"]):
        cache_note(path, what, "fails its checksum (edited or damaged)")
        return None
    if valid is not None and not valid(data["value"]):
        cache_note(path, what, "holds a value of the wrong shape")
        return None
    return data["value"]


def store(folder: str | os.PathLike, key: Any, prefix: str, value: Any) -> Any:
    """Write ``value`` for ``key``; returns the value as a later ``load`` will see it (JSON types)."""
    value = json.loads(json.dumps(value, ensure_ascii=False, default=str))  # as a later load will see it
    text = json.dumps({"key": key, "value": value, "sha256": _value_sha(value)}, ensure_ascii=False, default=str)
    atomic_write_bytes(path_for(folder, key, prefix), text.encode())
    return value


def _value_sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def values(folder: str | os.PathLike, prefix: str, what: str) -> list:
    """Every intact value stored in ``folder`` under ``prefix`` (damaged files are noted and skipped)."""
    base = Path(folder) if Path(folder).is_absolute() else cache_dir() / folder
    out = []
    for path in sorted(base.glob(f"{prefix}-*.json")) if base.is_dir() else []:
        data = read_cache_json(path, what)
        if isinstance(data, dict) and "value" in data and data.get("sha256") == _value_sha(data["value"]):
            out.append(data["value"])
        elif data is not None:
            cache_note(path, what, "fails its checksum or layout")
    return out


def cached(folder: str | os.PathLike, key: Any, make: Callable[[], Any], *, what: str, prefix: str = "v",
           valid: Callable[[Any], bool] | None = None, refresh: bool = False) -> Any:
    """``make()`` once per ``key``; see the module docstring."""
    if not refresh:
        value = load(folder, key, prefix, what, valid)
        if value is not None:
            return value
    return store(folder, key, prefix, make())  # the same JSON types on a miss as on a hit
