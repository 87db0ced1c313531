"""Typed parameters of the self-generation methods, with each method's defaults.

``SelfCalParams``, ``SGSParams`` and ``IGSPParams`` are frozen dataclasses whose values are checked (and their types
normalised) when built. ``from_dict`` (one for all three) builds one from a mapping (``--selfgen-param key=value``
pairs, a sweep profile, a notebook) and refuses an unknown key with a ``ConfigError`` naming it, the closest known
one and all of them, so that a typo is never silently ignored. ``asdict`` of a record is what a set's metadata keeps
as ``params``. ``IGSPVariant`` says which of IGSP's three parts an ablation runs.
"""
from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from numbers import Integral, Real
from typing import Any, ClassVar, TypeVar

from ..errors import ConfigError

P = TypeVar("P", bound="Params")


class Params:
    """What the three records share: ``from_dict`` and the value checks of ``__post_init__``."""

    method: ClassVar[str]
    prefix: ClassVar[str] = "selfgen:"  # how specs name the method (errors say ``selfgen:igsp parameter ...``)

    @classmethod
    def from_dict(cls: type[P], values: Mapping[str, Any] | None = None, where: str | None = None) -> P:
        """A record from ``values`` (missing keys keep their defaults); ``where`` names the method in errors."""
        where = where or f"{cls.prefix}{cls.method}"
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError(f"{where} parameters must be a mapping of name to value, got {type(values).__name__}")
        known = [f.name for f in fields(cls)]
        for key in values or {}:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                raise ConfigError(f"{where}: unknown parameter {key!r}"
                                  + (f" (did you mean {close[0]!r}?)" if close else "")
                                  + f"; known: {', '.join(known)}")
        return cls(**dict(values or {}))

    def as_dict(self) -> dict:
        return asdict(self)

    # --- checks used by __post_init__: normalise the type once, or raise ConfigError naming the parameter ----------

    def _set(self, name: str, value) -> None:
        object.__setattr__(self, name, value)  # frozen: only __post_init__ writes

    def _integer(self, name: str, least: int) -> None:
        value = getattr(self, name)
        if isinstance(value, Real) and not isinstance(value, (bool, Integral)) and float(value).is_integer():
            value = int(value)  # 64.0 from a YAML/JSON file is 64
        if isinstance(value, bool) or not isinstance(value, Integral) or value < least:
            raise ConfigError(f"{self.prefix}{self.method} parameter {name} must be an integer >= {least}, got {value!r}")
        self._set(name, int(value))

    def _choice(self, name: str, options: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in options:
            raise ConfigError(f"{self.prefix}{self.method} parameter {name} must be one of {', '.join(options)}, "
                              f"got {value!r}")

    def _real(self, name: str, low: float, high: float = math.inf, low_open: bool = False,
              high_open: bool = False) -> None:
        value = getattr(self, name)
        ok = (not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(value)
              and (value > low if low_open else value >= low) and (value < high if high_open else value <= high))
        if not ok:
            span = ("(" if low_open else "[") + f"{low}, {high}" + (")" if high_open else "]")
            raise ConfigError(f"{self.prefix}{self.method} parameter {name} must be a number in {span}, got {value!r}")
        self._set(name, float(value))


@dataclass(frozen=True)
class SelfCalParams(Params):
    """Self-Cal: temperature t_init -> t_final, linear over the first ``schedule_fraction`` of the generated tokens
    (the schedule's form is the paper's; these values are calibkit's, see ``selfcal.py``)."""

    method: ClassVar[str] = "selfcal"
    t_init: float = 0.5
    t_final: float = 1.0
    schedule_fraction: float = 0.5
    batch_size: int = 64

    def __post_init__(self):
        self._real("t_init", 0.0, low_open=True)
        self._real("t_final", 0.0, low_open=True)
        self._real("schedule_fraction", 0.0, 1.0, low_open=True)
        self._integer("batch_size", 1)


@dataclass(frozen=True)
class SGSParams(Params):
    """SGS: continue the first ``prefix_tokens`` tokens of ``prefix_source`` documents into a pool ``pool_factor``
    times the budget, drop the ``drop_top`` highest-perplexity fraction, pick across ``bins`` perplexity bins."""

    method: ClassVar[str] = "sgs"
    prefix_source: str = "wiki-excerpt"
    prefix_tokens: int = 16
    pool_factor: float = 2.0
    drop_top: float = 0.2
    bins: int = 4
    batch_size: int = 64

    def __post_init__(self):
        from ..data import sources

        if self.prefix_source not in sources.names():
            close = difflib.get_close_matches(str(self.prefix_source), sources.names(), n=1)
            raise ConfigError(f"selfgen:sgs parameter prefix_source: unknown source {self.prefix_source!r}"
                              + (f" (did you mean {close[0]!r}?)" if close else "")
                              + f"; known: {', '.join(sources.names())}")
        self._integer("prefix_tokens", 1)
        self._real("pool_factor", 1.0)
        self._real("drop_top", 0.0, 1.0, high_open=True)
        self._integer("bins", 1)
        self._integer("batch_size", 1)


@dataclass(frozen=True)
class IGSPParams(Params):
    """IGSP: per dimension a pool ``pool_factor`` times its budget, diversity over ``ngram``-grams; ``alpha``: the
    budget's weights over General, Commonsense, Code, Math (None: equal)."""

    method: ClassVar[str] = "igsp"
    pool_factor: float = 2.0
    ngram: int = 4
    batch_size: int = 64
    alpha: tuple[float, ...] | None = None
    band_pools: str = "embedded"  # whose dimension-aligned sources measure the perplexity bands: embedded | study

    def __post_init__(self):
        from ..data.sources import DIMENSIONS

        if self.band_pools not in ("embedded", "study"):
            raise ConfigError(f"selfgen:igsp parameter band_pools must be 'embedded' or 'study', got "
                              f"{self.band_pools!r}")
        self._real("pool_factor", 1.0)
        self._integer("ngram", 1)
        self._integer("batch_size", 1)
        if self.alpha is not None:
            a = self.alpha
            if (isinstance(a, (str, bytes, Mapping)) or not hasattr(a, "__len__") or len(a) != len(DIMENSIONS)
                    or any(isinstance(w, bool) or not isinstance(w, Real) or not math.isfinite(w) or w < 0
                           for w in a) or not sum(a) > 0):
                raise ConfigError(f"selfgen:igsp parameter alpha must be {len(DIMENSIONS)} numbers >= 0 (weights of "
                                  f"{', '.join(DIMENSIONS)}) with a positive sum, got {a!r}")
            self._set("alpha", tuple(float(w) for w in a))


@dataclass(frozen=True)
class IGSPVariant:
    """Which parts of IGSP run (all three in IGSP itself; each ablation turns one off)."""

    multi_domain: bool  # a prompt distribution per capability dimension (off: the General template for the budget)
    band_filter: bool  # keep only pool members inside the dimension's perplexity band (off: no band)
    diversity: bool  # greedy distinct-n-gram selection (off: a seeded random pick of the candidates)


IGSP_VARIANTS = {
    "igsp": IGSPVariant(multi_domain=True, band_filter=True, diversity=True),
    "igsp-no-multi": IGSPVariant(multi_domain=False, band_filter=True, diversity=True),
    "igsp-no-band": IGSPVariant(multi_domain=True, band_filter=False, diversity=True),
    "igsp-no-diversity": IGSPVariant(multi_domain=True, band_filter=True, diversity=False),
}
