"""What a grid reads of its attached sites at each solve: their samples as per-phase kW and kvar.

:class:`AttachedSite` is a site attachment as a grid solves it (its loads in the batch, its
reactive ratio, where it reads samples: see :mod:`g2gsim.grid.sites` for the protocol);
:func:`write_site_loads` turns the sites' newest samples into the load batch's kW and kvar of
one step, :func:`stretch_site_loads` those of every step of a stretch stepped at once
(:mod:`g2gsim.kernel.lockstep`) from the per-step power rows the sites published for it,
with the same arithmetic step by step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from g2gsim.grid.circuit import PhaseLoads
from g2gsim.grid.loads import phase_kw
from g2gsim.grid.sites import SitePower
from g2gsim.kernel.lockstep import StretchStepFailed
from g2gsim.kernel.mailbox import Mailbox, QueueMailbox

__all__ = ["AttachedSite", "Where", "stretch_site_loads", "write_site_loads"]

#: Grid name, feeder name and time of a solve, for the errors of a site's samples.
Where = tuple[str, str, float]


@dataclass(slots=True)
class AttachedSite:
    """A site attachment as solved: its three load indices, reactive ratio and samples."""

    name: str
    bus: str
    load_indices: PhaseLoads
    tan_phi: float = 0.0
    mailbox: Mailbox[SitePower] | None = None
    queue: QueueMailbox[SitePower] | None = None
    power_w: np.ndarray | None = None  # per-phase power of the last solve, W
    slot: int = 0  # position of its phase-a load in the per-step load batch
    in_group: bool = False  # steps in the grid's lockstep group (stretches with it)

    def sample_w(self, time_s: float, where: Callable[[float], Where]) -> np.ndarray:
        """Three-phase power (W) for the solve at `time_s`: the newest sample or the window
        mean (`where(time_s)` names grid, feeder and time in the error when there is none)."""
        if self.queue is not None:
            samples = self.queue.drain()
            if samples:
                stacked = np.stack([value.power_w for _, value in samples])
                return stacked.mean(axis=0)
            if self.power_w is not None:
                return self.power_w
        elif self.mailbox is not None:
            state = self.mailbox.get()
            if state is not None:
                return state.power_w
        grid, feeder, _ = where(time_s)
        raise RuntimeError(
            f"grid {grid!r} (feeder {feeder!r}) must solve at t = {time_s:g} s but datacenter "
            f"{self.name!r} has published no power yet; give the datacenter a period that divides the "
            f"grid's first step time, or start the grid later"
        )


def _not_finite(site: str, where: Where, power_w: Any) -> ValueError:
    grid, _, time_s = where
    return ValueError(f"grid {grid!r}, t = {time_s:g} s: datacenter {site!r} power is not finite: {power_w} W")


def write_site_loads(
    sites: Sequence[AttachedSite], kw: np.ndarray, kvar: np.ndarray, time_s: float, where: Callable[[float], Where]
) -> None:
    """Each site's kW and kvar per phase of the solve at `time_s` into the load batch's buffers
    (`where` names grid, feeder and time, called only for an error)."""
    for site in sites:
        power_w = site.sample_w(time_s, where)
        kw_a, kw_b, kw_c = phase_kw(power_w)
        if not math.isfinite(kw_a + kw_b + kw_c):
            raise _not_finite(site.name, where(time_s), power_w)
        tphi = site.tan_phi
        j = site.slot
        # element by element: cheaper than a slice assignment from a tuple
        kw[j], kw[j + 1], kw[j + 2] = kw_a, kw_b, kw_c
        kvar[j], kvar[j + 1], kvar[j + 2] = kw_a * tphi, kw_b * tphi, kw_c * tphi
        site.power_w = power_w


def stretch_site_loads(
    sites: Sequence[AttachedSite],
    ticks: range,
    seconds: Callable[[int], float],
    where: Callable[[float], Where],
    *,
    out: tuple[np.ndarray, np.ndarray] | None = None,
    offered: bool = False,
) -> tuple[np.ndarray, np.ndarray, int, Exception | None]:
    """The sites' kW and kvar at each step of a stretch (one row per step, three columns per
    site first, as :func:`write_site_loads` writes them, newest-sample coupling; into `out`,
    whose further columns are left for the caller), how many steps come before the first
    whose power is not finite, and the error that step raises (None if all are finite). A
    site stepping in the stretch gives its published rows; one that does not (another period)
    keeps its newest sample. With `offered`, the rows the sites offer for a stretch not yet
    stepped (:meth:`Mailbox.offered_rows`); none known (0 steps) when a site of the group
    offers none."""
    count = len(ticks)
    kw, kvar = (np.empty((count, 3 * len(sites))), np.empty((count, 3 * len(sites)))) if out is None else out
    if not sites:
        return kw, kvar, count, None
    samples: list[Any] = []
    finite = True
    for site in sites:
        assert site.mailbox is not None
        rows: Any = site.mailbox.offered_rows(ticks) if offered else site.mailbox.stretch_rows(ticks)
        if rows is None and offered and site.in_group:
            return kw, kvar, 0, None
        if rows is None:
            try:
                rows = [site.sample_w(seconds(ticks[0]), where)] * count
            except Exception as exc:
                raise StretchStepFailed(ticks[0], exc) from exc
        j = site.slot
        site_kw = kw[:, j : j + 3]
        if isinstance(rows, np.ndarray) and rows.dtype == np.float64:
            np.divide(rows[:, :3], 1e3, out=site_kw)  # the IEEE division phase_kw makes per sample
        else:
            site_kw[:] = [phase_kw(row) for row in rows]
        np.multiply(site_kw, site.tan_phi, out=kvar[:, j : j + 3])
        if not offered:  # an offer is not a sample yet
            site.power_w = rows[-1]
        samples.append(rows)
        finite = finite and bool(np.isfinite(site_kw.sum(axis=1)).all())  # kw_a + kw_b + kw_c per step
    if finite:
        return kw, kvar, count, None
    sums = kw[:, : 3 * len(sites)].reshape(count, -1, 3).sum(axis=2)
    good = int(np.argmin(np.isfinite(sums).all(axis=1)))
    for site, rows in zip(sites, samples, strict=True):
        j = site.slot
        if not math.isfinite(kw[good, j] + kw[good, j + 1] + kw[good, j + 2]):
            return kw, kvar, good, _not_finite(site.name, where(seconds(ticks[good])), rows[good])
    raise AssertionError("a non-finite step without a non-finite site")  # pragma: no cover
