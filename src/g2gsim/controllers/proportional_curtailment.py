"""The naive power-budget baseline: equal-fraction GPU power caps to meet a site's budget.

It caps every model's GPUs at the same fraction of their uncapped draw so that the measured
power meets the budget, with no model of latency or throughput (compare
:class:`~g2gsim.controllers.power_budget.PowerBudgetController`).
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from typing import Any, Literal

import numpy as np
from pydantic import Field

from g2gsim.controllers.base import BuildContext, ControllerSection, register_controller, renamed_keyword
from g2gsim.controllers.batching import state_columns
from g2gsim.controllers.budget import BudgetFollower
from g2gsim.datacenter.commands import SetPowerCap
from g2gsim.datacenter.power_cap import GpuPowerCaps
from g2gsim.kernel.commands import Command
from g2gsim.kernel.context import RunContext
from g2gsim.kernel.links import INSTANT, LinkSpec
from g2gsim.kernel.time import TimeLike
from g2gsim.kernel.triggers import PERIODIC, TriggerLike

__all__ = ["ProportionalCurtailment", "ProportionalCurtailmentSection", "proportional_caps"]


class ProportionalCurtailmentSection(ControllerSection):
    """The naive baseline: equal-fraction GPU power caps to meet the budget
    (``type = "proportional_curtailment"``)."""

    type: Literal["proportional_curtailment"] = "proportional_curtailment"
    """Always "proportional_curtailment"."""
    site: str
    """The site it caps."""
    budget: str
    """The budget component it follows."""
    margin: float = Field(default=0.03, ge=0, lt=1)
    """Aim at budget * (1 - margin)."""


class ProportionalCurtailment(BudgetFollower):
    """Naive baseline: cap every GPU at the same fraction of its uncapped draw.

    At each poll (and at once on a budget change) the inference power allowed is
    budget (1 - margin) - uncontrolled load; the fraction f = allowed / uncapped inference
    power (the model power measured while uncapped, per GPU, times the GPUs running now);
    every model's cap is f times its uncapped per-GPU draw (rounded to the cap grid), or no
    cap when f >= 1. It knows nothing about latency or throughput, and a measured power
    under a cap is taken as the model's draw.
    """

    @renamed_keyword("datacenter", "site")
    def __init__(
        self,
        name: str,
        site: str,
        budget: str,
        period: TimeLike | None = Fraction(1),
        *,
        margin: float = 0.03,
        command_link: LinkSpec = INSTANT,
        measurement_link: LinkSpec = INSTANT,
        trigger: TriggerLike = PERIODIC,
    ) -> None:
        super().__init__(
            name, site, budget, period, command_link=command_link, measurement_link=measurement_link, trigger=trigger
        )
        self.margin = float(margin)

    @classmethod
    def from_config(cls, section: ProportionalCurtailmentSection, context: BuildContext) -> ProportionalCurtailment:
        """From its scenario section (refused for a live site: it works through GPU caps)."""
        if context.site_is_live(section.site):
            raise ValueError(
                f"controllers.{section.name}: proportional_curtailment sets GPU power caps, which live site "
                f"{section.site!r} cannot apply (its servers take batch sizes only); use power_budget with "
                "params.knobs = ['batch', 'replicas']"
            )
        period = section.period_s
        return cls(
            section.name, section.site, section.budget, period, margin=section.margin, **section.controller_keywords()
        )

    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._draw: np.ndarray | None = None
        self._sent: dict[str, float | None] = {}
        self.changes = 0

    def start(self) -> None:
        super().start()
        self._gpr = np.array([self._site.specs[lb].gpus_per_replica for lb in self._labels], dtype=float)

    def react(self, tick: int) -> Iterable[Command]:
        return self.control(tick)

    def control(self, tick: int) -> Iterable[Command]:
        if not (self._dc_box.has_value and self._budget_box.has_value):
            return ()
        state = self._dc_box.value
        cols = state_columns(state, self._labels, owner=f"curtailment {self.name!r}")
        gpus = np.asarray(state.replicas, dtype=float)[cols] * self._gpr
        power = np.asarray(state.model_power_w, dtype=float)[cols]
        caps = getattr(state, "power_cap_w", None)
        capped = np.zeros(len(cols), dtype=bool) if caps is None else np.isfinite(np.asarray(caps, dtype=float)[cols])
        draw = np.where(gpus > 0, power / np.maximum(gpus, 1), 0.0)
        if self._draw is None:
            self._draw = draw.copy()
        self._draw = np.where(capped | (gpus <= 0), self._draw, draw)  # learn only while uncapped
        uncontrolled = (float(np.sum(state.power_w)) - float(np.sum(state.model_power_w))) / 1e3
        allowed = self._budget_box.value.kw * (1 - self.margin) - uncontrolled
        f, caps = proportional_caps(self._draw, gpus, allowed, self._gpu_power)
        wanted = dict(zip(self._labels, caps, strict=True))
        changed = {lb: c for lb, c in wanted.items() if self._sent.get(lb, None) != c}
        if not changed:
            return ()
        self._sent.update(changed)
        self.changes += 1
        self.ctx.event("curtailment", {"fraction": f, "cap_w": changed})
        return (SetPowerCap(cap_w=changed, target=self.site),)

    def summary(self) -> dict[str, Any]:
        return {"cap_changes": self.changes}


def proportional_caps(
    draw_w: np.ndarray, gpus: np.ndarray, allowed_kw: float, gpu_power: GpuPowerCaps
) -> tuple[float, list[float | None]]:
    """The naive baseline's caps: f = allowed / uncapped inference power (per-GPU draw x
    GPUs), and each model capped at f x its draw on the cap grid; no caps when f >= 1."""
    uncapped_kw = float(np.sum(draw_w * gpus)) / 1e3
    f = allowed_kw / uncapped_kw if uncapped_kw > 0 else 1.0
    if f >= 1.0:
        return f, [None] * len(draw_w)
    return f, [gpu_power.quantise(max(f * float(d), 1e-3)) for d in draw_w]


register_controller("proportional_curtailment", ProportionalCurtailmentSection)(ProportionalCurtailment)
