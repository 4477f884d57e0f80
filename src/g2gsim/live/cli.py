"""Deprecated location of the live-scenario helpers: use :mod:`g2gsim.live.scenario`.

The ``fake-cluster`` and ``live-run`` commands are in :mod:`g2gsim.cli.live`.
"""

from __future__ import annotations

import warnings
from typing import Any

from g2gsim.live import scenario as _scenario

_MOVED = {"DEFAULT_POWER_SCALE", "with_endpoints", "fake_cluster_for", "run_live"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"g2gsim.live.cli.{name} moved to g2gsim.live.scenario.{name}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(_scenario, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
