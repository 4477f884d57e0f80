"""A grid's regulator taps in a run: tap keys resolved, ratings checked, ratios written.

:class:`RegulatorTaps` holds the regulator controls of the compiled feeder and each one's tap
ratio as last written or read; the immutable view published in every
:class:`~g2gsim.grid.state.GridState` and the row recorded at every step follow each change.
The OpenDSS calls themselves are :class:`~g2gsim.grid.circuit.Circuit`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from g2gsim.grid.circuit import RATING_TOLERANCE, Circuit, Regulator, regulators_by_phase, resolve_tap_key

__all__ = ["RegulatorTaps"]


class RegulatorTaps:
    """The regulators of one compiled circuit and their tap ratios (pu).

    Args:
        regulators: Regulator controls by control name, in the feeder's order.
        circuit: Where taps are written and read (None: no circuit yet, nothing to write).
        feeder: Feeder name, for errors.
        enforce_limits: A ratio outside a regulator's [MinTap, MaxTap] is an error (else it
            is applied as OpenDSS would, and reported to :meth:`apply`'s `outside`).
    """

    def __init__(
        self,
        regulators: Mapping[str, Regulator] | None = None,
        circuit: Circuit | None = None,
        feeder: str = "",
        *,
        enforce_limits: bool = True,
    ) -> None:
        self.regulators: dict[str, Regulator] = dict(regulators or {})
        self._by_phase = regulators_by_phase(self.regulators)
        self._circuit = circuit
        self._feeder = feeder
        self._enforce = enforce_limits
        #: Tap ratio of each regulator as last written or read.
        self.ratios: dict[str, float] = {}
        #: The ratios as published in a GridState (a new immutable mapping at every change).
        self.view: Mapping[str, float] = MappingProxyType({})
        #: The ratios in regulator order, as recorded per step (NaN: not known).
        self.row = np.zeros(0)

    def resolve(self, key: str) -> str:
        """Regulator-control name for a tap key: a control name, or a unique phase shorthand."""
        return resolve_tap_key(key, self.regulators, self._by_phase, self._feeder)

    def apply(
        self, taps: Mapping[str, float], *, when: str, outside: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        """Write tap ratios to the regulators' transformer windings (element API), every key
        resolved and every rating checked first (`when` words the error); a ratio outside its
        rating, when allowed, is applied and its facts passed to `outside`."""
        resolved = {self.resolve(key): float(ratio) for key, ratio in taps.items()}
        for control, ratio in resolved.items():
            reg = self.regulators[control]
            if not reg.min_tap - RATING_TOLERANCE <= ratio <= reg.max_tap + RATING_TOLERANCE:
                if self._enforce:
                    raise ValueError(
                        f"feeder {self._feeder!r}, {when}: tap {ratio} pu for {control!r} is outside "
                        f'[{reg.min_tap}, {reg.max_tap}] (set tap_limits = "allow" to apply it as OpenDSS would)'
                    )
                if outside is not None:
                    outside({"regulator": control, "tap_pu": ratio, "min_tap": reg.min_tap, "max_tap": reg.max_tap})
        for control, ratio in resolved.items():
            reg = self.regulators[control]
            self._circuit_now().set_tap(reg.transformer, reg.winding, ratio)
            self.ratios[control] = ratio
        self._changed()

    def read(self) -> bool:
        """Take every ratio from the circuit (OpenDSS's own control may have moved them);
        True when one changed (the view and the row then follow)."""
        circuit = self._circuit_now()
        ratios = {r.control: circuit.tap(r.transformer, r.winding) for r in self.regulators.values()}
        if list(ratios.items()) == list(self.ratios.items()):
            return False
        self.ratios = ratios
        self._changed()
        return True

    def _changed(self) -> None:
        self.view = MappingProxyType(dict(self.ratios))
        self.row = np.array([self.ratios.get(c, np.nan) for c in self.regulators], dtype=float)

    def _circuit_now(self) -> Circuit:
        if self._circuit is None:
            raise RuntimeError(f"feeder {self._feeder!r}: no compiled circuit to set taps on")
        return self._circuit
