"""The contract every registered controller keeps (and user controllers should copy).

The test iterates the controller registry: every built-in ``type`` has example sections
here (a new built-in without one fails), is built from its scenario section through its
registered builder, declares the peers it needs with their types, runs in a small
simulation of peers, survives delayed/jittered/lossy links, and a reused instance (reset by
the next run) behaves exactly like a fresh one, with no state leaking between runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import g2gsim.controllers  # noqa: F401  (registers the built-in kinds)
from g2gsim.controllers import Budget, OFOBatchController, ScheduledBudget
from g2gsim.data import open_data_source
from g2gsim.data.spec import PAPER_MODELS
from g2gsim.datacenter.config import DatacenterConfig, ModelDeployment
from g2gsim.datacenter.offline import OfflineDatacenter
from g2gsim.grid.config import StorageSpec
from g2gsim.kernel import INSTANT, Controller, LinkSpec
from g2gsim.kernel.registry import kinds, lookup
from g2gsim.testing import FakeSite, FakeSpec, ScriptedGrid, command_rows, run_components, three_phase

HORIZON = 12
SPECS = [FakeSpec("m0", (8, 16, 32, 64, 128)), FakeSpec("m1", (16, 64, 256), itl_deadline_s=0.05, gpus_per_replica=4)]
DATA = open_data_source(None)
BUDGET_LABELS = ("Llama-3.1-8B", "Qwen3-30B-A3B")


def _voltages(variant: int):
    def voltages(k: int) -> np.ndarray:
        if variant == 0:
            swing = 0.07 * np.sin(0.9 * k)
            return 1.0 + swing + np.array([0.0, 0.01, -0.01, 0.005, 0.0, -0.005])
        return np.full(6, 0.935 + 0.002 * (k % 3))

    return voltages


def _grid(variant: int) -> ScriptedGrid:
    return ScriptedGrid("grid", three_phase(["x", "y"]), _voltages(variant), sites={"dc": "x", "dc2": "y"}, period=0.5)


def fake_peers(variant: int) -> list[Any]:
    """Two scripted sites on buses x and y and a grid whose voltages swing through both limits."""
    sites = []
    for name, capacity in (("dc", 300), ("dc2", 400)):
        sites.append(
            FakeSite(
                name,
                SPECS,
                replicas={"m0": 20, "m1": 10},
                batch={"m0": 8 if variant else 128, "m1": 16 if variant else 256},
                itl=lambda k, b: np.array([0.04 + 0.01 * (k % 4), 0.06]),
                capacity_gpus=capacity,
                period=Fraction(1, 2),
            )
        )
    return [*sites, _grid(variant)]


def budget_peers(variant: int) -> list[Any]:
    """A trace-driven site of about 75 kW (it applies GPU caps), the grid, and a budget
    source "b" whose budget falls below the site's power."""
    replicas = (60, 30) if variant == 0 else (40, 50)
    deployments = tuple(
        ModelDeployment(spec=PAPER_MODELS[label], initial_batch=128, replicas=n)
        for label, n in zip(BUDGET_LABELS, replicas)
    )
    gpus = sum(n * PAPER_MODELS[label].gpus_per_replica for label, n in zip(BUDGET_LABELS, replicas))
    site = OfflineDatacenter("dc", DatacenterConfig(deployments=deployments, capacity_gpus=gpus + 16), DATA)
    levels = (Budget(80).at(0) | Budget(55).at(5)) if variant == 0 else Budget(65).at(0)
    return [site, _grid(variant), ScheduledBudget("b", "dc", levels)]


#: Example sections per registered type: (world, section table without name and type).
EXAMPLES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "noop": [("fake", {"period_s": 1})],
    "tap_schedule": [
        ("fake", {"events": [{"t_s": 2.5, "taps": {"a": 1.0125}}, {"t_s": 7, "taps": {"a": 1.0, "b": 1.00625}}]})
    ],
    "batch_schedule": [
        (
            "fake",
            {
                "site": "dc",
                "events": [
                    {"t_s": 2, "model": "m0", "batch": 32},
                    {"t_s": 4.25, "model": "m0", "batch": 64, "ramp_up_rate": 2},
                    {"t_s": 2, "model": "m1", "batch": 64},
                ],
            },
        )
    ],
    "ofo": [
        ("fake", {"site": "dc", "params": {"voltage_dual_step_size": 5.0, "w_switch": 0.5}}),
        (
            "fake",
            {"site": "dc", "period_s": 1.5, "params": {"union_feasible_sets": True, "sensitivity_update_interval": 3}},
        ),
    ],
    "rule_based": [("fake", {"site": "dc", "params": {"step_size": 50.0}})],
    "load_shift": [("fake", {"sites": ["dc", "dc2"], "params": {"enabled": True}})],
    "storage_droop": [("fake", {"storage": ["bat"], "params": {"voltage_statistic": "mean"}})],
    "budget": [
        ("budget", {"site": "dc", "events": [{"t_s": 0, "kw": 80.0}, {"t_s": 4, "kw": 60.0}]}),
        ("budget", {"site": "dc", "kw": 70.0}),
    ],
    "grid_operator": [
        ("budget", {"site": "dc", "normal_kw": 80.0, "curtail_kw": 55.0, "v_trigger": 0.96, "hold_s": 2})
    ],
    "power_budget": [("budget", {"site": "dc", "budget": "b"})],
    "proportional_curtailment": [("budget", {"site": "dc", "budget": "b", "margin": 0.05})],
}
WORLDS = {"fake": fake_peers, "budget": budget_peers}
#: Types that publish (budget sources) or do nothing, instead of sending commands.
SILENT = {"noop", "budget", "grid_operator"}

CASES = [(kind, i) for kind, examples in sorted(EXAMPLES.items()) for i in range(len(examples))]
LINKS = {
    "instant": (INSTANT, INSTANT),
    "delayed": (LinkSpec(delay_s=Fraction(1, 2), jitter_s=1, loss_probability=0.2), LinkSpec(delay_s=Fraction(3, 2))),
}


@dataclass
class Context:
    """A build context (what a controller builder may ask of its scenario) for these worlds."""

    v_min: float = 0.95
    v_max: float = 1.05
    storage: dict[str, StorageSpec] = field(
        default_factory=lambda: {
            "bat": StorageSpec(name="bat", bus="y", rated_kw=100.0, rated_kva=120.0, rated_kwh=200.0)
        }
    )
    folder: Path | None = None
    live: frozenset[str] = frozenset()

    def site_is_live(self, site: str) -> bool:
        return site in self.live


def build(kind: str, index: int, command_link: LinkSpec, measurement_link: LinkSpec) -> Controller:
    """The controller of an example section, built through the registry."""
    _world, table = EXAMPLES[kind][index]
    raw = {"name": "ctl", "type": kind, **table}
    if kind not in ("budget", "grid_operator"):  # budget sources publish; they have no links
        raw = {**raw, "command_link": command_link.model_dump(), "measurement_link": measurement_link.model_dump()}
    registered = lookup("controller", kind)
    controller = registered.build(registered.section.model_validate(raw), Context())
    assert isinstance(controller, Controller)
    return controller


def test_every_builtin_controller_has_an_example() -> None:
    builtin = {t for t, k in kinds("controller").items() if k.section.__module__.startswith("g2gsim.controllers.")}
    assert builtin == set(EXAMPLES)


@pytest.mark.parametrize("links", sorted(LINKS))
@pytest.mark.parametrize(("kind", "index"), CASES)
def test_controller_contract(kind: str, index: int, links: str) -> None:
    command_link, measurement_link = LINKS[links]
    peers = WORLDS[EXAMPLES[kind][index][0]]
    controller = build(kind, index, command_link, measurement_link)
    assert type(controller).__doc__  # documented, with its SPEC symbols
    section = lookup("controller", kind).section
    assert section.__doc__ and all(f.description for f in section.model_fields.values()), "every field documented"

    # declares the peers it needs, each of a type the peers satisfy
    first_peers = peers(0)
    by_name = {p.name: p for p in first_peers}
    for name, required in controller.dependencies().items():
        assert isinstance(by_name[name], required)

    # runs; a rerun, and a run after a different scenario, match a fresh instance exactly
    a1 = run_components([*first_peers, controller], HORIZON, seed=3)
    run_components([*peers(1), controller], HORIZON, seed=5)
    a2 = run_components([*first_peers, controller], HORIZON, seed=3)
    fresh = run_components([*peers(0), build(kind, index, command_link, measurement_link)], HORIZON, seed=3)
    assert command_rows(a1) == command_rows(a2) == command_rows(fresh)
    assert a1.events.equals(a2.events) and a1.events.equals(fresh.events)
    for key, table in a1.tables.items():
        assert table.equals(a2.tables[key]) and table.equals(fresh.tables[key]), key


@pytest.mark.parametrize(("kind", "index"), CASES)
def test_every_controller_acts_in_the_contract_scenario(kind: str, index: int) -> None:
    """Guard against a vacuous contract: acting controllers send commands with instant links,
    budget sources publish budgets, Noop does nothing."""
    result = run_components([*WORLDS[EXAMPLES[kind][index][0]](0), build(kind, index, INSTANT, INSTANT)], HORIZON)
    own = result.commands[result.commands["source"] == "ctl"]
    if kind in SILENT:
        assert own.empty, kind
    else:
        assert not own.empty, kind
    if kind in ("budget", "grid_operator"):
        assert not result.tables["ctl/budget"].empty


def test_missing_peer_is_an_assembly_error():
    from g2gsim.kernel import AssemblyError

    with pytest.raises(AssemblyError, match="needs component 'dc'"):
        run_components([fake_peers(0)[2], OFOBatchController("ctl", "dc", "grid")], 2)
    with pytest.raises(AssemblyError, match="needs a Grid"):
        run_components([*fake_peers(0)[:2], OFOBatchController("ctl", "dc", "dc2")], 2)
