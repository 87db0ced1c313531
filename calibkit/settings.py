"""Where calibkit keeps things: the cache directory and the optional local data directory.

Both are environment settings so that notebooks, the CLI and tests agree without passing paths around:

- ``CALIBKIT_CACHE``    cache root (assets, converted models, parsed records); default ``~/.cache/calibkit``.
- ``CALIBKIT_DATA_DIR`` a local copy of the study's corpora/benchmarks (layout in README, "Local data
  directory"); unset by default, in which case study sources resolve through the Hugging Face hub.

``cache_dir()`` creates a missing cache root and refuses one that can never hold a cache (an existing regular file, a
path under a regular file, a directory that cannot be created) with ``CacheDirError`` naming the path and
``CALIBKIT_CACHE``; an existing read-only cache can still be read. ``writable_cache_dir()`` is what code that writes
into the cache asks for: it creates the subdirectory and raises ``CacheDirError`` when it cannot be written.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

from .errors import ConfigError

CACHE_ENV = "CALIBKIT_CACHE"


class CacheDirError(ConfigError):
    """The cache directory (``CALIBKIT_CACHE``) cannot be used: not a directory, or not writable."""


def _cache_root() -> tuple[Path, str | None]:
    value = os.environ.get(CACHE_ENV)
    if value:
        return Path(value).expanduser(), value
    return Path(os.path.expanduser("~")) / ".cache" / "calibkit", None


def _cache_error(root: Path, value: str | None, why: str, path: Path | None = None) -> CacheDirError:
    where = f"{CACHE_ENV}={value}" if value is not None else f"the default cache directory ({CACHE_ENV} is unset)"
    what = f"{path} in the cache {root}" if path is not None and Path(path) != root else f"{root}"
    return CacheDirError(f"{where}: cannot use {what}: {why}. Set {CACHE_ENV} to a writable directory"
                         + (" (or unset it to use ~/.cache/calibkit)" if value is not None else ""))


def _unusable_reason(root: Path) -> str | None:
    """Why ``root`` can never be a cache directory, or None (a ``stat`` call; a missing root is created)."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        st = None  # a component of the path is a file: found below
    except OSError as e:
        return f"cannot access it ({e.strerror})"
    if st is not None:
        return None if stat.S_ISDIR(st.st_mode) else "it exists and is not a directory"
    # missing: it must be creatable, so the nearest existing ancestor has to be a writable directory
    parent = root.parent
    while True:
        try:
            pst = os.stat(parent)
            break
        except (FileNotFoundError, NotADirectoryError):
            if parent == parent.parent:
                return "none of its parent directories exists"
            parent = parent.parent
        except OSError as e:
            return f"cannot access {parent} ({e.strerror})"
    if not stat.S_ISDIR(pst.st_mode):
        return f"it cannot be created: {parent} is not a directory"
    try:  # the cache root is created on first use, so that one that can never exist is reported at once
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"it does not exist and cannot be created ({e.strerror or e})"
    return None


def cache_dir() -> Path:
    """The cache root (created if missing). Raises ``CacheDirError`` if it can never hold a cache."""
    root, value = _cache_root()
    why = _unusable_reason(root)
    if why:
        raise _cache_error(root, value, why)
    return root


def writable_cache_dir(*parts: str) -> Path:
    """``cache_dir() / parts``, created; raises ``CacheDirError`` naming the path if it cannot be written."""
    root = cache_dir()
    path = root.joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _cache_error(root, _cache_root()[1], f"cannot create the directory ({e.strerror or e})", path) from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise _cache_error(root, _cache_root()[1], "the directory is not writable", path)
    return path


def read_cache_json(path: str | os.PathLike, what: str = "cache file"):
    """The JSON value of a cache file that calibkit can derive again, or None when the file is missing, unreadable or
    not valid JSON; a damaged file gets a one-line note on stderr naming it (the caller then derives it again and
    overwrites it)."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as e:
        why = f"cannot be read ({e.strerror or e})"
    except (ValueError, UnicodeDecodeError) as e:
        why = f"is not valid JSON ({e})"
    cache_note(path, what, why)
    return None


def cache_note(path: str | os.PathLike, what: str, why: str) -> None:
    """One line on stderr: a cache file is not used and is derived again."""
    print(f"[calibkit] {what} {path} {why}; deriving it again", file=sys.stderr)


def data_dir() -> Path | None:
    value = os.environ.get("CALIBKIT_DATA_DIR")
    return Path(value) if value else None


def _in_cache(path: Path) -> bool:
    root, _ = _cache_root()
    try:
        return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(root))
    except (OSError, ValueError):
        return False


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the complete new one.

    A file inside the cache that cannot be written raises ``CacheDirError`` naming it and ``CALIBKIT_CACHE``.
    """
    path = Path(path)
    in_cache = _in_cache(path)
    if in_cache:
        cache_dir()  # a cache root that can never hold a cache is reported as such
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if in_cache:
            root, value = _cache_root()
            raise _cache_error(root, value, f"cannot write the file ({e.strerror or e})", path) from e
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
