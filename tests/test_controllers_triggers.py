"""Every built-in feedback controller runs event-triggered in its preset: on change (woken by
what it reads) or on a voltage threshold, never more often than its period, and a controller
that has nothing to watch refuses a threshold trigger."""

from __future__ import annotations

from typing import Any

import pytest

from g2gsim.scenarios import Scenario, build_simulation, load_scenario

HORIZON_S = 60.0
# (preset, controller type): every built-in feedback controller in a preset that uses it
CASES = [
    ("ieee13_ofo_notap", "ofo"),
    ("ieee13_rule_notap", "rule_based"),
    ("ieee123_loadshift", "load_shift"),
    ("ieee123_storage_qv", "storage_droop"),
    ("ieee13_power_budget", "power_budget"),
]


def _triggered(name: str, kind: str, trigger: Any) -> Scenario:
    data = load_scenario(name).with_overrides(horizon_s=HORIZON_S).to_dict()
    for controller in data["controllers"]:
        if controller["type"] == kind:
            controller["trigger"] = trigger
    return Scenario.from_dict(data, source=f"{name} ({kind} triggered)")


def _steps(scenario: Scenario, kind: str) -> tuple[int, int]:
    """(steps taken by the controllers of `kind`, steps they take when periodic)."""
    names = {c.name for c in scenario.controllers if c.type == kind}
    built = build_simulation(scenario)
    counted: list[int] = []
    for component in built.simulation.components:
        if component.name in names:
            original = component.step

            def step(tick: int, original: Any = original) -> None:
                counted.append(tick)
                original(tick)

            component.step = step  # type: ignore[method-assign]
    built.simulation.run()
    return len(counted), int(HORIZON_S) * len(names)


@pytest.mark.parametrize(("name", "kind"), CASES)
@pytest.mark.parametrize("trigger", ["on_change", {"threshold_pu": 0.002}])
def test_every_feedback_controller_runs_event_triggered(name: str, kind: str, trigger: Any) -> None:
    if kind == "power_budget" and isinstance(trigger, dict):
        with pytest.raises(ValueError, match="watches no voltages"):
            build_simulation(_triggered(name, kind, trigger))
        return
    steps, periodic = _steps(_triggered(name, kind, trigger), kind)
    assert 0 < steps <= periodic


def test_the_event_preset_steps_and_solves_less_than_periodic_ofo() -> None:
    event = load_scenario("ieee13_ofo_event").with_overrides(horizon_s=1200)
    periodic = event.with_overrides(**{"controllers.0.trigger": "periodic", "grid.solve": "every_period"})
    results = {}
    for label, scenario in (("event", event), ("periodic", periodic)):
        built = build_simulation(scenario)
        results[label] = built.simulation.run().meta["summary"]
    assert results["periodic"]["ofo"]["steps"] == 1200 and results["periodic"]["grid"]["n_skipped_solves"] == 0
    assert results["event"]["ofo"]["steps"] < 1200
    assert results["event"]["grid"]["n_solves"] < results["periodic"]["grid"]["n_solves"] / 2
