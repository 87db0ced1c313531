"""Self-generation throughput: calibkit's batched generator against plain ``model.generate`` with batch 1, same
prompts, same number of new tokens, same run; then the wall time of a full IGSP set (pool included).

    python bench/selfgen_bench.py [--model smollm2-135m] [--prompts 128] [--batch1-prompts 16] [--new-tokens 64]
                                  [--igsp-n 128]

Rates are tokens/s; batch 1 runs on the first ``--batch1-prompts`` prompts (it is slow), the batched generator on
all ``--prompts``.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from calibkit.models import load_model
from calibkit.selfgen.generate import Sampling, generate
from calibkit.selfgen.prompts import encode, prompts
from calibkit.selfgen.sgs import SAMPLING


def batch1(model, tok, prompt_ids, new_tokens, seed):
    out = []
    for i, ids in enumerate(prompt_ids):
        torch.manual_seed(seed + i)
        x = torch.tensor([ids])
        g = model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=True, max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, top_k=SAMPLING.top_k, top_p=SAMPLING.top_p,
                           temperature=SAMPLING.temperature, repetition_penalty=SAMPLING.repetition_penalty,
                           pad_token_id=tok.eos_token_id)
        out.append(g[0, len(ids):].tolist())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=128)
    ap.add_argument("--batch1-prompts", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch-sizes", default="16,64,128")
    ap.add_argument("--igsp-n", type=int, default=128, help="0 to skip the full IGSP build")
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    model, tok = load_model(args.model)
    ids = [encode(tok, t) for t in prompts("General", args.prompts, 0)]
    total = args.prompts * args.new_tokens
    res = {"model": args.model, "prompts": args.prompts, "new_tokens": args.new_tokens, "threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    batch1(model, tok, ids[: args.batch1_prompts], args.new_tokens, 0)
    res["generate_batch1_tok_s"] = args.batch1_prompts * args.new_tokens / (time.perf_counter() - t0)
    print(f"model.generate, batch 1: {res['generate_batch1_tok_s']:.1f} tok/s")
    for bs in map(int, args.batch_sizes.split(",")):
        t0 = time.perf_counter()
        generate(model, tok, ids, args.new_tokens, SAMPLING, seed=0, batch_size=bs, progress=False)
        rate = total / (time.perf_counter() - t0)
        res[f"calibkit_batch{bs}_tok_s"] = rate
        print(f"calibkit generate, batch {bs}: {rate:.1f} tok/s (x{rate / res['generate_batch1_tok_s']:.2f})")
    if args.igsp_n:
        from calibkit.spec import build
        from calibkit.selfgen.bands import measure_bands

        fresh = int(time.time())  # a seed never used before: nothing comes from the pool/band caches
        t0 = time.perf_counter()
        measure_bands(model, tok, args.seqlen, args.model, seed=fresh, progress=False)
        res["bands_seconds"] = time.perf_counter() - t0
        print(f"bands (once per model and L): {res['bands_seconds']:.0f} s")
        measure_bands(model, tok, args.seqlen, args.model, progress=False)  # the bands IGSP uses (seed 0), untimed
        t0 = time.perf_counter()
        cs = build("selfgen:igsp", n=args.igsp_n, seqlen=args.seqlen, seed=fresh, model_name=args.model, progress=False)
        res["igsp_seconds"] = time.perf_counter() - t0
        res["igsp_meta"] = {k: v for k, v in cs.meta.items() if k in ("dimensions", "bands")}
        print(f"IGSP {args.igsp_n} x {args.seqlen}, pools generated + filtered + selected: {res['igsp_seconds']:.0f} s;"
              f" with the bands {res['igsp_seconds'] + res['bands_seconds']:.0f} s")
        for d, r in cs.meta["dimensions"].items():
            print(f"  {d}: pool {r['pool']}, in band {r['in_band']}, picked in band {r['picked_in_band']}, "
                  f"pool median ppl {r['pool_ppl_median']:.2f}, band {cs.meta['bands']['bands'][d]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
