"""Deprecated location of the model specs: they live in :mod:`g2gsim.data.spec` now."""

from __future__ import annotations

from g2gsim.kernel.moved import moved_names

__getattr__ = moved_names(
    __name__, dict.fromkeys(("ModelSpec", "PAPER_MODELS", "PAPER_FEASIBLE_BATCHES"), "g2gsim.data.spec")
)
