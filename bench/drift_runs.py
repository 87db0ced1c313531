"""Cross-kernel drift over many committed runs (issue: "The committed study does not reproduce on a fresh machine").

``bench/drift.py`` measures every environment factor on one config; this script measures the one factor that remains
(CPU kernels) on many committed runs, so that the reproduction tolerance and the verdicts can be set from a spread
rather than from one number. For each selected committed run:

1. a child process prunes the run's config under a kernel variant of ``drift.VARIANTS`` (default ``avx2-threads2``:
   ATen, MKL and oneDNN capped at AVX2) and saves the pruned model (whole: structured pruners change its shapes);
2. this process recomputes the run as the sweep does (``sweep.run.run_one`` into ``--fresh``, a store of fresh
   records: a reproduction of the run on this machine's kernels, compared with the committed record);
3. this process evaluates the variant's model exactly as the run evaluates (dtype, suite, items), and computes
   their retention against the same dense scores.

With ``--kinds select`` (and ``--suite oasis``) the runs are OASIS's selection runs: the child starts from a cache
without OASIS selections and generated sets (``shadow_cache``), so the selection is made again on the variant's
kernels, and each row says whether it picked the same samples (``same_calibration``) and carries the raw scores
(``selection_study.drift_table`` reads their log perplexity and accuracy).

Only the calibration set's making and the pruning run on the variant kernels; evaluation runs on this machine's. ``drift.py`` measured that
evaluation kernels move S_d by <= 0.06 pts with the same mask (AVX-512 without BF16), and the ``balanced`` run here
against ``reports/bench/drift_bf16.json``'s fully-AVX2 variant tells the rest. Evaluating bf16 on AVX2 costs ~4x.

Rows are appended to ``--out`` (JSON lines) as runs finish; a rerun skips the runs already there.

    python bench/drift_runs.py --methods sparsegpt,wanda --sparsity 0.6 --seeds 0 \
        --out results/drift/embedded-avx2.jsonl --fresh results/reproductions/embedded/store
    python bench/drift_runs.py --kinds select --suite oasis --methods wanda,sparsegpt,nirvana --sparsity 0.5,0.2 \
        --seeds 0 --out results/drift/embedded-selection-avx2.jsonl --fresh results/reproductions/embedded/store
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drift import ROOT, VARIANTS  # noqa: E402  (the kernel variants are defined once, in drift.py)

from calibkit.settings import CACHE_ENV  # noqa: E402

RECOMPUTED = ("select", "selfgen")  # cache folders the variant's child starts without


def _config(rec: dict):
    from calibkit.sweep.config import RunConfig

    cfg = RunConfig.from_dict(rec["config"])
    if cfg.key != rec["key"]:
        raise SystemExit(f"record {rec['key']}: its config hashes to {cfg.key}; written by another calibkit")
    return cfg


def child(args) -> None:
    """Prune one committed run's config on this process's kernels; save the pruned model."""
    import torch

    from calibkit.environment import describe
    from calibkit.sweep.run import _calibration, _prune, fresh_model
    from calibkit.sweep.store import Store

    torch.set_num_threads(args.threads)
    rec = next(r for r in Store(args.store).records() if r["key"] == args.key)
    cfg = _config(rec)
    model, tok = fresh_model(cfg.model)
    cs = _calibration(cfg, tok, model)
    t0 = time.perf_counter()
    _prune(model, cs, cfg, "cpu")
    seconds = time.perf_counter() - t0
    torch.save({"model": model, "prune_seconds": seconds, "environment": json.dumps(describe()),
                "calibration": cs.tokens_digest() if cs is not None else None}, args.out)


def calibration_digest(cfg) -> str | None:
    """The token digest of the run's calibration set as this process builds it (OASIS selections and generated
    sets from the cache the reference run filled)."""
    from calibkit.sweep.run import _calibration, fresh_model

    model, tok = fresh_model(cfg.model)
    cs = _calibration(cfg, tok, model)
    return cs.tokens_digest() if cs is not None else None


def evaluate_pruned(cfg, pruned):
    """Retention (points) and scores of the ``pruned`` model, evaluated as ``run_one`` evaluates."""
    import copy

    import torch

    from calibkit.eval.harness import dense_scores, evaluate
    from calibkit.eval.retention import retention
    from calibkit.sweep.compare import retention_points
    from calibkit.sweep.run import fresh_model

    model, tok = fresh_model(cfg.model)
    dtype = getattr(torch, cfg.eval_dtype)
    tasks = list(cfg.tasks) if cfg.tasks else None
    dense = dense_scores(cfg.model, lambda: (copy.deepcopy(model).to(dtype), tok), cfg.suite, cfg.limit,
                         tasks=tasks, dtype=cfg.eval_dtype, progress=False)
    res = evaluate(pruned.to(dtype), tok, cfg.suite, cfg.limit, tasks=tasks, progress=False)
    return retention_points(retention(res["scores"], dense["scores"], res["dimensions"],
                                      set(res["lower_is_better"]))), res["scores"]


def shadow_cache(tmp: str) -> str:
    """A cache root for the variant's child: this one's folders linked in, except what the run computes on its own
    kernels and the cache would otherwise hand back from this machine's (OASIS selections, self-generated sets)."""
    from calibkit.settings import cache_dir

    root = Path(tmp) / "cache"
    root.mkdir()
    for entry in Path(cache_dir()).iterdir():
        if entry.name not in RECOMPUTED:
            (root / entry.name).symlink_to(entry)
    return str(root)


def select(records: list[dict], args) -> list[dict]:
    methods, seeds = args.methods.split(","), {int(s) for s in args.seeds.split(",")}
    labels = args.labels
    picked = [r for r in records if r["config"]["method"] in methods
              and r["config"]["sparsity"] in args.sparsity.split(",") and r["config"]["seed"] in seeds
              and r["config"]["suite"] == args.suite and r["calibration"].get("kind") in args.kinds.split(",")
              and (labels is None or r["calibration"]["label"] in labels)]
    # the balanced mix first (comparable with drift.py's fully-AVX2 measurement), then alternate pruners
    return sorted(picked, key=lambda r: (r["calibration"]["label"] != "mix_balanced", r["calibration"]["label"],
                                         r["config"]["method"], r["config"]["seed"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default=str(ROOT / "results" / "embedded"), help="the committed store")
    p.add_argument("--fresh", required=True, help="store of the recomputed (reference) records; resumes")
    p.add_argument("--out", required=True, help="JSON lines, one per run; resumes")
    p.add_argument("--variant", default="avx2-threads2", choices=sorted(VARIANTS))
    p.add_argument("--methods", default="sparsegpt,wanda")
    p.add_argument("--sparsity", default="0.6", help="comma-separated (e.g. 0.5,0.2 for OASIS's selection runs)")
    p.add_argument("--kinds", default="source,mix",
                   help="calibration kinds (select: OASIS's selection runs, e.g. with --suite oasis)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--suite", default="embedded")
    p.add_argument("--labels", nargs="+", help="calibration labels, space-separated (a pair of chosen samples is "
                   "one label, e.g. ptb#0,11; default: every run of --kinds)")
    p.add_argument("--max-runs", type=int, help="stop after this many runs (in total, with those already done)")
    p.add_argument("--summary", help="write the per-pruner summary of --out here (JSON)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--key", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    import torch
    from tqdm.auto import tqdm

    from calibkit.environment import describe
    from calibkit.sweep.compare import compare_records, retention_points
    from calibkit.sweep.run import run_one
    from calibkit.sweep.store import Store

    torch.set_num_threads(2)
    out = Path(args.out)
    done = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    picked = select(Store(args.store).records(), args)
    measured = {d["key"] for d in done if d["variant"] == args.variant}  # resume per run and variant
    todo = [r for r in picked if r["key"] not in measured]
    if args.max_runs is not None:  # counts this selection's runs already measured with this variant
        todo = todo[:max(args.max_runs - (len(picked) - len(todo)), 0)]
    out.parent.mkdir(parents=True, exist_ok=True)
    variant = VARIANTS[args.variant]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    for rec in tqdm(todo, desc=f"drift ({args.variant})", unit="run"):
        cfg = _config(rec)
        with tempfile.TemporaryDirectory() as tmp:
            saved = os.path.join(tmp, "pruned.pt")
            subprocess.run([sys.executable, __file__, "--child", "--store", args.store, "--fresh", args.fresh,
                            "--out", saved, "--key", rec["key"], "--threads", str(variant["threads"])],
                           check=True, env=os.environ | variant["env"] | {"PYTHONPATH": path,
                                                                          CACHE_ENV: shadow_cache(tmp)})
            pruned = torch.load(saved, weights_only=False)  # our own child's file: the pickled pruned model
        fresh = Store(args.fresh).get(cfg) or run_one(cfg, args.fresh)
        ref = retention_points(fresh["retention"])
        var, var_scores = evaluate_pruned(cfg, pruned["model"])
        row = {"key": rec["key"], "label": rec["calibration"]["label"], "kind": rec["calibration"].get("kind"),
               "suite": cfg.suite, "method": cfg.method, "sparsity": cfg.sparsity, "seed": cfg.seed,
               "variant": args.variant, "committed": retention_points(rec["retention"]), "reference": ref,
               "variant_retention": var, "delta": {k: var[k] - ref[k] for k in ref},
               "scores": {"committed": rec["scores"], "reference": fresh["scores"], "variant": var_scores},
               "same_calibration": pruned["calibration"] == calibration_digest(cfg),
               "reference_vs_committed": compare_records(rec, fresh),
               "prune_seconds": {"variant": pruned["prune_seconds"], "reference": fresh["seconds"]["prune"]},
               "variant_cpu": json.loads(pruned["environment"])["torch"]["cpu_capability"],
               "reference_cpu": describe()["torch"]["cpu_capability"], "measured": time.strftime("%Y-%m-%d")}
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        tqdm.write(f"{row['label']:14s} {cfg.method:9s} seed {cfg.seed}: Δ " + ", ".join(
            f"{k[2:]} {v:+.2f}" for k, v in row["delta"].items()) + f" (reference reproduces the committed record: "
            f"{'bit-identical' if row['reference_vs_committed']['exact'] else row['reference_vs_committed']})")
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    if not rows:
        return
    from calibkit import selection_study as SS
    from calibkit.analysis import drift_frame, drift_stats

    sel = SS.drift_frame([r for r in rows if r.get("kind") == "select"])
    for (method, selector), d in sel.groupby(["method", "selector"]):
        print(f"{method} {selector} ({len(d)} runs): Δ log ppl mean {d['log_ppl'].mean():+.4f} max|Δ| "
              f"{d['log_ppl'].abs().max():.4f}, Δ acc mean {d['acc'].mean():+.2f} max|Δ| {d['acc'].abs().max():.2f} "
              f"pts, same samples selected in {int(d['same_calibration'].sum())}/{len(d)}")
    rows = [r for r in rows if r.get("kind") != "select"]
    if not rows:
        return
    by_suite = {}  # retention columns differ between suites (rows before suites were recorded: embedded)
    for r in rows:
        by_suite.setdefault(r.get("suite", "embedded"), []).append(r)
    s = {suite: drift_stats(drift_frame(part)) for suite, part in sorted(by_suite.items())}
    for name, part in ((f"{suite} {name}", part) for suite, stats in s.items() for name, part in stats.items()):
        print(f"{name} ({part['runs']} runs): " + ", ".join(
            f"{c[2:]} mean {v['mean']:+.2f} sd {v['sd'] if v['sd'] is None else round(v['sd'], 2)} "
            f"max|Δ| {v['max_abs']:.2f}" for c, v in part.items()
            if c != "runs" and v["max_abs"] == v["max_abs"]))  # columns the suite has (NaN: none of its tasks)
    if args.summary:
        Path(args.summary).write_text(json.dumps(s, indent=1) + "\n")


if __name__ == "__main__":
    main()
