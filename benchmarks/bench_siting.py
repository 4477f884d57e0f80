"""OpenG2G's IEEE 123 siting study through the screening pipeline, sampled and projected.

The study: OpenG2G documents an IEEE 123 siting sweep of 15,225 one-hour runs (every
three-phase bus x its seeds). Here it is the ``ieee123_ofo_tapchange`` preset reduced to its
first site and that site's OFO controller (as ``bench_sweep.py`` defines it), one simulated
hour per run, the site moved to each of the feeder's 64 candidate three-phase buses, with
ceil(15,225 / 64) = 238 seeds per bus; runs are ranked by ``integral_violation_pu_s``.

1. **Surrogate choice** (``--compare N``, default 6; 0 skips): N runs of the sample, each
   exact (0.1 s grid and datacenter steps, 1 s OFO, full power flow) and on four candidate
   surrogates (linearised grid; 1 s steps; 5 s steps; 5 s steps + linearised grid): seconds
   per run and the error of the ranking metric, serial, in this process.
2. **Pipeline**: a random sample of ``--sample`` (default 300) of the study's (bus, seed) runs,
   sorted by bus (a worker keeps one compiled circuit per bus), run end to end through
   :func:`g2gsim.studies.surrogate.screen_sweep` on 2 worker processes: every run on the
   surrogate (``--step``, default 10 s: the comparison's cheapest surrogate with the smallest
   error around its median), ``--calibration`` (default 40) exact calibration runs, the exact
   re-runs.
   Printed: each pass's wall, per-run surrogate and exact worker seconds, the error bound, the
   Spearman rank correlation on the calibration sample, and the count of exact re-runs.
3. **Projection** to the full 15,225 runs on 2 workers: the surrogate and re-run passes' walls
   scaled by 15,225 / sample (re-runs: the same fraction of the study), the calibration pass
   as measured (its size does not grow with the study); also the conservative figure with the
   calibration scaled too. The machine is shared with other jobs, so the same projection is
   also made from the runs' CPU seconds (each row's ``worker_cpu_s``) over 2 workers: what
   the work takes on two unshared cores (pool start-up and row writing are not in it).

Run: ``python benchmarks/bench_siting.py [--sample N] [--calibration N] [--compare N]``;
writes ``benchmarks/results/siting.json`` and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from typing import Any

import numpy as np

import _benchutil as bu
from bench_sweep import single_site_ieee123
from g2gsim.studies.screening import run_screening
from g2gsim.studies.studies import candidate_buses
from g2gsim.studies.surrogate import ScreenOptions, screen_sweep, surrogate_overrides
from g2gsim.studies.sweep import sweep_from_points

OPENG2G_RUNS = 15_225
METRIC = "integral_violation_pu_s"
WORKERS = 2
#: Surrogates compared in step 1: (name, coarse step in s or None, linearised grid).
SURROGATES = (
    ("linearised", None, True),
    ("1 s steps", 1.0, False),
    ("5 s steps", 5.0, False),
    ("5 s + lin.", 5.0, True),
    ("10 s steps", 10.0, False),
)


def study_points(sample: int, seed: int) -> tuple[list[dict[str, Any]], int, int]:
    """`sample` (bus, seed) points of the study drawn without replacement, sorted by bus."""
    base = single_site_ieee123(3600.0)
    buses = candidate_buses(base)
    seeds = math.ceil(OPENG2G_RUNS / len(buses))
    rng = np.random.default_rng(seed)
    flat = rng.choice(len(buses) * seeds, size=sample, replace=False)
    pairs = sorted((int(i) // seeds, int(i) % seeds) for i in flat)
    return [{"sites.0.bus": buses[b], "seed": s} for b, s in pairs], len(buses), seeds


def compare_surrogates(points: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Seconds per run and metric error of each candidate surrogate on `n` of the points."""
    base = single_site_ieee123(3600.0)
    run_screening(base.with_overrides(horizon_s=10))  # warm-up
    rows: dict[str, dict[str, list[float]]] = {name: {"s": [], "err": []} for name, *_ in SURROGATES}
    exact_s = []
    for point in points[:: max(1, len(points) // n)][:n]:
        scenario = base.with_changes(point)
        start = time.perf_counter()
        exact = float(run_screening(scenario)["integral_violation_pu_s"])
        exact_s.append(time.perf_counter() - start)
        for name, step, linear in SURROGATES:
            coarse = scenario.with_changes(surrogate_overrides(scenario, step)) if step else scenario
            start = time.perf_counter()
            value = float(run_screening(coarse, linearized=linear)["integral_violation_pu_s"])
            rows[name]["s"].append(time.perf_counter() - start)
            rows[name]["err"].append(value - exact)
    out = [{"surrogate": "exact", "runs": len(exact_s), "s_per_run": bu.median(exact_s), "speedup": 1.0}]
    for name, got in rows.items():
        err = np.asarray(got["err"])
        out.append(
            {
                "surrogate": name,
                "runs": len(exact_s),
                "s_per_run": bu.median(got["s"]),
                "speedup": bu.median(exact_s) / bu.median(got["s"]),
                "max_abs_error": float(np.abs(err).max()),
                "mean_error": float(err.mean()),
                "centred_max_error": float(np.abs(err - np.median(err)).max()),  # what the bound sees
            }
        )
    return out


def pipeline(points: list[dict[str, Any]], calibration: int, confidence: float, step_s: float) -> dict[str, Any]:
    """The sampled study through screen_sweep on 2 worker processes; walls, counts and the report."""
    base = single_site_ieee123(3600.0)
    run_screening(base.with_overrides(horizon_s=10))  # warm-up before the pools fork
    sweep = sweep_from_points(base, points, name="ieee123 siting sample")
    options = ScreenOptions(sample=calibration, confidence=confidence, step_s=step_s)
    root = tempfile.mkdtemp(prefix="g2g_bench_siting_")
    try:
        start = time.perf_counter()
        result = screen_sweep(sweep, root, metric=METRIC, options=options, workers=WORKERS, progress=False)
        wall = time.perf_counter() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = result.screening
    assert report is not None
    table = result.table
    return {
        "sample": len(points),
        "wall_s": wall,
        "pass_wall_s": report.wall_s,
        "report": report.to_dict(),
        "n_ok": result.n_ok,
        "n_failed": result.n_failed,
        "n_exact_rows": int(table["exact"].sum()),
    }


def project(run: dict[str, Any]) -> dict[str, float]:
    """Hours for the full study on 2 workers: from the sampled pipeline's pass walls (on the
    machine as shared), and from its runs' CPU seconds / 2 (the same work on 2 unshared cores)."""
    walls, scale = run["pass_wall_s"], OPENG2G_RUNS / run["sample"]
    scaled = (walls["surrogate"] + walls["reruns"]) * scale
    cpu = run["report"]["cpu_s"]
    cpu_total = (cpu["surrogate"] + cpu["reruns"]) * scale + cpu["calibration"]
    return {
        "study_h_cpu": cpu_total / WORKERS / 3600.0,
        "scale": scale,
        "study_h": (scaled + walls["calibration"]) / 3600.0,
        "study_h_calibration_scaled": (scaled + walls["calibration"] * scale) / 3600.0,
        "surrogate_h": walls["surrogate"] * scale / 3600.0,
        "calibration_h": walls["calibration"] / 3600.0,
        "reruns_h": walls["reruns"] * scale / 3600.0,
        "exact_only_h": OPENG2G_RUNS * run["report"]["exact_run_s"] / WORKERS / 3600.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", type=int, default=300, help="runs of the study to sample (default 300)")
    parser.add_argument("--calibration", type=int, default=40, help="exact calibration runs (default 40)")
    parser.add_argument("--confidence", type=float, default=0.95, help="coverage of the error bound")
    parser.add_argument("--step", type=float, default=10.0, help="surrogate step, s (default 10: see the comparison)")
    parser.add_argument("--compare", type=int, default=6, help="runs for the surrogate comparison (0: skip)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample draw")
    args = parser.parse_args()
    points, n_buses, n_seeds = study_points(args.sample, args.seed)
    comparison = compare_surrogates(points, args.compare) if args.compare > 0 else []
    run = pipeline(points, args.calibration, args.confidence, args.step)
    projection = project(run)
    report = run["report"]
    machine = bu.machine_info()

    if comparison:
        print(f"\n## Surrogate choice: {args.compare} one-hour IEEE 123 siting runs, serial\n")
        print(
            bu.markdown_table(
                ["surrogate", "s per run", "speed-up", f"max |error| {METRIC}", "mean error", "max |error - median|"],
                [
                    [
                        r["surrogate"],
                        r["s_per_run"],
                        r["speedup"],
                        r.get("max_abs_error"),
                        r.get("mean_error"),
                        r.get("centred_max_error"),
                    ]
                    for r in comparison
                ],
            )
        )
    print(
        f"\n## Screening pipeline: {run['sample']} sampled runs of {n_buses} buses x {n_seeds} seeds, "
        f"{WORKERS} worker processes, surrogate steps {args.step:g} s\n"
    )
    print(
        bu.markdown_table(
            ["pass", "wall (s)"],
            [[name, wall] for name, wall in run["pass_wall_s"].items()] + [["total", run["wall_s"]]],
        )
    )
    print(
        f"\nerror bound ({METRIC}) {report['bound']:.4g} at confidence {args.confidence} from "
        f"{report['n_calibration']} exact runs; largest calibration error {report['max_abs_error']:.4g}, "
        f"mean {report['mean_error']:+.4g}; Spearman rank correlation {report['spearman']:.4f}"
    )
    print(
        f"exact re-runs {report['n_rerun']} of {run['sample']} ({100 * report['n_rerun'] / run['sample']:.1f}%), "
        f"exact rows {run['n_exact_rows']} ({100 * run['n_exact_rows'] / run['sample']:.1f}%, with calibration); "
        f"per run: surrogate {report['surrogate_run_s']:.3f} s, exact {report['exact_run_s']:.3f} s (worker wall); "
        f"surrogate {report['surrogate_cpu_s']:.3f} s, exact {report['exact_cpu_s']:.3f} s (worker CPU)"
    )
    print(f"\n## OpenG2G's IEEE 123 siting study ({OPENG2G_RUNS:,} one-hour runs), projected on {WORKERS} workers\n")
    print(
        bu.markdown_table(
            ["what", "hours"],
            [
                ["screened study (surrogate + calibration + re-runs), pass walls", projection["study_h"]],
                ["screened study, CPU seconds of its runs / 2 (2 unshared cores)", projection["study_h_cpu"]],
                ["  surrogate pass", projection["surrogate_h"]],
                ["  calibration pass (fixed size)", projection["calibration_h"]],
                ["  exact re-runs (same fraction)", projection["reruns_h"]],
                ["screened, calibration scaled with the study too", projection["study_h_calibration_scaled"]],
                ["every run exact (median exact run / 2 workers)", projection["exact_only_h"]],
            ],
        )
    )
    print(f"\nmachine shared with other jobs: load average {machine['load_average_1_5_15']}")
    path = bu.write_results(
        "siting",
        {
            "machine": machine,
            "study": {"runs": OPENG2G_RUNS, "buses": n_buses, "seeds_per_bus": n_seeds, "metric": METRIC},
            "args": vars(args),
            "surrogate_comparison": comparison,
            "pipeline": run,
            "projection": projection,
        },
        quick=False,
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
