"""A grid's observation layout is known before any run, and knowing it early changes nothing.

Asking for :attr:`OpenDSSGrid.voltage_index` (or the regulators) before a run compiles and
attaches the circuit into the grid's engine; the first run continues from that circuit
(one compile in all) and gives bit-identical results to a run that never asked.
"""

from __future__ import annotations

import pandas as pd
import pytest

from g2gsim.grid.engine import DSSEngine
from g2gsim.grid.opendss import OpenDSSGrid
from g2gsim.kernel.results import RunResult
from g2gsim.scenarios import Scenario, build_simulation, bundled_scenarios, load_scenario
from g2gsim.studies.screening import linearized_build

HORIZON_S = 5.0


def presets() -> list[str]:
    return sorted(name for name in bundled_scenarios() if not load_scenario(name).is_live)


def short(name: str, horizon_s: float = HORIZON_S) -> Scenario:
    return load_scenario(name).with_overrides(horizon_s=horizon_s)


def assert_same_run(actual: RunResult, expected: RunResult) -> None:
    assert sorted(actual.tables) == sorted(expected.tables)
    for key, frame in expected.tables.items():
        pd.testing.assert_frame_equal(actual.tables[key], frame, check_exact=True, obj=key)
    pd.testing.assert_frame_equal(actual.events, expected.events, check_exact=True, obj="events")
    pd.testing.assert_frame_equal(actual.commands, expected.commands, check_exact=True, obj="commands")


def test_the_layout_is_known_right_after_construction() -> None:
    built = build_simulation(short("ieee13_ofo_tapchange"))
    grid = built.grid
    assert isinstance(grid, OpenDSSGrid)
    index = grid.voltage_index
    assert len(index) == 32  # IEEE 13 without sourcebus, 650 and rg60 (SPEC 4.4)
    assert {"rg60", "650", "sourcebus"}.isdisjoint(index.buses)
    assert [r.control for r in grid.regulators] == ["creg1a", "creg1b", "creg1c"]
    assert dict(grid.sites) == {"dc": "671"}
    assert grid.engine.n_compiles == 1 and grid.voltage_index is index
    result = built.simulation.run()
    assert grid.engine.n_compiles == 1  # the run continued from the circuit compiled for the layout
    assert grid.voltage_index is index
    assert list(result.table("grid/voltages").columns[1:]) == index.labels()


@pytest.mark.parametrize("name", presets())
def test_asking_early_gives_bit_identical_runs(name: str) -> None:
    plain = build_simulation(short(name)).simulation.run()
    built = build_simulation(short(name))
    grid = built.grid
    assert len(grid.voltage_index) > 0 and grid.regulators is not None
    assert_same_run(built.simulation.run(), plain)
    assert grid.engine.n_compiles == 1
    assert_same_run(built.simulation.run(), plain)  # a second run compiles again, as always
    assert grid.engine.n_compiles == 2


def test_asking_early_works_with_circuit_reuse_and_the_linearised_grid() -> None:
    scenario = short("ieee13_ofo_tapchange")
    plain = build_simulation(scenario).simulation.run()
    engine = DSSEngine()
    for expected_compiles in (1, 1):  # the second grid restores the first one's snapshot
        built = build_simulation(scenario)
        built.grid.use_engine(engine, reuse_circuit=True)
        assert len(built.grid.voltage_index) == 32
        assert_same_run(built.simulation.run(), plain)
        built.grid.release()
        assert engine.n_compiles == expected_compiles
    linear_plain = linearized_build(scenario).simulation.run()
    linear = linearized_build(scenario)
    assert len(linear.grid.voltage_index) == 32
    assert_same_run(linear.simulation.run(), linear_plain)


def test_a_circuit_prepared_early_is_not_used_once_another_grid_ran_on_its_engine() -> None:
    scenario = short("ieee13_ofo_tapchange")
    plain = build_simulation(scenario).simulation.run()
    engine = DSSEngine()
    early = build_simulation(scenario)
    early.grid.use_engine(engine)
    assert len(early.grid.voltage_index) == 32
    other = build_simulation(short("ieee13_baseline_notap"))
    other.grid.use_engine(engine)
    other.simulation.run()
    other.grid.release()
    compiles = engine.n_compiles
    assert_same_run(early.simulation.run(), plain)
    assert engine.n_compiles == compiles + 1  # compiled again: the prepared circuit was stale


def test_a_new_engine_drops_the_early_circuit_but_keeps_the_layout() -> None:
    scenario = short("ieee13_ofo_tapchange")
    plain = build_simulation(scenario).simulation.run()
    built = build_simulation(scenario)
    index = built.grid.voltage_index
    engine = DSSEngine()
    built.grid.use_engine(engine)
    assert_same_run(built.simulation.run(), plain)
    assert engine.n_compiles == 1 and built.grid.voltage_index is index
