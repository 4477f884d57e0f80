"""Step-by-step equivalence with OpenG2G: every bus-phase voltage and every site's per-phase
power at every grid step, randomness removed from both simulators (issue 20, item 2).

    ANCHOR_PY=/path/to/openg2g-venv/bin/python python benchmarks/fidelity_exact.py \
        [--data ../shared/reference/mlenergy-derived] [--horizon 3600] [--cases ieee13_baseline,...]

Both simulators run each case on the same inputs (the ML.ENERGY-derived cache, the reference
feeder files, every preset number) with the randomness removed the same way: power noise off,
each model's ITL at its fitted mixture's mean (g2gsim ``itl_mode = "mean"``; OpenG2G's
``sample_avg`` returning the mixture mean), the same server layout (g2gsim ``layout =
"openg2g"``: phases, staggers, amplitudes and priorities drawn from ``default_rng(seed)`` in
OpenG2G's order, with the same seed) and the same template length (600 s, OpenG2G's).
Uncontrolled cases solve at OpenDSS's default tolerance in both; OFO cases at tolerance 1e-9
with 100 iterations in both (``--ofo-tolerance``), because a finite-difference sensitivity at
the default tolerance carries solver noise that can flip a rounding decision of OFO.

One line per case, feeder first, ending in ``max_dv_pu=<float>`` (the largest voltage
difference over every bus-phase and grid step); also the largest per-phase site power
difference and whether the batch trajectories are identical. Without ``ANCHOR_PY`` it says
how to make one and exits with status 2. Writes ``benchmarks/results/fidelity_exact.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import _anchor

#: case -> (preset, controlled?)
CASES = {
    "ieee13_baseline_notap": ("ieee13_baseline_notap", False),
    "ieee13_ofo_notap": ("ieee13_ofo_notap", True),
    "ieee34_baseline_tapchange": ("ieee34_ofo_tapchange", False),
    "ieee34_ofo_tapchange": ("ieee34_ofo_tapchange", True),
    "ieee123_baseline_tapchange": ("ieee123_ofo_tapchange", False),
    "ieee123_ofo_tapchange": ("ieee123_ofo_tapchange", True),
}
TEMPLATE_S = 600.0
#: OpenDSS's default power-flow tolerance (what OpenG2G solves at unless told otherwise).
DEFAULT_TOLERANCE = 1e-4


def deterministic(scenario: Any, controlled: bool, tolerance: float | None, iterations: int | None) -> Any:
    """The preset with randomness removed (and OFO dropped for an uncontrolled case)."""
    changes: dict[str, Any] = {}
    for i in range(len(scenario.sites)):
        changes.update(
            {
                f"sites.{i}.template_s": TEMPLATE_S,
                f"sites.{i}.itl_mode": "mean",
                f"sites.{i}.layout": "openg2g",
                f"sites.{i}.noise_fraction": 0.0,
            }
        )
    if tolerance is not None:  # every solve at the tight tolerance, as OpenG2G's
        changes["grid.tolerance"] = tolerance
        changes["grid.max_iterations"] = iterations
    if scenario.grid.measurement_tolerance is not None:  # measured steps solved as every other step
        changes["grid.measurement_tolerance"] = tolerance if tolerance is not None else DEFAULT_TOLERANCE
    out = scenario.with_changes(changes)
    if not controlled:
        raw = out.to_dict()
        raw["controllers"] = [c for c in raw.get("controllers", []) if c["type"] == "tap_schedule"]
        raw["name"] = out.name.replace("_ofo_", "_baseline_")
        out = type(scenario).model_validate(raw)
    return out


def site_seeds(scenario: Any) -> dict[str, int]:
    """The seed each g2gsim site's streams (and with ``layout = "openg2g"`` its layout) use."""
    from g2gsim.scenarios.build import site_seed

    out = {}
    for site in scenario.sites:
        seed = site_seed(scenario.seed, site.seed)
        out[site.name] = int(scenario.seed if seed is None else seed)
    return out


def run_g2gsim(scenario: Any) -> dict[str, Any]:
    """Voltages, per-site power and batches per step of g2gsim's run."""
    from g2gsim.scenarios.build import build_simulation

    built = build_simulation(scenario)
    start = time.perf_counter()
    result = built.simulation.run()
    wall = time.perf_counter() - start
    volts = result.table("grid/voltages")
    out: dict[str, Any] = {"wall_s": wall, "t_s": volts["time_s"].to_numpy(), "sites": {}}
    columns = [c for c in volts.columns if c != "time_s"]
    out["bus_phase"] = [c.lower() for c in columns]
    out["voltages"] = volts[columns].to_numpy()
    for site in scenario.sites:
        state = result.table(f"{site.name}/state")
        labels = sorted(m.model for m in site.models)
        out["sites"][site.name] = {
            "t_s": state["time_s"].to_numpy(),
            "power": state[["power_a_w", "power_b_w", "power_c_w"]].to_numpy(),
            "batch": state[[f"{label}.batch" for label in labels]].to_numpy(),
        }
    return out


def load_openg2g(path: Path, sites: list[str]) -> dict[str, Any]:
    """The driver's recording in the same shape."""
    z = np.load(path)
    out: dict[str, Any] = {"t_s": z["t_s"], "voltages": z["voltages"], "sites": {}}
    out["bus_phase"] = [str(b).lower() for b in z["bus_phase"]]
    for name in sites:
        out["sites"][name] = {"t_s": z[f"dc_t/{name}"], "power": z[f"power/{name}"], "batch": z[f"batch/{name}"]}
    return out


def _common(ta: np.ndarray, tb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the times both have (to 1 us)."""
    ka = np.round(ta * 1e6).astype(np.int64)
    kb = np.round(tb * 1e6).astype(np.int64)
    _, ia, ib = np.intersect1d(ka, kb, return_indices=True)
    return ia, ib


def compare(g: dict[str, Any], o: dict[str, Any]) -> dict[str, Any]:
    """Largest voltage and power differences, and the first step the batches differ (if any)."""
    ig, io = _common(g["t_s"], o["t_s"])
    columns = sorted(set(g["bus_phase"]) & set(o["bus_phase"]))
    jg = [g["bus_phase"].index(c) for c in columns]
    jo = [o["bus_phase"].index(c) for c in columns]
    dv = np.abs(g["voltages"][np.ix_(ig, jg)] - o["voltages"][np.ix_(io, jo)])
    worst = np.unravel_index(int(np.argmax(dv)), dv.shape) if dv.size else (0, 0)
    dp, first_batch_diff = 0.0, None
    for name, site in g["sites"].items():
        other = o["sites"][name]
        sg, so = _common(site["t_s"], other["t_s"])
        dp = max(dp, float(np.max(np.abs(site["power"][sg] - other["power"][so]))))
        differ = np.flatnonzero(np.any(site["batch"][sg] != other["batch"][so], axis=1))
        if differ.size:
            t = float(site["t_s"][sg][differ[0]])
            first_batch_diff = t if first_batch_diff is None else min(first_batch_diff, t)
    return {
        "steps": int(ig.size),
        "bus_phases": len(columns),
        "bus_phases_only_g2gsim": sorted(set(g["bus_phase"]) - set(o["bus_phase"])),
        "bus_phases_only_openg2g": sorted(set(o["bus_phase"]) - set(g["bus_phase"])),
        "max_dv_pu": float(dv.max()) if dv.size else float("nan"),
        "worst_at": {"t_s": float(g["t_s"][ig][worst[0]]), "bus_phase": columns[worst[1]]} if dv.size else None,
        "max_dp_w": dp,
        "batches_identical": first_batch_diff is None,
        "first_batch_difference_s": first_batch_diff,
    }


def run_case(
    case: str, data: Path, horizon: float, python: Path, folder: Path, tolerance: float, iterations: int
) -> dict[str, Any]:
    """Both simulators on one case; the comparison."""
    from g2gsim.scenarios.library import load_scenario

    preset, controlled = CASES[case]
    tol, its = (tolerance, iterations) if controlled else (None, None)
    scenario = deterministic(
        load_scenario(preset).with_overrides(data=str(data), horizon_s=horizon), controlled, tol, its
    )
    g = run_g2gsim(scenario)
    record = folder / f"{case}.npz"
    config = _anchor.driver_config(
        scenario,
        folder,
        data=data,
        site_seeds=site_seeds(scenario),
        template_s=TEMPLATE_S,
        deterministic=True,
        tolerance=tol,
        max_iterations=its,
        record=record,
    )
    o_metrics = _anchor.run_anchor(python, config)
    o = load_openg2g(record, [s.name for s in scenario.sites])
    out = compare(g, o)
    out.update(case=case, horizon_s=horizon, tolerance=tol, max_iterations=its, openg2g_run_s=o_metrics["run_s"])
    out["g2gsim_run_s"] = g["wall_s"]
    return out


def edit_offset(feeder: Path, bus: str = "671", kw_per_phase: float = 1290.0) -> float:
    """How far one OpenDSS ``Edit Load`` command moves the next solutions, pu.

    OpenG2G's sensitivity estimate perturbs and restores a site's loads with ``Edit Load.X
    kW=... kvar=...`` text commands; g2gsim (and OpenG2G's own grid step) set loads through
    the API. The IEEE 13 feeder is solved at zero site load, then at tolerance 1e-12 with the
    same three loads set through the API twice, once alone and once followed by an ``Edit``
    that writes the very same kW and kvar: the returned difference is what an ``Edit`` alone
    moves the converged voltages by, the floor of an OFO comparison on that feeder.
    """
    import math

    import opendssdirect as dss

    tan_phi = math.tan(math.acos(0.95))

    def solve(edit: bool) -> np.ndarray:
        dss.Basic.ClearAll()
        dss.Text.Command(f'Compile "{feeder}"')
        dss.Text.Command("Set Mode=Time")
        dss.Text.Command("Set Stepsize=0.1s")
        dss.Text.Command("Set ControlMode=Off")
        dss.Text.Command("set tolerance=1e-12")
        dss.Text.Command("set maxiterations=100")
        dss.Circuit.SetActiveBus(bus)
        kv = dss.Bus.kVBase()
        for phase in (1, 2, 3):
            dss.Text.Command(f"New Load.dc{phase} bus1={bus}.{phase} phases=1 conn=wye kV={kv:.6f} kW=0 kvar=0 model=1")
        dss.Solution.SolveNoControl()  # the first solve, at zero load (as both simulators start)
        for phase in (1, 2, 3):
            dss.Loads.Name(f"dc{phase}")
            dss.Loads.kW(kw_per_phase)
            dss.Loads.kvar(kw_per_phase * tan_phi)
            if edit:
                dss.Text.Command(f"Edit Load.dc{phase} kW={kw_per_phase!r} kvar={kw_per_phase * tan_phi!r}")
        dss.Solution.SolveNoControl()
        return np.array(dss.Circuit.AllBusMagPu())

    return float(np.max(np.abs(solve(True) - solve(False))))


def line(r: dict[str, Any]) -> str:
    """One printed line per case, ending in max_dv_pu."""
    tol = "default" if r["tolerance"] is None else f"{r['tolerance']:g}"
    return (
        f"{r['case']} horizon_s={r['horizon_s']:g} tolerance={tol} steps={r['steps']} bus_phases={r['bus_phases']} "
        f"batches_identical={r['batches_identical']} max_dp_w={r['max_dp_w']:.3g} max_dv_pu={r['max_dv_pu']:.3g}"
    )


def main() -> None:
    from g2gsim.resources import shared_reference_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = shared_reference_dir()
    parser.add_argument("--data", type=Path, default=None if default is None else default / "mlenergy-derived")
    parser.add_argument("--horizon", type=float, default=3600.0)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--ofo-tolerance", type=float, default=1e-9)
    parser.add_argument("--ofo-iterations", type=int, default=100)
    parser.add_argument("--horizon-of", action="append", default=[], help="CASE=SECONDS: a shorter horizon")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "fidelity_exact.json")
    args = parser.parse_args()
    python = _anchor.anchor_python()
    if python is None:
        print("ANCHOR_PY is not set: fidelity_exact.py needs OpenG2G to compare with.\n" + _anchor.HOW_TO)
        raise SystemExit(2)
    if args.data is None or not args.data.is_dir():
        parser.error("no ML.ENERGY-derived cache found; pass --data")
    feeder = _anchor.reference_feeders() / "ieee13" / "IEEE13Bus.dss"
    print(f"opendss_edit_offset ieee13 bus 671 1290 kW/phase tolerance=1e-12 max_dv_pu={edit_offset(feeder):.3g}")
    horizons = {k: float(v) for k, v in (item.split("=") for item in args.horizon_of)}
    results = []
    with tempfile.TemporaryDirectory(prefix="g2gsim-exact-") as tmp:
        for case in args.cases.split(","):
            if case not in CASES:
                parser.error(f"unknown case {case!r}; cases: {', '.join(CASES)}")
            horizon = horizons.get(case, args.horizon)
            r = run_case(case, args.data, horizon, python, Path(tmp), args.ofo_tolerance, args.ofo_iterations)
            results.append(r)
            print(line(r), flush=True)
            if args.json:  # after every case: a long run keeps what it has
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
