"""What a site needs to compute its steps in blocks without changing a single number.

Between two state changes a site computes the power, noise and ITL of a block of steps in
one vectorised pass; a step then only publishes its row. The random streams must still be
consumed exactly as step-by-step code would consume them. Drawing n standard normals in one
call gives the same values as drawing them in pieces (PCG64 hands them out in order), so a
block draws its steps' normals at once; when a command cuts a block short, the normals of
the steps that were not used are given back (:class:`NormalStream`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Block", "BlockLength", "NormalStream"]


class NormalStream:
    """The standard normals of one generator, handed out in stream order a block at a time.

    Normals a block did not use go back with :meth:`unused`. Without `rewind` they are kept
    and handed out first by the next :meth:`take` (the generator is used only through this
    stream). With `rewind` the generator itself is put back to just after the last normal
    used, for a consumer that also draws from it directly.
    """

    def __init__(self, rng: np.random.Generator, *, rewind: bool = False) -> None:
        self.rng = rng
        self._rewind = rewind
        self._kept = np.zeros(0)
        self._state: Mapping[str, Any] | None = None
        self._taken = 0
        self._buffer = np.zeros(0)  # reused by every take: what a take returns lives until the next

    def take(self, count: int) -> np.ndarray:
        """The stream's next `count` standard normals (valid until the next take; do not modify)."""
        if self._rewind:
            self._state = self.rng.bit_generator.state
            self._taken = count
            return self.rng.standard_normal(out=self._room(count))
        kept = self._kept
        if not kept.size:
            return self.rng.standard_normal(out=self._room(count))
        if kept.size >= count:
            self._kept = kept[count:]
            return kept[:count]
        self._kept = np.zeros(0)
        out = np.empty(count)
        out[: kept.size] = kept
        self.rng.standard_normal(out=out[kept.size :])
        return out

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


@dataclass(eq=False)
class Block:
    """Steps start .. stop - 1 of a site, computed ahead.

    `normals` and `latency` are the noise and latency normals the block took (per step:
    `noise_draws`, `latency_draws`). The row lists hold, per step, its time and read-only
    views of its recorded phase power, model power and ITL (what the step publishes).
    """

    start: int
    stop: int
    servers: np.ndarray  # (steps, servers) power of every allocated server, W
    normals: np.ndarray
    noise_draws: int
    latency: np.ndarray | None  # None: the ITL is sampled at each step
    latency_draws: int
    times: list[float]
    phase_rows: list[np.ndarray]
    model_rows: list[np.ndarray]
    itl_rows: list[np.ndarray]
