"""Screening with a reused compiled circuit (issue 9, item 3): reset cost and short-run sweeps.

1. **Reset** of the grid component, per feeder (IEEE 13, 34 and 123 OFO presets, and IEEE 123
   with four batteries), median over ``--repeats`` runs (default 20; at least 10) after a
   warm-up, three ways:

   - *new engine*: a grid as ``g2gsim run`` builds it (a new OpenDSS context, compile, attach);
   - *compile*: the worker's engine reused, the feeder recompiled and re-attached every run
     (what screening did before);
   - *reused*: the worker's engine and its compiled circuit reused (screening now): restore
     the snapshot, ``Init``, initial taps, first solve.

   Each reused run is checked to give the same voltages, bit for bit, as a compiled one.
2. **Short-run sweep**: serial sweeps of short runs through :func:`run_screening` (the
   function every sweep worker calls) with circuit reuse off and on, per feeder and horizon
   (``--runs`` runs varying the seed, two alternating rounds per mode): median wall per run,
   the saving per run and in per cent, and whether every run's metrics are equal in both
   modes. Then one :func:`run_sweep` (serial,
   results written to disk) of the IEEE 13 OFO sweep of ``bench_sweep.py`` (10 simulated
   seconds a run) with reuse off and on, twice in alternation, the best wall of each.

Run: ``python benchmarks/bench_screening.py [--quick]``; writes
``benchmarks/results/screening.json`` (``screening_quick.json`` with ``--quick``) and prints
Markdown tables.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import tempfile
import time
from typing import Any

import numpy as np

import _benchutil as bu
from g2gsim.grid.engine import DSSEngine
from g2gsim.scenarios import Scenario, build_simulation, load_scenario
from g2gsim.studies import run_sweep, screening

FEEDERS = {
    "ieee13": "ieee13_ofo_tapchange",
    "ieee34": "ieee34_ofo_tapchange",
    "ieee123": "ieee123_ofo_tapchange",
    "ieee123 + 4 batteries": "ieee123_storage_qv",
}


def timed_reset(scenario: Scenario, engine: DSSEngine | None, reuse: bool) -> tuple[float, np.ndarray, bool]:
    """One run of `scenario` (keep it short) with the grid's reset timed; its voltages."""
    built = build_simulation(scenario)
    grid = built.grid
    if engine is not None:
        grid._engine = engine
    grid.reuse_circuit = reuse
    reset = grid.reset
    elapsed = []

    def timed(ctx: Any) -> None:
        start = time.perf_counter()
        reset(ctx)
        elapsed.append(time.perf_counter() - start)

    grid.reset = timed  # type: ignore[method-assign]
    try:
        result = built.simulation.run()
    finally:
        if grid._loads is not None:
            grid._loads.close()
            grid._loads = None
    return elapsed[0], result.table(f"{scenario.grid.name}/voltages").to_numpy(), grid.circuit_reused


def reset_benchmark(repeats: int) -> list[dict[str, Any]]:
    rows = []
    for feeder, name in FEEDERS.items():
        scenario = load_scenario(name).with_overrides(horizon_s=0.5)
        timed_reset(scenario, None, False)  # warm-up: imports, data, fits, feeder tables
        new_engine = [timed_reset(scenario, None, False)[0] for _ in range(repeats)]
        engine = DSSEngine()
        compiled = []
        reference = None
        for _ in range(repeats + 1):
            seconds, voltages, _ = timed_reset(scenario, engine, False)
            compiled.append(seconds)
            reference = voltages
        compiled = compiled[1:]
        timed_reset(scenario, engine, True)  # compiles once and leaves the snapshot
        reused, identical = [], True
        for _ in range(repeats):
            seconds, voltages, was_reused = timed_reset(scenario, engine, True)
            assert was_reused
            reused.append(seconds)
            identical &= bool(np.array_equal(voltages, reference, equal_nan=True))
        rows.append(
            {
                "feeder": feeder,
                "scenario": name,
                "repeats": repeats,
                "new_engine_ms": 1e3 * bu.median(new_engine),
                "compile_ms": 1e3 * bu.median(compiled),
                "reused_ms": 1e3 * bu.median(reused),
                "saving_ms": 1e3 * (bu.median(compiled) - bu.median(reused)),
                "speedup": bu.median(compiled) / bu.median(reused),
                "bit_identical": identical,
            }
        )
    return rows


def _comparable(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "wall_s"}


def sweep_loop(name: str, horizon_s: float, runs: int, rounds: int = 2) -> dict[str, Any]:
    """`runs` short runs (seeds 0..runs-1) through run_screening, circuit reuse off then on,
    `rounds` times in alternation; the median wall per run of each mode (after one untimed
    run per block: a compile block drops the snapshot, so a reuse block starts by compiling)."""
    base = load_scenario(name).with_overrides(horizon_s=horizon_s)
    scenarios = [base.with_overrides(seed=seed) for seed in range(runs)]
    out: dict[str, Any] = {"scenario": name, "horizon_s": horizon_s, "runs": runs, "rounds": rounds}
    walls: dict[str, list[float]] = {"compile": [], "reused": []}
    metrics: dict[str, list[dict[str, Any]]] = {}
    for _ in range(rounds):
        for mode, reuse in (("compile", False), ("reused", True)):
            screening.run_screening(scenarios[-1], reuse_circuit=reuse)  # untimed
            metrics[mode] = []
            for s in scenarios:
                start = time.perf_counter()
                metrics[mode].append(_comparable(screening.run_screening(s, reuse_circuit=reuse)))
                walls[mode].append(time.perf_counter() - start)
    for mode, values in walls.items():
        out[f"wall_per_run_s_{mode}"] = bu.median(values)
    out["saving_per_run_ms"] = 1e3 * (out["wall_per_run_s_compile"] - out["wall_per_run_s_reused"])
    out["saving_pct"] = 100.0 * (1.0 - out["wall_per_run_s_reused"] / out["wall_per_run_s_compile"])
    out["metrics_identical"] = metrics["compile"] == metrics["reused"]
    return out


def run_sweep_benchmark(n_steps: int, n_seeds: int, horizon_s: float) -> dict[str, Any]:
    """bench_sweep.py's IEEE 13 OFO sweep, serial, with circuit reuse off and on (best of two)."""
    sweep = bu.ieee13_step_sweep(n_steps, n_seeds, horizon_s)
    n = len(sweep.tasks())
    original = screening.run_screening
    screening.run_screening(sweep.base_scenario())  # warm-up
    root = tempfile.mkdtemp(prefix="g2g_bench_screening_")
    out: dict[str, Any] = {"base": "ieee13_ofo_notap", "runs": n, "horizon_s": horizon_s}
    try:
        for round_ in range(2):  # alternating, the best of two per mode
            for mode, reuse in (("compile", False), ("reused", True)):
                screening.run_screening = functools.partial(original, reuse_circuit=reuse)  # what execute_task calls
                start = time.perf_counter()
                result = run_sweep(sweep, f"{root}/{mode}{round_}", progress=False)
                wall = time.perf_counter() - start
                out[f"wall_s_{mode}"] = min(wall, out.get(f"wall_s_{mode}", wall))
                out[f"ok_{mode}"] = result.n_ok
    finally:
        screening.run_screening = original
        shutil.rmtree(root, ignore_errors=True)
    out["saving_per_run_ms"] = 1e3 * (out["wall_s_compile"] - out["wall_s_reused"]) / n
    out["saving_pct"] = 100.0 * (1.0 - out["wall_s_reused"] / out["wall_s_compile"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 repeats, 5 runs per sweep, a 20-run run_sweep")
    parser.add_argument("--repeats", type=int, default=None, help="resets per feeder and mode (at least 10)")
    parser.add_argument("--runs", type=int, default=None, help="runs per short-run sweep")
    args = parser.parse_args()
    repeats = max(10, args.repeats or (10 if args.quick else 20))
    runs = args.runs or (5 if args.quick else 10)
    resets = reset_benchmark(repeats)
    loops = [
        sweep_loop(name, horizon, runs)
        for name in ("ieee13_ofo_tapchange", "ieee34_ofo_tapchange", "ieee123_ofo_tapchange")
        for horizon in (1.0, 10.0)
    ]
    sweep = run_sweep_benchmark(*((5, 4) if args.quick else (10, 10)), horizon_s=10.0)

    print(f"\n## Grid reset per run (median of {repeats})\n")
    print(
        bu.markdown_table(
            ["feeder", "new engine (ms)", "compile (ms)", "reused (ms)", "saving (ms)", "speed-up", "bit-identical"],
            [
                [
                    r["feeder"],
                    r["new_engine_ms"],
                    r["compile_ms"],
                    r["reused_ms"],
                    r["saving_ms"],
                    r["speedup"],
                    r["bit_identical"],
                ]
                for r in resets
            ],
        )
    )
    print(f"\n## Short-run sweeps through run_screening (median of 2 x {runs} runs per mode, serial)\n")
    print(
        bu.markdown_table(
            [
                "scenario",
                "horizon (s)",
                "per run, compile (s)",
                "per run, reused (s)",
                "saving per run (ms)",
                "saving (%)",
                "metrics identical",
            ],
            [
                [
                    r["scenario"],
                    r["horizon_s"],
                    r["wall_per_run_s_compile"],
                    r["wall_per_run_s_reused"],
                    r["saving_per_run_ms"],
                    r["saving_pct"],
                    r["metrics_identical"],
                ]
                for r in loops
            ],
        )
    )
    print(f"\n## run_sweep, serial: {sweep['runs']} IEEE 13 OFO runs of {sweep['horizon_s']:g} s\n")
    print(
        bu.markdown_table(
            ["circuit reuse", "wall (s)", "ok"],
            [
                ["off (compile)", sweep["wall_s_compile"], sweep["ok_compile"]],
                ["on (reused)", sweep["wall_s_reused"], sweep["ok_reused"]],
            ],
        )
    )
    print(
        f"\nsaving {sweep['saving_per_run_ms']:.2f} ms per run ({sweep['saving_pct']:.1f} %); "
        f"load average {bu.machine_info()['load_average_1_5_15']}"
    )
    path = bu.write_results(
        "screening",
        {
            "machine": bu.machine_info(),
            "resets": resets,
            "short_run_sweeps": loops,
            "run_sweep": sweep,
            "quick": args.quick,
        },
        quick=args.quick,
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
