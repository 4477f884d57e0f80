"""Rule-based batch-size controller (SPEC 5.3): the simple proportional baseline.

No sensitivity, no fits, no duals. Over the observed bus-phases (all non-excluded ones, or
those of a zone):

    u = max(v_min - min v, 0)          worst undervoltage
    o = max(max v - v_max, 0)          worst overvoltage
    pressure = u if u > deadband, else -o if o > deadband, else 0 (no action)

and for each model i, in log2 space,

    x_i <- clip(x_i - step_size * pressure, log2 min B_i, log2 max B_i)

except that with the latency guard a model whose observed ITL exceeds its deadline keeps
x_i instead of raising it. The command is the feasible batch nearest 2^x_i, sent only when
some batch differs from the observed one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_serializer, field_validator, model_validator

from g2gsim.controllers.base import (
    ControllerSection,
    VoltageLimits,
    register_controller,
)
from g2gsim.controllers.batching import FeasibleBatches, state_columns
from g2gsim.controllers.site_batch import SiteBatchController
from g2gsim.datacenter.base import Datacenter
from g2gsim.datacenter.commands import SetBatchSize
from g2gsim.grid.state import VoltageIndex
from g2gsim.kernel.commands import Command


def _lower_buses(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        raise ValueError("give buses as a list of names, not a single string")
    return [str(b).lower() for b in value]


class RuleBasedConfig(VoltageLimits):
    """Rule-based tuning (SPEC 5.3): the ``params`` of a ``rule_based`` section."""

    step_size: float = Field(default=10.0, gt=0, description="log2 units of batch per pu of violation, per step")
    deadband: float = Field(default=1e-4, ge=0, description="violations up to this (pu) are ignored")
    latency_guard: bool = Field(default=True, description="never raise a batch whose ITL exceeds its deadline")
    excluded_buses: frozenset[str] = Field(default=frozenset(), description="buses never observed")
    zone: frozenset[str] | None = Field(default=None, description="observe only these buses (None: all)")

    @field_validator("excluded_buses", "zone", mode="before")
    @classmethod
    def _lowercase(cls, value: Any) -> Any:
        return _lower_buses(value)

    @field_serializer("excluded_buses", "zone")
    def _sorted(self, buses: frozenset[str] | None) -> list[str] | None:
        """Sets serialise sorted, so a scenario's text (and its sweep run ids) never depend on hashing."""
        return None if buses is None else sorted(buses)

    @model_validator(mode="after")
    def _consistent(self) -> RuleBasedConfig:
        if self.zone is not None and not self.zone:
            raise ValueError("zone must name at least one bus (or be None to observe every bus)")
        return self


class RuleBasedSection(ControllerSection):
    """Proportional batch-size control from the worst voltage violation (``type = "rule_based"``)."""

    type: Literal["rule_based"] = "rule_based"
    """Always "rule_based"."""
    site: str
    """The datacenter site whose batch sizes it sets."""
    grid: str = "grid"
    """The grid whose voltages it reads."""
    params: RuleBasedConfig = Field(default_factory=RuleBasedConfig)
    """Tuning, excluded buses and zone; v_min / v_max default to the scenario's."""


def regulator_zone(topology: Any, regulator: str) -> frozenset[str]:
    """Buses of one regulator's zone, from a feeder topology's ``regulator_zones()``.

    `topology` is a :class:`~g2gsim.grid.topology.FeederTopology` or a grid with a
    ``topology()`` method; the regulator name is matched case-insensitively.
    """
    if not hasattr(topology, "regulator_zones") and hasattr(topology, "topology"):
        topology = topology.topology()
    zones: Mapping[str, Iterable[str]] = topology.regulator_zones()
    by_lower = {str(name).lower(): name for name in zones}
    key = by_lower.get(regulator.lower())
    if key is None:
        raise KeyError(f"no regulator zone {regulator!r}; zones: {sorted(zones)}")
    return frozenset(str(bus).lower() for bus in zones[key])


class RuleBasedController(SiteBatchController):
    """Proportional batch-size control from the worst observed voltage violation (SPEC 5.3).

    Args:
        name: Component name.
        site: Name of the :class:`Datacenter` it commands (``datacenter=``: deprecated name).
        grid: Name of the :class:`Grid` it observes.
        config: Tuning, excluded buses and zone.
        period: Control period, s.
    """

    kind = "rule-based controller"
    config_type = RuleBasedConfig
    config: RuleBasedConfig

    def _clear(self) -> None:
        self._labels: tuple[str, ...] = ()
        self._batches: FeasibleBatches | None = None
        self._deadline = np.zeros(0)
        self._x: np.ndarray | None = None
        self._mask_for: VoltageIndex | None = None
        self._mask = np.zeros(0, dtype=bool)
        self._pushing = False  # the last step saw a violation and moved a batch

    def start(self) -> None:
        """Subscribe to the site and the grid; build feasible sets and deadlines."""
        ctx = self.ctx
        site = ctx.lookup(self.site)
        assert isinstance(site, Datacenter)
        specs = dict(site.specs)
        self._labels = tuple(specs)
        self._batches = FeasibleBatches.from_specs(specs)
        self._deadline = np.array([float(specs[m].itl_deadline_s) for m in self._labels])
        self._dc_box = ctx.subscribe(self.site, wake=False)  # read, never woken by
        self._grid_box = ctx.subscribe(self.grid)

    @property
    def log_batch(self) -> dict[str, float]:
        """x_i per model (empty before the first step)."""
        return {} if self._x is None else {m: float(v) for m, v in zip(self._labels, self._x, strict=True)}

    def settled(self) -> bool:
        """Settled unless the last step saw a violation and could still move a batch (an
        event-triggered rule then keeps stepping at its minimum interval)."""
        return not self._pushing

    def watched_values(self) -> np.ndarray | None:
        """The observed voltages (zone and exclusions applied)."""
        if not self._grid_box.has_value:
            return None
        state = self._grid_box.value
        return np.asarray(state.voltages, dtype=float)[self.observed(state.index)]

    def watched_band(self) -> tuple[float, float]:
        return (self.config.v_min, self.config.v_max)

    def observed(self, index: VoltageIndex) -> np.ndarray:
        """Boolean mask of the voltage-vector entries this controller observes."""
        if index is not self._mask_for:
            excluded, zone = self.config.excluded_buses, self.config.zone
            mask = np.array(
                [bus.lower() not in excluded and (zone is None or bus.lower() in zone) for bus, _ in index.entries],
                dtype=bool,
            )
            if not mask.any():
                raise ValueError(
                    f"rule-based {self.name!r} observes no bus of grid {self.grid!r} "
                    f"(zone {sorted(zone) if zone is not None else 'all'}, excluded {sorted(excluded)})"
                )
            self._mask_for, self._mask = index, mask
        return self._mask

    @staticmethod
    def pressure(voltages: np.ndarray, v_min: float, v_max: float, deadband: float) -> float:
        """u if u > deadband, else -o if o > deadband, else 0 (finite voltages only)."""
        v = voltages[np.isfinite(voltages)]
        if v.size == 0:
            return 0.0
        u = max(v_min - float(v.min()), 0.0)  # worst undervoltage
        o = max(float(v.max()) - v_max, 0.0)  # worst overvoltage
        if u > deadband:
            return u
        if o > deadband:
            return -o
        return 0.0

    def control(self, tick: int) -> Iterable[Command]:
        if not (self._dc_box.has_value and self._grid_box.has_value):
            return ()
        cfg = self.config
        batches = self._batches
        assert batches is not None
        grid_state = self._grid_box.value
        voltages = np.asarray(grid_state.voltages, dtype=float)[self.observed(grid_state.index)]
        pressure = self.pressure(voltages, cfg.v_min, cfg.v_max, cfg.deadband)
        state = self._dc_box.value
        cols = state_columns(state, self._labels, owner=f"rule-based {self.name!r}")
        current = np.asarray(state.batch)[cols].astype(np.int64)
        if self._x is None:
            self._x = batches.clip(np.log2(np.maximum(current, 1).astype(float)))
        self._pushing = False
        if pressure == 0.0:
            return ()
        x = self._x
        x_new = batches.clip(x - cfg.step_size * pressure)
        if cfg.latency_guard:
            itl = np.asarray(state.itl_s, dtype=float)[cols]
            late = np.isfinite(itl) & (itl > self._deadline)
            x_new = np.where(late & (x_new > x), x, x_new)  # never raise a late model
        self._pushing = bool(np.any(x_new != x))
        self._x = x_new
        chosen = batches.nearest(x_new)
        if all(int(b) == int(c) for b, c in zip(chosen, current, strict=True)):
            return ()
        batch = dict(zip(self._labels, chosen, strict=True))
        self.ctx.event("rule_step", {"pressure": pressure, "batch": batch})
        return (SetBatchSize(batch=batch, target=self.site),)


register_controller("rule_based", RuleBasedSection)(RuleBasedController)
