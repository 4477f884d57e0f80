"""Run a scenario end to end: build, simulate (streaming chunks), summarise, write files."""

from __future__ import annotations

import gc
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from g2gsim.grid.errors import GridError
from g2gsim.kernel.memory import release_memory
from g2gsim.kernel.registry import load_plugins
from g2gsim.kernel.results import RunResult
from g2gsim.kernel.simulation import ComponentError
from g2gsim.kernel.streaming import CHUNK_FOLDER
from g2gsim.metrics import (
    RunMetrics,
    budget_summary,
    combined_performance_metrics,
    site_power_metrics,
    voltage_metrics,
)
from g2gsim.scenarios.build import BuiltScenario, build_simulation
from g2gsim.scenarios.checks import HorizonWarning, check_memory, check_site_buses, horizon_note
from g2gsim.scenarios.model import Scenario
from g2gsim.scenarios.outputs import OutputFolder


class RunFailed(RuntimeError):
    """A scenario run failed; says which component, when, why, and where partial results are."""


@dataclass
class ScenarioRun:
    """The outcome of :func:`run_scenario`: results, headline metrics, written files and notes
    (warnings about the run, e.g. a horizon that ends before the scenario's first event)."""

    scenario: Scenario
    result: RunResult
    metrics: RunMetrics
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_scenario(
    scenario: Scenario,
    *,
    out: str | Path | None = None,
    plots: bool = True,
    progress: bool = False,
    chunk_s: float = 300.0,
    memory_limit: int | str | None = None,
) -> ScenarioRun:
    """Build and run a scenario; with `out`, write Parquet results, metrics.json and plots there.

    Before anything runs, the memory the run needs is estimated and checked against
    `memory_limit` (bytes or text such as ``"8GB"``; default: ``G2GSIM_MEMORY_LIMIT`` or 75 %
    of this machine's memory; :class:`~g2gsim.scenarios.checks.MemoryLimitError` beyond it),
    and a horizon that ends before the scenario's first scheduled event warns
    (:class:`~g2gsim.scenarios.checks.HorizonWarning`, also in ``notes``). An `out` folder
    holding an earlier run is cleared first; one holding files g2gsim did not write is refused
    (:class:`~g2gsim.scenarios.outputs.OutputFolderError`).
    """
    built = build_simulation(scenario)
    check_site_buses(built)
    check_memory(built, memory_limit)
    notes = _horizon_notes(scenario)
    folder = None if out is None else OutputFolder(out)
    if folder is not None:
        folder.claim()
        folder.add(["scenario.toml"])
        (folder.path / "scenario.toml").write_text(scenario.to_toml())
    wall_start = time.perf_counter()
    result = _simulate_or_fail(built, None if folder is None else folder.path, progress, chunk_s)
    wall_s = time.perf_counter() - wall_start
    metrics = summarize(built, result, wall_s)
    run = ScenarioRun(scenario, result, metrics, notes=notes)
    if folder is None:
        return run
    del built  # the files need the results only: the run's components go before they are written
    gc.collect()
    release_memory()
    run.files.extend(_write_tables(run, folder))
    if plots:
        run.files.extend(_draw_figures(scenario, run.result, folder))
    return run


def _horizon_notes(scenario: Scenario) -> list[str]:
    """The horizon note of the scenario (also issued as a HorizonWarning), if any."""
    note = horizon_note(scenario)
    if note is None:
        return []
    warnings.warn(note, HorizonWarning, stacklevel=3)
    return [note]


def _simulate_or_fail(built: BuiltScenario, folder: Path | None, progress: bool, chunk_s: float) -> RunResult:
    """The simulation's result, or RunFailed saying which component failed, when and why."""
    name = built.scenario.name
    try:
        return _simulate(built, folder, progress, chunk_s)
    except ComponentError as exc:
        where = f"; partial results are in {folder / CHUNK_FOLDER}" if folder is not None else ""
        raise RunFailed(f"scenario {name!r}: {exc}{where}") from exc
    except (GridError, ValueError, LookupError, OSError, RuntimeError) as exc:
        # Raised while components reset or start (unknown bus, unknown regulator, bad data
        # folder, live server unreachable, ...), before any process runs, so not wrapped in a
        # ComponentError.
        raise RunFailed(f"scenario {name!r}: the run failed: {type(exc).__name__}: {exc}") from exc


def _write_tables(run: ScenarioRun, folder: OutputFolder) -> list[Path]:
    """The final tables and metrics.json; then the streamed chunks go (the tables hold every row)."""
    results = folder.path / "results"
    folder.add([f"results/{name}" for name in run.result.file_names()] + ["metrics.json"])
    files = [run.result.to_parquet(results)]
    metrics_file = folder.path / "metrics.json"
    metrics_file.write_text(json.dumps(run.metrics, indent=2, sort_keys=True))
    files.append(metrics_file)
    folder.remove_chunks()
    return files


def _draw_figures(scenario: Scenario, result: RunResult, folder: OutputFolder) -> list[Path]:
    """The run's figures, drawn with a fresh (never run) build of the scenario for names and
    the feeder map (the run's own components are gone by then)."""
    release_memory()  # the Arrow buffers of the written tables
    folder.add(["plots/"])
    names = build_simulation(scenario)
    names.grid.voltage_index  # noqa: B018  (compiles the feeder, which the feeder map reads)
    drawn = _figure_writer()(names, result, folder.path / "plots")
    folder.add(f"plots/{path.name}" for path in drawn)
    return drawn


#: Draws a run's figures into a folder and returns the files (``g2gsim.plots`` registers one).
FigureWriter = Callable[[BuiltScenario, RunResult, Path], list[Path]]
_figure_writers: dict[str, FigureWriter] = {}


def register_figure_writer(name: str, writer: FigureWriter) -> None:
    """Make `writer` draw the figures of ``run_scenario(..., plots=True)`` (the newest wins)."""
    _figure_writers.pop(name, None)
    _figure_writers[name] = writer


def _figure_writer() -> FigureWriter:
    """The registered figure writer; the plots package is a plugin, found through its entry point."""
    if not _figure_writers:
        load_plugins()
    if not _figure_writers:
        raise RunFailed("no figure writer is registered: import g2gsim.plots (or run with plots=False)")
    return next(reversed(_figure_writers.values()))


def _simulate(built: BuiltScenario, folder: Path | None, progress: bool, chunk_s: float) -> RunResult:
    stream_to = None if folder is None else folder
    if not progress:
        return built.simulation.run(stream_to=stream_to, chunk_s=chunk_s)
    from tqdm import tqdm

    horizon = float(built.simulation.horizon)
    with tqdm(total=horizon, unit="sim s", desc=built.scenario.name, leave=False, dynamic_ncols=True) as bar:

        def report(fraction: float) -> None:
            bar.n = round(fraction * horizon, 3)  # exact-looking progress (no float drift)
            bar.update(0)

        return built.simulation.run(progress=report, stream_to=stream_to, chunk_s=chunk_s)


def summarize(built: BuiltScenario, result: RunResult, wall_s: float) -> RunMetrics:
    """Headline metrics of a run (the keys of ``g2gsim run --json``; see :data:`g2gsim.metrics.METRICS`)."""
    scenario = built.scenario
    voltages = result.table(f"{scenario.grid.name}/voltages")
    states = {site.name: result.table(f"{site.name}/state") for site in scenario.sites}
    grid_summary = result.meta.get("summary", {}).get(scenario.grid.name, {})
    metrics: dict[str, Any] = {
        **voltage_metrics(voltages, v_min=scenario.v_min, v_max=scenario.v_max),
        **combined_performance_metrics(states, built.deadlines),
        **budget_summary(result.tables_of("budget"), states, _controller_sites(scenario)),
        **site_power_metrics(states),
        "n_solves": int(grid_summary.get("n_solves", 0)),
        "wall_s": wall_s,
        "data_source": built.data.description,
        "seed": scenario.seed,
        "scenario": scenario.name,
        "horizon_s": float(scenario.horizon_s),
    }
    return cast(RunMetrics, _plain(metrics))


def _controller_sites(scenario: Scenario) -> dict[str, str]:
    """The site each controller section names (budget sources limit that site's power)."""
    sites = {section.name: getattr(section, "site", None) for section in scenario.controllers}
    return {name: site for name, site in sites.items() if isinstance(site, str)}


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe scalars (numpy numbers to Python, NaN kept as None)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not np.isfinite(value):
            value = None
        out[key] = value
    return out


def __getattr__(name: str) -> Any:
    if name == "site_power_total_kw":
        from g2gsim.metrics import site_power_total_kw

        warnings.warn(
            "g2gsim.scenarios.runner.site_power_total_kw moved to g2gsim.metrics.site_power_total_kw; "
            "the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return site_power_total_kw
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
