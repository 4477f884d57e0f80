"""The OpenDSS calls a grid needs beyond the engine's core: buses, attachments, regulators, storage.

:class:`Circuit` binds to one :class:`~g2gsim.grid.engine.DSSEngine` and its compiled feeder.
Everything here runs while a circuit is set up or when a command arrives; on the per-step
path only the storage read-back and, with OpenDSS's own regulator control, the solve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from g2gsim.grid.config import GridOptions, SiteAttachment, StorageSpec
from g2gsim.grid.engine import DSSEngine
from g2gsim.grid.errors import GridError
from g2gsim.grid.feeders import Feeder

__all__ = [
    "PHASES",
    "PHASE_LETTERS",
    "RATING_TOLERANCE",
    "STORAGE_VARIABLES",
    "Attachments",
    "Circuit",
    "PhaseLoads",
    "Regulator",
    "check_storage_dispatch",
    "compile_and_attach",
    "regulators_by_phase",
    "resolve_tap_key",
    "split_node",
]

PHASES = (1, 2, 3)
PHASE_LETTERS = ("a", "b", "c")
#: Tolerance on storage ratings and tap limits (rounding of user numbers).
RATING_TOLERANCE = 1e-9
#: OpenDSS Storage variables a grid reads back after each solve, in this order.
STORAGE_VARIABLES = ("kWh", "kWOut", "kWIn", "kvarOut")
#: Load indices of one three-phase attachment (phases a, b, c).
PhaseLoads = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Regulator:
    """A regulator control and the transformer winding whose tap it drives."""

    control: str
    transformer: str
    winding: int
    phase: int | None
    min_tap: float
    max_tap: float


@dataclass(frozen=True, slots=True)
class Attachments:
    """Where a grid's attachments sit in a compiled circuit, in configuration order."""

    sites: tuple[PhaseLoads, ...]
    generators: tuple[PhaseLoads, ...]
    loads: tuple[PhaseLoads, ...]
    storage: tuple[tuple[int, ...], ...]  # per battery: positions of STORAGE_VARIABLES

    @property
    def injections(self) -> tuple[PhaseLoads, ...]:
        """Generators, then external loads (the order of the per-step load batch after the sites)."""
        return (*self.generators, *self.loads)


def regulators_by_phase(regulators: Mapping[str, Regulator]) -> dict[int, list[str]]:
    """Controls of the single-phase regulators, by the phase (1-3) each serves."""
    by_phase: dict[int, list[str]] = {}
    for reg in regulators.values():
        if reg.phase is not None:
            by_phase.setdefault(reg.phase, []).append(reg.control)
    return by_phase


def resolve_tap_key(
    key: str, regulators: Mapping[str, Regulator], by_phase: Mapping[int, list[str]], feeder: str
) -> str:
    """Regulator-control name for a tap key: a control name, or a phase shorthand a/b/c
    where exactly one regulator serves that phase."""
    lowered = key.lower()
    if lowered in regulators:
        return lowered
    if lowered in PHASE_LETTERS:
        controls = by_phase.get(PHASE_LETTERS.index(lowered) + 1, [])
        if len(controls) == 1:
            return controls[0]
        if not controls:
            raise KeyError(
                f"feeder {feeder!r}: no regulator serves phase {lowered!r}; regulators: {sorted(regulators)}"
            )
        raise KeyError(
            f"feeder {feeder!r}: phase shorthand {lowered!r} is ambiguous, regulators "
            f"{sorted(controls)} all serve phase {lowered}; use their names"
        )
    raise KeyError(f"feeder {feeder!r} has no regulator control {key!r}; regulators: {sorted(regulators)}")


def check_storage_dispatch(spec: StorageSpec, kw: float, kvar: float, *, where: str) -> None:
    """A ValueError, prefixed by `where`, unless a dispatch is finite and within the battery's ratings."""
    if not (math.isfinite(kw) and math.isfinite(kvar)):
        raise ValueError(f"{where}: storage {spec.name!r} dispatch must be finite, got {kw} kW, {kvar} kvar")
    if abs(kw) > spec.rated_kw + RATING_TOLERANCE:
        raise ValueError(
            f"{where}: storage {spec.name!r} asked for {kw:g} kW, beyond its rating of {spec.rated_kw:g} kW"
        )
    apparent = math.hypot(kw, kvar)
    if apparent > spec.kva + RATING_TOLERANCE:
        raise ValueError(
            f"{where}: storage {spec.name!r} asked for {apparent:g} kVA "
            f"({kw:g} kW, {kvar:g} kvar), beyond its rating of {spec.kva:g} kVA"
        )


def split_node(node: str) -> tuple[str, int]:
    """``"671.2"`` -> ("671", 2); a node without a phase suffix gets phase 0."""
    bus, _, phase = node.lower().partition(".")
    return bus, int(phase) if phase.isdigit() else 0


def context_of(engine: DSSEngine) -> Any:
    """The engine's private OpenDSSDirect context (the object made by ``dss.NewContext()``)."""
    context = getattr(engine, "dss", None)
    if context is None:
        raise AttributeError(f"{type(engine).__name__} exposes no OpenDSS context as `.dss`")
    return context


class Circuit:
    """OpenDSS calls bound to one engine's compiled feeder, with errors naming the feeder."""

    def __init__(self, engine: DSSEngine, feeder: str) -> None:
        self.engine = engine
        self.feeder = feeder
        self.dss = context_of(engine)

    # -- solving --------------------------------------------------------------------------------
    def configure_solution(self, period_s: float, *, self_control: bool) -> None:
        """Time mode at the grid period; OpenDSS's controls off unless `self_control`."""
        engine = self.engine
        engine.run("Reset")
        engine.run("Set Mode=Time")
        engine.run(f"Set Stepsize={period_s}s")
        engine.run("Set ControlMode=Time" if self_control else "Set ControlMode=Off")

    def solve_with_controls(self, time_s: float) -> None:
        """``Solution.Solve()``: a time-mode solve that lets OpenDSS move its own regulators."""
        try:
            self.dss.Solution.Solve()
        except Exception as exc:  # OpenDSS reports through DSSException
            raise GridError(f"feeder {self.feeder!r}: the solve at t = {time_s:g} s failed: {exc}") from exc
        if not self.dss.Solution.Converged():
            raise GridError(
                f"feeder {self.feeder!r}: the power flow at t = {time_s:g} s did not converge "
                f"after {self.dss.Solution.Iterations()} iterations (OpenDSS: solution not converged)"
            )

    def reinitialize_solution(self) -> None:
        """``Init``: the next solve starts from a direct solve of the present Y matrix, as the
        first solve after a compile does, instead of from the previous solution."""
        self.engine.run("Init")

    def finish_time_step(self) -> None:
        """Let OpenDSS integrate storage energy over one step (what Solve does with controls on)."""
        self.dss.Solution.Cleanup()

    # -- buses ----------------------------------------------------------------------------------
    def bus_phases(self, bus: str) -> tuple[int, ...] | None:
        """Node numbers of a bus, or None when the circuit has no such bus."""
        if self.dss.Circuit.SetActiveBus(bus) < 0:
            return None
        return tuple(int(n) for n in self.dss.Bus.Nodes())

    def bus_kv_base(self, bus: str) -> float:
        """Line-to-neutral base voltage (kV) of a bus."""
        if self.dss.Circuit.SetActiveBus(bus) < 0:
            raise GridError(f"feeder {self.feeder!r} has no bus {bus!r}")
        return float(self.dss.Bus.kVBase())

    def bus_kv_ln(self, bus: str) -> float:
        """Line-to-neutral base kV of a bus, which must have a voltage base."""
        kv = self.bus_kv_base(bus)
        if not kv > 0.0:
            raise GridError(f"feeder {self.feeder!r}: bus {bus!r} has no voltage base (kVBase = {kv})")
        return kv

    def require_three_phase(self, bus: str, what: str) -> None:
        """An error naming `what` unless `bus` exists and has phases 1, 2 and 3."""
        phases = self.bus_phases(bus)
        if phases is None:
            raise GridError(f"feeder {self.feeder!r}: {what} is attached to unknown bus {bus!r}")
        if not set(PHASES) <= set(phases):
            raise GridError(
                f"feeder {self.feeder!r}: {what} needs a three-phase bus; bus {bus!r} has phases {sorted(phases)}"
            )

    # -- attachments ------------------------------------------------------------------------------
    def add_site(self, i: int, site: SiteAttachment) -> PhaseLoads:
        """A site's three phase loads ``g2g_dc<i>_a/b/c``."""
        self.require_three_phase(site.bus, f"datacenter {site.site!r}")
        return self.add_phase_loads(f"g2g_dc{i}", site.bus, site.connection)

    def add_injection(self, prefix: str, bus: str) -> PhaseLoads:
        """A generator's or external load's three wye phase loads ``<prefix>_a/b/c``."""
        self.require_three_phase(bus, prefix)
        return self.add_phase_loads(prefix, bus, "wye")

    def add_phase_loads(self, prefix: str, bus: str, connection: str) -> tuple[int, int, int]:
        """Three single-phase constant-PQ loads (model=1) ``<prefix>_a/b/c`` at `bus`; their indices."""
        kv = self.bus_kv_ln(bus)
        if connection == "delta":
            kv *= math.sqrt(3.0)
        names = tuple(f"{prefix}_{letter}" for letter in PHASE_LETTERS)
        for phase, load in zip(PHASES, names, strict=True):
            self.engine.run(
                f"New Load.{load} bus1={bus}.{phase} phases=1 conn={connection} kV={kv:.6f} kW=0 kvar=0 model=1"
            )
        a, b, c = (self.engine.load_index(load) for load in names)
        return a, b, c

    def add_storage(self, spec: StorageSpec) -> tuple[int, ...]:
        """A native Storage element, dispatched externally, idle at first; the positions of
        :data:`STORAGE_VARIABLES` among its state variables."""
        self.require_three_phase(spec.bus, f"storage {spec.name!r}")
        kv_ll = self.bus_kv_ln(spec.bus) * math.sqrt(3.0)
        self.engine.run(
            f"New Storage.{spec.name} bus1={spec.bus}.1.2.3 phases=3 conn={spec.connection} "
            f"kV={kv_ll:.6f} kVA={spec.kva:.6f} kWRated={spec.rated_kw:.6f} kWhRated={spec.rated_kwh:.6f} "
            f"kWhStored={spec.rated_kwh * spec.initial_soc:.6f} %Reserve={spec.reserve_soc * 100.0:.6f} "
            f"%EffCharge={spec.charge_efficiency * 100.0:.6f} %EffDischarge={spec.discharge_efficiency * 100.0:.6f} "
            f"%IdlingkW={spec.idling_loss_percent:.6f} DispMode=EXTERNAL State=IDLING kW=0 kvar=0"
        )
        names = self.storage_variable_names(spec.name)
        return tuple(names.index(v) for v in STORAGE_VARIABLES)

    # -- regulators -------------------------------------------------------------------------------
    def regulators(self) -> list[Regulator]:
        """Every RegControl with its transformer, winding, phase (if single-phase) and tap range."""
        dss = self.dss
        found: list[Regulator] = []
        for control in dss.RegControls.AllNames():
            if control.lower() == "none":
                continue
            dss.RegControls.Name(control)
            transformer = dss.RegControls.Transformer()
            winding = int(dss.RegControls.Winding())
            dss.Transformers.Name(transformer)
            phase = _single_phase_of(dss.CktElement.BusNames())
            found.append(
                Regulator(
                    control=control.lower(),
                    transformer=transformer.lower(),
                    winding=winding,
                    phase=phase,
                    min_tap=float(dss.Transformers.MinTap()),
                    max_tap=float(dss.Transformers.MaxTap()),
                )
            )
        return found

    def set_tap(self, transformer: str, winding: int, ratio: float) -> None:
        """Tap ratio (pu) of one transformer winding, through the Transformers interface."""
        dss = self.dss
        dss.Transformers.Name(transformer)
        dss.Transformers.Wdg(winding)
        dss.Transformers.Tap(ratio)

    def tap(self, transformer: str, winding: int) -> float:
        """Present tap ratio (pu) of one transformer winding."""
        dss = self.dss
        dss.Transformers.Name(transformer)
        dss.Transformers.Wdg(winding)
        return float(dss.Transformers.Tap())

    # -- storage ----------------------------------------------------------------------------------
    def set_storage_power(self, storage: str, kw: float, kvar: float) -> None:
        """Dispatch a Storage element: kW > 0 discharges, < 0 charges, 0 idles."""
        if abs(kw) <= RATING_TOLERANCE:
            state, kw = "IDLING", 0.0
        else:
            state = "DISCHARGING" if kw > 0.0 else "CHARGING"
        self.engine.run(f"Edit Storage.{storage} State={state} kW={kw:.6f} kvar={kvar:.6f}")

    def _activate_storage(self, storage: str) -> None:
        self.dss.Circuit.SetActiveElement(f"Storage.{storage}")

    def storage_variable_names(self, storage: str) -> list[str]:
        """Names of a Storage element's state variables."""
        self._activate_storage(storage)
        return list(self.dss.CktElement.AllVariableNames())

    def storage_variables(self, storage: str) -> list[float]:
        """Values of a Storage element's state variables (same order as the names)."""
        self._activate_storage(storage)
        return list(self.dss.CktElement.AllVariableValues())


def compile_and_attach(
    engine: DSSEngine, feeder: Feeder, options: GridOptions, sites: tuple[SiteAttachment, ...]
) -> tuple[Circuit, Attachments]:
    """Compile `feeder` in `engine`, set the source voltage, attach sites, generators, external
    loads and batteries, and configure time-mode solving at the grid period."""
    engine.compile_feeder(feeder)
    circuit = Circuit(engine, feeder.name)
    if options.source_pu is not None:
        engine.run(f"Edit Vsource.source pu={options.source_pu}")
    attachments = Attachments(
        sites=tuple(circuit.add_site(i, site) for i, site in enumerate(sites)),
        generators=tuple(circuit.add_injection(f"g2g_gen{i}", g.bus) for i, g in enumerate(options.generators)),
        loads=tuple(circuit.add_injection(f"g2g_load{i}", ld.bus) for i, ld in enumerate(options.loads)),
        storage=tuple(circuit.add_storage(spec) for spec in options.storage),
    )
    circuit.configure_solution(float(options.period_s), self_control=options.regulator_self_control)
    return circuit, attachments


def _single_phase_of(bus_names: list[str]) -> int | None:
    """Phase (1-3) of a single-phase element from its first terminal's bus spec, else None."""
    for spec in bus_names:
        _, _, nodes = spec.partition(".")
        parts = [p for p in nodes.split(".") if p]
        if len(parts) == 1 and parts[0] in ("1", "2", "3"):
            return int(parts[0])
        return None
    return None
