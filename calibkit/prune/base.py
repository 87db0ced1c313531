"""What a pruning method is to the engine: three functions and one flag (``Pruner``).

The engine finds the groups of Linear modules of a decoder layer that read the same input tensor (q/k/v, gate/up)
and, for each group,

1. ``stats = method.new_stats(columns, ctx)``: allocate the statistics of that input (named tensors on
   ``ctx.device``; ``{}`` if the method needs none);
2. ``method.accumulate(stats, x, ctx)`` for every calibration batch: ``x`` is the input as the model computed it,
   ``[tokens, columns]`` in the model's dtype; a batch holds whole sequences of ``ctx.seqlen`` tokens, in
   calibration order (so statistics per sample can be kept);
3. ``method.prune_group(weights, stats, ctx) -> Pruned``: the new weights of the group, in its order.

The engine checks that every statistic is finite before step 3, and that every new weight is. A method with
``needs_calibration = False`` may be run without calibration data: then no forward pass runs, every Linear is a
group of its own and ``stats`` is None.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from .options import PruneOptions
from .sparsity import Sparsity

Stats = dict[str, torch.Tensor]


@dataclass(frozen=True)
class PruneContext:
    """What a method is told about the run it is part of (fields may be added; methods read what they need)."""
    sparsity: Sparsity
    options: PruneOptions  # resolved: device and dtype are filled in
    device: torch.device  # where the layer, its inputs and the statistics are
    seqlen: int = 0  # tokens per calibration sequence (0: no calibration data)
    layer: int = -1  # index of the decoder layer being pruned (its sparsity may be the layer's own: OWL)


@dataclass
class Pruned:
    """A pruned group: its new weights, and what the report records about it."""
    weights: list[torch.Tensor]
    warnings: list[str] = field(default_factory=list)  # reported once for the group
    extras: dict = field(default_factory=dict)  # ``ModuleRecord`` fields for every module of the group (damp)


class Pruner(Protocol):
    name: str
    needs_calibration: bool

    def new_stats(self, columns: int, ctx: PruneContext) -> Stats: ...

    def accumulate(self, stats: Stats, x: torch.Tensor, ctx: PruneContext) -> None: ...

    def prune_group(self, weights: list[torch.Tensor], stats: Stats | None, ctx: PruneContext) -> Pruned: ...
