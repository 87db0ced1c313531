"""How close two prunings of the same model are: the final hidden states' error against the dense model on held-out
tokens, and the agreement of the masks. The measures of ``hessian_precision``'s tolerance (tests/test_precision.py)
and of the GPU benchmark's side-by-side runs (bench/prune_gpu.py)."""
from __future__ import annotations

import torch
from torch import nn

from .engine import decoder_layers, layer_linears


@torch.no_grad()
def final_hidden(model: nn.Module, ids: torch.Tensor, device: str | torch.device | None = None) -> torch.Tensor:
    """The last hidden states (after the final norm) for token ids ``[N, L]``, in float32 on the CPU. With
    ``device`` the model visits it for the call and goes back where it was."""
    home = next(model.parameters()).device
    device = torch.device(device) if device is not None else home
    model.to(device)
    try:
        out = model(input_ids=ids.to(device), output_hidden_states=True, use_cache=False)
        return out.hidden_states[-1].float().cpu()
    finally:
        model.to(home)


def relative_error(hidden: torch.Tensor, reference: torch.Tensor) -> float:
    """||hidden - reference||^2 / ||reference||^2 (float64 sums)."""
    diff = (hidden.double() - reference.double()).square().sum()
    return float(diff / reference.double().square().sum())


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The removed positions (weight == 0) of every decoder-layer Linear, by name."""
    name, layers = decoder_layers(model)
    return {f"{name}.{i}.{n}": lin.weight.detach() == 0
            for i, layer in enumerate(layers) for n, lin in layer_linears(layer).items()}


def mask_agreement(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Fraction of decoder-layer weights whose pruned/kept state is the same in ``a`` and ``b`` (``masks``)."""
    if a.keys() != b.keys():
        raise ValueError("the masks are of different models")
    same = sum(int((a[k] == b[k]).sum()) for k in a)
    return same / sum(m.numel() for m in a.values())
