"""Run OpenG2G 0.2.0.post1 (the anchor) on a g2gsim scenario's inputs, in OpenG2G's own environment.

``ANCHOR_PY`` names the Python of a virtual environment with OpenG2G; :func:`anchor_python`
returns it (or None). :func:`driver_config` translates a g2gsim :class:`Scenario` into the
neutral JSON that ``openg2g_driver.py`` builds OpenG2G's objects from, and :func:`run_anchor`
runs that driver in a subprocess and returns its JSON line. Shared inputs:

- the data: g2gsim's data source for the scenario, written once as an OpenG2G v0.2 cache;
- training traces: each synthetic trace g2gsim would use, written as CSV;
- the feeder: the reference OpenDSS files OpenG2G ships (``../shared/reference/feeders``);
- every number of the preset (replicas, ramps, taps, PV and load peaks per phase, OFO and
  rule-based tuning, periods, excluded buses).

The OpenG2G side lists each site's models in sorted label order, the order g2gsim keeps them
in, so both draw per-model priorities in the same order.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

REQUIREMENT = "openg2g[opendss]==0.2.0.post1"
HOW_TO = (
    "set ANCHOR_PY to the python of a virtual environment with OpenG2G, e.g.\n"
    "  python3 -m venv /tmp/openg2g-venv && /tmp/openg2g-venv/bin/pip install "
    f'"{REQUIREMENT}"\n'
    "  ANCHOR_PY=/tmp/openg2g-venv/bin/python python benchmarks/<script>.py"
)
DRIVER = Path(__file__).with_name("openg2g_driver.py")
FEEDER_FILES = {"ieee13": "IEEE13Bus.dss", "ieee34": "IEEE34Bus.dss", "ieee123": "IEEE123Bus.dss"}
#: OpenG2G's OFOConfig fields (g2gsim's extra ones, e.g. a sensitivity timeout, stay out).
OFO_FIELDS = (
    "primal_step_size",
    "w_throughput",
    "w_switch",
    "voltage_gradient_scale",
    "v_min",
    "v_max",
    "voltage_dual_step_size",
    "latency_dual_step_size",
    "sensitivity_update_interval",
    "sensitivity_perturbation_kw",
)
SPEC_FIELDS = (
    "model_label",
    "model_id",
    "gpu_model",
    "task",
    "precision",
    "gpus_per_replica",
    "tensor_parallel",
    "expert_parallel",
    "itl_deadline_s",
    "batch_sizes",
    "feasible_batch_sizes",
    "fit_exclude_batch_sizes",
)


def anchor_python() -> Path | None:
    """The anchor's Python from ``ANCHOR_PY`` (None when unset)."""
    value = os.environ.get("ANCHOR_PY")
    return Path(value) if value else None


def reference_feeders() -> Path:
    """The reference feeder folder (``../shared/reference/feeders``); an error when absent."""
    from g2gsim.resources import shared_reference_dir

    shared = shared_reference_dir()
    if shared is None or not (shared / "feeders").is_dir():
        raise FileNotFoundError("the reference feeders (../shared/reference/feeders) are not here")
    return shared / "feeders"


def write_cache(data: Path, folder: Path) -> Path:
    """The paper models' data from `data` as an OpenG2G v0.2 cache in `folder` (once)."""
    from g2gsim.data import open_data_source
    from g2gsim.data.caches import write_v02_cache
    from g2gsim.data.spec import PAPER_MODELS

    cache = folder / "cache"
    if not cache.is_dir():
        write_v02_cache(open_data_source(data), list(PAPER_MODELS.values()), cache)
    return cache


def _tap_ratios(steps: dict[str, int], ratios: dict[str, float]) -> dict[str, float]:
    from g2gsim.grid.config import tap_pu

    return {**{name: float(r) for name, r in ratios.items()}, **{name: tap_pu(n) for name, n in steps.items()}}


def _training(site: Any, folder: Path) -> list[dict[str, Any]]:
    from g2gsim.data.training import save_training_trace, synthetic_training_trace

    out = []
    for job in site.training:
        if job.trace == "synthetic":
            csv = folder / f"training_seed{job.trace_seed}.csv"
            if not csv.exists():
                save_training_trace(synthetic_training_trace(seed=job.trace_seed), csv)
        else:
            csv = Path(job.trace)
        peak = job.target_peak_w_per_gpu
        out.append(
            {"n_gpus": job.n_gpus, "peak_w": peak, "t_start_s": job.t_start_s, "t_end_s": job.t_end_s, "csv": str(csv)}
        )
    return out


def _site(site: Any, seed: int, folder: Path) -> dict[str, Any]:
    models = sorted(site.models, key=lambda m: m.model)
    return {
        "name": site.name,
        "bus": site.bus,
        "capacity_gpus": site.capacity_gpus,
        "gpus_per_server": site.gpus_per_server,
        "base_kw_per_phase": site.base_kw_per_phase,
        "power_factor": site.power_factor,
        "amplitude_scale_range": list(site.amplitude_scale_range),
        "noise_fraction": site.noise_fraction,
        "seed": int(seed),
        "models": [
            {
                "model": m.model,
                "replicas": m.replicas,
                "initial_batch": m.initial_batch,
                "ramps": [[r.target, r.t_start_s, r.t_end_s] for r in m.ramps],
            }
            for m in models
        ],
        "training": _training(site, folder),
    }


def _profile(entry: Any) -> dict[str, Any]:
    profile = entry.profile
    kind = getattr(profile, "kind", None)
    if kind not in ("synthetic_pv", "synthetic_load"):
        raise ValueError(f"{entry.name}: profile kind {kind!r} has no OpenG2G counterpart here")
    # g2gsim takes three-phase totals, OpenG2G kW per phase
    return {"bus": entry.bus, "peak_kw_per_phase": profile.peak_kw / 3.0, "profile": profile.profile}


def _controllers(scenario: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    excluded = list(scenario.grid.excluded_buses)
    for c in scenario.controllers:
        if c.type == "tap_schedule":
            events = [[e.t_s, _tap_ratios(e.tap_steps, e.taps)] for e in c.events]
            out.append({"type": "tap_schedule", "events": events})
        elif c.type == "ofo":
            params = {k: v for k, v in c.params.model_dump(mode="json").items() if k in OFO_FIELDS}
            out.append({"type": "ofo", "site": c.site, "params": params})
        elif c.type == "rule_based":
            p = c.params
            params = {
                "step_size": p.step_size,
                "v_min": p.v_min,
                "v_max": p.v_max,
                "deadband": p.deadband,
                "latency_guard": p.latency_guard,
            }
            zone = sorted(p.zone) if p.zone is not None else None
            out.append(
                {
                    "type": "rule_based",
                    "site": c.site,
                    "params": params,
                    "zone": zone,
                    "excluded": sorted({*excluded, *p.excluded_buses}),
                }
            )
        else:
            raise ValueError(f"controller {c.name!r} of type {c.type!r} has no OpenG2G counterpart here")
    return out


def driver_config(
    scenario: Any,
    folder: Path,
    *,
    data: Path,
    site_seeds: dict[str, int],
    template_s: float = 600.0,
    deterministic: bool = False,
    tolerance: float | None = None,
    max_iterations: int | None = None,
    record: Path | None = None,
) -> Path:
    """Write the driver's JSON for `scenario` into `folder`; returns its path."""
    from g2gsim.data.spec import PAPER_MODELS

    grid = scenario.grid
    periods = {
        "dc": str(scenario.sites[0].period_s),
        "grid": str(grid.period_s),
        "ctrl": str(next((c.period_s for c in scenario.controllers if c.period_s is not None), 1)),
    }
    config = {
        "horizon_s": scenario.horizon_s,
        "periods_s": periods,
        "v_min": scenario.v_min,
        "v_max": scenario.v_max,
        "cache_dir": str(write_cache(data, folder)),
        "template_s": template_s,
        "deterministic": deterministic,
        "tolerance": tolerance,
        "max_iterations": max_iterations,
        "record": None if record is None else str(record),
        "specs": [
            {k: v for k, v in spec.model_dump(mode="json").items() if k in SPEC_FIELDS}
            for spec in PAPER_MODELS.values()
        ],
        "feeder": {
            "dir": str(reference_feeders() / grid.feeder),
            "master": FEEDER_FILES[grid.feeder],
            "source_pu": grid.source_pu,
            "initial_taps": _tap_ratios(grid.initial_tap_steps, grid.initial_taps),
            "excluded_buses": list(grid.excluded_buses),
        },
        "sites": [_site(site, site_seeds[site.name], folder) for site in scenario.sites],
        "generators": [_profile(g) for g in grid.generators],
        "loads": [_profile(load) for load in grid.loads],
        "controllers": _controllers(scenario),
    }
    path = folder / f"openg2g_{scenario.name}_{abs(hash(json.dumps(config, sort_keys=True, default=str)))}.json"
    path.write_text(json.dumps(config, indent=1, default=str))
    return path


def run_anchor(python: Path, config: Path, *, nice: int = 10) -> dict[str, Any]:
    """Run the driver with the anchor's Python (at the given niceness); its JSON line."""
    command = ["nice", "-n", str(nice), str(python), str(DRIVER), str(config)]
    process = subprocess.run(command, capture_output=True, text=True, check=False)
    if process.returncode != 0:
        raise RuntimeError(f"OpenG2G driver failed on {config.name}:\n{process.stderr[-3000:]}")
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])
