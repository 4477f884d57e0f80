"""Site power-budget signals: constant, scheduled, CSV profile, grid-operator events.

A budget source is a process that publishes :class:`BudgetSignal` values (kW, three-phase
site total) on its mailbox ``budget``. A change of budget is therefore a kernel event: a
consumer waiting on ``box.changed()`` wakes in the same tick (this is how
:class:`~g2gsim.controllers.power_budget.PowerBudgetController` reacts at once instead of at
its next poll). Every source records what it published (table ``budget``) so metrics can
rebuild the budget over time.

- :class:`ConstantBudget` publishes one value at t = 0.
- :class:`ScheduledBudget` publishes ``Budget(kw).at(t) | ...`` entries at their exact times.
- :func:`budget_from_csv` reads a step profile (columns ``t_s`` and ``budget_kw``) into a
  schedule.
- :class:`GridOperator` is event-driven: it sleeps on the grid's (and optionally the
  site's) mailbox and issues a curtailment budget when the lowest observed voltage falls
  under a trigger or the watched load exceeds a power threshold, and releases it after the
  condition has been clear for a hold time.

:class:`BudgetFollower` is the base of the controllers that keep a site under such a budget.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator
from simpy.events import Event

from g2gsim.controllers.base import (
    BuildContext,
    ControllerSection,
    register_controller,
    renamed_attribute,
    required_period,
    scenario_path,
)
from g2gsim.controllers.schedules import Schedule, merged
from g2gsim.datacenter.base import Datacenter
from g2gsim.datacenter.power_cap import GpuPowerCaps
from g2gsim.grid.base import Grid
from g2gsim.kernel.commands import Command
from g2gsim.kernel.component import Controller
from g2gsim.kernel.context import RunContext
from g2gsim.kernel.links import INSTANT, LinkSpec, Seconds
from g2gsim.kernel.registry import Section
from g2gsim.kernel.time import TimeLike, as_delay
from g2gsim.kernel.triggers import PERIODIC, TriggerLike

__all__ = [
    "Budget",
    "BudgetEvent",
    "BudgetFollower",
    "BudgetSchedule",
    "BudgetSection",
    "BudgetSignal",
    "BudgetSource",
    "ConstantBudget",
    "CurtailmentEpisodes",
    "GridOperator",
    "GridOperatorSection",
    "ScheduledBudget",
    "budget_from_csv",
    "budget_source",
]


@dataclass(frozen=True, slots=True)
class BudgetSignal:
    """A site power budget in force from `time_s` on (kW, three-phase total)."""

    site: str
    time_s: float
    kw: float
    reason: str = "schedule"


@dataclass(frozen=True, slots=True)
class Budget:
    """A budget level; ``Budget(3500).at(1200)`` is a one-entry :class:`BudgetSchedule`."""

    kw: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.kw) and self.kw > 0):
            raise ValueError(f"a power budget must be a positive number of kW, got {self.kw!r}")

    def at(self, t: TimeLike) -> BudgetSchedule:
        """This budget from time `t` (s) on."""
        return BudgetSchedule(((as_delay(t, name="budget schedule time"), self),))


class BudgetSchedule(Schedule[Budget]):
    """Budget levels at times, built with ``Budget(kw).at(t) | ...``."""

    kind = "budget schedule"


def budget_from_csv(path: str | Path) -> BudgetSchedule:
    """A step profile from a CSV with columns ``t_s`` and ``budget_kw`` (one level per row)."""
    file = Path(path)
    try:
        handle = file.open(newline="")
    except FileNotFoundError:
        raise FileNotFoundError(f"budget profile {file} does not exist") from None
    schedule: BudgetSchedule | None = None
    with handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        if not {"t_s", "budget_kw"} <= set(columns):
            raise ValueError(f"budget profile {file}: needs columns t_s and budget_kw, found {columns}")
        for row in reader:
            where = f"budget profile {file}, line {reader.line_num}"
            t_s, kw = row.get("t_s"), row.get("budget_kw")
            if t_s is None or kw is None or not t_s.strip() or not kw.strip():
                raise ValueError(
                    f"{where}: needs a value for both t_s and budget_kw, got t_s={t_s!r}, budget_kw={kw!r}"
                )
            try:
                entry = Budget(float(kw)).at(t_s.strip())
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            schedule = entry if schedule is None else schedule | entry
    if schedule is None:
        raise ValueError(f"budget profile {file}: no rows after the header")
    return schedule


class BudgetSource(Controller):
    """Base of budget processes: publishes :class:`BudgetSignal` on mailbox ``budget``.

    It sends no commands. Subclasses call :meth:`publish` from their own process.
    """

    def __init__(self, name: str, site: str, period: TimeLike | None = None) -> None:
        super().__init__(name, period)
        self.site = site
        self._log: list[tuple[float, float, str]] = []

    def dependencies(self) -> Mapping[str, type]:
        return {self.site: Datacenter}

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._box = ctx.mailbox("budget")
        self._log = []

    def publish(self, kw: float, reason: str) -> None:
        """Put a new budget in force now (a kernel event for every waiting consumer)."""
        ctx = self.ctx
        signal = BudgetSignal(self.site, ctx.now_s, float(kw), reason)
        self._log.append((signal.time_s, signal.kw, reason))
        ctx.event("budget", {"site": self.site, "kw": signal.kw, "reason": reason})
        self._box.publish(ctx.now, signal)

    @property
    def history(self) -> list[tuple[float, float]]:
        """(time_s, kW) of every published budget of the last run."""
        return [(t, kw) for t, kw, _ in self._log]

    def control(self, tick: int) -> Iterable[Command]:
        return ()

    def tables(self) -> dict[str, pd.DataFrame]:
        """``budget``: time_s, budget_kw, reason of every publish."""
        if not self._log:
            return {}
        times, kws, reasons = zip(*self._log, strict=True)
        return {
            "budget": pd.DataFrame({"time_s": np.array(times), "budget_kw": np.array(kws), "reason": list(reasons)})
        }

    def summary(self) -> dict[str, Any]:
        return {"site": self.site, "changes": len(self._log)}


class BudgetFollower(Controller):
    """Base of controllers that follow a budget source: they poll at their period and also
    react at once, in the same tick, when the source publishes a new budget."""

    datacenter = renamed_attribute("site", "datacenter")

    def __init__(
        self,
        name: str,
        site: str,
        budget: str,
        period: TimeLike | None,
        *,
        command_link: LinkSpec = INSTANT,
        measurement_link: LinkSpec = INSTANT,
        trigger: TriggerLike = PERIODIC,
    ) -> None:
        period = required_period(period, repr(name), "polling period")
        super().__init__(name, period, command_link=command_link, measurement_link=measurement_link, trigger=trigger)
        self.site = site
        self.budget = budget

    def dependencies(self) -> Mapping[str, type]:
        return {self.site: Datacenter, self.budget: BudgetSource}

    def start(self) -> None:
        ctx = self.ctx
        site = ctx.lookup(self.site)
        assert isinstance(site, Datacenter)
        self._site = site
        self._dc_box = ctx.subscribe(self.site)
        self._budget_box = ctx.subscribe(self.budget, "budget")
        self._labels = tuple(self._site.specs)
        # the site's cap grid and floors (a datacenter without a configuration: the defaults)
        self._gpu_power = getattr(getattr(self._site, "config", None), "gpu_power", None) or GpuPowerCaps()

    def run(self) -> Generator[Event, Any, None]:
        """Poll every period; in between, react to each budget publish in the same tick.

        Event-triggered, it steps when the site or the budget publishes (at most once per
        minimum interval) and reacts to a new budget first, at that step."""
        if not self.trigger.is_periodic:
            self._budget_seen = -1
            yield from super().run()
            return
        ctx = self.ctx
        assert self.period is not None
        period = ctx.clock.ticks(self.period)
        steps = ctx.step_count(self.period)
        k = 0
        timer: Event | None = None
        while k < steps:
            if timer is None:
                timer = ctx.at_tick(k * period)
            changed = self._budget_box.changed(ctx.priority)
            yield ctx.env.any_of([timer, changed])
            if changed.triggered:  # published (this tick): react now, not at the next poll
                self.on_budget(ctx.now)
            if timer.processed:
                timer = None
                k += 1
                self.step(ctx.now)

    def step(self, tick: int) -> None:
        """One poll; an event-triggered follower first reacts to a budget published since its last step."""
        if not self.trigger.is_periodic and self._budget_box.tick > self._budget_seen:
            self._budget_seen = self._budget_box.tick
            self.on_budget(tick)
        super().step(tick)

    def on_budget(self, tick: int) -> None:
        """A new budget was published at this tick."""
        for command in self.react(tick):
            self.ctx.send(command)

    def react(self, tick: int) -> Iterable[Command]:  # pragma: no cover - overridden
        return ()


class ConstantBudget(BudgetSource):
    """One budget for the whole run, published at t = 0."""

    def __init__(self, name: str, site: str, kw: float) -> None:
        super().__init__(name, site)
        self.kw = Budget(kw).kw

    def run(self) -> Generator[Event, Any, None]:
        yield self.ctx.at_tick(0)
        self.publish(self.kw, "constant")


class ScheduledBudget(BudgetSource):
    """Budget levels at exact times (``Budget(5000).at(0) | Budget(3500).at(1200) | ...``)."""

    def __init__(self, name: str, site: str, schedule: BudgetSchedule, *, reason: str = "schedule") -> None:
        if not isinstance(schedule, BudgetSchedule) or len(schedule) == 0:
            raise TypeError(f"{name!r}: schedule must be a non-empty BudgetSchedule (Budget(kw).at(t) | ...)")
        super().__init__(name, site)
        self.schedule = schedule
        self.reason = reason

    def times(self) -> list[Fraction]:
        return super().times() + [t for t in self.schedule.times if t > 0]

    def run(self) -> Generator[Event, Any, None]:
        ctx = self.ctx
        for t, entry in self.schedule:
            if t >= ctx.horizon:
                return
            yield ctx.at_tick(ctx.clock.ticks(t))
            self.publish(entry.kw, self.reason)


class GridOperator(BudgetSource):
    """An event-driven operator that curtails a site when the feeder is stressed.

    It wakes on every publish of the grid's state (and of the watched sites' states when a
    power trigger is set), with no clock of its own. It issues ``curtail_kw`` when the lowest
    finite voltage is below ``v_trigger`` or the watched sites' total power exceeds
    ``power_trigger_kw`` (the grid does not publish feeder-head flow; the load of the
    watched sites stands for it), and restores ``normal_kw`` once the condition has been
    clear for ``hold_s``. ``normal_kw`` is published at t = 0.

    Args:
        name: Component name.
        site: The site whose budget this is.
        grid: Grid component to watch.
        normal_kw: Budget outside events.
        curtail_kw: Budget during an event.
        v_trigger: Voltage (pu) below which an event starts (None: no voltage trigger).
        power_trigger_kw: Watched load above which an event starts (None: no power trigger).
        watch_sites: Sites whose power is summed for the power trigger (default: `site`).
        hold_s: How long the condition must stay clear before the event ends.
    """

    def __init__(
        self,
        name: str,
        site: str,
        grid: str,
        *,
        normal_kw: float,
        curtail_kw: float,
        v_trigger: float | None = None,
        power_trigger_kw: float | None = None,
        watch_sites: Sequence[str] | None = None,
        hold_s: float = 300.0,
    ) -> None:
        super().__init__(name, site)
        if v_trigger is None and power_trigger_kw is None:
            raise ValueError(f"{name!r}: give v_trigger and/or power_trigger_kw")
        self.grid = grid
        self.normal_kw = Budget(normal_kw).kw
        self.curtail_kw = Budget(curtail_kw).kw
        self.v_trigger = v_trigger
        self.power_trigger_kw = power_trigger_kw
        self.watch_sites = tuple(watch_sites or (site,))
        if not (math.isfinite(hold_s) and hold_s >= 0):
            raise ValueError(f"{name!r}: hold_s must be >= 0 s, got {hold_s!r}")
        self.hold_s = float(hold_s)
        self.events = 0

    def dependencies(self) -> Mapping[str, type]:
        deps: dict[str, type] = {self.grid: Grid, **{s: Datacenter for s in self.watch_sites}}
        deps[self.site] = Datacenter
        return deps

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self.events = 0

    def start(self) -> None:
        self._grid_box = self.ctx.subscribe(self.grid)
        self._site_boxes = [self.ctx.subscribe(s) for s in self.watch_sites] if self.power_trigger_kw else []

    def stressed(self) -> bool:
        """Whether the latest observations cross a trigger."""
        if self.v_trigger is not None and self._grid_box.has_value:
            v = np.asarray(self._grid_box.value.voltages, dtype=float)
            v = v[np.isfinite(v)]
            if v.size and float(v.min()) < self.v_trigger:
                return True
        if self.power_trigger_kw is not None and all(b.has_value for b in self._site_boxes) and self._site_boxes:
            total = sum(float(np.sum(b.value.power_w)) for b in self._site_boxes) / 1e3
            if total > self.power_trigger_kw:
                return True
        return False

    def run(self) -> Generator[Event, Any, None]:
        ctx = self.ctx
        yield ctx.at_tick(0)
        self.publish(self.normal_kw, "normal")
        episodes = CurtailmentEpisodes(self.hold_s)
        while True:
            waits = [self._grid_box.changed(ctx.priority), *(b.changed(ctx.priority) for b in self._site_boxes)]
            yield ctx.env.any_of(waits)
            change = episodes.observe(ctx.now_s, self.stressed())
            if change == "curtailment":
                self.events += 1
                self.publish(self.curtail_kw, change)
            elif change == "release":
                self.publish(self.normal_kw, change)


class CurtailmentEpisodes:
    """When a grid operator starts and ends curtailment: an episode starts at the first
    stressed observation and ends once observations have been clear for `hold_s` (a stressed
    observation in between restarts the hold)."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = float(hold_s)
        self.curtailing = False
        self._clear_since: float | None = None

    def observe(self, now_s: float, stressed: bool) -> Literal["curtailment", "release"] | None:
        """Record one observation; the change it causes, if any."""
        if stressed:
            self._clear_since = None
            if not self.curtailing:
                self.curtailing = True
                return "curtailment"
            return None
        if not self.curtailing:
            return None
        if self._clear_since is None:
            self._clear_since = now_s
        if now_s - self._clear_since >= self.hold_s:
            self.curtailing = False
            self._clear_since = None
            return "release"
        return None


# -- scenario sections ------------------------------------------------------------------------------
class BudgetEvent(Section):
    """A site power budget (kW, three-phase total) in force from t_s on."""

    t_s: float = Field(ge=0)
    """From when, s."""
    kw: float = Field(gt=0)
    """The budget, kW."""


class BudgetSection(ControllerSection):
    """A site power budget (``type = "budget"``): a constant `kw`, scheduled `events`, or a CSV
    `profile` (columns t_s, budget_kw; a relative path is read from the scenario file's folder)."""

    event_timed = True

    type: Literal["budget"] = "budget"
    """Always "budget"."""
    period_s: Seconds | None = None
    """Unused: a budget publishes at its own times."""
    site: str
    """The site whose budget this is."""
    kw: float | None = Field(default=None, gt=0)
    """A constant budget, kW."""
    events: tuple[BudgetEvent, ...] = ()
    """Budget levels at times."""
    profile: str | None = None
    """A CSV step profile (t_s, budget_kw)."""

    @model_validator(mode="after")
    def _one_kind(self) -> BudgetSection:
        given = [k for k, v in (("kw", self.kw), ("events", self.events or None), ("profile", self.profile)) if v]
        if len(given) != 1:
            raise ValueError(f"give exactly one of kw, events, profile (got {given or 'none'})")
        return self


def budget_source(section: BudgetSection, context: BuildContext) -> BudgetSource:
    """The budget source of a ``budget`` section (the CSV profile is read now)."""
    if section.kw is not None:
        return ConstantBudget(section.name, section.site, section.kw)
    schedule: BudgetSchedule | None
    if section.profile is not None:
        try:
            schedule = budget_from_csv(scenario_path(context, section.profile))
        except (OSError, ValueError) as exc:
            raise ValueError(f"controllers.{section.name}.profile: {exc}") from None
    else:
        schedule = merged(Budget(event.kw).at(event.t_s) for event in section.events)
    assert schedule is not None  # the section validator asks for exactly one kind
    return ScheduledBudget(section.name, section.site, schedule)


class GridOperatorSection(ControllerSection):
    """An event-driven operator that lowers a site's budget while the feeder is stressed
    (``type = "grid_operator"``)."""

    event_timed = True

    type: Literal["grid_operator"] = "grid_operator"
    """Always "grid_operator"."""
    period_s: Seconds | None = None
    """Unused: the operator wakes on the grid's (and the site's) publishes."""
    site: str
    """The site whose budget this is."""
    grid: str = "grid"
    """The grid it watches."""
    normal_kw: float = Field(gt=0)
    """Budget outside events, kW."""
    curtail_kw: float = Field(gt=0)
    """Budget during an event, kW."""
    v_trigger: float | None = Field(default=None, gt=0)
    """Voltage (pu) below which an event starts (none: no voltage trigger)."""
    power_trigger_kw: float | None = Field(default=None, gt=0)
    """Site load (kW) above which an event starts (none: no power trigger)."""
    hold_s: float = Field(default=300.0, ge=0)
    """How long the condition must stay clear before the event ends, s."""


def grid_operator(section: GridOperatorSection, context: BuildContext) -> GridOperator:
    """The operator of a ``grid_operator`` section."""
    return GridOperator(
        section.name,
        section.site,
        section.grid,
        normal_kw=section.normal_kw,
        curtail_kw=section.curtail_kw,
        v_trigger=section.v_trigger,
        power_trigger_kw=section.power_trigger_kw,
        hold_s=section.hold_s,
    )


register_controller("budget", BudgetSection)(budget_source)
register_controller("grid_operator", GridOperatorSection)(grid_operator)
