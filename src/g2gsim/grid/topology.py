"""The compiled feeder as a graph: buses, branches, regulator zones, electrical distance.

Built from any compiled OpenDSS circuit (bundled or user feeder), so siting studies and
zone-local controllers ask one object which buses lie behind a regulator, how far apart two
buses are electrically, or which buses can host a three-phase datacenter.

The graph is a :class:`networkx.MultiGraph` (parallel single-phase regulators of one bank
join the same two buses): nodes are buses, edges are lines, switches, transformers and
regulators, keyed by their OpenDSS name (``line.650632``). "Downstream" means away from
the source bus along the breadth-first tree rooted at the source; on a radial feeder that
is the only path.

Branch impedances are positive-sequence series impedances ``Z1``: for a line, mean self
minus mean mutual impedance of its phase matrix (the self impedance of a single-phase line),
taken from OpenDSS's primitive admittance matrix, so any units or line definition work;
for a transformer, its leakage impedance. Each edge carries ``z1_pu`` on a 1 MVA system
base (each branch on its own voltage base), which adds up meaningfully across transformers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import networkx as nx
import numpy as np

from g2gsim.grid.engine import DSSEngine

if TYPE_CHECKING:
    pass

#: System base of per-unit impedances on edges (MVA).
SYSTEM_BASE_MVA = 1.0
#: OpenDSS line length unit codes (``Lines.Units``).
_LENGTH_UNITS = ("none", "mi", "kft", "km", "m", "ft", "in", "cm", "mm")

#: Edge attribute summed by :meth:`FeederTopology.electrical_distance`.
DistanceWeight = Literal["z1_pu", "z1_ohm", "r1_ohm"]


@dataclass(frozen=True, slots=True)
class Regulator:
    """A regulator control, the transformer it drives and that transformer's two buses."""

    control: str
    transformer: str
    from_bus: str  # side nearer the source
    to_bus: str  # regulated side


@dataclass(frozen=True, eq=False)
class FeederTopology:
    """Graph of a compiled feeder plus the source-rooted tree used for up/downstream."""

    graph: nx.MultiGraph
    source_bus: str
    regulators: tuple[Regulator, ...]
    _tree: nx.DiGraph = field(repr=False)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_engine(cls, engine: DSSEngine) -> FeederTopology:
        """Read buses and branches of the circuit compiled in `engine` (solved or not)."""
        dss = engine.dss
        _ensure_built(engine)
        graph = nx.MultiGraph()
        for bus in engine.bus_names():
            graph.add_node(bus, **_bus_attributes(dss, bus))
        regulated = _regulated_transformers(dss)
        for bus1, bus2, key, attrs in (*_line_edges(dss), *_transformer_edges(dss, regulated)):
            graph.add_edge(bus1, bus2, key=key, **attrs)
        source = _source_bus(dss)
        tree = nx.bfs_tree(graph, source)
        regulators = tuple(
            _orient(control, transformer, graph, tree) for control, transformer in _regcontrols(dss).items()
        )
        return cls(graph=graph, source_bus=source, regulators=regulators, _tree=tree)

    @classmethod
    def from_grid(cls, grid: Any) -> FeederTopology:
        """Topology of a grid component's compiled circuit (anything with an ``engine``)."""
        return cls.from_engine(grid.engine)

    # -- buses ----------------------------------------------------------------------------------
    @property
    def buses(self) -> tuple[str, ...]:
        """Every bus, in OpenDSS's bus order."""
        return tuple(self.graph.nodes)

    def three_phase_buses(self) -> tuple[str, ...]:
        """Buses that have nodes 1, 2 and 3 (where a three-phase datacenter can connect)."""
        return tuple(b for b, nodes in self.graph.nodes(data="nodes") if {1, 2, 3} <= set(nodes))

    def has_coordinates(self) -> bool:
        """True when at least one bus has drawing coordinates."""
        return any(x is not None for _, x in self.graph.nodes(data="x"))

    def coordinates(self) -> Mapping[str, tuple[float, float]]:
        """Bus -> (x, y) for the buses that have coordinates."""
        return MappingProxyType({b: (d["x"], d["y"]) for b, d in self.graph.nodes(data=True) if d.get("x") is not None})

    def _require(self, bus: str) -> str:
        name = bus.lower()
        if name not in self.graph:
            raise KeyError(f"the feeder has no bus {bus!r}")
        return name

    # -- paths -------------------------------------------------------------------------------------
    def path(self, a: str, b: str) -> list[str]:
        """Buses on the path from `a` to `b` (the unique one on a radial feeder)."""
        return list(nx.shortest_path(self.graph, self._require(a), self._require(b)))

    def electrical_distance(self, a: str, b: str, weight: DistanceWeight = "z1_pu") -> float:
        """Sum over the branches between `a` and `b` of the positive-sequence series impedance.

        ``z1_pu`` (default): |Z1| in per unit on a 1 MVA base, comparable across voltage
        levels; ``z1_ohm``: |Z1| in ohm; ``r1_ohm``: series resistance R1 in ohm (ohm values
        of transformers are referred to their regulated/secondary winding). Parallel branches
        count with the smallest value (one phase of a single-phase regulator bank).
        """
        if weight not in ("z1_pu", "z1_ohm", "r1_ohm"):
            raise ValueError(f"weight must be 'z1_pu', 'z1_ohm' or 'r1_ohm', got {weight!r}")
        return float(nx.shortest_path_length(self.graph, self._require(a), self._require(b), weight=weight))

    def downstream_buses(self, bus: str) -> frozenset[str]:
        """Buses fed through `bus`, away from the source (not `bus` itself)."""
        name = self._require(bus)
        if name not in self._tree:
            return frozenset()  # not connected to the source
        return frozenset(nx.descendants(self._tree, name))

    def upstream_buses(self, bus: str) -> tuple[str, ...]:
        """Buses from the source down to `bus`'s parent, source first."""
        name = self._require(bus)
        if name not in self._tree:
            return ()
        return tuple(nx.shortest_path(self._tree, self.source_bus, name)[:-1])

    def regulator_zones(self, nested: bool = False) -> dict[str, frozenset[str]]:
        """For each regulator control, the buses it regulates: its output bus and every bus
        downstream of it, stopping at the next regulator (``nested=True``: not stopping).

        Controls of one bank (creg1a/b/c on the same two buses) share one zone.
        """
        heads = {r.to_bus for r in self.regulators}
        zones: dict[str, frozenset[str]] = {}
        for reg in self.regulators:
            if nested:
                zones[reg.control] = frozenset({reg.to_bus}) | self.downstream_buses(reg.to_bus)
            else:
                zones[reg.control] = frozenset(self._zone_from(reg.to_bus, heads - {reg.to_bus}))
        return zones

    def _zone_from(self, head: str, stops: set[str]) -> set[str]:
        if head not in self._tree:
            return {head}
        zone, frontier = {head}, [head]
        while frontier:
            bus = frontier.pop()
            for child in self._tree.successors(bus):
                if child not in stops:
                    zone.add(child)
                    frontier.append(child)
        return zone

    # -- drawing ----------------------------------------------------------------------------------


# -- reading the circuit --------------------------------------------------------------------------------
def _ensure_built(engine: DSSEngine) -> None:
    """Make OpenDSS build its bus list and primitive matrices if nothing has solved yet."""
    dss = engine.dss
    if int(dss.Basic.NumCircuits()) == 0:
        raise ValueError(f"engine {engine!r} has no compiled circuit")
    if int(dss.Circuit.NumBuses()) == 0:
        engine.run("MakeBusList")
    if dss.Lines.First() > 0:
        dss.Circuit.SetActiveElement(f"Line.{dss.Lines.Name()}")
        if np.asarray(dss.CktElement.YPrim()).size <= 1:  # never built: no solve yet
            dss.Solution.BuildYMatrix(1, 1)


def _bus_attributes(dss: Any, bus: str) -> dict[str, Any]:
    dss.Circuit.SetActiveBus(bus)
    defined = bool(dss.Bus.Coorddefined())
    return {
        "nodes": tuple(int(n) for n in dss.Bus.Nodes()),
        "kv_base": float(dss.Bus.kVBase()),  # line-to-neutral kV, 0 without voltage bases
        "x": float(dss.Bus.X()) if defined else None,
        "y": float(dss.Bus.Y()) if defined else None,
    }


def _bus_name(spec: str) -> str:
    return str(spec).partition(".")[0].lower()


def _z_base_ohm(dss: Any, bus: str) -> float:
    """Impedance base (ohm) of a bus on the system base, NaN when the bus has no kV base."""
    dss.Circuit.SetActiveBus(bus)
    kv_ln = float(dss.Bus.kVBase())
    return 3.0 * kv_ln**2 / SYSTEM_BASE_MVA if kv_ln > 0 else math.nan


def _line_edges(dss: Any) -> list[tuple[str, str, str, dict[str, Any]]]:
    edges = []
    lines = dss.Lines
    index = lines.First()
    while index > 0:
        bus1, bus2 = _bus_name(lines.Bus1()), _bus_name(lines.Bus2())
        name = str(lines.Name()).lower()
        z1 = _line_z1_ohm(dss)
        units = int(lines.Units())
        attrs = {
            "element": f"line.{name}",
            "kind": "switch" if lines.IsSwitch() else "line",
            "phases": int(lines.Phases()),
            "length": float(lines.Length()),
            "units": _LENGTH_UNITS[units] if 0 <= units < len(_LENGTH_UNITS) else str(units),
            "r1_ohm": z1.real,
            "x1_ohm": z1.imag,
            "z1_ohm": abs(z1),
            "z1_pu": abs(z1) / _z_base_ohm(dss, bus1),
        }
        edges.append((bus1, bus2, f"line.{name}", attrs))
        index = lines.Next()
    return edges


def _line_z1_ohm(dss: Any) -> complex:
    """Positive-sequence series impedance (ohm) of the active line from its Yprim.

    Yprim = [[Y + Yc/2, -Y], [-Y, Y + Yc/2]] with Y the series admittance matrix, so the
    series impedance matrix is inv(-Y12) whatever the line's units or definition.
    """
    dss.Circuit.SetActiveElement(f"Line.{dss.Lines.Name()}")
    n = int(dss.CktElement.NumConductors())
    flat = np.asarray(dss.CktElement.YPrim(), dtype=float)
    if flat.size != 2 * (2 * n) ** 2:
        return complex(math.nan, math.nan)
    y = (flat[0::2] + 1j * flat[1::2]).reshape(2 * n, 2 * n)
    z = np.linalg.inv(-y[:n, n:])
    if n == 1:
        return complex(z[0, 0])
    self_mean = np.mean(np.diag(z))
    mutual_mean = (z.sum() - np.trace(z)) / (n * (n - 1))
    return complex(self_mean - mutual_mean)


def _transformer_edges(dss: Any, regulated: set[str]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """One edge per transformer from winding 1 to each other winding."""
    edges = []
    xfmrs = dss.Transformers
    index = xfmrs.First()
    while index > 0:
        name = str(xfmrs.Name()).lower()
        dss.Circuit.SetActiveElement(f"Transformer.{name}")
        buses = [_bus_name(b) for b in dss.CktElement.BusNames()]
        phases = int(dss.CktElement.NumPhases())
        ratings = []
        for w in range(1, int(xfmrs.NumWindings()) + 1):
            xfmrs.Wdg(w)
            ratings.append((float(xfmrs.kV()), float(xfmrs.kVA()), float(xfmrs.R())))
        xfmrs.Wdg(1)
        x_pct = float(xfmrs.Xhl())
        kind = "regulator" if name in regulated else "transformer"
        for w in range(1, len(buses)):
            r_pct = ratings[0][2] + ratings[w][2]
            s3_mva = ratings[0][1] * 3.0 / phases / 1000.0  # a 1-phase unit counts as a third of a bank
            z_pu = complex(r_pct, x_pct) / 100.0 * SYSTEM_BASE_MVA / s3_mva
            z_ohm = z_pu * _z_base_ohm(dss, buses[w])
            attrs = {
                "element": f"transformer.{name}",
                "kind": kind,
                "phases": phases,
                "kv": (ratings[0][0], ratings[w][0]),
                "kva": ratings[0][1],
                "r1_ohm": z_ohm.real,
                "x1_ohm": z_ohm.imag,
                "z1_ohm": abs(z_ohm),
                "z1_pu": abs(z_pu),
            }
            key = f"transformer.{name}" if len(buses) == 2 else f"transformer.{name}.{w + 1}"
            edges.append((buses[0], buses[w], key, attrs))
        index = xfmrs.Next()
    return edges


def _regcontrols(dss: Any) -> dict[str, str]:
    """Regulator control -> transformer it drives."""
    found: dict[str, str] = {}
    controls = dss.RegControls
    index = controls.First()
    while index > 0:
        found[str(controls.Name()).lower()] = str(controls.Transformer()).lower()
        index = controls.Next()
    return found


def _regulated_transformers(dss: Any) -> set[str]:
    return set(_regcontrols(dss).values())


def _source_bus(dss: Any) -> str:
    if dss.Vsources.First() <= 0:
        raise ValueError("the circuit has no Vsource to root its topology")
    dss.Circuit.SetActiveElement(f"Vsource.{dss.Vsources.Name()}")
    return _bus_name(dss.CktElement.BusNames()[0])


def _orient(control: str, transformer: str, graph: nx.MultiGraph, tree: nx.DiGraph) -> Regulator:
    """A regulator with its buses ordered from the source side to the regulated side."""
    key = f"transformer.{transformer}"
    for u, v, k in graph.edges(keys=True):
        if k == key:
            if tree.has_edge(v, u):
                u, v = v, u
            return Regulator(control=control, transformer=transformer, from_bus=u, to_bus=v)
    raise ValueError(f"regulator control {control!r} drives transformer {transformer!r}, which is not in the circuit")
