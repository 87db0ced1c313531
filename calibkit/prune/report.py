"""The prune report: what was removed where, how long each phase took, how well each layer is reconstructed."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..settings import atomic_write_bytes

PHASES = ("capture", "forward", "statistics", "solve")


def _zeros(t: torch.Tensor) -> int:
    """Number of zero entries (count_nonzero: no bool-to-int64 copy, which dominated for 8B models on the host)."""
    return t.numel() - int(torch.count_nonzero(t))


@dataclass
class ModuleRecord:
    name: str
    shape: list[int]
    zeros: int
    sparsity: float
    recon_error: float | None = None  # ||WX - W'X||^2 / ||WX||^2 on the sampled calibration tokens
    damp: float | None = None  # SparseGPT: dampening fraction used

    @classmethod
    def of(cls, name: str, weight: torch.Tensor, recon_error: float | None = None, damp: float | None = None):
        zeros = _zeros(weight)
        return cls(name, list(weight.shape), zeros, zeros / weight.numel(), recon_error, damp)


@dataclass
class PruneReport:
    method: str
    sparsity: str
    model: str
    calibration: dict
    settings: dict
    modules: list[ModuleRecord] = field(default_factory=list)
    timing: dict = field(default_factory=lambda: {p: 0.0 for p in PHASES} | {"total": 0.0})
    warnings: list[str] = field(default_factory=list)
    layers: list[dict] | None = None  # OWL: per decoder layer its outlier ratio and target sparsity
    totals: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)  # calibkit.environment.describe(): packages, CPU, threads, device

    @classmethod
    def start(cls, model, model_name, method, sparsity, ids, settings) -> PruneReport:
        calib = ({"sequences": int(ids.shape[0]), "seqlen": int(ids.shape[1]), "tokens": int(ids.numel())}
                 if ids is not None else None)
        name = model_name or getattr(getattr(model, "config", None), "name_or_path", "") or type(model).__name__
        return cls(method, str(sparsity), str(name), calib, settings)

    def finish(self, model, total_seconds: float) -> None:
        import transformers

        from .. import __version__
        from ..environment import describe

        self.timing["total"] = total_seconds
        pruned = sum(m.shape[0] * m.shape[1] for m in self.modules)
        zeros = sum(m.zeros for m in self.modules)
        all_params = sum(p.numel() for p in model.parameters())
        errs = [m.recon_error for m in self.modules if m.recon_error is not None]
        self.totals = {"pruned_modules": len(self.modules), "pruned_params": pruned, "zeros": zeros,
                       "sparsity": zeros / max(pruned, 1), "model_params": all_params,
                       "model_sparsity": sum(_zeros(p) for p in model.parameters()) / max(all_params, 1),
                       "mean_recon_error": sum(errs) / len(errs) if errs else None}
        self.versions = {"calibkit": __version__, "torch": torch.__version__, "transformers": transformers.__version__}
        self.environment = describe()

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> Path:
        path = Path(path)
        atomic_write_bytes(path, (json.dumps(self.to_dict() | (extra or {}), indent=2) + "\n").encode())
        return path

    def summary(self) -> str:
        t = self.timing
        return (f"{self.method} {self.sparsity}: {self.totals['sparsity']:.4f} of {self.totals['pruned_params']:,} "
                f"weights in {self.totals['pruned_modules']} Linears removed; "
                + ", ".join(f"{p} {t[p]:.1f}s" for p in PHASES) + f", total {t['total']:.1f}s"
                + (f"; mean recon error {self.totals['mean_recon_error']:.4f}"
                   if self.totals.get("mean_recon_error") is not None else "")
                + (f"; {len(self.warnings)} warning(s)" if self.warnings else ""))
