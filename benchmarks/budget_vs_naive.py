"""Budget tracking: the power-budget controller against naive proportional curtailment.

Runs ``processes/ieee13_power_budget.toml`` (IEEE 13, 7200-GPU site, budget 5 MW -> 3.5 MW at
1200 s -> 5 MW at 2400 s, OFO for voltage) three ways over the full hour:

- ``ofo only``: the budget is published but nobody follows it (the reference throughput);
- ``power budget``: the scenario as written (exact planner over replicas and GPU caps);
- ``naive``: the budget controller replaced by equal-fraction GPU power caps.

Prints budget tracking (violation s after a 5 s grace, excess kWh), throughput retained
against the reference (all hour, and inside the 3.5 MW window), ITL deadline misses and
voltage violation time, and writes the numbers to ``benchmarks/results``.

    python benchmarks/budget_vs_naive.py [--duration S] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from _benchutil import machine_info, markdown_table, write_results
from g2gsim.scenarios.model import Scenario
from g2gsim.scenarios.runner import run_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "processes" / "ieee13_power_budget.toml"
WINDOW = (1200.0, 2400.0)


def variants(base: Scenario) -> dict[str, Scenario]:
    raw = base.to_dict()
    others = [c for c in raw["controllers"] if c["type"] != "power_budget"]
    budget = next(c for c in raw["controllers"] if c["type"] == "power_budget")
    naive = {
        "type": "proportional_curtailment",
        "name": "naive",
        "site": budget["site"],
        "budget": budget["budget"],
        "period_s": budget.get("period_s", 1.0),
    }
    return {
        "ofo only": Scenario.from_dict({**raw, "controllers": others}, source="ofo only"),
        "power budget": base,
        "naive": Scenario.from_dict({**raw, "controllers": [*others, naive]}, source="naive"),
    }


def window_throughput(run: Any, site: str, deadlines: dict[str, float]) -> float:
    """Mean tokens/s (batch / ITL * replicas over models) inside the budget window."""
    state = run.result.table(f"{site}/state")
    inside = state[(state["time_s"] >= WINDOW[0]) & (state["time_s"] < WINDOW[1])]
    total = np.zeros(len(inside))
    for label in deadlines:
        b = inside[f"{label}.batch"].to_numpy(float)
        itl = inside[f"{label}.itl_s"].to_numpy(float)
        n = inside[f"{label}.replicas"].to_numpy(float)
        ok = (n > 0) & (b > 0) & np.isfinite(itl) & (itl > 0)
        total += np.where(ok, b / np.where(ok, itl, 1.0) * n, 0.0)
    return float(total.mean()) if total.size else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=None, help="override the horizon (s)")
    parser.add_argument("--quick", action="store_true", help="600 s horizon (smoke test)")
    args = parser.parse_args(argv)
    base = Scenario.from_toml(SCENARIO)
    if args.quick or args.duration:
        base = base.with_overrides(horizon_s=args.duration or 600.0)
    site = base.sites[0].name
    runs = {}
    for label, scenario in variants(base).items():
        start = time.perf_counter()
        runs[label] = run_scenario(scenario, plots=False)
        print(f"{label}: {time.perf_counter() - start:.1f} s wall", file=sys.stderr)
    from g2gsim.scenarios.build import build_simulation

    deadlines = build_simulation(base).deadlines[site]
    ref = runs["ofo only"].metrics
    ref_window = window_throughput(runs["ofo only"], site, deadlines)
    rows, payload = [], {}
    for label, run in runs.items():
        m = run.metrics
        win = window_throughput(run, site, deadlines)
        facts = {
            "budget_violation_s": m.get("budget_violation_s"),
            "budget_excess_kwh": m.get("budget_excess_kwh"),
            "throughput_retained": m["mean_throughput_tps"] / ref["mean_throughput_tps"],
            "throughput_retained_in_window": win / ref_window,
            "itl_deadline_fraction": m["itl_deadline_fraction"],
            "voltage_violation_s": m["violation_time_s"],
            "peak_dc_power_kw": m["peak_dc_power_kw"],
        }
        payload[label] = facts
        rows.append(
            [
                label,
                f"{facts['budget_violation_s']:.1f}",
                f"{facts['budget_excess_kwh']:.2f}",
                f"{facts['throughput_retained']:.3f}",
                f"{facts['throughput_retained_in_window']:.3f}",
                f"{facts['itl_deadline_fraction']:.4f}",
                f"{facts['voltage_violation_s']:.1f}",
            ]
        )
    print(
        markdown_table(
            [
                "controller",
                "budget violation (s)",
                "excess (kWh)",
                "throughput retained",
                "retained in 3.5 MW window",
                "ITL deadline misses",
                "voltage violation (s)",
            ],
            rows,
        )
    )
    write_results(
        "budget_vs_naive",
        {"machine": machine_info(), "horizon_s": float(base.horizon_s), "results": payload},
        quick=bool(args.quick),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
