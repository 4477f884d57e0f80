"""Event-triggered controllers: woken by publishes (no clock), at most once per minimum
interval, kept stepping while unsettled, and the threshold test."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from g2gsim.controllers import NoopSection, OFOSection, TapScheduleSection
from g2gsim.kernel import Command, Component, Controller, LinkSpec, Simulation, Trigger
from g2gsim.kernel.component import DatacenterComponent


class Publisher(DatacenterComponent):
    """Publishes given values at given times (s) on mailbox ``state``."""

    def __init__(self, name: str, script: Sequence[tuple[float, Any]]) -> None:
        super().__init__(name, None)
        self.script = list(script)

    def times(self) -> list[Fraction]:
        return [Fraction(str(t)) for t, _ in self.script if t > 0]

    def reset(self, ctx: Any) -> None:
        super().reset(ctx)
        self.box = ctx.mailbox("state")

    def run(self):
        for t, value in self.script:
            tick = self.ctx.clock.ticks(Fraction(str(t)))
            yield self.ctx.at_tick(tick)
            self.box.publish(tick, value)

    def step(self, tick: int) -> None:  # pragma: no cover - event-driven
        pass


class Watcher(Controller):
    """Records the times it steps; `unsettled_steps` of its first steps report not settled."""

    def __init__(self, name: str = "watcher", *, sources: Sequence[str] = ("pub",), quiet: Sequence[str] = (), **kw):
        self.unsettled_steps = kw.pop("unsettled_steps", 0)
        self.band = kw.pop("band", (-np.inf, np.inf))
        super().__init__(name, kw.pop("period", 1), **kw)
        self.sources = tuple(sources)
        self.quiet = tuple(quiet)
        self.steps: list[float] = []

    def reset(self, ctx: Any) -> None:
        super().reset(ctx)
        self.steps = []

    def start(self) -> None:
        self.boxes = [self.ctx.subscribe(s) for s in self.sources]
        self.quiet_boxes = [self.ctx.subscribe(s, wake=False) for s in self.quiet]

    def control(self, tick: int) -> Iterable[Command]:
        self.steps.append(self.ctx.seconds(tick))
        return ()

    def settled(self) -> bool:
        return len(self.steps) >= self.unsettled_steps

    def watched_values(self) -> np.ndarray | None:
        box = self.boxes[0]
        return np.asarray(box.value, dtype=float) if box.has_value else None

    def watched_band(self) -> tuple[float, float]:
        return self.band


class Blind(Controller):
    """A controller that watches nothing (no threshold trigger possible)."""

    def control(self, tick: int) -> Iterable[Command]:
        return ()


def _steps(components: list[Component], horizon: float = 20) -> list[float]:
    Simulation(components, horizon).run()
    watcher = next(c for c in components if isinstance(c, Watcher))
    return watcher.steps


def test_periodic_is_the_default_and_steps_at_every_period():
    watcher = Watcher()
    assert watcher.trigger.is_periodic
    assert _steps([Publisher("pub", [(0, 1.0)]), watcher], horizon=4) == [0.0, 1.0, 2.0, 3.0]


def test_on_change_steps_at_publishes_no_more_than_once_per_min_interval():
    script = [(0, 1.0), (3, 2.0), (3.5, 3.0), (3.75, 4.0), (10, 5.0)]
    watcher = Watcher(trigger="on_change")
    # 3.5 and 3.75 come within 1 s of the step at 3: one step at 4 takes both
    assert _steps([Publisher("pub", script), watcher]) == [0.0, 3.0, 4.0, 10.0]


def test_min_interval_overrides_the_period():
    script = [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)]
    watcher = Watcher(trigger={"mode": "on_change", "min_interval_s": 2})
    assert _steps([Publisher("pub", script), watcher]) == [0.0, 2.0, 4.0]  # 1 -> 2, 3 -> 4
    assert Fraction(2) in watcher.times()


def test_subscriptions_without_wake_do_not_wake_it():
    watcher = Watcher(trigger="on_change", sources=("a",), quiet=("b",))
    steps = _steps([Publisher("a", [(5, 1.0)]), Publisher("b", [(0, 1.0), (1, 2.0), (2, 3.0)]), watcher])
    assert steps == [5.0]


def test_an_unsettled_controller_keeps_stepping_at_its_min_interval():
    watcher = Watcher(trigger="on_change", unsettled_steps=4)
    # unsettled from the start: it steps from tick 0 until settled, then sleeps until 15
    assert _steps([Publisher("pub", [(2, 1.0), (15, 2.0)]), watcher]) == [0.0, 1.0, 2.0, 3.0, 15.0]


def test_an_unsettled_controller_takes_its_first_step_in_its_phase_of_tick_zero():
    watcher = Watcher(trigger="on_change", unsettled_steps=2)
    assert _steps([Publisher("pub", [(0, 1.0)]), watcher], horizon=5) == [0.0, 1.0]


def test_with_nothing_to_wake_it_it_never_steps():
    watcher = Watcher(trigger="on_change", sources=())
    assert _steps([Publisher("pub", [(0, 1.0)]), watcher]) == []


def test_threshold_wakes_on_a_large_move_or_outside_the_band():
    script = [
        (0, [1.0, 1.0]),  # first observation: step
        (1, [1.001, 1.0]),  # moved 0.001 < 0.002: sleep
        (2, [1.0025, 1.0]),  # moved 0.0025 since the step at 0: step
        (3, [1.0025, 1.001]),  # moved 0.001: sleep
        (4, [1.0025, 0.94]),  # below the band: step
        (5, [1.0025, 0.94]),  # unchanged but still below: step
        (6, [1.0, 1.0]),  # moved back: step
        (7, [1.0, 1.0]),  # nothing: sleep
    ]
    watcher = Watcher(trigger={"threshold_pu": 0.002}, band=(0.95, 1.05))
    assert _steps([Publisher("pub", script), watcher]) == [0.0, 2.0, 4.0, 5.0, 6.0]


def test_a_delayed_measurement_wakes_it_when_it_arrives():
    link = LinkSpec(delay_s=0.5)
    watcher = Watcher(trigger="on_change", measurement_link=link, period=Fraction(1, 10))
    assert _steps([Publisher("pub", [(0, 1.0), (2, 2.0)]), watcher]) == [0.5, 2.5]


def test_event_triggered_steps_are_bounded_for_records():
    watcher = Watcher(trigger={"mode": "on_change", "min_interval_s": 4})
    sim = Simulation([Publisher("pub", [(0, 1.0)]), watcher], 10)
    sim.run()
    assert watcher.max_steps() == 3  # 0, 4, 8 at the most


def test_trigger_errors_name_the_controller_and_the_problem():
    with pytest.raises(ValueError, match="watches no voltages"):
        Blind("blind", 1, trigger={"threshold_pu": 0.01})
    with pytest.raises(ValueError, match="needs a period or trigger.min_interval_s"):
        Blind("blind", None, trigger="on_change")
    with pytest.raises(ValueError, match="'w'.*invalid trigger"):
        Watcher("w", trigger="sometimes")
    Blind("blind", None, trigger={"mode": "on_change", "min_interval_s": 1})


def test_trigger_forms_round_trip():
    for form in ("periodic", "on_change", {"threshold_pu": 0.002}, {"mode": "on_change", "min_interval_s": 2.0}):
        trigger = Trigger.model_validate(form)
        assert trigger.model_dump(mode="json") == form
    with pytest.raises(ValueError, match="needs threshold_pu"):
        Trigger.model_validate({"mode": "threshold"})
    with pytest.raises(ValueError, match="event triggers only"):
        Trigger.model_validate({"mode": "periodic", "min_interval_s": 1})


def test_controller_sections_take_a_trigger_and_leave_the_default_out():
    section = OFOSection(name="ofo", site="dc", trigger={"threshold_pu": 0.002, "min_interval_s": 2})
    assert section.trigger.threshold_pu == 0.002
    assert section.model_dump(mode="json")["trigger"] == {"threshold_pu": 0.002, "min_interval_s": 2.0}
    assert "trigger" not in NoopSection(name="noop").model_dump(mode="json")
    assert section.controller_keywords()["trigger"] is section.trigger


def test_schedules_refuse_an_event_trigger():
    events = [{"t_s": 10, "taps": {"a": 1.0}}]
    with pytest.raises(ValueError, match="fires at its own event times"):
        TapScheduleSection(name="taps", events=events, trigger="on_change")
    TapScheduleSection(name="taps", events=events)
