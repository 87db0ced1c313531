"""How much do pruned models and their retention move between environments (issue: "The committed study does not
reproduce on a fresh machine")?

One run config (calibration spec, N x L, seed, pruner, sparsity, model, suite) is pruned and evaluated once per
environment variant, each in its own process: thread count (torch.set_num_threads), CPU kernel selection
(ATEN_CPU_CAPABILITY for ATen, MKL_ENABLE_INSTRUCTIONS for MKL) and package versions (``--python NAME=PATH``: the
child runs under another environment's interpreter, e.g. a venv with another transformers; the summary lists the
packages whose versions differ from the first variant's). Dense scores are evaluated in every variant too
(never taken from the cache), so retention compares like with like; both are evaluated in ``--eval-dtype``
(default bfloat16, as the embedded profile does: on a CPU without AVX512-BF16 its kernels differ too). Prints, per
variant: S_total and S_d, the fraction of mask entries that differ from the first variant, and the largest
relative weight difference.

    python bench/drift.py --spec balanced --method sparsegpt --sparsity 0.6 --json reports/bench/drift.json \
        --python transformers-4.57=/path/to/other-venv/bin/python
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

VARIANTS = {
    "threads2": {"threads": 2, "env": {}},
    "threads1": {"threads": 1, "env": {}},
    # a CPU with AVX-512 but without its BF16 extension (Skylake/Cascade Lake): oneDNN's bf16 kernels differ
    "avx512-nobf16": {"threads": 2, "env": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}},
    "avx2-threads2": {"threads": 2, "env": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                                            "ONEDNN_MAX_CPU_ISA": "AVX2"}},
}


def child(args) -> None:
    import torch

    import calibkit
    from calibkit.environment import describe
    from calibkit.eval.harness import evaluate
    from calibkit.eval.retention import retention
    from calibkit.models import load_model
    from calibkit.prune import prune
    from calibkit.spec import build

    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model)  # float32: pruning is float32; evaluation in --eval-dtype, as sweeps do
    dtype = getattr(torch, args.eval_dtype)
    dense = evaluate(copy.deepcopy(model).to(dtype), tok, args.suite, args.limit)
    cs = build(args.spec, n=args.n, seqlen=args.seqlen, seed=args.seed, model_name=args.model, tokenizer=tok,
               progress=False)
    t0 = time.perf_counter()
    prune(model, cs, args.method, args.sparsity, progress=False)
    seconds = time.perf_counter() - t0
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if ".layers." in n and p.ndim == 2}
    res = evaluate(model.to(dtype), tok, args.suite, args.limit)
    ret = retention(res["scores"], dense["scores"], res["dimensions"], set(res["lower_is_better"]))
    torch.save(weights, args.out + ".pt")
    Path(args.out + ".json").write_text(json.dumps({
        "retention": ret, "scores": res["scores"], "dense_scores": dense["scores"], "prune_seconds": seconds,
        "scorer": res["scorer"], "environment": describe(), "versions": versions(),
        "calibkit_file": calibkit.__file__}, indent=1))


def versions() -> dict[str, str]:
    """Every installed distribution's version (to name what differs between two environments)."""
    from importlib.metadata import distributions

    return {d.metadata["Name"].lower(): d.version for d in distributions() if d.metadata["Name"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default="balanced")
    p.add_argument("--method", default="sparsegpt")
    p.add_argument("--sparsity", default="0.6")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--suite", default="embedded")
    p.add_argument("--limit", type=int)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--seqlen", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"],
                   help="dtype of the dense and pruned models during evaluation (the embedded profile's: bfloat16)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {list(VARIANTS)}")
    p.add_argument("--python", action="append", default=[], metavar="NAME=PATH",
                   help="a variant run by another environment's interpreter (2 threads, no kernel override)")
    p.add_argument("--json", help="write the summary here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    import torch

    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    variants = {n: VARIANTS[n] | {"python": sys.executable} for n in names}
    for item in args.python:
        name, _, path = item.partition("=")
        if not name or not path or not Path(path).is_file():
            p.error(f"--python {item!r}: give NAME=PATH of an interpreter that exists")
        if name in variants:
            p.error(f"--python {item!r}: variant {name!r} is already measured; give another name")
        variants[name] = {"threads": 2, "env": {}, "python": path}
        names.append(name)
    common = ["--spec", args.spec, "--method", args.method, "--sparsity", args.sparsity, "--model", args.model,
              "--suite", args.suite, "--n", str(args.n), "--seqlen", str(args.seqlen), "--seed", str(args.seed),
              "--eval-dtype", args.eval_dtype]
    common += ["--limit", str(args.limit)] if args.limit else []
    rows, first = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            v = variants[name]
            out = os.path.join(tmp, name)
            cmd = [v["python"], __file__, "--child", "--threads", str(v["threads"]), "--out", out, *common]
            # every variant runs this checkout's calibkit, whatever the interpreter has installed
            path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
            subprocess.run(cmd, check=True, env=os.environ | v["env"] | {"PYTHONPATH": path})
            rec = json.loads(Path(out + ".json").read_text())
            weights = torch.load(out + ".pt")
            if first is None:
                first, flips, rel, base_versions = weights, 0.0, 0.0, rec["versions"]
            else:
                total = sum(w.numel() for w in weights.values())
                flips = sum(int(((weights[k] == 0) != (first[k] == 0)).sum()) for k in weights) / total
                rel = max(float((weights[k] - first[k]).norm() / first[k].norm()) for k in weights)
            r = rec["retention"]
            rows.append({"variant": name, "S_total": 100 * r["total"],
                         **{f"S_{d}": 100 * x for d, x in r["dimensions"].items()},
                         "mask_flips_vs_first": flips, "max_rel_weight_diff_vs_first": rel,
                         "dense_scores": rec["dense_scores"], "prune_seconds": rec["prune_seconds"],
                         "cpu_capability": rec["environment"]["torch"]["cpu_capability"],
                         "threads": rec["environment"]["torch"]["threads"], "scorer": rec["scorer"],
                         "calibkit_file": rec["calibkit_file"],
                         "packages_differing_from_first": {
                             k: [base_versions.get(k), rec["versions"].get(k)]
                             for k in sorted(set(base_versions) | set(rec["versions"]))
                             if base_versions.get(k) != rec["versions"].get(k) and k != "calibkit"}})
            print(f"{name:16s} S_total {rows[-1]['S_total']:6.2f}  "
                  + "  ".join(f"{d[2:]} {rows[-1][d]:6.2f}" for d in rows[-1] if d.startswith("S_") and d != "S_total")
                  + f"  mask flips {flips:.2e}  max rel dW {rel:.2e}  ({rows[-1]['cpu_capability']})"
                  + "".join(f"  {k} {a} -> {b}" for k, (a, b) in rows[-1]["packages_differing_from_first"].items()),
                  flush=True)
    spread = {k: max(r[k] for r in rows) - min(r[k] for r in rows) for k in rows[0] if k.startswith("S_")}
    print("spread across variants (points): " + ", ".join(f"{k} {v:.2f}" for k, v in spread.items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"config": {k: getattr(args, k) for k in (
            "spec", "method", "sparsity", "model", "suite", "limit", "n", "seqlen", "seed", "eval_dtype")},
            "measured": time.strftime("%Y-%m-%d"), "variants": rows,
            "spread_points": spread}, indent=1) + "\n")


if __name__ == "__main__":
    main()
