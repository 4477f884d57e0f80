"""Time series of a run: voltages, site power, batch sizes, latency and regulator taps.

Every function takes a :class:`RunResult` (and what it needs to label axes) and returns a
matplotlib Figure; :func:`g2gsim.plots.write_scenario_plots` writes the standard set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from g2gsim.kernel.results import RunResult
from g2gsim.plots.helpers import pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PHASE_LABELS = ("a", "b", "c")


def _voltage_frame(result: RunResult, grid: str) -> pd.DataFrame:
    return result.table(f"{grid}/voltages")


def _model_columns(state: pd.DataFrame, quantity: str) -> dict[str, str]:
    """Model label -> column name for a per-model quantity (columns '<label>.<quantity>')."""
    suffix = f".{quantity}"
    return {c[: -len(suffix)]: c for c in state.columns if c.endswith(suffix)}


def plot_voltage_envelope(result: RunResult, grid: str, v_min: float = 0.95, v_max: float = 1.05) -> Figure:
    """Minimum, maximum and median voltage over all observed bus-phases, with the limits."""
    plt = pyplot()
    frame = _voltage_frame(result, grid)
    t = frame["time_s"].to_numpy()
    values = frame.drop(columns="time_s").to_numpy()
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.fill_between(t, np.nanmin(values, axis=1), np.nanmax(values, axis=1), alpha=0.3, label="min-max envelope")
    ax.plot(t, np.nanmedian(values, axis=1), lw=1, label="median")
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
                ax.plot(frame["time_s"], frame[column], lw=0.8, label=f"phase {label}")
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
    for label in PHASE_LABELS:
        top.plot(state["time_s"], state[f"power_{label}_w"] / 1e3, lw=0.6, label=f"phase {label}")
    top.set(ylabel="kW", title=f"{site}: power per phase")
    top.legend(loc="best")
    for model, column in _model_columns(state, "power_w").items():
        bottom.plot(state["time_s"], state[column] / 1e3, lw=0.6, label=model)
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
        ax.step(state["time_s"], state[column], where="post", label=model)
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
        ax.plot(state["time_s"], state[column] * 1e3, lw=0.5, label="observed ITL")
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
        ax.step(taps["time_s"], taps[column], where="post", label=column)
    ax.set(xlabel="time (s)", ylabel="tap (pu)", title=f"{grid}: regulator taps")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig
