"""What every figure of g2gsim shares: pyplot on the headless Agg backend, saving, the footnote."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
    return path
