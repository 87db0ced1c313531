"""The selection baselines of OASIS (§5.1): a seeded random draw and entropy-based selection (Kremer et al., 2014:
the samples with the highest mean predictive token entropy under the model). The third baseline, synthetic data
(the model's own generations, Ji et al.), is self-generation (``selfgen:sgs``) and is built by ``calibkit.spec``.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

RANDOM_SALT = 0x72616E64  # the random draw's own numpy stream for a seed (apart from the pool's draw)


def random_pick(size: int, n: int, seed: int) -> list[int]:
    """``n`` distinct indices of ``range(size)``, seeded, in draw order."""
    return np.random.default_rng([int(seed), RANDOM_SALT]).choice(size, n, replace=False).tolist()


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean over positions of the predictive entropy (nats) of each sequence: logits [B, T, V] -> [B]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1).mean(-1)


def mean_entropies(model, ids: torch.Tensor, batch_size: int = 4, progress: bool = True) -> list[float]:
    out = []
    with torch.no_grad():
        for batch in tqdm(ids.split(batch_size), desc="token entropy", unit="batch", disable=not progress):
            out += token_entropy(model(input_ids=batch, use_cache=False).logits).tolist()
    return out


def highest(values: list[float], n: int) -> list[int]:
    """Indices of the ``n`` highest values (ties: the lower index first)."""
    return torch.sort(-torch.tensor(values, dtype=torch.float64), stable=True).indices[:n].tolist()
