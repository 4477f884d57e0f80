"""SLO-bounded batch planning: the largest and the best-throughput batch within an ITL deadline.

Two ways to find the largest batch b with latency(b) <= deadline:

- :func:`logistic_batch_limit` solves the logistic fit y = b0 + L sigmoid(k (log2 b - x0))
  in closed form: with q = (deadline - b0) / L in (0, 1), log2 b <= x0 + ln(q / (1 - q)) / k
  (for an increasing curve, L k > 0). The result is clipped to the measured range and
  checked by evaluating the fit there (rounding never lets a batch past the deadline).
- :func:`largest_batch_under` works for any latency function that is non-decreasing in the
  batch: it brackets by doubling from the smallest batch, never beyond ``hi`` (the largest
  batch the data covers -- an extrapolated bound is never trusted), then bisects between
  the last batch that met the deadline and the first that did not. Every returned batch
  has been evaluated and met the deadline.

:func:`plan_batches` builds the per-model table (largest feasible batch, best-throughput
feasible batch) that ``g2gsim plan-batch`` prints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BatchPlan",
    "largest_batch_under",
    "logistic_batch_limit",
    "plan_batches",
]


def _logistic(fit: Any, x: float) -> float:
    return float(fit.eval_x(x))


def logistic_batch_limit(fit: Any, deadline_s: float, lo: int, hi: int) -> int | None:
    """Largest integer batch in [lo, hi] whose logistic-fit latency is <= deadline (closed form).

    None when even `lo` misses the deadline. Curves that are not increasing (L k <= 0) are
    handled by the same formula with the inequality reversed where that applies, and by a
    final check of the fit itself.
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


def largest_batch_under(
    latency: Callable[[int], float],
    deadline_s: float,
    lo: int,
    hi: int,
    *,
    candidates: Sequence[int] | None = None,
) -> int | None:
    """Largest batch with ``latency(b) <= deadline_s`` for a non-decreasing black box.

    Searches the integers in [lo, hi] (or the sorted `candidates`, e.g. measured batch sizes)
    by doubling the index from the bottom until a miss or the top, then bisection. Returns
    None when the smallest batch already misses. Only evaluated points are trusted.
    """
    points = sorted({int(b) for b in candidates}) if candidates is not None else None
    if points is not None:
        points = [b for b in points if lo <= b <= hi]
        n = len(points)
        at = points.__getitem__
    else:
        n = hi - lo + 1
        at = lambda i: lo + i  # noqa: E731
    if n <= 0:
        return None
    cache: dict[int, bool] = {}

    def ok(i: int) -> bool:
        if i not in cache:
            value = float(latency(at(i)))
            cache[i] = math.isfinite(value) and value <= deadline_s
        return cache[i]

    if not ok(0):
        return None
    good, step = 0, 1
    bad: int | None = None
    while True:  # bracket: double the step from the last good index
        probe = min(good + step, n - 1)
        if probe == good:
            break
        if ok(probe):
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
            if ok(mid):
                good = mid
            else:
                bad = mid
    return int(at(good))


@dataclass(frozen=True)
class BatchPlan:
    """One model's SLO-bounded batch choices."""

    model: str
    deadline_s: float
    limit_batch: int | None  # largest integer batch within the deadline (closed form, in range)
    max_batch: int | None  # largest feasible (measured) batch within the deadline
    best_batch: int | None  # feasible batch with the highest throughput within the deadline
    best_itl_s: float
    best_throughput_tps: float  # tokens/s per replica at best_batch
    best_power_w: float  # W per replica at best_batch

    def as_row(self) -> dict[str, Any]:
        """Plain mapping (for tables)."""
        return {
            "model": self.model,
            "deadline_s": self.deadline_s,
            "limit_batch": self.limit_batch,
            "max_batch": self.max_batch,
            "best_batch": self.best_batch,
            "itl_s": self.best_itl_s,
            "throughput_tps": self.best_throughput_tps,
            "power_w": self.best_power_w,
        }


def plan_batches(specs: Mapping[str, Any], fits: Mapping[str, Any]) -> list[BatchPlan]:
    """Per model: the largest and the best-throughput feasible batch under its ITL deadline.

    `specs` are model specs by label (``itl_deadline_s`` and ``feasible_batch_sizes``);
    `fits` hold ``power``, ``latency`` and ``throughput`` logistic fits by label.
    """
    plans = []
    for label, spec in specs.items():
        fit = fits[label]
        deadline = float(spec.itl_deadline_s)
        sizes = sorted(int(b) for b in (getattr(spec, "feasible_batch_sizes", None) or spec.batch_sizes))
        measured = sorted(int(b) for b in (getattr(spec, "batch_sizes", None) or sizes))
        lo, hi = min(sizes[0], measured[0]), max(sizes[-1], measured[-1])
        limit = logistic_batch_limit(fit.latency, deadline, lo, hi)
        max_batch = largest_batch_under(lambda b: fit.latency.eval(b), deadline, lo, hi, candidates=sizes)  # noqa: B023 - used within this iteration
        ok = [b for b in sizes if fit.latency.eval(b) <= deadline]
        best = max(ok, key=lambda b: (fit.throughput.eval(b), -b)) if ok else None
        plans.append(
            BatchPlan(
                model=label,
                deadline_s=deadline,
                limit_batch=limit,
                max_batch=max_batch,
                best_batch=best,
                best_itl_s=math.nan if best is None else float(fit.latency.eval(best)),
                best_throughput_tps=math.nan if best is None else float(fit.throughput.eval(best)),
                best_power_w=math.nan if best is None else float(fit.power.eval(best)),
            )
        )
    return plans
