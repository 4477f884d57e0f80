"""g2gsim against OpenG2G on the IEEE 13 OFO tap-change preset, same inputs, same horizon.

What it does:

1. Makes (or reuses) a separate virtual environment with OpenG2G (default
   ``/tmp/openg2g-bench-venv``: ``python3 -m venv`` then
   ``pip install "openg2g[opendss]==0.2.0.post1"``; skipped when the venv already imports
   openg2g).
2. Writes the inputs both simulators read into a temporary folder: an OpenG2G v0.2 data cache
   of g2gsim's bundled (synthetic) data for the five paper models, and g2gsim's synthetic
   training trace (seed 2) as CSV.
3. Alternates, ``--repeats`` times (default 3), one fresh g2gsim process and one fresh OpenG2G
   process (a driver script written into the temporary folder and run with the venv's
   Python). Each builds the preset of SPEC 7 and runs it for ``--horizon`` simulated seconds
   (default 600): datacenter at bus 671, 7200 GPUs, replicas 720/180/90/480/210 ramping to
   half over 2500-3000 s, 500 kW/phase base, training on 2400 GPUs at 400 W over 1000-2000 s,
   PV 10 kW/phase at 675 and load 10 kW/phase at 680, source 1.0 pu, taps 14/6/15 then
   16/6/17 at 1500 s and 10/6/10 at 3300 s, OFO rho_x 0.1, w_T 0.001, w_switch 1, k_v 1e6,
   rho_v 1, rho_l 1, H once with 100 kW, periods 0.1 / 0.1 / 1 s.

Reported (median over repeats): the simulation run (g2gsim ``Simulation.run()``, OpenG2G
``Coordinator.run()``), the in-process total (data loading + build + run), the whole process
(interpreter start and imports too), each per simulated hour, and the ratio OpenG2G / g2gsim.
A few results of the last pair of runs (worst voltage, violation time and integral, mean
datacenter power) show that both simulated the same system.

Differences that an exact mirror cannot remove (also printed with the results):

- Feeder: OpenG2G compiles the reference ``IEEE13Bus.dss`` (``../shared/reference/feeders/
  ieee13``); g2gsim compiles its own IEEE 13 definition (tested against that file).
- Templates: both build their per-GPU power templates before the run, in their load time
  (OpenG2G in ``InferenceData.load(duration_s=horizon)``, g2gsim in ``Simulation.prepare()``).
- Tap schedule: OpenG2G's controller polls every 1 s; g2gsim's fires only at the two event
  times. Both apply the taps at the same instants.
- Random streams: the two seed their layout, noise and latency streams differently, so the
  runs are statistically alike, not bit-identical.

Run: ``python benchmarks/bench_openg2g.py [--quick] [--horizon 600] [--repeats 3]
[--venv /tmp/openg2g-bench-venv] [--keep]``. ``--quick`` is 60 s and one repeat (creating the
venv the first time takes longer than that). Writes ``benchmarks/results/openg2g.json``
(``openg2g_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _anchor
import _benchutil as bu

HOUR_S = 3600.0
REQUIREMENT = "openg2g[opendss]==0.2.0.post1"
SCENARIO = "ieee13_ofo_tapchange"
KNOWN_OPENG2G_S_PER_HOUR = 65.0
#: Target of issue 19: OpenG2G's simulation run / g2gsim's, the median of alternating pairs.
RATIO_TARGET = 30.0
DIFFERENCES = (
    "feeder: OpenG2G compiles the reference IEEE13Bus.dss, g2gsim its own IEEE 13 definition",
    "templates: both build power templates before the run (OpenG2G in InferenceData.load, g2gsim in Simulation.prepare)",
    "tap schedule: OpenG2G polls every 1 s, g2gsim fires at the event times only (same instants)",
    "random streams are seeded differently: statistically alike runs, not bit-identical",
)

# The OpenG2G side: a standalone script run with the venv's interpreter. It reads one JSON
# config (paths, horizon, preset numbers) and prints one JSON line of timings and results.
DRIVER = '''\
"""Build and time OpenG2G's IEEE 13 OFO tap-change preset (written by bench_openg2g.py)."""
import json
import sys
import time
from fractions import Fraction

config = json.loads(open(sys.argv[1]).read())
t0 = time.perf_counter()
from openg2g.controller.ofo import LogisticModelStore, OFOBatchSizeController, OFOConfig
from openg2g.controller.tap_schedule import TapScheduleController
from openg2g.coordinator import Coordinator
from openg2g.datacenter.config import (
    DatacenterConfig, InferenceModelSpec, PowerAugmentationConfig, ReplicaSchedule, TrainingRun,
)
from openg2g.datacenter.offline import OfflineDatacenter, OfflineWorkload
from openg2g.datacenter.workloads.inference import InferenceData
from openg2g.datacenter.workloads.training import TrainingTrace
from openg2g.grid.config import TapPosition, TapSchedule
from openg2g.grid.generator import SyntheticPV
from openg2g.grid.load import SyntheticLoad
from openg2g.grid.opendss import OpenDSSGrid
from openg2g.metrics.voltage import compute_allbus_voltage_stats
t_import = time.perf_counter() - t0

p = config["preset"]
horizon = int(config["horizon_s"])
dt_dc, dt_grid, dt_ctrl = (Fraction(str(v)) for v in p["periods_s"])

t0 = time.perf_counter()
specs = tuple(InferenceModelSpec(**fields) for fields in config["specs"])
inference = InferenceData.load(config["cache_dir"], specs, duration_s=float(horizon), dt_s=float(dt_dc))
logistic = LogisticModelStore.load(config["cache_dir"], specs)
training_trace = TrainingTrace.load(config["training_csv"])
t_load = time.perf_counter() - t0

t0 = time.perf_counter()
replicas = {
    label: ReplicaSchedule(initial=n).ramp_to(n // 2, t_start=p["ramp_s"][0], t_end=p["ramp_s"][1])
    for label, n in p["replicas"].items()
}
batches = {label: p["initial_batch"] for label in p["replicas"]}
training = TrainingRun(n_gpus=p["training_gpus"], trace=training_trace,
                       target_peak_W_per_gpu=p["training_peak_w"]).at(t_start=p["training_s"][0], t_end=p["training_s"][1])
workload = OfflineWorkload(inference_data=inference, replica_schedules=replicas,
                           initial_batch_sizes=batches, training=training)
dc = OfflineDatacenter(
    DatacenterConfig(gpus_per_server=8, base_kw_per_phase=p["base_kw_per_phase"], power_factor=p["power_factor"]),
    workload, name="dc", dt_s=dt_dc, seed=0,
    power_augmentation=PowerAugmentationConfig(amplitude_scale_range=tuple(p["amplitude_scale_range"]),
                                               noise_fraction=p["noise_fraction"]),
    total_gpu_capacity=p["capacity_gpus"],
)
grid = OpenDSSGrid(
    dss_case_dir=config["feeder_dir"], dss_master_file=config["feeder_master"], dt_s=dt_grid,
    source_pu=p["source_pu"], initial_tap_position=TapPosition(regulators=p["initial_taps"]),
    exclude_buses=tuple(p["excluded_buses"]),
)
grid.attach_dc(dc, bus=p["bus"], power_factor=p["power_factor"])
grid.attach_generator(SyntheticPV(peak_kw=p["pv_kw_per_phase"], site_idx=0), bus=p["pv_bus"])
grid.attach_load(SyntheticLoad(peak_kw=p["load_kw_per_phase"], site_idx=0), bus=p["load_bus"])
schedule = TapSchedule(tuple((t, TapPosition(regulators=taps)) for t, taps in p["tap_events"]))
controllers = [
    TapScheduleController(schedule=schedule, dt_s=dt_ctrl),
    OFOBatchSizeController(specs, datacenter=dc, grid=grid, models=logistic, config=OFOConfig(**p["ofo"]),
                           dt_s=dt_ctrl, initial_batch_sizes=batches),
]
coordinator = Coordinator(datacenters=[dc], grid=grid, controllers=controllers, total_duration_s=horizon)
t_build = time.perf_counter() - t0

t0 = time.perf_counter()
log = coordinator.run()
t_run = time.perf_counter() - t0

stats = compute_allbus_voltage_stats(log.grid_states, v_min=0.95, v_max=1.05, exclude_buses=tuple(p["excluded_buses"]))
power = [(s.power_w.a + s.power_w.b + s.power_w.c) / 1e3 for s in log.dc_states]
print(json.dumps({
    "import_s": t_import, "load_s": t_load, "build_s": t_build, "run_s": t_run,
    "grid_steps": len(log.grid_states), "datacenter_steps": len(log.dc_states),
    "worst_vmin": stats.worst_vmin, "violation_time_s": stats.violation_time_s,
    "integral_violation_pu_s": stats.integral_violation_pu_s,
    "mean_dc_power_kw": sum(power) / len(power),
    "final_batch": dict(log.dc_states[-1].batch_size_by_model),
}))
'''


# -- preset --------------------------------------------------------------------------------
def tap(step: int) -> float:
    """Tap ratio of a regulator step (SPEC 7)."""
    return 1.0 + 0.00625 * step


def preset() -> dict[str, Any]:
    """SPEC 7's IEEE 13 OFO tap-change numbers, in the shape the OpenG2G driver reads."""
    return {
        "bus": "671",
        "capacity_gpus": 7200,
        "replicas": {
            "Llama-3.1-8B": 720,
            "Llama-3.1-70B": 180,
            "Llama-3.1-405B": 90,
            "Qwen3-30B-A3B": 480,
            "Qwen3-235B-A22B": 210,
        },
        "initial_batch": 128,
        "ramp_s": [2500.0, 3000.0],
        "base_kw_per_phase": 500.0,
        "power_factor": 0.95,
        "amplitude_scale_range": [0.98, 1.02],
        "noise_fraction": 0.005,
        "training_gpus": 2400,
        "training_peak_w": 400.0,
        "training_s": [1000.0, 2000.0],
        "source_pu": 1.0,
        "initial_taps": {"creg1a": tap(14), "creg1b": tap(6), "creg1c": tap(15)},
        "tap_events": [
            [1500.0, {"creg1a": tap(16), "creg1b": tap(6), "creg1c": tap(17)}],
            [3300.0, {"creg1a": tap(10), "creg1b": tap(6), "creg1c": tap(10)}],
        ],
        "excluded_buses": ["sourcebus", "650", "rg60"],
        "pv_bus": "675",
        "pv_kw_per_phase": 10.0,
        "load_bus": "680",
        "load_kw_per_phase": 10.0,
        "periods_s": ["0.1", "0.1", "1"],
        "ofo": {
            "primal_step_size": 0.1,
            "w_throughput": 0.001,
            "w_switch": 1.0,
            "voltage_gradient_scale": 1e6,
            "v_min": 0.95,
            "v_max": 1.05,
            "voltage_dual_step_size": 1.0,
            "latency_dual_step_size": 1.0,
            "sensitivity_update_interval": 0,
            "sensitivity_perturbation_kw": 100.0,
        },
    }


# -- inputs ----------------------------------------------------------------------------------
def write_inputs(folder: Path, horizon: float) -> Path:
    """Data cache, training trace, feeder and the shared config; returns the config file."""
    from g2gsim.data import open_data_source
    from g2gsim.data.caches import write_v02_cache
    from g2gsim.data.spec import PAPER_MODELS
    from g2gsim.data.training import save_training_trace, synthetic_training_trace

    specs = list(PAPER_MODELS.values())
    cache = write_v02_cache(open_data_source(None), specs, folder / "cache")
    training_csv = save_training_trace(synthetic_training_trace(seed=2), folder / "training_trace.csv")
    feeder_dir, master = feeder_files(folder)
    config = {
        "horizon_s": horizon,
        "cache_dir": str(cache),
        "training_csv": str(training_csv),
        "feeder_dir": str(feeder_dir),
        "feeder_master": master,
        "specs": [
            {k: v for k, v in spec.model_dump(mode="json").items() if k in _anchor.SPEC_FIELDS} for spec in specs
        ],
        "preset": preset(),
    }
    path = folder / "config.json"
    path.write_text(json.dumps(config, indent=2))
    (folder / "openg2g_driver.py").write_text(DRIVER)
    return path


def feeder_files(folder: Path) -> tuple[Path, str]:
    """The reference IEEE 13 feeder folder, or g2gsim's feeder written out as a .dss file."""
    from g2gsim.resources import shared_reference_dir

    shared = shared_reference_dir()
    if shared is not None and (shared / "feeders" / "ieee13" / "IEEE13Bus.dss").is_file():
        return shared / "feeders" / "ieee13", "IEEE13Bus.dss"
    from g2gsim.grid.feeders import load_feeder

    out = folder / "feeder"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ieee13.dss").write_text("\n".join(load_feeder("ieee13").commands) + "\n")
    return out, "ieee13.dss"


# -- the OpenG2G environment -----------------------------------------------------------------
def ensure_venv(venv: Path) -> tuple[Path, dict[str, str]]:
    """The venv's Python (created and filled if needed) and its package versions."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"[openg2g] creating {venv}", file=sys.stderr, flush=True)
        base = shutil.which("python3") or sys.executable
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    probe = [str(python), "-c", "import openg2g, opendssdirect"]
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        print(f"[openg2g] pip install {REQUIREMENT}", file=sys.stderr, flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", REQUIREMENT], check=True)
    script = (
        "import json\nfrom importlib.metadata import version\n"
        "print(json.dumps({n: version(n) for n in ('openg2g', 'opendssdirect.py', 'dss-python', 'numpy')}))"
    )
    versions = json.loads(
        subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=True).stdout
    )
    return python, versions


# -- one run of each -------------------------------------------------------------------------
def g2gsim_worker(config_path: str) -> dict[str, Any]:
    """Build and run g2gsim's preset on the shared inputs (in a fresh process)."""
    config = json.loads(Path(config_path).read_text())
    start = time.perf_counter()
    from g2gsim.metrics import voltage_metrics
    from g2gsim.scenarios.build import build_simulation
    from g2gsim.scenarios.library import load_scenario

    import_s = time.perf_counter() - start
    scenario = load_scenario(SCENARIO).with_overrides(horizon_s=config["horizon_s"], data=config["cache_dir"])
    start = time.perf_counter()
    built = build_simulation(scenario)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    built.simulation.prepare()  # templates and fits, as OpenG2G's InferenceData.load before its run
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    result = built.simulation.run()
    run_s = time.perf_counter() - start
    voltages = voltage_metrics(result.table("grid/voltages"), v_min=scenario.v_min, v_max=scenario.v_max)
    state = result.table("dc/state")
    power = state[["power_a_w", "power_b_w", "power_c_w"]].sum(axis=1) / 1e3
    ofo = result.table("ofo/ofo")
    final = {c.removeprefix("batch."): int(ofo[c].iloc[-1]) for c in ofo.columns if c.startswith("batch.")}
    return {
        "import_s": import_s,
        "load_s": load_s,
        "build_s": build_s,
        "run_s": run_s,
        "grid_steps": int(result.meta["summary"]["grid"]["n_steps"]),
        "datacenter_steps": len(state),
        "worst_vmin": float(voltages["worst_vmin"]),
        "violation_time_s": float(voltages["violation_time_s"]),
        "integral_violation_pu_s": float(voltages["integral_violation_pu_s"]),
        "mean_dc_power_kw": float(power.mean()),
        "final_batch": final,
    }


def timed_process(command: list[str]) -> dict[str, Any]:
    """Run a worker process; its JSON plus the whole process's wall time."""
    start = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} {command[1]} failed:\n{process.stderr[-3000:]}")
    out = bu.last_json_line(process.stdout)
    out["process_s"] = wall
    out["total_s"] = out["load_s"] + out["build_s"] + out["run_s"]
    return out


# -- report --------------------------------------------------------------------------------------
MEASURES = (("run_s", "simulation run"), ("total_s", "load + build + run"), ("process_s", "whole process"))


def summarize(runs: dict[str, list[dict[str, Any]]], horizon: float) -> dict[str, dict[str, float]]:
    """Median seconds of each measure per simulator, per simulated hour, and the ratio."""
    out: dict[str, dict[str, float]] = {}
    for key, _ in MEASURES:
        g = bu.median([r[key] for r in runs["g2gsim"]])
        o = bu.median([r[key] for r in runs["openg2g"]])
        out[key] = {
            "g2gsim_s": g,
            "openg2g_s": o,
            "g2gsim_s_per_hour": g * HOUR_S / horizon,
            "openg2g_s_per_hour": o * HOUR_S / horizon,
            "ratio_openg2g_over_g2gsim": o / g,
        }
    return out


def timing_table(summary: dict[str, dict[str, float]]) -> str:
    """Median seconds and seconds per simulated hour of both, and the ratio."""
    rows = [
        [
            label,
            s["g2gsim_s"],
            s["openg2g_s"],
            s["g2gsim_s_per_hour"],
            s["openg2g_s_per_hour"],
            s["ratio_openg2g_over_g2gsim"],
        ]
        for (key, label) in MEASURES
        for s in [summary[key]]
    ]
    return bu.markdown_table(
        ["measure", "g2gsim s", "OpenG2G s", "g2gsim s/h", "OpenG2G s/h", "OpenG2G / g2gsim"], rows
    )


def results_table(g: dict[str, Any], o: dict[str, Any]) -> str:
    """What each simulated (last pair of runs): both should describe the same system."""
    keys = (
        "grid_steps",
        "datacenter_steps",
        "worst_vmin",
        "violation_time_s",
        "integral_violation_pu_s",
        "mean_dc_power_kw",
        "final_batch",
    )

    def shown(value: Any) -> Any:
        return dict(sorted(value.items())) if isinstance(value, dict) else value

    return bu.markdown_table(["result", "g2gsim", "OpenG2G"], [[k, shown(g[k]), shown(o[k])] for k in keys])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 s, one repeat")
    parser.add_argument("--horizon", type=int, default=None, help="simulated seconds (default 600; whole seconds)")
    parser.add_argument("--repeats", type=int, default=None, help="alternating pairs of runs (default 3)")
    parser.add_argument("--venv", type=Path, default=Path("/tmp/openg2g-bench-venv"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary input folder")
    parser.add_argument("--g2gsim-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.g2gsim_worker:
        print(json.dumps(g2gsim_worker(args.g2gsim_worker)))
        return
    horizon = float(args.horizon or (60 if args.quick else 600))
    repeats = args.repeats or (1 if args.quick else 3)

    python, versions = ensure_venv(args.venv)
    folder = Path(tempfile.mkdtemp(prefix="g2gsim-openg2g-"))
    try:
        config = write_inputs(folder, horizon)
        info = bu.machine_info()
        runs: dict[str, list[dict[str, Any]]] = {"g2gsim": [], "openg2g": []}
        for i in range(repeats):
            print(f"[pair {i + 1}/{repeats}] g2gsim, then OpenG2G ({horizon:g} s)", file=sys.stderr, flush=True)
            runs["g2gsim"].append(timed_process([sys.executable, __file__, "--g2gsim-worker", str(config)]))
            runs["openg2g"].append(timed_process([str(python), str(folder / "openg2g_driver.py"), str(config)]))
    finally:
        if args.keep:
            print(f"inputs kept in {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    info["load_average_end"] = list(__import__("os").getloadavg())
    summary = summarize(runs, horizon)
    tables = {"timing": timing_table(summary), "results": results_table(runs["g2gsim"][-1], runs["openg2g"][-1])}
    print(
        f"## g2gsim vs OpenG2G {versions['openg2g']}: {SCENARIO}, {horizon:g} s simulated, median of {repeats} "
        f"alternating pairs ({info['cpu_count']} CPUs, {info['platform']}, {info['date_utc']}; g2gsim's noise "
        f"drawn ahead on a helper thread: {'yes' if info['noise_drawn_ahead'] else 'no'})\n"
    )
    print(tables["timing"] + "\n")
    ratio = summary["run_s"]["ratio_openg2g_over_g2gsim"]
    tables["verdict"] = (
        f"simulation run, OpenG2G / g2gsim: {ratio:.1f}x (target >= {RATIO_TARGET:g}x: "
        f"{'met' if ratio >= RATIO_TARGET else 'NOT met'}); pair ratios "
        + ", ".join(f"{o['run_s'] / g['run_s']:.1f}x" for g, o in zip(runs["g2gsim"], runs["openg2g"], strict=True))
    )
    print(tables["verdict"] + "\n")
    print(f"OpenG2G's known speed on this preset: ~{KNOWN_OPENG2G_S_PER_HOUR:g} s per simulated hour.\n")
    print("### Same system? (last pair of runs)\n")
    print(tables["results"] + "\n")
    print("Differences from an exact mirror:\n" + "\n".join(f"- {d}" for d in DIFFERENCES))
    payload = {
        "machine": info,
        "openg2g_venv": str(args.venv),
        "openg2g_versions": versions,
        "scenario": SCENARIO,
        "horizon_s": horizon,
        "repeats": repeats,
        "runs": runs,
        "summary": summary,
        "differences": list(DIFFERENCES),
        "tables": tables,
    }
    path = bu.write_results("openg2g", payload, quick=args.quick)
    print(f"\nwrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
