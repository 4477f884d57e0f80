"""Deprecated location of ``g2gsim plan-batch``: the command is in :mod:`g2gsim.cli.planning`."""

from __future__ import annotations

import warnings
from typing import Any

_MOVED = {"plan_batch", "register"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"g2gsim.planning_cli.{name} moved to g2gsim.cli.planning.{name}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        from g2gsim.cli import planning

        return getattr(planning, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
