"""The grid role as controllers see it: the ``state`` mailbox, the commands and a few services."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping

import numpy as np

from g2gsim.grid.commands import ResolveGrid, SensitivityRequest, SetStoragePower, SetTaps
from g2gsim.grid.state import SensitivityReply, VoltageIndex
from g2gsim.kernel.commands import Command
from g2gsim.kernel.component import GridComponent
from g2gsim.kernel.context import RunContext
from g2gsim.kernel.mailbox import Mailbox


class Grid(GridComponent):
    """A power-flow grid: the contract a stand-in grid implements.

    What it publishes: in :meth:`reset` it creates its mailbox, ``box = ctx.mailbox("state")``;
    after every solve (each step, and each re-solve within a tick) it publishes one
    :class:`~g2gsim.grid.state.GridState`, ``box.publish(tick, state)``. Every state of a run
    shares one :class:`~g2gsim.grid.state.VoltageIndex`, the one :attr:`voltage_index`
    returns, which should be known before the run (it sizes an observation). Controllers read
    the mailbox with ``ctx.subscribe(grid_name)`` (latest value) or
    ``ctx.subscribe(grid_name, queue=True)`` (every state since the last read).

    What it reads: each attached site's ``state`` mailbox (``ctx.subscribe(site)`` in
    :meth:`start`), whose values carry ``power_w`` (power per phase, W), and the site
    component's ``power_factor`` (the protocol of :mod:`g2gsim.grid.sites`). A grid steps in
    the grid phase of a tick, after every site due at that tick has published.

    What it accepts: :class:`SetTaps`, :class:`SetStoragePower` and :class:`ResolveGrid`
    through its command links; they take effect at the next solve, or at once on a re-solve.

    What it answers: a :class:`SensitivityRequest` is answered when it is delivered, from the
    operating point of the last solve (:meth:`estimate_sensitivity`), with a
    :class:`~g2gsim.grid.state.SensitivityReply` in mailbox ``sensitivity/<site>`` (created
    here at reset for every attached site). A controller reads it through its measurement
    link, so the request and the reply are delayed and lost like any other message.
    """

    accepts = (SetTaps, SetStoragePower, ResolveGrid, SensitivityRequest)

    def reset(self, ctx: RunContext) -> None:
        """Bind to the run and create a ``sensitivity/<site>`` mailbox per attached site."""
        super().reset(ctx)
        self._sensitivity_boxes: dict[str, Mailbox[SensitivityReply]] = {
            site: ctx.mailbox(f"sensitivity/{site}") for site in self.sites
        }

    def deliver(self, command: Command) -> None:
        """Answer a SensitivityRequest at once; queue any other command for the next solve."""
        if isinstance(command, SensitivityRequest):
            self.answer_sensitivity(command)
            return
        super().deliver(command)

    def answer_sensitivity(self, request: SensitivityRequest) -> None:
        """Estimate H for the request's site now and publish it in ``sensitivity/<site>``."""
        box = self._sensitivity_boxes.get(request.site)
        if box is None:
            raise KeyError(
                f"grid {self.name!r} got a sensitivity request for {request.site!r}, which is not attached; "
                f"sites: {sorted(self.sites)}"
            )
        h = np.asarray(self.estimate_sensitivity(request.site, request.delta_kw), dtype=float)
        ctx = self.ctx
        reply = SensitivityReply(self.name, request.site, ctx.now_s, self.voltage_index, h, request.delta_kw)
        box.publish(ctx.now, reply)

    @property
    @abstractmethod
    def voltage_index(self) -> VoltageIndex:
        """Layout of the voltage vector (fixed for a run, available before it)."""

    @abstractmethod
    def site_bus(self, site: str) -> str:
        """Bus a site is attached to."""

    @property
    @abstractmethod
    def sites(self) -> Mapping[str, str]:
        """Attached site name -> bus."""

    @abstractmethod
    def estimate_sensitivity(self, site: str, delta_kw: float = 100.0) -> np.ndarray:
        """dV/dP (pu per kW) of every voltage-vector entry for each phase of a site (SPEC 4.5)."""

    @abstractmethod
    def resolve_now(self) -> None:
        """Apply pending commands, solve again and publish within the current tick."""
