"""Deprecated location of the live-scenario helpers: use :mod:`g2gsim.live.scenario`.

The ``fake-cluster`` and ``live-run`` commands are in :mod:`g2gsim.cli.live`.
"""

from __future__ import annotations

from g2gsim.kernel.moved import moved_names

_NAMES = ("DEFAULT_POWER_SCALE", "with_endpoints", "fake_cluster_for", "run_live")
__getattr__ = moved_names(__name__, dict.fromkeys(_NAMES, "g2gsim.live.scenario"))
