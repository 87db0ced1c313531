"""The typed settings of a pruning run.

``PruneOptions`` is frozen and validated when built; ``PruneReport.settings`` is ``asdict`` of the options the run
used (device and dtype filled in), so ``PruneOptions.from_dict(report.settings)`` rebuilds them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from numbers import Integral, Real

import torch

from ..errors import ConfigError
from .precision import PRECISIONS, resolve_precision


@dataclass(frozen=True)
class PruneOptions:
    blocksize: int = 128  # SparseGPT: columns per block of lazy updates
    percdamp: float = 0.01  # SparseGPT: dampening, a fraction of the mean diagonal of X^T X
    batch_tokens: int = 16384  # tokens per forward batch (whole sequences; at least one)
    recon_tokens: int = 256  # calibration tokens (evenly spaced) for ||WX - W'X||^2 / ||WX||^2; 0 = skip
    device: str | None = None  # where each layer runs; None: CUDA if available, else CPU
    hessian_precision: str = "auto"  # SparseGPT's X^T X inputs: auto (the model's dtype), fp32, tf32, bf16
    offload_activations: bool = False  # keep the calibration activations on the host between uses (small GPUs)
    owl: bool = False  # OWL: per-layer sparsities from the layers' outlier ratios, averaging the target
    owl_m: float = 5.0  # OWL: an outlier is a score above owl_m x its layer's mean score
    owl_lambda: float = 0.08  # OWL: layer sparsities span target +- 2 * owl_lambda at most (see prune.owl)
    dtype: str | None = None  # the model's dtype, for the report (filled in by the run; if given, it must match)

    def __post_init__(self):
        set_ = object.__setattr__  # frozen: normalise the types once, here
        set_(self, "blocksize", _integer("blocksize", self.blocksize, 1))
        set_(self, "batch_tokens", _integer("batch_tokens", self.batch_tokens, 1))
        set_(self, "recon_tokens", _integer("recon_tokens", self.recon_tokens, 0))
        if isinstance(self.percdamp, bool) or not isinstance(self.percdamp, Real) \
                or not math.isfinite(self.percdamp) or self.percdamp < 0:
            raise ConfigError(f"prune option percdamp must be a finite number >= 0, got {self.percdamp!r}")
        set_(self, "percdamp", float(self.percdamp))
        if self.hessian_precision not in PRECISIONS:
            raise ConfigError(f"prune option hessian_precision must be one of {', '.join(PRECISIONS)}, "
                              f"got {self.hessian_precision!r}")
        for name in ("offload_activations", "owl"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"prune option {name} must be true or false, got {getattr(self, name)!r}")
        for name, least in (("owl_m", 0.0), ("owl_lambda", 0.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or v <= least:
                raise ConfigError(f"prune option {name} must be a finite number > {least:g}, got {v!r}")
            set_(self, name, float(v))
        if self.device is not None:
            try:
                set_(self, "device", str(torch.device(self.device)))
            except (RuntimeError, TypeError, ValueError):
                raise ConfigError(f"prune option device: not a torch device: {self.device!r}") from None
        if self.dtype is not None:
            name = str(self.dtype).removeprefix("torch.")
            if not isinstance(getattr(torch, name, None), torch.dtype):
                raise ConfigError(f"prune option dtype: not a torch dtype: {self.dtype!r}")
            set_(self, "dtype", name)

    @classmethod
    def from_dict(cls, values) -> PruneOptions:
        """Options from a mapping; an unknown key is a ``ConfigError`` that names it."""
        known = [f.name for f in fields(cls)]
        unknown = [k for k in values if k not in known]
        if unknown:
            raise ConfigError(f"unknown prune option(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
        return cls(**values)

    @classmethod
    def of(cls, options: PruneOptions | dict | None = None, overrides: dict | None = None) -> PruneOptions:
        """``options`` (an instance, a dict or None for the defaults) with the keyword ``overrides`` applied."""
        base = options if isinstance(options, PruneOptions) else cls.from_dict(options or {})
        return cls.from_dict(asdict(base) | overrides) if overrides else base

    def resolved(self, model) -> PruneOptions:
        """These options with the device chosen (CUDA if available), the model's dtype filled in and the Hessian
        precision resolved for it (``auto``: see ``precision.resolve_precision``)."""
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model_dtype = next(model.parameters()).dtype
        dtype = str(model_dtype).removeprefix("torch.")
        if self.dtype is not None and self.dtype != dtype:
            raise ConfigError(f"prune option dtype is {self.dtype}, the model is {dtype}")
        return replace(self, device=device, dtype=dtype,
                       hessian_precision=resolve_precision(self.hessian_precision, model_dtype))


def _integer(name: str, value, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < least:
        raise ConfigError(f"prune option {name} must be an integer >= {least}, got {value!r}")
    return int(value)
