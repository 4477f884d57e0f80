"""What a site needs to compute its steps in blocks without changing a single number.

Between two state changes a site computes the power, noise and ITL of a block of steps in
one vectorised pass; a step then only publishes its row. The random streams must still be
consumed exactly as step-by-step code would consume them. Drawing n standard normals in one
call gives the same values as drawing them in pieces (PCG64 hands them out in order), so a
block draws its steps' normals at once; when a command cuts a block short, the normals of
the steps that were not used are given back (:class:`NormalStream`).

A stream that owns its generator can also have its normals drawn ahead, in chunks, on one
helper thread of the process (:func:`draw_ahead`): NumPy fills them without holding the
interpreter lock, so on a second core they cost the run nothing, and the values are the
same because each generator is still drawn from in order.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Block", "BlockLength", "NormalStream", "draw_ahead", "draws_ahead"]

_AHEAD_ENV = "G2GSIM_DRAW_AHEAD"
_FIRST_CHUNK = 1 << 12  # normals in a stream's first chunk drawn ahead; doubled per chunk
_LONGEST_CHUNK = 1 << 17  # 1 MB of float64
_CHUNKS_AHEAD = 2  # chunks in flight per stream


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _default_ahead() -> bool:
    """On when the process may use more than one CPU, unless ``G2GSIM_DRAW_AHEAD`` says otherwise."""
    value = os.environ.get(_AHEAD_ENV, "").strip().lower()
    if value in {"0", "false", "no", "off"}:
        return False
    if value in {"1", "true", "yes", "on"}:
        return True
    if value:
        raise ValueError(f"{_AHEAD_ENV} must be 0/1, true/false, yes/no or on/off, got {value!r}")
    return _usable_cpus() > 1


class _Drawer:
    """The one helper thread of a process that draws normals ahead for every stream.

    One worker runs the chunks in the order they were asked for, so each generator is drawn
    from in order. A forked child gets a fresh thread (a fork copies no threads).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pid = -1
        self.enabled: bool | None = None  # None: not decided yet (read from the environment)

    def submit(self, rng: np.random.Generator, count: int) -> Future[np.ndarray]:
        """Draw `count` standard normals of `rng` on the helper thread, after every earlier chunk."""
        with self._lock:
            if self._executor is None or self._pid != os.getpid():
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="g2gsim-normals")
                self._pid = os.getpid()
            return self._executor.submit(rng.standard_normal, count)

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's thread and lock are not this process's."""
        self._lock = threading.Lock()
        self._executor = None
        self._pid = -1


_DRAWER = _Drawer()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_DRAWER.forget_after_fork)


def draw_ahead(enabled: bool | None) -> None:
    """Whether new noise streams draw their normals ahead on a helper thread (results are
    identical either way). None: the default, on when more than one CPU is usable, unless
    the environment variable ``G2GSIM_DRAW_AHEAD`` is 0 or 1."""
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"draw_ahead takes True, False or None, got {enabled!r}")
    _DRAWER.enabled = enabled


def draws_ahead() -> bool:
    """Whether new noise streams draw their normals ahead (see :func:`draw_ahead`)."""
    if _DRAWER.enabled is None:
        return _default_ahead()
    return _DRAWER.enabled


class NormalStream:
    """The standard normals of one generator, handed out in stream order a block at a time.

    Normals a block did not use go back with :meth:`unused`. Without `rewind` they are kept
    and handed out first by the next :meth:`take` (the generator is used only through this
    stream). With `rewind` the generator itself is put back to just after the last normal
    used, for a consumer that also draws from it directly. `ahead` (not with `rewind`; None:
    :func:`draws_ahead`) draws the normals ahead in chunks on the helper thread; the
    generator then belongs to the stream until :meth:`close`.
    """

    def __init__(self, rng: np.random.Generator, *, rewind: bool = False, ahead: bool | None = None) -> None:
        self.rng = rng
        self._rewind = rewind
        self._kept = np.zeros(0)
        self._state: Mapping[str, Any] | None = None
        self._taken = 0
        self._buffer = np.zeros(0)  # reused by every take: what a take returns lives until the next
        if ahead is None:
            ahead = not rewind and draws_ahead()
        if ahead and rewind:
            raise ValueError("a rewinding stream shares its generator, so it cannot draw ahead")
        self._pending: deque[Future[np.ndarray]] | None = deque() if ahead else None
        self._chunk = np.zeros(0)  # drawn ahead, handed out from position _at
        self._at = 0
        self._next_chunk = _FIRST_CHUNK
        self._pid = os.getpid()
        if ahead:
            for _ in range(_CHUNKS_AHEAD):
                self._ask()

    @property
    def ahead(self) -> bool:
        """Whether this stream draws its normals ahead on the helper thread."""
        return self._pending is not None

    def take(self, count: int) -> np.ndarray:
        """The stream's next `count` standard normals (valid until the next take; do not modify)."""
        if self._rewind:
            self._state = self.rng.bit_generator.state
            self._taken = count
            return self.rng.standard_normal(out=self._room(count))
        kept = self._kept
        if not kept.size:
            return self._draw(count, None)
        if kept.size >= count:
            self._kept = kept[count:]
            return kept[:count]
        self._kept = np.zeros(0)
        return self._draw(count, kept)

    def _draw(self, count: int, first: np.ndarray | None) -> np.ndarray:
        """`first` (normals given back, never the reused buffer), then the next normals of the
        generator: `count` in all."""
        start = self._at
        if first is None and self._pending is not None and start + count <= self._chunk.size:
            self._at = start + count
            return self._chunk[start : self._at]  # inside the chunk drawn ahead: no copy
        out = self._room(count)
        filled = 0
        if first is not None:
            out[: first.size] = first
            filled = first.size
        if self._pending is None:
            self.rng.standard_normal(out=out[filled:])
            return out
        while filled < count:
            if self._at == self._chunk.size:
                if not self._pending:
                    raise RuntimeError("this normal stream was closed; a new run makes a new one")
                if self._pid != os.getpid():
                    raise RuntimeError(
                        "a noise stream that draws ahead cannot go on in a forked process (its helper "
                        "thread stayed in the parent); call g2gsim.datacenter.draw_ahead(False) "
                        "before starting a run you fork in the middle of"
                    )
                self._chunk, self._at = self._pending.popleft().result(), 0
                self._ask()
            n = min(count - filled, self._chunk.size - self._at)
            out[filled : filled + n] = self._chunk[self._at : self._at + n]
            filled += n
            self._at += n
        return out

    def _ends_the_chunk_taken(self, values: np.ndarray) -> bool:
        """Whether `values` are the last normals handed out of the chunk drawn ahead."""
        chunk = self._chunk
        return (
            values.base is chunk
            and values.size <= self._at
            and values.__array_interface__["data"][0] + values.nbytes
            == chunk.__array_interface__["data"][0] + self._at * chunk.itemsize
        )

    def _ask(self) -> None:
        """Have the helper thread draw one more chunk (each twice the last, up to 1 MB)."""
        assert self._pending is not None
        self._pending.append(_DRAWER.submit(self.rng, self._next_chunk))
        self._next_chunk = min(2 * self._next_chunk, _LONGEST_CHUNK)

    def close(self) -> None:
        """Done with the stream: chunks not yet drawn are dropped; a later take that needs
        new normals fails."""
        if self._pending is not None:
            for future in self._pending:
                future.cancel()
            self._pending.clear()
            self._chunk, self._at = np.zeros(0), 0

    def _room(self, count: int) -> np.ndarray:
        """The first `count` entries of the reused buffer (grown when too small)."""
        if self._buffer.size < count:
            self._buffer = np.empty(count)
        return self._buffer[:count]

    def unused(self, values: np.ndarray) -> None:
        """Give back the tail of the last :meth:`take` that was not used."""
        if not values.size:
            return
        if not self._rewind:
            if not self._kept.size and self._ends_the_chunk_taken(values):
                self._at -= values.size  # still in the chunk drawn ahead: step back
                return
            kept = np.concatenate((values, self._kept)) if self._kept.size else values.copy()
            self._kept = kept
            return
        if self._state is None or values.size > self._taken:
            raise ValueError(f"{values.size} normals given back, but the last take drew {self._taken}")
        self.rng.bit_generator.state = self._state
        self.rng.standard_normal(self._taken - values.size)  # what the steps before the cut used
        self._state = None


class BlockLength:
    """Steps per block, within [shortest, longest]: doubled after a block that ran to its end
    with nothing changing there; kept after one that ended just where the state changed (its
    length matches the rhythm of the commands, e.g. a controller every ten steps); after one
    that a command cut short, the steps it used (halved when that is not given)."""

    def __init__(self, first: int = 16, shortest: int = 4, longest: int = 128) -> None:
        if not 1 <= shortest <= first <= longest:
            raise ValueError(
                f"block lengths need 1 <= shortest <= first <= longest, got {shortest}, {first}, {longest}"
            )
        self.value = first
        self.shortest = shortest
        self.longest = longest

    def ran_out(self, *, changed: bool = False) -> None:
        """The last block was used to its end; `changed`: the state changed at its end."""
        if not changed:
            self.value = min(2 * self.value, self.longest)

    def cut(self, used: int | None = None) -> None:
        """The last block was cut short by a change nobody could know ahead, after `used` steps."""
        value = self.value // 2 if used is None else used
        self.value = min(max(value, self.shortest), self.longest)


def _keep_all(used: int) -> None:
    """Nothing to give back: a block that drew no latency normals ahead."""


@dataclass(frozen=True, slots=True, eq=False)
class BlockLatency:
    """A block's observed ITL, drawn when the block starts: `rows` (steps, models), s, or
    None when each step draws its own; `unused(used)` gives back the draws of every step
    after the first `used` (the block was cut), so the stream goes on as step by step."""

    rows: np.ndarray | None
    unused: Callable[[int], None] = _keep_all


@dataclass(eq=False)
class Block:
    """Steps start .. stop - 1 of a site, computed ahead.

    `normals` are the noise normals the block took (`noise_draws` per step), `latency` its
    observed ITL. The row lists hold, per step, its time and read-only views of its recorded
    phase power, model power and ITL (what the step publishes).
    """

    start: int
    stop: int
    servers: np.ndarray  # (steps, servers) power of every allocated server, W
    normals: np.ndarray
    noise_draws: int
    latency: BlockLatency
    times: list[float]
    phase_rows: list[np.ndarray]
    model_rows: list[np.ndarray]
    itl_rows: list[np.ndarray]
