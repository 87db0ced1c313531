"""GPU timing of the pruning engine on a LLaMA-3.1-8B-*shaped* model with random bf16 weights (timing does not
depend on trained weights): 128 x 2048 random calibration tokens, model kept on the CPU, one layer at a time on
the GPU. Prints wall time, the engine's phase times and peak GPU memory per method.

    python bench/prune_gpu_8b.py                       # on a CUDA machine (needs ~17 GB of CPU RAM for weights)
    python bench/prune_gpu_8b.py --layers 2 --scale 8  # a scaled-down smoke run (CPU or GPU)
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch


def llama31_8b_config(layers: int, scale: int):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=4096 // scale, intermediate_size=14336 // scale, num_hidden_layers=layers,
                       num_attention_heads=32 // scale, num_key_value_heads=max(1, 8 // scale), vocab_size=128256,
                       max_position_embeddings=131072, rope_theta=500000.0, tie_word_embeddings=False)


def random_model(config, seed: int = 0):
    """Random bf16 weights without transformers' (slow, for 8B) initialisation."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model.to_empty(device="cpu").to(torch.bfloat16)
    for name, p in model.named_parameters():
        if p.ndim == 1:
            p.data.fill_(1.0)
        else:
            p.data.normal_(0, 0.02)
    model.model.rotary_emb = type(model.model.rotary_emb)(config)  # recompute the inv_freq buffer off meta
    return model.eval()


def main(argv=None) -> int:
    from calibkit.prune import prune

    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--scale", type=int, default=1, help="divide the widths by this (smoke runs)")
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--methods", default="sparsegpt,wanda")
    ap.add_argument("--sparsity", default="0.5")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    config = llama31_8b_config(args.layers, args.scale)
    ids = torch.randint(0, config.vocab_size, (args.nsamples, args.seqlen), generator=torch.Generator().manual_seed(0))
    rows = []
    for method in args.methods.split(","):
        model = random_model(config)
        params = sum(p.numel() for p in model.parameters())
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        rep = prune(model, ids, method, args.sparsity, device=args.device, progress=True)
        wall = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None
        rows.append({"method": method, "params": params, "wall_s": wall, "peak_gpu_gib": peak,
                     "timing": rep.timing, "sparsity": rep.totals["sparsity"]})
        name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
        print(f"{method} {args.sparsity} on {name}: {params / 1e9:.2f} B params, {args.nsamples}x{args.seqlen} tokens: "
              f"{wall:.1f} s wall, peak GPU memory {peak if peak is None else round(peak, 2)} GiB; "
              + ", ".join(f"{k} {v:.1f}s" for k, v in rep.timing.items()), flush=True)
        del model
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
