"""Environment steps per second: g2gsim's G2GEnv against OpenG2G's BatchSizeEnv, same inputs.

What it does:

1. Reuses ``bench_openg2g.py``'s inputs: an OpenG2G v0.2 data cache of g2gsim's bundled
   (synthetic) data for the five paper models, g2gsim's synthetic training trace, the IEEE 13
   feeder, and OpenG2G 0.2.0.post1 in its own virtual environment (default
   ``/tmp/openg2g-bench-venv``; it needs ``gymnasium`` there too).
2. Both sides simulate the IEEE 13 system of SPEC 7 without batch control and without tap
   changes (g2gsim's ``ieee13_baseline_notap`` read from that cache): one 7200-GPU site at
   bus 671, replicas 720/180/90/480/210 ramping to half over 2500-3000 s, training on 2400
   GPUs over 1000-2000 s, PV and load at 675 and 680, datacenter and grid every 0.1 s, one
   action per simulated second (ten datacenter steps and ten power flows per environment step).
3. The same action sequences drive both: ``hold`` (every model keeps its batch), ``sparse``
   (the random draw below on one step in ten, else hold: a policy that switches rarely, as a
   switching cost teaches) and ``random`` (a uniform draw of down/hold/up per model each step,
   as an untrained policy acts), seeded and identical for the two. OpenG2G's side is its RL example's ``BatchSizeEnv`` (``env.py`` of
   ``../shared/reference/openg2g-rl``, run from that folder, ``delta`` actions, its default
   observation and reward); with ``--openg2g-mode coordinator`` (or without the reference
   folder) it is ``Coordinator.step()`` driven the same way (ten ticks per action, batch
   commands through ``dispatch_commands``, voltages and site state read after each action).
4. Alternating fresh processes, ``--repeats`` pairs per policy; the steps after ``reset`` are
   timed, both in process CPU time (steady on a shared machine: other processes' load does
   not count) and in wall time. Printed: steps per CPU second and per wall second of each
   simulator (medians), the ratios, and each side's episode return as a sanity check (the
   rewards differ in detail, the systems do not).

Run: ``python benchmarks/bench_env.py [--quick] [--horizon 600] [--repeats 3]
[--venv /tmp/openg2g-bench-venv] [--openg2g-mode env|coordinator]``. ``--quick``: 60 s, one
pair. Writes ``benchmarks/results/env.json`` (``env_quick.json`` with ``--quick``).
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

import numpy as np

import _benchutil as bu
import bench_openg2g as bo

SCENARIO = "ieee13_baseline_notap"
#: Share of steps at which the "sparse" actions move batches (a policy that switches rarely).
SPARSE_CHANGE = 0.1
GOAL = 20.0

# The OpenG2G side, run with the venv's interpreter: builds the same system as bench_openg2g's
# driver without OFO and tap changes, then steps the RL example's BatchSizeEnv (or the
# coordinator) through the given actions. Prints one JSON line.
DRIVER = '''\
"""Time OpenG2G environment steps on IEEE 13 (written by bench_env.py)."""
import json
import sys
import time
from fractions import Fraction

import numpy as np

config = json.loads(open(sys.argv[1]).read())
actions = json.loads(open(sys.argv[2]).read())
mode, reference = sys.argv[3], sys.argv[4]
from openg2g.coordinator import Coordinator
from openg2g.datacenter.command import SetBatchSize
from openg2g.datacenter.config import (
    DatacenterConfig, InferenceModelSpec, PowerAugmentationConfig, ReplicaSchedule, TrainingRun,
)
from openg2g.datacenter.offline import OfflineDatacenter, OfflineWorkload
from openg2g.datacenter.workloads.inference import InferenceData
from openg2g.datacenter.workloads.training import TrainingTrace
from openg2g.grid.config import TapPosition
from openg2g.grid.generator import SyntheticPV
from openg2g.grid.load import SyntheticLoad
from openg2g.grid.opendss import OpenDSSGrid

p = config["preset"]
horizon = int(config["horizon_s"])
dt_dc, dt_grid, dt_ctrl = (Fraction(str(v)) for v in p["periods_s"])
specs = tuple(InferenceModelSpec(**fields) for fields in config["specs"])
inference = InferenceData.load(config["cache_dir"], specs, duration_s=float(horizon), dt_s=float(dt_dc))
trace = TrainingTrace.load(config["training_csv"])
labels = sorted(p["replicas"])


def make_sim(scenario_override=None):
    replicas = {
        label: ReplicaSchedule(initial=n).ramp_to(n // 2, t_start=p["ramp_s"][0], t_end=p["ramp_s"][1])
        for label, n in p["replicas"].items()
    }
    batches = {label: p["initial_batch"] for label in p["replicas"]}
    training = TrainingRun(n_gpus=p["training_gpus"], trace=trace, target_peak_W_per_gpu=p["training_peak_w"]).at(
        t_start=p["training_s"][0], t_end=p["training_s"][1])
    workload = OfflineWorkload(inference_data=inference, replica_schedules=replicas, initial_batch_sizes=batches,
                               training=training)
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
    return {"_default": dc}, grid, None


def run_env():
    sys.path.insert(0, reference)
    from env import BatchSizeEnv, ObservationConfig, RewardConfig

    by_label = {s.model_label: s for s in specs}
    ordered = tuple(by_label[label] for label in labels)
    obs_config = ObservationConfig.from_model_specs(
        ordered, p["replicas"], n_bus_phases=32, initial_batch_sizes={label: p["initial_batch"] for label in labels})
    env = BatchSizeEnv(make_sim, obs_config, reward_config=RewardConfig(), action_mode="delta", dt_ctrl=dt_ctrl,
                       total_duration_s=horizon)
    t0 = time.perf_counter()
    env.reset(seed=0)
    reset_s = time.perf_counter() - t0
    total, steps = 0.0, 0
    t0, c0 = time.perf_counter(), time.process_time()
    for action in actions:
        _, reward, terminated, truncated, _ = env.step(np.asarray(action))
        total += reward
        steps += 1
        if terminated or truncated:
            break
    return reset_s, time.perf_counter() - t0, time.process_time() - c0, steps, total


def run_coordinator():
    t0 = time.perf_counter()
    datacenters, grid, _ = make_sim()
    dc = datacenters["_default"]
    coordinator = Coordinator(datacenters=[dc], grid=grid, controllers=[], total_duration_s=horizon)
    coordinator.reset()
    coordinator.start()
    ticks = int(dt_ctrl / coordinator.clock.tick_s)
    for _ in range(ticks):
        coordinator.step()
    levels = {label: 4 for label in labels}
    sizes = (8, 16, 32, 64, 128, 256, 512)
    reset_s = time.perf_counter() - t0
    total, steps = 0.0, 0
    t0, c0 = time.perf_counter(), time.process_time()
    for action in actions[: horizon - 1]:
        for label, a in zip(labels, action):
            levels[label] = min(max(levels[label] + a - 1, 0), len(sizes) - 1)
        coordinator.dispatch_commands([SetBatchSize(batch_size_by_model={l: sizes[levels[l]] for l in labels}, target=dc)])
        for _ in range(ticks):
            coordinator.step()
        v = grid.voltages_vector()
        state = dc.state
        total -= float(np.sum(np.maximum(0.95 - v, 0.0) ** 2) + np.sum(np.maximum(v - 1.05, 0.0) ** 2))
        _ = (state.batch_size_by_model, state.observed_itl_s_by_model, state.active_replicas_by_model)
        steps += 1
    step_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    coordinator.stop()
    return reset_s, step_s, cpu_s, steps, total


reset_s, step_s, cpu_s, steps, total = run_env() if mode == "env" else run_coordinator()
print(json.dumps({"reset_s": reset_s, "step_s": step_s, "cpu_s": cpu_s, "steps": steps, "return": total,
                  "steps_per_s": steps / step_s, "steps_per_cpu_s": steps / cpu_s, "mode": mode}))
'''


def action_sequences(horizon: int, n_models: int = 5, seed: int = 0) -> dict[str, list[list[int]]]:
    """The actions both simulators take, per policy: one per control step of an episode."""
    rng = np.random.default_rng(seed)
    steps = horizon - 1
    random = rng.integers(0, 3, size=(steps, n_models))
    sparse = np.where(rng.random((steps, 1)) < SPARSE_CHANGE, random, 1)
    return {"hold": [[1] * n_models for _ in range(steps)], "sparse": sparse.tolist(), "random": random.tolist()}


def g2gsim_worker(config_path: str, actions_path: str) -> dict[str, Any]:
    """Step G2GEnv through the given actions on the shared inputs (in a fresh process)."""
    config = json.loads(Path(config_path).read_text())
    actions = json.loads(Path(actions_path).read_text())
    from g2gsim.gym import G2GEnv
    from g2gsim.scenarios import load_scenario

    scenario = load_scenario(SCENARIO).with_overrides(horizon_s=config["horizon_s"], data=config["cache_dir"])
    env = G2GEnv(scenario, vary_seed=False)
    start = time.perf_counter()
    env.reset(seed=0)
    reset_s = time.perf_counter() - start
    total, steps = 0.0, 0
    start, cpu = time.perf_counter(), time.process_time()
    for action in actions:
        _, reward, terminated, truncated, _ = env.step(np.asarray(action))
        total += reward
        steps += 1
        if terminated or truncated:
            break
    step_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    return {
        "reset_s": reset_s,
        "step_s": step_s,
        "cpu_s": cpu_s,
        "steps": steps,
        "return": total,
        "steps_per_s": steps / step_s,
        "steps_per_cpu_s": steps / cpu_s,
    }


def timed_worker(command: list[str]) -> dict[str, Any]:
    """One worker process's JSON line (an error with its stderr if it failed)."""
    process = subprocess.run(command, capture_output=True, text=True, check=False)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])} failed:\n{process.stderr[-3000:]}")
    return bu.last_json_line(process.stdout)


def summary_table(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> tuple[str, dict[str, dict[str, float]]]:
    """Median steps per CPU second and per wall second, per policy and simulator, the ratios,
    and the returns."""
    rows, summary = [], {}
    for policy, sides in runs.items():
        found = {}
        for measure in ("steps_per_cpu_s", "steps_per_s"):
            g = bu.median([r[measure] for r in sides["g2gsim"]])
            o = bu.median([r[measure] for r in sides["openg2g"]])
            found[measure] = (g, o, g / o)
        summary[policy] = {
            "g2gsim_steps_per_cpu_s": found["steps_per_cpu_s"][0],
            "openg2g_steps_per_cpu_s": found["steps_per_cpu_s"][1],
            "ratio_cpu": found["steps_per_cpu_s"][2],
            "g2gsim_steps_per_s": found["steps_per_s"][0],
            "openg2g_steps_per_s": found["steps_per_s"][1],
            "ratio_wall": found["steps_per_s"][2],
        }
        returns = (sides["g2gsim"][-1]["return"], sides["openg2g"][-1]["return"])
        rows.append([policy, *found["steps_per_cpu_s"], *found["steps_per_s"], *returns])
    headers = [
        "actions",
        "g2gsim steps/CPU s",
        "OpenG2G steps/CPU s",
        "ratio (CPU)",
        "g2gsim steps/s",
        "OpenG2G steps/s",
        "ratio (wall)",
        "g2gsim return",
        "OpenG2G return",
    ]
    return bu.markdown_table(headers, rows), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 s, one pair per policy")
    parser.add_argument("--horizon", type=int, default=None, help="simulated seconds per episode (default 600)")
    parser.add_argument("--repeats", type=int, default=None, help="alternating pairs per policy (default 3)")
    parser.add_argument("--venv", type=Path, default=Path("/tmp/openg2g-bench-venv"))
    parser.add_argument("--openg2g-mode", choices=("env", "coordinator"), default="env")
    parser.add_argument("--g2gsim-worker", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.g2gsim_worker:
        print(json.dumps(g2gsim_worker(*args.g2gsim_worker)))
        return
    horizon = int(args.horizon or (60 if args.quick else 600))
    repeats = args.repeats or (1 if args.quick else 3)
    python, versions = bo.ensure_venv(args.venv)
    reference = _reference_folder()
    mode = args.openg2g_mode if reference is not None else "coordinator"
    folder = Path(tempfile.mkdtemp(prefix="g2gsim-env-bench-"))
    try:
        config = bo.write_inputs(folder, float(horizon))
        (folder / "env_driver.py").write_text(DRIVER)
        info = bu.machine_info()
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for policy, actions in action_sequences(horizon).items():
            actions_file = folder / f"actions_{policy}.json"
            actions_file.write_text(json.dumps(actions))
            runs[policy] = {"g2gsim": [], "openg2g": []}
            for i in range(repeats):
                print(f"[{policy} {i + 1}/{repeats}] g2gsim, then OpenG2G ({mode})", file=sys.stderr, flush=True)
                g2gsim = [sys.executable, __file__, "--g2gsim-worker", str(config), str(actions_file)]
                runs[policy]["g2gsim"].append(timed_worker(g2gsim))
                driver = [
                    str(python),
                    str(folder / "env_driver.py"),
                    str(config),
                    str(actions_file),
                    mode,
                    str(reference),
                ]
                runs[policy]["openg2g"].append(timed_worker(driver))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    info["load_average_end"] = list(__import__("os").getloadavg())
    table, summary = summary_table(runs)
    side = "BatchSizeEnv (RL example)" if mode == "env" else "Coordinator.step() driven like an env"
    print(
        f"## Environment steps/s: g2gsim G2GEnv vs OpenG2G {versions['openg2g']} {side}\n\n"
        f"IEEE 13 ({SCENARIO}), {horizon} s episodes, 1 s actions over 0.1 s datacenter and grid steps, "
        f"median of {repeats} alternating pairs ({info['cpu_count']} CPUs, load {info['load_average_1_5_15'][0]:.1f}, "
        f"{info['date_utc']}); goal: {GOAL:g}x\n"
    )
    print(table)
    payload = {
        "machine": info,
        "openg2g_versions": versions,
        "openg2g_mode": mode,
        "scenario": SCENARIO,
        "horizon_s": horizon,
        "repeats": repeats,
        "runs": runs,
        "summary": summary,
        "table": table,
    }
    path = bu.write_results("env", payload, quick=args.quick)
    print(f"\nwrote {path}", file=sys.stderr)


def _reference_folder() -> Path | None:
    from g2gsim.resources import shared_reference_dir

    shared = shared_reference_dir()
    folder = None if shared is None else shared / "openg2g-rl"
    return folder if folder is not None and (folder / "env.py").is_file() else None


if __name__ == "__main__":
    main()
