"""Run one controller against stand-ins, through real links, and hand back what it sent."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from g2gsim.datacenter.commands import SetBatchSize
from g2gsim.kernel.commands import Command
from g2gsim.kernel.component import Component, Controller
from g2gsim.kernel.log import LoggedCommand
from g2gsim.kernel.results import RunResult
from g2gsim.kernel.simulation import Simulation
from g2gsim.kernel.time import TimeLike
from g2gsim.testing.probes import Probe

__all__ = ["ControllerRun", "command_rows", "run_components", "run_controller"]

C = TypeVar("C", bound=Command)


@dataclass
class ControllerRun:
    """What one controller did in a test run: its commands as typed records, the run's results
    and, with a probe, snapshots of the controller after each step."""

    controller: Controller
    commands: list[LoggedCommand]
    """Every command the controller sent, oldest first (``deliver_s`` None: the link dropped it)."""
    result: RunResult
    seen: list[tuple[float, Any]] = field(default_factory=list)
    """(time s, ``look(controller)``) after each of its steps (empty without `look`)."""

    def of_type(self, kind: type[C]) -> list[tuple[float, C]]:
        """The commands of one type as (sent time s, command)."""
        return [(c.sent_s, c.command) for c in self.commands if isinstance(c.command, kind)]

    def delivered(self) -> list[LoggedCommand]:
        """The commands that reached their target."""
        return [c for c in self.commands if c.deliver_s is not None]

    def batches(self) -> list[tuple[float, dict[str, int]]]:
        """Every SetBatchSize sent, as (sent time s, batch by model)."""
        return [(t, dict(c.batch)) for t, c in self.of_type(SetBatchSize)]


def run_components(components: Sequence[Component], horizon_s: TimeLike, seed: int = 0) -> RunResult:
    """One run of the given components."""
    return Simulation(list(components), horizon_s, seed=seed).run()


def run_controller(
    controller: Controller,
    *stand_ins: Component,
    horizon_s: TimeLike = 10,
    seed: int = 0,
    look: Callable[[Any], Any] | None = None,
) -> ControllerRun:
    """Run `controller` against the given stand-ins (sites, grids, anything it reads or
    commands) for `horizon_s`, through its own command and measurement links.

    With `look`, a :class:`Probe` records ``look(controller)`` after each of its steps.
    """
    probe = None if look is None else Probe(controller, look)
    components: list[Component] = [*stand_ins, controller, *([] if probe is None else [probe])]
    handle = Simulation(components, horizon_s, seed=seed).start()
    handle.step_until(handle.simulation.horizon)
    result = handle.result()
    mine = [c for c in handle.commands() if c.source == controller.name]
    return ControllerRun(controller, mine, result, [] if probe is None else list(probe.seen))


def command_rows(result: RunResult) -> list[tuple[float, str, str, str]]:
    """The command log of a result as comparable rows (sent time, target, kind, JSON payload)."""
    frame = result.commands
    return list(
        zip(
            frame["sent_s"].tolist(),
            frame["target"].tolist(),
            frame["kind"].tolist(),
            frame["payload"].tolist(),
            strict=True,
        )
    )
