"""Time series of a run: voltages, site power, batch sizes, latency and regulator taps.

Every function takes a :class:`RunResult` (and what it needs to label axes) and returns a
matplotlib Figure; :func:`g2gsim.plots.write_scenario_plots` writes the standard set. Long
series are drawn through their extremes per pixel column and step series through their
changes (:mod:`g2gsim.plots.helpers`), which looks the same and keeps an hour at 0.1 s cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from g2gsim.kernel.results import RunResult
from g2gsim.plots.helpers import change_indices, extreme_indices, pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PHASE_LABELS = ("a", "b", "c")


def _voltage_frame(result: RunResult, grid: str) -> pd.DataFrame:
    return result.table(f"{grid}/voltages")


def _line(ax: Any, t: np.ndarray, y: np.ndarray, **style: Any) -> None:
    """Draw a long series through its extremes per pixel column."""
    keep = extreme_indices(y)
    ax.plot(t[keep], y[keep], **style)


def _step(ax: Any, t: np.ndarray, y: np.ndarray, **style: Any) -> None:
    """Draw a step series (held after each change) through its changes."""
    keep = change_indices(y)
    ax.step(t[keep], y[keep], where="post", **style)


def _row_stats(values: np.ndarray, rows: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum, maximum and median of every row, a block of rows at a time."""
    stats = np.full((3, values.shape[0]), np.nan)
    for start in range(0, values.shape[0], rows):
        block = values[start : start + rows]
        stats[:, start : start + rows] = np.nanmin(block, axis=1), np.nanmax(block, axis=1), np.nanmedian(block, axis=1)
    return stats[0], stats[1], stats[2]


def _model_columns(state: pd.DataFrame, quantity: str) -> dict[str, str]:
    """Model label -> column name for a per-model quantity (columns '<label>.<quantity>')."""
    suffix = f".{quantity}"
    return {c[: -len(suffix)]: c for c in state.columns if c.endswith(suffix)}


def plot_voltage_envelope(result: RunResult, grid: str, v_min: float = 0.95, v_max: float = 1.05) -> Figure:
    """Minimum, maximum and median voltage over all observed bus-phases, with the limits."""
    plt = pyplot()
    frame = _voltage_frame(result, grid)
    t = frame["time_s"].to_numpy()
    low, high, median = _row_stats(frame.drop(columns="time_s").to_numpy())
    keep = extreme_indices(low, high)
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.fill_between(t[keep], low[keep], high[keep], alpha=0.3, label="min-max envelope")
    _line(ax, t, median, lw=1, label="median")
    for limit in (v_min, v_max):
        ax.axhline(limit, color="red", ls="--", lw=1)
    ax.set(xlabel="time (s)", ylabel="voltage (pu)", title=f"{grid}: voltage envelope")
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


def plot_site_voltages(
    result: RunResult, grid: str, site_buses: Mapping[str, str], v_min: float = 0.95, v_max: float = 1.05
) -> Figure:
    """Voltage at each site's bus, per phase."""
    plt = pyplot()
    frame = _voltage_frame(result, grid)
    fig, axes = plt.subplots(len(site_buses), 1, figsize=(10, 3 * len(site_buses)), squeeze=False)
    for ax, (site, bus) in zip(axes[:, 0], site_buses.items(), strict=True):
        for phase, label in enumerate(PHASE_LABELS, start=1):
            column = f"{bus.lower()}.{phase}"
            if column in frame:
                _line(ax, frame["time_s"].to_numpy(), frame[column].to_numpy(float), lw=0.8, label=f"phase {label}")
        for limit in (v_min, v_max):
            ax.axhline(limit, color="red", ls="--", lw=1)
        ax.set(ylabel="pu", title=f"{site} at bus {bus}")
        ax.legend(loc="best")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return fig


def plot_site_power(result: RunResult, site: str) -> Figure:
    """Site power per phase and inference power per model."""
    plt = pyplot()
    state = result.table(f"{site}/state")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    t = state["time_s"].to_numpy()
    for label in PHASE_LABELS:
        _line(top, t, state[f"power_{label}_w"].to_numpy(float) / 1e3, lw=0.6, label=f"phase {label}")
    top.set(ylabel="kW", title=f"{site}: power per phase")
    top.legend(loc="best")
    for model, column in _model_columns(state, "power_w").items():
        _line(bottom, t, state[column].to_numpy(float) / 1e3, lw=0.6, label=model)
    bottom.set(xlabel="time (s)", ylabel="kW", title="inference power per model")
    bottom.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig


def plot_batch_sizes(result: RunResult, site: str) -> Figure:
    """Effective batch size per model (log2 axis)."""
    plt = pyplot()
    state = result.table(f"{site}/state")
    fig, ax = plt.subplots(figsize=(10, 4))
    for model, column in _model_columns(state, "batch").items():
        _step(ax, state["time_s"].to_numpy(), state[column].to_numpy(), label=model)
    ax.set_yscale("log", base=2)
    ax.set(xlabel="time (s)", ylabel="batch size", title=f"{site}: batch size per model")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig


def plot_latency(result: RunResult, site: str, deadlines_s: Mapping[str, float]) -> Figure:
    """Observed ITL per model against its deadline."""
    plt = pyplot()
    state = result.table(f"{site}/state")
    columns = _model_columns(state, "itl_s")
    fig, axes = plt.subplots(len(columns), 1, figsize=(10, 2.2 * max(len(columns), 1)), squeeze=False, sharex=True)
    for ax, (model, column) in zip(axes[:, 0], columns.items(), strict=True):
        _line(ax, state["time_s"].to_numpy(), state[column].to_numpy(float) * 1e3, lw=0.5, label="observed ITL")
        if model in deadlines_s:
            ax.axhline(deadlines_s[model] * 1e3, color="red", ls="--", lw=1, label="deadline")
        ax.set(ylabel="ms", title=model)
        ax.legend(loc="upper right", fontsize="small")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return fig


def plot_taps(result: RunResult, grid: str) -> Figure | None:
    """Regulator tap ratios over time (None when the grid has no regulators)."""
    key = f"{grid}/taps"
    if key not in result.tables or result.tables[key].shape[1] <= 1:
        return None
    plt = pyplot()
    taps = result.tables[key]
    fig, ax = plt.subplots(figsize=(10, 3))
    for column in taps.columns.drop("time_s"):
        _step(ax, taps["time_s"].to_numpy(), taps[column].to_numpy(), label=column)
    ax.set(xlabel="time (s)", ylabel="tap (pu)", title=f"{grid}: regulator taps")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig
