"""Peak memory of one IEEE 13 hour (command line with and without plots, library API) and
resident memory over repeated runs in one process.

1. **One hour**: ``ieee13_ofo_notap`` (3600 s) in a fresh Python process each, its peak
   resident set size (``ru_maxrss`` of the finished child): ``g2gsim run ... --out DIR``
   with plots and with ``--no-plots``, and ``run_scenario`` from Python without and with an
   output folder. Each case runs ``--repeats`` times (default 1); the table shows the
   largest peak, and the memory of the imports alone for reference.
2. **Repeated runs**: ``run_scenario`` of the same preset (``--horizon`` s, default 60, no
   plots, no output folder) ``--runs`` times (default 200; 1000 for a long check) in one
   fresh process, its resident memory after every tenth run (after ``gc.collect()``); the
   growth per run is the slope of a straight line through the second half.

Run: ``python benchmarks/bench_memory.py [--quick] [--runs 200] [--horizon 60]``. ``--quick``
runs 300 s instead of the hour and 40 repeated runs. Writes ``benchmarks/results/memory.json``
(``memory_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import _benchutil as bu

SRC = Path(__file__).resolve().parents[1] / "src"
PRESET = "ieee13_ofo_notap"
#: What a fresh process imports before a run (the floor of every case).
IMPORTS = "import g2gsim.cli, g2gsim.plots"
API = """
import sys
from g2gsim.scenarios import load_scenario, run_scenario
out = sys.argv[2] if len(sys.argv) > 2 else None
run_scenario(load_scenario("{preset}").with_overrides(horizon_s=float(sys.argv[1])), out=out, plots=False)
"""
REPEATED = """
import gc, json, sys, warnings
from g2gsim.scenarios import load_scenario, run_scenario
warnings.simplefilter("ignore")
scenario = load_scenario("{preset}").with_overrides(horizon_s=float(sys.argv[1]))
def rss_mb():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * {page} / 2**20
samples = []
for i in range(int(sys.argv[2]) + 1):
    if i % 10 == 0:
        gc.collect()
        samples.append([i, rss_mb()])
        print(json.dumps(samples[-1]), flush=True)
    if i < int(sys.argv[2]):
        run_scenario(scenario, plots=False)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "MPLBACKEND": "Agg"}


def peak_mb(args: list[str]) -> float:
    """Peak resident set size (MB) of a child process running `args` to the end."""
    process = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    stderr = process.stderr.read().decode() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(args[:6])} failed: {stderr[-2000:]}")
    return usage.ru_maxrss / 1024.0


def one_run_cases(horizon: float, folder: Path) -> dict[str, list[str]]:
    """The command of each single-run case (each writes into its own folder)."""
    python = sys.executable
    cli = [python, "-m", "g2gsim.cli", "run", PRESET, "--duration", f"{horizon:g}", "--json"]
    api = API.format(preset=PRESET)
    return {
        "imports only (g2gsim.cli, g2gsim.plots)": [python, "-c", IMPORTS],
        "CLI run with plots": [*cli, "--out", str(folder / "cli_plots")],
        "CLI run --no-plots": [*cli, "--no-plots", "--out", str(folder / "cli")],
        "API run_scenario (no output folder)": [python, "-c", api, f"{horizon:g}"],
        "API run_scenario (out=DIR, no plots)": [python, "-c", api, f"{horizon:g}", str(folder / "api")],
    }


def measure_one_runs(horizon: float, repeats: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in one_run_cases(horizon, Path(tmp)).items():
            peaks = []
            for i in range(repeats):
                bu_progress(f"{name} ({i + 1}/{repeats})")
                peaks.append(peak_mb(args))
            rows.append({"case": name, "horizon_s": horizon, "peaks_mb": peaks, "peak_mb": max(peaks)})
    return rows


def measure_repeated(horizon: float, runs: int) -> dict[str, Any]:
    """RSS every ten runs of one process, and the growth per run over the second half."""
    code = REPEATED.format(preset=PRESET, page=os.sysconf("SC_PAGE_SIZE"))
    bu_progress(f"{runs} runs of {horizon:g} s in one process")
    process = subprocess.run(
        [sys.executable, "-c", code, f"{horizon:g}", str(runs)], env=_env(), capture_output=True, text=True
    )
    if process.returncode != 0:
        raise RuntimeError(f"repeated runs failed: {process.stderr[-2000:]}")
    samples = [json.loads(line) for line in process.stdout.splitlines() if line.startswith("[")]
    runs_done = np.array([s[0] for s in samples], dtype=float)
    rss = np.array([s[1] for s in samples])
    half = runs_done >= runs_done[-1] / 2
    slope = float(np.polyfit(runs_done[half], rss[half], 1)[0]) if half.sum() >= 2 else float("nan")
    return {
        "horizon_s": horizon,
        "runs": runs,
        "samples": samples,
        "rss_first_mb": float(rss[0]),
        "rss_after_10_mb": float(rss[1]) if len(rss) > 1 else float("nan"),
        "rss_last_mb": float(rss[-1]),
        "growth_mb_per_run_second_half": slope,
    }


#: Targets (issue 19): an IEEE 13 hour under 300 MB; no growth over many runs in one process.
PEAK_TARGET_MB = 300.0
GROWTH_TARGET_MB_PER_RUN = 0.01


def verdicts(one: list[dict[str, Any]], repeated: dict[str, Any], hour: float, runs: int) -> list[str]:
    """One line per target: the measured figure, the target, met or not."""
    peak = max(r["peak_mb"] for r in one)
    growth = repeated["growth_mb_per_run_second_half"]
    first, last = repeated["samples"][1][1], repeated["samples"][-1][1]
    return [
        f"peak of the {hour:g} s runs: {peak:.1f} MB (target < {PEAK_TARGET_MB:g} MB"
        + ("" if hour == 3600.0 else ", for the hour")
        + f"): {'met' if peak < PEAK_TARGET_MB else 'NOT met'}",
        f"{runs} runs in one process: {first:.1f} MB after the 10th run, {last:.1f} MB after the last, "
        f"{growth:.4f} MB per run over the second half (target flat, < {GROWTH_TARGET_MB_PER_RUN} MB per run): "
        f"{'met' if abs(growth) < GROWTH_TARGET_MB_PER_RUN else 'NOT met'}",
    ]


def bu_progress(text: str) -> None:
    print(f"[memory] {text}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 s instead of the hour, 40 repeated runs")
    parser.add_argument("--runs", type=int, default=None, help="runs in one process (default 200; try 1000)")
    parser.add_argument("--horizon", type=float, default=60.0, help="simulated s of each repeated run")
    parser.add_argument("--repeats", type=int, default=1, help="fresh processes per single-run case")
    args = parser.parse_args()
    hour = 300.0 if args.quick else 3600.0
    runs = args.runs or (40 if args.quick else 200)

    info = bu.machine_info()
    one = measure_one_runs(hour, args.repeats)
    repeated = measure_repeated(args.horizon, runs)
    one_table = bu.markdown_table(
        ["case", "simulated s", "peak RSS MB"], [[r["case"], r["horizon_s"], r["peak_mb"]] for r in one]
    )
    every = max(1, len(repeated["samples"]) // 10)
    shown = repeated["samples"][::every]
    if shown[-1] != repeated["samples"][-1]:
        shown.append(repeated["samples"][-1])
    rep_table = bu.markdown_table(["runs done", "RSS MB"], [[int(n), mb] for n, mb in shown])
    print(f"## Memory ({info['cpu_count']} CPUs, {info['platform']}, {info['date_utc']})\n")
    print(f"### One {PRESET} run ({hour:g} s), fresh process each\n\n{one_table}\n")
    print(
        f"### {runs} runs of {args.horizon:g} s in one process\n\n{rep_table}\n\n"
        f"growth over the second half: {repeated['growth_mb_per_run_second_half']:.3f} MB per run"
    )
    print("\n" + "\n".join(verdicts(one, repeated, hour, runs)))
    payload = {"machine": info, "one_run": one, "repeated": repeated}
    path = bu.write_results("memory", payload, quick=args.quick)
    print(f"\nwrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
