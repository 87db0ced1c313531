"""OWL on the embedded model: PTB-test perplexity with and without OWL layer-wise sparsity (issue 16).

Protocol: SmolLM2-135M-Instruct in fp32; calibration = 32 random 256-token windows of PTB train (seeds 0, 1, 2, as
``make bench``); evaluation = the first 40 non-overlapping 256-token windows of PTB test; Wanda and SparseGPT at 60 %
and 70 %, uniform vs OWL (m 5, lambda 0.08: the paper's defaults). The claim "OWL lowers perplexity" is decided per
(method, sparsity) by a paired t-test over the seeds on log perplexity (alpha 0.05; holds / fails / inconclusive,
``verdicts.paired``). Writes reports/bench/owl.json with every run and the verdicts.

    python bench/owl_embedded.py [--seeds 0,1,2] [--methods wanda,sparsegpt] [--sparsities 0.6,0.7]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from calibkit.models import load_model, load_tokenizer
from calibkit.perplexity import consecutive_windows, perplexity, ptb_text, random_windows
from calibkit.prune import prune
from calibkit.verdicts import _verdict, paired

ALPHA = 0.05


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default="wanda,sparsegpt")
    ap.add_argument("--sparsities", default="0.6,0.7")
    ap.add_argument("--owl-m", type=float, default=5.0)
    ap.add_argument("--owl-lambda", type=float, default=0.08)
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--eval-windows", type=int, default=40)
    ap.add_argument("--json", default="reports/bench/owl.json")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    tok = load_tokenizer(args.model)
    train = tok(ptb_text("train"), return_tensors="pt").input_ids
    evalw = consecutive_windows(tok(ptb_text("test"), return_tensors="pt").input_ids, args.seqlen, args.eval_windows)
    dense = perplexity(load_model(args.model)[0], evalw)
    print(f"# {args.model}: dense PTB-test ppl {dense:.2f}; calibration {args.nsamples}x{args.seqlen} PTB train; "
          f"OWL m {args.owl_m:g} lambda {args.owl_lambda:g}; {torch.get_num_threads()} threads", flush=True)
    runs = []
    for seed in map(int, args.seeds.split(",")):
        calib = random_windows(train, args.nsamples, args.seqlen, seed)
        for method in args.methods.split(","):
            for sp in args.sparsities.split(","):
                for owl in (False, True):
                    model = load_model(args.model)[0]
                    t0 = time.perf_counter()
                    rep = prune(model, calib, method, sp, owl=owl, owl_m=args.owl_m, owl_lambda=args.owl_lambda,
                                progress=False)
                    row = {"seed": seed, "method": method, "sparsity": float(sp), "owl": owl,
                           "ppl": perplexity(model, evalw), "prune_s": time.perf_counter() - t0,
                           "model_sparsity": rep.totals["sparsity"],
                           "layer_sparsity": [round(r["sparsity"], 4) for r in rep.layers] if owl else None}
                    runs.append(row)
                    print(json.dumps({k: v for k, v in row.items() if k != "layer_sparsity"}), flush=True)
    df = pd.DataFrame(runs)
    verdicts = []
    for (method, sp), g in df.groupby(["method", "sparsity"], sort=False):
        logs = {owl: g[g.owl == owl].set_index("seed").ppl.map(math.log) for owl in (False, True)}
        t = paired(logs[False], logs[True])  # > 0: OWL lower
        verdict = _verdict(t["mean"], t["p"] < ALPHA)
        verdicts.append({"method": method, "sparsity": sp, "claim": "OWL lowers PTB perplexity",
                         "test": "paired t over seeds on log ppl", "uniform_ppl": g[~g.owl].ppl.tolist(),
                         "owl_ppl": g[g.owl].ppl.tolist(), "ratio_mean": math.exp(-t["mean"]), **t,
                         "verdict": verdict})
        print(f"{method} {sp:g}: uniform {g[~g.owl].ppl.mean():.1f} +- {g[~g.owl].ppl.std():.1f}, OWL "
              f"{g[g.owl].ppl.mean():.1f} +- {g[g.owl].ppl.std():.1f}; OWL/uniform x{math.exp(-t['mean']):.3f}, "
              f"{t['agree']}/{t['n']} seeds agree, p {t['p']:.3g}: {verdict}", flush=True)
    out = {"dense_ppl": dense, "settings": vars(args), "runs": runs, "verdicts": verdicts}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
