"""Calibration sets: N sequences x L tokens drawn (seeded) from one source or a mix of capability pools.

Sampling protocol, per source: records are visited in a seeded random order; a record of at least L
tokens gives one sequence from a random L-token window (as SparseGPT/Wanda sample C4); shorter records
are packed, separated by a blank line, until L tokens are reached. Each record is used at most once per
set, so a source that cannot fill the budget is an error rather than a silently repeated set.

Mixes split N over the four dimension pools by weight (largest remainder), then evenly over the sources
of each pool. Every source's draw uses its own generator seeded by (seed, source name), so adding a pool
never changes what another pool contributes.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..outputs import atomic_dir
from ..settings import atomic_write_bytes
from . import sources as S
from .readers import DataError, _open_text, read_jsonl
from .sources import CODE, COMMONSENSE, DIMENSIONS, GENERAL, MATH

DEFAULT_SEQLEN = 2048  # Wanda/SparseGPT default for LLaMA-family models; the embedded profile uses less

DIM_ALIASES = {"general": GENERAL, "gen": GENERAL, "commonsense": COMMONSENSE, "com": COMMONSENSE,
                "code": CODE, "math": MATH}

NAMED_MIXES = {
    "balanced": {GENERAL: 1, COMMONSENSE: 1, CODE: 1, MATH: 1},
    # The study's mix_4_3_3_<dim>: 4 parts to the named dimension, 3 to each other one (our reading of the
    # name; the paper does not spell the four-way ratio out).
    "4_3_3_math": {GENERAL: 3, COMMONSENSE: 3, CODE: 3, MATH: 4},
    "4_3_3_code": {GENERAL: 3, COMMONSENSE: 3, CODE: 4, MATH: 3},
}


def pools(family: str) -> dict[str, list[str]]:
    """Dimension -> source names, partitioning a source family by primary dimension (study's §4)."""
    if family not in ("embedded", "study"):
        raise ConfigError(f"unknown pool family {family!r}; use 'embedded' or 'study'")
    out = {d: [] for d in DIMENSIONS}
    for s in S.SOURCES:
        if s.family == family:
            out[s.dimension].append(s.name)
    return out


@dataclass(frozen=True)
class Spec:
    """What to draw: one source (``source``) or a weighted mix over dimension pools."""
    source: str | None = None
    weights: tuple[tuple[str, float], ...] = ()
    pool: str = "embedded"
    label: str = ""

    @property
    def is_mix(self) -> bool:
        return self.source is None


def mix_names() -> list[str]:
    return [*NAMED_MIXES, "<g>:<c>:<k>:<m> (any ratio)", *(f"loo_{d.lower()}" for d in DIMENSIONS)]


def parse_mix(text: str) -> Spec:
    """``balanced``, ``4_3_3_math``, ``4_3_3_code``, ``loo_<dim>``, or a ratio ``G:C:K:M``, with an optional
    ``@study`` / ``@embedded`` pool family (default embedded)."""
    body, _, pool = text.partition("@")
    pool = pool or "embedded"
    if pool not in ("embedded", "study"):
        raise ConfigError(f"unknown pool family {pool!r} in mix {text!r}; use @embedded or @study")
    body = body.strip().removeprefix("mix_")
    if body in NAMED_MIXES:
        weights, label = NAMED_MIXES[body], f"mix_{body}"
    elif body.startswith(("loo_", "no_")):
        dim = DIM_ALIASES.get(body.split("_", 1)[1].lower())
        if dim is None:
            raise ConfigError(f"unknown dimension in {text!r}; use one of {', '.join(DIM_ALIASES)}")
        weights, label = {d: (0 if d == dim else 1) for d in DIMENSIONS}, f"mix_loo_{dim.lower()}"
    elif re.fullmatch(r"[^:]+(:[^:]+){3}", body):
        try:
            values = [float(v) for v in body.split(":")]
        except ValueError:
            raise ConfigError(f"mix ratio {text!r} must be four numbers G:C:K:M") from None
        weights, label = dict(zip(DIMENSIONS, values)), f"mix_{body.replace(':', '_')}"
    else:
        raise ConfigError(f"unknown mix {text!r}; known: {', '.join(mix_names())} (optionally @study)")
    _check_weights(weights)
    return Spec(weights=tuple(weights.items()), pool=pool, label=label + ("" if pool == "embedded" else f"@{pool}"))


def source_spec(name: str) -> Spec:
    S.get(name)  # unknown names fail here, listing the known ones
    return Spec(source=name, label=name)


def parse_drawable(text: str) -> Spec:
    """A source name or a mix (``parse_mix``); ``calibkit.spec.parse`` adds ``none`` and ``selfgen:`` on top."""
    text = str(text).strip()
    if text in S.names():
        return source_spec(text)
    try:
        return parse_mix(text)
    except ConfigError as e:
        if ":" in text or "_" in text or "@" in text:  # meant as a mix
            raise
        raise ConfigError(f"unknown source {text!r} (sources: {', '.join(S.names())}) and unknown mix "
                          f"(mixes: {', '.join(mix_names())})") from e


def _check_weights(weights: dict) -> None:
    vals = list(weights.values())
    if any(not np.isfinite(v) or v < 0 for v in vals):
        raise ConfigError(f"mix weights must be finite and non-negative, got {weights}")
    if not np.isfinite(sum(vals)):
        raise ConfigError(f"mix weights are too large (their sum overflows): {weights}; use small ratios like 4:3:3:3")
    if sum(vals) <= 0:
        raise ConfigError(f"mix weights sum to zero: {weights}")


def pool_fractions(counts: dict[str, float]) -> dict[str, float]:
    """The share of each capability pool (DIMENSIONS order) in per-pool counts or weights; other keys count in the
    total (e.g. unlabelled sequences)."""
    total = float(sum(counts.values()))
    if total <= 0:
        raise ConfigError(f"pool counts sum to zero: {counts}")
    return {d: counts.get(d, 0) / total for d in DIMENSIONS}


def allocate(n: int, weights: list[float]) -> list[int]:
    """Split ``n`` into integer parts proportional to ``weights`` (largest remainder, ties to the first)."""
    total = float(sum(weights))
    exact = [n * w / total for w in weights]
    parts = [int(np.floor(x)) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[: n - sum(parts)]:
        parts[i] += 1
    return parts


def check_sequence(rec: dict) -> str | None:
    """The one validation of a calibration record: a non-empty flat list of integer token ids >= 0.
    Returns a complaint naming the field, or None."""
    ids = rec.get("input_ids")
    if not isinstance(ids, list):
        return f"field 'input_ids' must be a list of token ids, got {type(ids).__name__ if 'input_ids' in rec else 'nothing'}"
    if not ids:
        return "field 'input_ids' is empty"
    for pos, t in enumerate(ids):
        if type(t) is not int:  # bool, float (253.5), str ('253'), list (nested) are all refused
            return f"field 'input_ids', position {pos}: token ids must be integers, got {t!r}"
        if t < 0:
            return f"field 'input_ids', position {pos}: token ids must be >= 0, got {t}"
    return None


@dataclass
class CalibrationSet:
    sequences: list[dict]
    meta: dict = field(default_factory=dict)
    origin: str | None = field(default=None, compare=False, repr=False)  # the file it was read from
    lines: list[int] | None = field(default=None, compare=False, repr=False)  # its line per sequence

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def input_ids(self):
        import torch

        return torch.tensor([s["input_ids"] for s in self.sequences], dtype=torch.long)

    @property
    def texts(self) -> list[str]:
        return [s["text"] for s in self.sequences]

    def tokens_digest(self) -> str:
        """sha256 of the token ids, in order (what a pruner sees of the set)."""
        return hashlib.sha256(json.dumps([s["input_ids"] for s in self.sequences]).encode()).hexdigest()

    def counts(self, key: str = "dimension") -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.sequences:
            value = s.get(key, "(none)")
            out[value] = out.get(value, 0) + 1
        return out

    # --- export ---
    def to_jsonl(self, path: str | os.PathLike) -> Path:
        """One JSON object per sequence; the set's metadata goes to ``<path>.meta.json``. Atomic."""
        path = Path(path)
        lines = [json.dumps(s, ensure_ascii=False) for s in self.sequences]
        atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
        atomic_write_bytes(meta_path(path), (json.dumps(self.meta, indent=2, sort_keys=True) + "\n").encode())
        return path

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike) -> CalibrationSet:
        """Read and validate a calibration file (see ``check_sequence``); errors name the file, line and field."""
        path = Path(path)
        if path.is_dir():
            raise DataError(f"{path} is a folder; a calibration set is a .jsonl file")
        first_len: list[int] = []

        def check(rec: dict) -> str | None:
            complaint = check_sequence(rec)
            if complaint is None:
                first_len[:] = first_len or [len(rec["input_ids"])]
                if len(rec["input_ids"]) != first_len[0]:
                    complaint = (f"'input_ids' has {len(rec['input_ids'])} tokens, the first sequence has "
                                 f"{first_len[0]}; every sequence of a set must have the same length")
            return complaint

        seqs = read_jsonl(path, check=check)
        if not seqs:
            raise DataError(f"{path}: empty calibration set (no sequences)")
        mp = meta_path(path)
        meta = {}
        if mp.is_file():
            try:
                meta = json.loads(mp.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise DataError(f"{mp}: the set's metadata file is not valid JSON ({e}); fix or delete it") from None
            if not isinstance(meta, dict):
                raise DataError(f"{mp}: the set's metadata must be a JSON object")
        with _open_text(path) as f:
            lines = [i for i, line in enumerate(f, 1) if line.strip()]
        return cls(seqs, meta, origin=str(path), lines=lines)

    def where(self, i: int) -> str:
        """``file:line`` of sequence ``i`` when the set was read from a file, else ``sequence i``."""
        if self.origin and self.lines:
            return f"{self.origin}:{self.lines[i]}"
        return f"sequence {i}"

    def check_vocab(self, vocab_size: int, model: str = "the model") -> None:
        """Every token id must index the model's embedding table."""
        for i, s in enumerate(self.sequences):
            top = max(s["input_ids"])
            if top >= vocab_size:
                pos = s["input_ids"].index(top)
                raise DataError(f"{self.where(i)}: field 'input_ids', position {pos}: token id {top} is outside the "
                                f"vocabulary ({vocab_size} ids) of {model}; build the set with that model's tokenizer")

    def to_hf_dataset(self, tokenized_only: bool = False):
        """A ``datasets.Dataset`` with input_ids/attention_mask (plus text and provenance columns unless
        ``tokenized_only``), ready for llm-compressor's ``oneshot(dataset=...)``."""
        import datasets

        cols = {"input_ids": [s["input_ids"] for s in self.sequences],
                "attention_mask": [[1] * len(s["input_ids"]) for s in self.sequences]}
        if not tokenized_only:
            for key in ("text", "source", "dimension", "genre"):
                cols[key] = [s.get(key) for s in self.sequences]
        return datasets.Dataset.from_dict(cols)


def choose(cs: CalibrationSet, ids, what: str, **meta) -> CalibrationSet:
    """The calibration set of the sequences ``ids`` of ``cs`` (in that order; ``meta`` added to its metadata);
    out-of-range ids are refused."""
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < len(cs)]
    if bad:
        raise ConfigError(f"{what}: sequence(s) {', '.join(map(str, bad))} out of range: the set has {len(cs)}")
    return CalibrationSet([cs.sequences[i] | {"chosen": i} for i in ids],
                          cs.meta | {"chosen": ids, "chosen_from": cs.meta.get("spec", what), "n": len(ids)} | meta)


def save_hf_dataset(cs: CalibrationSet, out: str | os.PathLike, tokenized_only: bool = False,
                    overwrite: bool = False) -> Path:
    """``to_hf_dataset().save_to_disk(out)`` into a new folder (see ``calibkit.outputs``: an existing non-empty
    folder is replaced only with ``overwrite`` and only when calibkit wrote it)."""
    with atomic_dir(out, overwrite, inputs=[cs.origin], what="dataset folder") as tmp:
        cs.to_hf_dataset(tokenized_only=tokenized_only).save_to_disk(str(tmp))
    return Path(out)


def meta_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name.removesuffix(".jsonl") + ".meta.json")


def _source_rng(seed: int, name: str) -> np.random.Generator:
    salt = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
    return np.random.default_rng([int(seed), salt])


def draw_source(name: str, n: int, seqlen: int, tokenizer, seed: int) -> list[dict]:
    """``n`` sequences of exactly ``seqlen`` tokens from one source's calibration records."""
    src = S.get(name)
    texts = S.texts(name, "calibration")
    if not texts:
        raise DataError(f"source {name!r} has no calibration records")
    rng = _source_rng(seed, name)
    sep = tokenizer("\n\n", add_special_tokens=False)["input_ids"]
    seqs, buf, used, total_tokens = [], [], [], 0
    for idx in rng.permutation(len(texts)):
        if len(seqs) == n:
            break
        ids = tokenizer(texts[idx], add_special_tokens=False)["input_ids"]
        total_tokens += len(ids)
        used.append(int(idx))
        if not buf and len(ids) >= seqlen:
            start = int(rng.integers(0, len(ids) - seqlen + 1))
            seqs.append((ids[start:start + seqlen], used))
            used = []
        else:
            buf = buf + sep + ids if buf else list(ids)
            if len(buf) >= seqlen:
                seqs.append((buf[:seqlen], used))
                buf, used = [], []
    if len(seqs) < n:
        raise DataError(
            f"source {name!r} can give only {len(seqs)} sequences of {seqlen} tokens from its "
            f"{len(texts)} calibration records (~{total_tokens} tokens); {n} were requested. "
            "Lower --n or --seqlen, or use a larger copy of the data.")
    out = []
    for ids, recs in seqs:
        out.append({"input_ids": [int(t) for t in ids], "text": tokenizer.decode(ids), "source": name,
                    "dimension": src.dimension, "dimensions": list(src.dimensions), "genre": src.genre,
                    "records": recs})
    return out


def build(spec: Spec | str, n: int = 128, seqlen: int = DEFAULT_SEQLEN, seed: int = 0, *, tokenizer,
          tokenizer_name: str = "smollm2-135m", progress: bool = True) -> CalibrationSet:
    """Draw a calibration set from a source or a mix (``spec``: a ``Spec``, or text for ``parse_drawable``) with
    ``tokenizer``; ``tokenizer_name`` is recorded in the metadata. Self-generated sets and model loading live one
    level up, in ``calibkit.spec.build``."""
    if tokenizer is None:
        raise ConfigError("build needs a tokenizer (calibkit.spec.build loads one by model name)")
    if isinstance(spec, str):
        spec = parse_drawable(spec)
    if not isinstance(n, (int, np.integer)) or n <= 0:
        raise ConfigError(f"n must be a positive number of sequences, got {n!r}")
    if not isinstance(seqlen, (int, np.integer)) or seqlen <= 0:
        raise ConfigError(f"seqlen must be a positive number of tokens, got {seqlen!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    if spec.is_mix:
        weights = dict(spec.weights)
        _check_weights(weights)
        pool = pools(spec.pool)
        plan = []
        for dim, k in zip(DIMENSIONS, allocate(n, [weights.get(d, 0) for d in DIMENSIONS])):
            if k == 0:
                continue
            names = pool[dim]
            if not names:
                raise DataError(f"the {spec.pool} pool has no {dim} source")
            plan += [(name, m) for name, m in zip(names, allocate(k, [1] * len(names))) if m > 0]
    else:
        plan = [(spec.source, n)]
    seqs = []
    for name, m in tqdm(plan, desc=f"drawing {spec.label}", unit="source", disable=not progress or len(plan) == 1):
        seqs += draw_source(name, m, seqlen, tokenizer, seed)
    if spec.is_mix:
        order = np.random.default_rng([int(seed), 0x6D6978]).permutation(len(seqs))
        seqs = [seqs[i] for i in order]
    meta = {"spec": spec.label, "source": spec.source, "weights": dict(spec.weights) or None,
            "pool": spec.pool if spec.is_mix else None, "n": int(n), "seqlen": int(seqlen), "seed": int(seed),
            "tokenizer": tokenizer_name, "plan": [list(p) for p in plan],
            "roads": {name: S.road(name) for name, _ in plan}}
    return CalibrationSet(seqs, meta)
