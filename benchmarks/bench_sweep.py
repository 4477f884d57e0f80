"""Sweeps at scale: serial vs 2 local processes vs a 2-worker Dask LocalCluster; siting projection.

1. **Executors**: one sweep of IEEE 13 OFO runs (``ieee13_ofo_notap``, 10 simulated seconds
   each; 10 primal step sizes x 20 seeds = 200 runs; ``--quick``: 5 x 4 = 20) run three
   times into fresh folders: serially in this process (after one warm-up run), on a
   2-process pool (``workers=2``, forked from the warmed process; pool start-up included)
   and on a 2-worker Dask ``LocalCluster`` (processes, one thread each; cluster start-up and
   a warm-up run per worker reported separately as start-up).
   Reported: wall, wall per run, speed-up over serial, and the overhead per run,
   (wall x workers - serial wall) / runs: what each run costs beyond its own compute.
2. **Siting projection**: OpenG2G's documented IEEE 123 siting study is 15,225 one-hour runs
   (about 30 s each, 127 h). One one-hour IEEE 123 single-site run is timed here (the
   ``ieee123_ofo_tapchange`` preset reduced to its first site and that site's OFO;
   ``--quick``: 600 s, scaled x6), with full power flow and with the linearised grid, and
   the study's time projected for 1 and 2 workers and for a 64-worker cluster (ideal
   scaling plus the measured per-run overhead).
3. **Linearised grid error**: every bundled scenario without batteries, full power flow vs
   linearised grid over 300 s (``--quick``: 60 s): largest and mean voltage difference and
   the headline metrics of both.

Run: ``python benchmarks/bench_sweep.py [--quick]``; writes ``benchmarks/results/sweep.json``
(``sweep_quick.json`` with ``--quick``) and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import _benchutil as bu
from g2gsim.scenarios import Scenario, load_scenario
from g2gsim.studies import run_sweep
from g2gsim.studies.screening import measure_linear_error, run_screening, warm_up

OPENG2G_RUNS = 15_225
OPENG2G_S_PER_RUN = 30.0


def executor_benchmark(n_steps: int, n_seeds: int, horizon_s: float) -> list[dict[str, Any]]:
    import distributed

    sweep = bu.ieee13_step_sweep(n_steps, n_seeds, horizon_s)
    n = len(sweep.tasks())
    root = Path(tempfile.mkdtemp(prefix="g2g_bench_sweep_"))
    rows = []
    try:
        run_screening(sweep.base_scenario())  # warm-up of this process (data, fits, imports)
        start = time.perf_counter()
        serial = run_sweep(sweep, root / "serial", progress=False)
        serial_wall = time.perf_counter() - start
        rows.append(
            {"executor": "serial", "workers": 1, "runs": n, "ok": serial.n_ok, "wall_s": serial_wall, "startup_s": 0.0}
        )
        start = time.perf_counter()
        procs = run_sweep(sweep, root / "processes", workers=2, progress=False)
        rows.append(
            {
                "executor": "2 local processes",
                "workers": 2,
                "runs": n,
                "ok": procs.n_ok,
                "wall_s": time.perf_counter() - start,
                "startup_s": None,
            }
        )
        start = time.perf_counter()
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
        client.run(warm_up)  # imports, data and fits in each worker, as a forked pool inherits them
        startup = time.perf_counter() - start
        try:
            start = time.perf_counter()
            on_dask = run_sweep(sweep, root / "dask", client, progress=False)
            rows.append(
                {
                    "executor": "Dask LocalCluster (2 workers)",
                    "workers": 2,
                    "runs": n,
                    "ok": on_dask.n_ok,
                    "wall_s": time.perf_counter() - start,
                    "startup_s": startup,
                }
            )
        finally:
            client.close()
            cluster.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for row in rows:
        row["wall_per_run_s"] = row["wall_s"] / n
        row["speedup"] = serial_wall / row["wall_s"]
        row["overhead_per_run_s"] = (row["wall_s"] * row["workers"] - serial_wall) / n
    return rows


def single_site_ieee123(horizon_s: float) -> Scenario:
    scenario = load_scenario("ieee123_ofo_tapchange")
    raw = scenario.to_dict()
    site = raw["sites"][0]["name"]
    raw["sites"] = raw["sites"][:1]
    raw["controllers"] = [c for c in raw["controllers"] if c.get("site", site) == site]
    raw["horizon_s"] = horizon_s
    raw["name"] = "ieee123_single_site"
    return Scenario.from_dict(raw)


def siting_projection(horizon_s: float, overhead_per_run_s: float) -> dict[str, Any]:
    scenario = single_site_ieee123(horizon_s)
    run_screening(scenario.with_overrides(horizon_s=10))  # warm-up
    out: dict[str, Any] = {"horizon_s": horizon_s, "scale_to_hour": 3600.0 / horizon_s}
    for mode, linear in (("full", False), ("linearized", True)):
        start = time.perf_counter()
        metrics = run_screening(scenario, linearized=linear)
        wall = time.perf_counter() - start
        per_hour = wall * 3600.0 / horizon_s
        out[f"run_wall_s_{mode}"] = wall
        out[f"per_hour_run_s_{mode}"] = per_hour
        out[f"worst_vmin_{mode}"] = metrics["worst_vmin"]
        for workers in (1, 2, 64):
            out[f"study_h_{mode}_{workers}w"] = (
                OPENG2G_RUNS * (per_hour + max(overhead_per_run_s, 0.0)) / workers / 3600.0
            )
    out["openg2g_study_h"] = OPENG2G_RUNS * OPENG2G_S_PER_RUN / 3600.0
    return out


def _busy(_: int) -> int:
    total = 0
    for i in range(3_000_000):
        total += i
    return total


def cpu_calibration() -> dict[str, float]:
    """Speed-up of a pure-Python busy loop on 2 forked processes: what the machine allows now."""
    import multiprocessing

    start = time.perf_counter()
    for i in range(4):
        _busy(i)
    serial = time.perf_counter() - start
    with multiprocessing.get_context("fork").Pool(2) as pool:
        start = time.perf_counter()
        pool.map(_busy, range(4))
        parallel = time.perf_counter() - start
    return {"serial_s": serial, "two_processes_s": parallel, "speedup": serial / parallel}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 runs, 600 s IEEE 123 run, 60 s error runs")
    args = parser.parse_args()
    n_steps, n_seeds = (5, 4) if args.quick else (10, 20)
    calibration = cpu_calibration()
    rows = executor_benchmark(n_steps, n_seeds, horizon_s=10.0)
    overhead = next(r for r in rows if r["executor"] == "2 local processes")["overhead_per_run_s"]
    projection = siting_projection(600.0 if args.quick else 3600.0, overhead)
    errors = measure_linear_error(horizon_s=60.0 if args.quick else 300.0)

    print("\n## Sweep executors (IEEE 13 OFO, 10 simulated s per run)\n")
    print(
        bu.markdown_table(
            ["executor", "runs", "ok", "wall (s)", "per run (s)", "speed-up", "overhead per run (s)", "start-up (s)"],
            [
                [
                    r["executor"],
                    r["runs"],
                    r["ok"],
                    r["wall_s"],
                    r["wall_per_run_s"],
                    r["speedup"],
                    r["overhead_per_run_s"],
                    r["startup_s"],
                ]
                for r in rows
            ],
        )
    )
    print(
        f"\nCPU calibration (busy loop, 2 forked processes vs serial): speed-up {calibration['speedup']:.2f}"
        f" (2.0 on two idle cores); load average {bu.machine_info()['load_average_1_5_15']}"
    )
    print("\n## OpenG2G IEEE 123 siting study (15,225 one-hour runs), projected\n")
    print(
        bu.markdown_table(
            ["grid", "one-hour run (s)", "1 worker (h)", "2 workers (h)", "64 workers (h)", "OpenG2G (h)"],
            [
                [
                    mode,
                    projection[f"per_hour_run_s_{mode}"],
                    projection[f"study_h_{mode}_1w"],
                    projection[f"study_h_{mode}_2w"],
                    projection[f"study_h_{mode}_64w"],
                    projection["openg2g_study_h"],
                ]
                for mode in ("full", "linearized")
            ],
        )
    )
    print("\n## Linearised grid vs full power flow\n")
    ok = errors[errors.get("max_abs_error_pu").notna()] if "max_abs_error_pu" in errors else errors
    print(
        bu.markdown_table(
            [
                "scenario",
                "max |dV| (pu)",
                "mean |dV| (pu)",
                "viol. time full/lin (s)",
                "worst vmin full/lin",
                "wall full/lin (s)",
            ],
            [
                [
                    r["scenario"],
                    r["max_abs_error_pu"],
                    r["mean_abs_error_pu"],
                    f"{r['violation_time_s_full']:.1f} / {r['violation_time_s_linear']:.1f}",
                    f"{r['worst_vmin_full']:.4f} / {r['worst_vmin_linear']:.4f}",
                    f"{r['wall_s_full']:.2f} / {r['wall_s_linear']:.2f}",
                ]
                for r in ok.to_dict("records")
            ],
        )
    )
    if "skipped" in errors:
        for r in errors[errors["skipped"].notna()].to_dict("records"):
            print(f"- skipped {r['scenario']}: {r['skipped'][:120]}")
    path = bu.write_results(
        "sweep",
        {
            "machine": bu.machine_info(),
            "cpu_calibration": calibration,
            "executors": rows,
            "siting_projection": projection,
            "linear_error": errors.to_dict("records"),
            "quick": args.quick,
        },
        quick=args.quick,
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
