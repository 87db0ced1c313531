"""Structured pruning on the embedded model: parameter reduction, PTB perplexity and the forward-pass speed-up over
the dense model, measured in the same process for every method (issue: structured pruning, LLM-Pruner/NIRVANA).

    python bench/structured_bench.py --json reports/bench/structured.json            # SmolLM2-135M, offline
    python bench/structured_bench.py --model tiny-llama --n 4 --seqlen 32 --windows 2  # seconds, for a check

Calibration: ``--n`` x ``--seqlen`` tokens of the ``--source`` (NIRVANA's setting is 32 x 128). Perplexity: the
first ``--windows`` consecutive 256-token windows of PTB test. Speed: median of ``--repeats`` forward passes of a
``--batch`` x 256 batch (float32, no gradients), after one warm-up; the speed-up is dense / pruned time.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch


def forward_seconds(model, batch: torch.Tensor, repeats: int) -> float:
    with torch.inference_mode():
        model(batch)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model(batch)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> dict:
    from calibkit.models import load_model
    from calibkit.perplexity import consecutive_windows, perplexity, ptb_text
    from calibkit.prune import prune_structured
    from calibkit.spec import build

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--methods", default="nirvana,llm-pruner")
    ap.add_argument("--sparsity", type=float, default=0.2)
    ap.add_argument("--gamma", type=float, default=3.0)
    ap.add_argument("--source", default="ptb")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json")
    a = ap.parse_args(argv)

    model, tok = load_model(a.model)
    cs = build(a.source, n=a.n, seqlen=a.seqlen, seed=a.seed, model_name=a.model, tokenizer=tok, progress=False)
    windows = consecutive_windows(tok(ptb_text("test"), return_tensors="pt").input_ids, 256, a.windows)
    windows = windows.clamp(max=model.config.vocab_size - 1)  # tiny test models have a smaller vocabulary
    batch = windows[:a.batch] if len(windows) >= a.batch else windows.repeat(a.batch, 1)[:a.batch]
    dense_s = forward_seconds(model, batch, a.repeats)
    out = {"model": a.model, "sparsity": a.sparsity, "calibration": f"{a.source} {a.n} x {a.seqlen} seed {a.seed}",
           "threads": torch.get_num_threads(),
           "dense": {"params": sum(p.numel() for p in model.parameters()), "ptb_ppl": perplexity(model, windows),
                     "forward_s": dense_s},
           "methods": {}}
    print(f"dense: {out['dense']['params']:,} params, PTB ppl {out['dense']['ptb_ppl']:.2f}, forward {dense_s:.3f} s")
    for method in a.methods.split(","):
        m = copy.deepcopy(model)
        rep = prune_structured(m, cs, method, a.sparsity, gamma=a.gamma, progress=False)
        s = forward_seconds(m, batch, a.repeats)
        row = {"decoder_reduction": rep.reduction, "params": rep.params_after,
               "param_reduction": 1 - rep.params_after / out["dense"]["params"], "uniform": rep.uniform,
               "widths": rep.widths, "ptb_ppl": perplexity(m, windows), "forward_s": s, "speedup": dense_s / s,
               "prune_s": rep.timing["total"], "options": rep.options}
        out["methods"][method] = row
        print(f"{method}: decoder weights -{row['decoder_reduction']:.1%}, params {row['params']:,} "
              f"(-{row['param_reduction']:.1%}), PTB ppl {row['ptb_ppl']:.2f}, forward {s:.3f} s "
              f"(x{row['speedup']:.2f}), pruning {row['prune_s']:.1f} s, widths "
              f"{'uniform' if rep.uniform else 'per layer'}")
        del m
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
