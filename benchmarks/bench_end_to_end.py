"""End-to-end cost of every bundled scenario, where it goes, and how far it is from OpenDSS.

For each scenario in ``processes/`` (run in its own subprocess, so memory is per scenario):

- **wall per simulated hour**: median over ``--repeats`` warm runs of ``Simulation.run()`` at
  ``--horizon`` simulated seconds (default 600), scaled to one hour. The first run of the
  process (which loads and fits the data, compiles the feeder) is reported separately as
  *cold*, together with the import and build times.
- **split** of one extra run made with ``Simulation.run(timing=True)``, in seconds per
  simulated hour: datacenter steps, grid solves (every OpenDSS solve, including the
  sensitivity estimates a controller asks for), the rest of the grid's work (load writes,
  voltage reads, publishing, recording rows), controllers (without the grid services they
  call), the kernel (SimPy, phases, mailboxes, links: the run minus everything above), set-up
  (reset/start) and collection of the result tables.
- **solver floor**: the same number of OpenDSS solves as the run made (at least one per grid
  step: a preset that solves only on change still sees its loads change every step) on the
  circuit the run solves, compiled as the grid compiles it (feeder, source voltage, the
  sites' single-phase constant-PQ loads, generators and external loads, batteries, time
  mode, the initial taps; a tap change later in the run is not replayed), at the run's solver
  settings (tight ones at the steps controllers measure, where a preset sets
  ``measurement_tolerance``; set when they change); per solve one batch write of every load
  (two OpenDSS calls: the sites' recorded power, the injections' profiles, precomputed), the
  batteries' set-points at the steps where the run changed them (its ``storage_power``
  events, written as the grid writes them), one ``SolveNoControl`` and, with batteries,
  OpenDSS's end-of-step energy bookkeeping; nothing else (no taps, no reads, no publishing).
  Each warm run is followed at once by one floor pass, in the same process, so the two of a
  pair see the same machine speed; the ratio end-to-end / floor (medians, and the range of
  the pairs' ratios) says how much the co-simulation adds to the bare power flows. The floor
  of earlier figures (the feeder alone with only the site loads: no batteries, generators or
  external loads, default tolerance) is timed too and printed next to it.
- **peak memory**: peak RSS of the scenario's subprocess, and for ``--memory-scenarios``
  (default one per feeder) the peak RSS of a fresh process that runs one simulated hour
  (target for IEEE 13: < 300 MB). RSS includes the interpreter and libraries (the
  after-import figure is given too).

Run: ``python benchmarks/bench_end_to_end.py [--quick] [--horizon 600] [--repeats 3]
[--scenarios a,b] [--memory-scenarios all|none|a,b]``. ``--quick`` runs one scenario per
feeder for 60 s with one repeat. Prints Markdown tables; writes
``benchmarks/results/end_to_end.json`` (``end_to_end_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Any

import _benchutil as bu

HOUR_S = 3600.0
QUICK_SCENARIOS = ("ieee13_ofo_tapchange", "ieee34_ofo_tapchange", "ieee123_ofo_tapchange")
MEMORY_TARGET_MB = {"ieee13": 300.0}
#: Target of issue 19: every preset's wall time at most this multiple of its solver floor.
FLOOR_TARGET = 3.0


# -- inside a worker process -------------------------------------------------------------------
@contextmanager
def timed_sensitivity(grid: Any):
    """Time the grid's sensitivity service (called from inside controller steps).

    Yields a dict that ends up with the service's total seconds and the solve seconds it
    added to the grid's own solve counter, so the split can move that time from the
    controllers to the grid.
    """
    tally = {"total_s": 0.0, "solve_s": 0.0, "calls": 0}
    original = grid.estimate_sensitivity

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        solve_before = grid.summary()["solve_s"]
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            tally["total_s"] += time.perf_counter() - start
            tally["solve_s"] += grid.summary()["solve_s"] - solve_before
            tally["calls"] += 1

    grid.estimate_sensitivity = wrapper
    try:
        yield tally
    finally:
        del grid.estimate_sensitivity


def timing_split(built: Any, result: Any, sensitivity: dict[str, float]) -> dict[str, float]:
    """Seconds of one timed run by part (they add up to the run's wall time)."""
    per_component = result.meta["timing_s"]
    phases = result.meta["timing_phases_s"]
    grid_name = built.grid.name
    grid_summary = result.meta["summary"][grid_name]
    datacenter = sum(per_component[name] for name in built.sites)
    grid_own = per_component[grid_name]
    controllers = sum(t for name, t in per_component.items() if name != grid_name and name not in built.sites)
    solve = grid_summary["solve_s"]
    return {
        "datacenter": datacenter,
        "grid_solve": solve,
        "grid_rest": grid_own + sensitivity["total_s"] - solve,
        "controllers": controllers - sensitivity["total_s"],
        "kernel": phases["simulate"] - (datacenter + grid_own + controllers),
        "setup": phases["setup"],
        "collect": phases["collect"],
        "total": phases["setup"] + phases["simulate"] + phases["collect"],
    }


def site_power_kw(built: Any, result: Any) -> Any:
    """Recorded per-phase site power, shape (grid steps, sites, 3), kW."""
    frame = result.table(f"{built.grid.name}/site_power")
    n_sites = len(built.scenario.sites)
    values = frame[["kw_a", "kw_b", "kw_c"]].to_numpy(dtype=float)
    return values.reshape(len(values) // n_sites, n_sites, 3)


def interleaved_runs(built: Any, result: Any, n_solves: int, repeats: int) -> dict[str, Any]:
    """`repeats` pairs, each a warm run followed at once by one floor pass (so a pair sees the
    same machine speed): the run's seconds, the floor's (on the run's own circuit, its solves
    alone, and on the bare feeder with only the site loads for comparison with earlier
    figures), and the ratio of each pair."""
    from g2gsim.grid.config import tan_phi

    power = site_power_kw(built, result)
    ratios = [tan_phi(site.power_factor) for site in built.scenario.sites]
    circuit, batch, rows, schedule = _run_circuit(built, power, ratios)
    dispatch = _storage_dispatch(built, result, power.shape[0])
    feeder_engine, feeder_loads = _bare_feeder(built)
    walls, totals, solves, bare = [], [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        built.simulation.run()
        walls.append(time.perf_counter() - start)
        total, solve = _circuit_loop(
            circuit, batch, rows, schedule, n_solves, dispatch, bool(built.grid.config.storage)
        )
        totals.append(total)
        solves.append(solve)
        bare.append(_floor_loop(feeder_engine, feeder_loads, ratios, power, n_solves))
    batch.close()
    return {
        "warm_runs_s": walls,
        "warm_median_s": bu.median(walls),
        "floor_s": bu.median(totals),
        "floor_solve_only_s": bu.median(solves),
        "floor_bare_feeder_s": bu.median(bare),
        "pair_ratios": [w / f for w, f in zip(walls, totals, strict=True)],
        "n_solves": n_solves,
    }


def _storage_dispatch(built: Any, result: Any, n_steps: int) -> dict[int, list[tuple[str, float, float]]]:
    """The run's battery set-points (its ``storage_power`` events) by the grid step that wrote them."""
    if not built.grid.config.storage:
        return {}
    period = float(built.grid.config.period_s)
    events = result.events_of("storage_power")
    dispatch: dict[int, list[tuple[str, float, float]]] = {}
    for time_s, payload in zip(events["time_s"], events["payload"], strict=True):
        k = min(int(round(float(time_s) / period)), n_steps - 1)
        dispatch.setdefault(k, []).append((payload["storage"], float(payload["kw"]), float(payload["kvar"])))
    return dispatch


def _run_circuit(built: Any, power: Any, ratios: list[float]) -> tuple[Any, Any, tuple[Any, Any], list]:
    """The circuit the run solves, compiled as the grid compiles it (feeder, source, site loads,
    generators, external loads, batteries, time mode), at the run's solver settings; a batch
    of all its loads (sites, then injections, as the grid writes them), the kW and kvar rows
    of every step (the recorded site power, the injection profiles), and the solver settings
    of each solve (tight ones at the steps controllers measure, as the grid does)."""
    import numpy as np

    from g2gsim.grid.circuit import compile_and_attach, regulators_by_phase, resolve_tap_key
    from g2gsim.grid.engine import DEFAULT_MAX_ITERATIONS, DEFAULT_TOLERANCE, DSSEngine
    from g2gsim.grid.feeders import load_feeder
    from g2gsim.grid.loads import InjectionProfiles, LoadBatch
    from g2gsim.kernel.time import StepClock

    config = built.grid.config
    engine = DSSEngine()
    circuit, attachments = compile_and_attach(engine, load_feeder(built.scenario.grid.feeder), config, config.sites)
    tolerance = DEFAULT_TOLERANCE if config.tolerance is None else config.tolerance
    iterations = DEFAULT_MAX_ITERATIONS if config.max_iterations is None else config.max_iterations
    engine.set_solver_settings(tolerance, iterations)
    regulators = {r.control: r for r in circuit.regulators()}
    for key, ratio in config.initial_taps.items():  # the run's operating point
        reg = regulators[resolve_tap_key(key, regulators, regulators_by_phase(regulators), built.grid.feeder.name)]
        circuit.set_tap(reg.transformer, reg.winding, float(ratio))
    engine.solve(0.0)
    indices = [i for site in attachments.sites for i in site] + [i for inj in attachments.injections for i in inj]
    batch = LoadBatch(engine, indices)
    n_steps = power.shape[0]
    kw = power.reshape(n_steps, -1)
    kvar = kw * np.repeat(np.asarray(ratios, dtype=float), 3)
    profiles = InjectionProfiles(
        config.generators,
        config.loads,
        StepClock(1, config.period_s).times,  # the grid's step times (its tick is its period here)
        n_steps,
        grid="floor",
    )
    if profiles.width:
        injected = [profiles.row(k) for k in range(n_steps)]
        kw = np.hstack([kw, np.array([row[0] for row in injected])])
        kvar = np.hstack([kvar, np.array([row[1] for row in injected])])
    schedule = [(tolerance, iterations)]
    if config.measurement_tolerance is not None:
        period = float(config.period_s)
        steps = max(1, int(round(float(config.measurement_period_s or 1) / period)))
        tight = (min(tolerance, config.measurement_tolerance), max(iterations, 100))
        schedule = [tight if k % steps == 0 else (tolerance, iterations) for k in range(steps)]
    return circuit, batch, (np.ascontiguousarray(kw), np.ascontiguousarray(kvar)), schedule


def _circuit_loop(
    circuit: Any, batch: Any, rows: tuple[Any, Any], schedule: list, n_solves: int, dispatch: dict, batteries: bool
) -> tuple[float, float]:
    """One pass on the run's circuit: per solve, every load's kW and kvar in one batch write
    (two OpenDSS calls), the batteries' set-points at the steps the run changed them, the
    solver settings when they change, one solve, and with batteries OpenDSS's end-of-step
    energy bookkeeping; (total, solve) s."""
    clock = time.perf_counter
    engine = circuit.engine
    kw_rows, kvar_rows = rows
    n_steps = kw_rows.shape[0]
    kw, kvar = batch.kw, batch.kvar
    current = None
    solve_s = 0.0
    start = clock()
    for k in range(n_solves):
        kw[:] = kw_rows[k % n_steps]
        kvar[:] = kvar_rows[k % n_steps]
        batch.write()
        for name, kw_set, kvar_set in dispatch.get(k % n_steps, ()):
            circuit.set_storage_power(name, kw_set, kvar_set)
        if len(schedule) > 1 and schedule[k % len(schedule)] != current:
            current = schedule[k % len(schedule)]
            engine.set_solver_settings(*current)
        t0 = clock()
        engine.solve(0.1 * k)
        solve_s += clock() - t0
        if batteries:
            circuit.finish_time_step()
    return clock() - start, solve_s


def _bare_feeder(built: Any) -> tuple[Any, list]:
    """The feeder alone with three single-phase constant-PQ loads per site (the floor of the
    README's figures before 2026-12-03: no batteries, generators or external loads)."""
    from g2gsim.grid.engine import DSSEngine
    from g2gsim.grid.feeders import load_feeder

    scenario = built.scenario
    engine = DSSEngine()
    engine.compile_feeder(load_feeder(scenario.grid.feeder))
    if scenario.grid.source_pu is not None:
        engine.run(f"Edit Vsource.source pu={scenario.grid.source_pu}")
    loads = [_site_loads(engine, i, site.bus, site.connection) for i, site in enumerate(scenario.sites)]
    engine.run("Reset")
    engine.run("Set Mode=Time")
    engine.run(f"Set Stepsize={float(scenario.grid.period_s)}s")
    engine.run("Set ControlMode=Off")
    engine.solve(0.0)
    return engine, loads


def _site_loads(engine: Any, i: int, bus: str, connection: str) -> tuple[int, int, int]:
    """Three single-phase constant-PQ loads at `bus` (as the grid attaches a site)."""
    dss = engine.dss
    dss.Circuit.SetActiveBus(bus)
    kv = float(dss.Bus.kVBase()) * (math.sqrt(3.0) if connection == "delta" else 1.0)
    names = [f"floor{i}_{letter}" for letter in "abc"]
    for phase, name in enumerate(names, start=1):
        engine.run(f"New Load.{name} bus1={bus}.{phase} phases=1 conn={connection} kV={kv:.6f} kW=0 kvar=0 model=1")
    return tuple(engine.load_index(name) for name in names)  # type: ignore[return-value]


def _floor_loop(engine: Any, loads: list, ratios: list, power: Any, n_solves: int) -> float:
    """One pass on the bare feeder: per solve, write every site load (element API) and solve; s."""
    clock = time.perf_counter
    n_steps = power.shape[0]
    start = clock()
    for k in range(n_solves):
        row = power[k % n_steps]
        for s, indices in enumerate(loads):
            tphi = ratios[s]
            for j, index in enumerate(indices):
                kw = float(row[s, j])
                engine.set_load_kw_kvar(index, kw, kw * tphi)
        engine.solve(0.1 * k)
    return clock() - start


def worker(name: str, horizon: float, repeats: int) -> dict[str, Any]:
    """Everything measured for one scenario, in this (fresh) process."""
    start = time.perf_counter()
    from g2gsim.scenarios.build import build_simulation
    from g2gsim.scenarios.library import load_scenario

    import_s = time.perf_counter() - start
    rss_import = bu.peak_rss_mb()
    scenario = load_scenario(name).with_overrides(horizon_s=horizon)
    start = time.perf_counter()
    built = build_simulation(scenario)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    built.simulation.run()
    cold_s = time.perf_counter() - start
    with timed_sensitivity(built.grid) as sensitivity:
        timed = built.simulation.run(timing=True)
    split = timing_split(built, timed, sensitivity)
    grid_summary = timed.meta["summary"][built.grid.name]
    # The same load changes as the run: one solve per grid step at least (a preset that
    # solves on change skips most of them, but its loads still change every step).
    n_floor = max(int(grid_summary["n_solves"]), int(grid_summary["n_steps"]))
    timings = interleaved_runs(built, timed, n_floor, repeats)
    return {
        "scenario": name,
        "feeder": scenario.grid.feeder,
        "n_sites": len(scenario.sites),
        "n_controllers": len(scenario.controllers),
        "horizon_s": horizon,
        "import_s": import_s,
        "build_s": build_s,
        "cold_run_s": cold_s,
        "split_s": split,
        "component_s": timed.meta["timing_s"],
        "sensitivity": sensitivity,
        "grid_summary": {k: v for k, v in grid_summary.items() if isinstance(v, int | float)},
        "n_solves_made": int(grid_summary["n_solves"]),
        **timings,
        "rss_after_import_mb": rss_import,
        "rss_peak_mb": bu.peak_rss_mb(),
    }


def memory_worker(name: str, horizon: float) -> dict[str, Any]:
    """Peak RSS of a fresh process that builds and runs one scenario once."""
    from g2gsim.scenarios.build import build_simulation
    from g2gsim.scenarios.library import load_scenario

    rss_import = bu.peak_rss_mb()
    scenario = load_scenario(name).with_overrides(horizon_s=horizon)
    start = time.perf_counter()
    build_simulation(scenario).simulation.run()
    return {
        "scenario": name,
        "feeder": scenario.grid.feeder,
        "horizon_s": horizon,
        "wall_s": time.perf_counter() - start,
        "rss_after_import_mb": rss_import,
        "rss_peak_mb": bu.peak_rss_mb(),
    }


# -- driver ------------------------------------------------------------------------------------
def spawn(*args: str) -> dict[str, Any]:
    """Run this script as a worker subprocess and return the JSON it prints."""
    process = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if process.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)} failed:\n{process.stderr[-3000:]}")
    return bu.last_json_line(process.stdout)


def per_hour(seconds: float, horizon: float) -> float:
    """Seconds for `horizon` simulated seconds, scaled to one simulated hour."""
    return seconds * HOUR_S / horizon


def headline_table(rows: list[dict[str, Any]]) -> str:
    """Wall per simulated hour, cold start, solver floor and memory, one row per scenario."""
    headers = [
        "scenario",
        "sites",
        "wall s/h (median)",
        "cold 1st run s",
        "import+build s",
        "solves made",
        "floor solves",
        "floor s/h",
        "end-to-end / floor",
        "pair ratios (min-max)",
        f"<= {FLOOR_TARGET:g}x",
        "solve-only floor s/h",
        "bare-feeder floor s/h",
        "end-to-end / bare feeder",
        "peak RSS MB",
    ]
    body = []
    for r in rows:
        h = r["horizon_s"]
        wall = per_hour(r["warm_median_s"], h)
        floor = per_hour(r["floor_s"], h)
        body.append(
            [
                r["scenario"],
                r["n_sites"],
                wall,
                r["cold_run_s"],
                r["import_s"] + r["build_s"],
                r.get("n_solves_made", r["n_solves"]),
                r["n_solves"],
                floor,
                wall / floor,
                f"{min(r['pair_ratios']):.2f}-{max(r['pair_ratios']):.2f}",
                "met" if wall / floor <= FLOOR_TARGET else "NOT met",
                per_hour(r["floor_solve_only_s"], h),
                per_hour(r["floor_bare_feeder_s"], h),
                wall / per_hour(r["floor_bare_feeder_s"], h),
                r["rss_peak_mb"],
            ]
        )
    return bu.markdown_table(headers, body)


SPLIT_PARTS = ("datacenter", "grid_solve", "grid_rest", "controllers", "kernel", "setup", "collect")


def floor_verdict(rows: list[dict[str, Any]]) -> str:
    """One line: how many presets are within the floor target, and the worst ratio."""
    ratios = {r["scenario"]: r["warm_median_s"] / r["floor_s"] for r in rows}
    if not ratios:
        return "no scenarios"
    worst = max(ratios, key=ratios.__getitem__)
    met = sum(1 for v in ratios.values() if v <= FLOOR_TARGET)
    verdict = "met" if met == len(ratios) else "NOT met"
    return (
        f"end-to-end / floor <= {FLOOR_TARGET:g}x: {met} of {len(ratios)} presets ({verdict}); "
        f"range {min(ratios.values()):.2f}-{ratios[worst]:.2f}x, worst {worst}"
    )


def split_table(rows: list[dict[str, Any]]) -> str:
    """The timed run's split, seconds per simulated hour (and the timed total)."""
    headers = ["scenario", *SPLIT_PARTS, "timed total", "untimed median"]
    body = []
    for r in rows:
        h, split = r["horizon_s"], r["split_s"]
        body.append(
            [
                r["scenario"],
                *(per_hour(split[p], h) for p in SPLIT_PARTS),
                per_hour(split["total"], h),
                per_hour(r["warm_median_s"], h),
            ]
        )
    return bu.markdown_table(headers, body)


def memory_table(rows: list[dict[str, Any]]) -> str:
    """Peak RSS of one-hour runs, against the target where there is one."""
    headers = ["scenario", "simulated s", "wall s", "RSS after import MB", "peak RSS MB", "target MB", "ok"]
    body = []
    for r in rows:
        target = MEMORY_TARGET_MB.get(r["feeder"])
        ok = "" if target is None else ("yes" if r["rss_peak_mb"] < target else "NO")
        body.append(
            [r["scenario"], r["horizon_s"], r["wall_s"], r["rss_after_import_mb"], r["rss_peak_mb"], target, ok]
        )
    return bu.markdown_table(headers, body)


def choose(option: str | None, default: tuple[str, ...], every: list[str]) -> list[str]:
    """Scenario names from an option: None -> default, "all", "none", or a comma list."""
    if option is None:
        return list(default)
    if option == "all":
        return list(every)
    if option == "none":
        return []
    names = [n.strip() for n in option.split(",") if n.strip()]
    unknown = sorted(set(names) - set(every))
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; bundled: {every}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one scenario per feeder, 60 s, one repeat")
    parser.add_argument("--horizon", type=float, default=None, help="simulated seconds per run (default 600)")
    parser.add_argument("--repeats", type=int, default=None, help="warm runs per scenario (default 3)")
    parser.add_argument("--scenarios", default=None, help='comma list or "all" (default all; --quick: one per feeder)')
    parser.add_argument(
        "--memory-scenarios",
        default=None,
        help='one-hour memory runs: comma list, "all" or "none" (default one per feeder)',
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    horizon = args.horizon or (60.0 if args.quick else 600.0)
    repeats = args.repeats or (1 if args.quick else 3)
    if args.worker:
        print(json.dumps(worker(args.worker, horizon, repeats)))
        return
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, horizon)))
        return

    from g2gsim.scenarios.library import bundled_scenarios, load_scenario

    # Live presets run in wall-clock time against real servers: nothing to benchmark here.
    every = [name for name in bundled_scenarios() if not load_scenario(name).is_live]
    scenarios = choose(args.scenarios, QUICK_SCENARIOS if args.quick else tuple(every), every)
    memory = choose(args.memory_scenarios, ("ieee13_ofo_tapchange",) if args.quick else QUICK_SCENARIOS, every)
    info = bu.machine_info()
    rows = []
    for name in scenarios:
        print(f"[end-to-end] {name} ({horizon:g} s x {repeats})", file=sys.stderr, flush=True)
        rows.append(spawn("--worker", name, "--horizon", str(horizon), "--repeats", str(repeats)))
    memory_rows = []
    for name in memory:
        print(f"[memory] {name} (one simulated hour)", file=sys.stderr, flush=True)
        memory_rows.append(spawn("--memory-worker", name, "--horizon", str(HOUR_S)))
    info["load_average_end"] = list(__import__("os").getloadavg())
    tables = {
        "headline": headline_table(rows),
        "split_s_per_hour": split_table(rows),
        "memory_one_hour": memory_table(memory_rows),
    }
    print(
        f"## End to end ({horizon:g} s simulated, median of {repeats}; {info['cpu_count']} CPUs, "
        f"{info['platform']}, {info['date_utc']}; noise drawn ahead on a helper thread: "
        f"{'yes' if info['noise_drawn_ahead'] else 'no'})\n"
    )
    print(tables["headline"] + "\n")
    tables["floor_verdict"] = floor_verdict(rows)
    print(tables["floor_verdict"] + "\n")
    print("### Split of one timed run, seconds per simulated hour\n")
    print(tables["split_s_per_hour"] + "\n")
    print("### Peak memory of a one-hour run (fresh process)\n")
    print(tables["memory_one_hour"])
    path = bu.write_results(
        "end_to_end",
        {
            "machine": info,
            "horizon_s": horizon,
            "repeats": repeats,
            "scenarios": rows,
            "memory_one_hour": memory_rows,
            "tables": tables,
        },
        quick=args.quick,
    )
    print(f"\nwrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
