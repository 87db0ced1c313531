"""The sweep store: one checksummed record per run config, parsed and checked whenever it is read."""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

from ..settings import atomic_write_bytes
from .config import RunConfig, SweepError

STORE_MARKER = ".calibkit-store"
RECORD_FIELDS = ("key", "config", "calibration", "retention", "scores", "prune", "seconds")


def checksum(record: dict) -> str:
    """sha256 of a record's canonical JSON without its own ``checksum`` field."""
    body = {k: v for k, v in record.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def evaluated_items(rec: dict) -> dict[str, int]:
    """Items per task a record's evaluation asked for (records before ``items_requested``: the items it logged)."""
    if "items_requested" in rec:
        return rec["items_requested"]
    return {task: len(values) for task, values in rec["items"]["pruned"].items()} if "items" in rec else {}


def current(rec: dict, cfg: RunConfig) -> bool:
    """Whether a record measured what its config asks now: the run key covers the config, not the suite's task
    files, so a suite whose item counts changed makes its older records stale (recomputed by the next sweep, kept
    and read as they are until then). The likelihood scorer is recorded (``scorer``) but does not make a record
    stale: it changes numbers by rounding (measured on the embedded suite's bits per byte: <= 3.3e-4 relative; on
    accuracy tasks a near-tie between choices can flip an item), as a change of machine does."""
    from ..eval.harness import item_counts

    return evaluated_items(rec) == item_counts(cfg.suite, cfg.limit, list(cfg.tasks) if cfg.tasks else None)


class Store:
    """``<root>/runs/<key>.json`` (complete runs only), ``<root>/profiles/<calibration key>.json``, and
    ``<root>/bands/`` (the IGSP perplexity bands a study measured, kept with its records).

    Every file carries a checksum of its content and is parsed and checked when read: a truncated, edited or
    otherwise invalid record is reported by path and counts as not done (the sweep recomputes it), never used."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.profiles = self.root / "profiles"
        self.invalid: dict[str, str] = {}  # path -> why, for every invalid file met so far

    def claim(self) -> None:
        """Make ``root`` a store, refusing a non-empty folder that is not one (nothing of the user's is touched)."""
        from ..outputs import check_parent

        if self.root.exists() and not self.root.is_dir():
            raise SweepError(f"store {self.root} exists and is not a folder")
        if self.root.is_dir() and not (self.root / STORE_MARKER).is_file():
            foreign = [p.name for p in self.root.iterdir() if p.name not in ("runs", "profiles", "bands")]
            if foreign:
                raise SweepError(f"store {self.root} is a non-empty folder that is not a calibkit store (it holds "
                                 f"{', '.join(sorted(foreign)[:3])}); choose another --store")
        check_parent(self.root, "store")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / STORE_MARKER).touch()

    def path(self, cfg: RunConfig) -> Path:
        return self.runs / f"{cfg.key}.json"

    def _read(self, path: Path, expect_key: str | None = None, fields=RECORD_FIELDS) -> dict | None:
        """The record in ``path`` if it is valid; else None, with the reason kept in ``self.invalid``."""
        try:
            rec = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            return self._bad(path, f"unreadable or truncated ({e})")
        if not isinstance(rec, dict):
            return self._bad(path, "not a JSON object")
        if "checksum" in rec and rec["checksum"] != checksum(rec):
            return self._bad(path, "checksum mismatch (edited or damaged)")
        missing = [f for f in fields if f not in rec]
        if missing:
            return self._bad(path, f"lacks {', '.join(missing)}")
        if expect_key is not None and rec.get("key") != expect_key:
            return self._bad(path, f"holds the record of run {rec.get('key')!r}, not {expect_key!r}")
        return rec

    def _bad(self, path: Path, why: str) -> None:
        if str(path) not in self.invalid:
            self.invalid[str(path)] = why
            warnings.warn(f"invalid store file {path}: {why}; it is ignored and will be recomputed", RuntimeWarning,
                          stacklevel=3)
        return None

    def get(self, cfg: RunConfig) -> dict | None:
        path = self.path(cfg)
        return self._read(path, cfg.key) if path.is_file() else None

    def done(self, cfg: RunConfig) -> bool:
        """A valid record that measured what ``cfg`` asks for now (``current``)."""
        rec = self.get(cfg)
        return rec is not None and current(rec, cfg)

    def stale(self, configs: list[RunConfig]) -> list[RunConfig]:
        """Configs whose valid record was evaluated on other items than the suite now asks (they will be
        recomputed)."""
        return [c for c in configs if (rec := self.get(c)) is not None and not current(rec, c)]

    def put(self, cfg: RunConfig, record: dict) -> Path:
        record = record | {"checksum": checksum(record)}
        path = self.path(cfg)
        atomic_write_bytes(path, (json.dumps(record, indent=1, default=str) + "\n").encode())
        return path

    def records(self) -> list[dict]:
        if not self.runs.is_dir():
            return []
        out = []
        for p in sorted(self.runs.glob("*.json")):
            rec = self._read(p, p.stem)
            if rec is not None:
                out.append(rec)
        return out

    def profile(self, cfg: RunConfig, make=None) -> dict | None:
        """The stored profile of ``cfg``'s calibration set (``calibkit.cache``, keyed by what decides the set,
        ``RunConfig.calibration_identity``, with the model's identity); computed with ``make()`` when missing (None
        without ``make``)."""
        from ..cache import cached, load
        from ..models import identity

        key = cfg.calibration_identity | {"model": identity(cfg.model)}
        folder, what = self.profiles.absolute(), "calibration-set profile"
        if make is None:
            return load(folder, key, "profile", what, valid=lambda v: isinstance(v, dict))
        return cached(folder, key, make, what=what, prefix="profile", valid=lambda v: isinstance(v, dict))

    def profile_records(self) -> list[dict]:
        from ..cache import values

        return [v for v in values(self.profiles.absolute(), "profile", "calibration-set profile")
                if isinstance(v, dict) and "calibration" in v]

    def clean_partial(self) -> int:
        """Remove temp files a killed run left behind in the store's own folders (never read as records)."""
        stale = [p for d in (self.runs, self.profiles) if d.is_dir() for p in d.glob(".*.tmp-*")]
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)
