"""Run metrics (SPEC 6): voltage quality, serving performance, site power and power budgets.

Each metric is a plain function of result tables, so it applies to a live run or to tables
read back from Parquet; `start_s` / `end_s` score one window of a run. :class:`RunMetrics`
names every metric of ``run_scenario(...).metrics`` once, and :data:`METRICS` says what each
one means (label, unit, format, definition).
"""

from g2gsim.metrics.budget import budget_metrics, budget_summary
from g2gsim.metrics.performance import (
    combined_performance_metrics,
    performance_metrics,
    site_power_metrics,
    site_power_total_kw,
)
from g2gsim.metrics.record import METRICS, MetricInfo, RunMetrics, metrics_markdown, study_headings, table_metrics
from g2gsim.metrics.voltage import voltage_metrics
from g2gsim.metrics.window import time_window

__all__ = [
    "METRICS",
    "MetricInfo",
    "RunMetrics",
    "budget_metrics",
    "budget_summary",
    "combined_performance_metrics",
    "metrics_markdown",
    "performance_metrics",
    "site_power_metrics",
    "site_power_total_kw",
    "study_headings",
    "table_metrics",
    "time_window",
    "voltage_metrics",
]
