"""What every figure of g2gsim shares: pyplot on the headless Agg backend, saving, the footnote."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from g2gsim.kernel.memory import release_memory

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Points drawn per line at most: two per pixel column of a 10-inch figure at 110 dpi.
MAX_POINTS = 2200


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend unless one is already chosen (never opens a window)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def source_note(scenario: str, seed: int, data: str) -> str:
    """The footnote of a run's figures: which scenario, seed and data they show."""
    return f"{scenario}, seed {seed}; data: {data}"


def write_figure(fig: Figure, path: Path, note: str | None = None) -> Path:
    """Save a figure as PNG (with an optional footnote, e.g. :func:`source_note`) and free it."""
    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    if note:
        fig.text(0.005, 0.005, note, fontsize=7, color="0.35", ha="left", va="bottom")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    release_memory()  # the canvas of the figure
    return path


def extreme_indices(*series: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices that keep, in time order, the minimum and maximum of each of `max_points` / 2
    equal buckets of every series (all the same length): drawn through these points, a long
    line looks as drawn through all of them, at a fraction of the memory."""
    n = len(series[0])
    if n <= max_points:
        return np.arange(n)
    buckets = max(max_points // 2, 1)
    size = -(-n // buckets)
    keep = [np.array([0, n - 1])]
    for values in series:
        padded = np.full(buckets * size, np.nan)
        padded[:n] = values
        rows = padded.reshape(buckets, size)
        missing = np.isnan(rows)
        offset = np.arange(buckets) * size
        keep.append(offset + np.where(missing, np.inf, rows).argmin(axis=1))
        keep.append(offset + np.where(missing, -np.inf, rows).argmax(axis=1))
        keep.append(offset + missing.argmax(axis=1) * missing.any(axis=1))  # a gap stays a gap
    return np.unique(np.clip(np.concatenate(keep), 0, n - 1))


def change_indices(values: np.ndarray) -> np.ndarray:
    """Indices where a step series changes value (and its last one): a step plot through
    them is the same as through every point."""
    values = np.asarray(values)
    if values.size == 0:
        return np.arange(0)
    changed = np.ones(values.size, dtype=bool)
    changed[1:] = values[1:] != values[:-1]
    changed[-1] = True
    return np.flatnonzero(changed)
