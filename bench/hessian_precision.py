"""SparseGPT's Hessian precision on the embedded model (issue 16): how far the tf32/bf16 input paths land from fp32.

Protocol: SmolLM2-135M-Instruct in fp32, SparseGPT 50 %; calibration = 32 random 128-token windows of PTB train
(seeds 0, 1, 2); 16 random 128-token windows of PTB test held out. Per seed: the fp32 path, an fp32 re-run that only
sums in another order (one sequence per batch: the floor that float32 rounding alone sets), tf32 and bf16 (emulated on
the CPU: the same numbers a GPU's tensor cores give). Each is compared with the fp32 path: mask agreement over the
decoder's weights, and the relative change of the final-hidden-state error against the dense model. Writes
reports/bench/hessian_precision.json.

    python bench/hessian_precision.py [--seeds 0,1,2]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import torch

from calibkit.models import load_model, load_tokenizer
from calibkit.perplexity import ptb_text, random_windows
from calibkit.prune import prune
from calibkit.prune.quality import final_hidden, mask_agreement, masks, relative_error

PATHS = {"fp32": {}, "fp32 reordered": {"batch_tokens": 1}, "tf32": {"hessian_precision": "tf32"},
         "bf16": {"hessian_precision": "bf16"}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sparsity", default="0.5")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=128)
    ap.add_argument("--held-out", type=int, default=16)
    ap.add_argument("--json", default="reports/bench/hessian_precision.json")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    tok = load_tokenizer(args.model)
    train = tok(ptb_text("train"), return_tensors="pt").input_ids
    held = random_windows(tok(ptb_text("test"), return_tensors="pt").input_ids, args.held_out, args.seqlen, 0)
    dense = final_hidden(load_model(args.model)[0], held)
    rows = []
    for seed in map(int, args.seeds.split(",")):
        calib = random_windows(train, args.nsamples, args.seqlen, seed)
        ref = None
        for path, options in PATHS.items():
            model = load_model(args.model)[0]
            prune(model, calib, "sparsegpt", args.sparsity, progress=False, **options)
            m, err = masks(model), relative_error(final_hidden(model, held), dense)
            ref = ref or (m, err)
            rows.append({"seed": seed, "path": path, "hidden_error": err, "mask_agreement": mask_agreement(ref[0], m),
                         "error_change": err / ref[1] - 1})
            print(json.dumps(rows[-1]), flush=True)
    df = pd.DataFrame(rows)
    summary = df.groupby("path", sort=False).agg(agree_mean=("mask_agreement", "mean"),
                                                 agree_min=("mask_agreement", "min"),
                                                 change_mean=("error_change", "mean"),
                                                 change_absmax=("error_change", lambda s: s.abs().max()))
    print(summary.to_string(float_format=lambda v: f"{v:.5f}"))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"settings": vars(args), "runs": rows,
                                           "summary": summary.reset_index().to_dict("records")}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
