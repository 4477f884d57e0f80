"""Deprecated location of the domain commands: use :mod:`g2gsim.datacenter.commands` (SetBatchSize,
ShiftReplicas, SetPowerCap) and :mod:`g2gsim.grid.commands` (SetTaps, SetStoragePower, ResolveGrid)."""

from __future__ import annotations

from g2gsim.kernel.commands import Command
from g2gsim.kernel.moved import moved_names

__all__ = ["Command"]

_MOVED = {
    "SetBatchSize": "g2gsim.datacenter.commands",
    "ShiftReplicas": "g2gsim.datacenter.commands",
    "SetPowerCap": "g2gsim.datacenter.commands",
    "SetTaps": "g2gsim.grid.commands",
    "SetStoragePower": "g2gsim.grid.commands",
    "ResolveGrid": "g2gsim.grid.commands",
}


__getattr__ = moved_names(__name__, _MOVED)
