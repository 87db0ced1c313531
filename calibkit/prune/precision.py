"""At what precision SparseGPT's X^T X reads its inputs (``PruneOptions.hessian_precision``).

The products are always accumulated in float32. ``fp32`` is exact; ``tf32`` rounds float32 inputs to a 10-bit
mantissa; ``bf16``/``fp16`` read them in that dtype -- exact for a model that computes in it, since its activations
already are bf16/fp16. On CUDA the reduced precisions run on tensor cores (TF32 GEMMs; bf16/fp16 GEMMs with a float32
result, ``torch.mm(..., out_dtype=float32)``), where the Hessian of an 8B model's down_proj is ~1e14 FLOP per layer; on
the CPU they are emulated (inputs rounded, float32 GEMM): the same numbers, no speed-up, so that their effect on the
mask can be measured anywhere (tests/test_precision.py).
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch

PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16")  # PruneOptions.hessian_precision; "auto" resolves per dtype
# torch.mm(..., out_dtype=float32) for bf16/fp16 inputs on CUDA came with torch 2.8; before it, the same values are
# upcast and multiplied in fp32 (the same numbers up to summation order, without the tensor-core speed-up)
MM_OUT_DTYPE = torch.torch_version.TorchVersion(torch.__version__) >= "2.8"  # PruneOptions.hessian_precision; "auto" resolves per model dtype


def resolve_precision(precision: str, model_dtype: torch.dtype) -> str:
    """``auto``: the inputs as the model computes them (bf16/fp16 models: ``bf16``/``fp16``, exact, since the
    activations already are in that dtype); fp32 models: ``fp32``. Other values pass through."""
    if precision != "auto":
        return precision
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(model_dtype, "fp32")


def round_tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 values rounded to TF32's 10-bit mantissa (to nearest, ties away from zero), as tensor cores read
    them: the CPU emulation of a TF32 product is ``round_tf32(a) @ round_tf32(b)`` in float32."""
    bits = x.float().contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


@contextmanager
def tf32_matmul(enabled: bool):
    """TF32 for CUDA float32 GEMMs on (or off) inside the block, whatever the process-wide setting."""
    matmul = torch.backends.cuda.matmul
    if getattr(matmul, "fp32_precision", "none") != "none":
        before = matmul.fp32_precision
        matmul.fp32_precision = "tf32" if enabled else "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision = before
        return
    before = matmul.allow_tf32
    matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        matmul.allow_tf32 = before


def read_as(x: torch.Tensor, precision: str) -> torch.Tensor:
    """``x`` in float32 holding the values a GEMM at ``precision`` reads (the CPU emulation of its inputs)."""
    if precision == "fp32":
        return x.float()
    if precision == "tf32":
        return round_tf32(x)
    if precision in ("bf16", "fp16"):
        return x.to(torch.bfloat16 if precision == "bf16" else torch.float16).float()
    raise ValueError(f"unknown Hessian precision {precision!r}; choose from fp32, tf32, bf16, fp16")


def gram(a: torch.Tensor, b: torch.Tensor, precision: str = "fp32", out: torch.Tensor | None = None) -> torch.Tensor:
    """a^T b in float32 (added into ``out`` when given), with a and b read at ``precision`` and the products
    accumulated in float32. On CUDA ``tf32``/``bf16``/``fp16`` run on tensor cores (TF32 GEMM; bf16/fp16 GEMM with a
    float32 result); ``fp32`` runs with TF32 off. Elsewhere the inputs are rounded (``read_as``) and one float32
    GEMM follows: the same numbers, no speed-up, and bit-identical to ``fp32`` for inputs already in that dtype."""
    if a.device.type == "cuda" and precision in ("bf16", "fp16") and MM_OUT_DTYPE:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        prod = torch.mm(a.to(dtype).t(), b.to(dtype), out_dtype=torch.float32)
        return prod if out is None else out.add_(prod)
    a, b = read_as(a, precision), read_as(b, precision)
    with tf32_matmul(precision == "tf32") if a.device.type == "cuda" else nullcontext():
        return a.t() @ b if out is None else out.addmm_(a.t(), b)
