"""Safe outputs: calibkit never deletes or overwrites anything it did not create.

Rules for every writer (checked by ``check_output_dir`` / ``check_output_files`` *before* any work is done):

- an output equal to an input, inside an input folder, or containing an input is always refused;
- a path that exists and is not empty is refused unless ``overwrite`` is given, and even then a folder is replaced
  only when calibkit wrote it (it holds the marker file ``.calibkit-output``); a file only when it is a file;
- a path whose parent cannot be created or written to is refused with the path named.

``atomic_dir`` writes a folder to a temporary sibling, stamps the marker and renames it into place; the folder it
replaces (one that calibkit wrote, with ``overwrite``) is removed only after the new one is in place.
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError

MARKER = ".calibkit-output"


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path)))).resolve()


def _related(out: Path, inp: Path) -> str | None:
    if out == inp:
        return "is the same path as"
    if inp.is_relative_to(out):
        return "contains"
    if out.is_relative_to(inp) and inp.is_dir():
        return "is inside"
    return None


def _check_inputs(out: Path, inputs, what: str) -> None:
    for inp in inputs or ():
        if inp is None:
            continue
        how = _related(out, _resolved(inp))
        if how:
            raise OutputError(f"{what} {out} {how} the input {inp}; choose another output path")


def check_parent(path: Path, what: str) -> None:
    """The nearest existing ancestor must be a writable directory (so the output can be created)."""
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot create {what} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot create {what} {path}: {parent} is not writable")


def is_calibkit_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / MARKER).is_file()


def check_output_dir(out: str | os.PathLike, overwrite: bool = False, inputs=(), what: str = "output folder") -> Path:
    """Validate an output folder before any work; returns its resolved path. See the module docstring."""
    path = _resolved(out)
    _check_inputs(path, inputs, what)
    if path == Path(path.anchor) or path == _resolved("~"):
        raise OutputError(f"refusing to use {out} ({path}) as the {what}: give a new folder for calibkit's output")
    if path.exists() or path.is_symlink():
        if not path.is_dir() or path.is_symlink():
            raise OutputError(f"{what} {out} exists and is not a folder; choose another path")
        if any(path.iterdir()):
            if not overwrite:
                raise OutputError(f"{what} {out} exists and is not empty; choose a new path, or pass --overwrite "
                                  "to replace a folder that calibkit wrote")
            if not is_calibkit_dir(path):
                raise OutputError(f"{what} {out} was not written by calibkit (no {MARKER} marker); refusing to "
                                  "replace it even with --overwrite")
    check_parent(path, what)
    return path


def check_output_files(paths, overwrite: bool = False, inputs=(), what: str = "output file") -> list[Path]:
    """Validate output files before any work (a file and its companions, e.g. ``a.jsonl`` + ``a.meta.json``)."""
    out = []
    for p in paths:
        path = _resolved(p)
        _check_inputs(path, inputs, what)
        if path.is_dir():
            raise OutputError(f"{what} {p} is a folder; give a file path")
        if path.exists() and not overwrite:
            raise OutputError(f"{what} {p} exists; choose a new path, or pass --overwrite to replace it")
        check_parent(path, what)
        out.append(path)
    return out


@contextmanager
def staged_dir(final: Path, before_swap=None):
    """The one atomic-directory primitive: ``with staged_dir(final) as tmp:`` fill ``tmp`` (a fresh hidden sibling);
    on success it replaces ``final`` (the folder it replaces is removed only after the swap), on an error it is
    removed and ``final`` is left as it was. ``before_swap()`` may refuse the swap at the last moment."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if before_swap is not None:
            before_swap()
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(out: str | os.PathLike, overwrite: bool = False, inputs=(), what: str = "output folder"):
    """``with atomic_dir(out) as tmp:`` write into ``tmp``; on success it becomes ``out`` (with the marker).

    On an error the temporary folder is removed and ``out`` is left as it was."""
    final = check_output_dir(out, overwrite, inputs, what)

    def still_ours():  # the folder may have been filled since the check: never delete it then
        if final.exists() and any(final.iterdir()) and not is_calibkit_dir(final):
            raise OutputError(f"{what} {out} was filled by someone else meanwhile; left untouched")

    with staged_dir(final, before_swap=still_ours) as tmp:
        yield tmp
        (tmp / MARKER).write_text(json.dumps({"written_by": "calibkit"}) + "\n")
