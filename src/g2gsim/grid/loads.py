"""Per-step load power: the batched kW/kvar writer and the precomputed profile injections.

:class:`LoadBatch` writes the kW and kvar of a fixed set of Load elements in two DSS C-API
calls. The batch setter applies, element by element, the same property setter as the Loads
interface (``Loads.Idx`` then ``Loads.kW``/``Loads.kvar``) with the flag that interface uses
(``SetterFlags_AvoidFullRecalc``), so a write changes the loads' power without rebuilding
their primitive admittances or the system Y matrix, and the solved circuit is the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from g2gsim.grid.circuit import context_of
from g2gsim.grid.config import GeneratorAttachment, LoadAttachment, tan_phi
from g2gsim.grid.engine import DSSEngine
from g2gsim.grid.errors import GridError

__all__ = ["LoadBatch", "injection_schedule", "phase_kw"]


class LoadBatch:
    """kW and kvar of a fixed set of Load elements (1-based `indices`), written in two calls.

    Fill :attr:`kw` and :attr:`kvar` in place, then :meth:`write`. :meth:`close` frees the
    batch; it must run before the engine clears the circuit the batch points into.
    """

    def __init__(self, engine: DSSEngine, indices: list[int]) -> None:
        dss = context_of(engine)
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

    def row_writer(self, kw: np.ndarray, kvar: np.ndarray, *, mirror: bool = False) -> Callable[[int], None]:
        """A writer of row i of two C-ordered (steps, loads) float64 arrays, handed to OpenDSS
        from where they lie (a stretch's loads, :meth:`OpenDSSGrid.step_stretch`); with
        `mirror`, :attr:`kw` and :attr:`kvar` are set to the row too (else left as they were)."""
        for array in (kw, kvar):
            if array.ndim != 2 or array.shape[1] != self.kw.size or array.dtype != np.float64:
                raise ValueError(f"rows of {self.kw.size} float64 loads expected, got {array.dtype} {array.shape}")
            if not array.flags.c_contiguous:
                raise ValueError("the rows of a stretch's loads must be one C-ordered array")
        size, batch, write, setter, flags = self._size, self._batch, self._write, self._set, self._flags
        kw_property, kvar_property = self._kw_property, self._kvar_property
        if not size:
            return lambda i: None
        kw_pointer = self._ffi.cast("double*", self._ffi.from_buffer(kw))
        kvar_pointer = self._ffi.cast("double*", self._ffi.from_buffer(kvar))

        def write_row(i: int, _arrays: tuple[np.ndarray, np.ndarray] = (kw, kvar)) -> None:  # keeps them alive
            if mirror:
                self.kw[:], self.kvar[:] = kw[i], kvar[i]
            offset = i * size
            write(batch, size, kw_property, setter, kw_pointer + offset, flags)
            write(batch, size, kvar_property, setter, kvar_pointer + offset, flags)

        return write_row

    def close(self) -> None:
        """Free the batch (before the circuit it points into is cleared)."""
        if self._batch is not None:
            self._lib.Batch_Dispose(self._batch)
            self._batch, self._size = None, 0


def phase_kw(power_w: Any) -> tuple[Any, Any, Any]:
    """kW of phases a, b, c from a site power sample in W.

    A float64 array goes through Python floats (the same IEEE arithmetic as NumPy scalars,
    for less overhead); anything else keeps its own scalar arithmetic.
    """
    if isinstance(power_w, np.ndarray) and power_w.dtype == np.float64:
        w_a, w_b, w_c = power_w[:3].tolist()
        return w_a / 1e3, w_b / 1e3, w_c / 1e3
    return power_w[0] / 1e3, power_w[1] / 1e3, power_w[2] / 1e3


def injection_schedule(
    generators: tuple[GeneratorAttachment, ...], loads: tuple[LoadAttachment, ...], times: np.ndarray, *, grid: str
) -> tuple[np.ndarray, np.ndarray]:
    """Per-phase kW and kvar of every generator and external load at every step time.

    Columns are three per attachment (phases a, b, c: a third of the profile's total each),
    generators negative (injection), generators first, as the grid writes them to OpenDSS.
    """
    attachments = [(g, -1.0) for g in generators] + [(ld, 1.0) for ld in loads]
    kw = np.zeros((len(times), 3 * len(attachments)))
    kvar = np.zeros_like(kw)
    for j, (spec, sign) in enumerate(attachments):
        per_phase = sign * np.asarray(spec.profile.power_kw(times), dtype=float) / 3.0
        if per_phase.shape != times.shape or not np.isfinite(per_phase).all():
            raise ValueError(f"grid {grid!r}: the profile of {spec.name!r} gives non-finite or misshaped power")
        kw[:, 3 * j : 3 * j + 3] = per_phase[:, None]
        kvar[:, 3 * j : 3 * j + 3] = (per_phase * tan_phi(spec.power_factor))[:, None]
    return kw, kvar


class InjectionProfiles:
    """Generator and external-load kW/kvar per grid step, evaluated a chunk of steps at a time
    (so memory does not grow with the horizon); the first chunk at once, so a bad profile is an
    error before the run."""

    #: Grid steps whose profiles are evaluated together.
    CHUNK = 1024

    def __init__(
        self,
        generators: tuple[GeneratorAttachment, ...],
        loads: tuple[LoadAttachment, ...],
        step_times: Callable[[int, int], np.ndarray],
        n_steps: int,
        *,
        grid: str,
    ) -> None:
        self._generators, self._loads = generators, loads
        self._step_times = step_times
        self._n_steps = n_steps
        self._grid = grid
        self.width = 3 * (len(generators) + len(loads))
        self._first = 0
        self._load(0)

    def _load(self, first: int) -> None:
        stop = min(first + self.CHUNK, self._n_steps)
        times = np.asarray(self._step_times(first, stop), dtype=float)
        self._kw, self._kvar = injection_schedule(self._generators, self._loads, times, grid=self._grid)
        self._first = first

    def row(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """kW and kvar of every injection phase at step k, signed as written to OpenDSS."""
        row = k - self._first
        if not 0 <= row < self._kw.shape[0]:
            self._load(k)
            row = 0
        return self._kw[row], self._kvar[row]

    def rows_into(self, first: int, kw: np.ndarray, kvar: np.ndarray) -> None:
        """:meth:`row` of steps first, first + 1, .. into the rows of `kw` and `kvar`
        (the profiles evaluated in the same chunks as row by row)."""
        done, count = 0, len(kw)
        while done < count:
            k = first + done
            row = k - self._first
            if not 0 <= row < self._kw.shape[0]:
                self._load(k)
                row = 0
            take = min(count - done, self._kw.shape[0] - row)
            kw[done : done + take] = self._kw[row : row + take]
            kvar[done : done + take] = self._kvar[row : row + take]
            done += take
