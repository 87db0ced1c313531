"""Executors: ``local`` (sequential, in this process) and ``ray`` (one Ray task per run, declaring CPUs/GPU)."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict

from tqdm.auto import tqdm

from .config import RunConfig, SweepError
from .run import run_one
from .store import Store


def run_sweep(configs: list[RunConfig], store_root: str | os.PathLike, executor: str = "local",
              device: str = "cpu", ray_address: str | None = None, cpus_per_run: int = 2, progress: bool = True,
              profile: bool = True) -> dict:
    """Run every config whose record is missing (``profile=False``: without profiling the calibration sets; a
    record that exists is used either way). Returns {"done": n already there, "ran": n, "seconds": s}."""
    store = Store(store_root)
    store.claim()
    store.clean_partial()
    todo = [c for c in configs if not store.done(c)]
    stale = store.stale(todo)
    if stale and progress:
        tqdm.write(f"sweep: {len(stale)} records were evaluated on other items than their suite now asks "
                   f"(its task files changed): recomputing them", file=sys.stderr)
    t0 = time.perf_counter()
    bar = tqdm(total=len(configs), initial=len(configs) - len(todo), desc="sweep", unit="run", disable=not progress)
    if executor == "local":
        for cfg in todo:
            bar.set_postfix_str(f"{cfg.calibration} {cfg.method} {cfg.sparsity}")
            run_one(cfg, store.root, device, profile)
            bar.update()
    elif executor == "ray":
        _run_ray(todo, store, device, ray_address, cpus_per_run, bar, profile)
    else:
        raise SweepError(f"unknown executor {executor!r}; use local or ray")
    bar.close()
    return {"total": len(configs), "done": len(configs) - len(todo), "ran": len(todo),
            "seconds": time.perf_counter() - t0}


def _run_ray(todo: list[RunConfig], store: Store, device: str, address: str | None, cpus: int, bar,
             profile: bool = True) -> None:
    try:
        import ray
    except ImportError:
        raise SweepError("the ray executor needs Ray: pip install 'calibkit[ray]'") from None
    env = {k: v for k, v in os.environ.items() if k.startswith(("CALIBKIT_", "HF_"))}
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, runtime_env={"env_vars": env}, include_dashboard=False, log_to_driver=False,
                 **({} if address else {"num_cpus": max(cpus, os.cpu_count() or 1)}))
    try:
        task = ray.remote(num_cpus=cpus, num_gpus=1 if device.startswith("cuda") else 0)(_ray_run)
        pending = [task.remote(asdict(c), str(store.root.resolve()), device, profile) for c in todo]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            ray.get(ready)  # re-raises a failed run's error here
            bar.update(len(ready))
    finally:
        if started:
            ray.shutdown()


def _ray_run(cfg: dict, store_root: str, device: str, profile: bool = True) -> str:
    cfg = RunConfig.from_dict(cfg)
    run_one(cfg, store_root, device, profile)
    return cfg.key
