"""Deprecated location of the domain commands: use :mod:`g2gsim.datacenter.commands` (SetBatchSize,
ShiftReplicas, SetPowerCap) and :mod:`g2gsim.grid.commands` (SetTaps, SetStoragePower, ResolveGrid)."""

from __future__ import annotations

import warnings
from typing import Any

from g2gsim.kernel.commands import Command

__all__ = ["Command"]

_MOVED = {
    "SetBatchSize": "g2gsim.datacenter.commands",
    "ShiftReplicas": "g2gsim.datacenter.commands",
    "SetPowerCap": "g2gsim.datacenter.commands",
    "SetTaps": "g2gsim.grid.commands",
    "SetStoragePower": "g2gsim.grid.commands",
    "ResolveGrid": "g2gsim.grid.commands",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"g2gsim.commands.{name} moved to {module}.{name}; the old path goes in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    import importlib

    return getattr(importlib.import_module(module), name)
