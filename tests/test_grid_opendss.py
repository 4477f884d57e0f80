"""The OpenDSS grid process with real power flows (SPEC 4): physics, commands, coupling, errors.

Datacenters here are tiny fakes publishing a known power, so every expectation can be checked
by hand or against the physics (more load -> lower voltage, higher tap -> higher voltage).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import simpy

from g2gsim.datacenter.base import Datacenter
from g2gsim.datacenter.state import DatacenterState
from g2gsim.grid.commands import ResolveGrid, SetStoragePower, SetTaps
from g2gsim.grid.config import (
    ConstantProfile,
    GeneratorAttachment,
    GridConfig,
    LoadAttachment,
    SiteAttachment,
    StorageSpec,
    tap_pu,
)
from g2gsim.grid.opendss import OpenDSSGrid
from g2gsim.grid.state import GridState
from g2gsim.kernel import Command, Component, Controller, Simulation
from g2gsim.kernel.context import RunContext, RunShared
from g2gsim.kernel.time import Clock

#: .dss feeders of these tests sit in their own folders and the reference folder, trusted here.
pytestmark = pytest.mark.usefixtures("trusted_feeder_dirs")

PowerKw = Callable[[float], Sequence[float]]

IEEE13_TAPS = {"creg1a": tap_pu(14), "creg1b": tap_pu(6), "creg1c": tap_pu(15)}


# -- fakes ------------------------------------------------------------------------------------
class FakeSite(Datacenter):
    """A datacenter that publishes a given per-phase power (kW) as a function of time."""

    def __init__(
        self,
        name: str,
        power_kw: Sequence[float] | PowerKw = (1000.0, 1000.0, 1000.0),
        *,
        period: Any = Fraction(1, 10),
        pf: float = 0.95,
        first_publish_s: float = 0.0,
    ) -> None:
        super().__init__(name, period)
        if callable(power_kw):
            self._power = power_kw
        else:
            fixed = tuple(float(p) for p in power_kw)
            self._power = lambda _t: fixed
        self._pf = pf
        self._first = first_publish_s

    specs = property(lambda self: {})
    data = property(lambda self: None)
    capacity_gpus = property(lambda self: 0)

    @property
    def power_factor(self) -> float:
        return self._pf

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._box = ctx.mailbox("state")

    def step(self, tick: int) -> None:
        t = self.ctx.seconds(tick)
        if t < self._first:
            return
        power_w = np.asarray(self._power(t), dtype=float) * 1e3
        empty = np.zeros(0)
        self._box.publish(
            tick, DatacenterState(self.name, t, (), power_w, empty, empty, empty, empty, np.zeros((0, 3)))
        )


class Scripted(Controller):
    """Sends given commands at given times (seconds), and records what it saw afterwards."""

    def __init__(
        self, name: str, script: dict[float, list[Command]], grid: str = "grid", period: Any = Fraction(1, 10)
    ) -> None:
        super().__init__(name, period)
        self.script = script
        self.grid = grid
        self.seen: list[GridState] = []

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self.seen = []

    def control(self, tick: int) -> Iterable[Command]:
        t = self.ctx.seconds(tick)
        for when, commands in self.script.items():
            if math.isclose(when, t):
                for command in commands:
                    self.ctx.send(command)
        self.seen.append(self.ctx.subscribe(self.grid).value)
        return ()


def ieee13(**overrides: Any) -> GridConfig:
    settings: dict[str, Any] = {
        "feeder": "ieee13",
        "initial_taps": IEEE13_TAPS,
        "sites": [SiteAttachment(site="dc", bus="671")],
    }
    settings.update(overrides)
    return GridConfig(**settings)


def run(components: list[Component], horizon_s: float = 1.0):
    return Simulation(components, horizon_s=horizon_s).run()


def bus_v(result, bus: str, grid: str = "grid", row: int = -1) -> np.ndarray:
    table = result.table(f"{grid}/voltages")
    return table[[f"{bus}.{p}" for p in (1, 2, 3)]].iloc[row].to_numpy()


def drive(components: list[Component], horizon_s: float, tick: Fraction = Fraction(1, 10)) -> None:
    """Reset and start components, then step them tick by tick in phase order (no SimPy)."""
    env = simpy.Environment()
    clock = Clock(tick)
    shared = RunShared(env, clock, Fraction(horizon_s), 0, {c.name: c for c in components})
    for component in components:
        component.reset(RunContext(shared, component, 0))
    for component in components:
        component.start()
    ordered = sorted(components, key=lambda c: int(c.role))
    for k in range(clock.ticks_before(horizon_s)):
        for component in ordered:
            if component.period is not None and k % clock.ticks(component.period) == 0:
                component.step(k)


# -- layout and basic physics -------------------------------------------------------------------
def test_ieee13_voltage_vector_is_phase_major_with_standard_exclusions() -> None:
    grid = OpenDSSGrid("grid", ieee13())
    result = run([grid, FakeSite("dc")], horizon_s=0.3)
    index = grid.voltage_index
    assert len(index) == 32
    phases = [p for _, p in index.entries]
    assert phases == sorted(phases)
    assert not {"sourcebus", "650", "rg60"} & set(index.buses)
    assert list(index.rows_of("671")) != [-1, -1, -1] and (index.rows_of("671") >= 0).all()
    table = result.table("grid/voltages")
    assert list(table.columns) == ["time_s", *index.labels()]
    np.testing.assert_allclose(table["time_s"], [0.0, 0.1, 0.2])
    assert grid.sites == {"dc": "671"}
    assert result.meta["summary"]["grid"]["n_steps"] == 3
    assert result.meta["summary"]["grid"]["feeder"] == "ieee13"


def test_more_datacenter_load_lowers_the_voltage_at_its_bus() -> None:
    light = run([OpenDSSGrid("grid", ieee13()), FakeSite("dc", (300, 300, 300))], 0.2)
    heavy = run([OpenDSSGrid("grid", ieee13()), FakeSite("dc", (1500, 1500, 1500))], 0.2)
    assert (bus_v(heavy, "671") < bus_v(light, "671") - 1e-3).all()
    # and the load recorded for the solve is the one published, per phase, in kW
    power = heavy.table("grid/site_power")
    np.testing.assert_allclose(power[["kw_a", "kw_b", "kw_c"]].to_numpy(), 1500.0)


def test_one_phase_more_load_depresses_that_phase_most() -> None:
    base = run([OpenDSSGrid("grid", ieee13()), FakeSite("dc", (800, 800, 800))], 0.1)
    more_b = run([OpenDSSGrid("grid", ieee13()), FakeSite("dc", (800, 1400, 800))], 0.1)
    drop = bus_v(base, "671") - bus_v(more_b, "671")
    assert drop[1] > 0 and drop[1] == drop.max()


def test_a_tap_raise_lifts_downstream_voltage_by_about_one_step() -> None:
    up = {k: v + 0.00625 for k, v in IEEE13_TAPS.items()}
    low = run([OpenDSSGrid("grid", ieee13()), FakeSite("dc", (600, 600, 600))], 0.1)
    high = run([OpenDSSGrid("grid", ieee13(initial_taps=up)), FakeSite("dc", (600, 600, 600))], 0.1)
    ratio = bus_v(high, "671") / bus_v(low, "671")
    np.testing.assert_allclose(ratio, 1.00625, atol=1.5e-3)
    taps = high.table("grid/taps")
    assert taps.loc[0, "creg1a"] == pytest.approx(tap_pu(15))


def test_generators_and_external_loads_move_voltage_the_right_way() -> None:
    pv = GeneratorAttachment(name="pv", bus="675", profile=ConstantProfile(kw=600.0))
    load = LoadAttachment(name="ld", bus="675", profile=ConstantProfile(kw=600.0))
    plain = run([OpenDSSGrid("grid", ieee13()), FakeSite("dc")], 0.1)
    with_pv = run([OpenDSSGrid("grid", ieee13(generators=[pv])), FakeSite("dc")], 0.1)
    with_load = run([OpenDSSGrid("grid", ieee13(loads=[load])), FakeSite("dc")], 0.1)
    assert (bus_v(with_pv, "675") > bus_v(plain, "675")).all()
    assert (bus_v(with_load, "675") < bus_v(plain, "675")).all()


# -- commands ---------------------------------------------------------------------------------
def test_set_taps_by_name_and_by_phase_shorthand_agree() -> None:
    by_name = Scripted("ctl", {0.2: [SetTaps(taps={"creg1a": tap_pu(16)})]})
    by_letter = Scripted("ctl", {0.2: [SetTaps(taps={"A": tap_pu(16)})]})
    r1 = run([OpenDSSGrid("grid", ieee13()), FakeSite("dc"), by_name], 0.5)
    r2 = run([OpenDSSGrid("grid", ieee13()), FakeSite("dc"), by_letter], 0.5)
    np.testing.assert_array_equal(r1.table("grid/voltages").to_numpy(), r2.table("grid/voltages").to_numpy())
    taps = r1.table("grid/taps")
    assert list(taps["creg1a"]) == pytest.approx([tap_pu(14)] * 3 + [tap_pu(16)] * 2)
    # visible at the next solve, phase a rises by about two steps
    assert bus_v(r1, "671", row=3)[0] > bus_v(r1, "671", row=2)[0] + 0.01
    assert (r1.events["topic"] == "taps").sum() == 1


def test_tap_command_with_resolve_is_seen_by_a_later_controller_in_the_same_tick() -> None:
    sender = Scripted("first", {0.2: [SetTaps(taps={"creg1b": tap_pu(10)}, resolve=True)]})
    watcher = Scripted("second", {})
    grid = OpenDSSGrid("grid", ieee13())
    result = run([grid, FakeSite("dc"), sender, watcher], 0.3)
    seen = watcher.seen[2]
    assert seen.time_s == pytest.approx(0.2)
    assert seen.taps["creg1b"] == pytest.approx(tap_pu(10))
    # the table row of t = 0.2 holds the re-solved state
    np.testing.assert_array_equal(result.table("grid/voltages").iloc[2, 1:].to_numpy(), seen.voltages)
    assert result.meta["summary"]["grid"]["n_resolves"] == 1


def test_resolve_grid_command_and_service() -> None:
    grid = OpenDSSGrid("grid", ieee13())
    ctl = Scripted("ctl", {0.1: [SetTaps(taps={"c": tap_pu(0)}), ResolveGrid()]})
    run([grid, FakeSite("dc"), ctl], 0.2)
    assert ctl.seen[1].taps["creg1c"] == pytest.approx(1.0)
    assert grid.summary()["n_resolves"] == 1


def test_ambiguous_or_unknown_tap_keys_are_errors() -> None:
    # IEEE 34 has two banks (creg1x, creg2x): phase shorthand "a" is ambiguous there.
    config = GridConfig(feeder="ieee34", sites=[SiteAttachment(site="dc", bus="890")], excluded_buses=())
    grid = OpenDSSGrid("grid", config)
    drive([grid, FakeSite("dc", (100, 100, 100))], 0.1)
    assert grid.resolve_tap_key("CREG2A") == "creg2a"
    with pytest.raises(KeyError, match="ambiguous"):
        grid.resolve_tap_key("a")
    with pytest.raises(KeyError, match="no regulator control 'creg9z'"):
        grid.resolve_tap_key("creg9z")
    with pytest.raises(KeyError, match="ambiguous"):
        drive([OpenDSSGrid("grid", config.model_copy(update={"initial_taps": {"b": 1.0}})), FakeSite("dc")], 0.1)


def test_tap_outside_the_regulator_range_is_an_error() -> None:
    grid = OpenDSSGrid("grid", ieee13())
    ctl = Scripted("ctl", {0.0: [SetTaps(taps={"creg1a": 1.2})]})
    with pytest.raises(ValueError, match=r"outside \[0.9, 1.1\]"):
        drive([grid, FakeSite("dc"), ctl], 0.2)


# -- storage ----------------------------------------------------------------------------------
def _battery(**kw: Any) -> StorageSpec:
    return StorageSpec(**{"name": "bat", "bus": "671", "rated_kw": 250.0, "rated_kva": 300.0, "rated_kwh": 500.0, **kw})


def test_storage_discharge_raises_and_charge_lowers_local_voltage() -> None:
    def with_dispatch(kw: float):
        ctl = Scripted("ctl", {0.0: [SetStoragePower(storage="bat", kw=kw)]})
        return run([OpenDSSGrid("grid", ieee13(storage=[_battery()])), FakeSite("dc"), ctl], 1.0)

    idle, discharge, charge = with_dispatch(0.0), with_dispatch(250.0), with_dispatch(-250.0)
    assert (bus_v(discharge, "671") > bus_v(idle, "671") + 1e-3).all()
    assert (bus_v(charge, "671") < bus_v(idle, "671") - 1e-3).all()
    storage = discharge.table("grid/storage")
    assert list(storage.columns) == ["time_s", "storage", "kwh", "soc", "kw", "kvar"]
    assert storage["kw"].iloc[-1] == pytest.approx(250.0, rel=1e-3)
    # sent at t = 0, applied from the grid step at 0.1 s: 9 steps of 0.1 s at 250 kW, unit efficiency
    assert storage["kwh"].iloc[0] == pytest.approx(250.0)
    assert storage["kwh"].iloc[-1] == pytest.approx(250.0 - 250.0 * 0.9 / 3600, rel=1e-6)
    assert storage["soc"].iloc[-1] < 0.5 < charge.table("grid/storage")["soc"].iloc[-1]


def test_storage_rating_checks() -> None:
    for command, message in (
        (SetStoragePower(storage="bat", kw=260.0), "beyond its rating of 250 kW"),
        (SetStoragePower(storage="bat", kw=-200.0, kvar=250.0), "beyond its rating of 300 kVA"),
        (SetStoragePower(storage="nope", kw=1.0), "no storage 'nope'"),
    ):
        ctl = Scripted("ctl", {0.0: [command]})
        with pytest.raises((ValueError, KeyError), match=message):
            drive([OpenDSSGrid("grid", ieee13(storage=[_battery()])), FakeSite("dc"), ctl], 0.3)


# -- sensitivity --------------------------------------------------------------------------------
def test_sensitivity_signs_and_restored_operating_point() -> None:
    grid = OpenDSSGrid("grid", ieee13())
    site = FakeSite("dc", (800, 800, 800))
    drive([grid, site], 0.1)
    box = grid.ctx.subscribe("grid")
    before = box.value.voltages.copy()
    solves = grid.summary()["n_solves"]
    h = grid.estimate_sensitivity("dc", delta_kw=100.0)
    assert h.shape == (32, 3)
    assert grid.summary()["n_solves"] == solves + 5
    rows = grid.voltage_index.rows_of("671")
    for j in range(3):
        assert h[rows[j], j] < 0  # more load on a phase lowers that phase
    # about -1e-4 pu per kW at 671 on this 4.16 kV feeder: 100 kW moves it by ~1 %
    assert -1e-3 < h[rows[0], 0] < -1e-5
    # same loads, same taps: the same operating point, up to OpenDSS's convergence tolerance
    # (1e-4 by default: a re-solve from a nearby start lands within a few 1e-5 pu)
    np.testing.assert_allclose(grid._read_vector(), before, atol=1e-4)
    with pytest.raises(KeyError, match="no datacenter 'other'"):
        grid.estimate_sensitivity("other")
    with pytest.raises(ValueError, match="positive"):
        grid.estimate_sensitivity("dc", delta_kw=0.0)


def test_sensitivity_predicts_a_small_change() -> None:
    grid = OpenDSSGrid("grid", ieee13())
    drive([grid, FakeSite("dc", (800, 800, 800))], 0.1)
    v0 = grid._read_vector()
    h = grid.estimate_sensitivity("dc", delta_kw=50.0)
    other = OpenDSSGrid("grid", ieee13())
    drive([other, FakeSite("dc", (850, 800, 800))], 0.1)
    # linear prediction within 0.5 % (the power flow is mildly non-linear)
    np.testing.assert_allclose(other._read_vector() - v0, h[:, 0] * 50.0, rtol=5e-3, atol=1e-6)


# -- coupling ---------------------------------------------------------------------------------
def _ramp(t: float) -> tuple[float, float, float]:
    return (1000.0 + 100.0 * round(t * 10), 1000.0, 1000.0)


@pytest.mark.parametrize("coupling", ["latest", "mean"])
def test_coupling_latest_or_window_mean(coupling: str) -> None:
    grid = OpenDSSGrid("grid", ieee13(period_s=0.5, coupling=coupling))
    result = run([grid, FakeSite("dc", _ramp, period=0.1)], 1.5)
    used = result.table("grid/site_power")["kw_a"].to_numpy()
    if coupling == "latest":
        np.testing.assert_allclose(used, [1000.0, 1500.0, 2000.0])
    else:  # samples at 0.1..0.5 -> mean 1300; 0.6..1.0 -> 1800
        np.testing.assert_allclose(used, [1000.0, 1300.0, 1800.0])


def test_mean_coupling_holds_the_last_value_when_the_datacenter_is_slower() -> None:
    grid = OpenDSSGrid("grid", ieee13(coupling="mean"))
    result = run([grid, FakeSite("dc", _ramp, period=0.5)], 1.0)
    used = result.table("grid/site_power")["kw_a"].to_numpy()
    np.testing.assert_allclose(used, [1000.0] * 5 + [1500.0] * 5)


@pytest.mark.parametrize("coupling", ["latest", "mean"])
def test_a_grid_step_without_any_datacenter_sample_is_an_error(coupling: str) -> None:
    grid = OpenDSSGrid("grid", ieee13(coupling=coupling))
    with pytest.raises(RuntimeError, match=r"t = 0 s but datacenter 'dc' has published no power yet"):
        drive([grid, FakeSite("dc", first_publish_s=0.3)], 0.5)


# -- engines, runs and failures -----------------------------------------------------------------
def test_two_grids_in_one_simulation_keep_their_own_circuits() -> None:
    heavy = GridConfig(feeder="ieee13", initial_taps=IEEE13_TAPS, sites=[SiteAttachment(site="dc1", bus="671")])
    light = GridConfig(feeder="ieee13", initial_taps=IEEE13_TAPS, sites=[SiteAttachment(site="dc2", bus="671")])
    both = run(
        [
            OpenDSSGrid("g1", heavy),
            OpenDSSGrid("g2", light),
            FakeSite("dc1", (1500, 1500, 1500)),
            FakeSite("dc2", (200, 200, 200)),
        ],
        0.3,
    )
    alone = run([OpenDSSGrid("g2", light), FakeSite("dc2", (200, 200, 200))], 0.3)
    assert (bus_v(both, "671", grid="g1") < bus_v(both, "671", grid="g2") - 0.01).all()
    np.testing.assert_array_equal(both.table("g2/voltages").to_numpy(), alone.table("g2/voltages").to_numpy())


def test_runs_are_reset_fully_and_repeatable() -> None:
    ctl = Scripted("ctl", {0.1: [SetTaps(taps={"a": tap_pu(0)}), SetStoragePower(storage="bat", kw=100.0)]})
    sim = Simulation([OpenDSSGrid("grid", ieee13(storage=[_battery()])), FakeSite("dc"), ctl], horizon_s=0.5)
    first, second = sim.run(), sim.run()
    for table in ("voltages", "taps", "storage", "site_power"):
        assert first.table(f"grid/{table}").equals(second.table(f"grid/{table}"))
    assert first.table("grid/taps")["creg1a"].iloc[0] == pytest.approx(tap_pu(14))


def test_datacenter_power_factor_and_override() -> None:
    own = run([OpenDSSGrid("grid", ieee13()), FakeSite("dc", pf=0.8)], 0.1)
    unity = ieee13(sites=[SiteAttachment(site="dc", bus="671", power_factor=1.0)])
    forced = run([OpenDSSGrid("grid", unity), FakeSite("dc", pf=0.8)], 0.1)
    assert (bus_v(forced, "671") > bus_v(own, "671")).all()


def test_wrong_buses_are_errors_naming_the_feeder() -> None:
    with pytest.raises(Exception, match=r"ieee13.*unknown bus 'nowhere'"):
        drive([OpenDSSGrid("grid", ieee13(sites=[SiteAttachment(site="dc", bus="nowhere")])), FakeSite("dc")], 0.1)
    with pytest.raises(Exception, match=r"three-phase bus; bus '611' has phases \[3\]"):
        drive([OpenDSSGrid("grid", ieee13(sites=[SiteAttachment(site="dc", bus="611")])), FakeSite("dc")], 0.1)


def test_a_non_converging_solve_names_feeder_time_and_opendss() -> None:
    # 40 MW per phase on a 4.16 kV feeder: the power flow has no solution.
    grid = OpenDSSGrid("grid", ieee13())
    site = FakeSite("dc", lambda t: (40000.0,) * 3 if t >= 0.2 else (500.0,) * 3)
    with pytest.raises(Exception, match=r"(?s)ieee13.*0\.2") as info:
        drive([grid, site], 0.5)
    assert "converge" in str(info.value).lower()


def test_a_broken_feeder_file_is_an_error_naming_it(tmp_path: Path) -> None:
    master = tmp_path / "broken.dss"
    master.write_text("Clear\nNew Circuit.broken basekv=12.47 bus1=src\nNew Line.l1 bus1=src bus2=b linecode=missing\n")
    with pytest.raises(Exception, match="broken"):
        drive([OpenDSSGrid("grid", GridConfig(feeder=str(master))), FakeSite("dc")], 0.1)


def test_regulator_self_control_moves_taps_on_its_own() -> None:
    untapped = {"creg1a": 1.0, "creg1b": 1.0, "creg1c": 1.0}
    config = ieee13(period_s=1.0, regulator_self_control=True, initial_taps=untapped)
    result = run([OpenDSSGrid("grid", config), FakeSite("dc", (1200, 1200, 1200), period=1.0)], 60.0)
    taps = result.table("grid/taps")
    assert (taps.iloc[0, 1:] == 1.0).all()
    assert (taps.iloc[-1, 1:] > 1.03).all()  # the regulators raised their taps after their delay
    v = result.table("grid/voltages")["671.1"]
    assert v.iloc[-1] > v.iloc[0] + 0.03
    # with controls off (the default) the same case keeps its taps
    fixed = run(
        [OpenDSSGrid("grid", ieee13(period_s=1.0, initial_taps=untapped)), FakeSite("dc", (1200,) * 3, period=1.0)],
        60.0,
    )
    assert (fixed.table("grid/taps").iloc[:, 1:] == 1.0).all().all()


def test_batched_load_writes_equal_loads_idx_kw_kvar(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-step batch write leaves OpenDSS exactly as Loads.Idx/kW/kvar per load does."""
    pv = GeneratorAttachment(name="pv", bus="675", profile=ConstantProfile(kw=300.0))
    swing = lambda t: (900 + 300 * math.sin(t), 800 + 200 * math.cos(t / 2), 1000.0 + 50 * t)  # noqa: E731
    batched = run([OpenDSSGrid("grid", ieee13(generators=[pv])), FakeSite("dc", swing)], 2.0)

    import g2gsim.grid.opendss as module

    class PerLoad(module.LoadBatch):
        def __init__(self, engine: Any, indices: list[int]) -> None:
            super().__init__(engine, indices)
            self._engine, self._indices = engine, indices

        def write(self) -> None:
            for index, kw, kvar in zip(self._indices, self.kw, self.kvar):
                self._engine.set_load_kw_kvar(index, float(kw), float(kvar))

    monkeypatch.setattr(module, "LoadBatch", PerLoad)
    per_load = run([OpenDSSGrid("grid", ieee13(generators=[pv])), FakeSite("dc", swing)], 2.0)
    np.testing.assert_array_equal(batched.table("grid/voltages").to_numpy(), per_load.table("grid/voltages").to_numpy())


def test_fast_c_api_path_and_public_api_path_solve_and_read_alike() -> None:
    """The engine's direct C-API solve and voltage read equal OpenDSSDirect's public calls."""
    from g2gsim.grid.engine import DSSEngine
    from g2gsim.grid.errors import GridError
    from g2gsim.grid.feeders import load_feeder

    fast, public = DSSEngine(), DSSEngine()
    public._fast = False  # as on a binding without the C-API entry points
    for engine in (fast, public):
        engine.compile_feeder(load_feeder("ieee13"))
        engine.run("Set Mode=Snap")
        engine.solve(0.0)
    assert fast._fast
    assert np.array_equal(fast.all_bus_mag_pu(), public.all_bus_mag_pu())
    assert np.array_equal(fast.all_bus_mag_pu(), np.asarray(fast.dss.Circuit.AllBusMagPu(), dtype=float))
    view = fast.bus_mag_pu_view()
    assert not view.flags.writeable
    for engine in (fast, public):  # a load the circuit cannot carry: no solution
        engine.run("New Load.huge bus1=671 phases=3 kv=4.16 kw=120000 kvar=1000 model=1 vminpu=0 vlowpu=0")
        with pytest.raises(GridError, match="did not converge"):
            engine.solve(1.0)
