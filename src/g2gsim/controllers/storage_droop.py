"""Local-voltage storage droop (SPEC 5.5): Q-V or P-V from each battery's own bus voltage.

For each battery, over the grid states published since the previous control step
(each sample = min over the bus's finite phases), take the window's minimum, mean or latest
value v, then

    e   = v_ref - v
    out = 0                                      if |e| <= deadband
        = gain * sign(e) * (|e| - deadband)      otherwise
    gain = limit / (full_error - deadband)       unless given
    out  = clip(out, -limit, limit)   (and >= 0 when negative output is not allowed)

with limit = rated kVA (Q-V, kvar) or rated kW (P-V, kW), capped by `max_abs_output`.
Positive output injects: kvar in Q-V mode, discharge kW in P-V mode. One SetStoragePower
per battery per step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from g2gsim.controllers.base import (
    BuildContext,
    ControllerSection,
    config_or_default,
    register_controller,
    required_period,
)
from g2gsim.grid.base import Grid
from g2gsim.grid.commands import SetStoragePower
from g2gsim.grid.state import GridState
from g2gsim.kernel.commands import Command
from g2gsim.kernel.component import Controller
from g2gsim.kernel.context import RunContext
from g2gsim.kernel.links import INSTANT, LinkSpec
from g2gsim.kernel.registry import Section
from g2gsim.kernel.time import TimeLike
from g2gsim.kernel.triggers import PERIODIC, TriggerLike


class StorageDroopConfig(Section):
    """Droop settings (SPEC 5.5; names and defaults as OpenG2G's): the ``params`` of a
    ``storage_droop`` section."""

    mode: Literal["qv", "pv"] = Field(default="qv", description="qv: output is kvar; pv: output is kW")
    v_ref: float = Field(default=1.0, gt=0, description="reference voltage, pu")
    deadband_pu: float = Field(default=0.005, ge=0, description="no output while |v_ref - v| <= deadband")
    full_output_voltage_error_pu: float = Field(default=0.05, gt=0, description="|error| of full output, pu")
    droop_gain_per_pu: float | None = Field(default=None, gt=0, description="gain override, kvar or kW per pu")
    max_abs_output: float | None = Field(default=None, gt=0, description="cap on |output|, kvar or kW")
    allow_negative_output: bool = Field(default=True, description="allow absorbing kvar / charging")
    voltage_statistic: Literal["minimum", "mean", "latest"] = Field(
        default="minimum", description="which sample of the window since the last step is v"
    )

    @model_validator(mode="after")
    def _consistent(self) -> StorageDroopConfig:
        if self.full_output_voltage_error_pu <= self.deadband_pu:
            raise ValueError(
                f"full_output_voltage_error_pu ({self.full_output_voltage_error_pu}) must exceed "
                f"deadband_pu ({self.deadband_pu})"
            )
        return self


class DroopStorage(BaseModel):
    """A battery as the droop controller needs it: name, bus and ratings.

    The grid's own ``StorageSpec`` (g2gsim.grid.config) is accepted as well, as is a plain
    name, resolved through the grid's ``storage_spec(name)`` when the run starts.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    bus: str = Field(min_length=1)
    rated_kw: float = Field(gt=0)
    rated_kva: float | None = Field(default=None, gt=0, description="None: equal to rated_kw")

    @field_validator("bus")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()

    @model_validator(mode="after")
    def _ratings(self) -> DroopStorage:
        if not math.isfinite(self.rated_kw) or (self.rated_kva is not None and not math.isfinite(self.rated_kva)):
            raise ValueError(f"storage {self.name!r}: ratings must be finite")
        if self.rated_kva is not None and self.rated_kva < self.rated_kw:
            raise ValueError(
                f"storage {self.name!r}: rated_kva ({self.rated_kva}) must be >= rated_kw ({self.rated_kw})"
            )
        return self

    @classmethod
    def of(cls, storage: Any) -> DroopStorage:
        """From a DroopStorage, a grid StorageSpec or any object with the same fields."""
        if isinstance(storage, DroopStorage):
            return storage
        return cls(
            name=storage.name, bus=storage.bus, rated_kw=storage.rated_kw, rated_kva=getattr(storage, "rated_kva", None)
        )


def droop_output(
    v: float, *, v_ref: float, deadband: float, gain: float, limit: float, allow_negative: bool = True
) -> float:
    """The droop law of SPEC 5.5 for one voltage sample (kvar or kW)."""
    e = v_ref - v  # error
    if abs(e) <= deadband:
        out = 0.0
    else:
        out = gain * math.copysign(abs(e) - deadband, e)
    if not allow_negative:
        out = max(out, 0.0)
    return max(-limit, min(limit, out))


class StorageDroopSection(ControllerSection):
    """Local Q-V / P-V droop of the grid's batteries (``type = "storage_droop"``)."""

    type: Literal["storage_droop"] = "storage_droop"
    """Always "storage_droop"."""
    grid: str = "grid"
    """The grid holding the batteries."""
    storage: tuple[str, ...] = Field(min_length=1)
    """Names of the batteries it drives (the grid's ``storage`` entries)."""
    params: StorageDroopConfig = Field(default_factory=StorageDroopConfig)
    """Droop settings."""


@dataclass(frozen=True, slots=True)
class _Unit:
    name: str
    bus: str
    limit: float  # kvar (qv) or kW (pv)
    gain: float  # per pu


class StorageDroopController(Controller):
    """Local Q-V / P-V droop of batteries attached to a grid (SPEC 5.5).

    Args:
        name: Component name.
        grid: Name of the :class:`Grid` holding the batteries.
        storage: Batteries (:class:`DroopStorage`, the grid's ``StorageSpec``, or names the
            grid resolves).
        config: Droop settings.
        period: Control period, s.
    """

    def __init__(
        self,
        name: str,
        grid: str,
        storage: Sequence[DroopStorage | Any | str],
        config: StorageDroopConfig | None = None,
        period: TimeLike | None = Fraction(1),
        *,
        command_link: LinkSpec = INSTANT,
        measurement_link: LinkSpec = INSTANT,
        trigger: TriggerLike = PERIODIC,
    ) -> None:
        period = required_period(period, f"storage droop {name!r}")
        super().__init__(name, period, command_link=command_link, measurement_link=measurement_link, trigger=trigger)
        if isinstance(storage, str) or not storage:
            raise ValueError(f"{name!r}: give a non-empty list of batteries")
        self.config = config_or_default(name, config, StorageDroopConfig)
        self.grid = grid
        self.storage = tuple(s if isinstance(s, str) else DroopStorage.of(s) for s in storage)
        names = [s if isinstance(s, str) else s.name for s in self.storage]
        if len({n.lower() for n in names}) != len(names):
            raise ValueError(f"{name!r}: a battery is listed twice: {names}")
        self._units: tuple[_Unit, ...] = ()

    @classmethod
    def from_config(cls, section: StorageDroopSection, context: BuildContext) -> StorageDroopController:
        """From its scenario section; batteries are resolved among the grid's storage."""
        storage = context.storage
        missing = [name for name in section.storage if name not in storage]
        if missing:
            raise ValueError(
                f"controllers.{section.name}.storage: unknown storage {missing}; grid storage: {sorted(storage)}"
            )
        batteries = [storage[name] for name in section.storage]
        return cls(
            section.name, section.grid, batteries, section.params, section.period_s, **section.controller_keywords()
        )

    def dependencies(self) -> Mapping[str, type]:
        return {self.grid: Grid}

    def reset(self, ctx: RunContext) -> None:
        """Forget the resolved batteries of a previous run (the window queue is per run)."""
        super().reset(ctx)
        self._units = ()

    def start(self) -> None:
        """Resolve batteries, check their buses are observed, subscribe to every grid state."""
        ctx = self.ctx
        grid = ctx.lookup(self.grid)
        assert isinstance(grid, Grid)
        cfg = self.config
        units = []
        for entry in self.storage:
            if isinstance(entry, str):
                resolve = getattr(grid, "storage_spec", None)
                if resolve is None:
                    raise LookupError(f"{self.name!r}: grid {self.grid!r} cannot resolve battery {entry!r} by name")
                entry = DroopStorage.of(resolve(entry))
            rating = (entry.rated_kva or entry.rated_kw) if cfg.mode == "qv" else entry.rated_kw
            limit = rating if cfg.max_abs_output is None else min(rating, cfg.max_abs_output)
            gain = cfg.droop_gain_per_pu
            if gain is None:
                gain = limit / (cfg.full_output_voltage_error_pu - cfg.deadband_pu)
            try:
                grid.voltage_index.rows_of(entry.bus)
            except KeyError:
                raise KeyError(
                    f"{self.name!r}: battery {entry.name!r} is at bus {entry.bus!r}, which grid {self.grid!r} "
                    "does not observe (excluded or unknown)"
                ) from None
            units.append(_Unit(entry.name, entry.bus, float(limit), float(gain)))
        self._units = tuple(units)
        self._queue = ctx.subscribe(self.grid, queue=True)
        if self.trigger.threshold_pu is not None:  # the latest state, for the threshold test
            self._latest = ctx.subscribe(self.grid, wake=False)

    def watched_values(self) -> np.ndarray | None:
        """Each battery bus's lowest phase voltage in the latest grid state."""
        if not self._latest.has_value:
            return None
        state = self._latest.value
        return np.array([np.nanmin(state.bus_voltages(unit.bus)) for unit in self._units])

    def watched_band(self) -> tuple[float, float]:
        """The deadband around v_ref: outside it the droop has an output to set."""
        cfg = self.config
        return (cfg.v_ref - cfg.deadband_pu, cfg.v_ref + cfg.deadband_pu)

    def local_voltage(self, states: Sequence[Any], bus: str, stacked: np.ndarray | None = None) -> float:
        """The window statistic of a bus's per-state minimum finite phase voltage (`stacked`:
        :func:`stacked_voltages` of the states, when the caller has it already)."""
        samples = _bus_minima(states, bus, stacked)
        for state, sample in zip(states, samples, strict=True):
            if not math.isfinite(sample):
                raise ValueError(f"{self.name!r}: bus {bus!r} has no finite phase voltage at t = {state.time_s:g} s")
        statistic = self.config.voltage_statistic
        if statistic == "minimum":
            return min(samples)
        if statistic == "mean":
            return sum(samples) / len(samples)
        return samples[-1]

    def control(self, tick: int) -> Iterable[Command]:
        window = [state for _tick, state in self._queue.drain()]
        if not window:
            return ()
        cfg = self.config
        commands: list[Command] = []
        stacked = stacked_voltages(window)  # once for every battery
        for unit in self._units:
            v = self.local_voltage(window, unit.bus, stacked)
            out = droop_output(
                v,
                v_ref=cfg.v_ref,
                deadband=cfg.deadband_pu,
                gain=unit.gain,
                limit=unit.limit,
                allow_negative=cfg.allow_negative_output,
            )
            kw, kvar = (0.0, out) if cfg.mode == "qv" else (out, 0.0)
            self.ctx.event(
                "storage_droop",
                {"storage": unit.name, "bus": unit.bus, "v_pu": v, "kw": kw, "kvar": kvar, "samples": len(window)},
            )
            commands.append(SetStoragePower(storage=unit.name, kw=kw, kvar=kvar, target=self.grid))
        return commands


register_controller("storage_droop", StorageDroopSection)(StorageDroopController)


def _bus_minima(states: Sequence[Any], bus: str, stacked: np.ndarray | None = None) -> list[float]:
    """Per state, the smallest finite phase voltage of `bus` (NaN where none is finite).

    `stacked` is :func:`stacked_voltages` of the states when they are GridStates of one
    index: the bus's rows are looked up once and read from it (a minimum is exact in any
    order); other states go through their ``bus_voltages``."""
    if stacked is None:
        stacked = stacked_voltages(states)
    if stacked is not None:
        rows = states[0].index.rows_of(bus)
        window = stacked[:, rows[rows >= 0]]
    else:
        window = np.stack([np.asarray(s.bus_voltages(bus), dtype=float) for s in states])
    finite = np.isfinite(window)
    minima = np.where(finite, window, np.inf).min(axis=1, initial=np.inf)
    return np.where(finite.any(axis=1), minima, np.nan).tolist()


def stacked_voltages(states: Sequence[Any]) -> np.ndarray | None:
    """(states, entries) voltages of GridStates that share one voltage index; None otherwise."""
    first = states[0] if states else None
    if not isinstance(first, GridState):
        return None
    index = first.index
    if not all(type(s) is GridState and s.index is index for s in states):
        return None
    return np.stack([s.voltages for s in states])
