"""Figures of studies: a metric over two sweep axes, against one parameter, by site bus."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from g2gsim.plots.helpers import pyplot
from g2gsim.studies.studies import hashable_value

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_metric_heatmap(table: pd.DataFrame, x: str, y: str, metric: str = "violation_time_s") -> Figure:
    """A metric over two axes (mean over any other axes), values written in the cells."""
    ok = table[table["status"] == "ok"] if "status" in table else table
    grid = ok.pivot_table(index=y, columns=x, values=metric, aggfunc="mean")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(2.5 + 0.9 * max(3, grid.shape[1]), 1.8 + 0.6 * max(3, grid.shape[0])))
    image = ax.imshow(grid.to_numpy(dtype=float), origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns], rotation=45, ha="right")
    ax.set_yticks(range(grid.shape[0]), [str(i) for i in grid.index])
    ax.set_xlabel(short_label(x))
    ax.set_ylabel(short_label(y))
    for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=7, color="white")
    fig.colorbar(image, ax=ax, label=metric)
    ax.set_title(f"{metric} (mean over other axes)")
    fig.tight_layout()
    return fig


def short_label(path: str) -> str:
    """The last two parts of a dotted path (``params.primal_step_size``)."""
    return ".".join(path.split(".")[-2:]) if path.count(".") > 1 else path


def plot_sensitivity(runs: pd.DataFrame, path: str, metric: str = "violation_time_s") -> Figure:
    """A metric against one parameter: every ok run as a dot, the mean over seeds as a line."""
    ok = runs[runs["status"] == "ok"] if "status" in runs else runs
    keys = ok[path].map(hashable_value)
    order = list(dict.fromkeys(keys))
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in order)
    position = {v: (float(v) if numeric else float(i)) for i, v in enumerate(order)}
    x = keys.map(position).to_numpy(dtype=float)
    y = pd.to_numeric(ok[metric], errors="coerce").to_numpy(dtype=float)
    means = pd.Series(y).groupby(x).mean()
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(means.index, means.to_numpy(), marker="o", color="tab:blue", label="mean over seeds")
    if len(ok) > len(order):
        ax.scatter(x, y, s=14, color="tab:blue", alpha=0.35, label="runs")
        ax.legend(loc="best", fontsize=8)
    if not numeric:
        ax.set_xticks(list(position.values()), [str(v) for v in order], rotation=30, ha="right")
    ax.set_xlabel(short_label(path))
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against {short_label(path)}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_metric_by_bus(summary: pd.DataFrame, metric: str, bus: str = "bus") -> Figure:
    """A bar per bus of a metric (in the summary's row order)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.0 + 0.45 * len(summary)), 4))
    values = pd.to_numeric(summary[metric], errors="coerce").to_numpy(dtype=float)
    ax.bar([str(b) for b in summary[bus]], np.nan_to_num(values), color="tab:blue")
    for i, value in enumerate(values):
        ax.annotate(
            "failed" if np.isnan(value) else f"{value:.3g}",
            (i, 0 if np.isnan(value) else value),
            ha="center",
            va="bottom",
            fontsize=7,
            xytext=(0, 2),
            textcoords="offset points",
        )
    ax.set_xlabel("bus of the site")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by site bus")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig
