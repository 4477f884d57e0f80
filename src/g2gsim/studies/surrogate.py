"""Screened studies: every candidate on a cheap surrogate, exact runs only where the surrogate's
error bound leaves the answer uncertain.

A siting study or a hosting-capacity search runs many near-identical scenarios, and most of
them are clearly good or clearly bad. Screening (``screen=True`` on :func:`site_sweep` and
:func:`hosting_capacity`, ``--screen`` on their commands) does the study in three passes, all
into the study's output folder (so it resumes like any sweep):

1. **Surrogate**: every candidate runs with its grid, datacenter and controller steps
   coarsened to at least :attr:`ScreenOptions.step_s` (default 5 s instead of the presets'
   0.1 s grid and datacenter steps and 1 s OFO period) and, with
   :attr:`ScreenOptions.linearized`, on the linearised grid. ``benchmarks/bench_siting.py``
   measured the choice on IEEE 123 one-hour single-site runs: 5 s steps cost about a
   twentieth of an exact run and 10 s steps a fortieth, both erring mostly by a common offset
   (within 0.9 and 0.6 pu s of it, of about 7,400), while the linearised grid at full
   resolution costs half a run and errs by up to 28 pu s, not as an offset.
2. **Calibration**: :attr:`ScreenOptions.sample` candidates drawn at random (seeded) run
   exactly; the error bound is the split-conformal quantile of the absolute surrogate error on
   them (:func:`error_bound`): a new candidate's error is within it with probability at least
   :attr:`ScreenOptions.confidence`. The Spearman rank correlation of surrogate and exact values
   on the sample is reported too.
3. **Exact re-runs** (:func:`rerun_selection`): every candidate whose interval
   (surrogate value +- bound) overlaps the feasibility threshold or the top-fraction cut
   (the best :attr:`ScreenOptions.top_fraction` of candidates, always including the
   surrogate's own top), and every candidate whose surrogate run failed.

Exact rows are the very runs a plain study makes (same run ids, so a folder that already
holds them is reused and screening never changes them); the final table marks them with
``exact = True`` and the others with ``exact = False`` and their ``screen_bound``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from g2gsim.scenarios import Scenario
from g2gsim.studies.sweep import (
    RunTask,
    Sweep,
    SweepFolderWarning,
    SweepResult,
    run_sweep,
    sweep_from_points,
)

__all__ = [
    "ScreenOptions",
    "ScreenedSweepResult",
    "ScreeningReport",
    "error_bound",
    "rerun_selection",
    "screen_sweep",
    "shift_and_bound",
    "surrogate_overrides",
    "surrogate_sweep",
]


class ScreenOptions(BaseModel):
    """How a study screens: the surrogate, the calibration sample and the re-run rule."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample: int = Field(default=40, ge=2, description="candidates run exactly at random to calibrate the bound")
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0, description="coverage of the error bound")
    step_s: float = Field(
        default=5.0, gt=0.0, description="surrogate: grid, datacenter and controller periods coarsened to this"
    )
    linearized: bool = Field(default=False, description="surrogate on the linearised grid too")
    top_fraction: float = Field(default=0.05, ge=0.0, le=1.0, description="best candidates always run exactly")
    sample_seed: int = Field(default=0, description="seed of the calibration draw")

    @model_validator(mode="after")
    def _enough_samples(self) -> ScreenOptions:
        need = minimum_sample(self.confidence)
        if self.sample < need:
            raise ValueError(
                f"sample={self.sample}: a bound at confidence {self.confidence:g} needs at least {need} "
                f"calibration runs (n >= c / (1 - c)); raise sample or lower confidence"
            )
        return self


def minimum_sample(confidence: float) -> int:
    """Fewest calibration runs whose split-conformal quantile at `confidence` is finite."""
    return max(2, math.ceil(confidence / (1.0 - confidence) - 1e-9))


# -- the bound and the re-run rule ---------------------------------------------------------------
def error_bound(residuals: Sequence[float] | np.ndarray, confidence: float) -> float:
    """Split-conformal bound on |exact - surrogate|: the ceil((n + 1) c)-th smallest absolute
    residual of the n calibration pairs (NaN pairs dropped); infinite when n is too small."""
    r = np.sort(np.abs(np.asarray(residuals, dtype=float)))
    r = r[np.isfinite(r)]
    k = math.ceil((len(r) + 1) * confidence - 1e-12)
    return float(r[k - 1]) if 0 < k <= len(r) else math.inf


def shift_and_bound(residuals: Sequence[float] | np.ndarray, confidence: float) -> tuple[float, float]:
    """The surrogate's bias (median of exact - surrogate) and the :func:`error_bound` of the
    residuals around it: a candidate's exact value is within surrogate + shift +- bound. A
    coarse step errs mostly by a common offset (IEEE 123 siting, 5 s steps: -3.6 of 7,400 pu s
    on every bus), so centring narrows the intervals several times (approximately conformal:
    the shift comes from the same sample)."""
    r = np.asarray(residuals, dtype=float)
    finite = r[np.isfinite(r)]
    shift = float(np.median(finite)) if len(finite) else 0.0
    return shift, error_bound(r - shift, confidence)


def rerun_selection(
    values: Sequence[float] | np.ndarray,
    bound: float,
    *,
    top_fraction: float = 0.05,
    threshold: float | None = None,
    maximize: bool = False,
    exact: Sequence[bool] | np.ndarray | None = None,
) -> np.ndarray:
    """Which candidates to run exactly: a boolean mask over `values` (surrogate metric values).

    Each candidate's true value lies in ``[v - bound, v + bound]`` (a point for the rows in
    `exact`, already exact). Selected: every non-exact candidate whose interval contains
    `threshold` (feasible: value <= threshold, >= with `maximize`), every one that may be among
    the best ``ceil(top_fraction * n)`` (its interval reaches the k-th best upper end, so it
    includes the surrogate's own top), and every NaN (a failed surrogate run). An unselected
    candidate is then certainly outside the top and on the surrogate's side of the threshold.
    """
    v = np.asarray(values, dtype=float)
    done = np.zeros(len(v), dtype=bool) if exact is None else np.asarray(exact, dtype=bool)
    half = np.where(done, 0.0, float(bound))
    sign = -1.0 if maximize else 1.0  # rank smallest first after the sign flip
    lo, hi = sign * v - half, sign * v + half
    unknown = ~np.isfinite(v)
    select = unknown.copy()
    k = math.ceil(top_fraction * len(v) - 1e-12) if top_fraction > 0 else 0
    if k > 0:
        upper = np.where(unknown, np.inf, hi)
        cut = np.partition(upper, min(k, len(v)) - 1)[min(k, len(v)) - 1]
        select |= lo <= cut
    if threshold is not None:
        t = sign * float(threshold)
        select |= (lo <= t) & (t <= hi)
    return select & ~done


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation of the finite pairs (NaN with fewer than 3 or a constant side)."""
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan
    return float(stats.spearmanr(x[ok], y[ok]).statistic)


# -- the surrogate -----------------------------------------------------------------------------
def surrogate_overrides(scenario: Scenario, step_s: float) -> dict[str, Any]:
    """Dotted-path overrides that coarsen every grid, datacenter and controller period below `step_s`
    (at most a quarter of the horizon, so a short run keeps a few grid states)."""
    step_s = min(float(step_s), float(scenario.horizon_s) / 4.0)
    out: dict[str, Any] = {}
    if float(scenario.grid.period_s) < step_s:
        out["grid.period_s"] = step_s
    for i, site in enumerate(scenario.sites):
        if float(site.period_s) < step_s:
            out[f"sites.{i}.period_s"] = step_s
    for i, controller in enumerate(scenario.controllers):
        if controller.period_s is not None and float(controller.period_s) < step_s:
            out[f"controllers.{i}.period_s"] = step_s
    return out


def surrogate_sweep(sweep: Sweep, options: ScreenOptions) -> Sweep:
    """`sweep` with the surrogate's coarse steps as overrides (and the linearised grid if asked)."""
    coarse = surrogate_overrides(sweep.base_scenario(), options.step_s)
    return sweep.model_copy(
        update={
            "name": f"{sweep.name} (surrogate)",
            "overrides": {**sweep.overrides, **coarse},
            "linearized_grid": sweep.linearized_grid or options.linearized,
        }
    )


def exact_subsweep(sweep: Sweep, tasks: Sequence[RunTask], name: str) -> Sweep:
    """A sweep of just `tasks` of `sweep`, with the same run ids (so the same rows as a plain run)."""
    sub = sweep_from_points(
        sweep.base_scenario(),
        [t.params for t in tasks],
        name=f"{sweep.name} ({name})",
        linearized_grid=sweep.linearized_grid,
        labels=[t.labels for t in tasks] if any(t.labels for t in tasks) else None,
    )
    wanted = {t.run_id for t in tasks}
    if {t.run_id for t in sub.tasks()} != wanted:  # the screening guarantee rests on this
        raise RuntimeError("screening: exact re-runs would not have the study's run ids")
    return sub


@dataclass
class ExactPass:
    """The rows and lost run ids of one exact pass (calibration or re-runs)."""

    table: pd.DataFrame
    lost: list[str]


def run_exact(sweep: Sweep, tasks: Sequence[RunTask], name: str, folder: Path, run: Mapping[str, Any]) -> ExactPass:
    """Run `tasks` of `sweep` exactly into `folder` (nothing when there are none)."""
    if not tasks:
        return ExactPass(pd.DataFrame(), [])
    result = quiet_sweep(exact_subsweep(sweep, tasks, name), folder, run)
    return ExactPass(result.table, result.lost)


def quiet_sweep(sweep: Sweep, out: Path, run: Mapping[str, Any]) -> SweepResult:
    """run_sweep into a folder shared by the screening passes (their sweeps differ by design)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SweepFolderWarning)
        return run_sweep(sweep, out, **run)


# -- the report ----------------------------------------------------------------------------------
@dataclass
class ScreeningReport:
    """What screening measured and decided (printed by the commands, saved as ``screening.json``)."""

    metric: str
    threshold: float | None
    maximize: bool
    options: dict[str, Any]
    bound: float
    shift: float  # median of exact - surrogate on the calibration sample (added before the bound)
    n_candidates: int
    n_calibration: int
    n_rerun: int
    n_exact: int
    spearman: float
    max_abs_error: float
    mean_error: float
    surrogate_run_s: float  # worker seconds per surrogate run (median)
    exact_run_s: float  # worker seconds per exact run (median)
    surrogate_cpu_s: float  # worker CPU seconds per surrogate run (median): the cost on an unshared core
    exact_cpu_s: float  # worker CPU seconds per exact run (median)
    wall_s: dict[str, float] = field(default_factory=dict)  # per pass
    cpu_s: dict[str, float] = field(default_factory=dict)  # worker CPU seconds of each pass's runs

    @property
    def exact_fraction(self) -> float:
        """Share of candidates with an exact row (calibration and re-runs)."""
        return self.n_exact / self.n_candidates if self.n_candidates else 0.0

    def lines(self) -> list[str]:
        """The report as text lines."""
        c = self.options.get("confidence")
        return [
            f"screening {self.metric}: surrogate steps {self.options.get('step_s')} s"
            + (", linearised grid" if self.options.get("linearized") else ""),
            f"error bound +-{self.bound:.4g} around surrogate {self.shift:+.4g} at confidence {c} "
            f"from {self.n_calibration} exact calibration runs "
            f"(largest error {self.max_abs_error:.4g}, mean {self.mean_error:+.4g}; Spearman {self.spearman:.4f})",
            f"exact rows {self.n_exact} of {self.n_candidates} ({100 * self.exact_fraction:.1f}%); "
            f"{self.n_calibration} calibration runs, {self.n_rerun} candidates re-run exactly; "
            f"per run {self.surrogate_run_s:.3f} s surrogate ({self.surrogate_cpu_s:.3f} s CPU), "
            f"{self.exact_run_s:.3f} s exact ({self.exact_cpu_s:.3f} s CPU)",
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for JSON)."""
        return {**asdict(self), "exact_fraction": self.exact_fraction}


@dataclass
class ScreenedSweepResult(SweepResult):
    """A screened study's result: `table` has one row per candidate, exact or surrogate."""

    screening: ScreeningReport | None = None


def median_wall(rows: pd.DataFrame, column: str = "worker_wall_s") -> float:
    """Median worker seconds (or `column`) per ok run of `rows` (NaN when there are none)."""
    if rows.empty or column not in rows:
        return math.nan
    ok = rows[rows["status"] == "ok"] if "status" in rows else rows
    return float(ok[column].median()) if len(ok) else math.nan


def total_cpu(rows: pd.DataFrame | None) -> float:
    """Worker CPU seconds of every run in `rows` (0 for none)."""
    if rows is None or rows.empty or "worker_cpu_s" not in rows:
        return 0.0
    return float(rows["worker_cpu_s"].fillna(0.0).sum())


def calibration_pick(n: int, eligible: np.ndarray, options: ScreenOptions) -> np.ndarray:
    """Indices of the calibration candidates: `sample` of the `eligible` ones, uniformly, seeded."""
    pool = np.flatnonzero(eligible)
    rng = np.random.default_rng(options.sample_seed)
    return np.sort(rng.choice(pool, size=min(options.sample, len(pool)), replace=False))


def metric_values(rows: Mapping[str, Mapping[str, Any]], ids: Sequence[str], metric: str) -> np.ndarray:
    """`metric` of each run id's row (NaN for a missing or failed run)."""
    out = np.full(len(ids), np.nan)
    for i, run_id in enumerate(ids):
        row = rows.get(run_id)
        if row is not None and row.get("status") == "ok":
            value = row.get(metric)
            if value is not None and not pd.isna(value):
                out[i] = float(value)
    return out


def build_report(
    metric: str,
    threshold: float | None,
    maximize: bool,
    options: ScreenOptions,
    pairs: tuple[np.ndarray, np.ndarray],
    counts: tuple[int, int, int],
    walls: tuple[pd.DataFrame, pd.DataFrame, dict[str, float]],
    cpu: dict[str, float] | None = None,
) -> ScreeningReport:
    """The report from the calibration pairs (surrogate, exact), the counts (candidates,
    re-runs, exact rows), the surrogate and exact rows (for the seconds per run), the walls
    and the CPU seconds of each pass."""
    surrogate, exact = pairs
    residual = exact - surrogate
    finite = residual[np.isfinite(residual)]
    shift, bound = shift_and_bound(residual, options.confidence)
    return ScreeningReport(
        metric=metric,
        threshold=threshold,
        maximize=maximize,
        options=options.model_dump(),
        bound=bound,
        shift=shift,
        n_candidates=counts[0],
        n_calibration=len(surrogate),
        n_rerun=counts[1],
        n_exact=counts[2],
        spearman=spearman(surrogate, exact),
        max_abs_error=float(np.abs(finite).max()) if len(finite) else math.nan,
        mean_error=float(finite.mean()) if len(finite) else math.nan,
        surrogate_run_s=median_wall(walls[0]),
        exact_run_s=median_wall(walls[1]),
        surrogate_cpu_s=median_wall(walls[0], "worker_cpu_s"),
        exact_cpu_s=median_wall(walls[1], "worker_cpu_s"),
        wall_s=walls[2],
        cpu_s=cpu or {},
    )


# -- a screened sweep ----------------------------------------------------------------------------
def screen_sweep(
    sweep: Sweep,
    out: str | Path,
    *,
    metric: str,
    threshold: float | None = None,
    maximize: bool = False,
    options: ScreenOptions | None = None,
    **run: Any,
) -> ScreenedSweepResult:
    """Every point of `sweep` screened on the surrogate (see the module docstring).

    Candidates are ranked by `metric` (smallest best, largest with `maximize`); with
    `threshold`, a candidate is feasible when its metric is <= threshold (>= with
    `maximize`). Writes ``screened.csv`` and ``screening.json`` to `out`.
    """
    from g2gsim.studies.studies import MetricError, numeric_metrics

    options = options or ScreenOptions()
    folder = Path(out)
    tasks = sweep.tasks()
    ids = [t.run_id for t in tasks]
    walls: dict[str, float] = {}
    start = time.perf_counter()
    proxy = surrogate_sweep(sweep, options)
    proxy_ids = [t.run_id for t in proxy.tasks()]
    screened = quiet_sweep(proxy, folder, run)
    walls["surrogate"] = time.perf_counter() - start
    proxy_rows = {r["run_id"]: r for r in screened.table.to_dict("records")}
    ok = "status" in screened.table and bool((screened.table["status"] == "ok").any())
    if ok and metric not in numeric_metrics(screened.table):
        raise MetricError(metric, numeric_metrics(screened.table, exclude=list(sweep.axes)))
    values = metric_values(proxy_rows, proxy_ids, metric)

    start = time.perf_counter()
    picked = calibration_pick(len(tasks), np.isfinite(values), options)
    calibration = run_exact(sweep, [tasks[i] for i in picked], "calibration", folder, run)
    walls["calibration"] = time.perf_counter() - start
    exact_rows = {r["run_id"]: r for r in calibration.table.to_dict("records")}
    pairs = (values[picked], metric_values(exact_rows, [ids[i] for i in picked], metric))
    shift, bound = shift_and_bound(pairs[1] - pairs[0], options.confidence)

    start = time.perf_counter()
    done = np.zeros(len(tasks), dtype=bool)
    done[picked] = True
    estimate = values + shift
    estimate[done] = pairs[1]  # calibration rows are exact (a NaN there: the exact run failed)
    rerun = rerun_selection(
        estimate, bound, top_fraction=options.top_fraction, threshold=threshold, maximize=maximize, exact=done
    )
    chosen = [tasks[i] for i in np.flatnonzero(rerun)]
    reruns = run_exact(sweep, chosen, "re-runs", folder, run)
    walls["reruns"] = time.perf_counter() - start
    exact_rows.update({r["run_id"]: r for r in reruns.table.to_dict("records")})

    table = screened_table(tasks, proxy_ids, proxy_rows, exact_rows, values + shift, bound)
    exact_table = pd.DataFrame(list(exact_rows.values()))
    report = build_report(
        metric,
        threshold,
        maximize,
        options,
        pairs,
        (len(tasks), len(chosen), int(table["exact"].sum()) if len(table) else 0),
        (screened.table, exact_table, walls),
        {
            "surrogate": total_cpu(screened.table),
            "calibration": total_cpu(calibration.table),
            "reruns": total_cpu(reruns.table),
        },
    )
    lost = [*screened.lost, *calibration.lost, *reruns.lost]
    return screened_result(folder, len(tasks), table, report, lost, screened.n_skipped)


def screened_result(
    folder: Path, n_total: int, table: pd.DataFrame, report: ScreeningReport, lost: list[str], n_skipped: int
) -> ScreenedSweepResult:
    """Write ``screened.csv`` and ``screening.json``; the result of a screened sweep."""
    import json

    table.to_csv(folder / "screened.csv", index=False)
    (folder / "screening.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    ok = table["status"] == "ok" if "status" in table else pd.Series(dtype=bool)
    return ScreenedSweepResult(
        out=folder,
        table=table,
        n_total=n_total,
        n_skipped=n_skipped,
        n_ok=int(ok.sum()),
        n_failed=int(len(table) - ok.sum()),
        n_lost=n_total - len(table),
        wall_s=sum(report.wall_s.values()),
        lost=lost,
        screening=report,
    )


def screened_table(
    tasks: Sequence[RunTask],
    proxy_ids: Sequence[str],
    proxy_rows: Mapping[str, Mapping[str, Any]],
    exact_rows: Mapping[str, Mapping[str, Any]],
    values: np.ndarray,
    bound: float,
) -> pd.DataFrame:
    """One row per candidate: its exact row untouched when there is one, else its surrogate row;
    plus ``exact``, ``screen_bound`` (0 for exact rows) and ``screen_value`` (the surrogate's
    estimate: its value plus the calibrated shift; the exact value is within screen_bound of it)."""
    rows = []
    for task, proxy_id, value in zip(tasks, proxy_ids, values, strict=True):
        exact = exact_rows.get(task.run_id)
        row = exact if exact is not None else proxy_rows.get(proxy_id)
        if row is None:  # lost to the executor in every pass
            continue
        rows.append(
            {
                **row,
                "exact": exact is not None,
                "screen_bound": 0.0 if exact is not None else bound,
                "screen_value": value,
            }
        )
    return pd.DataFrame(rows)


# -- screened hosting capacity -------------------------------------------------------------------
def screen_hosting_capacity(
    scenario: Scenario,
    candidates: Sequence[str],
    spec: Any,
    folder: Path,
    options: ScreenOptions,
    run: Mapping[str, Any],
) -> Any:
    """:func:`~g2gsim.studies.studies.hosting_capacity` screened: every bus bisected on the
    surrogate; `sample` of its evaluations (bus, size) run exactly for the bound; then the buses
    with an evaluation whose interval contains the threshold (or a failed surrogate run), and the
    top ``top_fraction`` of buses by surrogate capacity, bisected exactly (the very runs of a
    plain study). A bus whose every evaluation is certain takes the same path to the same
    capacity exactly as on the surrogate. Table columns ``exact`` and ``screen_bound`` say
    which rows are which; ``screening.json`` holds the report.
    """
    import json

    from g2gsim.studies.studies import HostingCapacity, bisect_buses

    walls: dict[str, float] = {}
    start = time.perf_counter()
    proxy_spec = replace(spec, linearized=spec.linearized or options.linearized)
    coarse = scenario.with_changes(surrogate_overrides(scenario, options.step_s), what="surrogate steps")
    proxy = bisect_buses(coarse, candidates, proxy_spec, folder, run)
    walls["surrogate"] = time.perf_counter() - start
    proxy_rows = {r["run_id"]: r for r in proxy.runs.to_dict("records")}
    values = metric_values(proxy_rows, [e[2] for e in proxy.evaluations], spec.metric)

    start = time.perf_counter()
    picked = calibration_pick(len(values), np.isfinite(values), options)
    exact_cal, exact_values = _hosting_calibration(
        scenario, [proxy.evaluations[i][:2] for i in picked], spec, folder, run
    )
    walls["calibration"] = time.perf_counter() - start
    pairs = (values[picked], exact_values)
    shift, bound = shift_and_bound(pairs[1] - pairs[0], options.confidence)

    start = time.perf_counter()
    uncertain = rerun_selection(values + shift, bound, top_fraction=0.0, threshold=spec.threshold)
    chosen = {proxy.evaluations[i][0] for i in np.flatnonzero(uncertain)}
    chosen |= top_buses({b: proxy.searches[b].lo for b in candidates}, options.top_fraction)
    exact_buses = [b for b in candidates if b in chosen]
    exact = bisect_buses(scenario, exact_buses, spec, folder, run) if exact_buses else None
    walls["reruns"] = time.perf_counter() - start

    rows = []
    for bus in candidates:
        exact_search = exact.searches.get(bus) if exact is not None else None
        is_exact = exact_search is not None
        search = exact_search if exact_search is not None else proxy.searches[bus]
        rows.append({"bus": bus, **search.row(), "exact": is_exact, "screen_bound": 0.0 if is_exact else bound})
    table = pd.DataFrame(rows)
    exact_runs = _concat([exact_cal, exact.runs if exact else None])
    report = build_report(
        spec.metric,
        spec.threshold,
        False,
        options,
        pairs,
        (len(candidates), len(exact_buses), len(exact_buses)),
        (proxy.runs, exact_runs, walls),
        {
            "surrogate": total_cpu(proxy.runs),
            "calibration": total_cpu(exact_cal),
            "reruns": total_cpu(exact.runs if exact else None),
        },
    )
    table.to_csv(folder / "hosting_capacity.csv", index=False)
    (folder / "screening.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    return HostingCapacity(table=table, runs=_concat([proxy.runs, exact_runs]), out=folder, screening=report)


def top_buses(capacity: Mapping[str, int], fraction: float) -> set[str]:
    """The buses among the best ``ceil(fraction * n)`` by capacity (ties at the cut included)."""
    k = math.ceil(fraction * len(capacity) - 1e-12) if fraction > 0 else 0
    if k <= 0 or not capacity:
        return set()
    cut = sorted(capacity.values(), reverse=True)[min(k, len(capacity)) - 1]
    return {b for b, c in capacity.items() if c >= cut}


def _hosting_calibration(
    scenario: Scenario, pairs: Sequence[tuple[str, int]], spec: Any, folder: Path, run: Mapping[str, Any]
) -> tuple[pd.DataFrame, np.ndarray]:
    """Exact runs of the sampled (bus, size) evaluations (the plain study's run ids); their rows
    and the metric value of each pair (NaN when it failed)."""
    from g2gsim.studies.studies import hosting_points

    if not pairs:
        return pd.DataFrame(), np.array([])
    points, labels = hosting_points(scenario, pairs, spec.site)
    sweep = sweep_from_points(
        scenario, points, name="hosting capacity calibration", labels=labels, linearized_grid=spec.linearized
    )
    table = quiet_sweep(sweep, folder, run).table
    by_pair = {(r["bus"], int(r["site_gpus"])): r for r in table.to_dict("records")}
    values = np.full(len(pairs), np.nan)
    for i, pair in enumerate(pairs):
        row = by_pair.get((pair[0], int(pair[1])))
        if row is not None and row.get("status") == "ok" and not pd.isna(row.get(spec.metric)):
            values[i] = float(row[spec.metric])
    return table, values


def _concat(frames: Sequence[pd.DataFrame | None]) -> pd.DataFrame:
    """The rows of several tables, once per run id."""
    kept = [f for f in frames if f is not None and not f.empty]
    if not kept:
        return pd.DataFrame()
    return pd.concat(kept, ignore_index=True).drop_duplicates("run_id").reset_index(drop=True)
