"""Commands a datacenter accepts (SPEC 2.5): batch sizes, replica shifts, GPU power caps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from g2gsim.kernel.commands import Command

__all__ = ["SetBatchSize", "SetPowerCap", "ShiftReplicas"]


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
