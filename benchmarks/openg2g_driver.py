"""Build and run one g2gsim preset with OpenG2G 0.2.0.post1 (run with OpenG2G's own Python).

    $ANCHOR_PY benchmarks/openg2g_driver.py CONFIG.json

CONFIG.json is written by ``benchmarks/_anchor.py`` from a g2gsim scenario: feeder files,
sites (models, replicas, ramps, training, layout seed), generators and loads (per-phase kW),
controllers (tap schedule, OFO, rule-based), the template length and, for the deterministic
comparison, ``deterministic`` (power noise off, every model's ITL at its fitted mixture's mean)
and a solver tolerance. Prints one JSON line of metrics; with ``record`` set it also writes
every grid step's bus-phase voltages, every site's per-phase power and the batches (npz).

It imports only OpenG2G and its dependencies, never g2gsim: the two simulators share inputs,
not code.
"""

from __future__ import annotations

import json
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import opendssdirect as dss
from openg2g.controller.ofo import LogisticModelStore, OFOBatchSizeController, OFOConfig
from openg2g.controller.rule_based import RuleBasedBatchSizeController, RuleBasedConfig
from openg2g.controller.tap_schedule import TapScheduleController
from openg2g.coordinator import Coordinator
from openg2g.datacenter.config import (
    DatacenterConfig,
    InferenceModelSpec,
    PowerAugmentationConfig,
    ReplicaSchedule,
    TrainingRun,
)
from openg2g.datacenter.offline import OfflineDatacenter, OfflineWorkload
from openg2g.datacenter.workloads.inference import InferenceData, ITLFitStore
from openg2g.datacenter.workloads.training import TrainingTrace
from openg2g.grid.config import TapPosition, TapSchedule
from openg2g.grid.generator import SyntheticPV
from openg2g.grid.load import SyntheticLoad
from openg2g.grid.opendss import OpenDSSGrid
from openg2g.metrics.performance import compute_performance_stats
from openg2g.metrics.voltage import compute_allbus_voltage_stats


class TolerantGrid(OpenDSSGrid):
    """OpenDSSGrid with OpenDSS's solver tolerance and iteration limit set after compiling."""

    def __init__(self, *, tolerance: float | None, max_iterations: int | None, **kwargs):
        super().__init__(**kwargs)
        self._tolerance = tolerance
        self._max_iterations = max_iterations

    def _init_dss(self) -> None:
        super()._init_dss()
        if self._tolerance is not None:
            dss.Text.Command(f"set tolerance={self._tolerance!r}")
        if self._max_iterations is not None:
            dss.Text.Command(f"set maxiterations={int(self._max_iterations)}")


def mean_itl(self, model_label, batch_size, n_replicas, rng):
    """Deterministic ITL: the fitted mixture's mean (no draw)."""
    return float(self.distributions[model_label][int(batch_size)].mean_var()[0])


def build_site(site: dict, config: dict, specs: dict, traces: dict) -> OfflineDatacenter:
    """One OfflineDatacenter from a site entry."""
    models = tuple(specs[m["model"]] for m in site["models"])
    inference = InferenceData.load(
        config["cache_dir"],
        models,
        duration_s=float(config["template_s"]),
        dt_s=float(Fraction(config["periods_s"]["dc"])),
    )
    replicas = {}
    for m in site["models"]:
        schedule = ReplicaSchedule(initial=m["replicas"])
        for target, t0, t1 in m["ramps"]:
            schedule = schedule.ramp_to(target, t_start=t0, t_end=t1)
        replicas[m["model"]] = schedule
    training = None
    for entry in site["training"]:
        run = TrainingRun(n_gpus=entry["n_gpus"], trace=traces[entry["csv"]], target_peak_W_per_gpu=entry["peak_w"]).at(
            t_start=entry["t_start_s"], t_end=entry["t_end_s"]
        )
        training = run if training is None else training + run
    workload_kwargs = {"training": training} if training is not None else {}
    workload = OfflineWorkload(
        inference_data=inference,
        replica_schedules=replicas,
        initial_batch_sizes={m["model"]: m["initial_batch"] for m in site["models"]},
        **workload_kwargs,
    )
    noise = 0.0 if config["deterministic"] else site["noise_fraction"]
    return OfflineDatacenter(
        DatacenterConfig(
            gpus_per_server=site["gpus_per_server"],
            base_kw_per_phase=site["base_kw_per_phase"],
            power_factor=site["power_factor"],
        ),
        workload,
        name=site["name"],
        dt_s=Fraction(config["periods_s"]["dc"]),
        seed=site["seed"],
        power_augmentation=PowerAugmentationConfig(
            amplitude_scale_range=tuple(site["amplitude_scale_range"]), noise_fraction=noise
        ),
        total_gpu_capacity=site["capacity_gpus"],
    )


def build(config: dict):
    """The Coordinator, the sites by name and the model specs."""
    specs = {fields["model_label"]: InferenceModelSpec(**fields) for fields in config["specs"]}
    traces = {
        path: TrainingTrace.load(path) for site in config["sites"] for path in {t["csv"] for t in site["training"]}
    }
    sites = {site["name"]: build_site(site, config, specs, traces) for site in config["sites"]}
    feeder = config["feeder"]
    grid = TolerantGrid(
        dss_case_dir=feeder["dir"],
        dss_master_file=feeder["master"],
        dt_s=Fraction(config["periods_s"]["grid"]),
        source_pu=feeder["source_pu"],
        initial_tap_position=TapPosition(regulators=feeder["initial_taps"]),
        exclude_buses=tuple(feeder["excluded_buses"]),
        tolerance=config.get("tolerance"),
        max_iterations=config.get("max_iterations"),
    )
    for site in config["sites"]:
        grid.attach_dc(sites[site["name"]], bus=site["bus"], power_factor=site["power_factor"])
    for g in config["generators"]:
        grid.attach_generator(SyntheticPV(peak_kw=g["peak_kw_per_phase"], site_idx=g["profile"]), bus=g["bus"])
    for load in config["loads"]:
        grid.attach_load(SyntheticLoad(peak_kw=load["peak_kw_per_phase"], site_idx=load["profile"]), bus=load["bus"])
    dt_ctrl = Fraction(config["periods_s"]["ctrl"])
    controllers = []
    for c in config["controllers"]:
        if c["type"] == "tap_schedule":
            schedule = TapSchedule(tuple((t, TapPosition(regulators=taps)) for t, taps in c["events"]))
            controllers.append(TapScheduleController(schedule=schedule, dt_s=dt_ctrl))
            continue
        site = next(s for s in config["sites"] if s["name"] == c["site"])
        models = tuple(specs[m["model"]] for m in site["models"])
        batches = {m["model"]: m["initial_batch"] for m in site["models"]}
        if c["type"] == "ofo":
            controllers.append(
                OFOBatchSizeController(
                    models,
                    datacenter=sites[c["site"]],
                    grid=grid,
                    models=LogisticModelStore.load(config["cache_dir"], models),
                    config=OFOConfig(**c["params"]),
                    dt_s=dt_ctrl,
                    initial_batch_sizes=batches,
                )
            )
        elif c["type"] == "rule_based":
            controllers.append(
                RuleBasedBatchSizeController(
                    models,
                    datacenter=sites[c["site"]],
                    grid=grid,
                    config=RuleBasedConfig(**c["params"]),
                    dt_s=dt_ctrl,
                    exclude_buses=tuple(c["excluded"]),
                    zone_buses=tuple(c["zone"]) if c.get("zone") else None,
                    initial_batch_sizes=batches,
                )
            )
        else:
            raise ValueError(f"controller type {c['type']!r} has no OpenG2G counterpart here")
    coordinator = Coordinator(
        datacenters=list(sites.values()), grid=grid, controllers=controllers, total_duration_s=int(config["horizon_s"])
    )
    return coordinator, sites, specs, grid


def record(path: str, log, sites: dict, grid) -> None:
    """Voltages (steps x bus-phases), per-phase power of each site and batches, as npz."""
    index = [(bus, phase) for bus, phase in grid.v_index]
    names = "abc"
    volts = np.array(
        [[getattr(state.voltages[bus], names[phase - 1]) for bus, phase in index] for state in log.grid_states]
    )
    arrays = {
        "t_s": np.array([s.time_s for s in log.grid_states]),
        "voltages": volts,
        "bus_phase": np.array([f"{bus}.{phase}" for bus, phase in index]),
    }
    for name in sites:
        states = log.dc_states_by_site[name]
        arrays[f"power/{name}"] = np.array([[s.power_w.a, s.power_w.b, s.power_w.c] for s in states])
        arrays[f"dc_t/{name}"] = np.array([s.time_s for s in states])
        labels = sorted(states[0].batch_size_by_model)
        arrays[f"batch/{name}"] = np.array([[s.batch_size_by_model[m] for m in labels] for s in states])
        arrays[f"labels/{name}"] = np.array(labels)
    np.savez_compressed(path, **arrays)


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    if config["deterministic"]:
        ITLFitStore.sample_avg = mean_itl
    coordinator, sites, specs, grid = build(config)
    start = time.perf_counter()
    log = coordinator.run()
    run_s = time.perf_counter() - start
    excluded = tuple(config["feeder"]["excluded_buses"])
    stats = compute_allbus_voltage_stats(
        log.grid_states, v_min=config["v_min"], v_max=config["v_max"], exclude_buses=excluded
    )
    perf = compute_performance_stats(
        log.dc_states, itl_deadline_s_by_model={label: spec.itl_deadline_s for label, spec in specs.items()}
    )
    if config.get("record"):
        record(config["record"], log, sites, grid)
    print(
        json.dumps(
            {
                "violation_time_s": stats.violation_time_s,
                "integral_violation_pu_s": stats.integral_violation_pu_s,
                "worst_vmin": stats.worst_vmin,
                "worst_vmax": stats.worst_vmax,
                "mean_throughput_tps": perf.mean_throughput_tps,
                "itl_deadline_fraction": perf.itl_deadline_fraction,
                "run_s": run_s,
            }
        )
    )


if __name__ == "__main__":
    main()
