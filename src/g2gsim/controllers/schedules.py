"""Tap and batch-size schedules (SPEC 5.1): pre-set commands at pre-set times.

Build a schedule with ``TapPosition(creg1a=1.0875).at(1500) | TapPosition(a=1.0625).at(3300)``
or ``BatchSizeChange(64).at(600) | BatchSizeChange(128, ramp_up_rate=4).at(900)`` (one
batch schedule per model). Two entries at the same time are an error.

A schedule controller fires at the exact time of each entry: its process waits for that
tick (a timeout on the kernel), and the entry times take part in the base tick. For
compatibility with OpenG2G a polling `period` may be given instead: then at every poll,
every entry due by then (time <= now) fires, merged with later entries winning, as one
command.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import Field
from simpy.events import Event

from g2gsim.controllers.base import (
    BuildContext,
    ControllerSection,
    register_controller,
    renamed_attribute,
    renamed_keyword,
)
from g2gsim.datacenter.base import Datacenter
from g2gsim.datacenter.commands import SetBatchSize
from g2gsim.grid.base import Grid
from g2gsim.grid.commands import SetTaps
from g2gsim.grid.config import tap_pu
from g2gsim.kernel.commands import Command
from g2gsim.kernel.component import Controller
from g2gsim.kernel.context import RunContext
from g2gsim.kernel.links import INSTANT, LinkSpec, Seconds
from g2gsim.kernel.registry import Section
from g2gsim.kernel.time import TimeLike, as_delay

E = TypeVar("E")
S = TypeVar("S", bound="Schedule[Any]")
Sch = TypeVar("Sch", bound="Schedule[Any]")


# -- entries ------------------------------------------------------------------------------
class TapPosition:
    """Regulator tap ratios (pu) by regulator-control name or phase shorthand a/b/c.

    ``TapPosition(a=1.0875, c=1.09375)`` or ``TapPosition(creg4a=1.1)``; a ratio of step n of
    a 32-step +-10 % regulator is 1 + 0.00625 n.
    """

    __slots__ = ("_taps",)

    def __init__(self, **taps: float) -> None:
        if not taps:
            raise ValueError("TapPosition needs at least one tap, e.g. TapPosition(a=1.0125)")
        checked: dict[str, float] = {}
        for key, value in taps.items():
            ratio = float(value)
            if not (math.isfinite(ratio) and ratio > 0.0):
                raise ValueError(f"TapPosition({key}=...) must be a positive tap ratio in pu, got {value!r}")
            checked[key] = ratio
        self._taps: Mapping[str, float] = MappingProxyType(checked)

    @property
    def taps(self) -> Mapping[str, float]:
        """Tap ratio by regulator key."""
        return self._taps

    def at(self, t: TimeLike) -> TapSchedule:
        """A one-entry schedule: these taps at time `t` (s)."""
        return TapSchedule(((as_delay(t, name="tap schedule time"), self),))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TapPosition) and dict(self._taps) == dict(other._taps)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._taps.items())))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._taps.items())
        return f"TapPosition({inner})"


@dataclass(frozen=True, slots=True)
class BatchSizeChange:
    """A new batch size for one model, optionally reached at `ramp_up_rate` requests/s."""

    batch: int
    ramp_up_rate: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch <= 0:
            raise ValueError(f"BatchSizeChange.batch must be a positive int, got {self.batch!r}")
        if not (math.isfinite(self.ramp_up_rate) and self.ramp_up_rate >= 0.0):
            raise ValueError(f"BatchSizeChange.ramp_up_rate must be >= 0 requests/s, got {self.ramp_up_rate!r}")

    def at(self, t: TimeLike) -> BatchSchedule:
        """A one-entry schedule: this change at time `t` (s)."""
        return BatchSchedule(((as_delay(t, name="batch schedule time"), self),))


# -- schedules ----------------------------------------------------------------------------
class Schedule(Generic[E]):
    """Entries (exact time, entry) sorted by time; `|` merges two schedules of one kind.

    The base of tap, batch and budget schedules: a subclass names its `kind` for errors.
    """

    __slots__ = ("_entries",)
    kind: ClassVar[str] = "schedule"

    def __init__(self, entries: Iterable[tuple[Fraction, E]]) -> None:
        ordered = tuple(sorted(entries, key=lambda entry: entry[0]))
        times = [t for t, _ in ordered]
        duplicates = sorted({t for a, t in itertools.pairwise(times) if a == t})
        if duplicates:
            shown = ", ".join(f"{float(t):g} s" for t in duplicates)
            raise ValueError(f"{self.kind} has two entries at the same time: {shown}")
        self._entries = ordered

    def __or__(self: S, other: S) -> S:
        if type(other) is not type(self):
            return NotImplemented
        return type(self)(self._entries + other._entries)

    def __iter__(self) -> Iterator[tuple[Fraction, E]]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def times(self) -> tuple[Fraction, ...]:
        """Entry times, s, increasing."""
        return tuple(t for t, _ in self._entries)

    def __repr__(self) -> str:
        return " | ".join(f"{entry!r}.at({float(t):g})" for t, entry in self._entries) or f"{type(self).__name__}()"


class TapSchedule(Schedule[TapPosition]):
    """Tap positions at times, built with ``TapPosition(...).at(t) | ...``."""

    kind = "tap schedule"


class BatchSchedule(Schedule[BatchSizeChange]):
    """One model's batch-size changes at times, built with ``BatchSizeChange(b).at(t) | ...``."""

    kind = "batch schedule"


def merged(schedules: Iterable[Sch]) -> Sch | None:
    """One schedule of every given one (``a | b | ...``), None when there are none."""
    result: Sch | None = None
    for schedule in schedules:
        result = schedule if result is None else result | schedule
    return result


# -- scenario sections ------------------------------------------------------------------------
class TapEvent(Section):
    """Regulator taps set at one time, as ratios (pu) or steps (1 + 0.00625 n); ratios win."""

    t_s: float = Field(ge=0)
    """When, s."""
    taps: dict[str, float] = Field(default_factory=dict)
    """Tap ratio (pu) by regulator-control name or phase shorthand a/b/c."""
    tap_steps: dict[str, int] = Field(default_factory=dict)
    """Tap step by regulator-control name or phase shorthand."""

    def taps_pu(self) -> dict[str, float]:
        """The taps as ratios, steps converted."""
        return {**{k: tap_pu(v) for k, v in self.tap_steps.items()}, **self.taps}


class BatchEvent(Section):
    """A new batch size of one model at one time."""

    t_s: float = Field(ge=0)
    """When, s."""
    model: str
    """The model label."""
    batch: int = Field(gt=0)
    """The batch size."""
    ramp_up_rate: float = Field(default=0.0, ge=0)
    """Requests/s at which a larger batch is reached (0: at once)."""


class TapScheduleSection(ControllerSection):
    """Tap positions at set times (``type = "tap_schedule"``)."""

    event_timed = True

    type: Literal["tap_schedule"] = "tap_schedule"
    """Always "tap_schedule"."""
    period_s: Seconds | None = None
    """None: fire at each event's exact time; a period polls (OpenG2G compatibility)."""
    grid: str = "grid"
    """The grid whose regulators it sets."""
    events: tuple[TapEvent, ...] = Field(min_length=1)
    """The tap changes."""


class BatchScheduleSection(ControllerSection):
    """Batch sizes at set times (``type = "batch_schedule"``)."""

    event_timed = True

    type: Literal["batch_schedule"] = "batch_schedule"
    """Always "batch_schedule"."""
    period_s: Seconds | None = None
    """None: fire at each event's exact time; a period polls (OpenG2G compatibility)."""
    site: str
    """The datacenter site it commands."""
    events: tuple[BatchEvent, ...] = Field(min_length=1)
    """The batch-size changes."""


# -- controllers --------------------------------------------------------------------------
class _ScheduleController(Controller):
    """Fires schedule entries at their exact times, or at polls when a period is given."""

    def __init__(
        self,
        name: str,
        times: Iterable[Fraction],
        period: TimeLike | None,
        *,
        command_link: LinkSpec,
        measurement_link: LinkSpec,
    ) -> None:
        super().__init__(name, period, command_link=command_link, measurement_link=measurement_link)
        self._event_times = tuple(sorted(set(times)))
        self._cursor = 0

    def times(self) -> list[Fraction]:
        """Polling: the period (and links). Exact timing: also every entry time."""
        own = super().times()
        return own if self.period is not None else own + [t for t in self._event_times if t > 0]

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._cursor = 0

    def run(self) -> Generator[Event, Any, None]:
        """Exact timing: wake at each distinct entry time before the horizon and fire."""
        if self.period is not None:
            yield from super().run()
            return
        ctx = self.ctx
        for t in self._event_times:
            if t >= ctx.horizon:
                return
            tick = ctx.clock.ticks(t)
            yield ctx.at_tick(tick)
            self.step(tick)

    def _due(self, tick: int, entries: tuple[tuple[Fraction, Any], ...]) -> list[tuple[Fraction, Any]]:
        """Entries from the cursor with time <= now, in time order; advances the cursor."""
        now = self.ctx.clock.seconds(tick)
        start = self._cursor
        end = start
        while end < len(entries) and entries[end][0] <= now:
            end += 1
        self._cursor = end
        return list(entries[start:end])


class TapScheduleController(_ScheduleController):
    """Sends the taps of a :class:`TapSchedule` to a grid as SetTaps commands.

    Args:
        name: Component name.
        schedule: The tap schedule.
        grid: Grid component to command (None: the only component that accepts SetTaps).
        period: None fires at exact entry times; a period polls (OpenG2G compatibility).
        resolve: Ask the grid to re-solve at once, so later controllers of the same tick
            see the new taps (SPEC 4.6).
    """

    def __init__(
        self,
        name: str,
        schedule: TapSchedule,
        *,
        grid: str | None = None,
        period: TimeLike | None = None,
        resolve: bool = False,
        command_link: LinkSpec = INSTANT,
        measurement_link: LinkSpec = INSTANT,
    ) -> None:
        if not isinstance(schedule, TapSchedule):
            raise TypeError(
                f"{name!r}: schedule must be a TapSchedule (TapPosition(...).at(t) | ...), got {schedule!r}"
            )
        if len(schedule) == 0:
            raise ValueError(f"{name!r}: the tap schedule is empty")
        super().__init__(name, schedule.times, period, command_link=command_link, measurement_link=measurement_link)
        self.schedule = schedule
        self.grid = grid
        self.resolve = bool(resolve)
        self._entries = tuple(schedule)

    @classmethod
    def from_config(cls, section: TapScheduleSection, context: BuildContext) -> TapScheduleController:
        """From its scenario section."""
        schedule = merged(TapPosition(**event.taps_pu()).at(event.t_s) for event in section.events)
        assert schedule is not None  # the section has at least one event
        return cls(section.name, schedule, grid=section.grid, period=section.period_s, **section.links())

    def dependencies(self) -> Mapping[str, type]:
        return {} if self.grid is None else {self.grid: Grid}

    def control(self, tick: int) -> Iterable[Command]:
        due = self._due(tick, self._entries)
        if not due:
            return ()
        merged: dict[str, float] = {}
        for _t, position in due:  # later entries win
            merged.update(position.taps)
        self.ctx.event("tap_schedule", {"taps": merged, "entries_s": [float(t) for t, _ in due]})
        return (SetTaps(taps=merged, resolve=self.resolve, target=self.grid),)


class BatchScheduleController(_ScheduleController):
    """Sends per-model :class:`BatchSchedule` entries to a datacenter as SetBatchSize commands.

    Entries of several models at one time go out as one command.

    Args:
        name: Component name.
        schedules: Batch schedule per model label.
        site: Datacenter component to command (``datacenter=``: deprecated name).
        period: None fires at exact entry times; a period polls (OpenG2G compatibility).
    """

    datacenter = renamed_attribute("site", "datacenter")

    @renamed_keyword("datacenter", "site")
    def __init__(
        self,
        name: str,
        schedules: Mapping[str, BatchSchedule],
        *,
        site: str,
        period: TimeLike | None = None,
        command_link: LinkSpec = INSTANT,
        measurement_link: LinkSpec = INSTANT,
    ) -> None:
        if not schedules:
            raise ValueError(f"{name!r}: no batch schedules given")
        for label, schedule in schedules.items():
            if not isinstance(schedule, BatchSchedule):
                raise TypeError(
                    f"{name!r}: the schedule of {label!r} must be a BatchSchedule "
                    f"(BatchSizeChange(b).at(t) | ...), got {schedule!r}"
                )
        entries = sorted(
            ((t, label, change) for label, schedule in schedules.items() for t, change in schedule),
            key=lambda entry: entry[0],
        )
        super().__init__(
            name, (t for t, _, _ in entries), period, command_link=command_link, measurement_link=measurement_link
        )
        self.schedules = dict(schedules)
        self.site = site
        self._entries = tuple((t, (label, change)) for t, label, change in entries)

    @classmethod
    def from_config(cls, section: BatchScheduleSection, context: BuildContext) -> BatchScheduleController:
        """From its scenario section: one schedule per model."""
        by_model: dict[str, list[BatchSchedule]] = {}
        for event in section.events:
            change = BatchSizeChange(event.batch, ramp_up_rate=event.ramp_up_rate).at(event.t_s)
            by_model.setdefault(event.model, []).append(change)
        schedules = {model: merged(changes) for model, changes in by_model.items()}
        return cls(
            section.name,
            {m: s for m, s in schedules.items() if s is not None},
            site=section.site,
            period=section.period_s,
            **section.links(),
        )

    def dependencies(self) -> Mapping[str, type]:
        return {self.site: Datacenter}

    def start(self) -> None:
        """Check that the datacenter serves every scheduled model."""
        site = self.ctx.lookup(self.site)
        specs = getattr(site, "specs", None)
        if specs is not None:
            unknown = sorted(label for label in self.schedules if label not in specs)
            if unknown:
                raise KeyError(f"{self.name!r}: site {self.site!r} serves no model {unknown}; models: {sorted(specs)}")

    def control(self, tick: int) -> Iterable[Command]:
        due = self._due(tick, self._entries)
        if not due:
            return ()
        batch: dict[str, int] = {}
        rate: dict[str, float] = {}
        for _t, (label, change) in due:  # later entries win, rate included
            batch[label] = change.batch
            rate.pop(label, None)
            if change.ramp_up_rate > 0:
                rate[label] = change.ramp_up_rate
        self.ctx.event(
            "batch_schedule", {"batch": batch, "ramp_up_rate": rate, "entries_s": [float(t) for t, _ in due]}
        )
        return (SetBatchSize(batch=batch, ramp_up_rate=rate, target=self.site),)


register_controller("tap_schedule", TapScheduleSection)(TapScheduleController)
register_controller("batch_schedule", BatchScheduleSection)(BatchScheduleController)
