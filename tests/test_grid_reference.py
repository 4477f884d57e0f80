"""g2gsim's grid reproduces the reference grid's voltages on the same inputs (SPEC 4, 12).

The reference (OpenG2G's OpenDSS grid) drives OpenDSS with a documented sequence: compile,
source override, three single-phase constant-PQ loads per datacenter (model=1, line-to-neutral
kV), PV and external loads as per-phase loads (PV negative), Mode=Time at the grid period,
controls off, taps edited on the regulator windings, one solve, then per step: write each
load by name, SolveNoControl, read AllBusMagPu. `reference_voltages` replays that sequence
directly on OpenDSS; OpenDSSGrid must give the same voltages to round-off, because OpenDSS's
answer depends on the path of solves (it stops at its convergence tolerance).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from opendssdirect import dss as dss_root

from g2gsim.grid.config import (
    GeneratorAttachment,
    GridConfig,
    LoadAttachment,
    SiteAttachment,
    SyntheticLoad,
    SyntheticPV,
    from_openg2g_per_phase,
    tap_pu,
)
from g2gsim.grid.opendss import OpenDSSGrid
from g2gsim.kernel import Simulation
from test_grid_opendss import FakeSite

#: .dss feeders of these tests sit in the reference folder, trusted here.
pytestmark = [pytest.mark.shared, pytest.mark.usefixtures("trusted_feeder_dirs")]

Kw = Callable[[float], float]


def _tan_phi(pf: float) -> float:
    return math.tan(math.acos(max(min(pf, 0.999999), 1e-6)))


def reference_voltages(
    master: Path,
    *,
    dc_bus: str,
    dc_pf: float,
    dc_kw: Sequence[Sequence[float]],
    times: Sequence[float],
    taps: dict[str, float],
    excluded: set[str],
    pv: tuple[str, Kw] | None = None,
    load: tuple[str, Kw] | None = None,
    source_pu: float | None = None,
) -> np.ndarray:
    """Voltage vectors (phase-major, excluded buses removed) from the reference command sequence."""
    d = dss_root.NewContext()
    d.Basic.AllowChangeDir(False)
    d.Text.Command(f'Compile "{master}"')
    if source_pu is not None:
        d.Text.Command(f"Edit Vsource.source pu={source_pu}")

    def kv_ln(bus: str) -> float:
        d.Circuit.SetActiveBus(bus)
        return d.Bus.kVBase()

    def per_phase_loads(prefix: str, bus: str) -> list[str]:
        names = [f"{prefix}{x}" for x in "ABC"]
        for phase, name in zip((1, 2, 3), names):
            d.Text.Command(
                f"New Load.{name} bus1={bus}.{phase} phases=1 conn=wye kV={kv_ln(bus):.6f} kW=0 kvar=0 model=1"
            )
        return names

    dc_loads = per_phase_loads("DataCenter", dc_bus)
    injections = []
    if pv is not None:
        injections.append((per_phase_loads("Gen_0_", pv[0]), pv[1], -1.0, _tan_phi(1.0)))
    if load is not None:
        injections.append((per_phase_loads("ExtLoad_0_", load[0]), load[1], 1.0, _tan_phi(0.96)))
    for command in ("Reset", "Set Mode=Time", "Set Stepsize=0.1s", "Set ControlMode=Off"):
        d.Text.Command(command)
    windings = {}
    for control in d.RegControls.AllNames():
        d.RegControls.Name(control)
        windings[control.lower()] = (d.RegControls.Transformer(), d.RegControls.Winding())
    for control, ratio in taps.items():
        transformer, winding = windings[control]
        d.Text.Command(f"Edit Transformer.{transformer} Wdg={winding} Tap={ratio:.6f}")
    d.Solution.SolveNoControl()
    nodes = [n.split(".") for n in d.Circuit.AllNodeNames()]
    rows = [i for ph in (1, 2, 3) for i, (bus, *p) in enumerate(nodes) if p and int(p[0]) == ph and bus not in excluded]
    tphi = _tan_phi(dc_pf)
    out = []
    for t, kws in zip(times, dc_kw):
        for name, kw in zip(dc_loads, kws):
            d.Loads.Name(name)
            d.Loads.kW(kw)
            d.Loads.kvar(kw * tphi)
        for names, fn, sign, tp in injections:
            kw = fn(t)
            for name in names:
                d.Loads.Name(name)
                d.Loads.kW(sign * kw)
                d.Loads.kvar(sign * kw * tp)
        d.Solution.SolveNoControl()
        out.append(np.asarray(d.Circuit.AllBusMagPu())[rows])
    return np.array(out)


def _dc_power(t: float) -> tuple[float, float, float]:
    return (1200 + 400 * math.sin(t / 3), 1100 + 300 * math.cos(t / 2), 1300 + 200 * math.sin(t / 0.7))


def test_ieee13_preset_matches_the_reference_sequence(reference_dir: Path) -> None:
    master = reference_dir / "feeders" / "ieee13" / "IEEE13Bus.dss"
    taps = {"creg1a": tap_pu(14), "creg1b": tap_pu(6), "creg1c": tap_pu(15)}
    excluded = {"sourcebus", "650", "rg60"}
    pv_per_phase, load_per_phase = SyntheticPV(peak_kw=10.0, profile=0), SyntheticLoad(peak_kw=10.0, profile=0)
    config = GridConfig(
        feeder=str(master),
        source_pu=1.0,
        initial_taps=taps,
        excluded_buses=tuple(excluded),
        sites=[SiteAttachment(site="dc", bus="671")],
        generators=[GeneratorAttachment(name="pv", bus="675", profile=from_openg2g_per_phase(pv_per_phase))],
        loads=[LoadAttachment(name="ld", bus="680", profile=from_openg2g_per_phase(load_per_phase))],
    )
    result = Simulation([OpenDSSGrid("grid", config), FakeSite("dc", _dc_power)], horizon_s=30).run()
    table = result.table("grid/voltages")
    times = table["time_s"].to_numpy()
    expected = reference_voltages(
        master,
        dc_bus="671",
        dc_pf=0.95,
        dc_kw=[_dc_power(t) for t in times],
        times=times,
        taps=taps,
        excluded=excluded,
        pv=("675", lambda t: float(pv_per_phase.power_kw(np.array([t]))[0])),
        load=("680", lambda t: float(load_per_phase.power_kw(np.array([t]))[0])),
        source_pu=1.0,
    )
    got = table.drop(columns="time_s").to_numpy()
    assert got.shape == expected.shape == (300, 32)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
