"""Seed statistics of g2gsim and OpenG2G on the seven presets OpenG2G publishes (issue 20, item 4).

    ANCHOR_PY=/path/to/openg2g-venv/bin/python python benchmarks/fidelity_seeds.py \
        [--data ../shared/reference/mlenergy-derived] [--seeds 5] [--part all|openg2g|g2gsim|table]

For each preset and seeds 0..N-1, both simulators run the full hour on the real
ML.ENERGY-derived cache: OpenG2G 0.2.0.post1 as published (600 s power templates; run k uses
each site's published seed + k), g2gsim with its default templates (the horizon) and with
``template_s = 600`` (scenario seed k). Per metric (violation time, violation integral, worst
vmin, worst vmax, mean throughput, ITL-miss rate) the table gives each simulator's mean and
sample standard deviation over seeds and the gap g2gsim - OpenG2G in units of the pooled
spread sqrt((s_g^2 + s_o^2) / 2). OpenG2G runs at ``nice -n 10``; finished runs are kept in
the JSON, so an interrupted run resumes. Writes ``benchmarks/results/fidelity_seeds.json``
and prints the Markdown table of the README.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import _anchor

#: The presets OpenG2G publishes (its examples), the seven with an OpenG2G counterpart.
PRESETS = (
    "ieee13_baseline_notap",
    "ieee13_baseline_tapchange",
    "ieee13_rule_notap",
    "ieee13_ofo_notap",
    "ieee13_ofo_tapchange",
    "ieee34_ofo_tapchange",
    "ieee123_ofo_tapchange",
)
METRICS = (
    "violation_time_s",
    "integral_violation_pu_s",
    "worst_vmin",
    "worst_vmax",
    "mean_throughput_tps",
    "itl_deadline_fraction",
)
VARIANTS = ("openg2g", "g2gsim", "g2gsim_600")
RESULTS = Path(__file__).parent / "results" / "fidelity_seeds.json"
WORK = Path("/tmp/g2gsim-fidelity-seeds")


def load() -> dict[str, Any]:
    """The stored runs ({"runs": {variant: {preset: {seed: metrics}}}})."""
    if RESULTS.exists():
        return json.loads(RESULTS.read_text())
    return {"runs": {v: {} for v in VARIANTS}}


def save(store: dict[str, Any], variants: tuple[str, ...] = ()) -> None:
    """Write `store`, taking only `variants`' runs from it and the rest from the file (the
    OpenG2G and g2gsim parts may run at the same time in two processes)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    current = load()
    for variant in variants:
        current["runs"][variant] = store["runs"][variant]
    if "summary" in store:
        current["summary"] = store["summary"]
    store["runs"] = current["runs"]
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=1, sort_keys=True))
    tmp.replace(RESULTS)


def run_openg2g(store: dict[str, Any], data: Path, seeds: int, python: Path) -> None:
    """Every missing OpenG2G run, saved after each one."""
    from g2gsim.scenarios.library import load_scenario

    WORK.mkdir(parents=True, exist_ok=True)
    for k in range(seeds):  # seed by seed, so an interrupted run has every preset at a few seeds
        for name in PRESETS:
            scenario = load_scenario(name)
            runs = store["runs"]["openg2g"].setdefault(name, {})
            if str(k) in runs:
                continue
            site_seeds = {site.name: (site.seed or 0) + k for site in scenario.sites}
            config = _anchor.driver_config(scenario, WORK, data=data, site_seeds=site_seeds, template_s=600.0)
            start = time.perf_counter()
            runs[str(k)] = _anchor.run_anchor(python, config)
            print(f"[openg2g] {name} seed {k}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
            save(store, ("openg2g",))


def run_g2gsim(store: dict[str, Any], data: Path, seeds: int) -> None:
    """Every missing g2gsim run (default templates and 600 s), saved after each preset."""
    from g2gsim.scenarios.library import load_scenario
    from g2gsim.scenarios.runner import run_scenario

    for name in PRESETS:
        scenario = load_scenario(name).with_overrides(data=str(data))
        for variant, template in (("g2gsim", None), ("g2gsim_600", 600.0)):
            runs = store["runs"][variant].setdefault(name, {})
            for k in range(seeds):
                if str(k) in runs:
                    continue
                changes: dict[str, Any] = {"seed": k}
                if template is not None:
                    changes.update({f"sites.{i}.template_s": template for i in range(len(scenario.sites))})
                metrics = run_scenario(scenario.with_changes(changes), plots=False).metrics
                runs[str(k)] = {m: float(metrics[m]) for m in METRICS}
            print(f"[g2gsim] {name} {variant}: {len(runs)} seeds", file=sys.stderr, flush=True)
            save(store, (variant,))


def summary(store: dict[str, Any]) -> list[dict[str, Any]]:
    """Mean, std and pooled-spread gap per (preset, metric), g2gsim both ways against OpenG2G."""
    rows = []
    for name in PRESETS:
        for metric in METRICS:
            stats = {}
            for variant in VARIANTS:
                values = [r[metric] for r in store["runs"][variant].get(name, {}).values()]
                if len(values) >= 2:
                    stats[variant] = (statistics.fmean(values), statistics.stdev(values), len(values))
            if "openg2g" not in stats:
                continue
            row: dict[str, Any] = {"preset": name, "metric": metric}
            mean_o, sd_o, n_o = stats["openg2g"]
            row.update(openg2g_mean=mean_o, openg2g_std=sd_o, openg2g_n=n_o)
            for variant in ("g2gsim", "g2gsim_600"):
                if variant not in stats:
                    continue
                mean_g, sd_g, n_g = stats[variant]
                pooled = math.sqrt((sd_g**2 + sd_o**2) / 2.0)
                gap = (mean_g - mean_o) / pooled if pooled > 0 else (0.0 if mean_g == mean_o else math.inf)
                row.update({f"{variant}_mean": mean_g, f"{variant}_std": sd_g, f"{variant}_n": n_g})
                row[f"{variant}_gap_pooled"] = gap
            rows.append(row)
    return rows


def _cell(row: dict[str, Any], variant: str) -> str:
    if f"{variant}_mean" not in row:
        return "n/a"
    return f"{row[f'{variant}_mean']:.4g} +- {row[f'{variant}_std']:.2g}"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The seed statistics as a Markdown table."""
    out = [
        "| preset | metric | OpenG2G (600 s templates) | g2gsim (horizon) | gap | g2gsim (600 s) | gap |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gaps = [f"{r[f'{v}_gap_pooled']:+.2f}" if f"{v}_gap_pooled" in r else "" for v in ("g2gsim", "g2gsim_600")]
        out.append(
            f"| {r['preset']} | {r['metric']} | {_cell(r, 'openg2g')} | {_cell(r, 'g2gsim')} | {gaps[0]} "
            f"| {_cell(r, 'g2gsim_600')} | {gaps[1]} |"
        )
    return "\n".join(out)


def main() -> None:
    from g2gsim.resources import shared_reference_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = shared_reference_dir()
    parser.add_argument("--data", type=Path, default=None if default is None else default / "mlenergy-derived")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--part", choices=("all", "openg2g", "g2gsim", "table"), default="all")
    args = parser.parse_args()
    if args.data is None or not args.data.is_dir():
        parser.error("no ML.ENERGY-derived cache found; pass --data")
    store = load()
    if args.part in ("all", "openg2g"):
        python = _anchor.anchor_python()
        if python is None:
            print("ANCHOR_PY is not set: cannot run OpenG2G.\n" + _anchor.HOW_TO, file=sys.stderr)
            raise SystemExit(2)
        run_openg2g(store, args.data, args.seeds, python)
    if args.part in ("all", "g2gsim"):
        run_g2gsim(store, args.data, args.seeds)
    rows = summary(store)
    store["summary"] = rows
    save(store)
    print(markdown(rows))


if __name__ == "__main__":
    main()
