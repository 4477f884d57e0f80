"""Scenarios: the TOML schema, the bundled presets, building components and running them.

The usual entry points for analysis scripts::

    from g2gsim.scenarios import load_scenario, run_scenario
    run = run_scenario(load_scenario("ieee13_ofo_notap").with_overrides(horizon_s=600))
"""

from g2gsim.scenarios.build import BuiltScenario, build_simulation
from g2gsim.scenarios.library import bundled_scenarios, load_scenario, resolve_scenario
from g2gsim.scenarios.model import Scenario, ScenarioError
from g2gsim.scenarios.runner import RunFailed, ScenarioRun, run_scenario

__all__ = [
    "BuiltScenario",
    "RunFailed",
    "Scenario",
    "ScenarioError",
    "ScenarioRun",
    "build_simulation",
    "bundled_scenarios",
    "load_scenario",
    "resolve_scenario",
    "run_scenario",
]
