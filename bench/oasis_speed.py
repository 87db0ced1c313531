"""OASIS selection on the embedded model: per pruner, the per-sample statistics' time, the time per optimisation
step, the whole run and the peak memory (issue: OASIS, target <= 10 min for a pool of 32 x 128 tokens on 2 cores).

    python bench/oasis_speed.py --json reports/bench/oasis_speed.json               # SmolLM2-135M, offline
    python bench/oasis_speed.py --model tiny-llama --steps 2 --pruners wanda         # seconds, for a check

Each pruner runs in a fresh subprocess so that its peak memory (max RSS) is its own. The pool is the first
``--pool-n`` sequences of the ``--source`` draw of ``--seed``, the task sequences the ``task_n`` after them.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

SPARSITY = {"wanda": "0.5", "sparsegpt": "0.5", "nirvana": "0.2", "llm-pruner": "0.2"}


def one(args) -> dict:
    from calibkit.models import load_model
    from calibkit.spec import build
    from calibkit.select import OasisParams

    model, tok = load_model(args.model)
    params = OasisParams.from_dict({"steps": args.steps} | ({"stat_dtype": args.stat_dtype} if args.stat_dtype else {}))
    drawn = build(args.source, args.pool_n + params.task_n, args.seqlen, args.seed, model_name=args.model,
                  tokenizer=tok, progress=False)
    from calibkit.data.calibration import choose
    from calibkit.select import oasis

    pool = choose(drawn, range(args.pool_n), args.source)
    task = choose(drawn, range(args.pool_n, len(drawn)), args.source)
    res = oasis(model, pool.input_ids, task.input_ids, args.pruners, SPARSITY[args.pruners], args.seed, params,
                progress=True)
    t = res.timing
    return {"pruner": args.pruners, "sparsity": SPARSITY[args.pruners], "steps": args.steps,
            "statistics_s": round(t["statistics"], 1), "per_step_s": round(t["per_step"], 2),
            "total_s": round(t["total"], 1), "projected_default_s": round(t["statistics"] + t["per_step"] * 48, 1),
            "peak_rss_gib": round(res.memory["peak_rss_gib"], 2), "final_loss": res.trajectory[-1]["loss"],
            "top8": res.ranking[:8]}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--pruners", default="wanda,sparsegpt,nirvana,llm-pruner")
    ap.add_argument("--source", default="wiki-excerpt")
    ap.add_argument("--pool-n", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=128)
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stat-dtype")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: one pruner, JSON on stdout
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(args)))
        return []
    rows = []
    for pruner in args.pruners.split(","):
        child = ["--model", args.model, "--source", args.source, "--pool-n", str(args.pool_n), "--seqlen",
                 str(args.seqlen), "--steps", str(args.steps), "--seed", str(args.seed)]
        child += ["--stat-dtype", args.stat_dtype] if args.stat_dtype else []
        cmd = [sys.executable, __file__, *child, "--pruners", pruner, "--one"]
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"model": args.model, "pool": f"{args.pool_n} x {args.seqlen}",
                                               "source": args.source, "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
