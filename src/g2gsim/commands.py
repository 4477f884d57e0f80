"""The commands controllers send to datacenters and grids (typed contracts, SPEC 2.5 and 4.6)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from g2gsim.kernel.commands import Command

__all__ = [
    "Command",
    "ResolveGrid",
    "SetBatchSize",
    "SetPowerCap",
    "SetStoragePower",
    "SetTaps",
    "ShiftReplicas",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SetBatchSize(Command):
    """New batch size per model label; optional ramp-up rate (requests/s) per model."""

    batch: Mapping[str, int]
    ramp_up_rate: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for label, size in self.batch.items():
            if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
                raise ValueError(f"SetBatchSize.batch[{label!r}] must be a positive int, got {size!r}")
        for label, rate in self.ramp_up_rate.items():
            if not rate >= 0:
                raise ValueError(f"SetBatchSize.ramp_up_rate[{label!r}] must be >= 0 requests/s, got {rate!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ShiftReplicas(Command):
    """Add `delta` replicas of a model at a site (bounded by 0 and the site's capacity)."""

    model: str
    delta: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SetPowerCap(Command):
    """GPU power cap in W per GPU, per model label (None removes a cap)."""

    cap_w: Mapping[str, float | None]


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
