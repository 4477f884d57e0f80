"""A stand-in site for controller tests: it publishes scripted states and obeys commands.

:class:`FakeSite` keeps the site contract of :mod:`g2gsim.datacenter` (a :class:`Datacenter`
that publishes a :class:`~g2gsim.datacenter.state.DatacenterState` in mailbox ``state`` at
every step) with nothing behind it but a few arrays: batch sizes follow
:class:`SetBatchSize`, replica counts follow :class:`ShiftReplicas`, ITL comes from a script,
and every delivered command is kept with its arrival time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from mlenergy.data.modeling import LogisticModel

from g2gsim.datacenter.base import Datacenter
from g2gsim.datacenter.commands import SetBatchSize, ShiftReplicas
from g2gsim.datacenter.state import DatacenterState
from g2gsim.kernel.commands import Command
from g2gsim.kernel.context import RunContext
from g2gsim.kernel.mailbox import Mailbox
from g2gsim.kernel.time import TimeLike

__all__ = ["BATCHES", "FakeSite", "FakeSpec", "Fits", "ItlScript", "Scripted", "StubSource", "default_fits"]

#: The paper's feasible batch sizes (SPEC 7).
BATCHES = (8, 16, 32, 64, 128, 256, 512)

#: ITL per model (s) at the site's k-th step, given its current batch sizes.
ItlScript = Callable[[int, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FakeSpec:
    """What controllers read of a model spec: label, feasible batches, deadline, GPUs per replica."""

    model_label: str
    feasible_batch_sizes: tuple[int, ...] = BATCHES
    itl_deadline_s: float = 0.1
    gpus_per_replica: int = 1

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """The measured batch sizes (here: the feasible ones)."""
        return self.feasible_batch_sizes


@dataclass(frozen=True)
class Fits:
    """The three logistic fits of a model (the shape of the data layer's fits)."""

    power: LogisticModel
    latency: LogisticModel
    throughput: LogisticModel


def default_fits(scale: float = 1.0) -> Fits:
    """Increasing power, latency and throughput in x = log2(batch), H100-like magnitudes."""
    return Fits(
        power=LogisticModel(L=2000.0 * scale, x0=6.0, k=1.0, b0=300.0 * scale),
        latency=LogisticModel(L=0.08, x0=7.0, k=1.2, b0=0.02),
        throughput=LogisticModel(L=5000.0 * scale, x0=6.5, k=0.9, b0=100.0),
    )


class StubSource:
    """A data source that serves only logistic fits (what fit-based controllers ask of a site)."""

    def __init__(self, fits: Mapping[str, Fits]) -> None:
        self.fits = dict(fits)
        self.calls = 0

    def logistic_fits(self, spec: Any) -> Fits:
        """The fits of a spec's model."""
        self.calls += 1
        return self.fits[spec.model_label]


@dataclass
class Scripted:
    """Per-step arrays picked by step index, the last one repeating past the end (a voltage or
    ITL script)."""

    values: Sequence[Any] = field(default_factory=list)

    def __call__(self, k: int, *_: Any) -> np.ndarray:
        if not len(self.values):
            raise ValueError("a Scripted sequence needs at least one value")
        return np.asarray(self.values[min(k, len(self.values) - 1)], dtype=float)


class FakeSite(Datacenter):
    """A site that publishes a :class:`DatacenterState` every step from a few arrays.

    Args:
        name: Component name.
        specs: The served models (:class:`FakeSpec` or real model specs), any order.
        replicas: Replicas per model label at the start (missing: 0).
        batch: Batch size per model at the start (default 128 each).
        itl: ITL script ``itl(k, batch) -> (n_models,)`` seconds, NaN for unknown (default 50 ms).
        phase_share: (n_models, 3) share of each model's servers on phases a, b, c (default even).
        capacity_gpus: GPUs of the site.
        fits: Logistic fits by model label (default :func:`default_fits`), served through
            :attr:`data`.
        period: Step, s.
        report: Model labels to publish (default all; fewer lets a test break the contract).
        power_w: Power per phase (W) it publishes.

    Commands: :class:`SetBatchSize` and :class:`ShiftReplicas` take effect at its next step;
    every delivered command is kept in :attr:`received` as (arrival time s, command).
    """

    def __init__(
        self,
        name: str,
        specs: Sequence[Any],
        *,
        replicas: Mapping[str, int],
        batch: Mapping[str, int] | None = None,
        itl: ItlScript | None = None,
        phase_share: np.ndarray | None = None,
        capacity_gpus: int = 10_000,
        fits: Mapping[str, Fits] | None = None,
        period: TimeLike = Fraction(1),
        report: Sequence[str] | None = None,
        power_w: Sequence[float] = (1e5, 1e5, 1e5),
    ) -> None:
        super().__init__(name, period)
        self._specs = {s.model_label: s for s in sorted(specs, key=lambda s: s.model_label)}
        self.labels = tuple(self._specs)
        unknown = sorted(set(replicas) - set(self.labels))
        if unknown:
            raise KeyError(f"FakeSite {name!r}: replicas for unknown model(s) {unknown}; models: {list(self.labels)}")
        self.initial_replicas = dict(replicas)
        self.initial_batch = dict(batch or {m: 128 for m in self.labels})
        self.itl: ItlScript = itl or (lambda k, b: np.full(len(b), 0.05))
        self.share = phase_share
        self._capacity = capacity_gpus
        self._source = StubSource(fits or {m: default_fits() for m in self.labels})
        self.report = tuple(report) if report is not None else self.labels
        self.power = np.asarray(power_w, dtype=float)
        self.received: list[tuple[float, Command]] = []

    # -- the site contract ------------------------------------------------------------------
    @property
    def specs(self) -> Mapping[str, Any]:
        return self._specs

    @property
    def data(self) -> Any:
        return self._source

    @property
    def capacity_gpus(self) -> int:
        return self._capacity

    @property
    def power_factor(self) -> float:
        return 0.95

    # -- lifecycle --------------------------------------------------------------------------
    def reset(self, ctx: RunContext) -> None:
        super().reset(ctx)
        self._box: Mailbox[DatacenterState] = ctx.mailbox("state")
        self.batch = np.array([self.initial_batch[m] for m in self.labels], dtype=np.int64)
        self.replicas = np.array([self.initial_replicas.get(m, 0) for m in self.labels], dtype=np.int64)
        self.received = []
        self._k = 0

    def deliver(self, command: Command) -> None:
        self.received.append((self.ctx.now_s, command))
        super().deliver(command)

    def step(self, tick: int) -> None:
        for command in self.take_commands():
            self._apply(command)
        k = self._k
        self._k += 1
        rows = [self.labels.index(m) for m in self.report]
        batch = self.batch.copy()
        itl = np.asarray(self.itl(k, batch), dtype=float)
        share = self.share if self.share is not None else np.full((len(self.labels), 3), 1 / 3)
        self._box.publish(
            tick,
            DatacenterState(
                site=self.name,
                time_s=self.ctx.seconds(tick),
                models=self.report,
                power_w=self.power.copy(),
                model_power_w=np.zeros(len(rows)),
                batch=batch[rows],
                replicas=self.replicas[rows].copy(),
                itl_s=itl[rows],
                phase_share=np.asarray(share)[rows],
            ),
        )

    def _apply(self, command: Command) -> None:
        if isinstance(command, SetBatchSize):
            for label, b in command.batch.items():
                self.batch[self._position(label)] = b
        elif isinstance(command, ShiftReplicas):
            self.replicas[self._position(command.model)] += command.delta
        else:
            raise self.reject(command)

    def _position(self, label: str) -> int:
        try:
            return self.labels.index(label)
        except ValueError:
            raise KeyError(f"FakeSite {self.name!r} runs no model {label!r}; models: {list(self.labels)}") from None

    # -- what it published and was told ------------------------------------------------------
    @property
    def last_state(self) -> DatacenterState | None:
        """The newest state it published in this run (None before its first step)."""
        return self._box.get()

    def batch_commands(self) -> list[tuple[float, dict[str, int]]]:
        """Every SetBatchSize delivered, as (arrival time s, batch by model)."""
        return [(t, dict(c.batch)) for t, c in self.received if isinstance(c, SetBatchSize)]
