"""The pruning methods by name. A new method is one file (math + a ``base.Pruner`` object) and one line below."""
from __future__ import annotations

from .base import Pruner
from .magnitude import Magnitude
from .sparsegpt import SparseGPT
from .wanda import Wanda

METHODS: dict[str, Pruner] = {p.name: p for p in (
    Magnitude(),
    Wanda(),
    SparseGPT(),
)}
