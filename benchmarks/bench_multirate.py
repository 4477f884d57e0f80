"""Wall clock against step periods, command latency, number of sites and horizon.

Three sweeps, each a family of scenarios built programmatically from a bundled preset
(``Scenario.to_dict()`` edited, then ``Scenario.from_dict``) and run in this process:

1. **Periods and latency** (IEEE 13 OFO tap-change preset): (datacenter, grid, control)
   periods of (0.1, 0.1, 1), (0.1, 1, 1), (1, 1, 1) and (0.05, 0.05, 0.5) s, each with an
   instant command link and with ``command_link = {delay_s = 0.5}`` on every controller.
2. **Sites** (IEEE 123 OFO tap-change preset): 1, 4 and 16 sites, one OFO controller each,
   on distinct three-phase buses (the preset's four buses first, then the feeder's other
   three-phase buses from ``FeederTopology.three_phase_buses()``, skipping excluded ones).
   Site i copies preset site i mod 4; beyond four sites, base load, replicas (and ramp
   targets) are scaled by 4 / n so the feeder carries the preset's total load and still
   solves, and each site's GPU capacity is what its models need.
3. **Horizon** (IEEE 13 OFO tap-change preset): 150, 300 and 600 s, with a straight-line fit
   wall = fixed + slope x horizon to show the cost is linear in simulated time.

Each configuration is built once, run once to warm up (data loading, curve fits, caches),
then run ``--repeats`` times (default 3); reported: the median wall s, per simulated hour,
per process step (every datacenter, grid and periodic-controller step of the run) and per
grid step, the number of OpenDSS solves, and what the run's metrics did (violation time and
integral, worst vmin, mean throughput, ITL deadline misses): a schedule is only cheaper if it
still controls. OFO's step sizes act per control step, so the same tuning at a 10 s control
period moves batches ten times less per simulated second than at 1 s (see
:class:`g2gsim.controllers.ofo.OFOConfig`).

Run: ``python benchmarks/bench_multirate.py [--quick] [--horizon 600] [--repeats 3]``.
``--quick`` uses 30 s runs (horizon sweep 15/30/60 s) and one repeat. Writes
``benchmarks/results/multirate.json`` (``multirate_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from fractions import Fraction
from typing import Any

import numpy as np

import _benchutil as bu

HOUR_S = 3600.0
PERIODS = ((0.1, 0.1, 1.0), (0.1, 1.0, 1.0), (1.0, 1.0, 1.0), (0.05, 0.05, 0.5))
DELAYS = (0.0, 0.5)
SITE_COUNTS = (1, 4, 16)
HORIZONS = (150.0, 300.0, 600.0)
IEEE13 = "ieee13_ofo_tapchange"
IEEE123 = "ieee123_ofo_tapchange"
#: What each configuration's run did, beside its cost.
METRIC_KEYS = (
    "violation_time_s",
    "integral_violation_pu_s",
    "worst_vmin",
    "mean_throughput_tps",
    "itl_deadline_fraction",
)
METRIC_HEADERS = ["viol s", "integral pu*s", "worst vmin", "M tok/s", "ITL misses"]


def metric_cells(row: dict[str, Any]) -> list[Any]:
    """A row's metrics as table cells (throughput in M tokens/s)."""
    m = row["metrics"]
    throughput = m.get("mean_throughput_tps")
    return [
        m.get("violation_time_s"),
        m.get("integral_violation_pu_s"),
        m.get("worst_vmin"),
        None if throughput is None else throughput / 1e6,
        m.get("itl_deadline_fraction"),
    ]


# -- scenario families -------------------------------------------------------------------------
def base_dict(name: str, horizon: float) -> dict[str, Any]:
    """A bundled preset as a plain mapping, with the horizon set."""
    from g2gsim.scenarios.library import load_scenario

    raw = load_scenario(name).to_dict()
    raw["horizon_s"] = horizon
    return raw


def with_periods(raw: dict[str, Any], periods: tuple[float, float, float], delay: float) -> dict[str, Any]:
    """Set every site's, the grid's and every periodic controller's period; add a command delay."""
    dc, grid, ctrl = periods
    raw = {**raw, "name": f"{raw['name']}_p{dc:g}_{grid:g}_{ctrl:g}_d{delay:g}"}
    raw["sites"] = [{**site, "period_s": str(dc)} for site in raw["sites"]]
    raw["grid"] = {**raw["grid"], "period_s": str(grid)}
    controllers = []
    for section in raw.get("controllers", []):
        section = dict(section)
        if section.get("period_s") is not None:
            section["period_s"] = str(ctrl)
        if delay > 0:
            section["command_link"] = {"delay_s": str(delay)}
        controllers.append(section)
    raw["controllers"] = controllers
    return raw


def site_buses(raw: dict[str, Any], n: int) -> list[str]:
    """`n` distinct three-phase buses: the preset's site buses first, then the feeder's others."""
    from g2gsim.grid.engine import DSSEngine
    from g2gsim.grid.feeders import load_feeder
    from g2gsim.grid.topology import FeederTopology

    engine = DSSEngine()
    engine.compile_feeder(load_feeder(raw["grid"]["feeder"]))
    excluded = {b.lower() for b in raw["grid"].get("excluded_buses", ())} | {"sourcebus"}
    preset = [s["bus"].lower() for s in raw["sites"]]
    others = [
        b for b in FeederTopology.from_engine(engine).three_phase_buses() if b not in excluded and b not in preset
    ]
    buses = (preset + others)[:n]
    if len(buses) < n:
        raise ValueError(f"feeder {raw['grid']['feeder']!r} has only {len(buses)} usable three-phase buses, {n} asked")
    return buses


def scaled_site(template: dict[str, Any], index: int, bus: str, factor: float) -> dict[str, Any]:
    """A copy of a preset site at another bus, its load scaled by `factor`."""
    from g2gsim.data.spec import PAPER_MODELS

    def scale(count: int) -> int:
        return max(1, round(count * factor))

    models, needed = [], 0
    for model in template["models"]:
        ramps = [{**r, "target": scale(r["target"])} for r in model.get("ramps", [])]
        replicas = scale(model["replicas"])
        models.append({**model, "replicas": replicas, "ramps": ramps})
        peak = max([replicas, *(r["target"] for r in ramps)])
        needed += peak * PAPER_MODELS[model["model"]].gpus_per_replica
    capacity = max(math.ceil(template["capacity_gpus"] * factor), needed)
    return {
        **template,
        "name": f"{template['name']}_{index:02d}",
        "bus": bus,
        "seed": index * 17,
        "base_kw_per_phase": template.get("base_kw_per_phase", 0.0) * factor,
        "capacity_gpus": capacity,
        "models": models,
    }


def with_sites(raw: dict[str, Any], n: int) -> dict[str, Any]:
    """The IEEE 123 preset with `n` sites and one OFO controller per site."""
    templates = raw["sites"]
    factor = min(1.0, len(templates) / n)
    buses = site_buses(raw, n)
    sites = [scaled_site(templates[i % len(templates)], i, bus, factor) for i, bus in enumerate(buses)]
    ofo = {s["site"]: s for s in raw["controllers"] if s["type"] == "ofo"}
    others = [s for s in raw["controllers"] if s["type"] != "ofo"]
    controllers = list(others)
    for i, site in enumerate(sites):
        template = ofo[templates[i % len(templates)]["name"]]
        controllers.append({**template, "name": f"ofo_{site['name']}", "site": site["name"]})
    return {**raw, "name": f"{raw['name']}_{n}sites", "sites": sites, "controllers": controllers}


# -- timing --------------------------------------------------------------------------------------
def steps_of(raw: dict[str, Any]) -> dict[str, int]:
    """Process steps of a run: sites, grid and periodic controllers fire at 0, dt, ... < T."""
    horizon = Fraction(str(raw["horizon_s"]))

    def count(period: Any) -> int:
        return math.ceil(horizon / Fraction(str(period)))

    datacenter = sum(count(s.get("period_s", "0.1")) for s in raw["sites"])
    grid = count(raw["grid"].get("period_s", "0.1"))
    control = sum(count(c["period_s"]) for c in raw.get("controllers", []) if c.get("period_s") is not None)
    return {"datacenter": datacenter, "grid": grid, "control": control, "total": datacenter + grid + control}


def measure(raw: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Build once, warm up once, then the median of `repeats` runs, with per-step figures."""
    from g2gsim.scenarios.build import build_simulation
    from g2gsim.scenarios.model import Scenario
    from g2gsim.scenarios.runner import summarize

    built = build_simulation(Scenario.from_dict(raw, source=raw["name"]))
    result = built.simulation.run()
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = built.simulation.run()
        walls.append(time.perf_counter() - start)
    wall = bu.median(walls)
    horizon = float(raw["horizon_s"])
    steps = steps_of(raw)
    metrics = summarize(built, result, wall)
    return {
        "metrics": {key: metrics.get(key) for key in METRIC_KEYS},
        "name": raw["name"],
        "horizon_s": horizon,
        "tick_s": result.meta["tick_s"],
        "walls_s": walls,
        "wall_s": wall,
        "wall_s_per_hour": wall * HOUR_S / horizon,
        "steps": steps,
        "us_per_step": 1e6 * wall / steps["total"],
        "us_per_grid_step": 1e6 * wall / steps["grid"],
        "n_solves": int(result.meta["summary"][built.grid.name]["n_solves"]),
        "n_sites": len(raw["sites"]),
    }


def progress(text: str) -> None:
    print(f"[multirate] {text}", file=sys.stderr, flush=True)


def sweep_periods(horizon: float, repeats: int) -> list[dict[str, Any]]:
    """IEEE 13 OFO preset at every (periods, delay) pair."""
    rows = []
    for periods in PERIODS:
        for delay in DELAYS:
            progress(f"periods {periods}, delay {delay:g} s")
            row = measure(with_periods(base_dict(IEEE13, horizon), periods, delay), repeats)
            rows.append({**row, "periods_s": periods, "delay_s": delay})
    return rows


def sweep_sites(horizon: float, repeats: int) -> list[dict[str, Any]]:
    """IEEE 123 OFO preset with 1, 4 and 16 sites."""
    rows = []
    for n in SITE_COUNTS:
        progress(f"{n} site(s) on IEEE 123")
        raw = with_sites(base_dict(IEEE123, horizon), n)
        rows.append({**measure(raw, repeats), "buses": [s["bus"] for s in raw["sites"]]})
    return rows


def sweep_horizon(horizons: tuple[float, ...], repeats: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """IEEE 13 OFO preset at several horizons, and the least-squares line through the walls."""
    rows = []
    for horizon in horizons:
        progress(f"horizon {horizon:g} s")
        rows.append(measure(base_dict(IEEE13, horizon), repeats))
    x = np.array([r["horizon_s"] for r in rows])
    y = np.array([r["wall_s"] for r in rows])
    slope, fixed = np.polyfit(x, y, 1)
    predicted = fixed + slope * x
    spread = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y - predicted) ** 2)) / spread if spread > 0 else 1.0
    return rows, {
        "fixed_s": float(fixed),
        "slope_s_per_sim_s": float(slope),
        "slope_s_per_hour": float(slope * HOUR_S),
        "r2": r2,
    }


# -- report --------------------------------------------------------------------------------------
def periods_table(rows: list[dict[str, Any]]) -> str:
    headers = [
        "dc s",
        "grid s",
        "ctrl s",
        "cmd delay s",
        "tick s",
        "steps",
        "solves",
        "wall s",
        "wall s/h",
        "us/step",
        "us/grid step",
        *METRIC_HEADERS,
    ]
    body = [
        [
            *r["periods_s"],
            r["delay_s"],
            r["tick_s"],
            r["steps"]["total"],
            r["n_solves"],
            r["wall_s"],
            r["wall_s_per_hour"],
            r["us_per_step"],
            r["us_per_grid_step"],
            *metric_cells(r),
        ]
        for r in rows
    ]
    return bu.markdown_table(headers, body)


def sites_table(rows: list[dict[str, Any]]) -> str:
    headers = ["sites", "buses", "steps", "solves", "wall s", "wall s/h", "us/step", "us/grid step", *METRIC_HEADERS]
    body = [
        [
            r["n_sites"],
            " ".join(r["buses"]),
            r["steps"]["total"],
            r["n_solves"],
            r["wall_s"],
            r["wall_s_per_hour"],
            r["us_per_step"],
            r["us_per_grid_step"],
            *metric_cells(r),
        ]
        for r in rows
    ]
    return bu.markdown_table(headers, body)


def horizon_table(rows: list[dict[str, Any]], fit: dict[str, float]) -> str:
    headers = ["horizon s", "steps", "wall s", "wall s/h", "us/step", "fit s", "residual %", *METRIC_HEADERS]
    body = []
    for r in rows:
        predicted = fit["fixed_s"] + fit["slope_s_per_sim_s"] * r["horizon_s"]
        body.append(
            [
                r["horizon_s"],
                r["steps"]["total"],
                r["wall_s"],
                r["wall_s_per_hour"],
                r["us_per_step"],
                predicted,
                100.0 * (r["wall_s"] - predicted) / predicted,
                *metric_cells(r),
            ]
        )
    line = (
        f"\nfit: wall = {fit['fixed_s']:.3f} s + {fit['slope_s_per_hour']:.3f} s per simulated hour "
        f"(R^2 = {fit['r2']:.5f})"
    )
    return bu.markdown_table(headers, body) + line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 s runs (horizons 15/30/60 s), one repeat")
    parser.add_argument("--horizon", type=float, default=None, help="simulated s of the period and site sweeps (600)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per configuration (default 3)")
    args = parser.parse_args()
    horizon = args.horizon or (30.0 if args.quick else 600.0)
    repeats = args.repeats or (1 if args.quick else 3)
    horizons = tuple(h / 10 for h in HORIZONS) if args.quick else HORIZONS

    info = bu.machine_info()
    periods = sweep_periods(horizon, repeats)
    sites = sweep_sites(horizon, repeats)
    by_horizon, fit = sweep_horizon(horizons, repeats)
    info["load_average_end"] = list(__import__("os").getloadavg())
    tables = {"periods": periods_table(periods), "sites": sites_table(sites), "horizon": horizon_table(by_horizon, fit)}
    print(
        f"## Multi-rate ({horizon:g} s simulated, median of {repeats}; {info['cpu_count']} CPUs, "
        f"{info['platform']}, {info['date_utc']})\n"
    )
    print(f"### Periods and command latency ({IEEE13})\n\n{tables['periods']}\n")
    print(f"### Number of sites ({IEEE123}, one OFO per site)\n\n{tables['sites']}\n")
    print(f"### Horizon ({IEEE13})\n\n{tables['horizon']}")
    payload = {
        "machine": info,
        "horizon_s": horizon,
        "repeats": repeats,
        "periods": periods,
        "sites": sites,
        "horizon_sweep": by_horizon,
        "horizon_fit": fit,
        "tables": tables,
    }
    path = bu.write_results("multirate", payload, quick=args.quick)
    print(f"\nwrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
