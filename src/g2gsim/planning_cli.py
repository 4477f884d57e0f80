"""Deprecated location of ``g2gsim plan-batch``: the command is in :mod:`g2gsim.cli.planning`."""

from __future__ import annotations

from g2gsim.kernel.moved import moved_names

__getattr__ = moved_names(__name__, dict.fromkeys(("plan_batch", "register"), "g2gsim.cli.planning"))
