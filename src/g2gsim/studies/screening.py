"""Speed for studies: per-worker engine and circuit reuse, and the linearised grid for screening.

Engine and circuit reuse
    :func:`run_screening` is what every sweep run calls in its worker. It keeps OpenDSS
    engines (one private DSS context each) per feeder, circuit structure and worker thread,
    the :data:`MAX_CIRCUITS_PER_WORKER` most recently used, for the life of the worker
    process, and hands one to each run's grid instead of letting the grid create a context
    (whose memory is not given back). With circuit reuse the grid compiles and attaches a
    structure once per engine and later runs write a snapshot of the circuit back instead
    (:mod:`g2gsim.grid.reuse`; results bit-identical to a fresh compile). Runs that vary
    initial taps, profiles, sites, controllers, seeds or horizon share one compile; a
    different structure (:func:`~g2gsim.grid.reuse.circuit_structure_key`) gets its own
    engine, and beyond the limit the thread's least recently used engine is given the new
    structure (its next run compiles) rather than dropped. The cache is shared by the
    worker's threads (Dask runs tasks in threads) under a lock; :func:`screening_stats`
    counts engines, compiles and reuses.

Linearised grid (``linearized = True``)
    :func:`linearized_build` swaps the scenario's grid for a
    :class:`~g2gsim.grid.linearized.LinearizedOpenDSSGrid` (coarse screening only; full power
    flow stays the default). :func:`linearization_error`, :func:`compare_with_power_flow`
    and :func:`measure_linear_error` report its error against full power flow.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import pandas as pd

from g2gsim.grid.engine import DSSEngine
from g2gsim.grid.linearized import LinearizedOpenDSSGrid
from g2gsim.grid.opendss import OpenDSSGrid
from g2gsim.grid.reuse import circuit_structure_key, forget_compiled_circuit
from g2gsim.metrics import RunMetrics
from g2gsim.scenarios import (
    Scenario,
    build_simulation,
    bundled_scenarios,
    load_scenario,
)
from g2gsim.scenarios.build import BuiltScenario

__all__ = [
    "MAX_CIRCUITS_PER_WORKER",
    "LinearizedOpenDSSGrid",
    "compare_with_power_flow",
    "linearization_error",
    "linearized_build",
    "measure_linear_error",
    "run_screening",
    "screening_stats",
    "warm_up",
    "worker_engine",
]

#: Engines of this process, least recently used first, keyed by (feeder, circuit structure
#: or None, thread): a sweep that alternates structures (siting: the site moves between buses)
#: keeps one compiled circuit per structure, up to :data:`MAX_CIRCUITS_PER_WORKER` per thread.
_ENGINES: OrderedDict[tuple[str, Any, int], DSSEngine] = OrderedDict()
#: Guards _ENGINES and _STATS (a Dask worker runs tasks in several threads).
_LOCK = threading.Lock()
_STATS = {"runs": 0, "engines_created": 0, "engines_recycled": 0, "circuits_compiled": 0, "circuits_reused": 0}
#: Compiled circuits a worker thread keeps (each is an OpenDSS context of a few MB).
MAX_CIRCUITS_PER_WORKER = 8


def worker_engine(feeder: str, structure: Any = None) -> DSSEngine:
    """This worker thread's OpenDSS engine for `feeder` and circuit `structure` (a
    :func:`~g2gsim.grid.reuse.circuit_structure_key`; None: one engine per feeder).

    A new key gets a new engine while the thread has fewer than
    :data:`MAX_CIRCUITS_PER_WORKER`, else the thread's least recently used engine (its
    circuit snapshot dropped, so its next run compiles). Thread-safe.
    """
    thread = threading.get_ident()
    key = (feeder, structure, thread)
    limit = max(1, MAX_CIRCUITS_PER_WORKER)
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is not None:
            _ENGINES.move_to_end(key)
            return engine
        mine = [k for k in _ENGINES if k[2] == thread]
        if len(mine) >= limit:
            for stale in mine[: len(mine) - limit]:  # beyond a lowered limit: dropped
                del _ENGINES[stale]
            engine = _ENGINES.pop(mine[len(mine) - limit])
            forget_compiled_circuit(engine)  # the old structure's circuit is never reused under the new key
            _STATS["engines_recycled"] += 1
        else:
            engine = DSSEngine()  # under the lock: creating a context briefly changes the working directory
            _STATS["engines_created"] += 1
        _ENGINES[key] = engine
        return engine


def _count(name: str, n: int = 1) -> None:
    with _LOCK:
        _STATS[name] += n


def screening_stats() -> dict[str, int]:
    """Runs, engines and circuit compiles of this process: engines_created reaches one per
    structure and thread up to :data:`MAX_CIRCUITS_PER_WORKER`, then engines_recycled counts
    engines given another structure; circuits_compiled stays at one per structure while a
    thread's structures fit in the limit."""
    with _LOCK:
        return dict(_STATS)


# -- the linearised grid -----------------------------------------------------------------------
def linearized_build(scenario: Scenario, *, perturbation_kw: float = 10.0) -> BuiltScenario:
    """:func:`build_simulation` with the scenario's grid replaced by a linearised one."""
    from g2gsim.kernel.simulation import Simulation

    built = build_simulation(scenario)
    old = built.grid
    grid = LinearizedOpenDSSGrid(old.name, old.config, perturbation_kw=perturbation_kw)
    components = [grid if c is old else c for c in built.simulation.components]
    built.simulation = Simulation(
        components,
        scenario.horizon_s,
        seed=scenario.seed,
        metadata={"scenario": scenario.name, "data_source": built.data.description, "grid": "linearized"},
    )
    built.grid = grid
    return built


# -- one run in a worker -------------------------------------------------------------------------
def run_screening(
    scenario: Scenario, *, linearized: bool = False, reuse_engine: bool = True, reuse_circuit: bool = True
) -> RunMetrics:
    """Run a scenario in this process, in memory, and return its headline metrics.

    The same metrics as :func:`g2gsim.scenarios.run_scenario` (no files, no plots). With
    `reuse_engine` the grid uses this worker's engine for the feeder and, with `reuse_circuit`
    too, the circuit compiled there by an earlier run of the same structure (see the module
    docstring); `linearized` swaps in the linearised grid.
    """
    from g2gsim.scenarios.runner import summarize

    built = linearized_build(scenario) if linearized else build_simulation(scenario)
    grid = built.grid
    engine = None
    compiles_before = 0
    if reuse_engine:
        structure = circuit_structure_key(grid.feeder, grid.config) if reuse_circuit else None
        engine = worker_engine(grid.feeder.name, structure)
        grid.use_engine(engine, reuse_circuit=reuse_circuit)
        compiles_before = engine.n_compiles
    start = time.perf_counter()
    try:
        result = built.simulation.run()
        wall_s = time.perf_counter() - start
        metrics = summarize(built, result, wall_s)
    finally:
        grid.release()  # the next run on this engine builds its own load batch
        _count("circuits_compiled", _compiles(grid) - compiles_before)
        _count("circuits_reused", int(grid.circuit_reused))
    _count("runs")
    if linearized:
        metrics["grid_mode"] = "linearized"
        metrics["n_linearizations"] = grid.n_linearizations  # type: ignore[attr-defined]
    return metrics


def _compiles(grid: OpenDSSGrid) -> int:
    """Compiles done by the grid's engine (0 when the run failed before it had one)."""
    try:
        return grid.engine.n_compiles
    except RuntimeError:
        return 0


def warm_up(feeder_scenario: str = "ieee13_baseline_notap") -> int:
    """Load imports, data and fits in this worker with a one-second run (for fresh workers,
    e.g. ``client.run(warm_up)`` on a Dask cluster); returns the process id."""
    import os

    run_screening(load_scenario(feeder_scenario).with_overrides(horizon_s=1))
    return os.getpid()


# -- measuring the linear model's error ------------------------------------------------------------
def linearization_error(
    scenario: Scenario, deltas_kw: tuple[float, ...] = (1.0, 10.0, 100.0), *, site: int = 0, settle_s: float = 1.0
) -> dict[float, float]:
    """Largest voltage error (pu) of the linear model for a per-phase step of `delta` kW at a site.

    Runs the scenario for `settle_s` to reach a realistic operating point, then for each
    delta compares the linear prediction with a full power flow at that point.
    """
    short = scenario.with_overrides(horizon_s=settle_s)
    built = linearized_build(short)
    built.simulation.run()
    grid = built.grid
    assert isinstance(grid, LinearizedOpenDSSGrid)
    name = scenario.sites[site].name
    return {float(d): grid.probe_error(name, float(d)) for d in deltas_kw}


def compare_with_power_flow(scenario: Scenario) -> dict[str, Any]:
    """Run `scenario` with full power flow and with the linearised grid; compare them.

    Returns the largest and mean absolute voltage difference over every recorded step and
    bus-phase, the headline voltage metrics of both, and both wall times.
    """
    from g2gsim.scenarios.runner import summarize

    out: dict[str, Any] = {"scenario": scenario.name, "horizon_s": float(scenario.horizon_s)}
    tables = {}
    for mode, build in (("full", build_simulation), ("linear", linearized_build)):
        built = build(scenario)
        start = time.perf_counter()
        result = built.simulation.run()
        wall = time.perf_counter() - start
        metrics = summarize(built, result, wall)
        tables[mode] = result.table(f"{scenario.grid.name}/voltages").drop(columns="time_s")
        out[f"wall_s_{mode}"] = wall
        for key in ("violation_time_s", "integral_violation_pu_s", "worst_vmin", "worst_vmax"):
            out[f"{key}_{mode}"] = metrics[key]
    diff = tables["linear"].to_numpy() - tables["full"].to_numpy()
    out["max_abs_error_pu"] = float(np.nanmax(np.abs(diff)))
    out["mean_abs_error_pu"] = float(np.nanmean(np.abs(diff)))
    return out


def measure_linear_error(names: list[str] | None = None, *, horizon_s: float = 300.0) -> pd.DataFrame:
    """:func:`compare_with_power_flow` on bundled scenarios (those without batteries)."""
    rows = []
    for name in names or list(bundled_scenarios()):
        try:
            scenario = load_scenario(name).with_overrides(horizon_s=horizon_s)
        except Exception as exc:
            rows.append({"scenario": name, "skipped": f"{type(exc).__name__}: {exc}"})
            continue
        if scenario.is_live:
            rows.append({"scenario": name, "skipped": "live site (needs its servers, runs in wall-clock time)"})
            continue
        if scenario.grid.storage or scenario.grid.regulator_self_control:
            rows.append({"scenario": name, "skipped": "batteries or OpenDSS regulator control"})
            continue
        try:
            rows.append(compare_with_power_flow(scenario))
        except Exception as exc:
            rows.append({"scenario": name, "skipped": f"{type(exc).__name__}: {str(exc)[:200]}"})
    return pd.DataFrame(rows)
