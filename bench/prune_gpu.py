"""GPU pruning side by side (``make bench-gpu``): calibkit, llm-compressor and the IST-DASLab SparseGPT class, on a
LLaMA-3.1-8B-*shaped* model with random bf16 weights (timing does not depend on trained weights).

Every tool gets the same weights (regenerated from the seed) and the same random calibration tokens; the model is
kept on the host and each tool moves layers to the device its own way. Per tool and method it prints the wall time,
the peak GPU memory, and the relative error of the final hidden states against the dense model on held-out random
sequences (the algorithms agree when these agree); calibkit's engine phases (capture, forward, statistics, solve);
and last ``summary: <method> calibkit x<ratio> vs <tool> ...`` (a peer's wall time over calibkit's).

    python bench/prune_gpu.py --layers 4                            # side by side on a CUDA machine
    python bench/prune_gpu.py --layers 32 --tools calibkit          # the whole 8B shape, calibkit only
    python bench/prune_gpu.py --layers 2 --scale 32 --device cpu    # reduced width, on the CPU (tests/test_bench.py)

Tools: ``calibkit`` (its ``hessian_precision`` given by ``--precisions``, each a row of its own),
``llm-compressor`` (installed in the environment: ``make bench-gpu`` uses .venv-bench), ``ist`` (SparseGPT only:
the ``sparsegpt.py`` of github.com/IST-DASLab/sparsegpt, found through ``--ist-sparsegpt PATH``; its class is
driven layer by layer as that repository's paper driver does: one sequence per forward, hooks on every Linear).
A tool that cannot run here (not installed, no file) is reported as skipped with the reason (``skip_reason``, checked
before a model is built for it), not left out silently.
``--profile`` adds the torch profiler's top operators of calibkit's first run.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from calibkit.prune import decoder_layers, layer_linears, prune
from calibkit.prune.quality import final_hidden, relative_error


def llama31_8b_config(layers: int, scale: int):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=4096 // scale, intermediate_size=14336 // scale, num_hidden_layers=layers,
                       num_attention_heads=max(1, 32 // scale), num_key_value_heads=max(1, 8 // scale),
                       head_dim=(4096 // scale) // max(1, 32 // scale), vocab_size=128256,
                       max_position_embeddings=131072, rope_theta=500000.0, tie_word_embeddings=False)


def random_model(config, seed: int = 0):
    """Random bf16 weights without transformers' (slow, for 8B) initialisation; the same seed, the same weights."""
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


# --- the tools -----------------------------------------------------------------------------------------------------

def run_calibkit(model, calib, method, sparsity, device, args, precision="auto"):
    return prune(model, calib, method, sparsity, device=device, hessian_precision=precision or "auto", progress=False)


def run_llmcompressor(model, calib, method, sparsity, device, args, precision=None):
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import SparseGPTModifier, WandaPruningModifier
    from calibkit.data.calibration import CalibrationSet

    targets = ["re:.*self_attn\\.(q|k|v|o)_proj$", "re:.*mlp\\.(gate|up|down)_proj$"]
    recipe = (SparseGPTModifier(sparsity=float(sparsity), block_size=128, dampening_frac=0.01, targets=targets)
              if method == "sparsegpt" else WandaPruningModifier(sparsity=float(sparsity), targets=targets))
    ds = CalibrationSet([{"input_ids": row} for row in calib.tolist()]).to_hf_dataset(tokenized_only=True)
    oneshot(model=model, dataset=ds, recipe=recipe, num_calibration_samples=len(calib),
            max_seq_length=calib.shape[1], shuffle_calibration_samples=False)


def _ist_module(path: str):
    sys.path.insert(0, str(Path(path).parent))  # it imports its quant.py
    spec = importlib.util.spec_from_file_location("ist_sparsegpt", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@contextmanager
def _cuda_sync_on_cpu(device):
    """The class calls torch.cuda.synchronize() after every matrix; on a CPU-only run that call is made a no-op."""
    if torch.device(device).type == "cuda":
        yield
        return
    sync = torch.cuda.synchronize
    torch.cuda.synchronize = lambda *a, **k: None
    try:
        yield
    finally:
        torch.cuda.synchronize = sync


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def run_ist(model, calib, method, sparsity, device, args, precision=None):
    """The paper's sequential driver around the IST-DASLab class: inputs of layer 0 caught once, then per layer a
    ``SparseGPT`` object per Linear fed by forward hooks, one sequence at a time, ``fasterprune``, recompute."""
    ist = _ist_module(args.ist_sparsegpt)
    _, layers = decoder_layers(model)
    caught = []

    class Caught(Exception):
        pass

    def catch(_mod, a, kw):
        caught.append((a[0] if a else kw["hidden_states"], {k: v for k, v in kw.items() if k != "hidden_states"}))
        raise Caught

    inner = model.model
    for m in (inner.embed_tokens, inner.rotary_emb):
        m.to(device)
    handle = layers[0].register_forward_pre_hook(catch, with_kwargs=True)
    try:
        for row in calib:
            try:
                model(input_ids=row[None].to(device), use_cache=False)
            except Caught:
                pass
    finally:
        handle.remove()
        for m in (inner.embed_tokens, inner.rotary_emb):
            m.to("cpu")
    inps = [x for x, _ in caught]
    kwargs = [kw | {"use_cache": False} for _, kw in caught]
    with _cuda_sync_on_cpu(device):
        for layer in layers:
            layer.to(device)
            gpts = {name: ist.SparseGPT(lin) for name, lin in layer_linears(layer).items()}
            hooks = [lin.register_forward_hook(lambda m, i, o, name=name: gpts[name].add_batch(i[0].data, o.data))
                     for name, lin in layer_linears(layer).items()]
            for x, kw in zip(inps, kwargs):
                layer(x, **kw)
            for h in hooks:
                h.remove()
            for g in gpts.values():
                g.fasterprune(float(sparsity), prunen=0, prunem=0, blocksize=128, percdamp=0.01)
                g.free()
            inps = [_first(layer(x, **kw)) for x, kw in zip(inps, kwargs)]
            layer.to("cpu")


TOOLS = {"calibkit": run_calibkit, "llm-compressor": run_llmcompressor, "ist": run_ist}


# --- the benchmark -------------------------------------------------------------------------------------------------

def _peak(device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2 ** 30 if torch.device(device).type == "cuda" else None


def _reset(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def skip_reason(tool, method, args) -> str | None:
    """Why ``tool`` cannot run ``method`` here (checked before an 8B model is built for it), or None."""
    if tool == "ist":
        if method != "sparsegpt":
            return "the IST-DASLab class implements SparseGPT only"
        if not args.ist_sparsegpt or not Path(args.ist_sparsegpt).is_file():
            return ("give --ist-sparsegpt PATH: the sparsegpt.py of github.com/IST-DASLab/sparsegpt (with its "
                    "quant.py beside it)")
    if tool == "llm-compressor" and importlib.util.find_spec("llmcompressor") is None:
        return "llm-compressor is not installed here (make bench-gpu runs in .venv-bench)"
    return None


def measure(tool, method, config, calib, held, dense, args, precision=None) -> dict:
    row = {"tool": tool, "method": method, "precision": precision}
    if (why := skip_reason(tool, method, args)) is not None:
        return row | {"skipped": why}
    model = random_model(config, args.seed)
    _reset(args.device)
    prof = None
    t0 = time.perf_counter()
    if args.profile and tool == "calibkit" and not args._profiled:
        args._profiled = True
        acts = [torch.profiler.ProfilerActivity.CPU] + (
            [torch.profiler.ProfilerActivity.CUDA] if torch.device(args.device).type == "cuda" else [])
        with torch.profiler.profile(activities=acts) as prof:
            rep = TOOLS[tool](model, calib, method, args.sparsity, args.device, args, precision)
    else:
        rep = TOOLS[tool](model, calib, method, args.sparsity, args.device, args, precision)
    if torch.device(args.device).type == "cuda":
        torch.cuda.synchronize()
    row["wall_s"] = time.perf_counter() - t0
    row["peak_gpu_gib"] = _peak(args.device)
    row["hidden_error"] = relative_error(final_hidden(model, held, args.device), dense)
    if tool == "calibkit":
        row["phases"] = {k: round(v, 3) for k, v in rep.timing.items()}
    if prof is not None:
        key = "self_cuda_time_total" if torch.device(args.device).type == "cuda" else "self_cpu_time_total"
        row["profile"] = prof.key_averages().table(sort_by=key, row_limit=15)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--scale", type=int, default=1, help="divide the widths by this (reduced runs)")
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--held-out", type=int, default=4, help="held-out sequences for the final-hidden-state error")
    ap.add_argument("--methods", default="sparsegpt,wanda")
    ap.add_argument("--tools", default="calibkit,llm-compressor,ist")
    ap.add_argument("--precisions", default="auto,fp32", help="calibkit's hessian_precision values (a row each)")
    ap.add_argument("--sparsity", default="0.5")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ist-sparsegpt", help="path of IST-DASLab's sparsegpt.py")
    ap.add_argument("--profile", action="store_true", help="torch profiler table of calibkit's first run")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    args._profiled = False
    torch.set_grad_enabled(False)
    config = llama31_8b_config(args.layers, args.scale)
    gen = torch.Generator().manual_seed(args.seed)
    calib = torch.randint(0, config.vocab_size, (args.nsamples, args.seqlen), generator=gen)
    held = torch.randint(0, config.vocab_size, (args.held_out, args.seqlen), generator=gen)
    dense_model = random_model(config, args.seed)
    params = sum(p.numel() for p in dense_model.parameters())
    dense = final_hidden(dense_model, held, args.device)
    del dense_model
    name = torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else "cpu"
    print(f"# {args.layers}-layer LLaMA-3.1-8B shape / {args.scale} ({params / 1e9:.2f} B params, bf16), "
          f"{args.nsamples}x{args.seqlen} calibration tokens, sparsity {args.sparsity}, on {name}, "
          f"torch {torch.__version__}", flush=True)
    rows = []
    for method in args.methods.split(","):
        for tool in args.tools.split(","):
            if tool not in TOOLS:
                raise SystemExit(f"unknown tool {tool!r}; choose from {', '.join(TOOLS)}")
            precisions = args.precisions.split(",") if tool == "calibkit" and method == "sparsegpt" else [None]
            for precision in precisions:
                row = measure(tool, method, config, calib, held, dense, args, precision)
                rows.append(row)
                label = f"{method} {tool}" + (f" ({precision})" if precision else "")
                if "skipped" in row:
                    print(f"{label}: skipped: {row['skipped']}", flush=True)
                    continue
                peak = "n/a" if row["peak_gpu_gib"] is None else f"{row['peak_gpu_gib']:.2f} GiB"
                print(f"{label}: {row['wall_s']:.1f} s, peak GPU {peak}, final-hidden error "
                      f"{row['hidden_error']:.6f}" + (f"; phases {row['phases']}" if "phases" in row else ""),
                      flush=True)
                if "profile" in row:
                    print(row["profile"], flush=True)
    summary = []
    for method in args.methods.split(","):
        ours = [r for r in rows if r["method"] == method and r["tool"] == "calibkit" and "wall_s" in r]
        if not ours:
            continue
        best = min(ours, key=lambda r: r["wall_s"])
        peers = [r for r in rows if r["method"] == method and r["tool"] != "calibkit" and "wall_s" in r]
        summary.append(f"{method} calibkit" + (f"({best['precision']})" if best["precision"] else "") + " "
                       + (" ".join(f"x{r['wall_s'] / best['wall_s']:.2f} vs {r['tool']}" for r in peers)
                          or "(no peer ran)"))
    print("summary: " + "; ".join(summary))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"argv": sys.argv[1:] if argv is None else argv, "device": name,
                                               "params": params, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
