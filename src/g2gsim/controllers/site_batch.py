"""What the batch-size controllers of one site share: a site they command, a grid they watch.

OFO and the rule-based controller both set one datacenter's batch sizes from one grid's
voltages; their constructor checks, their build from a scenario section (``site``, ``grid``,
voltage-limit ``params`` that default to the scenario's) and their dependencies live here.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any, ClassVar

from g2gsim.controllers.base import (
    BuildContext,
    VoltageLimits,
    config_or_default,
    renamed_attribute,
    renamed_keyword,
    required_period,
    with_voltage_limits,
)
from g2gsim.datacenter.base import Datacenter
from g2gsim.grid.base import Grid
from g2gsim.kernel.component import Controller
from g2gsim.kernel.context import RunContext
from g2gsim.kernel.links import INSTANT, LinkSpec
from g2gsim.kernel.time import TimeLike
from g2gsim.kernel.triggers import PERIODIC, TriggerLike

__all__ = ["SiteBatchController"]


class SiteBatchController(Controller):
    """A controller of one site's batch sizes that observes one grid.

    Subclasses name themselves in errors with `kind` (e.g. "OFO controller") and their typed
    parameters with `config_type`; `config` None takes that type's defaults.
    """

    kind: ClassVar[str] = "batch controller"
    config_type: ClassVar[type[VoltageLimits]] = VoltageLimits

    datacenter = renamed_attribute("site", "datacenter")

    @renamed_keyword("datacenter", "site")
    def __init__(
        self,
        name: str,
        site: str,
        grid: str,
        config: VoltageLimits | None = None,
        period: TimeLike | None = Fraction(1),
        *,
        command_link: LinkSpec = INSTANT,
        measurement_link: LinkSpec = INSTANT,
        trigger: TriggerLike = PERIODIC,
    ) -> None:
        period = required_period(period, f"{self.kind} {name!r}")
        super().__init__(name, period, command_link=command_link, measurement_link=measurement_link, trigger=trigger)
        self.config: Any = config_or_default(name, config, self.config_type)
        self.site = site
        self.grid = grid
        self._clear()

    @classmethod
    def from_config(cls, section: Any, context: BuildContext) -> SiteBatchController:
        """From its scenario section; the scenario's voltage limits fill in unset ones."""
        config = with_voltage_limits(section.params, context)
        return cls(section.name, section.site, section.grid, config, section.period_s, **section.controller_keywords())

    def _clear(self) -> None:
        """Forget what a run learnt (subclasses clear their state; called on build and reset)."""

    def reset(self, ctx: RunContext) -> None:
        """Forget the state of a previous run (OFO: duals, x, H, records; rule-based: x, mask)."""
        super().reset(ctx)
        self._clear()

    def dependencies(self) -> Mapping[str, type]:
        return {self.site: Datacenter, self.grid: Grid}
