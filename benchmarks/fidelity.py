"""Fidelity to the reference: g2gsim's IEEE 13 presets on the real ML.ENERGY-derived cache
against OpenG2G's published figures (SPEC 7).

    python benchmarks/fidelity.py [--data ../shared/reference/mlenergy-derived] [--seeds 5] [--json out.json]

Prints a Markdown table (the one in the README) and optionally writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from g2gsim.resources import shared_reference_dir
from g2gsim.scenarios.library import load_scenario
from g2gsim.scenarios.runner import run_scenario

#: OpenG2G's published IEEE 13 figures on the same data (violation s, integral pu*s, vmin pu).
REFERENCE: dict[str, dict[str, float | None]] = {
    "ieee13_baseline_notap": {"violation_time_s": 993.8, "integral_violation_pu_s": 31.28, "worst_vmin": 0.9353},
    "ieee13_baseline_tapchange": {"violation_time_s": 999.3, "integral_violation_pu_s": 21.66, "worst_vmin": None},
    "ieee13_ofo_notap": {"violation_time_s": 69.2, "integral_violation_pu_s": 0.0989, "worst_vmin": 0.9449},
}
METRICS = ("violation_time_s", "integral_violation_pu_s", "worst_vmin")


def compare(data: Path, seeds: int, scenarios: tuple[str, ...] = tuple(REFERENCE)) -> list[dict[str, object]]:
    """Run each preset for its full horizon on `data` with seeds 0..seeds-1; one row per
    (scenario, metric) with the mean and the range over seeds."""
    rows: list[dict[str, object]] = []
    for name in scenarios:
        runs = [
            run_scenario(load_scenario(name).with_overrides(data=str(data), seed=seed), plots=False).metrics
            for seed in range(seeds)
        ]
        for metric in METRICS:
            values = [float(m[metric]) for m in runs]
            ours = sum(values) / len(values)
            ref = REFERENCE[name][metric]
            rel = None if ref is None else (ours - ref) / ref
            rows.append(
                {
                    "scenario": name,
                    "metric": metric,
                    "openg2g": ref,
                    "g2gsim": ours,
                    "min": min(values),
                    "max": max(values),
                    "rel_diff": rel,
                    "seeds": seeds,
                }
            )
    return rows


def markdown(rows: list[dict[str, object]]) -> str:
    """The comparison as a Markdown table."""
    out = [
        "| scenario | metric | OpenG2G (published, one run) | g2gsim (mean over seeds) | g2gsim range | difference |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = "n/a" if r["openg2g"] is None else f"{r['openg2g']:g}"
        diff = "" if r["rel_diff"] is None else f"{100 * float(r['rel_diff']):+.1f}%"
        spread = f"{float(r['min']):.4g} - {float(r['max']):.4g}"
        out.append(f"| {r['scenario']} | {r['metric']} | {ref} | {float(r['g2gsim']):.4g} | {spread} | {diff} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = shared_reference_dir()
    parser.add_argument("--data", type=Path, default=None if default is None else default / "mlenergy-derived")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per preset (the table shows means)")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "fidelity.json")
    args = parser.parse_args()
    if args.data is None or not args.data.is_dir():
        parser.error("no ML.ENERGY-derived cache found; pass --data")
    rows = compare(args.data, args.seeds)
    print(markdown(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
