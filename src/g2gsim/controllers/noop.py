"""The controller that does nothing (SPEC 5.1): the "no control" baseline."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from typing import Literal

from g2gsim.controllers.base import BuildContext, ControllerSection, register_controller
from g2gsim.kernel.commands import Command
from g2gsim.kernel.component import Controller
from g2gsim.kernel.links import INSTANT, LinkSpec
from g2gsim.kernel.time import TimeLike
from g2gsim.kernel.triggers import PERIODIC, TriggerLike


class NoopSection(ControllerSection):
    """A controller that steps and never acts (``type = "noop"``): the no-control baseline."""

    type: Literal["noop"] = "noop"
    """Always "noop"."""


class Noop(Controller):
    """Steps at its period and never sends a command.

    Args:
        name: Component name.
        period: Control period, s (None: never steps).
    """

    def __init__(
        self,
        name: str = "noop",
        period: TimeLike | None = Fraction(1),
        *,
        command_link: LinkSpec = INSTANT,
        measurement_link: LinkSpec = INSTANT,
        trigger: TriggerLike = PERIODIC,
    ) -> None:
        super().__init__(name, period, command_link=command_link, measurement_link=measurement_link, trigger=trigger)

    def control(self, tick: int) -> Iterable[Command]:
        return ()

    @classmethod
    def from_config(cls, section: NoopSection, context: BuildContext) -> Noop:
        """From its scenario section."""
        return cls(section.name, section.period_s, **section.controller_keywords())


register_controller("noop", NoopSection)(Noop)
