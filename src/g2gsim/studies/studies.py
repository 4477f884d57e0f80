"""Studies built on sweeps: parameter sensitivity, siting, hosting capacity, seed ensembles.

Every study writes its runs through :func:`~g2gsim.studies.sweep.run_sweep` into one output
folder, so an interrupted study resumes where it stopped (run ids are stable hashes), and
takes the same `executor` / `workers` arguments (serial, local processes, a Dask client or any
``concurrent.futures`` executor).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from g2gsim.scenarios import Scenario, load_scenario
from g2gsim.studies.surrogate import ScreeningReport, ScreenOptions
from g2gsim.studies.sweep import (
    Sweep,
    SweepFolderWarning,
    SweepResult,
    run_sweep,
    sweep_from_points,
)

if TYPE_CHECKING:
    from g2gsim.grid.topology import FeederTopology

#: Base scenario per bundled feeder for ``hosting-capacity FEEDER`` (no control: the grid's own limit).
DEFAULT_BASE = {"ieee13": "ieee13_baseline_notap", "ieee34": "ieee34_ofo_tapchange", "ieee123": "ieee123_ofo_tapchange"}


def _scenario(base: Scenario | str | Path) -> Scenario:
    return base if isinstance(base, Scenario) else load_scenario(base)


# -- parameter sensitivity ------------------------------------------------------------------------
#: Columns of a results table that are bookkeeping, not metrics (never averaged).
NOT_METRICS = frozenset({"order", "seed", "worker_pid"})


def study_runs(sweep: Sweep, table: pd.DataFrame) -> pd.DataFrame:
    """The rows of `table` that belong to `sweep` (an output folder may hold other studies' runs)."""
    if table.empty or "run_id" not in table:
        return table
    ids = {t.run_id for t in sweep.tasks()}
    return table[table["run_id"].isin(ids)].reset_index(drop=True)


def hashable_value(value: Any) -> Any:
    """A value usable as a group key: lists and tables as their sorted JSON text, the rest as is."""
    return json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value


def summarize_by(runs: pd.DataFrame, column: str, order: Sequence[Any] | None = None) -> pd.DataFrame:
    """One row per value of `column`: n_runs, n_ok and the mean of each numeric metric over ok runs.

    Rows follow `order` when given (values not in it last), else the runs' order.
    """
    if runs.empty or column not in runs:
        return pd.DataFrame(columns=[column, "n_runs", "n_ok"])
    key = runs[column].map(hashable_value).rename(column)
    ok = runs["status"] == "ok" if "status" in runs else pd.Series(True, index=runs.index)
    numeric = [c for c in runs.select_dtypes("number").columns if c not in NOT_METRICS and c != column]
    counts = pd.DataFrame(
        {
            "n_runs": runs.groupby(key, sort=False).size(),
            "n_ok": ok.groupby(key, sort=False).sum().astype(int),
        }
    )
    means = runs[ok].groupby(key[ok], sort=False)[numeric].mean()
    summary = counts.join(means).rename_axis(column).reset_index()
    if order is not None:
        position = {hashable_value(v): i for i, v in enumerate(order)}
        rank = summary[column].map(lambda v: position.get(hashable_value(v), len(position)))
        summary = summary.iloc[np.argsort(rank.to_numpy(), kind="stable")].reset_index(drop=True)
    return summary


def sensitivity_sweep(
    base: Scenario | str,
    path: str,
    values: Sequence[Any],
    seeds: Sequence[int] = (0,),
    *,
    linearized_grid: bool = False,
) -> Sweep:
    """The sweep of :func:`parameter_sensitivity` (one axis, plus seeds unless just the scenario's own)."""
    scenario = _scenario(base)
    axes: dict[str, list[Any]] = {path: list(values)}
    if len(seeds) > 1 or tuple(seeds) != (scenario.seed,):
        axes["seed"] = list(seeds)
    return Sweep(name=f"sensitivity {path}", base=scenario.to_dict(), axes=axes, linearized_grid=linearized_grid)


def parameter_sensitivity(
    base: Scenario | str,
    path: str,
    values: Sequence[Any],
    out: str | Path,
    *,
    seeds: Sequence[int] = (0,),
    **run: Any,
) -> pd.DataFrame:
    """Metrics against one scenario field (e.g. ``controllers.0.params.primal_step_size``).

    Runs every value for every seed; returns one row per value (in the given order) with
    n_runs, n_ok and the mean of each numeric metric over the seeds that ran ok, also written
    to ``out/sensitivity.csv`` (every run is in ``out/results.parquet``).
    """
    sweep = sensitivity_sweep(base, path, values, seeds, linearized_grid=bool(run.pop("linearized_grid", False)))
    result = run_sweep(sweep, out, **run)
    summary = summarize_by(study_runs(sweep, result.table), path, order=values)
    summary.to_csv(Path(out) / "sensitivity.csv", index=False)
    return summary


# -- site sweep -------------------------------------------------------------------------------------
def feeder_topology(feeder: str) -> FeederTopology:
    """The topology of a bundled feeder (or .dss path), compiled in a private engine."""
    from g2gsim.grid.engine import DSSEngine
    from g2gsim.grid.feeders import load_feeder
    from g2gsim.grid.topology import FeederTopology

    engine = DSSEngine()
    engine.compile_feeder(load_feeder(feeder))
    return FeederTopology.from_engine(engine)


def candidate_buses(scenario: Scenario) -> list[str]:
    """Three-phase buses of the scenario's feeder, minus the excluded buses (source side)."""
    from g2gsim.grid.feeders import load_feeder

    topology = feeder_topology(scenario.grid.feeder)
    excluded = scenario.grid.excluded_buses
    if excluded is None:
        excluded = tuple(load_feeder(scenario.grid.feeder).excluded_buses)
    skip = {b.lower() for b in excluded} | {topology.source_bus}
    return [b for b in topology.three_phase_buses() if b not in skip]


def siting_sweep(
    base: Scenario | str,
    *,
    site: int = 0,
    buses: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    linearized_grid: bool = False,
) -> Sweep:
    """The sweep of :func:`site_sweep`: site `site` at each bus (default: every candidate bus), per seed."""
    scenario = _scenario(base)
    axes: dict[str, list[Any]] = {f"sites.{site}.bus": list(buses or candidate_buses(scenario))}
    if seeds is not None:
        axes["seed"] = list(seeds)
    return Sweep(name=f"sites of {scenario.name}", base=scenario.to_dict(), axes=axes, linearized_grid=linearized_grid)


def site_sweep(
    base: Scenario | str,
    out: str | Path,
    *,
    site: int = 0,
    buses: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    screen: bool = False,
    screen_options: ScreenOptions | Mapping[str, Any] | None = None,
    metric: str = "integral_violation_pu_s",
    threshold: float | None = None,
    maximize: bool = False,
    **run: Any,
) -> SweepResult:
    """One run per three-phase bus (and seed) with site `site` moved there.

    With `screen`, every run goes on the surrogate first and only the runs whose rank by
    `metric` (top :attr:`ScreenOptions.top_fraction`, smallest first unless `maximize`) or
    feasibility (`metric` <= `threshold`) its error bound leaves uncertain run exactly
    (:func:`~g2gsim.studies.surrogate.screen_sweep`; returns a
    :class:`~g2gsim.studies.surrogate.ScreenedSweepResult`). `metric`, `threshold` and
    `maximize` matter only when screening.
    """
    linearized = bool(run.pop("linearized_grid", False))
    sweep = siting_sweep(base, site=site, buses=buses, seeds=seeds, linearized_grid=linearized)
    if not screen:
        return run_sweep(sweep, out, **run)
    from g2gsim.studies.surrogate import screen_sweep

    options = screen_options if isinstance(screen_options, ScreenOptions) else ScreenOptions(**(screen_options or {}))
    return screen_sweep(sweep, out, metric=metric, threshold=threshold, maximize=maximize, options=options, **run)


# -- hosting capacity ----------------------------------------------------------------------------------
def site_gpus(scenario: Scenario, site: int = 0) -> int:
    """GPUs a site serves with at its initial replicas."""
    from g2gsim.scenarios.build import model_catalogue

    catalogue = model_catalogue(scenario)
    return sum(m.replicas * catalogue[m.model].gpus_per_replica for m in scenario.sites[site].models)


def scaled_site(scenario: Scenario, gpus: int, site: int = 0) -> dict[str, Any]:
    """Dotted-path parameters that resize site `site` to about `gpus` serving GPUs.

    Every model's replicas and ramp targets, the training GPUs, the capacity and the facility
    base load scale by the same factor gpus / (the site's present GPUs); the mix of models
    stays the same (replicas rounded).
    """
    from g2gsim.scenarios.build import model_catalogue

    catalogue = model_catalogue(scenario)
    section = scenario.sites[site]
    base = site_gpus(scenario, site)
    if base <= 0:
        raise ValueError(f"site {section.name!r} serves no GPUs; nothing to scale")
    f = gpus / base
    models = []
    needed = 0
    for entry in section.models:
        raw = entry.model_dump(mode="json")
        raw["replicas"] = int(round(entry.replicas * f))
        raw["ramps"] = [{**r, "target": int(round(r["target"] * f))} for r in raw["ramps"]]
        needed += raw["replicas"] * entry.spec(catalogue).gpus_per_replica
        models.append(raw)
    training = [{**t.model_dump(mode="json"), "n_gpus": max(1, int(round(t.n_gpus * f)))} for t in section.training]
    peak = max(
        needed,
        sum(
            max([m["replicas"], *(r["target"] for r in m["ramps"])]) * catalogue[m["model"]].gpus_per_replica
            for m in models
        ),
    )
    capacity = max(1, int(math.ceil(section.capacity_gpus * f)), peak)
    prefix = f"sites.{site}"
    return {
        f"{prefix}.models": models,
        f"{prefix}.training": training,
        f"{prefix}.capacity_gpus": capacity,
        f"{prefix}.base_kw_per_phase": section.base_kw_per_phase * f,
    }


class MetricError(ValueError):
    """A study's `metric` is not a numeric metric of its runs."""

    def __init__(self, metric: str, available: Sequence[str]) -> None:
        self.metric = metric
        self.available = list(available)
        super().__init__(f"metric {metric!r}: not a numeric metric of these runs; metrics: {', '.join(self.available)}")


def numeric_metrics(runs: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """Numeric metric columns of the ok rows of `runs` (bookkeeping and `exclude` left out)."""
    ok = runs[runs["status"] == "ok"] if "status" in runs else runs
    skip = set(NOT_METRICS) | set(exclude) | {"worker_wall_s", "worker_cpu_s"}
    return sorted(c for c in ok.dropna(axis=1, how="all").select_dtypes("number").columns if c not in skip)


@dataclass
class HostingCapacity:
    """Per bus: the largest feasible site found, the smallest infeasible one, and this study's runs."""

    table: pd.DataFrame  # bus, capacity_gpus, infeasible_gpus, at_upper_bound, n_evaluations, n_failed
    runs: pd.DataFrame  # this study's runs (every round), not other studies' in the same folder
    out: Path
    screening: ScreeningReport | None = None  # with screen=True: the bound and the counts (table: exact, screen_bound)

    @property
    def n_unsolved(self) -> int:
        """Runs whose power flow did not converge: a site that large is beyond the feeder's
        capacity, so the bisection counts them infeasible (they are not errors)."""
        return int(_unsolved(self.runs).sum())

    @property
    def n_failed(self) -> int:
        """Runs that failed for any other reason (also counted infeasible; errors in `runs`)."""
        if "status" not in self.runs:
            return 0
        return int(((self.runs["status"] == "failed") & ~_unsolved(self.runs)).sum())


def _unsolved(runs: pd.DataFrame) -> pd.Series:
    """Failed runs whose error is a power flow that did not converge."""
    if "status" not in runs or "error" not in runs:
        return pd.Series(False, index=runs.index)
    errors = runs["error"].fillna("").astype(str)
    return (runs["status"] == "failed") & errors.str.contains("did not converge", regex=False)


def hosting_capacity(
    base: Scenario | str,
    out: str | Path,
    *,
    buses: Sequence[str] | None = None,
    site: int = 0,
    metric: str = "violation_time_s",
    threshold: float = 0.0,
    max_gpus: int | None = None,
    resolution_gpus: int = 64,
    screen: bool = False,
    screen_options: ScreenOptions | Mapping[str, Any] | None = None,
    **run: Any,
) -> HostingCapacity:
    """Per bus, the largest site (serving GPUs) with `metric` <= `threshold`, by bisection.

    Sizes are searched in [0, max_gpus] (default: four times the base site) in steps of
    `resolution_gpus`; a failed run (e.g. a power flow that does not converge) counts as
    infeasible and is counted per bus (``n_failed``; :attr:`HostingCapacity.n_failed`).
    Each bisection round runs every still-open bus as one sweep (in parallel), all rounds
    into the same folder, so a study resumes without repeating runs; rows are matched by
    this study's run ids, so other studies in the folder do not interfere. Raises
    :class:`MetricError` after the first round with an ok run when `metric` is not one of
    its numeric metrics. Assumes the metric grows with the size (true of violations under
    load; not checked). With `screen`, every bus is bisected on the surrogate first and
    only the buses the error bound leaves uncertain, and the top 5% by capacity, are
    bisected exactly (:func:`~g2gsim.studies.surrogate.screen_hosting_capacity`).
    """
    scenario = _scenario(base)
    linearized = bool(run.pop("linearized_grid", False))
    folder = Path(out)
    candidates = [b.lower() for b in (buses or candidate_buses(scenario))]
    search = BisectionSpec(
        site=site,
        metric=metric,
        threshold=threshold,
        top=int(max_gpus or 4 * site_gpus(scenario, site)),
        step=max(1, int(resolution_gpus)),
        linearized=linearized,
    )
    if screen:
        from g2gsim.studies.surrogate import screen_hosting_capacity

        options = (
            screen_options if isinstance(screen_options, ScreenOptions) else ScreenOptions(**(screen_options or {}))
        )
        return screen_hosting_capacity(scenario, candidates, search, folder, options, run)
    done = bisect_buses(scenario, candidates, search, folder, run)
    table = pd.DataFrame([{"bus": b, **done.searches[b].row()} for b in candidates])
    table.to_csv(folder / "hosting_capacity.csv", index=False)
    return HostingCapacity(table=table, runs=done.runs, out=folder)


@dataclass(frozen=True)
class BisectionSpec:
    """What a hosting-capacity bisection searches: the site, the metric and its limit, the sizes."""

    site: int
    metric: str
    threshold: float
    top: int  # largest size tried, GPUs
    step: int  # resolution, GPUs
    linearized: bool = False


@dataclass
class Bisection:
    """A finished bisection: each bus's search, this study's runs, and every (bus, size, run id) evaluated."""

    searches: dict[str, BusSearch]
    runs: pd.DataFrame
    evaluations: list[tuple[str, int, str]]


def bisect_buses(
    scenario: Scenario, candidates: Sequence[str], spec: BisectionSpec, folder: Path, run: Mapping[str, Any]
) -> Bisection:
    """Bisect every bus in `candidates` (each round one sweep of the open buses) into `folder`."""
    searches = {b: BusSearch() for b in candidates}
    trial = {b: spec.top for b in candidates}
    round_no = 0
    checked = False
    study_rows: list[pd.DataFrame] = []
    evaluations: list[tuple[str, int, str]] = []
    while trial:
        round_no += 1
        sweep, points = hosting_round(scenario, trial, spec.site, round_no, spec.linearized)
        with warnings.catch_warnings():  # the rounds are different sweeps into one folder by design
            warnings.simplefilter("ignore", SweepFolderWarning)
            result = run_sweep(sweep, folder, **run)
        if result.n_lost and result.n_lost == len(trial) - result.n_skipped:
            raise RuntimeError(
                f"hosting capacity: the executor lost every run of round {round_no}; fix it and call again "
                f"with the same folder ({folder}) to resume"
            )
        study_rows.append(result.table)
        if not checked and "status" in result.table and (result.table["status"] == "ok").any():
            available = numeric_metrics(result.table, exclude=["site_gpus", *points[0]])
            if spec.metric not in available:
                raise MetricError(spec.metric, available)
            checked = True
        run_of = {(t.labels["bus"], t.labels["site_gpus"]): t.run_id for t in sweep.tasks()}
        rows = {r["run_id"]: r for r in result.table.to_dict("records")}
        next_trial: dict[str, int] = {}
        for bus, size in trial.items():
            row = rows.get(run_of[(bus, size)])
            if row is None:  # lost to the executor: try again next round
                next_trial[bus] = size
                continue
            evaluations.append((bus, size, run_of[(bus, size)]))
            following = searches[bus].record(size, row, spec.metric, spec.threshold, spec.step)
            if following is not None:
                next_trial[bus] = following
        trial = next_trial
    return Bisection(searches=searches, runs=_concat_runs(study_rows), evaluations=evaluations)


def hosting_points(
    scenario: Scenario, pairs: Sequence[tuple[str, int]], site: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The sweep points (site moved and resized) and labels of (bus, size) pairs."""
    points = [{f"sites.{site}.bus": bus, **scaled_site(scenario, size, site)} for bus, size in pairs]
    return points, [{"bus": bus, "site_gpus": size} for bus, size in pairs]


def hosting_round(
    scenario: Scenario, trial: Mapping[str, int], site: int, round_no: int, linearized: bool
) -> tuple[Sweep, list[dict[str, Any]]]:
    """One bisection round as a sweep: every open bus at its trial size."""
    points, labels = hosting_points(scenario, list(trial.items()), site)
    sweep = sweep_from_points(
        scenario, points, name=f"hosting capacity round {round_no}", labels=labels, linearized_grid=linearized
    )
    return sweep, points


@dataclass
class BusSearch:
    """Bisection state of one bus: the largest size known feasible, the smallest known infeasible."""

    lo: int = 0
    hi: int | None = None
    n_evaluations: int = 0
    n_failed: int = 0

    def record(self, size: int, row: Mapping[str, Any], metric: str, threshold: float, step: int) -> int | None:
        """Take one run's outcome; the next size to try, or None when the bus is settled."""
        self.n_evaluations += 1
        ok = row.get("status") == "ok"
        self.n_failed += int(not ok)
        value = row.get(metric)
        if ok and value is not None and not pd.isna(value) and value <= threshold:
            self.lo = max(self.lo, size)
        else:
            self.hi = size if self.hi is None else min(self.hi, size)
        if self.hi is None or self.hi - self.lo <= step:
            return None  # feasible at the top size (capacity >= top), or resolved
        mid = self.lo + ((self.hi - self.lo) // 2 // step) * step
        return mid if mid > self.lo else self.lo + step

    def row(self) -> dict[str, Any]:
        """This bus's line of the hosting-capacity table."""
        return {
            "capacity_gpus": self.lo,
            "infeasible_gpus": self.hi,
            "at_upper_bound": self.hi is None,
            "n_evaluations": self.n_evaluations,
            "n_failed": self.n_failed,
        }


def _concat_runs(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The rows of several sweeps' tables, once each."""
    frames = [t for t in tables if not t.empty]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).drop_duplicates("run_id").reset_index(drop=True)


# -- seed ensembles -------------------------------------------------------------------------------------
def ensemble_summary(table: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Mean, standard deviation and a Student-t confidence interval of every numeric metric."""
    from scipy import stats

    ok = table[table["status"] == "ok"] if "status" in table else table
    rows = []
    for column in ok.select_dtypes("number").columns:
        if column in NOT_METRICS:
            continue
        values = ok[column].dropna().to_numpy(dtype=float)
        n = len(values)
        if n == 0:
            continue
        mean = float(values.mean())
        std = float(values.std(ddof=1)) if n > 1 else float("nan")
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)) if n > 1 else float("nan")
        rows.append({"metric": column, "n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half})
    return pd.DataFrame(rows)


def ensemble_sweep(base: Scenario | str, seeds: Sequence[int] | int, *, linearized_grid: bool = False) -> Sweep:
    """The sweep of :func:`seed_ensemble`: the scenario once per seed (or seeds 0..n-1)."""
    scenario = _scenario(base)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    return Sweep(
        name=f"seeds of {scenario.name}",
        base=scenario.to_dict(),
        axes={"seed": seed_list},
        linearized_grid=linearized_grid,
    )


def seed_ensemble(
    base: Scenario | str, seeds: Sequence[int] | int, out: str | Path, *, confidence: float = 0.95, **run: Any
) -> pd.DataFrame:
    """Run the scenario for every seed (or seeds 0..n-1); mean and CI of each metric over these runs."""
    sweep = ensemble_sweep(base, seeds, linearized_grid=bool(run.pop("linearized_grid", False)))
    result = run_sweep(sweep, out, **run)
    summary = ensemble_summary(study_runs(sweep, result.table), confidence)
    summary.to_csv(Path(out) / "ensemble.csv", index=False)
    return summary


#: Figures that moved to :mod:`g2gsim.plots` (the old names here warn for one release).
_MOVED_PLOTS = frozenset(
    {"plot_metric_heatmap", "plot_sensitivity", "plot_metric_by_bus", "plot_bus_values", "plot_hosting_capacity"}
)


def __getattr__(name: str) -> Any:
    if name not in _MOVED_PLOTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"g2gsim.studies.studies.{name} moved to g2gsim.plots.{name}; the old path goes in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    import g2gsim.plots

    return getattr(g2gsim.plots, name)
