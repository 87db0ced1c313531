"""Tables over a store: one row per run (``results_table``), one row per profiled calibration set."""
from __future__ import annotations

import os

from ..data.calibration import pool_fractions
from ..data.sources import DIMENSIONS
from ..profile import METRICS as PROFILE_METRICS
from .run import label_info
from .store import Store


def _with_label(prof: dict) -> dict:
    """Label/kind/pool of a profile record (derived from its calibration string when the record lacks them)."""
    return prof if "label" in prof else prof | label_info(prof["calibration"])


def profiles_table(store_root: str | os.PathLike):
    """One row per profiled calibration set: label, kind, pool, seed, the 7 metrics, and undefined reasons."""
    import pandas as pd

    rows = [_with_label(r) for r in Store(store_root).profile_records()]
    cols = ["label", "kind", "pool", "calibration", "seed", "n", "seqlen", *PROFILE_METRICS]
    return pd.DataFrame([{k: r.get(k) for k in cols} | {"undefined": "; ".join(r.get("undefined", {}).values())}
                         for r in rows], columns=cols + ["undefined"])


def results_table(store_root: str | os.PathLike):
    """One row per run: config, calibration label/kind/pool, S_total, S_<dimension>, per-task retention
    (ret_<task>), raw scores (score_<task>), profile metrics, the fraction of sequences per pool (frac_<dimension>),
    seconds."""
    import pandas as pd

    rows = []
    for r in Store(store_root).records():
        c = r["config"]
        row = {k: c.get(k) for k in ("calibration", "n", "seqlen", "seed", "method", "sparsity", "model", "suite",
                                     "limit", "eval_dtype")}
        row["tasks"] = ",".join(c["tasks"]) if c.get("tasks") else None
        row |= {"key": r["key"], "label": r["calibration"]["label"], "kind": r["calibration"]["kind"],
                "pool": r["calibration"]["pool"], "S_total": r["retention"]["total"]}
        row |= {f"S_{d}": v for d, v in r["retention"]["dimensions"].items()}
        row |= {f"ret_{t}": v for t, v in r["retention"]["tasks"].items()}
        se = r.get("retention_se") or {}  # bootstrap SEs over evaluation items (records before them have none)
        row |= {f"se_{d}": v for d, v in se.get("dimensions", {}).items()} | (
            {"se_total": se["total"]} if "total" in se else {})
        row |= {f"score_{t}": v for t, v in r["scores"].items()}
        row |= {m: (r["profile"] or {}).get(m) for m in PROFILE_METRICS}
        counts = r["calibration"].get("counts") or {}  # sequences per capability pool (none: no calibration data)
        row |= {f"frac_{d}": f for d, f in pool_fractions(counts).items()} if counts else {
            f"frac_{d}": None for d in DIMENSIONS}
        row |= {"achieved_sparsity": r["prune"]["totals"].get("sparsity"),
                "mean_recon_error": r["prune"]["totals"].get("mean_recon_error"),
                "prune_warnings": len(r["prune"]["warnings"])}
        row |= {f"{k}_s": r["seconds"].get(k) for k in ("build", "profile", "prune", "eval", "run")}
        row["eval_cpu_share"] = (r.get("cpu_share") or {}).get("eval")  # records before it: None
        rows.append(row)
    return pd.DataFrame(rows)
