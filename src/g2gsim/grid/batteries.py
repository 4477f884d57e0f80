"""A grid's batteries: OpenDSS Storage elements, their commanded set-points and their states.

A :class:`~g2gsim.grid.commands.SetStoragePower` is checked against the battery's ratings and
kept until the grid's next solve hands it to OpenDSS (only set-points that changed are
written); after each solve OpenDSS's own bookkeeping advances every battery's energy over
the step, and the states (kWh, state of charge, kW, kvar) are read for publishing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from g2gsim.grid.circuit import Circuit, check_storage_dispatch
from g2gsim.grid.config import StorageSpec
from g2gsim.grid.engine import DSSEngine

__all__ = ["Batteries", "Battery"]


@dataclass(slots=True)
class Battery:
    """A battery: its spec, the commanded set-point, and whether OpenDSS has it yet."""

    spec: StorageSpec
    kw: float = 0.0
    kvar: float = 0.0
    pending: bool = False
    variable_rows: tuple[int, ...] = ()
    index: int = 0  # 1-based position among the circuit's Storage elements


class Batteries:
    """The batteries of one run's circuit (false when there are none); `known` names the
    grid's configured batteries for errors, also before a run has attached them."""

    __slots__ = ("_circuit", "_engine", "_grid", "_known", "items")

    def __init__(
        self,
        items: Sequence[Battery],
        circuit: Circuit | None,
        engine: DSSEngine | None,
        grid: str,
        known: Sequence[str],
    ) -> None:
        self.items = list(items)
        self._circuit, self._engine = circuit, engine
        self._grid, self._known = grid, list(known)

    def __bool__(self) -> bool:
        return bool(self.items)

    def names(self) -> list[str]:
        """The batteries' names, in the order recorded."""
        return [b.spec.name for b in self.items]

    def by_name(self, name: str) -> Battery:
        """A battery by name (any case); a KeyError naming the grid's batteries otherwise."""
        lowered = name.lower()
        for battery in self.items:
            if battery.spec.name.lower() == lowered:
                return battery
        raise KeyError(f"grid {self._grid!r} has no storage {name!r}; storage: {self._known}")

    def command(self, name: str, kw: float, kvar: float, *, where: str) -> Battery:
        """Check a dispatch against the battery's ratings and keep it for the next solve."""
        battery = self.by_name(name)
        check_storage_dispatch(battery.spec, kw, kvar, where=where)
        battery.kw, battery.kvar, battery.pending = kw, kvar, True
        return battery

    def write_pending(self) -> None:
        """Hand changed set-points to OpenDSS (only when a command changed them)."""
        for battery in self.items:
            if battery.pending:
                assert self._circuit is not None
                self._circuit.set_storage_power(battery.spec.name, battery.kw, battery.kvar)
                battery.pending = False

    def finish_step(self) -> None:
        """Advance the batteries' energy over one period (OpenDSS's own bookkeeping)."""
        assert self._circuit is not None
        self._circuit.finish_time_step()

    def states(self) -> dict[str, Mapping[str, float]]:
        """Each battery's kWh, state of charge (0-1), kW (> 0 discharging) and kvar now."""
        assert self._engine is not None
        states: dict[str, Mapping[str, float]] = {}
        for battery in self.items:
            values = self._engine.storage_variables(battery.index)
            kwh, kw_out, kw_in, kvar_out = (values[i] for i in battery.variable_rows)
            states[battery.spec.name] = MappingProxyType(
                {"kwh": kwh, "soc": kwh / battery.spec.rated_kwh, "kw": kw_out - kw_in, "kvar": kvar_out}
            )
        return states
