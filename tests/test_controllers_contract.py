"""The contract every built-in controller keeps (and user controllers should copy):

it constructs from plain arguments, declares the peers it needs with their types, runs in a
small simulation of fake peers, survives delayed/jittered/lossy links, and a reused instance
(reset by the next run) behaves exactly like a fresh one, with no state leaking between runs.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from g2gsim.controllers import (
    BatchScheduleController,
    BatchSizeChange,
    DroopStorage,
    LoadShiftConfig,
    LoadShiftController,
    Noop,
    OFOBatchController,
    OFOConfig,
    RuleBasedConfig,
    RuleBasedController,
    StorageDroopConfig,
    StorageDroopController,
    TapPosition,
    TapScheduleController,
)
from g2gsim.kernel import INSTANT, Controller, LinkSpec
from test_controllers_fakes import FakeDatacenter, FakeGrid, FakeSpec, command_rows, run, three_phase

HORIZON = 12
SPECS = [FakeSpec("m0", (8, 16, 32, 64, 128)), FakeSpec("m1", (16, 64, 256), itl_deadline_s=0.05, gpus_per_replica=4)]


def peers(variant: int) -> list[Any]:
    """Two sites on buses x and y and a grid whose voltages swing through both limits."""

    def voltages(k: int) -> np.ndarray:
        if variant == 0:
            swing = 0.07 * np.sin(0.9 * k)
            return 1.0 + swing + np.array([0.0, 0.01, -0.01, 0.005, 0.0, -0.005])
        return np.full(6, 0.935 + 0.002 * (k % 3))

    sites = []
    for name, capacity in (("dc", 300), ("dc2", 400)):
        sites.append(
            FakeDatacenter(
                name,
                SPECS,
                replicas={"m0": 20, "m1": 10},
                batch={"m0": 8 if variant else 128, "m1": 16 if variant else 256},
                itl=lambda k, b: np.array([0.04 + 0.01 * (k % 4), 0.06]),
                capacity_gpus=capacity,
                period=Fraction(1, 2),
            )
        )
    grid = FakeGrid("grid", three_phase(["x", "y"]), voltages, sites={"dc": "x", "dc2": "y"}, period=Fraction(1, 2))
    return [*sites, grid]


Factory = Callable[[LinkSpec, LinkSpec], Controller]

FACTORIES: dict[str, Factory] = {
    "noop": lambda c, m: Noop("ctl", 1, command_link=c, measurement_link=m),
    "tap_schedule": lambda c, m: TapScheduleController(
        "ctl",
        TapPosition(a=1.0125).at(Fraction(5, 2)) | TapPosition(a=1.0, b=1.00625).at(7),
        grid="grid",
        command_link=c,
        measurement_link=m,
    ),
    "batch_schedule": lambda c, m: BatchScheduleController(
        "ctl",
        {
            "m0": BatchSizeChange(32).at(2) | BatchSizeChange(64, ramp_up_rate=2).at(Fraction(13, 3)),
            "m1": BatchSizeChange(64).at(2),
        },
        datacenter="dc",
        command_link=c,
        measurement_link=m,
    ),
    "ofo": lambda c, m: OFOBatchController(
        "ctl",
        "dc",
        "grid",
        OFOConfig(voltage_dual_step_size=5.0, w_switch=0.5),
        command_link=c,
        measurement_link=m,
    ),
    "ofo_union": lambda c, m: OFOBatchController(
        "ctl",
        "dc",
        "grid",
        OFOConfig(union_feasible_sets=True, sensitivity_update_interval=3),
        period=Fraction(3, 2),
        command_link=c,
        measurement_link=m,
    ),
    "rule_based": lambda c, m: RuleBasedController(
        "ctl",
        "dc",
        "grid",
        RuleBasedConfig(step_size=50.0),
        command_link=c,
        measurement_link=m,
    ),
    "load_shift": lambda c, m: LoadShiftController(
        "ctl",
        ["dc", "dc2"],
        "grid",
        LoadShiftConfig(enabled=True),
        command_link=c,
        measurement_link=m,
    ),
    "storage_droop": lambda c, m: StorageDroopController(
        "ctl",
        "grid",
        [DroopStorage(name="bat", bus="y", rated_kw=100.0, rated_kva=120.0)],
        StorageDroopConfig(voltage_statistic="mean"),
        command_link=c,
        measurement_link=m,
    ),
}

LINKS = {
    "instant": (INSTANT, INSTANT),
    "delayed": (LinkSpec(delay_s=Fraction(1, 2), jitter_s=1, loss_probability=0.2), LinkSpec(delay_s=Fraction(3, 2))),
}


@pytest.fixture(params=sorted(FACTORIES))
def factory(request) -> Factory:
    return FACTORIES[request.param]


@pytest.mark.parametrize("links", sorted(LINKS))
def test_controller_contract(factory, links):
    command_link, measurement_link = LINKS[links]
    controller = factory(command_link, measurement_link)
    assert isinstance(controller, Controller)
    assert type(controller).__doc__  # documented, with its SPEC symbols

    # declares the peers it needs, each of a type the fakes satisfy
    first_peers = peers(0)
    by_name = {p.name: p for p in first_peers}
    for name, required in controller.dependencies().items():
        assert isinstance(by_name[name], required)

    # runs; a rerun, and a run after a different scenario, match a fresh instance exactly
    a1 = run([*first_peers, controller], HORIZON, seed=3)
    run([*peers(1), controller], HORIZON, seed=5)
    a2 = run([*first_peers, controller], HORIZON, seed=3)
    fresh = run([*peers(0), factory(command_link, measurement_link)], HORIZON, seed=3)
    assert command_rows(a1) == command_rows(a2) == command_rows(fresh)
    assert a1.events.equals(a2.events) and a1.events.equals(fresh.events)
    for key, table in a1.tables.items():
        assert table.equals(a2.tables[key]) and table.equals(fresh.tables[key]), key


def test_every_acting_controller_acts_in_the_contract_scenario():
    """Guard against a vacuous contract: all but Noop send commands with instant links."""
    for name, factory in FACTORIES.items():
        result = run([*peers(0), factory(INSTANT, INSTANT)], HORIZON)
        assert result.commands.empty == (name == "noop"), name


def test_missing_peer_is_an_assembly_error():
    from g2gsim.kernel import AssemblyError

    with pytest.raises(AssemblyError, match="needs component 'dc'"):
        run([peers(0)[2], OFOBatchController("ctl", "dc", "grid")], 2)
    with pytest.raises(AssemblyError, match="needs a Grid"):
        run([*peers(0)[:2], OFOBatchController("ctl", "dc", "dc2")], 2)
