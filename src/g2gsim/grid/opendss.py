"""The OpenDSS grid component: a three-phase unbalanced power flow per grid step (SPEC 4).

One :class:`OpenDSSGrid` owns one private OpenDSS engine. Before a run it compiles its
feeder and attaches sites, generators, external loads and batteries (at reset, or earlier
when its observation layout is first asked for); at reset it sets the source voltage and the
initial taps, solves once and precomputes what does not depend on the run's state (the
voltage-vector layout and its rows in ``AllBusMagPu``, every profile at every step). Each
step is then one batched element-API write of every attached load's kW and kvar (no
``Text.Command``, no Y-matrix rebuild), one solve and one bulk voltage read.

The sequence of OpenDSS commands and solves follows OpenG2G's grid (three single-phase
constant-PQ loads per site, generators as negative loads, Mode=Time at the grid period,
controls off, taps on the regulators' transformer windings, the same solve before the first
step), so the two reproduce each other's voltages on the same inputs: OpenDSS stops at its
convergence tolerance, so a different sequence of solves lands on a slightly different point.

The OpenDSS calls live in :mod:`~g2gsim.grid.circuit`, the load writes in
:mod:`~g2gsim.grid.loads`, compiled-circuit reuse for sweeps in :mod:`~g2gsim.grid.reuse`,
what the grid reads of its sites in :mod:`~g2gsim.grid.site_loads` and its regulator taps in
:mod:`~g2gsim.grid.taps`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from g2gsim.grid.base import Grid
from g2gsim.grid.batteries import Batteries, Battery
from g2gsim.grid.circuit import Circuit, Regulator
from g2gsim.grid.commands import ResolveGrid, SetStoragePower, SetTaps
from g2gsim.grid.config import GridConfig, StorageSpec, tan_phi
from g2gsim.grid.engine import DEFAULT_MAX_ITERATIONS, DEFAULT_TOLERANCE, DSSEngine
from g2gsim.grid.feeders import Feeder, load_feeder
from g2gsim.grid.layout import voltage_layout
from g2gsim.grid.loads import InjectionProfiles, LoadBatch
from g2gsim.grid.recording import StepRecorder
from g2gsim.grid.reuse import CircuitSnapshot, PreparedCircuit, circuit_structure_key, prepare_circuit
from g2gsim.grid.sensitivity import finite_difference
from g2gsim.grid.site_loads import AttachedSite, stretch_site_loads, write_site_loads
from g2gsim.grid.sites import LoadSite
from g2gsim.grid.solving import PowerFlows, SolveGate, solver_settings
from g2gsim.grid.state import GridState, VoltageIndex
from g2gsim.grid.taps import RegulatorTaps
from g2gsim.kernel.commands import Command
from g2gsim.kernel.component import Component, DatacenterComponent
from g2gsim.kernel.context import RunContext
from g2gsim.kernel.lockstep import StretchStepFailed
from g2gsim.kernel.mailbox import Mailbox
from g2gsim.kernel.time import StepClock

__all__ = ["OpenDSSGrid", "Regulator", "circuit_structure_key"]

_NO_STORAGE: Mapping[str, Mapping[str, float]] = MappingProxyType({})


#: The voltage-vector layout: the index, its rows in ``AllBusMagPu``, the node names it was built from.
_Layout = tuple[VoltageIndex, np.ndarray, tuple[str, ...]]


class OpenDSSGrid(Grid):
    """A distribution feeder solved by OpenDSS, coupled to load-site components (SPEC 4).

    Publishes a :class:`GridState` in mailbox ``state`` after every solve (see
    :class:`~g2gsim.grid.base.Grid`). Commands: SetTaps, SetStoragePower, ResolveGrid and
    SensitivityRequest (answered in ``sensitivity/<site>`` from :meth:`estimate_sensitivity`).
    Also :meth:`resolve_now`, :attr:`voltage_index`, :meth:`site_bus`, :attr:`regulators`
    (read when a run is set up, never called by a controller's step). The observation layout
    (:attr:`voltage_index`, :attr:`regulators`, :attr:`sites`) is known before any run.
    `reuse_circuit` (off by default) lets :meth:`reset` reuse the engine's compiled circuit.
    """

    #: Whether a stretch keeps the load batch's buffers at each step's loads (for a subclass
    #: whose voltage read uses them); else they hold the last step's after the stretch.
    _mirrors_loads: ClassVar[bool] = False
    #: A stretch's kW and kvar rows of every load and their writer (:meth:`_stretch_rows`).
    _rows: tuple[np.ndarray, np.ndarray, Callable[[int], None]] | None

    def __init__(self, name: str, config: GridConfig, *, seed: int | None = None, reuse_circuit: bool = False) -> None:
        super().__init__(name, config.period_s, seed=seed)
        self.config = config
        #: Opt-in (sweeps): reuse the engine's compiled circuit when a previous run on the
        #: same engine compiled and attached the same structure (see :mod:`g2gsim.grid.reuse`).
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
        self._circuit: Circuit | None = None
        self._loads: LoadBatch | None = None
        self._prepared: PreparedCircuit | None = None  # set up before a run, not consumed yet
        self._preview: _Layout | None = None  # the layout built before a run
        self._clear_run_state()

    # -- declarations ---------------------------------------------------------------------
    def dependencies(self) -> Mapping[str, type]:
        """Every attached site must be a datacenter-role component of the run."""
        return {site: DatacenterComponent for site in self._site_buses}

    @property
    def voltage_index(self) -> VoltageIndex:
        """Layout of the voltage vector, fixed for a run and known before it.

        Asked before the first run, the grid compiles and attaches its circuit now; the first
        reset then starts from that circuit instead of compiling again.
        """
        if self._index is not None:
            return self._index
        return self._preview_layout()[0]

    @property
    def sites(self) -> Mapping[str, str]:
        """Attached site name -> bus."""
        return MappingProxyType(self._site_buses)

    def site_bus(self, site: str) -> str:
        """Bus a site is attached to."""
        try:
            return self._site_buses[site]
        except KeyError:
            raise KeyError(
                f"grid {self.name!r} has no datacenter {site!r}; sites: {sorted(self._site_buses)}"
            ) from None

    @property
    def regulators(self) -> tuple[Regulator, ...]:
        """Regulator controls of the compiled feeder (known before a run, like :attr:`voltage_index`)."""
        if self._index is None:
            return tuple(self._prepared_now().regulators.values())
        return tuple(self._taps.regulators.values())

    @property
    def circuit(self) -> Circuit:
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
        return self._storage.by_name(name).spec

    # -- engines --------------------------------------------------------------------------------
    def use_engine(self, engine: DSSEngine, *, reuse_circuit: bool | None = None) -> None:
        """Solve on `engine` from the next reset on (e.g. a sweep worker's shared engine).

        `reuse_circuit`, if given, sets :attr:`reuse_circuit`. Call :meth:`release` after the
        run, before the engine is handed to another grid.
        """
        if engine is not self._engine:
            self.release()
            self._prepared = None
            self._engine = engine
        if reuse_circuit is not None:
            self.reuse_circuit = bool(reuse_circuit)

    def release(self) -> None:
        """Free the per-step load batch, which points into the engine's circuit."""
        if self._loads is not None:
            self._loads.close()
            self._loads = None
        self._rows = None  # a stretch's rows: their writer pointed into the batch

    # -- lifecycle ----------------------------------------------------------------------------
    def _clear_run_state(self) -> None:
        self._index: VoltageIndex | None = None
        self._vmag_rows = np.zeros(0, dtype=np.intp)
        self._taps = RegulatorTaps(feeder=self.feeder.name)
        self._sites: list[AttachedSite] = []
        self._injections: InjectionProfiles | None = None
        self._storage = Batteries((), None, None, self.name, self.storage_names())
        self._box: Mailbox[GridState] | None = None
        self._period_ticks = 1
        self._n_steps = 0
        self._recorder: StepRecorder | None = None
        self._last_step_tick = -1
        self._step_index = -1
        self._self_control = self.config.regulator_self_control
        self._site_kw = np.zeros(0)
        self._flows = PowerFlows(self._retrying)  # solves made, retried, seconds in them
        self._n_steps_done = 0
        self._n_resolves = 0
        self._n_sensitivity = 0
        self._gate = None if self.config.solve is None else SolveGate(self.config.solve.on_change_kw)
        self._voltages = np.zeros(0)  # the voltage vector of the last solve
        self._stretches = False  # whether quiet stretches may be stepped at once (set at start)
        self._rows = None
        self._held = (-1, 0)  # the tick stretch_steps last counted held steps from, and how many

    def reset(self, ctx: RunContext) -> None:
        """Set up the circuit for a new run: compile and attach (or continue from the circuit
        prepared before the run, or reuse the engine's), set taps, solve once, lay out buffers."""
        super().reset(ctx)
        self.release()  # it points into the circuit about to be set up
        prepared = self._take_prepared()
        self._clear_run_state()
        if prepared is None:
            prepared = self._prepare(self._engine_for_run())
        self._adopt(prepared)
        prepared.engine.set_solver_settings(
            DEFAULT_TOLERANCE if self.config.tolerance is None else self.config.tolerance,
            DEFAULT_MAX_ITERATIONS if self.config.max_iterations is None else self.config.max_iterations,
        )
        if self.config.initial_taps:
            self._apply_taps(self.config.initial_taps, when="initial taps")
        self._taps.read()
        self._taps_changed()
        self._solve(0.0)
        self._index, self._vmag_rows = self._voltage_layout(prepared.snapshot)
        self._period_ticks = ctx.clock.ticks(self.config.period_s)
        every = self.config.measurement_period_s or Fraction(1)
        self._measured = None if self.config.measurement_tolerance is None else ctx.clock.ticks(every)
        self._n_steps = ctx.step_count(self.config.period_s)
        self._injections = InjectionProfiles(
            self.config.generators,
            self.config.loads,
            StepClock(self._period_ticks, ctx.clock.tick).times,
            self._n_steps,
            grid=self.name,
        )
        indices = [i for site in self._sites for i in site.load_indices]
        indices += [i for attachment in prepared.attachments.injections for i in attachment]
        self._loads = LoadBatch(prepared.engine, indices)
        self._site_kw = self._loads.kw[: 3 * len(self._sites)]  # view: the sites' kW as written
        self._recorder = StepRecorder(
            self._n_steps,
            self._index,
            list(self._taps.regulators),
            [s.name for s in self._sites],
            self._storage.names(),
        )
        self._box = ctx.mailbox("state")

    def _engine_for_run(self) -> DSSEngine:
        if self._engine is None:
            self._engine = DSSEngine()
        return self._engine

    def _take_prepared(self) -> PreparedCircuit | None:
        """The circuit prepared before this run, if nothing touched it since (else None)."""
        prepared, self._prepared = self._prepared, None
        engine = self._engine
        if engine is None:
            return None
        fresh = (
            prepared is not None
            and prepared.engine is engine
            and engine.prepared_for is self
            and (prepared.snapshot is not None) == self.reuse_circuit
        )
        engine.prepared_for = None
        return prepared if fresh else None

    def _prepared_now(self) -> PreparedCircuit:
        """The circuit set up for the next run, prepared now if needed (before a run)."""
        engine = self._engine_for_run()
        prepared = self._prepared
        if prepared is None or prepared.engine is not engine or engine.prepared_for is not self:
            self.release()
            prepared = self._prepared = self._prepare(engine)
            engine.prepared_for = self
        return prepared

    def _preview_layout(self) -> _Layout:
        """The voltage-vector layout before a run, from the prepared (unsolved) circuit."""
        if self._preview is None:
            nodes = tuple(self._prepared_now().engine.node_names())
            index, rows = voltage_layout(nodes, self.excluded_buses, self.feeder.name)
            self._preview = (index, rows, nodes)
        return self._preview

    def _prepare(self, engine: DSSEngine) -> PreparedCircuit:
        """Compile and attach the circuit, or restore the engine's (:func:`prepare_circuit`)."""
        return prepare_circuit(engine, self.feeder, self.config, reuse=self.reuse_circuit)

    def _adopt(self, prepared: PreparedCircuit) -> None:
        """Make a prepared circuit this run's circuit."""
        self._engine = prepared.engine
        self._circuit = prepared.circuit
        attachments = prepared.attachments
        self._sites = [
            AttachedSite(name=a.site, bus=a.bus.lower(), load_indices=indices, slot=3 * i)
            for i, (a, indices) in enumerate(zip(self.config.sites, attachments.sites, strict=True))
        ]
        batteries = [
            Battery(spec=spec, variable_rows=rows, index=prepared.engine.storage_index(spec.name))
            for spec, rows in zip(self.config.storage, attachments.storage, strict=True)
        ]
        self._storage = Batteries(batteries, prepared.circuit, prepared.engine, self.name, self.storage_names())
        enforce = self.config.tap_limits == "enforce"
        self._taps = RegulatorTaps(prepared.regulators, prepared.circuit, self.feeder.name, enforce_limits=enforce)
        self.circuit_reused = prepared.reused

    def _voltage_layout(self, snapshot: CircuitSnapshot | None) -> tuple[VoltageIndex, np.ndarray]:
        """The layout after the first solve: cached in a reused circuit's snapshot, kept from
        before the run when the nodes are unchanged, else built."""
        cached = None if snapshot is None else snapshot.voltage_indexes.get(self.excluded_buses)
        if cached is None:
            nodes = tuple(self.engine.node_names())
            preview = self._preview
            if preview is not None and preview[2] == nodes:
                cached = preview[0], preview[1]
            else:
                cached = voltage_layout(nodes, self.excluded_buses, self.feeder.name)
            if snapshot is not None:
                snapshot.voltage_indexes[self.excluded_buses] = cached
        return cached

    def start(self) -> None:
        """Subscribe to every attached site's state and fix each site's power factor."""
        ctx = self.ctx
        pf_override = {a.site: a.power_factor for a in self.config.sites}
        for site in self._sites:
            component = ctx.lookup(site.name)
            pf = pf_override[site.name]
            if pf is None:
                pf = self._site_power_factor(site.name, component)
            site.tan_phi = tan_phi(pf)
            if self.config.coupling == "mean":
                site.queue = ctx.subscribe(site.name, queue=True)
            site.mailbox = ctx.subscribe(site.name)
            site.in_group = component.steps_periodically and component.period == self.period
        # Quiet stretches stepped at once (:meth:`step_stretch`) write loads, solve, read and record
        # only, or with solve-on-change keep the last solve (no batteries): not with OpenDSS's own
        # regulator control, mean coupling, or a site publishing after the grid in a tick (its
        # sample reaches the grid a step late).
        self._stretches = (
            not (self._gate is not None and self.config.storage)
            and not self._self_control
            and self.config.coupling == "latest"
            and all(ctx.lookup(site.name).ctx.priority < ctx.priority for site in self._sites)
        )

    def _site_power_factor(self, name: str, component: Component) -> float:
        if not isinstance(component, LoadSite):
            raise TypeError(
                f"grid {self.name!r}: site {name!r} is a {type(component).__name__} without a power_factor; "
                "give it one or set power_factor on its attachment"
            )
        return float(component.power_factor)

    def step(self, tick: int) -> None:
        """One grid step: commands, datacenter power, profiles, one solve, publish, record.

        Solving on change, a step whose loads moved too little (and with no command) keeps the
        last solve: it is recorded with that solve's voltages and loads and publishes nothing."""
        time_s = self.ctx.seconds(tick)
        k = tick // self._period_ticks
        self._step_index = k
        commands = self.take_commands() if self._inbox else ()
        if commands:
            self._apply_commands(commands, time_s)
        self._write_loads(k, time_s)
        loads = self._loads
        assert loads is not None
        self._last_step_tick = tick
        self._n_steps_done += 1
        gate = self._gate
        if gate is not None and not gate.must_solve(loads, pending=bool(commands)):
            gate.hold(loads)  # keep the last solve: record its voltages and loads, publish nothing
            held = GridState(self.name, time_s, self._index, self._voltages, self._taps.view, _NO_STORAGE)  # type: ignore[arg-type]
            self._recorder.record(k, held, self._taps.row, self._site_kw)  # type: ignore[union-attr]
            return
        if gate is not None:
            gate.solved(loads)
        voltages, batteries = self._solve_loads(tick, time_s)
        self._publish(tick, time_s, voltages, batteries)

    def _solve_loads(self, tick: int, time_s: float) -> tuple[np.ndarray, Mapping[str, Mapping[str, float]]]:
        """Write the loads, solve (:meth:`_solve_written`), read the voltages and the batteries' states."""
        self._loads.write()  # type: ignore[union-attr]
        self._solve_written(tick, time_s)
        voltages = self._read_vector()
        if not self._storage:
            return voltages, _NO_STORAGE
        self._finish_storage_step()
        return voltages, self._storage.states()

    def _solve_written(self, tick: int, time_s: float) -> None:
        """Hand changed battery set-points to OpenDSS and solve the loads written, with tight
        settings at the steps controllers measure."""
        if self._storage:
            self._storage.write_pending()
        if self._measured is not None and tick % self._measured == 0:  # a step controllers measure
            tolerance, iterations = self.engine.solver_settings()
            tight = min(tolerance, self.config.measurement_tolerance or tolerance)
            with solver_settings(self.engine, tight, max(iterations, 100)):
                self._solve(time_s)
        else:
            self._solve(time_s)

    def stretch_steps(self, tick: int, limit: int) -> int:
        """All `limit` steps when stretches suit this grid (see :meth:`start`), no command is
        pending and nobody waits on each state; solving on change, the steps before the first
        whose loads (as its sites offer them) would need a solve."""
        if not self._stretches or self._inbox:
            return 0
        if self._gate is None:
            return limit if self._box.stretchable else 0  # type: ignore[union-attr]
        ticks = range(tick, tick + limit * self._period_ticks, self._period_ticks)
        kw, _, good, _ = self._stretch_loads(ticks, offered=True)
        self._held = (tick, self._gate.steps_held(kw[:good]) if good > 1 else 0)  # for _hold_stretch
        return self._held[1]

    def _stretch_loads(self, ticks: range, *, offered: bool = False) -> tuple[np.ndarray, np.ndarray, int, Any]:
        """Every load's kW and kvar at each step of a stretch (:func:`stretch_site_loads`, then
        the injections' profiles), how many steps come before one whose power is not finite
        and that step's error (None: all are finite)."""
        assert self._loads is not None
        kw, kvar, _ = self._stretch_rows(len(ticks))
        kw, kvar, good, not_finite = stretch_site_loads(
            self._sites, ticks, self.ctx.seconds, self._where, out=(kw, kvar), offered=offered
        )
        width, injections = 3 * len(self._sites), self._injections
        if injections is not None and injections.width:
            injections.rows_into(ticks[0] // self._period_ticks, kw[:good, width:], kvar[:good, width:])
        return kw, kvar, good, not_finite

    def _stretch_rows(self, count: int) -> tuple[np.ndarray, np.ndarray, Callable[[int], None]]:
        """kW and kvar rows of every load for `count` steps and their writer, kept between stretches."""
        rows = self._rows
        if rows is None or len(rows[0]) < count:
            assert self._loads is not None
            kw = np.empty((max(count, 2 * len(rows[0]) if rows else 16), self._loads.kw.size))
            kvar = np.empty_like(kw)
            rows = self._rows = (kw, kvar, self._loads.row_writer(kw, kvar, mirror=self._mirrors_loads))
        return rows[0][:count], rows[1][:count], rows[2]

    def _hold_stretch(self, ticks: range) -> None:
        """Steps of a stretch that keep the last solve, as :meth:`stretch_steps` counted them from
        the rows the sites offered (those they publish): recorded with its voltages and loads."""
        assert self._gate is not None and self._loads is not None and self._recorder is not None
        assert self._held[0] == ticks[0] and len(ticks) <= self._held[1], "a held stretch its loads do not allow"
        self._gate.hold_stretch(self._loads, len(ticks))
        times = [self.ctx.seconds(t) for t in ticks]
        self._recorder.record_stretch(
            ticks[0] // self._period_ticks, times, self._voltages, self._taps.row, self._site_kw
        )
        self._last_step_tick, self._step_index = ticks[-1], ticks[-1] // self._period_ticks
        self._n_steps_done += len(ticks)

    def step_stretch(self, tick: int, count: int) -> None:
        """`count` steps from `tick` at once, each a load write from the stretch's rows (the
        sites' published stretches, :func:`stretch_site_loads`), a solve and a voltage read;
        then the steps recorded and the last state published (queued readers get every one).
        Solving on change, the steps keep the last solve (:meth:`stretch_steps` counted them)."""
        ctx, period, loads, recorder = self.ctx, self._period_ticks, self._loads, self._recorder
        assert loads is not None and recorder is not None
        ticks = range(tick, tick + count * period, period)
        if self._gate is not None:
            self._hold_stretch(ticks)
            return
        kw, kvar, good, not_finite = self._stretch_loads(ticks)
        write_row, storage = self._stretch_rows(count)[2], self._storage
        times: list[float] = []
        batteries: list[Mapping[str, Mapping[str, float]]] = []
        voltages, written = np.empty((good, len(self._vmag_rows))), -1
        try:
            for i, step_tick in enumerate(ticks[:good]):
                time_s = ctx.seconds(step_tick)
                write_row(i)
                written = i
                try:
                    self._solve_written(step_tick, time_s)
                    voltages[i] = self._read_vector()
                    if storage:
                        self._finish_storage_step()
                        batteries.append(storage.states())
                        recorder.record_storage(step_tick // period, batteries[-1])
                except Exception as exc:
                    raise StretchStepFailed(step_tick, exc) from exc
                times.append(time_s)
        finally:
            if written >= 0:  # the loads as last written, the steps solved recorded, the last one published
                loads.kw[:], loads.kvar[:] = kw[written], kvar[written]
                self._last_step_tick, self._n_steps_done = ticks[written], self._n_steps_done + written + 1
                self._step_index = ticks[written] // period
            if times:
                self._publish_stretch(ticks[: len(times)], times, voltages[: len(times)], kw, batteries)
        if not_finite is not None:
            raise StretchStepFailed(ticks[good], not_finite)

    def _publish_stretch(
        self, ticks: range, times: list[float], voltages: np.ndarray, kw: np.ndarray, batteries: list
    ) -> None:
        """Record the steps of a stretch (voltages one row per step) and publish the last one's state."""
        assert self._recorder is not None and self._box is not None
        n = len(times)
        self._recorder.record_stretch(
            ticks[0] // self._period_ticks, times, voltages, self._taps.row, kw[:n, : 3 * len(self._sites)]
        )
        name, index, taps, stored = self.name, self._index, self._taps.view, batteries or [_NO_STORAGE] * n
        self._voltages = voltages[-1]
        state = GridState(name, times[-1], index, self._voltages, taps, stored[-1])  # type: ignore[arg-type]

        def every() -> list[GridState]:  # built only for queued readers
            return [GridState(name, t, index, v, taps, b) for t, v, b in zip(times, voltages, stored)]  # type: ignore[arg-type]

        self._box.publish_stretch(ticks, state, None, every)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Recorded rows so far: voltages (wide), taps (wide), storage (long), site power (long)."""
        return {} if self._recorder is None else self._recorder.tables()

    def summary(self) -> dict[str, Any]:
        """Solve counts (made, skipped by solve-on-change, retried) and time spent in OpenDSS solves."""
        return {
            "n_solves": self._flows.solves,
            "n_steps": self._n_steps_done,
            "n_skipped_solves": 0 if self._gate is None else self._gate.skipped,
            "n_solve_retries": self._flows.retries,
            "n_resolves": self._n_resolves,
            "n_sensitivity_estimates": self._n_sensitivity,
            "solve_s": self._flows.seconds,
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
        self._storage.write_pending()
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

    # -- regulators -----------------------------------------------------------------------------
    def resolve_tap_key(self, key: str) -> str:
        """Regulator-control name for a tap key: a control name, or a unique phase shorthand."""
        return self._taps.resolve(key)

    def _apply_taps(self, taps: Mapping[str, float], *, when: str) -> None:
        """Write tap ratios to the regulators' transformer windings (:meth:`RegulatorTaps.apply`)."""
        self._taps.apply(taps, when=when, outside=self._tap_outside_rating)
        self._taps_changed()

    def _tap_outside_rating(self, facts: dict[str, Any]) -> None:
        if self._ctx is not None:
            self.ctx.event("tap_outside_rating", facts)

    def _taps_changed(self) -> None:
        """The taps moved (a subclass's hook: the linearised grid rebuilds its model)."""

    # -- storage -------------------------------------------------------------------------------
    def _set_storage_power(self, command: SetStoragePower, time_s: float) -> None:
        """Check a dispatch against the ratings and keep it for the next solve."""
        kw, kvar = float(command.kw), float(command.kvar)
        battery = self._storage.command(command.storage, kw, kvar, where=f"grid {self.name!r}, t = {time_s:g} s")
        self.ctx.event("storage_power", {"storage": battery.spec.name, "kw": kw, "kvar": kvar})

    def _finish_storage_step(self) -> None:
        """Advance the batteries' energy over one period (not under OpenDSS's own control loop)."""
        if self._storage and not self.config.regulator_self_control:
            self._storage.finish_step()

    # -- the per-step path -------------------------------------------------------------------
    def _write_loads(self, k: int, time_s: float) -> None:
        """Every attached load's kW/kvar for step k (datacenter samples, then profiles) into
        the load batch's buffers; ``self._loads.write()`` hands them to OpenDSS."""
        loads = self._loads
        assert loads is not None
        write_site_loads(self._sites, loads.kw, loads.kvar, time_s, self._where)
        injections = self._injections
        if injections is not None and injections.width:
            start = 3 * len(self._sites)
            loads.kw[start:], loads.kvar[start:] = injections.row(k)

    def _where(self, time_s: float) -> tuple[str, str, float]:
        """Grid name, feeder name and time, for the errors of a site's samples."""
        return self.name, self.feeder.name, time_s

    def _solve(self, time_s: float) -> None:
        """One power flow: SolveNoControl, or OpenDSS's own control loop when self-control is on."""
        if self._self_control:
            self._flows.run(self.engine, time_s, lambda: self.circuit.solve_with_controls(time_s))
        else:
            self._flows.run(self.engine, time_s)

    def _retrying(self, time_s: float, facts: dict[str, Any]) -> None:
        if self._ctx is not None:
            self.ctx.event("solve_retry", {"time_s": time_s, **facts}, at_s=time_s)

    def _read_vector(self) -> np.ndarray:
        """The voltage vector (pu) in VoltageIndex order, from one AllBusMagPu read."""
        return self.engine.bus_mag_pu_view()[self._vmag_rows]

    def _publish(
        self,
        tick: int,
        time_s: float,
        voltages: np.ndarray,
        storage: Mapping[str, Mapping[str, float]] | None = None,
        *,
        record: bool = True,
    ) -> None:
        """Publish a GridState in mailbox ``state`` (batteries' `storage` states, read now when
        None) and, for a step, record it."""
        if self._self_control and self._taps.read():  # OpenDSS's own control moved a tap
            self._taps_changed()
        if storage is None:
            storage = self._storage.states() if self._storage else _NO_STORAGE
        self._voltages = voltages
        state = GridState(self.name, time_s, self._index, voltages, self._taps.view, storage)  # type: ignore[arg-type]
        if record:
            self._recorder.record(self._step_index, state, self._taps.row, self._site_kw)  # type: ignore[union-attr]
        self._box.publish(tick, state)  # type: ignore[union-attr]

    # -- services --------------------------------------------------------------------------------
    def estimate_sensitivity(self, site: str, delta_kw: float = 100.0) -> np.ndarray:
        """Finite-difference dV/dP (pu per kW) for each phase of a site's load (SPEC 4.5) at the
        present operating point, at a tight tolerance whatever the run's own
        (:func:`~g2gsim.grid.sensitivity.finite_difference`); then the base point is re-solved
        at the run's settings, so the circuit is left as the run would find it."""
        if self._last_step_tick < 0:
            raise RuntimeError(
                f"grid {self.name!r}: sensitivity needs a solved operating point (after the first grid step)"
            )
        assert self._loads is not None
        time_s = self.ctx.now_s
        engine = self.engine

        def solve() -> None:
            self._flows.run(self.engine, time_s)

        h = finite_difference(engine, self._loads, self._site_by_name(site), delta_kw, solve, self._read_vector)
        self._solve(time_s)
        self._n_sensitivity += 1
        return h

    def _site_by_name(self, name: str) -> AttachedSite:
        for site in self._sites:
            if site.name == name:
                return site
        raise KeyError(f"grid {self.name!r} has no datacenter {name!r}; sites: {sorted(self._site_buses)}")
