"""Load shift across sites (SPEC 5.4): move replicas when batch-size control is exhausted.

For each site s (in declared order) with a violation at its bus, and every model at its
batch limit (all at the minimum feasible batch under undervoltage, all at the maximum
under overvoltage):

- undervoltage (min over the bus phases < v_min): move n replicas out of s, to the site
  sharing a model whose bus minimum voltage is highest;
- overvoltage (max > v_max): pull n replicas into s from the sharing site whose bus maximum
  voltage is lowest;

where the model is the shared one with most GPUs per replica that fits, and
n = max(1, gpus_per_shift // gpus_per_replica), never more than the source runs. The
receiving site must have n * gpus_per_replica free GPUs (capacity minus GPUs of the replicas
its latest state reports). A shift is two ShiftReplicas commands, -n at the source and +n
at the destination; several shifts in one step see each other's effect on free GPUs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np
from pydantic import Field

from g2gsim.controllers.base import (
    BuildContext,
    ControllerSection,
    VoltageLimits,
    config_or_default,
    register_controller,
    renamed_attribute,
    renamed_keyword,
    required_period,
    with_voltage_limits,
)
from g2gsim.controllers.batching import FeasibleBatches
from g2gsim.datacenter.base import Datacenter
from g2gsim.datacenter.commands import ShiftReplicas
from g2gsim.grid.base import Grid
from g2gsim.kernel.commands import Command
from g2gsim.kernel.component import Controller
from g2gsim.kernel.context import RunContext
from g2gsim.kernel.links import INSTANT, LinkSpec
from g2gsim.kernel.time import TimeLike
from g2gsim.kernel.triggers import PERIODIC, TriggerLike


class LoadShiftConfig(VoltageLimits):
    """Load-shift settings (SPEC 5.4): the ``params`` of a ``load_shift`` section."""

    enabled: bool = Field(default=False, description="shift replicas at all (off by default, as in OpenG2G)")
    gpus_per_shift: int = Field(default=8, gt=0, description="GPUs moved per shift (at least one replica)")


class LoadShiftSection(ControllerSection):
    """Shifts replicas between sites to relieve voltage violations (``type = "load_shift"``)."""

    type: Literal["load_shift"] = "load_shift"
    """Always "load_shift"."""
    sites: tuple[str, ...] = Field(min_length=2)
    """The datacenter sites (two or more), in priority order."""
    grid: str = "grid"
    """The grid they are attached to."""
    params: LoadShiftConfig = Field(default_factory=LoadShiftConfig)
    """Settings; v_min / v_max default to the scenario's."""


@dataclass(frozen=True, slots=True)
class Shift:
    """One planned move: n replicas of `model` from `source` to `destination`."""

    model: str
    n: int
    source: str
    destination: str
    reason: str  # "undervoltage" at the source or "overvoltage" at the destination


@dataclass(slots=True)
class SiteView:
    """What the planner knows of one site at one step (mutated as shifts are planned)."""

    name: str
    v_low: float  # min over the bus's finite phases, pu (NaN when unknown)
    v_high: float  # max over the bus's finite phases, pu
    replicas: dict[str, int]
    gpus_per_replica: dict[str, int]
    batch: dict[str, int]
    free_gpus: int


def plan_shifts(
    sites: Sequence[SiteView], feasible: Mapping[str, FeasibleBatches], config: LoadShiftConfig
) -> list[Shift]:
    """The shifts of one step, in site order (pure: the views are updated in place)."""
    shifts: list[Shift] = []
    for site in sites:
        under = site.v_low < config.v_min
        over = not under and site.v_high > config.v_max
        if not (under or over):
            continue
        batches = feasible[site.name]
        saturated = all(
            (batches.at_min if under else batches.at_max)(label, batch) for label, batch in site.batch.items()
        )
        if not saturated:
            continue
        best: tuple[float, int, SiteView, str, int] | None = None
        for order, other in enumerate(sites):
            if other is site:
                continue
            source, destination = (site, other) if under else (other, site)
            choice = _pick_model(source, destination, config.gpus_per_shift)
            if choice is None:
                continue
            # undervoltage: highest bus minimum wins; overvoltage: lowest bus maximum wins
            score = other.v_low if under else -other.v_high
            if not math.isfinite(score):
                continue
            if best is None or score > best[0]:
                best = (score, order, other, *choice)
        if best is None:
            continue
        _, _, other, model, n = best
        source, destination = (site, other) if under else (other, site)
        source.replicas[model] -= n
        source.free_gpus += n * source.gpus_per_replica[model]
        destination.replicas[model] += n
        destination.free_gpus -= n * destination.gpus_per_replica[model]
        shifts.append(Shift(model, n, source.name, destination.name, "undervoltage" if under else "overvoltage"))
    return shifts


def _pick_model(source: SiteView, destination: SiteView, gpus_per_shift: int) -> tuple[str, int] | None:
    """The shared model with most GPUs per replica that the source runs and the destination fits."""
    shared = [
        m
        for m in source.replicas
        if m in destination.replicas and source.gpus_per_replica[m] == destination.gpus_per_replica[m]
    ]
    for model in sorted(shared, key=lambda m: (-source.gpus_per_replica[m], m)):
        gpr = source.gpus_per_replica[model]
        n = min(max(1, gpus_per_shift // gpr), source.replicas[model])
        if n >= 1 and destination.free_gpus >= n * gpr:
            return model, n
    return None


class LoadShiftController(Controller):
    """Shifts replicas between sites to relieve voltage violations batch control cannot fix.

    Args:
        name: Component name.
        sites: Names of the :class:`Datacenter` sites (two or more), in priority order
            (``datacenters=``: deprecated name).
        grid: Name of the :class:`Grid` they are attached to (gives each site's bus).
        config: Settings; disabled by default, as in OpenG2G.
        period: Control period, s.
    """

    datacenters = renamed_attribute("sites", "datacenters")

    @renamed_keyword("datacenters", "sites")
    def __init__(
        self,
        name: str,
        sites: Sequence[str],
        grid: str,
        config: LoadShiftConfig | None = None,
        period: TimeLike | None = Fraction(1),
        *,
        command_link: LinkSpec = INSTANT,
        measurement_link: LinkSpec = INSTANT,
        trigger: TriggerLike = PERIODIC,
    ) -> None:
        period = required_period(period, f"load-shift controller {name!r}")
        super().__init__(name, period, command_link=command_link, measurement_link=measurement_link, trigger=trigger)
        if isinstance(sites, str):
            raise TypeError(f"{name!r}: sites must be a list of site names, not one string")
        names = tuple(sites)
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"{name!r}: load shift needs two or more distinct sites, got {list(names)}")
        self.config = config_or_default(name, config, LoadShiftConfig)
        self.sites = names
        self.grid = grid
        self._boxes: dict[str, Any] = {}
        self._shifts = 0

    @classmethod
    def from_config(cls, section: LoadShiftSection, context: BuildContext) -> LoadShiftController:
        """From its scenario section; the scenario's voltage limits fill in unset ones."""
        config = with_voltage_limits(section.params, context)
        return cls(section.name, section.sites, section.grid, config, section.period_s, **section.controller_keywords())

    def dependencies(self) -> Mapping[str, type]:
        return {**{site: Datacenter for site in self.sites}, self.grid: Grid}

    def reset(self, ctx: RunContext) -> None:
        """Forget subscriptions and the shift count of a previous run."""
        super().reset(ctx)
        self._boxes = {}
        self._shifts = 0

    def start(self) -> None:
        """Subscribe; look up each site's bus, capacity, GPUs per replica and feasible sets."""
        ctx = self.ctx
        grid = ctx.lookup(self.grid)
        assert isinstance(grid, Grid)
        self._bus: dict[str, str] = {}
        self._capacity: dict[str, int] = {}
        self._gpr: dict[str, dict[str, int]] = {}
        self._feasible: dict[str, FeasibleBatches] = {}
        for name in self.sites:
            site = ctx.lookup(name)
            assert isinstance(site, Datacenter)
            self._bus[name] = grid.site_bus(name)
            self._capacity[name] = int(site.capacity_gpus)
            specs = dict(site.specs)
            self._gpr[name] = {label: int(spec.gpus_per_replica) for label, spec in specs.items()}
            self._feasible[name] = FeasibleBatches.from_specs(specs)
            self._boxes[name] = ctx.subscribe(name, wake=False)  # read, never woken by
        self._grid_box = ctx.subscribe(self.grid)

    def watched_values(self) -> np.ndarray | None:
        """The phase voltages at the sites' buses."""
        if not self._grid_box.has_value:
            return None
        state = self._grid_box.value
        return np.concatenate([np.asarray(state.bus_voltages(self._bus[name]), dtype=float) for name in self.sites])

    def watched_band(self) -> tuple[float, float]:
        return (self.config.v_min, self.config.v_max)

    def control(self, tick: int) -> Iterable[Command]:
        if not self.config.enabled:
            return ()
        if not self._grid_box.has_value or not all(box.has_value for box in self._boxes.values()):
            return ()
        grid_state = self._grid_box.value
        views = [self._view(name, grid_state) for name in self.sites]
        commands: list[Command] = []
        for shift in plan_shifts(views, self._feasible, self.config):
            self._shifts += 1
            commands.append(ShiftReplicas(model=shift.model, delta=-shift.n, target=shift.source))
            commands.append(ShiftReplicas(model=shift.model, delta=shift.n, target=shift.destination))
            self.ctx.event(
                "load_shift",
                {
                    "model": shift.model,
                    "replicas": shift.n,
                    "source": shift.source,
                    "destination": shift.destination,
                    "reason": shift.reason,
                },
            )
        return commands

    def _view(self, name: str, grid_state: Any) -> SiteView:
        state = self._boxes[name].value
        phases = np.asarray(grid_state.bus_voltages(self._bus[name]), dtype=float)
        finite = phases[np.isfinite(phases)]
        v_low = float(finite.min()) if finite.size else math.nan
        v_high = float(finite.max()) if finite.size else math.nan
        gpr = self._gpr[name]
        replicas: dict[str, int] = {}
        batch: dict[str, int] = {}
        for i, label in enumerate(state.models):
            if label in gpr:
                replicas[label] = max(int(state.replicas[i]), 0)
                batch[label] = int(state.batch[i])
        used = sum(replicas[m] * gpr[m] for m in replicas)
        return SiteView(name, v_low, v_high, replicas, dict(gpr), batch, self._capacity[name] - used)

    def summary(self) -> dict[str, Any]:
        return {"shifts": self._shifts}


register_controller("load_shift", LoadShiftSection)(LoadShiftController)
