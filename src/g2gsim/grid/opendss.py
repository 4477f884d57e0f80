"""The OpenDSS grid process: a three-phase unbalanced power flow per grid step (SPEC 4).

One :class:`OpenDSSGrid` owns one private OpenDSS engine. At reset it compiles its feeder,
attaches datacenters, generators, external loads and batteries, sets the source voltage and
the initial taps, and precomputes everything that does not depend on the run's state (the
voltage-vector layout, the index array into ``AllBusMagPu``, every profile at every step).
Each step then costs one batched element-API write of every attached load's kW and kvar (no
``Text.Command``, no Y-matrix rebuild), one solve and one bulk voltage read.

The sequence of OpenDSS commands and solves follows OpenG2G's grid (three single-phase
constant-PQ loads per site, generators as negative loads, Mode=Time at the grid period,
controls off, taps on the regulators' transformer windings, the same solve before the first
step), so the two reproduce each other's voltages on the same inputs. That matters beyond
bookkeeping: OpenDSS stops iterating at its convergence tolerance (1e-4), so a different
sequence of solves lands on a slightly different point (a few 1e-5 pu).

Screening sweeps may opt in to reusing the compiled circuit (``reuse_circuit=True``, set by
:func:`g2gsim.studies.screening.run_screening`): when the engine's circuit was compiled and
attached by an earlier run with the same structure (:func:`circuit_structure_key`), reset
writes back a snapshot of every run-mutable value taken right after that compile, re-issues
the solution settings and ``Init`` (so the first solve starts, as after a compile, from a
direct solve rather than from the last run's solution), and skips the compile and the
attachments. The sequence of solves is then the same as on a fresh circuit and the results
are bit-identical (tested). Without the opt-in, every reset compiles, as always.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from g2gsim.datacenter.base import Datacenter
from g2gsim.datacenter.state import DatacenterState
from g2gsim.grid.base import Grid
from g2gsim.grid.commands import ResolveGrid, SetStoragePower, SetTaps
from g2gsim.grid.config import GridConfig, StorageSpec, tan_phi
from g2gsim.grid.engine import DSSEngine
from g2gsim.grid.errors import GridError
from g2gsim.grid.feeders import Feeder, load_feeder
from g2gsim.grid.state import GridState, VoltageIndex
from g2gsim.kernel.commands import Command
from g2gsim.kernel.context import RunContext
from g2gsim.kernel.mailbox import Mailbox, QueueMailbox

_PHASES = (1, 2, 3)
_PHASE_LETTERS = ("a", "b", "c")
#: Tolerance on storage ratings and tap limits (rounding of user numbers).
_RATING_TOLERANCE = 1e-9
#: OpenDSS Storage variables read back after each solve.
_STORAGE_VARIABLES = ("kWh", "kWOut", "kWIn", "kvarOut")
_STORAGE_COLUMNS = ("kwh", "soc", "kw", "kvar")
_NO_STORAGE: Mapping[str, Mapping[str, float]] = MappingProxyType({})


def _phase_kw(power_w: Any) -> tuple[Any, Any, Any]:
    """kW of phases a, b, c from a site power sample in W.

    A float64 array goes through Python floats (the same IEEE arithmetic as NumPy scalars,
    at a fraction of the cost); anything else keeps its own scalar arithmetic.
    """
    if isinstance(power_w, np.ndarray) and power_w.dtype == np.float64:
        w_a, w_b, w_c = power_w[:3].tolist()
        return w_a / 1e3, w_b / 1e3, w_c / 1e3
    return power_w[0] / 1e3, power_w[1] / 1e3, power_w[2] / 1e3


# -- small records built at reset -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Regulator:
    """A regulator control and the transformer winding whose tap it drives."""

    control: str
    transformer: str
    winding: int
    phase: int | None
    min_tap: float
    max_tap: float


@dataclass(slots=True)
class _Site:
    """A datacenter attachment as solved: its three load indices and reactive ratio."""

    name: str
    bus: str
    load_indices: tuple[int, int, int]
    tan_phi: float = 0.0
    mailbox: Mailbox[DatacenterState] | None = None
    queue: QueueMailbox[DatacenterState] | None = None
    power_w: np.ndarray | None = None  # per-phase power of the last solve, W
    slot: int = 0  # position of its phase-a load in the per-step load batch


@dataclass(slots=True)
class _Storage:
    """A battery: its spec, the commanded set-point, and whether OpenDSS has it yet."""

    spec: StorageSpec
    kw: float = 0.0
    kvar: float = 0.0
    pending: bool = False
    variable_rows: tuple[int, ...] = ()


#: Load indices of the generator and external-load attachments, as attached.
_Attached = tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]


# -- the component ----------------------------------------------------------------------------
class OpenDSSGrid(Grid):
    """A distribution feeder solved by OpenDSS, coupled to datacenter components (SPEC 4).

    Publishes a :class:`GridState` in mailbox ``state`` after every solve. Commands: SetTaps,
    SetStoragePower and ResolveGrid. Services for controllers: :meth:`estimate_sensitivity`,
    :meth:`resolve_now`, :attr:`voltage_index`, :meth:`site_bus`, :attr:`regulators`.
    `reuse_circuit` (off by default) lets :meth:`reset` reuse the engine's compiled circuit.
    """

    def __init__(self, name: str, config: GridConfig, *, seed: int | None = None, reuse_circuit: bool = False) -> None:
        super().__init__(name, config.period_s, seed=seed)
        self.config = config
        #: Opt-in (screening): reuse the engine's compiled circuit when a previous run on the
        #: same engine compiled and attached the same structure (see :meth:`reset`).
        self.reuse_circuit = bool(reuse_circuit)
        #: Whether the last reset reused a compiled circuit instead of compiling.
        self.circuit_reused = False
        self.feeder: Feeder = load_feeder(config.feeder)
        excluded = config.excluded_buses
        if excluded is None:
            excluded = tuple(self.feeder.excluded_buses)
        self.excluded_buses: frozenset[str] = frozenset(b.lower() for b in excluded)
        self._site_buses: dict[str, str] = {s.site: s.bus.lower() for s in config.sites}
        self._engine: DSSEngine | None = None
        self._circuit: _Circuit | None = None
        self._loads: _LoadBatch | None = None
        self._clear_run_state()

    # -- declarations ---------------------------------------------------------------------
    def dependencies(self) -> Mapping[str, type]:
        """Every attached datacenter must be a Datacenter component of the run."""
        return {site: Datacenter for site in self._site_buses}

    @property
    def voltage_index(self) -> VoltageIndex:
        """Layout of the voltage vector (built at reset)."""
        if self._index is None:
            raise RuntimeError(f"grid {self.name!r}: the voltage index exists once the run is reset")
        return self._index

    @property
    def sites(self) -> Mapping[str, str]:
        """Attached datacenter name -> bus."""
        return MappingProxyType(self._site_buses)

    def site_bus(self, site: str) -> str:
        """Bus a datacenter is attached to."""
        try:
            return self._site_buses[site]
        except KeyError:
            raise KeyError(
                f"grid {self.name!r} has no datacenter {site!r}; sites: {sorted(self._site_buses)}"
            ) from None

    @property
    def regulators(self) -> tuple[Regulator, ...]:
        """Regulator controls of the compiled feeder (built at reset)."""
        return tuple(self._regulators.values())

    @property
    def circuit(self) -> _Circuit:
        """OpenDSS calls beyond the engine's core, bound to this run's compiled circuit."""
        if self._circuit is None:
            raise RuntimeError(f"grid {self.name!r} has no circuit before its first reset")
        return self._circuit

    @property
    def engine(self) -> DSSEngine:
        """This grid's private OpenDSS engine (for topology and diagnostics)."""
        if self._engine is None:
            raise RuntimeError(f"grid {self.name!r} has no engine before its first reset")
        return self._engine

    def topology(self) -> Any:
        """The compiled feeder as a graph (:class:`~g2gsim.grid.topology.FeederTopology`)."""
        from g2gsim.grid.topology import FeederTopology

        return FeederTopology.from_grid(self)

    def storage_names(self) -> tuple[str, ...]:
        """Names of attached batteries."""
        return tuple(s.name for s in self.config.storage)

    def storage_spec(self, name: str) -> StorageSpec:
        """A battery's spec (ratings, bus) by name, case-insensitive."""
        return self._storage_by_name(name).spec

    # -- lifecycle ----------------------------------------------------------------------------
    def _clear_run_state(self) -> None:
        self._index: VoltageIndex | None = None
        self._vmag_rows = np.zeros(0, dtype=np.intp)
        self._regulators: dict[str, Regulator] = {}
        self._phase_regulators: dict[int, list[str]] = {}
        self._taps: dict[str, float] = {}
        self._taps_view: Mapping[str, float] = MappingProxyType({})
        self._tap_row = np.zeros(0)
        self._sites: list[_Site] = []
        self._injection_kw = np.zeros((0, 0))  # (n_steps, 3 per injection), signed as written
        self._injection_kvar = np.zeros((0, 0))
        self._storage: list[_Storage] = []
        self._box: Mailbox[GridState] | None = None
        self._period_ticks = 1
        self._n_steps = 0
        self._rows = 0
        self._last_step_tick = -1
        self._step_index = -1
        self._self_control = self.config.regulator_self_control
        self._site_kw = np.zeros(0)
        self._n_solves = 0
        self._n_steps_done = 0
        self._n_resolves = 0
        self._n_sensitivity = 0
        self._solve_s = 0.0

    def reset(self, ctx: RunContext) -> None:
        """Build the circuit for a new run: compile, attach, set taps, lay out buffers.

        With :attr:`reuse_circuit` (opt-in, for screening sweeps) and an engine whose circuit
        a previous run compiled and attached with the same structure
        (:func:`circuit_structure_key`), the compile and the attachments are skipped: every
        run-mutable value is put back as it was right after that first compile (a
        :class:`_CircuitSnapshot`), OpenDSS is told to initialise its next solve from scratch
        (``Init``), and the run continues exactly as after a compile. Otherwise, or when the
        circuit holds elements whose run-time state the snapshot cannot restore, it compiles.
        """
        super().reset(ctx)
        self._clear_run_state()
        if self._engine is None:
            self._engine = DSSEngine()
        if self._loads is not None:
            self._loads.close()
            self._loads = None
        engine = self._engine
        key = circuit_structure_key(self.feeder, self.config) if self.reuse_circuit else None
        attached = self._reuse_compiled_circuit(engine, key) if key is not None else None
        self.circuit_reused = attached is not None
        if attached is None:
            attached = self._compile_and_attach(engine, key)
        generators, loads = attached
        # what only depends on the structure is kept with a reused circuit's snapshot
        snapshot = engine.circuit_snapshot if key is not None else None
        if snapshot is not None and snapshot.regulators is not None:
            self._regulators = dict(snapshot.regulators)
        else:
            self._regulators = self._discover_regulators()
            if snapshot is not None:
                snapshot.regulators = dict(self._regulators)
        self._phase_regulators = self._regulators_by_phase()
        if self.config.initial_taps:
            self._apply_taps(self.config.initial_taps, when="initial taps")
        self._taps = self._read_taps()
        self._taps_changed()
        self._solve(0.0)
        cached = None if snapshot is None else snapshot.voltage_indexes.get(self.excluded_buses)
        if cached is None:
            cached = self._build_voltage_index()
            if snapshot is not None:
                snapshot.voltage_indexes[self.excluded_buses] = cached
        self._index, self._vmag_rows = cached
        self._period_ticks = ctx.clock.ticks(self.period)
        self._n_steps = ctx.step_count(self.period)
        self._injection_kw, self._injection_kvar = self._precompute_injections()
        indices = [i for site in self._sites for i in site.load_indices]
        indices += [i for attachment in (*generators, *loads) for i in attachment]
        self._loads = _LoadBatch(engine, indices)
        self._site_kw = self._loads.kw[: 3 * len(self._sites)]  # view: the sites' kW as written
        self._allocate_buffers()
        self._box = ctx.mailbox("state")

    def _compile_and_attach(self, engine: DSSEngine, key: tuple[Any, ...] | None) -> _Attached:
        """Compile the feeder, attach sites, generators, loads and storage, configure solving.

        With a structure `key` (circuit reuse on), leave a snapshot of the circuit as it is now
        (before initial taps and the first solve) with the engine for later runs.
        """
        engine.compile_feeder(self.feeder)
        self._circuit = _Circuit(engine, self.feeder.name)
        if self.config.source_pu is not None:
            engine.run(f"Edit Vsource.source pu={self.config.source_pu}")
        self._sites = [self._attach_site(i, a.site, a.bus, a.connection) for i, a in enumerate(self.config.sites)]
        generators = [self._attach_injection(f"g2g_gen{i}", g.bus) for i, g in enumerate(self.config.generators)]
        loads = [self._attach_injection(f"g2g_load{i}", ld.bus) for i, ld in enumerate(self.config.loads)]
        self._storage = [self._attach_storage(spec) for spec in self.config.storage]
        self._configure_solution()
        if key is not None:
            engine.circuit_snapshot = _CircuitSnapshot.take(
                key,
                self.circuit,
                sites=[s.load_indices for s in self._sites],
                generators=generators,
                loads=loads,
                storage=[(s.spec.name, _storage_run_state(s.spec), s.variable_rows) for s in self._storage],
            )
        return generators, loads

    def _reuse_compiled_circuit(self, engine: DSSEngine, key: tuple[Any, ...]) -> _Attached | None:
        """Put the engine's circuit back to its just-compiled state if its structure is `key`.

        Returns the generator and load attachments as :meth:`_compile_and_attach` does, or
        None (nothing touched) when the circuit cannot be reused and must be compiled.
        """
        snapshot = engine.circuit_snapshot
        if not isinstance(snapshot, _CircuitSnapshot) or snapshot.key != key or snapshot.unrestorable:
            return None
        circuit = _Circuit(engine, self.feeder.name)
        if not snapshot.still_describes(circuit) or not snapshot.restore(circuit):
            return None
        self._circuit = circuit
        self._sites = [
            _Site(name=a.site, bus=a.bus.lower(), load_indices=indices, slot=3 * i)
            for i, (a, indices) in enumerate(zip(self.config.sites, snapshot.sites, strict=True))
        ]
        self._storage = [
            _Storage(spec=spec, variable_rows=rows)
            for spec, (_, _, rows) in zip(self.config.storage, snapshot.storage, strict=True)
        ]
        self._configure_solution()
        circuit.reinitialize_solution()
        return list(snapshot.generators), list(snapshot.loads)

    def start(self) -> None:
        """Subscribe to every attached datacenter's state and fix each site's power factor."""
        ctx = self.ctx
        pf_override = {a.site: a.power_factor for a in self.config.sites}
        for site in self._sites:
            datacenter = ctx.lookup(site.name)
            pf = pf_override[site.name]
            if pf is None:
                if not isinstance(datacenter, Datacenter):
                    raise TypeError(
                        f"grid {self.name!r}: site {site.name!r} is a {type(datacenter).__name__}, not a Datacenter"
                    )
                pf = datacenter.power_factor
            site.tan_phi = tan_phi(pf)
            if self.config.coupling == "mean":
                site.queue = ctx.subscribe(site.name, queue=True)
            site.mailbox = ctx.subscribe(site.name)

    def step(self, tick: int) -> None:
        """One grid step: commands, datacenter power, profiles, one solve, publish, record."""
        time_s = self.ctx.seconds(tick)
        k = tick // self._period_ticks
        self._step_index = k
        self._apply_commands(self.take_commands(), time_s)
        self._write_loads(k, time_s)
        self._write_storage()
        self._solve(time_s)
        voltages = self._read_vector()
        self._finish_storage_step()
        self._last_step_tick = tick
        self._n_steps_done += 1
        self._publish(tick, time_s, voltages)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Recorded rows so far: voltages (wide), taps (wide), storage (long), site power (long)."""
        if self._index is None:
            return {}
        n = self._rows
        times = self._times[:n]
        # A view of the recording buffer, not a copy (rows before n are never written again):
        # at one row per step the voltage table is the largest table of a run.
        voltages = pd.DataFrame(self._voltages[:n], columns=self._index.labels(), copy=False)
        voltages.insert(0, "time_s", times)
        taps = pd.DataFrame(self._tap_buffer[:n], columns=list(self._regulators))
        taps.insert(0, "time_s", times)
        out = {"voltages": voltages, "taps": taps, "site_power": self._site_power_table(n)}
        if self._storage:
            out["storage"] = self._storage_table(n)
        return out

    def summary(self) -> dict[str, Any]:
        """Solve counts and time spent in OpenDSS solves."""
        return {
            "n_solves": self._n_solves,
            "n_steps": self._n_steps_done,
            "n_resolves": self._n_resolves,
            "n_sensitivity_estimates": self._n_sensitivity,
            "solve_s": self._solve_s,
            "feeder": self.feeder.name,
            "n_voltages": 0 if self._index is None else len(self._index),
        }

    # -- commands -----------------------------------------------------------------------------
    def deliver(self, command: Command) -> None:
        """Queue a command; ResolveGrid and SetTaps(resolve=True) re-solve at once when due.

        When the grid still has its own step to run at this tick, that step applies the
        command; otherwise (it already solved, or is not due now) the grid re-solves here so
        that later controllers of the same tick see the effect.
        """
        super().deliver(command)
        wants_resolve = isinstance(command, ResolveGrid) or (isinstance(command, SetTaps) and command.resolve)
        if wants_resolve and self._last_step_tick >= 0 and not self._step_pending_now():
            self.resolve_now()

    def _step_pending_now(self) -> bool:
        now = self.ctx.now
        return (
            now % self._period_ticks == 0 and now // self._period_ticks < self._n_steps and now != self._last_step_tick
        )

    def resolve_now(self) -> None:
        """Apply pending commands, solve again with the present loads, publish (same time)."""
        if self._last_step_tick < 0:
            raise RuntimeError(f"grid {self.name!r} cannot re-solve before its first step")
        ctx = self.ctx
        time_s = ctx.now_s
        self._apply_commands(self.take_commands(), time_s)
        self._write_storage()
        self._solve(time_s)
        voltages = self._read_vector()
        self._n_resolves += 1
        self._publish(ctx.now, time_s, voltages, record=ctx.now == self._last_step_tick)

    def _apply_commands(self, commands: list[Command], time_s: float) -> None:
        for command in commands:
            if isinstance(command, SetTaps):
                self._apply_taps(command.taps, when=f"t = {time_s:g} s")
                self.ctx.event("taps", {k: float(v) for k, v in command.taps.items()})
            elif isinstance(command, SetStoragePower):
                self._set_storage_power(command, time_s)
            elif isinstance(command, ResolveGrid):
                continue  # this solve is the re-solve
            else:
                raise self.reject(command)

    # -- attachments ----------------------------------------------------------------------------
    def _bus_kv_ln(self, bus: str) -> float:
        """Line-to-neutral base kV of a bus; an error naming the feeder if the bus is unknown."""
        kv = self.circuit.bus_kv_base(bus)
        if not kv > 0.0:
            raise GridError(f"feeder {self.feeder.name!r}: bus {bus!r} has no voltage base (kVBase = {kv})")
        return kv

    def _new_phase_loads(self, prefix: str, bus: str, connection: str) -> tuple[int, int, int]:
        """Three single-phase constant-PQ loads (model=1) at `bus`, one per phase; their indices."""
        kv = self._bus_kv_ln(bus)
        if connection == "delta":
            kv *= math.sqrt(3.0)
        names = tuple(f"{prefix}_{letter}" for letter in _PHASE_LETTERS)
        for phase, load in zip(_PHASES, names, strict=True):
            self.engine.run(
                f"New Load.{load} bus1={bus}.{phase} phases=1 conn={connection} kV={kv:.6f} kW=0 kvar=0 model=1"
            )
        return tuple(self.engine.load_index(load) for load in names)  # type: ignore[return-value]

    def _attach_site(self, i: int, site: str, bus: str, connection: str) -> _Site:
        self._require_three_phase(bus, f"datacenter {site!r}")
        indices = self._new_phase_loads(f"g2g_dc{i}", bus, connection)
        return _Site(name=site, bus=bus.lower(), load_indices=indices, slot=3 * i)

    def _attach_injection(self, prefix: str, bus: str) -> tuple[int, int, int]:
        self._require_three_phase(bus, prefix)
        return self._new_phase_loads(prefix, bus, "wye")

    def _attach_storage(self, spec: StorageSpec) -> _Storage:
        """A native OpenDSS Storage element, dispatched externally, idle at first."""
        self._require_three_phase(spec.bus, f"storage {spec.name!r}")
        kv_ll = self._bus_kv_ln(spec.bus) * math.sqrt(3.0)
        self.engine.run(
            f"New Storage.{spec.name} bus1={spec.bus}.1.2.3 phases=3 conn={spec.connection} "
            f"kV={kv_ll:.6f} kVA={spec.kva:.6f} kWRated={spec.rated_kw:.6f} kWhRated={spec.rated_kwh:.6f} "
            f"kWhStored={spec.rated_kwh * spec.initial_soc:.6f} %Reserve={spec.reserve_soc * 100.0:.6f} "
            f"%EffCharge={spec.charge_efficiency * 100.0:.6f} %EffDischarge={spec.discharge_efficiency * 100.0:.6f} "
            f"%IdlingkW={spec.idling_loss_percent:.6f} DispMode=EXTERNAL State=IDLING kW=0 kvar=0"
        )
        names = self.circuit.storage_variable_names(spec.name)
        rows = tuple(names.index(v) for v in _STORAGE_VARIABLES)
        return _Storage(spec=spec, variable_rows=rows)

    def _require_three_phase(self, bus: str, what: str) -> None:
        phases = self.circuit.bus_phases(bus)
        if phases is None:
            raise GridError(f"feeder {self.feeder.name!r}: {what} is attached to unknown bus {bus!r}")
        if not set(_PHASES) <= set(phases):
            raise GridError(
                f"feeder {self.feeder.name!r}: {what} needs a three-phase bus; bus {bus!r} has phases {sorted(phases)}"
            )

    def _configure_solution(self) -> None:
        """Time mode at the grid period; OpenDSS controls off unless self-control is asked for."""
        engine = self.engine
        engine.run("Reset")
        engine.run("Set Mode=Time")
        engine.run(f"Set Stepsize={float(self.period)}s")
        engine.run("Set ControlMode=Time" if self.config.regulator_self_control else "Set ControlMode=Off")

    def _step_times(self) -> np.ndarray:
        """Time (s) of every grid step of the run, each correctly rounded from exact ticks."""
        return np.array([self.ctx.seconds(k * self._period_ticks) for k in range(self._n_steps)], dtype=float)

    def _precompute_injections(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-phase kW and kvar of every generator and external load at every grid step.

        Columns are three per attachment (phases a, b, c: a third of the profile's total
        each), generators negative (injection), in attachment order, as written to OpenDSS.
        """
        times = self._step_times()
        attachments = [(g, -1.0) for g in self.config.generators] + [(ld, 1.0) for ld in self.config.loads]
        kw = np.zeros((self._n_steps, 3 * len(attachments)))
        kvar = np.zeros_like(kw)
        for j, (spec, sign) in enumerate(attachments):
            per_phase = sign * np.asarray(spec.profile.power_kw(times), dtype=float) / 3.0
            if per_phase.shape != times.shape or not np.isfinite(per_phase).all():
                raise ValueError(
                    f"grid {self.name!r}: the profile of {spec.name!r} gives non-finite or misshaped power"
                )
            kw[:, 3 * j : 3 * j + 3] = per_phase[:, None]
            kvar[:, 3 * j : 3 * j + 3] = (per_phase * tan_phi(spec.power_factor))[:, None]
        return kw, kvar

    # -- regulators -----------------------------------------------------------------------------
    def _discover_regulators(self) -> dict[str, Regulator]:
        return {r.control: r for r in self.circuit.regulators()}

    def _regulators_by_phase(self) -> dict[int, list[str]]:
        by_phase: dict[int, list[str]] = {}
        for reg in self._regulators.values():
            if reg.phase is not None:
                by_phase.setdefault(reg.phase, []).append(reg.control)
        return by_phase

    def resolve_tap_key(self, key: str) -> str:
        """Regulator-control name for a tap key: a control name, or a unique phase shorthand."""
        lowered = key.lower()
        if lowered in self._regulators:
            return lowered
        if lowered in _PHASE_LETTERS:
            phase = _PHASE_LETTERS.index(lowered) + 1
            controls = self._phase_regulators.get(phase, [])
            if len(controls) == 1:
                return controls[0]
            if not controls:
                raise KeyError(
                    f"feeder {self.feeder.name!r}: no regulator serves phase {lowered!r}; regulators: {sorted(self._regulators)}"
                )
            raise KeyError(
                f"feeder {self.feeder.name!r}: phase shorthand {lowered!r} is ambiguous, regulators "
                f"{sorted(controls)} all serve phase {lowered}; use their names"
            )
        raise KeyError(
            f"feeder {self.feeder.name!r} has no regulator control {key!r}; regulators: {sorted(self._regulators)}"
        )

    def _apply_taps(self, taps: Mapping[str, float], *, when: str) -> None:
        """Write tap ratios to the regulators' transformer windings (element API)."""
        resolved = {self.resolve_tap_key(key): float(ratio) for key, ratio in taps.items()}
        for control, ratio in resolved.items():
            reg = self._regulators[control]
            if not reg.min_tap - _RATING_TOLERANCE <= ratio <= reg.max_tap + _RATING_TOLERANCE:
                if self.config.tap_limits == "enforce":
                    raise ValueError(
                        f"feeder {self.feeder.name!r}, {when}: tap {ratio} pu for {control!r} is outside "
                        f'[{reg.min_tap}, {reg.max_tap}] (set tap_limits = "allow" to apply it as OpenDSS would)'
                    )
                if self._ctx is not None:
                    self.ctx.event(
                        "tap_outside_rating",
                        {"regulator": control, "tap_pu": ratio, "min_tap": reg.min_tap, "max_tap": reg.max_tap},
                    )
        for control, ratio in resolved.items():
            reg = self._regulators[control]
            self.circuit.set_tap(reg.transformer, reg.winding, ratio)
            self._taps[control] = ratio
        self._taps_changed()

    def _taps_changed(self) -> None:
        """Refresh the immutable view published in GridState and the row recorded per step."""
        self._taps_view = MappingProxyType(dict(self._taps))
        self._tap_row = np.array([self._taps.get(c, np.nan) for c in self._regulators], dtype=float)

    def _read_taps(self) -> dict[str, float]:
        return {r.control: self.circuit.tap(r.transformer, r.winding) for r in self._regulators.values()}

    # -- storage -------------------------------------------------------------------------------
    def _storage_by_name(self, name: str) -> _Storage:
        lowered = name.lower()
        for storage in self._storage:
            if storage.spec.name.lower() == lowered:
                return storage
        known = [s.name for s in self.config.storage]
        raise KeyError(f"grid {self.name!r} has no storage {name!r}; storage: {known}")

    def _set_storage_power(self, command: SetStoragePower, time_s: float) -> None:
        """Check a dispatch against the ratings and keep it for the next solve."""
        storage = self._storage_by_name(command.storage)
        spec = storage.spec
        kw, kvar = float(command.kw), float(command.kvar)
        if not (math.isfinite(kw) and math.isfinite(kvar)):
            raise ValueError(
                f"grid {self.name!r}, t = {time_s:g} s: storage {spec.name!r} dispatch must be finite, got {kw} kW, {kvar} kvar"
            )
        if abs(kw) > spec.rated_kw + _RATING_TOLERANCE:
            raise ValueError(
                f"grid {self.name!r}, t = {time_s:g} s: storage {spec.name!r} asked for {kw:g} kW, "
                f"beyond its rating of {spec.rated_kw:g} kW"
            )
        apparent = math.hypot(kw, kvar)
        if apparent > spec.kva + _RATING_TOLERANCE:
            raise ValueError(
                f"grid {self.name!r}, t = {time_s:g} s: storage {spec.name!r} asked for {apparent:g} kVA "
                f"({kw:g} kW, {kvar:g} kvar), beyond its rating of {spec.kva:g} kVA"
            )
        storage.kw, storage.kvar, storage.pending = kw, kvar, True
        self.ctx.event("storage_power", {"storage": spec.name, "kw": kw, "kvar": kvar})

    def _write_storage(self) -> None:
        """Hand changed set-points to OpenDSS (only when a command changed them)."""
        for storage in self._storage:
            if storage.pending:
                self.circuit.set_storage_power(storage.spec.name, storage.kw, storage.kvar)
                storage.pending = False

    def _finish_storage_step(self) -> None:
        """Advance the batteries' energy over one period (OpenDSS's own bookkeeping)."""
        if self._storage and not self.config.regulator_self_control:
            self.circuit.finish_time_step()

    def _storage_states(self) -> dict[str, Mapping[str, float]]:
        states: dict[str, Mapping[str, float]] = {}
        for storage in self._storage:
            values = self.circuit.storage_variables(storage.spec.name)
            kwh, kw_out, kw_in, kvar_out = (values[i] for i in storage.variable_rows)
            states[storage.spec.name] = MappingProxyType(
                {"kwh": kwh, "soc": kwh / storage.spec.rated_kwh, "kw": kw_out - kw_in, "kvar": kvar_out}
            )
        return states

    # -- the per-step path -------------------------------------------------------------------
    def _site_power_w(self, site: _Site, time_s: float) -> np.ndarray:
        """Three-phase power (W) of a site for this solve: latest sample or window mean."""
        if site.queue is not None:
            samples = site.queue.drain()
            if samples:
                stacked = np.stack([value.power_w for _, value in samples])
                return stacked.mean(axis=0)
            if site.power_w is not None:
                return site.power_w
        elif site.mailbox is not None and site.mailbox.has_value:
            return site.mailbox.value.power_w
        raise RuntimeError(
            f"grid {self.name!r} (feeder {self.feeder.name!r}) must solve at t = {time_s:g} s but datacenter "
            f"{site.name!r} has published no power yet; give the datacenter a period that divides the "
            f"grid's first step time, or start the grid later"
        )

    def _write_loads(self, k: int, time_s: float) -> None:
        """Every attached load's kW/kvar for step k: datacenter samples, then profiles."""
        loads = self._loads
        assert loads is not None
        kw, kvar = loads.kw, loads.kvar
        for site in self._sites:
            power_w = self._site_power_w(site, time_s)
            kw_a, kw_b, kw_c = _phase_kw(power_w)
            if not math.isfinite(kw_a + kw_b + kw_c):
                raise ValueError(
                    f"grid {self.name!r}, t = {time_s:g} s: datacenter {site.name!r} power is not finite: {power_w} W"
                )
            tphi = site.tan_phi
            j = site.slot
            # element by element: a third of the cost of a slice assignment from a tuple
            kw[j], kw[j + 1], kw[j + 2] = kw_a, kw_b, kw_c
            kvar[j], kvar[j + 1], kvar[j + 2] = kw_a * tphi, kw_b * tphi, kw_c * tphi
            site.power_w = power_w
        if self._injection_kw.shape[1]:
            start = 3 * len(self._sites)
            kw[start:] = self._injection_kw[k]
            kvar[start:] = self._injection_kvar[k]
        loads.write()

    def _solve(self, time_s: float) -> None:
        """One power flow: SolveNoControl, or OpenDSS's own control loop when self-control is on."""
        start = time.perf_counter()
        if self._self_control:
            self.circuit.solve_with_controls(time_s)
        else:
            self.engine.solve(time_s)
        self._solve_s += time.perf_counter() - start
        self._n_solves += 1

    def _read_vector(self) -> np.ndarray:
        """The voltage vector (pu) in VoltageIndex order, from one AllBusMagPu read."""
        return self.engine.bus_mag_pu_view()[self._vmag_rows]

    def _publish(self, tick: int, time_s: float, voltages: np.ndarray, *, record: bool = True) -> None:
        """Publish a GridState in mailbox ``state`` and, for a step, record it."""
        if self._self_control:
            taps = self._read_taps()
            if taps != self._taps:
                self._taps = taps
                self._taps_changed()
        storage = self._storage_states() if self._storage else _NO_STORAGE
        state = GridState(self.name, time_s, self._index, voltages, self._taps_view, storage)  # type: ignore[arg-type]
        if record:
            self._record(time_s, state)
        self._box.publish(tick, state)  # type: ignore[union-attr]

    # -- recording -----------------------------------------------------------------------------
    def _allocate_buffers(self) -> None:
        n, m = self._n_steps, len(self.voltage_index)
        self._times = np.full(n, np.nan)
        self._voltages = np.full((n, m), np.nan)
        self._tap_buffer = np.full((n, len(self._regulators)), np.nan)
        self._site_power = np.full((n, 3 * len(self._sites)), np.nan)
        self._storage_buffer = np.full((n, len(self._storage), len(_STORAGE_COLUMNS)), np.nan)

    def _record(self, time_s: float, state: GridState) -> None:
        """Write the state of step k into row k (a re-solve at the same tick overwrites it)."""
        row = self._step_index
        self._times[row] = time_s
        self._voltages[row] = state.voltages
        if self._regulators:
            self._tap_buffer[row] = self._tap_row
        if self._sites:
            self._site_power[row] = self._site_kw
        for j, storage in enumerate(self._storage):
            values = state.storage[storage.spec.name]
            self._storage_buffer[row, j] = [values[c] for c in _STORAGE_COLUMNS]
        self._rows = row + 1

    def _site_power_table(self, n: int) -> pd.DataFrame:
        sites = [s.name for s in self._sites]
        frame = pd.DataFrame(
            {
                "time_s": np.repeat(self._times[:n], len(sites)),
                "site": np.tile(np.array(sites, dtype=object), n),
            }
        )
        flat = self._site_power[:n].reshape(n * len(sites), 3)  # rows: step-major, then site
        for j, letter in enumerate(_PHASE_LETTERS):
            frame[f"kw_{letter}"] = flat[:, j]
        return frame

    def _storage_table(self, n: int) -> pd.DataFrame:
        names = [s.spec.name for s in self._storage]
        frame = pd.DataFrame(
            {
                "time_s": np.repeat(self._times[:n], len(names)),
                "storage": np.tile(np.array(names, dtype=object), n),
            }
        )
        flat = self._storage_buffer[:n].reshape(n * len(names), len(_STORAGE_COLUMNS))
        for j, column in enumerate(_STORAGE_COLUMNS):
            frame[column] = flat[:, j]
        return frame

    # -- voltage vector ------------------------------------------------------------------------
    def _build_voltage_index(self) -> tuple[VoltageIndex, np.ndarray]:
        """Phase-major (bus, phase) entries of non-excluded buses and their AllBusMagPu rows."""
        nodes = [_split_node(n) for n in self.engine.node_names()]
        entries: list[tuple[str, int]] = []
        rows: list[int] = []
        for phase in _PHASES:
            for row, (bus, node) in enumerate(nodes):
                if node == phase and bus not in self.excluded_buses:
                    entries.append((bus, phase))
                    rows.append(row)
        if not entries:
            raise GridError(f"feeder {self.feeder.name!r}: every bus is excluded from the voltage vector")
        return VoltageIndex.from_entries(tuple(entries)), np.asarray(rows, dtype=np.intp)

    # -- services --------------------------------------------------------------------------------
    def estimate_sensitivity(self, site: str, delta_kw: float = 100.0) -> np.ndarray:
        """Finite-difference dV/dP (pu per kW) for each phase of a site's load (SPEC 4.5).

        From the present operating point: solve the base point, then for each phase j add
        `delta_kw` kW and `delta_kw` * tan(phi) kvar to that phase's load, solve, take
        (v - v0) / delta_kw as column j, and restore the load. The base point is re-solved
        at the end, so the circuit is left as found. Five solves per estimate.
        """
        if not (math.isfinite(delta_kw) and delta_kw > 0.0):
            raise ValueError(
                f"grid {self.name!r}: the sensitivity perturbation must be a positive kW value, got {delta_kw!r}"
            )
        if self._last_step_tick < 0:
            raise RuntimeError(
                f"grid {self.name!r}: sensitivity needs a solved operating point (after the first grid step)"
            )
        target = self._site_by_name(site)
        loads = self._loads
        assert loads is not None
        time_s = self.ctx.now_s
        engine = self.engine
        self._solve_without_control(time_s)
        v0 = self._read_vector()
        h = np.empty((len(v0), 3))
        dq = delta_kw * target.tan_phi
        for j, index in enumerate(target.load_indices):
            kw0, q0 = float(loads.kw[target.slot + j]), float(loads.kvar[target.slot + j])
            engine.set_load_kw_kvar(index, kw0 + delta_kw, q0 + dq)
            self._solve_without_control(time_s)
            h[:, j] = (self._read_vector() - v0) / delta_kw
            engine.set_load_kw_kvar(index, kw0, q0)
        self._solve(time_s)
        self._n_sensitivity += 1
        return h

    def _solve_without_control(self, time_s: float) -> None:
        start = time.perf_counter()
        self.engine.solve(time_s)
        self._solve_s += time.perf_counter() - start
        self._n_solves += 1

    def _site_by_name(self, name: str) -> _Site:
        for site in self._sites:
            if site.name == name:
                return site
        raise KeyError(f"grid {self.name!r} has no datacenter {name!r}; sites: {sorted(self._site_buses)}")


# -- circuit reuse (screening) -------------------------------------------------------------------
#: Element classes a reused circuit may hold: their run-time state is either restored by a
#: :class:`_CircuitSnapshot` (loads, transformer taps, capacitor states, source pu, the grid's
#: own batteries), checked by it (generator kW/kvar), reset by ``Reset`` (controls, meters,
#: monitors), or never changed by a run. A circuit with anything else (protection that can open a line,
#: inverter or storage controllers, a feeder's own batteries, ...) is always recompiled.
_RESTORABLE_CLASSES = frozenset(
    {
        "vsource",
        "isource",
        "line",
        "transformer",
        "reactor",
        "capacitor",
        "load",
        "generator",
        "regcontrol",
        "capcontrol",
        "energymeter",
        "monitor",
        "storage",
    }
)
#: At most this many files beside a user master file enter its fingerprint (by size and mtime).
_FINGERPRINT_FILE_LIMIT = 2000


def circuit_structure_key(feeder: Feeder, config: GridConfig) -> tuple[Any, ...]:
    """Everything that defines the elements of a grid's circuit, as a hashable key.

    Two grids with equal keys compile and attach the same circuit (same elements, same
    names, same indices); they may differ only in run-mutable values (initial taps, profiles,
    power factors, the datacenters themselves, excluded buses, coupling, tap limits). The
    feeder enters by its OpenDSS commands and, for a user ``.dss`` master file, a hash of
    that file and the size and modification time of the files in its folder (files
    redirected from other folders, subfolders included, are not tracked).
    """
    return (
        _feeder_fingerprint(feeder),
        config.source_pu,
        tuple((a.site, a.bus.lower(), a.connection) for a in config.sites),
        tuple(g.bus.lower() for g in config.generators),
        tuple(ld.bus.lower() for ld in config.loads),
        tuple(tuple(spec.model_dump().items()) for spec in config.storage),
        str(config.period_s),
        config.regulator_self_control,
    )


def _feeder_fingerprint(feeder: Feeder) -> tuple[str, str, str]:
    digest = hashlib.sha256()
    for command in feeder.commands:
        digest.update(command.encode())
        digest.update(b"\0")
    source = feeder.source
    if not feeder.is_bundled and source is not None and source.is_file():
        digest.update(source.read_bytes())
        siblings = sorted(p for p in source.parent.iterdir() if p.is_file())[:_FINGERPRINT_FILE_LIMIT]
        for path in siblings:
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\0".encode())
    return feeder.name, str(source), digest.hexdigest()


def _storage_run_state(spec: StorageSpec) -> str:
    """The run-mutable part of a battery's definition, as written when it is attached."""
    return f"kWhStored={spec.rated_kwh * spec.initial_soc:.6f} State=IDLING kW=0 kvar=0"


def _names(all_names: list[str]) -> list[str]:
    """OpenDSS name lists without the ``NONE`` placeholder of an empty class."""
    return [n for n in all_names if n.lower() != "none"]


@dataclass(slots=True)
class _CircuitSnapshot:
    """Run-mutable state of a freshly compiled and attached circuit, to reuse it for more runs.

    Taken after the attachments and the solution settings, before the initial taps and the
    first solve. Holds the structure key it was taken for, the attachments' load indices,
    and every value a run can change: each Load's kW and kvar (written every step, and by
    sensitivity estimates), each Transformer winding's tap (initial taps, SetTaps, OpenDSS's
    own regulator control), Capacitor states (capacitor controls), each Vsource's pu, the
    grid's batteries (dispatch and energy) and the solution time (advanced by OpenDSS's own
    time-mode solve); native Generators' kW and kvar are checked, not written (see
    :meth:`restore`). :meth:`restore` writes back only what differs, through the same
    element API the run used (batteries through ``Edit``). It also keeps what depends on the
    structure only: the regulators and the voltage-vector layout (per set of excluded buses).
    """

    key: tuple[Any, ...]
    n_elements: int
    n_nodes: int
    sites: tuple[tuple[int, int, int], ...]
    generators: tuple[tuple[int, int, int], ...]
    loads: tuple[tuple[int, int, int], ...]
    storage: tuple[tuple[str, str, tuple[int, ...]], ...]  # name, run-state text, variable rows
    load_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    load_kvar: np.ndarray = field(default_factory=lambda: np.zeros(0))
    taps: tuple[tuple[str, int, float], ...] = ()
    capacitors: tuple[tuple[str, tuple[int, ...]], ...] = ()
    vsources: tuple[tuple[str, float], ...] = ()
    native_generators: tuple[tuple[str, float, float], ...] = ()
    hour: int = 0
    seconds: float = 0.0
    unrestorable: str | None = None  # why this circuit cannot be reused (None: it can)
    # filled by the first run: structure-only results, reused as they are
    regulators: dict[str, Regulator] | None = None
    voltage_indexes: dict[frozenset[str], tuple[VoltageIndex, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def take(
        cls,
        key: tuple[Any, ...],
        circuit: _Circuit,
        *,
        sites: list[tuple[int, int, int]],
        generators: list[tuple[int, int, int]],
        loads: list[tuple[int, int, int]],
        storage: list[tuple[str, str, tuple[int, ...]]],
    ) -> _CircuitSnapshot:
        dss = circuit.dss
        ours = {name.lower() for name, _, _ in storage}
        unrestorable = None
        for element in dss.Circuit.AllElementNames():
            kind, _, name = element.lower().partition(".")
            if kind not in _RESTORABLE_CLASSES or (kind == "storage" and name not in ours):
                unrestorable = f"{element} (its run-time state is not restored)"
                break
        n_loads = int(dss.Loads.Count())
        load_kw, load_kvar = np.zeros(n_loads), np.zeros(n_loads)
        for i in range(n_loads):
            dss.Loads.Idx(i + 1)
            load_kw[i], load_kvar[i] = dss.Loads.kW(), dss.Loads.kvar()
        return cls(
            key=key,
            n_elements=int(dss.Circuit.NumCktElements()),
            n_nodes=int(dss.Circuit.NumNodes()),
            sites=tuple(sites),
            generators=tuple(generators),
            loads=tuple(loads),
            storage=tuple(storage),
            load_kw=load_kw,
            load_kvar=load_kvar,
            taps=tuple(_transformer_taps(dss)),
            capacitors=tuple(_capacitor_states(dss)),
            vsources=tuple(_vsource_pu(dss)),
            native_generators=tuple(_generator_powers(dss)),
            hour=int(dss.Solution.Hour()),
            seconds=float(dss.Solution.Seconds()),
            unrestorable=unrestorable,
        )

    def still_describes(self, circuit: _Circuit) -> bool:
        """A cheap check that the engine still holds the circuit this snapshot was taken of."""
        dss = circuit.dss
        return (
            int(dss.Basic.NumCircuits()) > 0
            and int(dss.Circuit.NumCktElements()) == self.n_elements
            and int(dss.Circuit.NumNodes()) == self.n_nodes
            and int(dss.Loads.Count()) == len(self.load_kw)
        )

    def restore(self, circuit: _Circuit) -> bool:
        """Write every run-mutable value back to its snapshot value (only those that differ).

        Returns False, having changed nothing, when a value cannot be written back exactly:
        a native Generator's kW or kvar (its getters return derived values that do not
        round-trip through its setters; no run writes them, but other code could).
        """
        dss = circuit.dss
        if _generator_powers(dss) != list(self.native_generators):
            return False
        loads = dss.Loads
        for i, (kw, kvar) in enumerate(zip(self.load_kw, self.load_kvar, strict=True)):
            loads.Idx(i + 1)
            if loads.kW() != kw:
                loads.kW(kw)
            if loads.kvar() != kvar:
                loads.kvar(kvar)
        transformers = dss.Transformers
        for name, winding, tap in self.taps:
            transformers.Name(name)
            transformers.Wdg(winding)
            if transformers.Tap() != tap:
                transformers.Tap(tap)
        for name, states in self.capacitors:
            dss.Capacitors.Name(name)
            if tuple(dss.Capacitors.States()) != states:
                dss.Capacitors.States(list(states))
        for name, pu in self.vsources:
            dss.Vsources.Name(name)
            if dss.Vsources.PU() != pu:
                dss.Vsources.PU(pu)
        for name, state, _ in self.storage:
            circuit.engine.run(f"Edit Storage.{name} {state}")
        if int(dss.Solution.Hour()) != self.hour:
            dss.Solution.Hour(self.hour)
        if float(dss.Solution.Seconds()) != self.seconds:
            dss.Solution.Seconds(self.seconds)
        return True


def _transformer_taps(dss: Any) -> list[tuple[str, int, float]]:
    taps = []
    for name in _names(dss.Transformers.AllNames()):
        dss.Transformers.Name(name)
        for winding in range(1, int(dss.Transformers.NumWindings()) + 1):
            dss.Transformers.Wdg(winding)
            taps.append((name, winding, float(dss.Transformers.Tap())))
    return taps


def _capacitor_states(dss: Any) -> list[tuple[str, tuple[int, ...]]]:
    states = []
    for name in _names(dss.Capacitors.AllNames()):
        dss.Capacitors.Name(name)
        states.append((name, tuple(int(x) for x in dss.Capacitors.States())))
    return states


def _vsource_pu(dss: Any) -> list[tuple[str, float]]:
    values = []
    for name in _names(dss.Vsources.AllNames()):
        dss.Vsources.Name(name)
        values.append((name, float(dss.Vsources.PU())))
    return values


def _generator_powers(dss: Any) -> list[tuple[str, float, float]]:
    values = []
    for name in _names(dss.Generators.AllNames()):
        dss.Generators.Name(name)
        values.append((name, float(dss.Generators.kW()), float(dss.Generators.kvar())))
    return values


def _split_node(node: str) -> tuple[str, int]:
    """``"671.2"`` -> ("671", 2); a node without a phase suffix gets phase 0."""
    bus, _, phase = node.lower().partition(".")
    return bus, int(phase) if phase.isdigit() else 0


class _Circuit:
    """The OpenDSS calls a grid needs beyond the engine's core: buses, regulators, storage.

    Bound to one engine (one private OpenDSS context); everything here runs at reset or on a
    command, never on the per-step path except the storage read-back.
    """

    def __init__(self, engine: DSSEngine, feeder: str) -> None:
        self.engine = engine
        self.feeder = feeder
        self.dss = _context_of(engine)

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

    def set_storage_power(self, storage: str, kw: float, kvar: float) -> None:
        """Dispatch a Storage element: kW > 0 discharges, < 0 charges, 0 idles."""
        if abs(kw) <= _RATING_TOLERANCE:
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

    def reinitialize_solution(self) -> None:
        """``Init``: the next solve starts from a direct solve of the present Y matrix, as the
        first solve after a compile does, instead of from the previous solution."""
        self.engine.run("Init")

    def finish_time_step(self) -> None:
        """Let OpenDSS integrate storage energy over one step (what Solve does with controls on)."""
        self.dss.Solution.Cleanup()


def _single_phase_of(bus_names: list[str]) -> int | None:
    """Phase (1-3) of a single-phase element from its first terminal's bus spec, else None."""
    for spec in bus_names:
        _, _, nodes = spec.partition(".")
        parts = [p for p in nodes.split(".") if p]
        if len(parts) == 1 and parts[0] in ("1", "2", "3"):
            return int(parts[0])
        return None
    return None


def _context_of(engine: DSSEngine) -> Any:
    """The engine's private OpenDSSDirect context (the object made by ``dss.NewContext()``)."""
    context = getattr(engine, "dss", None)
    if context is None:
        raise AttributeError(f"{type(engine).__name__} exposes no OpenDSS context as `.dss`")
    return context


class _LoadBatch:
    """kW and kvar of a fixed set of Load elements, written in two calls per step.

    The DSS C-API batch setter applies, element by element, the same property setter as the
    Loads interface (``Loads.Idx`` then ``Loads.kW``/``Loads.kvar``): the flag
    ``SetterFlags_AvoidFullRecalc`` is what that interface uses, so a write changes the
    loads' power without rebuilding their primitive admittances or the system Y matrix, and
    the solved circuit is bit-identical (tested). Doing it in two C calls instead of three per
    load keeps a grid step close to the bare solve.
    """

    def __init__(self, engine: DSSEngine, indices: list[int]) -> None:
        dss = _context_of(engine)
        self._lib, self._ffi = dss.dss_lib, dss.dss_ffi
        n = len(indices)
        self.kw = np.zeros(n)
        self.kvar = np.zeros(n)
        self._size = 0
        self._batch: Any = None
        if n == 0:
            return
        handle = self._ffi.new("void***")
        dims = self._ffi.new("int32_t[4]")
        self._lib.Batch_CreateByIndexS(handle, dims, b"Load", self._ffi.new("int32_t[]", indices), n)
        self._batch, self._size = handle[0], int(dims[0])
        if self._size != n:
            raise GridError(f"OpenDSS built a batch of {self._size} loads for {n} load indices {indices}")
        dss.Loads.Idx(indices[0])
        dss.Circuit.SetActiveElement(f"Load.{dss.Loads.Name()}")
        properties = [p.lower() for p in dss.Element.AllPropertyNames()]
        self._kw_property = properties.index("kw") + 1
        self._kvar_property = properties.index("kvar") + 1
        self._kw_pointer = self._ffi.cast("double*", self._ffi.from_buffer(self.kw))
        self._kvar_pointer = self._ffi.cast("double*", self._ffi.from_buffer(self.kvar))
        self._set = self._lib.BatchOperation_Set
        self._flags = self._lib.SetterFlags_AvoidFullRecalc
        self._write = self._lib.Batch_Float64Array

    def write(self) -> None:
        """Hand the present `kw` and `kvar` arrays to OpenDSS."""
        if self._size:
            self._write(self._batch, self._size, self._kw_property, self._set, self._kw_pointer, self._flags)
            self._write(self._batch, self._size, self._kvar_property, self._set, self._kvar_pointer, self._flags)

    def close(self) -> None:
        """Free the batch (before the circuit it points into is cleared)."""
        if self._batch is not None:
            self._lib.Batch_Dispose(self._batch)
            self._batch, self._size = None, 0
