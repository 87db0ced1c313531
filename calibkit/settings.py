"""Where calibkit keeps things: the cache directory and the optional local data directory.

Both are environment settings so that notebooks, the CLI and tests agree without passing paths around:

- ``CALIBKIT_CACHE``    cache root (assets, converted models); default ``~/.cache/calibkit``.
- ``CALIBKIT_DATA_DIR`` a local copy of the study's corpora/benchmarks (layout in README, "Local data
  directory"); unset by default, in which case study sources resolve through the Hugging Face hub.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("CALIBKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "calibkit")
    return Path(root)


def data_dir() -> Path | None:
    value = os.environ.get("CALIBKIT_DATA_DIR")
    return Path(value) if value else None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
