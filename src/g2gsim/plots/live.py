"""Figures of a live run: the real GPUs' measured power against the augmented power the grid saw."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from g2gsim.kernel.results import RunResult
from g2gsim.plots.helpers import pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["is_live_state", "live_models", "plot_live_power"]

_MEASURED = ".measured_power_w"


def live_models(state: pd.DataFrame) -> list[str]:
    """Models of a live site's state table (those with a measured-power column)."""
    return [c[: -len(_MEASURED)] for c in state.columns if c.endswith(_MEASURED)]


def is_live_state(state: pd.DataFrame) -> bool:
    """Whether a site's state table comes from a live site."""
    return bool(live_models(state))


def plot_live_power(result: RunResult, site: str) -> Figure:
    """Per model: measured power of its real GPUs (W, left axis) against the augmented power
    (MW, right axis); and the augmentation check: augmented power over factor x the measured
    power averaged over the stagger window (the site's ``buffer_s``), about the mean server
    amplitude when the augmentation follows the measurement."""
    plt = pyplot()
    state = result.table(f"{site}/state")
    models = live_models(state)
    t = state["time_s"].to_numpy()
    dt = float(np.median(np.diff(t))) if t.size > 1 else 1.0
    window = max(1, round(float(result.summary.get(site, {}).get("buffer_s", dt)) / dt))
    fig, axes = plt.subplots(
        len(models),
        2,
        figsize=(12, 2.8 * max(len(models), 1)),
        squeeze=False,
        sharex=True,
        gridspec_kw={"width_ratios": [3, 2]},
    )
    for (left, right), model in zip(axes, models, strict=True):
        measured = state[f"{model}{_MEASURED}"]
        augmented = state[f"{model}.power_w"].to_numpy(dtype=float)
        left.plot(t, measured, lw=0.7, color="C0", label="measured (real GPUs)")
        left.set(ylabel="measured W", title=f"{site} / {model}")
        twin = left.twinx()
        twin.plot(t, augmented / 1e6, lw=0.7, color="C1", label="augmented (grid)")
        twin.set_ylabel("augmented MW")
        lines = left.get_lines() + twin.get_lines()
        left.legend(lines, [line.get_label() for line in lines], loc="lower right", fontsize="small")
        expected = measured.rolling(window, min_periods=1).mean().to_numpy() * state[f"{model}.augmentation_factor"]
        with np.errstate(divide="ignore", invalid="ignore"):
            right.plot(t, augmented / expected.to_numpy(dtype=float), lw=0.7, color="C2")
        right.set(ylabel="augmented / expected", title=f"augmented / (factor x measured, {window * dt:g} s mean)")
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    fig.tight_layout()
    return fig
