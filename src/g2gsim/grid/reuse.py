"""Compiled-circuit reuse for sweeps: the structure key, the snapshot, the engine's slot for it.

A grid built with ``reuse_circuit=True`` compiles and attaches its feeder once per engine
and structure: it leaves a :class:`CircuitSnapshot` with the engine (:func:`keep_snapshot`),
and a later run with an equal :func:`circuit_structure_key` writes the snapshot back instead
of compiling. The snapshot holds every value a run can change, taken right after the
compile and attachments (before initial taps and the first solve); after writing it back the
grid re-issues the solution settings and ``Init``, so the sequence of solves, and every
result, is the same as on a freshly compiled circuit.

Public API for code that shares engines between runs (a sweep worker):
:func:`circuit_structure_key`, :func:`snapshot_of`, :func:`keep_snapshot` and
:func:`forget_compiled_circuit`. :func:`prepare_circuit` is where a grid's reset gets its
circuit: compiled and attached, or restored from the engine's snapshot.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from g2gsim.grid.circuit import Attachments, Circuit, Regulator, compile_and_attach
from g2gsim.grid.config import GridConfig, GridOptions, StorageSpec
from g2gsim.grid.engine import DSSEngine
from g2gsim.grid.feeders import Feeder
from g2gsim.grid.state import VoltageIndex

__all__ = [
    "CircuitSnapshot",
    "PreparedCircuit",
    "circuit_structure_key",
    "forget_compiled_circuit",
    "keep_snapshot",
    "prepare_circuit",
    "restore_compiled_circuit",
    "snapshot_of",
]

#: Element classes a reused circuit may hold: their run-time state is restored by a
#: :class:`CircuitSnapshot` (loads, transformer taps, capacitor states, source pu, the grid's
#: own batteries), checked by it (generator kW/kvar), reset by ``Reset`` (controls, meters,
#: monitors), or never changed by a run. A circuit with anything else (protection that can
#: open a line, inverter or storage controllers, a feeder's own batteries, ...) is recompiled.
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


# -- the engine's slot -------------------------------------------------------------------------
def snapshot_of(engine: DSSEngine) -> CircuitSnapshot | None:
    """The snapshot of the circuit compiled in `engine`, if a grid left one (every compile drops it)."""
    snapshot = engine.circuit_snapshot
    return snapshot if isinstance(snapshot, CircuitSnapshot) else None


def keep_snapshot(engine: DSSEngine, snapshot: CircuitSnapshot) -> None:
    """Leave `snapshot` with the engine whose just-compiled circuit it describes."""
    engine.circuit_snapshot = snapshot


def forget_compiled_circuit(engine: Any) -> None:
    """Drop the engine's snapshot: its next run compiles (e.g. an engine given another structure)."""
    engine.circuit_snapshot = None


def restore_compiled_circuit(
    engine: DSSEngine, feeder: str, key: tuple[Any, ...], options: GridOptions
) -> tuple[Circuit, CircuitSnapshot] | None:
    """Put the engine's circuit back to its just-compiled state if its structure is `key`.

    Writes the snapshot back, re-issues the solution settings (``Reset`` also clears
    OpenDSS's controls) and ``Init`` (the next solve starts from scratch, as after a compile).
    None, with nothing touched, when the circuit cannot be reused and must be compiled.
    """
    snapshot = snapshot_of(engine)
    if snapshot is None or snapshot.key != key or snapshot.unrestorable:
        return None
    circuit = Circuit(engine, feeder)
    if not snapshot.still_describes(circuit) or not snapshot.restore(circuit):
        return None
    circuit.configure_solution(float(options.period_s), self_control=options.regulator_self_control)
    circuit.reinitialize_solution()
    return circuit, snapshot


# -- the structure key ---------------------------------------------------------------------------
def circuit_structure_key(feeder: Feeder, config: GridConfig) -> tuple[Any, ...]:
    """Everything that defines the elements of a grid's circuit, as a hashable key.

    Two grids with equal keys compile and attach the same circuit (same elements, same
    names, same indices); they may differ only in run-mutable values (initial taps, profiles,
    power factors, the sites themselves, excluded buses, coupling, tap limits). The feeder
    enters by its OpenDSS commands and, for a user ``.dss`` master file, a hash of that file
    and the size and modification time of the files in its folder (files redirected from
    other folders, subfolders included, are not tracked).
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


# -- the snapshot ------------------------------------------------------------------------------
@dataclass(slots=True)
class CircuitSnapshot:
    """Run-mutable state of a freshly compiled and attached circuit, to reuse it for more runs.

    Holds the structure key it was taken for, the attachments, and every value a run can change: each Load's kW and kvar, each Transformer winding's tap, Capacitor
    states, each Vsource's pu, the grid's batteries and the solution time; native Generators'
    kW and kvar are checked, not written (see :meth:`restore`). It also keeps what depends on
    the structure only: the regulators and the voltage-vector layout (per set of excluded buses).
    """

    key: tuple[Any, ...]
    n_elements: int
    n_nodes: int
    attachments: Attachments
    storage: tuple[tuple[str, str], ...]  # the grid's batteries: name, run-state text
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
        circuit: Circuit,
        attachments: Attachments,
        storage: tuple[StorageSpec, ...] = (),
    ) -> CircuitSnapshot:
        """Record `circuit` as it is now, with the attachments the grid made (its batteries: `storage`)."""
        dss = circuit.dss
        unrestorable = _unrestorable_element(dss, {spec.name.lower() for spec in storage})
        load_kw, load_kvar = _load_powers(dss)
        return cls(
            key=key,
            n_elements=int(dss.Circuit.NumCktElements()),
            n_nodes=int(dss.Circuit.NumNodes()),
            attachments=attachments,
            storage=tuple((spec.name, _storage_run_state(spec)) for spec in storage),
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

    def still_describes(self, circuit: Circuit) -> bool:
        """A cheap check that the engine still holds the circuit this snapshot was taken of."""
        dss = circuit.dss
        return (
            int(dss.Basic.NumCircuits()) > 0
            and int(dss.Circuit.NumCktElements()) == self.n_elements
            and int(dss.Circuit.NumNodes()) == self.n_nodes
            and int(dss.Loads.Count()) == len(self.load_kw)
        )

    def restore(self, circuit: Circuit) -> bool:
        """Write every run-mutable value back to its snapshot value (only those that differ).

        Returns False, having changed nothing, when a value cannot be written back exactly:
        a native Generator's kW or kvar (its getters return derived values that do not
        round-trip through its setters; no run writes them, but other code could).
        """
        dss = circuit.dss
        if _generator_powers(dss) != list(self.native_generators):
            return False
        self._restore_loads(dss)
        self._restore_taps(dss)
        for name, states in self.capacitors:
            dss.Capacitors.Name(name)
            if tuple(dss.Capacitors.States()) != states:
                dss.Capacitors.States(list(states))
        for name, pu in self.vsources:
            dss.Vsources.Name(name)
            if dss.Vsources.PU() != pu:
                dss.Vsources.PU(pu)
        for name, state in self.storage:
            circuit.engine.run(f"Edit Storage.{name} {state}")
        if int(dss.Solution.Hour()) != self.hour:
            dss.Solution.Hour(self.hour)
        if float(dss.Solution.Seconds()) != self.seconds:
            dss.Solution.Seconds(self.seconds)
        return True

    def _restore_loads(self, dss: Any) -> None:
        loads = dss.Loads
        for i, (kw, kvar) in enumerate(zip(self.load_kw, self.load_kvar, strict=True)):
            loads.Idx(i + 1)
            if loads.kW() != kw:
                loads.kW(kw)
            if loads.kvar() != kvar:
                loads.kvar(kvar)

    def _restore_taps(self, dss: Any) -> None:
        transformers = dss.Transformers
        for name, winding, tap in self.taps:
            transformers.Name(name)
            transformers.Wdg(winding)
            if transformers.Tap() != tap:
                transformers.Tap(tap)


def _unrestorable_element(dss: Any, own_storage: set[str]) -> str | None:
    """The first element whose run-time state a snapshot does not restore, or None."""
    for element in dss.Circuit.AllElementNames():
        kind, _, name = element.lower().partition(".")
        if kind not in _RESTORABLE_CLASSES or (kind == "storage" and name not in own_storage):
            return f"{element} (its run-time state is not restored)"
    return None


def _load_powers(dss: Any) -> tuple[np.ndarray, np.ndarray]:
    n_loads = int(dss.Loads.Count())
    load_kw, load_kvar = np.zeros(n_loads), np.zeros(n_loads)
    for i in range(n_loads):
        dss.Loads.Idx(i + 1)
        load_kw[i], load_kvar[i] = dss.Loads.kW(), dss.Loads.kvar()
    return load_kw, load_kvar


def _names(all_names: list[str]) -> list[str]:
    """OpenDSS name lists without the ``NONE`` placeholder of an empty class."""
    return [n for n in all_names if n.lower() != "none"]


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


@dataclass(slots=True)
class PreparedCircuit:
    """A circuit compiled (or restored) and attached but not solved: where a grid's reset continues."""

    engine: DSSEngine
    circuit: Circuit
    attachments: Attachments
    snapshot: CircuitSnapshot | None  # with circuit reuse on: the engine's snapshot
    reused: bool
    regulators: dict[str, Regulator]


def prepare_circuit(engine: DSSEngine, feeder: Feeder, config: GridConfig, *, reuse: bool) -> PreparedCircuit:
    """Compile and attach a grid's circuit on `engine`, or with `reuse` restore the engine's
    compiled one when its structure is the same (else compile and leave a snapshot).

    The regulators, which depend on the structure only, come with it (kept in the snapshot
    when circuit reuse is on).
    """
    key = circuit_structure_key(feeder, config) if reuse else None
    restored = None if key is None else restore_compiled_circuit(engine, feeder.name, key, config)
    if restored is not None:
        circuit, snapshot = restored
        attachments = snapshot.attachments
    else:
        circuit, attachments = compile_and_attach(engine, feeder, config, config.sites)
        snapshot = None
        if key is not None:  # before initial taps and the first solve
            snapshot = CircuitSnapshot.take(key, circuit, attachments, config.storage)
            keep_snapshot(engine, snapshot)
    if snapshot is not None and snapshot.regulators is not None:
        regulators = dict(snapshot.regulators)
    else:
        regulators = {r.control: r for r in circuit.regulators()}
        if snapshot is not None:
            snapshot.regulators = dict(regulators)
    return PreparedCircuit(engine, circuit, attachments, snapshot, restored is not None, regulators)
