"""Per-step cost and memory of the trace-driven datacenter on the IEEE 13 site (SPEC 7).

The site: 7200 GPUs in 900 servers of 8, five models (replicas 720/180/90/480/210 at batch
128), base 500 kW per phase, a 2400-GPU training run, amplitude spread (0.98, 1.02) and
noise 0.005, on the bundled dataset, dt = 0.1 s.

Measured:
- g2gsim's step: mean time inside ``OfflineDatacenter.step`` and the whole kernel step
  (SimPy scheduling, mailboxes) per simulated 0.1 s, over a 600 s run without ramps;
- block mode: the same step computed one step at a time (``longest_block = 1``) against the
  default blocks of up to 64 steps (identical results), and the floor no block can go under:
  drawing the 900 servers' noise normals of a step from the same generator;
- the naive baseline: the same physics the way OpenG2G computes it, allocation recomputed
  in a pure-Python loop over servers at every step, per-model NumPy work over all servers,
  ITL through the library one model at a time (written here, never in the library);
- memory: one simulated hour recorded at 0.1 s: bytes of the state table and the
  tracemalloc peak of the whole run.

Run: ``python benchmarks/bench_datacenter.py``; writes ``benchmarks/results/datacenter.json``.
"""

from __future__ import annotations

import json
import math
import platform
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from g2gsim.data import open_data_source
from g2gsim.data.spec import PAPER_MODELS
from g2gsim.data.training import synthetic_training_trace
from g2gsim.datacenter.config import (
    DatacenterConfig,
    Facility,
    ModelDeployment,
    PowerAugmentation,
    ReplicaSchedule,
    TrainingRun,
)
from g2gsim.datacenter.offline import OfflineDatacenter
from g2gsim.kernel import Simulation

RESULTS = Path(__file__).resolve().parent / "results" / "datacenter.json"
REPLICAS = {
    "Llama-3.1-8B": 720,
    "Llama-3.1-70B": 180,
    "Llama-3.1-405B": 90,
    "Qwen3-30B-A3B": 480,
    "Qwen3-235B-A22B": 210,
}
TARGET_STEP_US = 30.0
TARGET_MEMORY_MB = 100.0


def ieee13_site(ramp_down: bool = True) -> DatacenterConfig:
    """The IEEE 13 site of SPEC 7 (ramps to 50 % over 2500-3000 s unless `ramp_down` is off)."""
    deployments = []
    for label, replicas in REPLICAS.items():
        schedule = ReplicaSchedule(initial=replicas)
        if ramp_down:
            schedule = schedule.ramp_to(replicas // 2, 2500, 3000)
        deployments.append(ModelDeployment(spec=PAPER_MODELS[label], initial_batch=128, replicas=schedule))
    training = TrainingRun(trace=synthetic_training_trace(), n_gpus=2400, target_peak_w_per_gpu=400.0)
    return DatacenterConfig(
        deployments=deployments,
        capacity_gpus=7200,
        facility=Facility(gpus_per_server=8, base_kw_per_phase=500.0, power_factor=0.95),
        augmentation=PowerAugmentation(amplitude_scale_range=(0.98, 1.02), noise_fraction=0.005),
        training=training.at(1000, 2000),
        seed=0,
    )


class TimedDatacenter(OfflineDatacenter):
    """The datacenter with a stopwatch around its step (blocks of steps, the default)."""

    def reset(self, ctx) -> None:
        super().reset(ctx)
        self.step_seconds = 0.0
        self.steps = 0

    def step(self, tick: int) -> None:
        start = time.perf_counter()
        super().step(tick)
        self.step_seconds += time.perf_counter() - start
        self.steps += 1


class TimedStepByStep(TimedDatacenter):
    """The timed datacenter computing one step at a time."""

    longest_block = 1


def measure_fast(horizon_s: float = 600.0, repeats: int = 3, cls: type = TimedDatacenter) -> dict[str, float]:
    """g2gsim per-step cost: inside the datacenter step, and per kernel step (reset excluded)."""
    dc = cls("dc", ieee13_site(), open_data_source(None))
    Simulation([dc], 0.1).run()  # warm the template cache
    best_step, best_kernel = math.inf, math.inf
    for _ in range(repeats):
        short = Simulation([dc], 0.1)
        start = time.perf_counter()
        short.run()
        fixed = time.perf_counter() - start  # reset + one step + collection
        long = Simulation([dc], horizon_s)
        start = time.perf_counter()
        long.run()
        wall = time.perf_counter() - start
        best_step = min(best_step, dc.step_seconds / dc.steps)
        best_kernel = min(best_kernel, (wall - fixed) / (dc.steps - 1))
    return {"step_us": best_step * 1e6, "kernel_step_us": best_kernel * 1e6, "steps": dc.steps}


# -- the naive baseline (OpenG2G's per-step formulation) ----------------------------------------------


def naive_allocate(phase: np.ndarray, priority: dict[str, np.ndarray], demand: dict[str, int], per_server: int):
    """Round-robin phase-balanced allocation, recomputed from scratch in Python loops."""
    claimed = np.zeros(phase.size, dtype=bool)
    result: dict[str, np.ndarray] = {}
    groups_by_model = {}
    for label in sorted(demand):
        groups: list[list[int]] = [[], [], []]
        for index in priority[label]:
            groups[phase[index]].append(index)
        groups_by_model[label] = groups
    for label in sorted(demand):
        k = math.ceil(demand[label] / per_server) if demand[label] > 0 else 0
        groups, cursors, picked, current = groups_by_model[label], [0, 0, 0], [], 0
        while len(picked) < k:
            for attempt in range(3):
                p = (current + attempt) % 3
                found = False
                while cursors[p] < len(groups[p]):
                    index = groups[p][cursors[p]]
                    cursors[p] += 1
                    if not claimed[index]:
                        picked.append(index)
                        claimed[index] = True
                        current = (p + 1) % 3
                        found = True
                        break
                if found:
                    break
            else:
                raise RuntimeError("over-subscribed")
        result[label] = np.array(picked, dtype=int)
    return result


def measure_noise_floor(steps: int = 6000, repeats: int = 3) -> float:
    """Per-step time of drawing the site's noise normals alone (900 servers), in blocks of 64 steps, us."""
    rng = np.random.default_rng(0)
    out = np.empty(64 * 900)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps // 64):
            rng.standard_normal(out=out)
        best = min(best, (time.perf_counter() - start) / (steps // 64 * 64))
    return best * 1e6


def measure_naive(steps: int = 300) -> dict[str, float]:
    """Per-step cost of the naive formulation on the same pool, templates and fits."""
    dc = OfflineDatacenter("dc", ieee13_site(), open_data_source(None))
    Simulation([dc], 60.0).run()  # builds the pool and templates exactly as g2gsim does
    pool, config = dc.pool, dc.config
    templates = {d.label: dc._bank.template(d.label, 128) for d in config.deployments}
    fits = {d.label: dc.data.itl_fit(d.spec, 128) for d in config.deployments}
    per_replica = {d.label: d.spec.gpus_per_replica for d in config.deployments}
    base = config.facility.base_kw_per_phase * 1000.0
    noise_rng, latency_rng = np.random.default_rng(1), np.random.default_rng(2)
    times = np.arange(steps) * 0.1
    training = config.training.power(times)
    start = time.perf_counter()
    for k in range(steps):
        t = float(times[k])
        per_gpu = {label: tpl[(k + pool.stagger) % len(tpl)] for label, tpl in templates.items()}
        replicas = {d.label: max(0, round(d.replicas.count(t))) for d in config.deployments}
        demand = {label: n * per_replica[label] for label, n in replicas.items()}
        allocation = naive_allocate(pool.phase, dict(pool.priority), demand, pool.gpus_per_server)
        noise = noise_rng.normal(0.0, 1.0, size=pool.num_servers)
        phase_power = np.zeros(3)
        for label, servers in allocation.items():
            power = per_gpu[label][servers] * pool.gpus_per_server * pool.amplitude[servers]
            power += noise[servers] * config.augmentation.noise_fraction * np.maximum(power, 1.0)
            power = np.maximum(power, 0.0)
            np.add.at(phase_power, pool.phase[servers], power)
            active = len(servers) * pool.gpus_per_server // per_replica[label]
            fits[label].sample_avg(n_replicas=active, rng=latency_rng)
        phase_power += base + training[k] / 3.0
    return {"step_us": (time.perf_counter() - start) / steps * 1e6, "steps": steps}


def measure_memory(horizon_s: float = 3600.0) -> dict[str, float]:
    """One simulated hour at 0.1 s: state-table bytes and the tracemalloc peak of the run."""
    dc = OfflineDatacenter("dc", ieee13_site(), open_data_source(None))
    tracemalloc.start()
    result = Simulation([dc], horizon_s).run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    table = result.tables["dc/state"]
    total_mw = table[["power_a_w", "power_b_w", "power_c_w"]].sum(axis=1) / 1e6
    return {
        "rows": len(table),
        "state_table_bytes": int(table.memory_usage(deep=True).sum()),
        "tracemalloc_peak_bytes": int(peak),
        "mean_total_mw_before_ramp": float(total_mw[table["time_s"] < 2500].mean()),
    }


def main() -> dict[str, Any]:
    fast = measure_fast()
    single = measure_fast(cls=TimedStepByStep)
    floor_us = measure_noise_floor()
    naive = measure_naive()
    memory = measure_memory()
    results = {
        "site": "IEEE 13: 7200 GPUs, 900 servers, 5 models, noise 0.005, dt 0.1 s",
        "data_source": open_data_source(None).description,
        "step_us": round(fast["step_us"], 2),
        "kernel_step_us": round(fast["kernel_step_us"], 2),
        "naive_step_us": round(naive["step_us"], 1),
        "speedup": round(naive["step_us"] / fast["step_us"], 1),
        "step_by_step_us": round(single["step_us"], 2),
        "block_speedup": round(single["step_us"] / fast["step_us"], 2),
        "noise_draw_floor_us": round(floor_us, 2),
        "target_step_us": TARGET_STEP_US,
        "state_table_mb": round(memory["state_table_bytes"] / 1e6, 2),
        "tracemalloc_peak_mb": round(memory["tracemalloc_peak_bytes"] / 1e6, 2),
        "target_memory_mb": TARGET_MEMORY_MB,
        "rows_per_hour": memory["rows"],
        "mean_total_mw_before_ramp": round(memory["mean_total_mw_before_ramp"], 3),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "numpy": np.__version__,
    }
    width = max(len(k) for k in results)
    print(f"{'quantity'.ljust(width)}  value")
    for key, value in results.items():
        print(f"{key.ljust(width)}  {value}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
