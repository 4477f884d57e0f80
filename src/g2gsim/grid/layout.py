"""The voltage-vector layout of a compiled feeder (SPEC 4.4): which nodes, in which order.

Every (bus, phase) of the non-excluded buses, phase-major (all phase-1 nodes in OpenDSS's
node order, then phase 2, then phase 3), and each entry's row in ``AllBusMagPu``.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from g2gsim.grid.circuit import PHASES, split_node
from g2gsim.grid.errors import GridError
from g2gsim.grid.state import VoltageIndex

__all__ = ["voltage_layout"]


def voltage_layout(
    node_names: tuple[str, ...], excluded_buses: Collection[str], feeder: str
) -> tuple[VoltageIndex, np.ndarray]:
    """The voltage index of `node_names` without `excluded_buses`, and its AllBusMagPu rows."""
    nodes = [split_node(n) for n in node_names]
    entries: list[tuple[str, int]] = []
    rows: list[int] = []
    for phase in PHASES:
        for row, (bus, node) in enumerate(nodes):
            if node == phase and bus not in excluded_buses:
                entries.append((bus, phase))
                rows.append(row)
    if not entries:
        raise GridError(f"feeder {feeder!r}: every bus is excluded from the voltage vector")
    return VoltageIndex.from_entries(tuple(entries)), np.asarray(rows, dtype=np.intp)
