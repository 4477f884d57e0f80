"""The metrics of a run, named once: the typed record and what each metric means.

:class:`RunMetrics` is what :func:`g2gsim.scenarios.run_scenario` returns as ``run.metrics``
(and ``g2gsim run --json`` prints). :data:`METRICS` gives each key its label, unit, format
and one-line definition; the command line's tables and the README's metrics list are drawn
from it, so a new metric is added here once.
"""

# No `from __future__ import annotations` here: TypedDict reads NotRequired from evaluated annotations.
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NotRequired, TypedDict


class RunMetrics(TypedDict):
    """Headline metrics of one run (JSON-safe: NaN is None, numbers are Python numbers)."""

    # voltage quality (g2gsim.metrics.voltage_metrics)
    violation_time_s: float
    integral_violation_pu_s: float
    worst_vmin: float
    worst_vmax: float
    n_grid_states: int
    grid_dt_s: float
    # serving performance (g2gsim.metrics.combined_performance_metrics)
    mean_throughput_tps: float
    integrated_tokens: float
    itl_deadline_fraction: float | None
    throughput_by_model_tps: dict[str, float]
    mean_batch_by_model: dict[str, float]
    mean_replicas_by_model: dict[str, float]
    mean_itl_s_by_model: dict[str, float]
    itl_deadline_fraction_by_model: dict[str, float]
    n_datacenter_states: int
    duration_s: float
    # power budgets (g2gsim.metrics.budget_summary), in runs with a budget source
    budget_violation_s: NotRequired[float]
    budget_excess_kwh: NotRequired[float]
    # site power (g2gsim.metrics.site_power_metrics)
    mean_dc_power_kw: float
    peak_dc_power_kw: float
    # the run
    n_solves: int
    wall_s: float
    data_source: str
    seed: int
    scenario: str
    horizon_s: float
    # screening runs of a study (linearised grid)
    grid_mode: NotRequired[str]
    n_linearizations: NotRequired[int]
    # live runs (g2gsim.live.run_live)
    stale_s_by_server: NotRequired[dict[str, float]]


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """How one metric is shown and what it means."""

    key: str
    label: str  # row label of the results table of `g2gsim run` / `compare`
    unit: str  # "" for text and identifiers
    definition: str
    fmt: str = "{}"
    heading: str | None = None  # short column heading of the study tables
    table: bool = False  # a row of the results table
    optional: bool = False  # only in some runs (budgets, screening)

    def format(self, value: Any) -> str:
        """The value as the results table shows it ("-" when missing)."""
        return "-" if value is None else self.fmt.format(value)


_INFO = (
    MetricInfo(
        "violation_time_s",
        "voltage violation time (s)",
        "s",
        "time with some bus-phase voltage outside [v_min, v_max]: violated grid states x the grid step",
        "{:.1f}",
        "violation s",
        table=True,
    ),
    MetricInfo(
        "integral_violation_pu_s",
        "violation integral (pu*s)",
        "pu*s",
        "every bus-phase's excursion beyond the limits, summed over bus-phases and grid states, x the grid step",
        "{:.4f}",
        "violation pu*s",
        table=True,
    ),
    MetricInfo("worst_vmin", "worst vmin (pu)", "pu", "lowest bus-phase voltage seen", "{:.4f}", "vmin pu", table=True),
    MetricInfo(
        "worst_vmax", "worst vmax (pu)", "pu", "highest bus-phase voltage seen", "{:.4f}", "vmax pu", table=True
    ),
    MetricInfo("n_grid_states", "grid states", "count", "grid states scored", "{:,d}"),
    MetricInfo(
        "grid_dt_s", "grid step (s)", "s", "median spacing of the grid states (the voltage metrics' dt)", "{:g}"
    ),
    MetricInfo(
        "mean_throughput_tps",
        "mean throughput (tokens/s)",
        "tokens/s",
        "batch / ITL x replicas, summed over models and sites, averaged over the recorded times",
        "{:,.0f}",
        "tokens/s",
        table=True,
    ),
    MetricInfo("integrated_tokens", "tokens generated", "tokens", "mean throughput x duration_s", "{:,.0f}"),
    MetricInfo(
        "itl_deadline_fraction",
        "ITL deadline misses (fraction)",
        "fraction",
        "share of (datacenter state, model) samples with an ITL above the model's deadline "
        "(null without a serving sample)",
        "{:.4f}",
        "ITL misses",
        table=True,
    ),
    MetricInfo(
        "throughput_by_model_tps",
        "throughput by model (tokens/s)",
        "tokens/s",
        "mean throughput per model label, summed over sites",
        "{}",
    ),
    MetricInfo("mean_batch_by_model", "mean batch by model", "requests", "batch size per model, averaged over samples"),
    MetricInfo(
        "mean_replicas_by_model", "mean replicas by model", "replicas", "replicas per model, averaged over samples"
    ),
    MetricInfo(
        "mean_itl_s_by_model",
        "mean ITL by model (s)",
        "s",
        "mean inter-token latency per model over its serving samples",
    ),
    MetricInfo(
        "itl_deadline_fraction_by_model",
        "ITL deadline misses by model (fraction)",
        "fraction",
        "itl_deadline_fraction per model",
    ),
    MetricInfo("n_datacenter_states", "datacenter states", "count", "site state samples scored", "{:,d}"),
    MetricInfo("duration_s", "scored duration (s)", "s", "time from the first to the last datacenter state", "{:g}"),
    MetricInfo(
        "mean_dc_power_kw",
        "mean datacenter power (kW)",
        "kW",
        "all sites' three-phase power summed (latest value held), averaged over the sites' sample times",
        "{:,.1f}",
        "mean kW",
        table=True,
    ),
    MetricInfo(
        "peak_dc_power_kw",
        "peak datacenter power (kW)",
        "kW",
        "the largest value of that sum",
        "{:,.1f}",
        "peak kW",
        table=True,
    ),
    MetricInfo(
        "n_solves",
        "power-flow solves",
        "count",
        "OpenDSS power flows solved (one per grid step, plus re-solves after tap or storage commands)",
        "{:,d}",
        table=True,
    ),
    MetricInfo(
        "wall_s",
        "wall clock (s)",
        "s",
        "wall-clock time of the simulation (building the scenario and writing the final files excluded)",
        "{:.2f}",
        table=True,
    ),
    MetricInfo(
        "budget_violation_s",
        "time above power budget (s)",
        "s",
        "site samples above the budget in force (5 s grace after each change) x the site step, summed over "
        "budget sources; only in runs with a budget",
        "{:.1f}",
        table=True,
        optional=True,
    ),
    MetricInfo(
        "budget_excess_kwh",
        "energy above power budget (kWh)",
        "kWh",
        "site power above the budget, integrated over the same samples; only in runs with a budget",
        "{:.2f}",
        table=True,
        optional=True,
    ),
    MetricInfo("data_source", "data source", "", "the data the run used (bundled, OpenG2G cache or ML.ENERGY folder)"),
    MetricInfo("seed", "seed", "", "the scenario seed"),
    MetricInfo("scenario", "scenario", "", "the scenario's name"),
    MetricInfo("horizon_s", "horizon (s)", "s", "simulated time", "{:g}"),
    MetricInfo(
        "grid_mode",
        "grid model",
        "",
        '"linearized" in study runs screened with the linearised grid (absent with full power flow)',
        optional=True,
    ),
    MetricInfo(
        "n_linearizations",
        "linearisations",
        "count",
        "times the linearised grid recomputed its sensitivities (screened study runs only)",
        "{:,d}",
        optional=True,
    ),
    MetricInfo(
        "stale_s_by_server",
        "stale live data (s)",
        "s",
        'live runs only: seconds each live server ("site/model") was down or had a power meter stale, '
        "its last values standing in",
        "{}",
        table=True,
        optional=True,
    ),
)

#: Every metric of :class:`RunMetrics` by key, in the order the tables list them (the budget rows
#: come last in the results table, after the metrics every run has).
METRICS: Mapping[str, MetricInfo] = MappingProxyType({info.key: info for info in _INFO})


def table_metrics(runs: Iterable[Mapping[str, Any]]) -> list[MetricInfo]:
    """Rows of a results table over `runs`: every table metric, optional ones only when some run has them."""
    runs = list(runs)
    return [
        info
        for info in METRICS.values()
        if info.table and (not info.optional or any(info.key in metrics for metrics in runs))
    ]


def study_headings() -> dict[str, str]:
    """Metric key -> short column heading of the study tables, for the metrics that have one."""
    return {info.key: info.heading for info in METRICS.values() if info.heading is not None}


def metrics_markdown() -> str:
    """The README's list of metrics: a Markdown table of key, unit and definition."""
    lines = ["| metric | unit | definition |", "|---|---|---|"]
    lines += [f"| `{info.key}` | {info.unit or '-'} | {info.definition} |" for info in METRICS.values()]
    return "\n".join(lines) + "\n"
