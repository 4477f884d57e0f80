"""How OFO's voltage regulation degrades as its commands arrive later (issue 5, README table).

Runs the IEEE 13 OFO preset (no tap change) for the full hour with the controller's command
link delayed by 0 ... 5 s (and once with 0.5 s of seeded jitter), and prints violation time
(mean over seeds, with min-max), integral, worst vmin, deadline misses and throughput.

    python benchmarks/latency_degradation.py [--horizon 3600] [--data PATH] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from g2gsim.scenarios import Scenario, load_scenario, run_scenario

DELAYS_S = (0.0, 0.5, 1.0, 2.0, 5.0)


def with_command_delay(scenario: Scenario, delay_s: float, jitter_s: float = 0.0) -> Scenario:
    """The scenario with every controller's command link delayed (and jittered)."""
    data = scenario.to_dict()
    for controller in data["controllers"]:
        controller["command_link"] = {"delay_s": delay_s, "jitter_s": jitter_s}
    return Scenario.from_dict(data, source=f"{scenario.name} (command delay {delay_s} s)")


def sweep(horizon_s: float, data: str | None, seeds: int = 3) -> list[dict[str, Any]]:
    """One row per command latency (means over `seeds` seeds), plus no control as the yardstick."""
    base = load_scenario("ieee13_ofo_notap").with_overrides(horizon_s=horizon_s, data=data)
    cases: list[tuple[str, Scenario]] = [
        ("no control", load_scenario("ieee13_baseline_notap").with_overrides(horizon_s=horizon_s, data=data))
    ]
    cases += [(f"OFO, {d:g} s", with_command_delay(base, d)) for d in DELAYS_S]
    cases.append(("OFO, 2 s +- 0.5 s jitter", with_command_delay(base, 2.0, 0.5)))
    keys = (
        "violation_time_s",
        "integral_violation_pu_s",
        "worst_vmin",
        "itl_deadline_fraction",
        "mean_throughput_tps",
        "wall_s",
    )
    rows = []
    for label, scenario in cases:
        runs = [run_scenario(scenario.with_overrides(seed=seed), plots=False).metrics for seed in range(seeds)]
        row: dict[str, Any] = {"case": label, "seeds": seeds}
        for key in keys:
            values = [float(m[key]) for m in runs]
            row[key] = sum(values) / len(values)
            row[f"{key}_min"], row[f"{key}_max"] = min(values), max(values)
        rows.append(row)
        print(
            f"  {label}: {row['violation_time_s']:.1f} s mean violation, {row['wall_s']:.1f} s wall per run", flush=True
        )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    out = [
        "| command latency | violation time (s) | integral (pu*s) | worst vmin (pu) | ITL deadline misses | "
        "mean throughput (M tokens/s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        spread = f" ({r['violation_time_s_min']:.0f}-{r['violation_time_s_max']:.0f})"
        out.append(
            f"| {r['case']} | {r['violation_time_s']:.1f}{spread} | {r['integral_violation_pu_s']:.4f} | "
            f"{r['worst_vmin']:.4f} | {100 * r['itl_deadline_fraction']:.2f}% | {r['mean_throughput_tps'] / 1e6:.2f} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=float, default=3600.0)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per case (results are means)")
    parser.add_argument("--data", type=str, default=None, help="data folder (default: bundled synthetic data)")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "latency_degradation.json")
    args = parser.parse_args()
    rows = sweep(args.horizon, args.data, args.seeds)
    print(markdown(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
