"""Screening reuses one compiled circuit per worker engine.

Every run here is a real OpenDSS power flow. A run through the reuse path must give exactly
the tables of a run on a freshly compiled circuit (bit for bit: voltages, taps, batteries,
site power, datacenter states, events), must not recompile when the structure is unchanged,
and must recompile when it changes.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd
import pytest

from g2gsim.grid.circuit import Attachments, Circuit
from g2gsim.grid.config import GridConfig, SiteAttachment, StorageSpec
from g2gsim.grid.engine import DSSEngine
from g2gsim.grid.feeders import load_feeder
from g2gsim.grid.opendss import OpenDSSGrid
from g2gsim.grid.reuse import CircuitSnapshot, circuit_structure_key, snapshot_of
from g2gsim.kernel.results import RunResult
from g2gsim.scenarios import Scenario, build_simulation, load_scenario
from g2gsim.scenarios.runner import summarize
from g2gsim.studies import apply_parameters
from g2gsim.studies.screening import run_screening, screening_stats, worker_engine

#: .dss feeders of these tests sit in their own folders and the reference folder, trusted here.
pytestmark = pytest.mark.usefixtures("trusted_feeder_dirs")

HORIZON_S = 20.0
NOTHING_ATTACHED = Attachments(sites=(), generators=(), loads=(), storage=())


def scenario(name: str, params: dict[str, Any] | None = None, horizon_s: float = HORIZON_S) -> Scenario:
    base = load_scenario(name).with_overrides(horizon_s=horizon_s)
    return apply_parameters(base, params) if params else base


#: The presets under test, shortened, with their tap changes moved inside the horizon.
CASES = {
    "ieee13_ofo_tapchange": {"controllers.0.events.0.t_s": 5.0, "controllers.0.events.1.t_s": 12.0},
    "ieee13_baseline_notap": {},
    "ieee123_storage_qv": {"controllers.0.events.0.t_s": 5.0},
    "ieee123_storage_pv": {},  # batteries charge and discharge: their energy moves
    "ieee34_ofo_tapchange": {"controllers.0.events.0.t_s": 5.0},
}


def run(scn: Scenario, engine: DSSEngine | None = None, *, reuse: bool = False) -> tuple[RunResult, OpenDSSGrid]:
    """One run, as run_screening does it: on `engine` (a new one if None), reusing if asked."""
    built = build_simulation(scn)
    grid = built.grid
    if engine is not None:
        grid.use_engine(engine)
    grid.reuse_circuit = reuse
    try:
        result = built.simulation.run()
        result.meta["metrics"] = summarize(built, result, 0.0)
    finally:
        grid.release()
    return result, grid


def assert_same_run(actual: RunResult, expected: RunResult) -> None:
    """Every table, event and command bit-identical; the headline metrics equal."""
    assert sorted(actual.tables) == sorted(expected.tables)
    for key, frame in expected.tables.items():
        pd.testing.assert_frame_equal(actual.tables[key], frame, check_exact=True, obj=key)
    pd.testing.assert_frame_equal(actual.events, expected.events, check_exact=True, obj="events")
    pd.testing.assert_frame_equal(actual.commands, expected.commands, check_exact=True, obj="commands")
    assert actual.meta["metrics"] == expected.meta["metrics"]


@pytest.mark.parametrize("name", list(CASES))
def test_reused_circuit_runs_are_bit_identical_to_fresh_ones(name: str) -> None:
    scn = scenario(name, CASES[name])
    fresh, fresh_grid = run(scn)
    assert not fresh_grid.circuit_reused and fresh_grid.engine.n_compiles == 1
    engine = DSSEngine()
    first, grid = run(scn, engine, reuse=True)
    assert not grid.circuit_reused and engine.n_compiles == 1  # nothing to reuse yet
    second, grid = run(scn, engine, reuse=True)
    assert grid.circuit_reused and engine.n_compiles == 1  # no recompile
    third, grid = run(scn, engine, reuse=True)
    assert grid.circuit_reused and engine.n_compiles == 1
    for reused in (first, second, third):
        assert_same_run(reused, fresh)
    # the runs really change what the snapshot must restore
    taps = fresh.table("grid/taps").drop(columns="time_s")
    if "tapchange" in name or name == "ieee123_storage_qv":
        assert (taps.iloc[-1] != taps.iloc[0]).any()
    if name == "ieee123_storage_pv":
        kwh = fresh.table("grid/storage").groupby("storage")["kwh"]
        assert (kwh.max() - kwh.min() > 1e-3).any()


def test_same_structure_other_run_values_reuse_and_a_b_a_matches_fresh_runs() -> None:
    a = scenario("ieee13_ofo_tapchange", CASES["ieee13_ofo_tapchange"])
    # same circuit, other run values: initial taps, seed, datacenter and controller settings
    same = apply_parameters(
        a,
        {
            "grid.initial_tap_steps.creg1a": 8,
            "seed": 3,
            "sites.0.base_kw_per_phase": 900.0,
            "controllers.1.params.primal_step_size": 0.3,
        },
    )
    untapped = apply_parameters(a, {"grid.initial_tap_steps": {}})  # starts from the feeder's taps
    other = apply_parameters(a, {"sites.0.bus": "675"})  # the site moves: another structure
    expected = {"a": run(a)[0], "same": run(same)[0], "untapped": run(untapped)[0], "other": run(other)[0]}
    engine = DSSEngine()
    compiles = []
    runs = [("a", a), ("same", same), ("a", a), ("untapped", untapped), ("other", other), ("a", a), ("a", a)]
    for label, scn in runs:
        result, grid = run(scn, engine, reuse=True)
        compiles.append((label, grid.circuit_reused, engine.n_compiles))
        assert_same_run(result, expected[label])
    assert compiles == [
        ("a", False, 1),
        ("same", True, 1),
        ("a", True, 1),
        ("untapped", True, 1),  # the taps A moved mid-run are back at the feeder's own
        ("other", False, 2),  # a different structure recompiles ...
        ("a", False, 3),  # ... and replaces the snapshot, so A compiles again
        ("a", True, 3),
    ]


def test_regulator_self_control_is_restored_too() -> None:
    """OpenDSS's own regulator control: taps (no initial taps given: the feeder's own),
    control state and solution time are put back."""
    scn = scenario(
        "ieee13_baseline_notap",
        {
            "grid.regulator_self_control": True,
            "grid.period_s": 1.0,
            "sites.0.period_s": 1.0,
            "grid.initial_tap_steps": {},
        },
        horizon_s=40.0,
    )
    fresh, _ = run(scn)
    taps = fresh.table("grid/taps").drop(columns="time_s")
    assert (taps.iloc[-1] > taps.iloc[0]).all()  # the regulators moved on their own
    engine = DSSEngine()
    for expected_reused in (False, True, True):
        result, grid = run(scn, engine, reuse=True)
        assert grid.circuit_reused is expected_reused
        assert_same_run(result, fresh)
    assert engine.n_compiles == 1


def test_linearised_screening_grid_reuses_too() -> None:
    from g2gsim.studies.screening import linearized_build

    scn = scenario("ieee13_ofo_tapchange", CASES["ieee13_ofo_tapchange"], horizon_s=8.0)
    fresh = linearized_build(scn).simulation.run()
    engine = DSSEngine()
    for expected_reused in (False, True):
        built = linearized_build(scn)
        built.grid.use_engine(engine, reuse_circuit=True)
        result = built.simulation.run()
        built.grid.release()
        assert built.grid.circuit_reused is expected_reused
        for key, frame in fresh.tables.items():
            pd.testing.assert_frame_equal(result.tables[key], frame, check_exact=True, obj=key)


def test_default_grid_never_reuses() -> None:
    scn = scenario("ieee13_baseline_notap", horizon_s=1.0)
    engine = DSSEngine()
    for n in (1, 2):
        _, grid = run(scn, engine)
        assert grid.reuse_circuit is False and not grid.circuit_reused and engine.n_compiles == n
        assert snapshot_of(engine) is None


def test_run_screening_reuses_the_workers_compiled_circuit() -> None:
    scn = scenario("ieee34_ofo_tapchange", CASES["ieee34_ofo_tapchange"], horizon_s=8.0)
    fresh = run_screening(scn, reuse_engine=False)
    built = build_simulation(scn)
    engine = worker_engine("ieee34", circuit_structure_key(built.grid.feeder, built.grid.config))
    run_screening(scn)  # compiles unless an earlier test left this structure in the engine
    before, stats = engine.n_compiles, screening_stats()
    again = run_screening(scn)
    assert engine.n_compiles == before
    assert screening_stats()["circuits_reused"] == stats["circuits_reused"] + 1
    assert screening_stats()["circuits_compiled"] == stats["circuits_compiled"]
    drop = {"wall_s"}
    assert {k: v for k, v in again.items() if k not in drop} == {k: v for k, v in fresh.items() if k not in drop}
    plain = worker_engine("ieee34")  # engine reuse alone: one engine per feeder, compiling every run
    compiled = plain.n_compiles
    run_screening(scn, reuse_circuit=False)
    run_screening(scn, reuse_circuit=False)
    assert plain.n_compiles == compiled + 2 and engine.n_compiles == before


# -- the structure key and what cannot be reused -------------------------------------------------
def test_structure_key_holds_what_defines_elements_only() -> None:
    feeder = load_feeder("ieee13")
    base = GridConfig(feeder="ieee13", source_pu=1.0, sites=(SiteAttachment(site="dc", bus="671"),))
    key = circuit_structure_key(feeder, base)
    same = [
        base.model_copy(update={"initial_taps": {"creg1a": 1.05}}),
        base.model_copy(update={"excluded_buses": ("650",), "coupling": "mean", "tap_limits": "allow"}),
        base.model_copy(update={"sites": (SiteAttachment(site="dc", bus="671", power_factor=0.9),)}),
    ]
    for config in same:
        assert circuit_structure_key(feeder, config) == key
    battery = StorageSpec(name="b", bus="671", rated_kw=100.0, rated_kwh=200.0)
    different = [
        base.model_copy(update={"source_pu": 1.02}),
        base.model_copy(update={"sites": (SiteAttachment(site="dc", bus="675"),)}),
        base.model_copy(update={"sites": (SiteAttachment(site="dc", bus="671", connection="delta"),)}),
        base.model_copy(update={"storage": (battery,)}),
        base.model_copy(update={"period_s": 1.0}),
        base.model_copy(update={"regulator_self_control": True}),
    ]
    keys = {circuit_structure_key(feeder, config) for config in different}
    assert key not in keys and len(keys) == len(different)
    with_battery = base.model_copy(update={"storage": (battery,)})
    fuller = base.model_copy(update={"storage": (battery.model_copy(update={"initial_soc": 0.8}),)})
    assert circuit_structure_key(feeder, with_battery) != circuit_structure_key(feeder, fuller)
    assert circuit_structure_key(load_feeder("ieee34"), base) != key


TINY = """Clear
New Circuit.tiny basekv=12.47 bus1=src pu=1.0
New Line.l1 bus1=src bus2=a phases=3 r1=0.1 x1=0.2 r0=0.3 x0=0.6 length=1
New Load.ld bus1=a phases=3 kV=12.47 kW=500 kvar=100
Set VoltageBases=[12.47]
CalcVoltageBases
"""


def test_user_feeder_key_follows_the_file_and_foreign_state_is_never_reused(tmp_path: Any) -> None:
    master = tmp_path / "tiny.dss"
    master.write_text(TINY)
    config = GridConfig(feeder=str(master))
    key = circuit_structure_key(load_feeder(master), config)
    assert circuit_structure_key(load_feeder(master), config) == key
    master.write_text(TINY.replace("kW=500", "kW=600"))
    assert circuit_structure_key(load_feeder(master), config) != key
    key = circuit_structure_key(load_feeder(master), config)
    (tmp_path / "more.dss").write_text("New Load.more bus1=a phases=3 kV=12.47 kW=5\n")  # a file it could redirect
    assert circuit_structure_key(load_feeder(master), config) != key

    engine = DSSEngine()

    def snapshot(text: str) -> CircuitSnapshot:
        master.write_text(text)
        engine.compile_feeder(load_feeder(master))
        return CircuitSnapshot.take(key, Circuit(engine, "tiny"), NOTHING_ATTACHED)

    plain = snapshot(TINY)
    assert plain.unrestorable is None and plain.still_describes(Circuit(engine, "tiny"))
    fused = snapshot(TINY + "New Fuse.f1 MonitoredObj=Line.l1 RatedCurrent=10\n")
    assert fused.unrestorable is not None and "fuse.f1" in fused.unrestorable.lower()
    battery = snapshot(TINY + "New Storage.own bus1=a phases=3 kV=12.47 kWRated=100 kWhRated=200\n")
    assert battery.unrestorable is not None and "storage.own" in battery.unrestorable.lower()
    engine.run("New Load.extra bus1=a phases=3 kV=12.47 kW=1")
    assert not battery.still_describes(Circuit(engine, "tiny"))


def test_restore_puts_back_loads_taps_capacitors_source_and_time() -> None:
    """The snapshot restores each value a run (or a user) changes, through the element API."""
    engine = DSSEngine()
    engine.compile_feeder(load_feeder("ieee34"))
    engine.run("New Generator.gen bus1=848 phases=3 kV=24.9 kW=100 kvar=10")
    circuit = Circuit(engine, "ieee34")

    def take() -> CircuitSnapshot:
        return CircuitSnapshot.take(("k",), circuit, NOTHING_ATTACHED)

    snap = take()
    assert snap.unrestorable is None and snap.capacitors and snap.native_generators and snap.taps
    dss = engine.dss
    dss.Loads.Idx(1)
    dss.Loads.kW(1234.5)
    dss.Loads.kvar(-7.0)
    dss.Transformers.Name(snap.taps[-1][0])
    dss.Transformers.Wdg(snap.taps[-1][1])
    dss.Transformers.Tap(1.1)
    dss.Capacitors.Name(snap.capacitors[0][0])
    dss.Capacitors.States([0] * len(snap.capacitors[0][1]))
    dss.Vsources.PU(1.07)
    dss.Solution.Seconds(42.0)
    changed = take()
    for field in ("taps", "capacitors", "vsources", "seconds"):
        assert getattr(changed, field) != getattr(snap, field), field
    assert changed.load_kw[0] == 1234.5 and changed.load_kvar[0] == -7.0
    assert snap.restore(circuit)
    after = take()
    np.testing.assert_array_equal(after.load_kw, snap.load_kw)
    np.testing.assert_array_equal(after.load_kvar, snap.load_kvar)
    for field in ("taps", "capacitors", "vsources", "native_generators", "hour", "seconds"):
        assert getattr(after, field) == getattr(snap, field), field
    # a native generator's power does not round-trip exactly: changed, the circuit is not reused
    dss.Generators.Name("gen")
    dss.Generators.kW(55.0)
    assert not snap.restore(circuit)


def test_a_worker_keeps_one_compiled_circuit_per_structure() -> None:
    """A siting sweep alternates structures (the site moves): each bus compiles once."""
    base = scenario("ieee13_ofo_tapchange", CASES["ieee13_ofo_tapchange"], horizon_s=2.0)
    at = {bus: base.with_overrides(sites=[{**base.to_dict()["sites"][0], "bus": bus}]) for bus in ("671", "675")}
    fresh = {bus: run_screening(s, reuse_engine=False) for bus, s in at.items()}
    for bus in ("671", "675"):
        run_screening(at[bus])
    before = screening_stats()
    for bus in ("671", "675", "671", "675"):
        again = run_screening(at[bus])
        assert {k: v for k, v in again.items() if k != "wall_s"} == {
            k: v for k, v in fresh[bus].items() if k != "wall_s"
        }
    after = screening_stats()
    assert after["circuits_compiled"] == before["circuits_compiled"]
    assert after["circuits_reused"] == before["circuits_reused"] + 4


def test_worker_engines_are_bounded_least_recently_used_first() -> None:
    from g2gsim.studies import screening

    first = worker_engine("ieee13", ("lru-test", 0))
    for i in range(1, screening.MAX_CIRCUITS_PER_WORKER):
        worker_engine("ieee13", ("lru-test", i))
    assert worker_engine("ieee13", ("lru-test", 0)) is first  # used again: now the newest
    worker_engine("ieee13", ("lru-test", "one more"))
    assert worker_engine("ieee13", ("lru-test", 0)) is first
    assert ("ieee13", ("lru-test", 1), threading.get_ident()) not in screening._ENGINES


def test_worker_engines_are_thread_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dask runs tasks in threads: concurrent look-ups neither fail nor exceed a thread's limit."""
    import sys
    from collections import OrderedDict

    from g2gsim.studies import screening

    class StandIn:  # a stand-in for DSSEngine: creating real contexts is too slow to race
        circuit_snapshot = None

    monkeypatch.setattr(screening, "DSSEngine", StandIn)
    monkeypatch.setattr(screening, "_ENGINES", OrderedDict())
    monkeypatch.setattr(screening, "_STATS", dict.fromkeys(screening._STATS, 0))
    errors: list[str] = []
    kept: dict[int, int] = {}

    def work(t: int) -> None:
        try:
            for i in range(20000):
                key = (t, i % 12)
                engine = worker_engine("ieee13", key)
                assert worker_engine("ieee13", key) is engine  # still this thread's engine for the key
            kept[t] = sum(k[2] == threading.get_ident() for k in list(screening._ENGINES))
        except Exception as exc:
            errors.append(repr(exc))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert kept == dict.fromkeys(range(4), screening.MAX_CIRCUITS_PER_WORKER)
    stats = screening.screening_stats()
    assert stats["engines_created"] == 4 * screening.MAX_CIRCUITS_PER_WORKER
    assert (
        stats["engines_created"] + stats["engines_recycled"] == 4 * 20000
    )  # 12 keys cycled through 8: every first look-up misses


def test_a_full_worker_cache_recycles_its_least_recently_used_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond the limit the oldest engine takes the new structure (an engine's memory is not
    given back when it is dropped): one OpenDSS context for three structures, results unchanged."""
    from collections import OrderedDict

    from g2gsim.studies import screening

    base = scenario("ieee13_baseline_notap", horizon_s=1.0)
    at = {bus: apply_parameters(base, {"sites.0.bus": bus}) for bus in ("671", "675")}
    fresh = {bus: run_screening(s, reuse_engine=False) for bus, s in at.items()}
    monkeypatch.setattr(screening, "MAX_CIRCUITS_PER_WORKER", 1)
    monkeypatch.setattr(screening, "_ENGINES", OrderedDict())
    monkeypatch.setattr(screening, "_STATS", dict.fromkeys(screening._STATS, 0))
    engines = []
    for bus in ("671", "675", "671"):
        again = run_screening(at[bus])
        assert {k: v for k, v in again.items() if k != "wall_s"} == {
            k: v for k, v in fresh[bus].items() if k != "wall_s"
        }
        (engine,) = screening._ENGINES.values()
        engines.append(engine)
    assert engines[0] is engines[1] is engines[2] and engines[0].n_compiles == 3
    stats = screening.screening_stats()
    assert (stats["engines_created"], stats["engines_recycled"], stats["circuits_compiled"]) == (1, 2, 3)
