"""One private OpenDSS engine: compile a feeder, run setup commands, solve, read voltages.

OpenDSSDirect's module-level ``dss`` object is one engine shared by the whole process. A
:class:`DSSEngine` instead owns its own context (``dss.NewContext()``), so several grids
can live in one process, each with its own circuit, without seeing each other's state.
The context may never change the process working directory (``Basic.AllowChangeDir``
off): files are compiled by absolute path.

Text commands (:meth:`DSSEngine.run`) are for setup only: each one makes OpenDSS parse and
often rebuild its system matrix. Per-step changes go through the element API
(:meth:`DSSEngine.set_load_kw_kvar`).

The per-step calls (:meth:`DSSEngine.solve`, :meth:`DSSEngine.bus_mag_pu_view`) go to the
context's DSS C-API functions directly and read its error number through its pointer, the
way OpenDSSDirect's wrappers do, and hand an error to the same check those wrappers use;
the voltage read is a NumPy view of the context's global-result buffer instead of a Python
list. Same calls into OpenDSS, same floats. A binding without those entry points falls back
to OpenDSSDirect's public API.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
from opendssdirect import dss as _dss_module

from g2gsim.grid.errors import GridError

if TYPE_CHECKING:
    from g2gsim.grid.feeders import Feeder


#: OpenDSS's own power-flow tolerance (pu) and iteration limit, in force when a grid sets none.
DEFAULT_TOLERANCE = 1e-4
DEFAULT_MAX_ITERATIONS = 15


class PowerFlowNotConverged(GridError):
    """A power flow stopped at its iteration limit without meeting its tolerance."""


#: Contexts of engines that are gone, for new engines: DSS C-API keeps part of the memory of a
#: disposed context and OpenDSSDirect keeps every context it wrapped alive, so a process that
#: builds grid after grid (repeated runs) reuses contexts, each cleared before it is used again.
_idle_contexts: list[Any] = []
_contexts_lock = threading.Lock()


def _open_context() -> Any:
    """An OpenDSSDirect context of its own: an idle one, cleared, or a new one."""
    with _contexts_lock:
        dss = _idle_contexts.pop() if _idle_contexts else None
    if dss is None:
        return _dss_module.NewContext()
    dss.Text.Command("ClearAll")
    return dss


def _close_context(dss: Any) -> None:
    """Give the context of an engine that is gone back for the next engine."""
    with _contexts_lock:
        _idle_contexts.append(dss)


class DSSEngine:
    """A private OpenDSS context holding at most one compiled feeder at a time."""

    def __init__(self) -> None:
        # Creating a context makes DSS C-API chdir to the directory of its first import;
        # undo that so the caller's relative paths keep working.
        cwd = os.getcwd()
        try:
            self._dss: Any = _open_context()
            self._dss.Basic.AllowChangeDir(False)
        finally:
            if os.getcwd() != cwd:
                os.chdir(cwd)
        weakref.finalize(self, _close_context, self._dss)
        try:
            self._bind_c_api()
            self._fast = True
        except (AttributeError, TypeError):  # a binding without these C-API entry points
            self._fast = False
        self._feeder_name: str | None = None
        #: Number of feeder compiles this engine has done (each one clears the circuit).
        self.n_compiles = 0
        #: Slot for the :class:`~g2gsim.grid.reuse.CircuitSnapshot` of the compiled circuit (read
        #: and written through :mod:`g2gsim.grid.reuse`); every compile drops it, so it never
        #: outlives the circuit it describes.
        self.circuit_snapshot: Any = None
        #: The component that set up the compiled circuit and has not solved it yet (so its
        #: next reset may start from it); every compile and every grid reset clears it.
        self.prepared_for: object | None = None

    def _bind_c_api(self) -> None:
        """Keep the context's C functions, error number and float64 global-result buffer at hand."""
        lib, ffi = self._dss.dss_lib, self._dss.dss_ffi
        self._ffi = ffi
        self._error = lib.Error_Get_NumberPtr()
        self._c_solve = lib.Solution_Solve
        self._c_solve_no_control = lib.Solution_SolveNoControl
        self._c_converged = lib.Solution_Get_Converged
        self._c_bus_mag_pu = lib.Circuit_Get_AllBusVmagPu_GR
        self._c_storage_idx = lib.Storages_Set_idx
        self._c_variables = lib.CktElement_Get_AllVariableValues_GR
        pointers = (ffi.new("char****"), ffi.new("double***"), ffi.new("int32_t***"), ffi.new("int8_t***"))
        counts = (ffi.new("int32_t**"), ffi.new("int32_t**"), ffi.new("int32_t**"), ffi.new("int32_t**"))
        lib.DSS_GetGRPointers(*pointers, *counts)
        self._gr_data = pointers[1][0]  # double**: where the buffer is now
        self._gr_count = counts[1][0]  # int32_t[4]: its element count first
        self._gr_seen: Any = None  # (data pointer, count) of the view below
        self._gr_view = np.zeros(0)

    def _check_error(self) -> None:
        """What OpenDSSDirect does after each C call: raise a pending error (exceptions on).
        Without that hook the error stays pending for :meth:`_raise_pending_error`."""
        if self._error[0]:
            check = getattr(self._dss, "_check_for_error", None)
            if check is not None:
                check()

    # -- identity -------------------------------------------------------------------------------
    @property
    def dss(self) -> Any:
        """The OpenDSSDirect context (for calls beyond this class; never share it)."""
        return self._dss

    @property
    def feeder_name(self) -> str | None:
        """Name of the compiled feeder, or None before the first compile."""
        return self._feeder_name

    def __repr__(self) -> str:
        return f"DSSEngine(feeder={self._feeder_name!r})"

    # -- text commands (setup time) ---------------------------------------------------------------
    def run(self, command: str) -> str:
        """Run one OpenDSS text command and return its result text; errors become GridError."""
        try:
            self._dss.Text.Command(command)
        except self._dss.DSSException as exc:
            raise GridError(f"{self._where()}: OpenDSS rejected {_short(command)!r}: {exc}") from exc
        self._raise_pending_error(f"{self._where()}: OpenDSS rejected {_short(command)!r}")
        return str(self._dss.Text.Result())

    def _raise_pending_error(self, context: str) -> None:
        """Raise a GridError if OpenDSS recorded an error without raising (exceptions off)."""
        number = int(self._dss.Error.Number())
        if number:
            raise GridError(f"{context}: (#{number}) {self._dss.Error.Description()}")

    def compile_feeder(self, feeder: Feeder) -> None:
        """Clear this engine and build `feeder`'s circuit; the working directory never moves."""
        cwd = os.getcwd()
        self._feeder_name = feeder.name
        self.circuit_snapshot = None
        self.prepared_for = None
        self.n_compiles += 1
        try:
            self.run("Clear")
            for command in feeder.commands:
                self.run(command)
        finally:
            if os.getcwd() != cwd:  # defensive: AllowChangeDir(False) should make this impossible
                os.chdir(cwd)
        if int(self._dss.Basic.NumCircuits()) == 0:
            raise GridError(f"feeder {feeder.name!r}: its commands defined no circuit")

    # -- solving ----------------------------------------------------------------------------------
    def solve(self, time_s: float, *, controls: bool = False) -> None:
        """Solve the power flow once: ``SolveNoControl`` (taps move only by command) or, with
        `controls`, ``Solve`` (OpenDSS's own regulator control). Non-convergence is a GridError
        naming the feeder and the simulation time `time_s`.
        """
        if not self._fast:
            self._solve_public(time_s, controls)
            return
        try:
            if controls:
                self._c_solve()
            else:
                self._c_solve_no_control()
            self._check_error()
        except self._dss.DSSException as exc:
            raise GridError(f"{self._where()}: the power flow at t = {time_s:g} s failed: {exc}") from exc
        if self._error[0]:  # exceptions off: the error is still pending
            self._raise_pending_error(f"{self._where()}: the power flow at t = {time_s:g} s failed")
        converged = self._c_converged()
        self._check_error()
        if not converged:
            self._not_converged(time_s)

    def _solve_public(self, time_s: float, controls: bool) -> None:
        """:meth:`solve` through OpenDSSDirect's public API (bindings without the fast path)."""
        solution = self._dss.Solution
        try:
            if controls:
                solution.Solve()
            else:
                solution.SolveNoControl()
        except self._dss.DSSException as exc:
            raise GridError(f"{self._where()}: the power flow at t = {time_s:g} s failed: {exc}") from exc
        self._raise_pending_error(f"{self._where()}: the power flow at t = {time_s:g} s failed")
        if not solution.Converged():
            self._not_converged(time_s)

    def _not_converged(self, time_s: float) -> None:
        """Raise the GridError of a power flow that did not converge at `time_s`."""
        solution = self._dss.Solution
        raise PowerFlowNotConverged(
            f"{self._where()}: the power flow at t = {time_s:g} s did not converge "
            f"(OpenDSS: solution not converged after {solution.Iterations()} iterations, "
            f"MaxIterations = {solution.MaxIterations()})"
        )

    def converged(self) -> bool:
        """Whether the last power flow converged."""
        return bool(self._dss.Solution.Converged())

    def iterations(self) -> int:
        """Iterations the last power flow took."""
        return int(self._dss.Solution.Iterations())

    def solver_settings(self) -> tuple[float, int]:
        """The power-flow tolerance (pu) and iteration limit in force."""
        solution = self._dss.Solution
        return float(solution.Convergence()), int(solution.MaxIterations())

    def set_solver_settings(self, tolerance: float, max_iterations: int) -> None:
        """Set the power-flow tolerance (pu) and iteration limit (only what differs is written)."""
        solution = self._dss.Solution
        if float(solution.Convergence()) != tolerance:
            solution.Convergence(tolerance)
        if int(solution.MaxIterations()) != max_iterations:
            solution.MaxIterations(max_iterations)

    def _where(self) -> str:
        """How error messages name this engine: by its feeder."""
        return f"feeder {self._feeder_name!r}" if self._feeder_name else "OpenDSS engine (no feeder compiled)"

    # -- reading results ----------------------------------------------------------------------------
    def node_names(self) -> list[str]:
        """Every node as ``bus.phase``, lower-case, in OpenDSS's node order."""
        return [str(name).lower() for name in self._dss.Circuit.AllNodeNames()]

    def bus_names(self) -> list[str]:
        """Every bus, lower-case, in OpenDSS's bus order."""
        return [str(name).lower() for name in self._dss.Circuit.AllBusNames()]

    def all_bus_mag_pu(self) -> np.ndarray:
        """Voltage magnitude (pu of each bus's base) of every node, in :meth:`node_names` order."""
        return self.bus_mag_pu_view().copy()

    def bus_mag_pu_view(self) -> np.ndarray:
        """Like :meth:`all_bus_mag_pu`, but a read-only view of OpenDSS's result buffer:
        valid only until the next OpenDSS call on this engine (index or copy it at once)."""
        if not self._fast:
            return np.asarray(self._dss.Circuit.AllBusMagPu(), dtype=float)
        self._c_bus_mag_pu()
        self._check_error()
        if self._error[0]:
            self._raise_pending_error(f"{self._where()}: reading bus voltages failed")
        data, count = self._gr_data[0], self._gr_count[0]
        if self._gr_seen is None or count != self._gr_seen[1] or data != self._gr_seen[0]:
            self._gr_view = self._result_view(data, count)
            self._gr_seen = (data, count)
        return self._gr_view

    def _result_view(self, data: Any, count: int) -> np.ndarray:
        """A read-only float64 view of `count` values at `data` (remade when the buffer moves)."""
        if count <= 0:
            return np.zeros(0)
        view = np.frombuffer(self._ffi.buffer(data, count * 8), dtype=np.float64)
        view.setflags(write=False)
        return view

    def regcontrol_names(self) -> list[str]:
        """Names of the compiled circuit's regulator controls, lower-case."""
        return [str(n).lower() for n in self._dss.RegControls.AllNames() if str(n).lower() != "none"]

    # -- fast element-API path (per step) --------------------------------------------------------
    def storage_index(self, name: str) -> int:
        """1-based index of Storage `name`, for :meth:`storage_variables`."""
        storages = self._dss.Storages
        wanted = name.lower()
        for idx, found in enumerate(storages.AllNames(), start=1):
            if str(found).lower() == wanted:
                return idx
        raise GridError(f"{self._where()} has no storage {name!r}")

    def storage_variables(self, idx: int) -> list[float]:
        """State variables of the Storage element at 1-based `idx` (``AllVariableValues``),
        activated by index through the C-API instead of by name (no name lookup per step)."""
        if not self._fast:
            self._dss.Storages.idx(idx)
            return list(self._dss.CktElement.AllVariableValues())
        self._c_storage_idx(idx)
        self._check_error()
        self._c_variables()
        self._check_error()
        if self._error[0]:
            self._raise_pending_error(f"{self._where()}: reading storage {idx}'s variables failed")
        return self._ffi.unpack(self._gr_data[0], self._gr_count[0])

    def load_index(self, name: str) -> int:
        """1-based index of Load `name`, for :meth:`set_load_kw_kvar`."""
        loads = self._dss.Loads
        wanted = name.lower()
        try:
            loads.Name(wanted)
        except self._dss.DSSException as exc:
            raise GridError(f"{self._where()} has no load {name!r}: {exc}") from exc
        if str(loads.Name()).lower() != wanted:
            raise GridError(f"{self._where()} has no load {name!r}")
        return int(loads.Idx())

    def set_load_kw_kvar(self, idx: int, kw: float, kvar: float) -> None:
        """Set a load's kW and kvar through the Loads interface (no text parsing, no Y rebuild)."""
        loads = self._dss.Loads
        loads.Idx(idx)
        loads.kW(kw)
        loads.kvar(kvar)


def _short(command: str, limit: int = 200) -> str:
    """A command shortened for an error message."""
    return command if len(command) <= limit else command[: limit - 3] + "..."
