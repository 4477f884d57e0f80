"""Small stand-ins shared by the controller tests: specs, fits, a scripted datacenter and a
scripted grid that publish given states, a probe that snapshots a controller after each of
its steps, and a runner.

Imported by the other ``test_controllers_*`` modules; it holds no tests itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from mlenergy.data.modeling import LogisticModel

from g2gsim.datacenter.base import Datacenter
from g2gsim.datacenter.commands import SetBatchSize, ShiftReplicas
from g2gsim.datacenter.state import DatacenterState
from g2gsim.grid.base import Grid
from g2gsim.grid.state import GridState, VoltageIndex
from g2gsim.kernel import Command, Controller, RunResult, Simulation

BATCHES = (8, 16, 32, 64, 128, 256, 512)


@dataclass(frozen=True)
class FakeSpec:
    """What controllers read of a model spec."""

    model_label: str
    feasible_batch_sizes: tuple[int, ...] = BATCHES
    itl_deadline_s: float = 0.1
    gpus_per_replica: int = 1

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        return self.feasible_batch_sizes


@dataclass(frozen=True)
class Fits:
    """The three logistic fits of a model (the data layer's LogisticFits shape)."""

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


class FakeSource:
    """A data source that only serves logistic fits."""

    def __init__(self, fits: Mapping[str, Fits]) -> None:
        self.fits = dict(fits)
        self.calls = 0

    def logistic_fits(self, spec: Any) -> Fits:
        self.calls += 1
        return self.fits[spec.model_label]


ItlScript = Callable[[int, np.ndarray], np.ndarray]


class FakeDatacenter(Datacenter):
    """Publishes a state every step. Batches follow SetBatchSize (at its next step), replica
    counts follow ShiftReplicas; the ITL comes from `itl(k, batch)`; every delivered command
    is kept in `received` as (time_s, command)."""

    def __init__(
        self,
        name: str,
        specs: Sequence[FakeSpec],
        *,
        replicas: Mapping[str, int],
        batch: Mapping[str, int] | None = None,
        itl: ItlScript | None = None,
        phase_share: np.ndarray | None = None,
        capacity_gpus: int = 10_000,
        fits: Mapping[str, Fits] | None = None,
        period: Any = Fraction(1),
        report: Sequence[str] | None = None,
    ) -> None:
        super().__init__(name, period)
        self._specs = {s.model_label: s for s in sorted(specs, key=lambda s: s.model_label)}
        self.labels = tuple(self._specs)
        self.initial_replicas = dict(replicas)
        self.initial_batch = dict(batch or {m: 128 for m in self.labels})
        self.itl = itl or (lambda k, b: np.full(len(b), 0.05))
        self.share = phase_share
        self._capacity = capacity_gpus
        self._source = FakeSource(fits or {m: default_fits() for m in self.labels})
        self.report = tuple(report) if report is not None else self.labels
        self.received: list[tuple[float, Command]] = []

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

    def reset(self, ctx: Any) -> None:
        super().reset(ctx)
        self._box = ctx.mailbox("state")
        self.batch = np.array([self.initial_batch[m] for m in self.labels], dtype=np.int64)
        self.replicas = np.array([self.initial_replicas.get(m, 0) for m in self.labels], dtype=np.int64)
        self.received = []
        self._k = 0

    def deliver(self, command: Command) -> None:
        self.received.append((self.ctx.now_s, command))
        super().deliver(command)

    def step(self, tick: int) -> None:
        for command in self.take_commands():
            if isinstance(command, SetBatchSize):
                for label, b in command.batch.items():
                    self.batch[self.labels.index(label)] = b
            elif isinstance(command, ShiftReplicas):
                self.replicas[self.labels.index(command.model)] += command.delta
            else:
                raise self.reject(command)
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
                power_w=np.full(3, 1e5),
                model_power_w=np.zeros(len(rows)),
                batch=batch[rows],
                replicas=self.replicas[rows].copy(),
                itl_s=itl[rows],
                phase_share=np.asarray(share)[rows],
            ),
        )

    def batch_commands(self) -> list[tuple[float, dict[str, int]]]:
        return [(t, dict(c.batch)) for t, c in self.received if isinstance(c, SetBatchSize)]


VoltageScript = Callable[[int], np.ndarray]


class FakeGrid(Grid):
    """Publishes `voltages(k)` at its k-th step over a given voltage index; H is fixed."""

    def __init__(
        self,
        name: str,
        entries: Sequence[tuple[str, int]],
        voltages: VoltageScript,
        *,
        sites: Mapping[str, str] | None = None,
        h: np.ndarray | None = None,
        period: Any = Fraction(1),
    ) -> None:
        super().__init__(name, period)
        self.entries = tuple(entries)
        self.voltages = voltages
        self._sites = dict(sites or {})
        self.h = np.full((len(self.entries), 3), -1e-5) if h is None else np.asarray(h, dtype=float)
        self.received: list[tuple[float, Command]] = []
        self.sensitivity_calls = 0

    @property
    def voltage_index(self) -> VoltageIndex:
        return self._index

    def site_bus(self, site: str) -> str:
        return self._sites[site]

    @property
    def sites(self) -> Mapping[str, str]:
        return self._sites

    def storage_spec(self, name: str) -> Any:
        raise KeyError(name)

    def estimate_sensitivity(self, site: str, delta_kw: float = 100.0) -> np.ndarray:
        assert site in self._sites
        self.sensitivity_calls += 1
        return self.h.copy()

    def resolve_now(self) -> None:
        pass

    def reset(self, ctx: Any) -> None:
        super().reset(ctx)
        self._index = VoltageIndex.from_entries(self.entries)
        self._box = ctx.mailbox("state")
        self.received = []
        self.sensitivity_calls = 0
        self._k = 0

    def deliver(self, command: Command) -> None:
        self.received.append((self.ctx.now_s, command))
        super().deliver(command)

    def step(self, tick: int) -> None:
        self.take_commands()
        k = self._k
        self._k += 1
        v = np.asarray(self.voltages(k), dtype=float)
        assert v.shape == (len(self.entries),)
        self._box.publish(tick, GridState(self.name, self.ctx.seconds(tick), self._index, v.copy(), {}))


def three_phase(buses: Iterable[str]) -> list[tuple[str, int]]:
    """Phase-major entries (SPEC 4.4) of three-phase buses."""
    buses = list(buses)
    return [(bus, phase) for phase in (1, 2, 3) for bus in buses]


class Probe(Controller):
    """Declared after a controller, snapshots `look(controller)` after each of its steps."""

    def __init__(self, target: Controller, look: Callable[[Any], Any], period: Any = Fraction(1)) -> None:
        super().__init__(f"probe_{target.name}", period)
        self.target = target
        self.look = look
        self.seen: list[tuple[float, Any]] = []

    def reset(self, ctx: Any) -> None:
        super().reset(ctx)
        self.seen = []

    def control(self, tick: int) -> Iterable[Command]:
        self.seen.append((self.ctx.seconds(tick), self.look(self.target)))
        return ()


def run(components: Sequence[Any], horizon: Any, seed: int = 0) -> RunResult:
    """One run of the given components."""
    return Simulation(list(components), horizon, seed=seed).run()


def command_rows(result: RunResult) -> list[tuple[float, str, str, str]]:
    """The command log as comparable rows (sent time, target, kind, payload)."""
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


@dataclass
class Scripted:
    """Per-step arrays picked by step index, repeating the last one past the end."""

    values: Sequence[np.ndarray] = field(default_factory=list)

    def __call__(self, k: int, *_: Any) -> np.ndarray:
        return np.asarray(self.values[min(k, len(self.values) - 1)], dtype=float)
