"""Commands a grid accepts (SPEC 4.6): regulator taps, battery dispatch, an immediate re-solve."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from g2gsim.kernel.commands import Command

__all__ = ["ResolveGrid", "SensitivityRequest", "SetStoragePower", "SetTaps"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SetTaps(Command):
    """Regulator tap ratios (pu) by regulator-control name or unique phase shorthand a/b/c."""

    taps: Mapping[str, float]
    resolve: bool = False
    """Re-solve the grid at once so later controllers in the same tick see the new taps."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SetStoragePower(Command):
    """Dispatch a battery: kW > 0 discharges into the grid, kvar > 0 injects reactive power."""

    storage: str
    kw: float = 0.0
    kvar: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveGrid(Command):
    """Ask the grid to apply pending commands and solve again within the current tick."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SensitivityRequest(Command):
    """Ask the grid for dV/dP of one site's three phase loads (SPEC 4.5), answered in its
    ``sensitivity/<site>`` mailbox as a :class:`~g2gsim.grid.state.SensitivityReply`."""

    site: str
    delta_kw: float = 100.0
