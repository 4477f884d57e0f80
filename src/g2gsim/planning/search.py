"""The largest batch that meets every bound: exponential then binary search, trusting only evaluated points.

A :class:`Bound` is a named quantity of the batch (ITL, TTFT, KV-cache memory) and the most it
may be. :func:`largest_batch_meeting` finds, over the integers in [lo, hi] or over a sorted set
of candidates (the feasible batch sizes), the largest batch that meets all bounds together, and
each bound's own largest batch, so a caller can say which bound binds. Every bound is assumed
non-decreasing in the batch; the search brackets by doubling the index from the smallest batch,
never beyond ``hi`` (an extrapolated bound is never trusted), then bisects between the last
batch that passed and the first that failed. The batch it returns was evaluated against every
bound and met each one.

:func:`logistic_batch_limit` is the closed form for one ITL bound on a logistic fit, kept as a
cross-check of the search.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Bound",
    "SearchResult",
    "largest_batch_meeting",
    "largest_batch_under",
    "logistic_batch_limit",
]

#: What :attr:`SearchResult.binding` says when no bound binds inside the searched range.
RANGE = "range"


@dataclass(frozen=True)
class Bound:
    """A named quantity of the batch and the most it may be (met when finite and <= limit)."""

    name: str
    value: Callable[[int], float]
    limit: float
    unit: str = ""

    def meets(self, batch: int) -> bool:
        """Whether the bound holds at `batch` (a non-finite value never does)."""
        got = float(self.value(batch))
        return math.isfinite(got) and got <= self.limit


@dataclass(frozen=True)
class SearchResult:
    """The largest batch meeting every bound, and each bound's own largest batch.

    `binding` names the bound(s) with the smallest own limit (joined by "+"), or
    ``"range"`` when every bound allows the top of the searched range.
    """

    batch: int | None
    limits: dict[str, int | None]
    binding: str
    values: dict[str, float] = field(default_factory=dict)  # each bound's value at `batch`
    top: int = 0  # the largest batch searched


def _largest_passing(ok: Callable[[int], bool], lo: int, hi: int, candidates: Sequence[int] | None) -> int | None:
    """Largest batch with ok(batch) for a monotone predicate (True up to some batch, then False)."""
    if candidates is not None:
        points = [b for b in sorted({int(b) for b in candidates}) if lo <= b <= hi]
        n = len(points)
        at: Callable[[int], int] = points.__getitem__
    else:
        n = hi - lo + 1
        at = lambda i: lo + i  # noqa: E731
    if n <= 0:
        return None
    cache: dict[int, bool] = {}

    def passes(i: int) -> bool:
        if i not in cache:
            cache[i] = bool(ok(at(i)))
        return cache[i]

    if not passes(0):
        return None
    good, step = 0, 1
    bad: int | None = None
    while True:  # bracket: double the step from the last good index
        probe = min(good + step, n - 1)
        if probe == good:
            break
        if passes(probe):
            good = probe
            if probe == n - 1:
                break
            step *= 2
        else:
            bad = probe
            break
    if bad is not None:
        while bad - good > 1:  # bisect (good passes, bad fails)
            mid = (good + bad) // 2
            if passes(mid):
                good = mid
            else:
                bad = mid
    return int(at(good))


def largest_batch_under(
    latency: Callable[[int], float],
    deadline_s: float,
    lo: int,
    hi: int,
    *,
    candidates: Sequence[int] | None = None,
) -> int | None:
    """Largest batch with ``latency(b) <= deadline_s`` for a non-decreasing black box.

    Searches the integers in [lo, hi] (or the sorted `candidates`, e.g. measured batch sizes);
    None when the smallest batch already misses. Only evaluated points are trusted.
    """
    return _largest_passing(Bound("latency", latency, deadline_s).meets, lo, hi, candidates)


def _binding(limits: dict[str, int | None], top: int) -> str:
    if not limits:
        return RANGE
    if any(v is None for v in limits.values()):
        return "+".join(name for name, v in limits.items() if v is None)
    smallest = min(v for v in limits.values() if v is not None)
    if smallest >= top:
        return RANGE
    return "+".join(name for name, v in limits.items() if v == smallest)


def largest_batch_meeting(
    bounds: Sequence[Bound], lo: int, hi: int, *, candidates: Sequence[int] | None = None
) -> SearchResult:
    """The largest batch in [lo, hi] (or among `candidates`) meeting every bound, and each bound's own limit.

    The returned batch is evaluated once more against every bound; a bound that is not
    monotone in the batch and fails there raises (the search's premise does not hold).
    """
    names = [b.name for b in bounds]
    if len(set(names)) != len(names):
        raise ValueError(f"bounds need distinct names, got {names}")
    limits = {b.name: _largest_passing(b.meets, lo, hi, candidates) for b in bounds}
    batch = _largest_passing(lambda x: all(b.meets(x) for b in bounds), lo, hi, candidates)
    top = hi if candidates is None else max((int(c) for c in candidates if lo <= c <= hi), default=lo)
    values: dict[str, float] = {}
    if batch is not None:
        for bound in bounds:
            values[bound.name] = float(bound.value(batch))
            if not bound.meets(batch):
                raise ValueError(f"bound {bound.name!r} is not monotone in the batch: batch {batch} fails it")
    return SearchResult(batch, limits, _binding(limits, top), values, top)


def _logistic(fit: Any, x: float) -> float:
    return float(fit.eval_x(x))


def logistic_batch_limit(fit: Any, deadline_s: float, lo: int, hi: int) -> int | None:
    """Largest integer batch in [lo, hi] whose logistic-fit latency is <= deadline (closed form).

    The fit is y = b0 + L sigmoid(k (log2 b - x0)); with q = (deadline - b0) / L in (0, 1) and
    L k > 0, log2 b <= x0 + ln(q / (1 - q)) / k. None when even `lo` misses the deadline; the
    result is checked against the fit itself, so rounding never lets a batch past the deadline.
    """
    L, x0, k, b0 = float(fit.L), float(fit.x0), float(fit.k), float(fit.b0)
    if not all(math.isfinite(v) for v in (L, x0, k, b0)) or lo > hi or lo < 1:
        return None
    if _logistic(fit, math.log2(lo)) > deadline_s:
        return None
    if L == 0.0 or k == 0.0:
        return hi  # flat and lo met the deadline
    q = (deadline_s - b0) / L
    increasing = L * k > 0
    if increasing:
        if q >= 1.0:
            return hi  # the upper asymptote is within the deadline
        if q <= 0.0:
            return None  # unreachable given lo passed, but keep the algebra honest
        x_star = x0 + math.log(q / (1.0 - q)) / k
        # a flat fit can put the crossing far beyond hi (2**x_star would overflow)
        batch = hi if x_star >= math.log2(hi) else min(hi, max(lo, math.floor(2.0**x_star)))
    else:
        batch = hi  # non-increasing latency: the largest batch is the worst only at lo
    # guard against rounding at the boundary: step down until the fit agrees
    while batch > lo and _logistic(fit, math.log2(batch)) > deadline_s:
        batch -= 1
    return batch
