"""What a result was computed on: packages (against the lock), CPU, kernels, threads, device.

``describe()`` goes into every sweep record and prune report, so that two results that differ can be traced to the
environment that differs (``diff``). Package versions are summarised by the hash of the sorted ``name==version``
list and compared with ``requirements.lock`` (the deviations are listed); the CPU is described by its model and the
instruction-set flags that select kernels; torch by its version, build configuration (BLAS/LAPACK, oneDNN), CPU
capability and thread counts.
"""
from __future__ import annotations

import hashlib
import os
import platform
import re
from functools import lru_cache
from importlib import metadata
from pathlib import Path

LOCK_FILE = Path(__file__).resolve().parent.parent / "requirements.lock"  # in a checkout (editable install)
KEY_PACKAGES = ("torch", "transformers", "lm-eval", "datasets", "accelerate", "numpy", "scipy", "tokenizers",
                "safetensors", "scikit-learn", "pandas")
KERNEL_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile", "amx_int8")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@lru_cache(maxsize=1)
def installed() -> dict[str, str]:
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            out[_norm(name)] = dist.version
    return dict(sorted(out.items()))


def locked(path: str | os.PathLike = LOCK_FILE) -> dict[str, str]:
    """``name -> version`` pinned by a lock file (empty when there is none)."""
    path = Path(path)
    if not path.is_file():
        return {}
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;#]+)", line.strip())
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def packages(lock: str | os.PathLike = LOCK_FILE) -> dict:
    have, pins = installed(), locked(lock)
    listing = "\n".join(f"{k}=={v}" for k, v in have.items())
    deviations = {k: {"installed": have.get(k), "locked": v} for k, v in pins.items()
                  if have.get(k) != v and k != "calibkit"}
    return {"sha256": hashlib.sha256(listing.encode()).hexdigest(), "count": len(have),
            "key": {k: have.get(k) for k in KEY_PACKAGES},
            "lock_sha256": hashlib.sha256(Path(lock).read_bytes()).hexdigest() if Path(lock).is_file() else None,
            "lock_deviations": deviations}


@lru_cache(maxsize=1)
def cpu() -> dict:
    info = {"machine": platform.machine(), "model": platform.processor() or None, "flags": [], "cores": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    if model:
        info["model"] = model.group(1).strip()
    if flags:
        have = set(flags.group(1).split())
        info["flags"] = [f for f in KERNEL_FLAGS if f in have]
    return info


def torch_build() -> dict:
    import torch

    config = torch.__config__.show()

    def field(name):
        m = re.search(rf"{name}=([^,\n]+)", config)
        return m.group(1).strip() if m else None

    return {"version": torch.__version__, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "blas": field("BLAS_INFO"), "lapack": field("LAPACK_INFO"),
            "mkldnn": torch.backends.mkldnn.is_available(), "openmp": torch.backends.openmp.is_available(),
            "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE",
                                                "OPENBLAS_NUM_THREADS", "ATEN_CPU_CAPABILITY") if k in os.environ}}


def describe(lock: str | os.PathLike = LOCK_FILE) -> dict:
    """The whole description (a few ms after the first call)."""
    from . import __version__

    return {"calibkit": __version__, "python": platform.python_version(), "platform": platform.platform(),
            "packages": packages(lock), "cpu": cpu(), "torch": torch_build()}


def diff(a: dict, b: dict, prefix: str = "") -> dict:
    """``path -> (a, b)`` for every leaf that differs between two descriptions."""
    out = {}
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            out |= diff(x, y, f"{prefix}{k}.")
        elif x != y:
            out[f"{prefix}{k}"] = (x, y)
    return out
