"""Sweeps: one base scenario, parameter axes over dotted paths, runs on any executor.

A sweep is a base scenario (a bundled name, a path, or an inline table) plus axes. Each axis
is a dotted path into the scenario (``seed``, ``horizon_s``, ``sites.0.bus``,
``controllers.0.params.primal_step_size``) with its values. ``mode`` combines the axes:

- ``cartesian``: every combination of the axes' values;
- ``zip``: the i-th value of every axis together (all axes the same length);
- ``random``: ``samples`` draws (seeded by ``sample_seed``); an axis is a list to choose from
  or a range ``{low, high, log, integer}``.

:func:`run_sweep` runs the points on a serial loop, local processes, a Dask cluster or any
``concurrent.futures``-style executor. Every finished run is written at once as one small JSON
row in ``OUT/runs/<run_id>.json`` (written to a temporary name, then renamed, so a row is
either complete or absent); ``OUT/results.parquet`` consolidates the rows at the end and on
:func:`load_results`. The run id is a stable hash of the base scenario, the run's parameters
and the content of the data folder it reads (:func:`~g2gsim.data.data_fingerprint`), so
running a sweep again into the same folder skips every run already recorded (succeeded or
failed; ``retry_failed=True`` runs the failed ones again) and only runs the rest, while a
changed data folder runs everything again. A run that raises is recorded with
``status = "failed"`` and its error; the sweep goes on. A run lost to the executor itself
(a worker process killed, a cluster gone) is not recorded, so the next resume runs it.
A folder may hold the runs of several sweeps: ``results.parquet`` has them all, while
:func:`run_sweep` returns (and the CLI prints) this sweep's runs only, and warns
(:class:`SweepFolderWarning`) when the folder's ``sweep.json`` describes another sweep.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import itertools
import json
import math
import os
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from g2gsim.data.open import data_fingerprint
from g2gsim.grid.feeders import trust_feeder_dir, trusted_feeder_dirs
from g2gsim.scenarios import Scenario, ScenarioError, load_scenario, overrides
from g2gsim.scenarios.model import absolute_paths, read_toml
from g2gsim.studies.executors import (
    ExecutorError,
    SerialExecutor,
    close_executor,
    default_start_method,
    make_executor,
    pool_is_broken,
)

__all__ = [
    "ExecutorError",
    "RangeAxis",
    "RunTask",
    "Sweep",
    "SweepError",
    "SweepFolderWarning",
    "SweepResult",
    "apply_parameters",
    "completed_run_ids",
    "default_start_method",
    "execute_task",
    "failed_run_ids",
    "load_results",
    "make_executor",
    "run_id_of",
    "run_sweep",
    "sweep_folder_mismatch",
    "sweep_from_points",
]

RESULTS_FILE = "results.parquet"
RUNS_DIR = "runs"
#: Columns every results row has besides its parameters and metrics.
ROW_FIELDS = ("run_id", "status", "error", "wall_s", "worker_wall_s", "worker_cpu_s")


class SweepError(ValueError):
    """A sweep definition is invalid; the message names the axis (dotted path) and the problem."""


class SweepFolderWarning(UserWarning):
    """The output folder already holds another sweep's runs (its ``sweep.json`` differs)."""


# -- the sweep definition ----------------------------------------------------------------------
class RangeAxis(BaseModel):
    """A continuous (or integer) range sampled by ``mode = "random"``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    low: float
    high: float
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> RangeAxis:
        if not self.high >= self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self

    def draw(self, rng: np.random.Generator) -> float | int:
        if self.log:
            value = float(np.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        else:
            value = float(rng.uniform(self.low, self.high))
        return int(round(value)) if self.integer else value


class Sweep(BaseModel):
    """A base scenario and the parameter axes to vary (see the module docstring).

    ``overrides`` and ``axes`` are keyed by dotted path; a nested table is read as dotted
    paths to its entries, so TOML's unquoted dotted keys (``grid.source_pu = 1.02`` under
    ``[overrides]`` or ``[axes]``) mean the same as quoted ones. An override's table value
    therefore sets the table's entries, not the whole table (an empty table ``{}`` is kept
    as a value, so ``"grid.initial_tap_steps" = {}`` clears it); an axis's ``{low, high}``
    table is a range.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "sweep"
    description: str = ""
    base: str | dict[str, Any] = Field(
        description="a bundled scenario name, a scenario file, or an inline scenario table"
    )
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted path -> value, applied to every run")
    mode: Literal["cartesian", "zip", "random"] = "cartesian"
    axes: dict[str, list[Any] | RangeAxis] = Field(default_factory=dict)
    samples: int | None = Field(default=None, gt=0, description="number of random draws (mode = random)")
    sample_seed: int = 0
    linearized_grid: bool = Field(
        default=False, description="screening: the linearised grid instead of full power flow"
    )
    labels: list[dict[str, Any]] = Field(
        default_factory=list, description="zip mode: extra columns per point (recorded, not applied, not hashed)"
    )

    @model_validator(mode="before")
    @classmethod
    def _dotted_paths(cls, data: Any) -> Any:
        """Nested ``overrides`` / ``axes`` tables (TOML dotted keys) -> dotted paths."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for section in ("overrides", "axes"):
            if isinstance(data.get(section), dict):
                data[section] = flatten_paths(data[section], section, keep=_is_range if section == "axes" else None)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Sweep:
        for path, values in self.axes.items():
            if isinstance(values, RangeAxis) and self.mode != "random":
                raise ValueError(f'axis {path!r}: a {{low, high}} range needs mode = "random"; give a list of values')
            if isinstance(values, list) and not values:
                raise ValueError(f"axis {path!r}: no values")
        if self.mode == "zip":
            lengths = {p: len(v) for p, v in self.axes.items() if isinstance(v, list)}
            if len(set(lengths.values())) > 1:
                raise ValueError(f'mode = "zip" needs axes of equal length; lengths: {lengths}')
        sizes = [len(v) if isinstance(v, list) else -1 for v in self.axes.values()]
        if self.labels and (self.mode != "zip" or any(n != len(self.labels) for n in sizes)):
            raise ValueError('labels need mode = "zip" and one entry per point')
        if self.mode == "random" and self.samples is None:
            raise ValueError('mode = "random" needs `samples`')
        return self

    # -- files -----------------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | Path) -> Sweep:
        """Load a sweep file; a relative ``base`` path is taken relative to the file."""
        file = Path(path)
        raw = read_toml(file, "sweep file", SweepError)
        base = raw.get("base")
        if isinstance(base, str) and (base.endswith(".toml") or "/" in base):
            candidate = (file.parent / base).resolve()
            if candidate.is_file():
                raw["base"] = str(candidate)
        elif isinstance(base, dict):  # an inline scenario's paths are relative to the sweep file
            raw["base"] = absolute_paths(base, file.resolve().parent)
        try:
            return cls.model_validate(raw)
        except Exception as exc:  # pydantic.ValidationError
            raise SweepError(f"{file}: {exc}") from None

    # -- expansion -------------------------------------------------------------------------------
    def base_scenario(self) -> Scenario:
        """The validated base scenario with the sweep's overrides applied."""
        if isinstance(self.base, dict):
            scenario = Scenario.from_dict(self.base, source=f"sweep {self.name!r}: inline base")
        else:
            scenario = load_scenario(self.base)
        if not self.overrides:
            return scenario
        for path in self.overrides:
            check_path(scenario.to_dict(), path)
        return apply_parameters(scenario, self.overrides, what="overrides")

    def points(self) -> list[dict[str, Any]]:
        """Every run's parameters (dotted path -> value), in sweep order."""
        paths = list(self.axes)
        if not paths:
            return [{}]
        if self.mode == "cartesian":
            return [dict(zip(paths, combo, strict=True)) for combo in itertools.product(*self.axes.values())]
        if self.mode == "zip":
            return [dict(zip(paths, combo, strict=True)) for combo in zip(*self.axes.values(), strict=True)]
        rng = np.random.default_rng(self.sample_seed)
        points = []
        for _ in range(int(self.samples or 0)):
            point = {}
            for path, axis in self.axes.items():
                if isinstance(axis, RangeAxis):
                    point[path] = axis.draw(rng)
                else:
                    point[path] = _plain_value(axis[int(rng.integers(len(axis)))])
            points.append(point)
        return points

    def validate_axes(self, base: Scenario | None = None) -> Scenario:
        """Check every axis path and every listed value against the scenario model.

        Each value is applied alone to the base scenario and the result validated; an error
        names the path and the value. Returns the base scenario.
        """
        base = self.base_scenario() if base is None else base
        raw = base.to_dict()
        for path, values in self.axes.items():
            check_path(raw, path)
            examples = values if isinstance(values, list) else [values.low, values.high]
            if isinstance(values, RangeAxis) and values.integer:
                examples = [int(round(v)) for v in examples]
            unique = {json.dumps(_plain_value(v), sort_keys=True, default=str): v for v in examples}
            for value in unique.values():
                apply_parameters(base, {path: value}, what=f"axis {path!r} value {value!r}")
        return base

    def tasks(self) -> list[RunTask]:
        """Validated run tasks (base scenario + parameters + stable run id)."""
        base = self.validate_axes()
        base_dict = base.to_dict()
        base_key = _digest(base_dict)
        feeder_dirs = tuple(str(d) for d in trusted_feeder_dirs())
        data_keys: dict[str | None, str] = {}
        seen: set[str] = set()
        tasks = []
        for i, params in enumerate(self.points()):
            params = {k: _plain_value(v) for k, v in params.items()}
            data = params.get("data", base_dict.get("data"))
            if data not in data_keys:
                data_keys[data] = _data_key(data)
            run_id = run_id_of(base_key, params, self.linearized_grid, data_keys[data])
            if run_id in seen:  # a repeated random draw or a repeated list value: run once
                continue
            seen.add(run_id)
            labels = self.labels[i] if self.labels else {}
            tasks.append(RunTask(run_id, base_dict, params, self.linearized_grid, labels, feeder_dirs))
        return tasks


# -- dotted paths ------------------------------------------------------------------------------
def _is_range(value: Any) -> bool:
    """True for an axis's ``{low, high, ...}`` table (a :class:`RangeAxis`), not a nested path."""
    return isinstance(value, dict) and {"low", "high"} <= set(value) and set(value) <= set(RangeAxis.model_fields)


def flatten_paths(
    table: Mapping[str, Any], what: str, keep: Callable[[Any], bool] | None = None, prefix: str = ""
) -> dict[str, Any]:
    """``{"grid": {"source_pu": 1}}`` -> ``{"grid.source_pu": 1}``; empty tables and tables
    `keep` accepts stay values. Raises SweepError when two entries name the same path."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and not (keep and keep(value)):
            entries = flatten_paths(value, what, keep, prefix=f"{path}.")
        else:
            entries = {path: value}
        for name, entry in entries.items():
            if name in flat:
                raise SweepError(f"{what}: {name!r} is given twice (as a dotted key and in a table); give it once")
            flat[name] = entry
    return flat


def check_path(raw: Mapping[str, Any], path: str) -> None:
    """Raise SweepError unless `path` names a field of the scenario (or a key of a free-form table)."""
    try:
        overrides.check_path(raw, path, noun="axis")
    except overrides.PathError as exc:
        raise SweepError(str(exc)) from None


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set `path` in a plain scenario mapping, in place (intermediate tables must exist)."""
    try:
        overrides.set_path(raw, path, value, noun="axis")
    except overrides.PathError as exc:
        raise SweepError(str(exc)) from None


def apply_parameters(scenario: Scenario, params: Mapping[str, Any], *, what: str = "parameters") -> Scenario:
    """A validated copy of `scenario` with every dotted path of `params` set
    (:meth:`Scenario.with_changes`; loading validates every controller parameter too)."""
    try:
        return scenario.with_changes(params, what=what, noun="axis")
    except ScenarioError as exc:
        raise SweepError(str(exc)) from None


# -- run ids and tasks ---------------------------------------------------------------------------
def _plain_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _data_key(data: Any) -> str:
    """The fingerprint of a run's data (a SweepError naming the folder when it cannot be read)."""
    try:
        return data_fingerprint(data if isinstance(data, str | None) else str(data))
    except OSError as exc:
        raise SweepError(f"data {data!r}: {exc}") from None


def run_id_of(base_key: str, params: Mapping[str, Any], linearized: bool = False, data_key: str = "") -> str:
    """Stable id of a run: a hash of the base scenario's digest, the parameters, the grid mode and
    the content of the data it reads (so a sweep resumed on changed data runs again)."""
    return _digest({"base": base_key, "params": dict(params), "linearized": bool(linearized), "data": data_key})[:16]


@dataclass(frozen=True)
class RunTask:
    """What a worker needs for one run (plain data: pickles to any executor)."""

    run_id: str
    base: dict[str, Any]
    params: dict[str, Any]
    linearized_grid: bool = False
    labels: dict[str, Any] = field(default_factory=dict)  # extra columns (not applied, not hashed)
    feeder_dirs: tuple[str, ...] = ()  # folders whose .dss feeders the run may compile (not hashed)


def execute_task(task: RunTask) -> dict[str, Any]:
    """Run one task in the calling process and return its results row (never raises).

    Used by every executor (it is a module-level function, so it pickles by reference).
    """
    from g2gsim.studies.screening import run_screening

    start, cpu_start = time.perf_counter(), time.process_time()
    row: dict[str, Any] = {"run_id": task.run_id, **task.labels, **task.params}
    try:
        for folder in task.feeder_dirs:
            if Path(folder).is_dir():  # a remote worker may not have the caller's folders
                trust_feeder_dir(folder)
        scenario = apply_parameters(
            Scenario.from_dict(task.base, source="sweep base"), task.params, what=f"run {task.run_id}"
        )
        metrics = run_screening(scenario, linearized=task.linearized_grid)
        for key, value in flatten_metrics(metrics).items():
            if key not in row:
                row[key] = value
        row.update(status="ok", error=None)
    except Exception as exc:  # failure isolation: a run's error is data, not a crash
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        row["traceback"] = traceback.format_exc(limit=6)
    row["worker_wall_s"] = time.perf_counter() - start
    # CPU seconds of the worker process during the run: what the run costs on an unshared core
    # (with several task threads per worker, e.g. Dask's, the other threads' CPU is in it too)
    row["worker_cpu_s"] = time.process_time() - cpu_start
    row["worker_pid"] = os.getpid()
    return row


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar metrics, nested dicts flattened to ``outer.inner`` keys."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, prefix=f"{name}."))
        elif isinstance(value, str | int | float | bool) or value is None:
            flat[name] = value
        elif isinstance(value, np.generic):
            flat[name] = value.item()
    return flat


# -- the results table ---------------------------------------------------------------------------
def _write_row(out: Path, row: Mapping[str, Any]) -> Path:
    """One run's row, atomically: temporary file, fsync, rename."""
    folder = out / RUNS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{row['run_id']}.json"
    tmp = folder / f".{row['run_id']}.{os.getpid()}.tmp"
    with open(tmp, "w") as handle:
        json.dump(row, handle, sort_keys=True, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    return final


def completed_run_ids(out: str | Path) -> set[str]:
    """Ids of runs already recorded in `out` (succeeded or failed)."""
    folder = Path(out) / RUNS_DIR
    if not folder.is_dir():
        return set()
    return {p.stem for p in folder.glob("*.json")}


def failed_run_ids(out: str | Path) -> set[str]:
    """Ids of runs recorded in `out` with ``status = "failed"``."""
    failed = set()
    for file in (Path(out) / RUNS_DIR).glob("*.json"):
        try:
            if json.loads(file.read_text()).get("status") == "failed":
                failed.add(file.stem)
        except (OSError, ValueError, AttributeError):
            continue
    return failed


def load_results(out: str | Path, *, write: bool = True) -> pd.DataFrame:
    """Every recorded row of a sweep folder as one table (also written to ``results.parquet``)."""
    folder = Path(out)
    rows = []
    for file in sorted((folder / RUNS_DIR).glob("*.json")):
        try:
            rows.append(json.loads(file.read_text()))
        except json.JSONDecodeError:  # cannot happen with atomic writes; skip defensively
            warnings.warn(f"skipping unreadable row {file}", stacklevel=2)
    table = pd.DataFrame(rows)
    if "order" in table:
        table = table.sort_values("order", kind="stable").reset_index(drop=True)
    if write and not table.empty:
        frame = table.copy()
        for column in frame.columns:  # list / table parameters -> JSON text; mixed types -> str
            if frame[column].dtype == object and any(isinstance(v, list | dict) for v in frame[column]):
                frame[column] = frame[column].map(
                    lambda v: json.dumps(v, sort_keys=True) if isinstance(v, list | dict) else v
                )
            if frame[column].dtype == object:
                kinds = {
                    type(v) for v in frame[column] if v is not None and not (isinstance(v, float) and math.isnan(v))
                }
                if len(kinds) > 1:
                    frame[column] = frame[column].map(lambda v: None if v is None else str(v))
        frame.to_parquet(folder / RESULTS_FILE, index=False)
    return table


# -- running ---------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """What :func:`run_sweep` did: this sweep's recorded runs and the counts of this call.

    `table` holds this sweep's rows only (recorded by this call or an earlier one); the
    folder's ``results.parquet`` holds every run in the folder, other sweeps' too.
    """

    out: Path
    table: pd.DataFrame
    n_total: int
    n_skipped: int
    n_ok: int
    n_failed: int
    n_lost: int
    wall_s: float
    lost: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when every run of the sweep is recorded."""
        return self.n_lost == 0


def run_sweep(
    sweep: Sweep,
    out: str | Path,
    executor: Any = None,
    *,
    workers: int | None = None,
    progress: bool = True,
    max_in_flight: int | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    retry_failed: bool = False,
) -> SweepResult:
    """Run every point of `sweep` not yet recorded in `out`; see the module docstring.

    With `retry_failed`, runs recorded as failed are run again too (their rows are replaced).
    `on_result` is called in this process with each row right after it is written.
    Returns a :class:`SweepResult`; runs lost to the executor (a killed worker) are listed in
    ``lost`` and run again by the next call with the same `out`.
    """
    start = time.perf_counter()
    folder = Path(out)
    tasks = sweep.tasks()
    pool, owned, parallelism = make_executor(executor, workers)  # a bad executor fails before anything is written
    try:
        done = _prepare_folder(folder, sweep)
        if retry_failed:
            done -= failed_run_ids(folder)
    except BaseException:
        if owned:
            close_executor(pool)
        raise
    order = {t.run_id: i for i, t in enumerate(tasks)}
    pending = [t for t in tasks if t.run_id not in done]
    n_skipped = len(tasks) - len(pending)
    # the serial executor runs a task at submit: one at a time, so each row is written before the next run
    window = 1 if isinstance(pool, SerialExecutor) else max_in_flight or max(2, 2 * parallelism)
    from tqdm import tqdm

    bar = tqdm(total=len(pending), desc=sweep.name, unit="run", disable=not progress, dynamic_ncols=True)
    try:
        counts = _dispatch(pool, pending, window, bar, lambda row: _record(row, folder, order, on_result))
    finally:
        bar.close()
        if owned:
            close_executor(pool)
    n_ok, n_failed, lost = counts.n_ok, counts.n_failed, counts.lost
    ids = set(order)
    table = load_results(folder)
    if not table.empty and "run_id" in table:
        table = table[table["run_id"].isin(ids)].reset_index(drop=True)
    if lost:
        warnings.warn(
            f"sweep {sweep.name!r}: {len(lost)} run(s) were lost by the executor and are not recorded; "
            f"run the sweep again with the same output folder to resume",
            stacklevel=2,
        )
    return SweepResult(
        out=folder,
        table=table,
        n_total=len(tasks),
        n_skipped=n_skipped,
        n_ok=n_ok,
        n_failed=n_failed,
        n_lost=len(lost),
        wall_s=time.perf_counter() - start,
        lost=lost,
    )


@dataclass
class _Dispatched:
    """What a dispatch loop saw: finished runs by status, and the runs the executor lost."""

    n_ok: int = 0
    n_failed: int = 0
    lost: list[str] = field(default_factory=list)


def _dispatch(
    pool: cf.Executor, pending: list[RunTask], window: int, bar: Any, record: Callable[[dict[str, Any]], None]
) -> _Dispatched:
    """Submit `pending` keeping at most `window` in flight; `record` each finished row at once.

    A task the executor refuses or loses (a killed worker) is listed as lost; once the pool is
    broken, nothing more is submitted and the rest is lost too (a rerun resumes them).
    """
    counts = _Dispatched()
    queue = list(reversed(pending))
    in_flight: dict[cf.Future[dict[str, Any]], RunTask] = {}
    broken = False
    while queue or in_flight:
        while queue and len(in_flight) < window and not broken:
            task = queue.pop()
            try:
                in_flight[pool.submit(execute_task, task)] = task
            except Exception:
                counts.lost.append(task.run_id)
                broken = True
        if broken and queue:
            counts.lost.extend(t.run_id for t in reversed(queue))
            queue.clear()
        if not in_flight:
            break
        finished, _ = cf.wait(list(in_flight), return_when=cf.FIRST_COMPLETED)
        for future in finished:
            task = in_flight.pop(future)
            try:
                row = future.result()
            except Exception:
                counts.lost.append(task.run_id)
                broken = broken or pool_is_broken(pool)
                continue
            record(row)
            if row["status"] == "ok":
                counts.n_ok += 1
            else:
                counts.n_failed += 1
            bar.update(1)
            bar.set_postfix(failed=counts.n_failed, refresh=False)
    return counts


def _record(
    row: dict[str, Any], folder: Path, order: Mapping[str, int], on_result: Callable[[dict[str, Any]], None] | None
) -> None:
    """Write one finished run's row at once, then tell the caller."""
    row["order"] = order[row["run_id"]]
    _write_row(folder, row)
    if on_result is not None:
        on_result(row)


def sweep_folder_mismatch(folder: str | Path, sweep: Sweep) -> str | None:
    """Why `folder` holds another sweep (its ``sweep.json`` differs from `sweep`), or None."""
    file = Path(folder) / "sweep.json"
    if not file.is_file():
        return None
    try:
        recorded = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError):
        return f"{folder} has an unreadable sweep.json"
    mine = json.loads(json.dumps(sweep.model_dump(mode="json"), default=str))
    if recorded == mine:
        return None
    name = recorded.get("name") if isinstance(recorded, dict) else None
    return (
        f"{folder} holds the runs of another sweep ({name!r}); results.parquet has both sweeps' runs, "
        f"the table of sweep {sweep.name!r} only its own"
    )


def _prepare_folder(folder: Path, sweep: Sweep) -> set[str]:
    """Create `folder`, warn if it holds another sweep, record `sweep` in it; the ids already recorded."""
    folder.mkdir(parents=True, exist_ok=True)
    mismatch = sweep_folder_mismatch(folder, sweep)
    if mismatch:
        warnings.warn(mismatch, SweepFolderWarning, stacklevel=3)
    (folder / "sweep.json").write_text(json.dumps(sweep.model_dump(mode="json"), indent=2, default=str))
    return completed_run_ids(folder)


def sweep_from_points(
    base: Scenario | str | dict[str, Any],
    points: Iterable[Mapping[str, Any]],
    *,
    name: str = "sweep",
    linearized_grid: bool = False,
    labels: list[dict[str, Any]] | None = None,
) -> Sweep:
    """A zip sweep over explicit points (dicts of dotted path -> value, all with the same keys)."""
    points = list(points)
    paths = list(points[0]) if points else []
    for p in points:
        if list(p) != paths:
            raise SweepError(f"every point needs the same paths {paths}; got {list(p)}")
    base_value: str | dict[str, Any] = base.to_dict() if isinstance(base, Scenario) else base
    axes = {path: [p[path] for p in points] for path in paths}
    return Sweep(
        name=name, base=base_value, mode="zip", axes=axes, linearized_grid=linearized_grid, labels=labels or []
    )
