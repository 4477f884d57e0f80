"""Scenarios as episodes: the agent's site, the controllers it replaces, the control instants,
and the voltage penalty of a reference run at those instants."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from g2gsim.controllers.base import ControllerSection
from g2gsim.controllers.ofo import OFOSection
from g2gsim.controllers.rule_based import RuleBasedSection
from g2gsim.gym.reward import voltage_penalty
from g2gsim.kernel.links import LinkSpec
from g2gsim.kernel.results import RunResult
from g2gsim.kernel.simulation import RunHandle, Simulation
from g2gsim.kernel.time import TimeLike, as_period
from g2gsim.scenarios.build import BuiltScenario, build_simulation
from g2gsim.scenarios.model import Scenario, ScenarioError

__all__ = [
    "ControlClock",
    "PenaltyTrace",
    "agent_site",
    "run_with",
    "start_stepped",
    "without_site_control",
]

#: Reference controllers an evaluation or a screening can put on the agent's site.
REFERENCE_CONTROLLERS = ("baseline", "rule_based", "ofo")


def agent_site(scenario: Scenario, site: str | None) -> str:
    """The site the agent controls: `site`, or the scenario's only one."""
    names = [s.name for s in scenario.sites]
    if site is None:
        if len(names) != 1:
            raise ScenarioError(f"scenario {scenario.name!r} has {len(names)} sites {names}: choose one with site=")
        return names[0]
    if site not in names:
        raise ScenarioError(f"scenario {scenario.name!r} has no site {site!r}; sites: {names}")
    return site


def _names_site(section: ControllerSection, site: str) -> bool:
    return site in section.referenced_sites()


def without_site_control(scenario: Scenario, site: str, keep: Sequence[str] = ()) -> Scenario:
    """The scenario without the controllers that name `site` (but those in `keep`): what the
    agent replaces. Tap schedules and controllers of other sites stay."""
    kept = [c for c in scenario.controllers if c.name in keep or not _names_site(c, site)]
    if len(kept) == len(scenario.controllers):
        return scenario
    return scenario.model_copy(update={"controllers": tuple(kept)})


def _free_name(scenario: Scenario, name: str) -> str:
    taken = {scenario.grid.name, *(s.name for s in scenario.sites), *(c.name for c in scenario.controllers)}
    candidate, k = name, 1
    while candidate in taken:
        k += 1
        candidate = f"{name}{k}"
    return candidate


def run_with(scenario: Scenario, controller: str, site: str, *, original: Scenario | None = None) -> Scenario:
    """The scenario with `site` under a reference controller: "baseline" (none), "rule_based"
    or "ofo" (the OFO section `original` had for the site, else OFO with its defaults)."""
    if controller not in REFERENCE_CONTROLLERS:
        raise ValueError(f"reference controller must be one of {REFERENCE_CONTROLLERS}, got {controller!r}")
    bare = without_site_control(scenario, site)
    if controller == "baseline":
        return bare
    grid = scenario.grid.name
    section: ControllerSection
    if controller == "rule_based":
        section = RuleBasedSection(name=_free_name(bare, "rule"), site=site, grid=grid)
    else:
        own = [c for c in (original or scenario).controllers if isinstance(c, OFOSection) and c.site == site]
        section = own[0] if own else OFOSection(name=_free_name(bare, "ofo"), site=site, grid=grid)
    return bare.model_copy(update={"controllers": (*bare.controllers, section)})


@dataclass(frozen=True)
class ControlClock:
    """The control instants of an episode: t_i = min((i + 1) period, horizon), i = 0 .. m - 1."""

    period: Fraction
    horizon: Fraction

    @classmethod
    def of(cls, period_s: TimeLike, horizon_s: TimeLike) -> ControlClock:
        period = as_period(period_s, name="control_period_s")
        horizon = as_period(horizon_s, name="horizon_s")
        if horizon <= period:
            raise ValueError(f"horizon_s ({horizon} s) must be longer than control_period_s ({period} s)")
        return cls(period, horizon)

    @property
    def instants(self) -> int:
        """m: the first observation plus one per step."""
        return math.ceil(self.horizon / self.period)

    @property
    def steps(self) -> int:
        """Steps of an episode (m - 1)."""
        return self.instants - 1


def start_stepped(
    built: BuiltScenario, clock: ControlClock, links: Mapping[str, LinkSpec] | None = None
) -> tuple[Simulation, RunHandle]:
    """A simulation of the built scenario whose tick also divides the control period and the
    agent's link, started and not yet stepped."""
    base = built.simulation
    extra = [clock.period, *base.extra_times]
    for spec in (links or {}).values():
        extra += spec.times()
    simulation = Simulation(
        base.components,
        clock.horizon,
        seed=base.seed,
        extra_times=extra,
        metadata=base.metadata,
        realtime_factor=base.realtime_factor,
    )
    return simulation, simulation.start(links=links)


@dataclass
class PenaltyTrace:
    """The voltage penalty of a run at each control instant, and the run's results."""

    penalty: np.ndarray
    result: RunResult
    built: BuiltScenario


def penalty_trace(scenario: Scenario, clock: ControlClock, *, v_min: float, v_max: float) -> PenaltyTrace:
    """Run `scenario` stepping through the control instants and record the voltage penalty
    (:func:`~g2gsim.gym.reward.voltage_penalty`) of the newest grid state at each."""
    built = build_simulation(scenario.with_overrides(horizon_s=clock.horizon))
    _, handle = start_stepped(built, clock)
    box = handle.mailbox(scenario.grid.name, "state")
    penalty = np.zeros(clock.instants)
    for i in range(clock.instants):
        handle.step_until(min((i + 1) * clock.period, clock.horizon))
        penalty[i] = voltage_penalty(np.asarray(box.value.voltages, dtype=float), v_min, v_max)
    return PenaltyTrace(penalty, handle.result(), built)
