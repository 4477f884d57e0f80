"""Deprecated location of the model specs: they live in :mod:`g2gsim.data.spec` now."""

from __future__ import annotations

import warnings
from typing import Any

from g2gsim.data import spec as _spec

_MOVED = {"ModelSpec", "PAPER_MODELS", "PAPER_FEASIBLE_BATCHES"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"g2gsim.datacenter.spec.{name} moved to g2gsim.data.spec.{name}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(_spec, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
