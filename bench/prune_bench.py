"""calibkit's pruning engine against llm-compressor, side by side in one run (``make bench``).

Protocol (issue 3): the embedded SmolLM2-135M-Instruct in fp32; calibration = 32 random windows of 256 tokens from
Penn Treebank train (seed 0, drawn as SparseGPT's datautils does); evaluation = perplexity on the first 40
non-overlapping 256-token windows of PTB test. Both tools get the same tokens and prune the seven decoder
projections only (llm-compressor's targets are given as a regex: with its default ``targets=["Linear"]`` the tied
lm_head/embedding would be pruned too); llm-compressor gets them as calibkit's own export
(``CalibrationSet.to_hf_dataset(tokenized_only=True)``). Each configuration is timed ``--repeats`` times on a freshly loaded model
(median reported; the model load is not timed); perplexity is measured after the first repeat.

Prints one line per configuration and, last, ``summary: sparsegpt x<ratio> wanda x<ratio> max-ppl-gap <pct>%``
where a method's ratio is its smallest speed-up over the sparsity patterns run and the gap is the largest
|ppl_calibkit / ppl_llmcompressor - 1| over all configurations.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from calibkit.data.calibration import CalibrationSet
from calibkit.models import load_model, load_tokenizer
from calibkit.perplexity import consecutive_windows, perplexity, ptb_text, random_windows
from calibkit.prune import Sparsity, prune

LLMC_TARGETS = ["re:.*self_attn\\.(q|k|v|o)_proj$", "re:.*mlp\\.(gate|up|down)_proj$"]


def run_calibkit(model, calib, method, sparsity, device):
    return prune(model, calib, method, sparsity, device=device, progress=False)


def run_llmcompressor(model, calib, method, sparsity, device):
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier

    sp = Sparsity.parse(sparsity)
    kw = dict(sparsity=0.5 if sp.is_nm else sp.fraction, mask_structure=f"{sp.n}:{sp.m}" if sp.is_nm else "0:0",
              targets=LLMC_TARGETS)
    recipe = SparseGPTModifier(block_size=128, dampening_frac=0.01, **kw) if method == "sparsegpt" \
        else WandaPruningModifier(**kw)
    ds = CalibrationSet([{"input_ids": row} for row in calib.tolist()]).to_hf_dataset(tokenized_only=True)
    oneshot(model=model, dataset=ds, recipe=recipe, num_calibration_samples=len(calib),
            max_seq_length=calib.shape[1], shuffle_calibration_samples=False)


TOOLS = {"calibkit": run_calibkit, "llm-compressor": run_llmcompressor}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--methods", default="sparsegpt,wanda")
    ap.add_argument("--sparsities", default="0.5,2:4")
    ap.add_argument("--tools", default="calibkit,llm-compressor")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--eval-windows", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="also write all measurements here")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)

    tok = load_tokenizer(args.model)
    calib = random_windows(tok(ptb_text("train"), return_tensors="pt").input_ids, args.nsamples, args.seqlen,
                           args.seed)
    evalw = consecutive_windows(tok(ptb_text("test"), return_tensors="pt").input_ids, args.seqlen, args.eval_windows)
    print(f"# {args.model}, calibration {tuple(calib.shape)} PTB train seed {args.seed}, eval {tuple(evalw.shape)} "
          f"PTB test, torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}", flush=True)
    model, _ = load_model(args.model, device=args.device)
    dense = perplexity(model, evalw)
    print(f"dense: ppl {dense:.2f}", flush=True)
    results = {"dense_ppl": dense, "runs": []}
    tools = args.tools.split(",")
    for method in args.methods.split(","):
        for sp in args.sparsities.split(","):
            row = {"method": method, "sparsity": sp}
            for tool in tools:
                times = []
                for rep in range(args.repeats):
                    model, _ = load_model(args.model, device=args.device)
                    t0 = time.perf_counter()
                    TOOLS[tool](model, calib, method, sp, args.device)
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
                    if rep == 0:
                        row[f"{tool}_ppl"] = perplexity(model, evalw)
                    del model
                row[f"{tool}_times"] = times
                row[f"{tool}_s"] = statistics.median(times)
                print(f"  {method} {sp} {tool}: {row[f'{tool}_s']:.1f} s (runs {', '.join(f'{t:.1f}' for t in times)})"
                      f", ppl {row[f'{tool}_ppl']:.2f}", file=sys.stderr, flush=True)
            if len(tools) == 2:
                a, b = tools
                row["speedup"] = row[f"{b}_s"] / row[f"{a}_s"]
                row["ppl_gap"] = abs(row[f"{a}_ppl"] / row[f"{b}_ppl"] - 1)
                print(f"{method} {sp}: {a} {row[f'{a}_s']:.1f} s ppl {row[f'{a}_ppl']:.2f} | {b} {row[f'{b}_s']:.1f} s "
                      f"ppl {row[f'{b}_ppl']:.2f} | x{row['speedup']:.2f} | ppl gap {100 * row['ppl_gap']:.2f}%",
                      flush=True)
            results["runs"].append(row)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if len(tools) == 2:
        ratio = {m: min(r["speedup"] for r in results["runs"] if r["method"] == m) for m in args.methods.split(",")}
        gap = max(r["ppl_gap"] for r in results["runs"])
        print("summary: " + " ".join(f"{m} x{ratio[m]:.2f}" for m in ratio) + f" max-ppl-gap {100 * gap:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
