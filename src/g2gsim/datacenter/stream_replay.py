"""A run of NumPy's scalar ``rng.random()`` / ``rng.standard_normal()`` calls, drawn in bulk.

A small fleet's observed ITL (SPEC 2.4) averages exact per-replica draws: per replica one
uniform, then one standard normal, from one stream, in a fixed order. Drawn call by call that
is two Python calls per replica and step, most of a small fleet's cost. This module gives the
same values, and leaves the generator in the same state, from one bulk read of the PCG64
stream: ``random()`` is ``(raw >> 11) * 2**-53`` of one 64-bit output; ``standard_normal()``
is NumPy's 256-layer ziggurat, which returns ``+-rabs * w[idx]`` from one output in about
98.5% of calls and otherwise reads more outputs (its wedge and tail). Outputs that may take
that slow path (a conservative test against the layer's threshold) are drawn the ordinary
way, one call each, and the outputs they consumed are skipped.

The layer widths ``w`` are NumPy's own doubles, read back from its output once per process
(:func:`ziggurat_tables`); the thresholds are computed from the ziggurat's geometry and
lowered by a relative 1e-6, so an output taken as fast is fast. When the generator is not a
PCG64 or the read-back does not reproduce NumPy exactly, :func:`interleaved_draws` returns
None and callers draw call by call.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import Any

import numpy as np

__all__ = ["StreamRewind", "ZigguratTables", "interleaved_block", "interleaved_draws", "ziggurat_tables"]

#: NumPy's ziggurat: the tail's start and the area of every layer (Marsaglia and Tsang, 256 layers).
_R = 3.6541528853610088
_AREA = 0.00492867323399
_MASK52 = np.uint64((1 << 52) - 1)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53: NumPy's next_double
#: An output taken as fast is below (1 - this) times its layer's computed threshold.
_THRESHOLD_MARGIN = 1e-6
#: Outputs one slow standard normal may consume, at most, before the bulk path gives up.
_SLOW_WINDOW = 64


class ZigguratTables:
    """Per layer: the width w (NumPy's double: a fast draw is ``rabs * w``) and a threshold on
    rabs under which NumPy's draw surely takes one output (0 for the layer that never does)."""

    __slots__ = ("threshold", "width")

    def __init__(self, width: np.ndarray, threshold: np.ndarray) -> None:
        self.width = width
        self.threshold = threshold


def _layer_edges() -> list[float]:
    """The ziggurat's layer edges x[0..255] (x[255] = r, x[0] the base strip's width)."""
    edges = [0.0] * 256
    edges[255] = _R
    for i in range(255, 1, -1):
        edges[i - 1] = math.sqrt(-2.0 * math.log(_AREA / edges[i] + math.exp(-0.5 * edges[i] * edges[i])))
    edges[0] = _AREA / math.exp(-0.5 * _R * _R)
    return edges


def _thresholds(edges: list[float]) -> np.ndarray:
    """Conservative fast-path thresholds on rabs per layer (uint64)."""
    ratios = [_R / edges[0], 0.0] + [edges[i - 1] / edges[i] for i in range(2, 256)]
    scale = float(1 << 52) * (1.0 - _THRESHOLD_MARGIN)
    return np.array([int(r * scale) for r in ratios], dtype=np.uint64)


def _decode(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer index, sign bit and 52-bit magnitude of NumPy's ziggurat from 64-bit outputs."""
    return (
        (raw & np.uint64(0xFF)).astype(np.intp),
        (raw >> np.uint64(8)) & np.uint64(1),
        (raw >> np.uint64(9)) & _MASK52,
    )


def _read_widths(edges: list[float], chunks: int = 64, draws: int = 160) -> np.ndarray | None:
    """NumPy's layer widths, recovered exactly from a fixed stream: its normals and the raw
    outputs under them, paired where a normal is ``+-rabs * w`` for the computed w (to 1e-9;
    a slow draw shifts the normals after it against the outputs, so short chunks are read and
    a few shifts tried), then for each layer the double that reproduces its pairs. None when
    a layer has no double reproducing all but 1% of them (NumPy's ziggurat is not the one
    this module knows)."""
    approx = np.array(edges) / float(1 << 52)
    raw_gen, normal_gen = np.random.PCG64(20261203), np.random.PCG64()
    normal_draws = np.random.Generator(normal_gen)
    xs, zs, layers = [], [], []
    for _ in range(chunks):
        normal_gen.state = raw_gen.state
        raw = raw_gen.random_raw(draws + 8)
        normals = np.abs(normal_draws.standard_normal(draws))
        idx, _, rabs = _decode(raw)
        magnitude = np.maximum(rabs.astype(np.float64), 1.0)
        for shift in range(8):
            x, layer = magnitude[shift : shift + draws], idx[shift : shift + draws]
            hit = np.abs(normals / x / approx[layer] - 1.0) < 1e-9
            xs.append(x[hit])
            zs.append(normals[hit])
            layers.append(layer[hit])
    layer_of = np.concatenate(layers)
    order = np.argsort(layer_of, kind="stable")
    bounds = np.searchsorted(layer_of[order], np.arange(257))
    x_all, z_all = np.concatenate(xs)[order], np.concatenate(zs)[order]
    widths = approx.copy()  # layer 1 keeps the computed width: it always takes the slow path
    for i in (0, *range(2, 256)):
        x, z = x_all[bounds[i] : bounds[i + 1]], z_all[bounds[i] : bounds[i + 1]]
        if x.size < 3:
            return None
        scores = [(int(np.count_nonzero(x * w == z)), w) for w in _neighbours(float(np.median(z / x)), 4)]
        best, width = max(scores)
        if best < 0.99 * x.size:
            return None
        widths[i] = width
    return widths


def _neighbours(value: float, count: int) -> list[float]:
    """`value` and the `count` doubles on either side of it."""
    below, above, out = value, value, [value]
    for _ in range(count):
        below, above = math.nextafter(below, -math.inf), math.nextafter(above, math.inf)
        out += [below, above]
    return out


@functools.cache
def ziggurat_tables() -> ZigguratTables | None:
    """NumPy's ziggurat tables as this module uses them (once per process; None if they could
    not be recovered exactly, and the bulk path is then off)."""
    edges = _layer_edges()
    widths = _read_widths(edges)
    return None if widths is None else ZigguratTables(widths, _thresholds(edges))


def interleaved_draws(rng: np.random.Generator, normal: np.ndarray) -> np.ndarray | None:
    """The values of ``[rng.standard_normal() if k else rng.random() for k in normal]``, with
    `rng` left exactly where those calls leave it; None (and `rng` untouched) when the bulk
    path does not apply (not a PCG64, tables not recovered, a slow draw out of range)."""
    drawn = interleaved_block(rng, normal)
    return None if drawn is None else drawn[0]


def interleaved_block(rng: np.random.Generator, normal: np.ndarray) -> tuple[np.ndarray, StreamRewind] | None:
    """:func:`interleaved_draws`, and a :class:`StreamRewind` that puts `rng` back to just
    after any number of the first draws (for a block whose later steps are given back)."""
    tables = ziggurat_tables()
    bits = rng.bit_generator
    if tables is None or type(bits) is not np.random.PCG64:
        return None
    count = int(normal.size)
    start: Any = bits.state
    raw = bits.random_raw(count + count // 8 + _SLOW_WINDOW)
    idx, sign, rabs = _decode(raw)
    slow = _slow_normals(start, raw, normal, np.flatnonzero(rabs >= tables.threshold[idx]))
    if slow is None:
        bits.state = start
        return None
    values_at, extras, consumed = slow
    where: np.ndarray | slice = slice(0, count)
    extra_before = None
    if extras:
        steps = np.zeros(count + 1, dtype=np.intp)  # extra outputs read by the draw before
        for draw, extra in extras:
            steps[draw + 1] += extra
        extra_before = np.cumsum(steps)
        where = np.arange(count) + extra_before[:count]
    values = (raw[where] >> np.uint64(11)).astype(np.float64)
    values *= _TO_UNIT
    z = rabs[where].astype(np.float64)
    z *= tables.width[idx[where]]
    z *= 1.0 - 2.0 * sign[where]  # the sign bit: an exact negation
    np.copyto(values, z, where=normal)
    for draw, value in values_at:
        values[draw] = value
    bits.state = start
    bits.advance(consumed)
    return values, StreamRewind(bits, start, extra_before)


class StreamRewind:
    """Where a generator stood after each draw of one bulk read: :meth:`to` puts it back
    to just after the first `draws` of them (every output those draws read, none after)."""

    __slots__ = ("_bits", "_extra_before", "_start")

    def __init__(self, bits: np.random.PCG64, start: Any, extra_before: np.ndarray | None) -> None:
        self._bits, self._start, self._extra_before = bits, start, extra_before

    def to(self, draws: int) -> None:
        """Put the generator just after the read's first `draws` draws."""
        extra = 0 if self._extra_before is None else int(self._extra_before[draws])
        self._bits.state = self._start
        self._bits.advance(draws + extra)


def _scratch() -> tuple[np.random.PCG64, np.random.Generator]:
    """This thread's spare generator, for the draws taken the ordinary way."""
    pair: tuple[np.random.PCG64, np.random.Generator] | None = getattr(_SPARE, "pair", None)
    if pair is None:
        bits = np.random.PCG64(0)
        pair = _SPARE.pair = (bits, np.random.Generator(bits))
    return pair


_SPARE = threading.local()


def _slow_normals(
    start: Any, raw: np.ndarray, normal: np.ndarray, candidates: np.ndarray
) -> tuple[list[tuple[int, float]], list[tuple[int, int]], int] | None:
    """Draw, the ordinary way, every standard normal whose first output may take the slow
    path. Returns the (draw, value) pairs, the (draw, extra outputs read) pairs and the outputs
    the whole run consumes; None if a slow draw runs past the outputs read."""
    count = int(normal.size)
    bits, generator = _scratch()
    bits.state = start
    at = 0  # outputs the spare generator has read
    values: list[tuple[int, float]] = []
    extras: list[tuple[int, int]] = []
    offset, free = 0, 0  # output j holds draw j - offset; outputs before `free` are used
    for j in candidates.tolist():
        if j < free:
            continue
        draw = j - offset
        if draw >= count:
            break
        if not normal[draw]:
            continue
        bits.advance(j - at)
        values.append((draw, float(generator.standard_normal())))
        after = int(bits.random_raw())
        used = _outputs_used(raw, j, after)
        if used == 0:
            return None
        at = j + used + 1
        if used > 1:
            extras.append((draw, used - 1))
            offset += used - 1
        free = j + used
    if count + offset > raw.size:
        return None
    return values, extras, count + offset


def _outputs_used(raw: np.ndarray, j: int, after: int) -> int:
    """How many outputs the normal drawn from output j read, given the output that followed
    it (0: not found within the window)."""
    following = raw[j + 1 : j + _SLOW_WINDOW].tolist()
    return following.index(after) + 1 if after in following else 0
