"""SLO planning: the planner's table for the five paper models, and the IEEE 13 OFO preset with planned batches.

Prints, on the bundled data:

1. ``g2gsim plan-batch``'s plan for two workloads (1024 in / 1024 out tokens with a 2 s TTFT,
   the preset's; and 4096 in / 512 out with a 0.5 s TTFT): each bound's own limit, the
   binding one, the largest feasible batch meeting every bound;
2. ``processes/ieee13_ofo_tapchange.toml`` against ``processes/ieee13_ofo_planned.toml`` (the
   same scenario with ``batch_limit = "plan"``): voltage violation time, throughput, ITL
   misses, site power, and per model the mean and the largest batch OFO commanded.

Writes the numbers to ``benchmarks/results/planned_batches.json``.

    python benchmarks/planned_batches.py [--duration S] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from _benchutil import machine_info, markdown_table, write_results
from g2gsim.data import open_data_source
from g2gsim.data.spec import PAPER_MODELS
from g2gsim.planning import BatchPlan, SloTargets, plan_batches
from g2gsim.scenarios.model import Scenario
from g2gsim.scenarios.runner import run_scenario

PROCESSES = Path(__file__).resolve().parent.parent / "processes"
WORKLOADS = {
    "chat (1024 in / 1024 out, TTFT 2 s)": SloTargets(input_tokens=1024, output_tokens=1024, ttft_deadline_s=2.0),
    "long prompt (4096 in / 512 out, TTFT 0.5 s)": SloTargets(
        input_tokens=4096, output_tokens=512, ttft_deadline_s=0.5
    ),
}


def _limit(plan: BatchPlan, key: str) -> str:
    if key == "memory" and plan.memory_batch is not None:
        return str(plan.memory_batch)
    value = plan.limits.get(key)
    if value is None:
        return "none" if key in plan.limits else "-"
    return f">={value}" if value >= plan.top_batch else str(value)


def planner_tables() -> dict[str, list[dict[str, Any]]]:
    """Print the plan of every workload; return its rows."""
    source = open_data_source(None)
    fits = {label: source.logistic_fits(spec) for label, spec in PAPER_MODELS.items()}
    out = {}
    for name, targets in WORKLOADS.items():
        plans = plan_batches(PAPER_MODELS, fits, targets, source=source)
        rows = [
            [
                p.model,
                _limit(p, "itl"),
                _limit(p, "ttft"),
                _limit(p, "memory"),
                p.binding,
                p.max_batch,
                f"{p.best_itl_s:.4f}",
                f"{p.best_ttft_s:.3f}",
                f"{p.best_throughput_tps:,.0f}",
            ]
            for p in plans
        ]
        print(f"\n{name}:\n")
        print(
            markdown_table(
                [
                    "model",
                    "ITL limit",
                    "TTFT limit",
                    "memory limit",
                    "binding",
                    "planned batch",
                    "ITL (s)",
                    "TTFT (s)",
                    "tokens/s per replica",
                ],
                rows,
            )
        )
        out[name] = [p.as_row() for p in plans]
    return out


def batch_facts(run: Any, site: str, labels: list[str]) -> dict[str, dict[str, float]]:
    """Per model: the mean and the largest effective batch over the run."""
    state = run.result.table(f"{site}/state")
    return {
        label: {"mean": float(state[f"{label}.batch"].mean()), "max": float(state[f"{label}.batch"].max())}
        for label in labels
    }


def compare_presets(duration: float | None) -> dict[str, Any]:
    """Run the OFO preset and its planned copy; print their metrics and batches side by side."""
    runs, payload = {}, {}
    for name in ("ieee13_ofo_tapchange", "ieee13_ofo_planned"):
        scenario = Scenario.from_toml(PROCESSES / f"{name}.toml")
        if duration:
            scenario = scenario.with_overrides(horizon_s=duration)
        start = time.perf_counter()
        runs[name] = run_scenario(scenario, plots=False)
        print(f"{name}: {time.perf_counter() - start:.1f} s wall", file=sys.stderr)
    labels = list(PAPER_MODELS)
    rows = []
    for name, run in runs.items():
        m = run.metrics
        site = run.scenario.sites[0].name
        batches = batch_facts(run, site, labels)
        payload[name] = {
            "voltage_violation_s": m["violation_time_s"],
            "integral_violation_pu_s": m["integral_violation_pu_s"],
            "mean_throughput_tps": m["mean_throughput_tps"],
            "itl_deadline_fraction": m["itl_deadline_fraction"],
            "mean_dc_power_kw": m["mean_dc_power_kw"],
            "peak_dc_power_kw": m["peak_dc_power_kw"],
            "batches": batches,
        }
        rows.append(
            [
                name,
                f"{m['violation_time_s']:.1f}",
                f"{m['integral_violation_pu_s']:.3f}",
                f"{m['mean_throughput_tps']:,.0f}",
                f"{m['itl_deadline_fraction']:.4f}",
                f"{m['mean_dc_power_kw']:,.0f}",
                f"{m['peak_dc_power_kw']:,.0f}",
                " / ".join(f"{batches[label]['mean']:.0f} ({batches[label]['max']:.0f})" for label in labels),
            ]
        )
    print()
    print(
        markdown_table(
            [
                "preset",
                "voltage violation (s)",
                "integral violation (pu s)",
                "mean tokens/s",
                "ITL deadline misses",
                "mean site kW",
                "peak site kW",
                "mean (largest) batch: " + " / ".join(labels),
            ],
            rows,
        )
    )
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=None, help="override the presets' horizon (s)")
    parser.add_argument("--quick", action="store_true", help="600 s horizon (smoke test)")
    args = parser.parse_args(argv)
    duration = args.duration or (600.0 if args.quick else None)
    plans = planner_tables()
    presets = compare_presets(duration)
    write_results(
        "planned_batches",
        {"machine": machine_info(), "horizon_s": duration, "plans": plans, "presets": presets},
        quick=bool(args.quick),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
