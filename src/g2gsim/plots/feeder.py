"""The feeder drawn: its buses and branches, the sites on it, a value per bus (hosting capacity, a metric)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import networkx as nx

from g2gsim.grid.topology import FeederTopology
from g2gsim.plots.helpers import pyplot

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Line style of each kind of branch.
EDGE_STYLE: dict[str, dict[str, Any]] = {
    "line": {"color": "0.55", "linewidth": 1.2, "linestyle": "-"},
    "switch": {"color": "tab:green", "linewidth": 1.6, "linestyle": ":"},
    "transformer": {"color": "tab:purple", "linewidth": 2.4, "linestyle": "-"},
    "regulator": {"color": "tab:orange", "linewidth": 2.8, "linestyle": "-"},
}


def plot_feeder(
    topology: FeederTopology,
    ax: Axes | None = None,
    highlight: Mapping[str, str] | Iterable[str] | None = None,
    *,
    labels: bool = False,
) -> Axes:
    """Draw the feeder on bus coordinates (a source-rooted layered layout when it has none).

    Lines grey, switches dotted green, transformers purple and regulators orange (with a
    marker on their regulated bus, as regulators are often drawn with zero length), the
    source a black square. `highlight` marks buses in red: a mapping bus -> label (e.g.
    datacenter sites) or just buses; `labels` writes every bus name. Without `ax` it draws
    on a new off-screen matplotlib Figure (no GUI backend, no pyplot state).
    """
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(7, 7)).add_subplot()
    pos = bus_positions(topology)
    for u, v, data in topology.graph.edges(data=True):
        if u in pos and v in pos:
            style = EDGE_STYLE.get(data.get("kind", "line"), EDGE_STYLE["line"])
            ax.plot([pos[u][0], pos[v][0]], [pos[u][1], pos[v][1]], zorder=1, **style)
    for reg in topology.regulators:
        if reg.to_bus in pos:
            ax.scatter([pos[reg.to_bus][0]], [pos[reg.to_bus][1]], marker="^", s=55, color="tab:orange", zorder=3)
    drawn = [b for b in topology.graph.nodes if b in pos]
    ax.scatter([pos[b][0] for b in drawn], [pos[b][1] for b in drawn], s=10, color="0.25", zorder=2)
    if topology.source_bus in pos:
        sx, sy = pos[topology.source_bus]
        ax.scatter([sx], [sy], marker="s", s=60, color="black", zorder=3, label=f"source ({topology.source_bus})")
    if labels:
        for b in drawn:
            ax.annotate(b, pos[b], fontsize=6, xytext=(2, 2), textcoords="offset points")
    marks = dict(highlight) if isinstance(highlight, Mapping) else {b: b for b in (highlight or ())}
    for bus, label in marks.items():
        name = bus.lower()
        if name not in pos:
            raise KeyError(f"cannot highlight bus {bus!r}: it is not in the feeder or has no position")
        ax.scatter([pos[name][0]], [pos[name][1]], s=90, color="tab:red", edgecolor="black", zorder=4)
        ax.annotate(str(label), pos[name], fontsize=8, xytext=(5, 5), textcoords="offset points", color="tab:red")
    for kind in sorted({d.get("kind", "line") for _, _, d in topology.graph.edges(data=True)}):
        ax.plot([], [], label=kind, **EDGE_STYLE.get(kind, EDGE_STYLE["line"]))
    ax.legend(loc="best", fontsize="small")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def bus_positions(topology: FeederTopology) -> dict[str, tuple[float, float]]:
    """Bus coordinates when the feeder has them, else a layered layout from the source."""
    if topology.has_coordinates():
        return dict(topology.coordinates())
    layout = nx.bfs_layout(topology.graph, topology.source_bus, align="horizontal")
    return {b: (float(p[0]), -float(p[1])) for b, p in layout.items()}


def plot_feeder_map(grid: Any, site_buses: Mapping[str, str]) -> Figure | None:
    """The feeder of a grid component drawn with its bus coordinates, sites highlighted (None without coordinates)."""
    topology = FeederTopology.from_grid(grid)
    if not topology.has_coordinates():
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 8))
    plot_feeder(topology, ax=ax, highlight={bus: site for site, bus in site_buses.items()})
    ax.set_title(f"{grid.feeder.name}: feeder and datacenter sites")
    fig.tight_layout()
    return fig


def plot_bus_values(
    topology: FeederTopology,
    values: Mapping[str, float],
    label: str,
    title: str = "",
    fmt: str = "{:,.0f}",
    cmap: str = "RdYlGn",
) -> Figure:
    """A value per bus, as coloured markers on the feeder map (annotated with `fmt`)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 8))
    plot_feeder(topology, ax=ax)
    pos = bus_positions(topology)
    buses = [b for b in values if b.lower() in pos]
    numbers = [float(values[b]) for b in buses]
    points = ax.scatter(
        [pos[b.lower()][0] for b in buses],
        [pos[b.lower()][1] for b in buses],
        c=numbers,
        s=140,
        cmap=cmap,
        edgecolor="black",
        zorder=5,
    )
    for bus, value in zip(buses, numbers, strict=True):
        ax.annotate(
            f"{bus}: {fmt.format(value)}", pos[bus.lower()], fontsize=7, xytext=(6, 6), textcoords="offset points"
        )
    fig.colorbar(points, ax=ax, label=label, shrink=0.7)
    ax.set_title(title or f"{label} by bus")
    fig.tight_layout()
    return fig


def plot_hosting_capacity(topology: FeederTopology, capacity: Mapping[str, float], title: str = "") -> Figure:
    """Hosting capacity (GPUs) by bus, as coloured markers on the feeder map."""
    return plot_bus_values(topology, capacity, "hosting capacity (GPUs)", title or "hosting capacity by bus")
