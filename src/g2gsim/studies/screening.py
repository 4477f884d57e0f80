"""Speed for studies: worker-side engine and circuit reuse, a linearised grid for coarse screening.

Engine and circuit reuse
    :func:`run_screening` is what every sweep run calls in its worker. It keeps one OpenDSS
    engine (one private DSS context) per feeder and circuit structure, per worker thread
    (the :data:`MAX_CIRCUITS_PER_WORKER` most recently used), for the life of the worker
    process, and hands it to each run's grid instead of letting the grid create a new
    context (8 to 10 ms each here, and memory that is not given back). It also keeps the
    compiled circuit: the grid is built with ``reuse_circuit = True``, so its reset compiles
    and attaches the feeder only for the first run of a structure on that engine and takes a
    snapshot of the circuit's run-mutable state right then (before initial taps and the
    first solve): every Load's kW/kvar, every transformer winding's tap, capacitor states,
    source pu, the grid's batteries (energy, state, kW, kvar) and the solution time (a
    feeder's own generators are only checked: changed, they make it recompile). A later run
    with the same structure key (:func:`g2gsim.grid.opendss.circuit_structure_key`: the
    feeder's commands and, for a ``.dss`` file, a hash of it; source pu; site, generator and
    load attachments; battery specs; grid period; regulator self-control) writes that
    snapshot back, re-issues the solution settings (``Reset`` also clears OpenDSS's
    controls), tells OpenDSS to initialise its next solve from scratch (``Init``, as after a
    compile) and carries on with the run's initial taps and first solve. Runs of a sweep that
    vary initial taps, profiles, datacenters, controllers, seeds or horizon all share one
    compile; a different structure recompiles (and replaces the snapshot), and so does a
    circuit holding elements whose run-time state the snapshot does not cover (protection,
    inverter or storage controllers, a feeder's own batteries). ``reuse_circuit=False``
    keeps the engine and recompiles every run, as before.

    Accuracy: results are bit-identical to a fresh compile (voltages, taps, storage, site
    power and metrics), tested on IEEE 13 (taps moved mid-run), 34 and 123 (batteries) and
    with OpenDSS's own regulator control, including A, B, A sequences on one engine. The
    ``Init`` is belt and braces: the re-issued ``Set Mode=Time`` already makes OpenDSS
    re-initialise; with neither, a reused circuit lands 1e-11 to 2e-10 pu (and batteries
    2e-6 kWh) away from a fresh one, its first solve starting from the last run's solution.

    Saving (``benchmarks/bench_screening.py``, shared 2-core machine): the median reset of
    the grid drops from 6 ms (compile on the worker's engine) to 0.7 ms on IEEE 13, from
    8 ms to 1.1 ms on IEEE 34 and from 11 ms to 1.5 ms on IEEE 123 (1.7 ms with four
    batteries); a grid with its own new engine, as ``g2gsim run`` builds it, takes 14 to
    19 ms. Serial sweeps of 1 to 10 simulated seconds per run save 5 to 10 ms a run, 8 to
    25 % of their wall time (``bench_sweep.py``'s 100 IEEE 13 OFO runs of 10 s: 14 to 30 %);
    for hour-long runs the saving is negligible. Because a worker keeps a circuit per
    structure, a sweep whose runs alternate between structures (a siting sweep with seeds:
    the site moves between buses) compiles once per structure, not at every change;
    ``screening_stats()`` counts compiles and reuses. The cache is shared by the worker's
    threads (Dask runs tasks in threads) under a lock; each thread keeps at most
    :data:`MAX_CIRCUITS_PER_WORKER` engines, and beyond that the least recently used
    engine is given the new structure (its next compile replaces its circuit) rather than
    dropped, since a dropped context's memory is not given back to the process.

Linearised grid (``linearized = True``)
    :class:`LinearizedOpenDSSGrid` replaces each step's power flow by
    ``v = v0 + Hp (p - p0) + Hq (q - q0)`` over every attached load's per-phase kW and kvar
    (datacenter sites, PV, external loads). ``v0``, ``p0``, ``q0`` and the matrices come from
    OpenDSS at the first step's operating point (two finite-difference solves per attached
    load phase) and are refreshed whenever taps change. The datacenter, controller and metric
    code is unchanged; OFO's sensitivity estimate is answered from the same matrices. It is
    for coarse screening only: full power flow stays the default. Batteries and OpenDSS's own
    regulator control are not supported (the grid raises at reset). :func:`linearization_error`
    and :func:`measure_linear_error` report its error against full power flow.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import pandas as pd

from g2gsim.grid.engine import DSSEngine
from g2gsim.grid.errors import GridError
from g2gsim.grid.opendss import OpenDSSGrid, circuit_structure_key
from g2gsim.kernel.context import RunContext
from g2gsim.metrics import RunMetrics
from g2gsim.scenarios import (
    Scenario,
    build_simulation,
    bundled_scenarios,
    load_scenario,
)
from g2gsim.scenarios.build import BuiltScenario

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
    :func:`~g2gsim.grid.opendss.circuit_structure_key`; None: one engine per feeder).

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
            engine.circuit_snapshot = None  # the old structure's circuit is never reused under the new key
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
class LinearizedOpenDSSGrid(OpenDSSGrid):
    """An :class:`OpenDSSGrid` whose steps use a linear voltage model (see the module docstring)."""

    def __init__(self, name: str, config: Any, *, seed: int | None = None, perturbation_kw: float = 10.0) -> None:
        super().__init__(name, config, seed=seed)
        if not (math.isfinite(perturbation_kw) and perturbation_kw > 0):
            raise ValueError(f"perturbation_kw must be positive, got {perturbation_kw!r}")
        self.perturbation_kw = float(perturbation_kw)
        self._lin: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._load_ids: list[int] = []
        self.n_linearizations = 0
        self.n_linear_steps = 0

    def reset(self, ctx: RunContext) -> None:
        if self.config.storage:
            raise GridError(f"grid {self.name!r}: the linearised grid does not model batteries; use full power flow")
        if self.config.regulator_self_control:
            raise GridError(f"grid {self.name!r}: the linearised grid cannot follow OpenDSS's own regulator control")
        self._lin = None
        super().reset(ctx)
        engine = self.engine
        names = [f"g2g_dc{i}" for i in range(len(self.config.sites))]
        names += [f"g2g_gen{i}" for i in range(len(self.config.generators))]
        names += [f"g2g_load{i}" for i in range(len(self.config.loads))]
        self._load_ids = [engine.load_index(f"{n}_{p}") for n in names for p in "abc"]
        self._lin = None
        self.n_linearizations = 0
        self.n_linear_steps = 0

    def _taps_changed(self) -> None:
        super()._taps_changed()
        self._lin = None  # refresh the model at the next step

    def linearize(self, time_s: float) -> None:
        """Build v0 and the kW / kvar sensitivities at the loads now written to OpenDSS."""
        loads = self._loads
        assert loads is not None
        engine = self.engine
        kw0, kvar0 = loads.kw.copy(), loads.kvar.copy()
        super()._solve(time_s)
        v0 = super()._read_vector()
        n = len(self._load_ids)
        hp, hq = np.empty((len(v0), n)), np.empty((len(v0), n))
        d = self.perturbation_kw
        for col, index in enumerate(self._load_ids):
            engine.set_load_kw_kvar(index, kw0[col] + d, kvar0[col])
            super()._solve(time_s)
            hp[:, col] = (super()._read_vector() - v0) / d
            engine.set_load_kw_kvar(index, kw0[col], kvar0[col] + d)
            super()._solve(time_s)
            hq[:, col] = (super()._read_vector() - v0) / d
            engine.set_load_kw_kvar(index, kw0[col], kvar0[col])
        super()._solve(time_s)  # leave the circuit at the operating point
        self._lin = (v0, kw0, kvar0, hp, hq)
        self.n_linearizations += 1

    def _solve(self, time_s: float) -> None:
        if self._loads is None:  # the solve during reset, before loads are attached
            super()._solve(time_s)
            return
        if self._lin is None:
            self.linearize(time_s)
        self.n_linear_steps += 1

    def _read_vector(self) -> np.ndarray:
        if self._lin is None or self._loads is None:
            return super()._read_vector()
        v0, kw0, kvar0, hp, hq = self._lin
        return v0 + hp @ (self._loads.kw - kw0) + hq @ (self._loads.kvar - kvar0)

    def estimate_sensitivity(self, site: str, delta_kw: float = 100.0) -> np.ndarray:
        """dV/dP of a site's phases from the linear model (kW with the site's kvar ratio)."""
        if self._lin is None:
            self.linearize(self.ctx.now_s)
        assert self._lin is not None
        target = self._site_by_name(site)
        _, _, _, hp, hq = self._lin
        cols = [target.slot + j for j in range(3)]
        self._n_sensitivity += 1
        return hp[:, cols] + target.tan_phi * hq[:, cols]

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out.update(linearized=True, n_linearizations=self.n_linearizations, n_linear_steps=self.n_linear_steps)
        return out

    def probe_error(self, site: str, delta_kw: float) -> float:
        """Largest |V_linear - V_power_flow| (pu) for `delta_kw` more on each phase of `site`.

        Linearises at the present operating point (after a run), then solves the perturbed
        point with full power flow and compares; the circuit is restored afterwards.
        """
        loads = self._loads
        if loads is None:
            raise RuntimeError("probe_error needs a grid that has run")
        time_s = float(self._times[max(self._rows - 1, 0)]) if self._rows else 0.0
        loads.write()
        self.linearize(time_s)
        v0, kw0, kvar0, hp, hq = self._lin  # type: ignore[misc]
        target = self._site_by_name(site)
        dp = np.zeros(len(kw0))
        cols = slice(target.slot, target.slot + 3)
        dp[cols] = delta_kw
        dq = dp * target.tan_phi
        predicted = v0 + hp @ dp + hq @ dq
        engine = self.engine
        for col in range(target.slot, target.slot + 3):
            engine.set_load_kw_kvar(self._load_ids[col], kw0[col] + dp[col], kvar0[col] + dq[col])
        super()._solve(time_s)
        actual = super()._read_vector()
        for col in range(target.slot, target.slot + 3):
            engine.set_load_kw_kvar(self._load_ids[col], kw0[col], kvar0[col])
        super()._solve(time_s)
        return float(np.nanmax(np.abs(predicted - actual)))


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
    compiles_before = 0
    if reuse_engine:
        structure = circuit_structure_key(grid.feeder, grid.config) if reuse_circuit else None
        grid._engine = worker_engine(grid.feeder.name, structure)
        grid.reuse_circuit = reuse_circuit
        compiles_before = grid._engine.n_compiles
    start = time.perf_counter()
    try:
        result = built.simulation.run()
        wall_s = time.perf_counter() - start
        metrics = summarize(built, result, wall_s)
    finally:
        if grid._loads is not None:  # free the load batch: the next run builds its own
            grid._loads.close()
            grid._loads = None
        if grid._engine is not None:
            _count("circuits_compiled", grid._engine.n_compiles - compiles_before)
        _count("circuits_reused", int(grid.circuit_reused))
    _count("runs")
    if linearized:
        metrics["grid_mode"] = "linearized"
        metrics["n_linearizations"] = grid.n_linearizations  # type: ignore[attr-defined]
    return metrics


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
