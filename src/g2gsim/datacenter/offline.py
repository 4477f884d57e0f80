"""The trace-driven ("offline") datacenter process (SPEC 2.2-2.5).

At each step the site applies the commands delivered since its last step, updates replica
counts from the schedules and accepted shifts, computes the power of every allocated server
from per-GPU templates (vectorised, see :mod:`g2gsim.datacenter.pool`), samples the observed
ITL of every model, publishes a :class:`DatacenterState` in mailbox ``state`` and records the
step into preallocated column buffers.

Everything that depends on time only (scheduled replicas, training power, step times) is
evaluated once per run as arrays over all steps; the allocation is recomputed only when a
replica count changes; the per-step path is a few NumPy calls.

A batch ramp-up (SetBatchSize with a rate R > 0 requests/s) is evaluated from exact times
at every step: the effective batch is min(target, b0 + floor(R (t - t0))), where t0 is the
time of the step that applied the command and b0 the batch then. A batch between two
measured sizes blends their operating points (power and ITL alike). Lowering a batch is
immediate.

GPU power caps (SetPowerCap, W per GPU per model, ``None`` removes one) follow the
performance model of :mod:`g2gsim.datacenter.power_cap` (``config.gpu_power``): caps are
rounded down to 25 W steps within [min cap, rated power]; each GPU draws min(template,
cap); below the model's power floor its ITL is multiplied by floor / cap (so throughput
batch / ITL shrinks by the same factor). The per-server cap is one extra ``minimum`` in the
vectorised step; the ITL factor is one multiply per model. States report the caps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from g2gsim.datacenter.base import ConfiguredDatacenter
from g2gsim.datacenter.commands import SetBatchSize, SetPowerCap, ShiftReplicas
from g2gsim.datacenter.config import DatacenterConfig, replica_table
from g2gsim.datacenter.latency import FleetLatency
from g2gsim.datacenter.pool import (
    PHASES,
    Allocation,
    AllocationCache,
    FleetPower,
    OperatingPoint,
    OversubscribedError,
    ServerPool,
    TemplateBank,
)
from g2gsim.datacenter.power_cap import cap_slowdown
from g2gsim.datacenter.state import DatacenterState
from g2gsim.kernel.commands import Command
from g2gsim.kernel.time import TimeLike, as_seconds

if TYPE_CHECKING:
    from mlenergy.data.modeling import ITLMixtureModel

    from g2gsim.data.source import DataSource
    from g2gsim.kernel.context import RunContext

__all__ = ["OfflineDatacenter"]


_NO_RAMP = Fraction(0)  # ramp-up rate of a model a SetBatchSize gives no rate for


@dataclass(frozen=True)
class _BatchRamp:
    """A batch rising from `start` at t0 toward `target` at `rate` requests/s (exact times)."""

    start: int
    target: int
    rate: Fraction
    t0: Fraction

    def batch_at(self, t: Fraction) -> int:
        """Effective batch at time t >= t0."""
        return min(self.target, self.start + math.floor(self.rate * (t - self.t0)))


@dataclass(frozen=True, eq=False)
class _RunData:
    """Products of the data source for one horizon: templates and ITL fits (immutable)."""

    horizon: Fraction
    bank: TemplateBank
    known: tuple[tuple[int, ...], ...]  # per model, sorted batches with a template
    fits: tuple[dict[int, ITLMixtureModel | None], ...]


class OfflineDatacenter(ConfiguredDatacenter):
    """A site whose power and latency replay measured (or synthetic) traces.

    Args:
        name: Component name (also the ``site`` of its states).
        config: The site (deployments, facility, augmentation, capacity, training).
        data: Where templates and ITL fits come from.
        period: Step, s (exact; ``0.1`` means 1/10).
        seed: Seed of the layout, noise and latency streams; None uses ``config.seed``,
            and if that is None too, the scenario's seed.
    """

    accepts = (SetBatchSize, ShiftReplicas, SetPowerCap)

    def __init__(
        self,
        name: str,
        config: DatacenterConfig,
        data: DataSource,
        period: TimeLike = Fraction(1, 10),
        seed: int | None = None,
    ) -> None:
        super().__init__(name, period, seed=config.seed if seed is None else seed)
        self.config = config
        self._data = data
        self._labels = config.labels
        self._per_replica = {d.label: d.spec.gpus_per_replica for d in config.deployments}
        self._gpr = np.array([self._per_replica[label] for label in self._labels], dtype=np.int64)
        self._run_data: _RunData | None = None
        self._rows = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def reset(self, ctx: RunContext) -> None:
        """Fresh run: data products for the horizon, new pool and streams, time arrays, buffers."""
        super().reset(ctx)
        assert self.period is not None
        config = self.config
        self._box = ctx.mailbox("state")
        self._period_ticks = ctx.clock.ticks(self.period)
        n = ctx.step_count(self.period)
        tick = ctx.clock.tick
        self._times = (np.arange(n, dtype=np.int64) * self._period_ticks * tick.numerator) / tick.denominator
        run_data = self._load_data(ctx.horizon, n)
        self._known = run_data.known
        self._bank = run_data.bank

        self._pool = ServerPool.build(
            num_servers=config.num_servers,
            gpus_per_server=config.facility.gpus_per_server,
            labels=self._labels,
            template_length=run_data.bank.max_length,
            amplitude_range=config.augmentation.amplitude_scale_range,
            rng=ctx.rng("layout"),
        )
        self._allocations = AllocationCache(self._pool, self._labels, self._per_replica)
        self._noise_rng = ctx.rng("noise") if config.augmentation.noise_fraction > 0 else None
        self._latency_rng = ctx.rng("latency")
        self._latency = FleetLatency(run_data.fits)

        self._scheduled = replica_table(config, n, self.period)
        self._check_schedule_fits()
        changes = np.ones(n, dtype=bool)
        if n > 1:
            changes[1:] = np.any(np.diff(self._scheduled, axis=0) != 0, axis=1)
        self._schedule_changes: list[bool] = changes.tolist()
        overlay = config.facility.base_kw_per_phase * 1000.0 + config.training.power(self._times) / PHASES
        self._overlay: list[float] = overlay.tolist()

        n_models = len(self._labels)
        self._offset = np.zeros(n_models, dtype=np.int64)
        self._replicas_stale = True
        self._replica_key: tuple[int, ...] | None = None
        self._allocation: Allocation | None = None
        self._fleet: FleetPower | None = None
        self._ramps: dict[int, _BatchRamp] = {}
        self._batch = self._frozen(np.array([d.initial_batch for d in config.deployments], dtype=np.int64))
        self._points = [OperatingPoint.of(int(b), k) for b, k in zip(self._batch, self._known)]
        self._latency.set_points(self._points)
        self._refused = 0
        self._caps = np.full(n_models, math.inf)  # W per GPU, inf = uncapped
        self._caps_state = self._frozen(np.full(n_models, math.nan))
        self._slowdown: np.ndarray | None = None
        self._cap_log: list[tuple[int, np.ndarray]] = []

        self._rows = 0
        self._rec_power = np.zeros((n, PHASES + n_models))  # phases a, b, c, then models
        self._rec_itl = np.full((n, n_models), math.nan)
        # batch and replicas change rarely: (first step, values) whenever they change
        self._batch_log: list[tuple[int, np.ndarray]] = []
        self._replica_log: list[tuple[int, np.ndarray]] = []

    def _load_data(self, horizon: Fraction, n_steps: int) -> _RunData:
        """Templates and fits for this horizon (kept across runs: they are immutable)."""
        cached = self._run_data
        if cached is not None and cached.horizon == horizon:
            return cached
        assert self.period is not None
        templates: dict[tuple[str, int], np.ndarray] = {}
        known: list[tuple[int, ...]] = []
        fits: list[dict[int, ITLMixtureModel | None]] = []
        for deployment in self.config.deployments:
            spec = deployment.spec
            batches = tuple(sorted(set(spec.feasible_batch_sizes) | {deployment.initial_batch}))
            model_fits: dict[int, ITLMixtureModel | None] = {}
            for batch in batches:
                template = self._data.power_template(spec, batch, self.period, float(horizon))
                template.check_dt(self.period)
                templates[(spec.model_label, batch)] = _template_values(template)
                model_fits[batch] = self._data.itl_fit(spec, batch)
            known.append(batches)
            fits.append(model_fits)
        self._run_data = _RunData(horizon, TemplateBank(templates, n_steps), tuple(known), tuple(fits))
        return self._run_data

    def _check_schedule_fits(self) -> None:
        """Every step's scheduled replicas must fit the pool (GPUs and whole servers)."""
        bad = self._misfits(self._scheduled)
        if bad.size:
            k = int(bad[0])
            replicas = dict(zip(self._labels, self._scheduled[k].tolist()))
            raise ValueError(
                f"site {self.name!r}: at t = {self._times[k]:g} s the scheduled replicas {replicas} need "
                f"{int(self._scheduled[k] @ self._gpr)} GPUs / {int(self._servers(self._scheduled[k : k + 1])[0])} "
                f"servers but capacity_gpus = {self.config.capacity_gpus} ({self.config.num_servers} servers)"
            )

    # -- one step -------------------------------------------------------------------------------
    def step(self, tick: int) -> None:
        """Apply commands, update replicas and operating points, compute, publish, record."""
        k = tick // self._period_ticks
        if self._inbox:
            self._apply(self.take_commands(), tick, k)
        if self._ramps:
            self._advance_ramps(tick)
        if self._replicas_stale or self._schedule_changes[k]:
            self._update_replicas(k)
        fleet = self._fleet
        if fleet is None:
            assert self._allocation is not None
            fleet = self._fleet = FleetPower(
                self._pool,
                self._allocation,
                self._bank,
                self._points,
                self.config.augmentation.noise_fraction,
                self._caps if self._slowdown is not None else None,
            )
        power = fleet.step(k, self._noise_rng, self._overlay[k])
        itl = self._latency.sample(self._latency_rng)
        if self._slowdown is not None:
            itl *= self._slowdown
        allocation = fleet.allocation
        batch = self._batch
        replicas = allocation.active_replicas

        self._rec_power[k] = power
        self._rec_itl[k] = itl
        if not self._batch_log or self._batch_log[-1][1] is not batch:
            self._batch_log.append((k, batch))
        if not self._replica_log or self._replica_log[-1][1] is not replicas:
            self._replica_log.append((k, replicas))
        if self._cap_log and self._cap_log[-1][1] is not self._caps_state:
            self._cap_log.append((k, self._caps_state))
        self._rows = k + 1
        self._box.publish(
            tick,
            DatacenterState(
                site=self.name,
                time_s=float(self._times[k]),
                models=self._labels,
                power_w=power[:PHASES],
                model_power_w=power[PHASES:],
                batch=batch,
                replicas=replicas,
                itl_s=itl,
                phase_share=allocation.phase_share,
                power_cap_w=self._caps_state,
            ),
        )

    def _update_replicas(self, k: int) -> None:
        """Requested replicas from schedule + offsets; a new allocation when they changed."""
        self._replicas_stale = False
        requested = np.maximum(self._scheduled[k] + self._offset, 0)
        key = tuple(requested.tolist())
        if key == self._replica_key:
            return
        try:
            allocation = self._allocations.get(key)
        except OversubscribedError as exc:
            raise ValueError(f"site {self.name!r} at t = {self._times[k]:g} s: {exc}") from exc
        self._replica_key = key
        if allocation is not self._allocation:
            self._allocation = allocation
            self._fleet = None
            self._latency.set_replicas(allocation.active_replicas)

    # -- commands -------------------------------------------------------------------------------
    def _apply(self, commands: Sequence[Command], tick: int, k: int) -> None:
        for command in commands:
            if isinstance(command, SetBatchSize):
                self._set_batch(command, tick)
            elif isinstance(command, ShiftReplicas):
                self._shift(command, k)
            elif isinstance(command, SetPowerCap):
                self._set_caps(command, k)
            else:
                raise self.reject(command)

    def _set_batch(self, command: SetBatchSize, tick: int) -> None:
        """Validate the whole command, then set batches (at once, or as a ramp-up)."""
        targets: dict[int, tuple[int, Fraction]] = {}
        rates = command.ramp_up_rate
        for label, batch in command.batch.items():
            m = self._index(label, command)
            if batch not in self._known[m]:
                raise ValueError(
                    f"SetBatchSize for site {self.name!r}: batch {batch} of {label!r} is not a known "
                    f"batch size; allowed: {list(self._known[m])}"
                )
            # Most commands carry no ramp: skip the exact (Fraction) conversion of a default 0.
            rate = as_seconds(rates[label], name=f"ramp_up_rate[{label!r}]") if label in rates else _NO_RAMP
            targets[m] = (int(batch), rate)
        for label in rates:
            self._index(label, command)
        batch = self._batch.copy()
        for m, (target, rate) in targets.items():
            if self._ramps:
                self._ramps.pop(m, None)
            if rate > 0 and target > batch[m]:
                self._ramps[m] = _BatchRamp(int(batch[m]), target, rate, self.ctx.clock.seconds(tick))
            else:
                batch[m] = target
        self._set_batches(batch)

    def _advance_ramps(self, tick: int) -> None:
        """Move ramping batches to their value at this step's exact time."""
        t_now = self.ctx.clock.seconds(tick)
        batch = self._batch.copy()
        for m, ramp in list(self._ramps.items()):
            batch[m] = ramp.batch_at(t_now)
            if batch[m] >= ramp.target:
                del self._ramps[m]
                self.ctx.event("batch_ramp_done", {"model": self._labels[m], "batch": ramp.target})
        self._set_batches(batch)

    def _set_batches(self, batch: np.ndarray) -> None:
        """Publish new effective batches and refresh the operating points that changed."""
        if np.array_equal(batch, self._batch):
            return
        for m in np.flatnonzero(batch != self._batch):
            self._points[m] = OperatingPoint.of(int(batch[m]), self._known[m])
        self._batch = self._frozen(batch)
        self._latency.set_points(self._points)
        self._fleet = None
        if self._slowdown is not None:
            self._refresh_slowdown()

    # -- power caps -----------------------------------------------------------------------------
    def _set_caps(self, command: SetPowerCap, k: int) -> None:
        """Validate the whole command, then apply caps rounded to the cap grid."""
        model = self.config.gpu_power
        caps = self._caps.copy()
        for label, cap in command.cap_w.items():
            m = self._index(label, command)
            if cap is None:
                caps[m] = math.inf
                continue
            try:
                caps[m] = model.quantise(cap)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"SetPowerCap for site {self.name!r}, model {label!r}: {exc}") from None
        if np.array_equal(caps, self._caps):
            return
        self._caps = caps
        self._caps_state = self._frozen(np.where(np.isfinite(caps), caps, math.nan))
        if not self._cap_log:
            self._cap_log.append((0, self._frozen(np.full(len(self._labels), math.nan))))
        self._fleet = None
        self._refresh_slowdown()
        self.ctx.event(
            "power_caps",
            {label: (None if not math.isfinite(c) else float(c)) for label, c in zip(self._labels, caps.tolist())},
        )

    def _mean_draw(self, m: int) -> float:
        """Mean per-GPU template power of model m at its operating point, W."""
        point = self._points[m]
        label = self._labels[m]
        lo = float(self._bank.template(label, point.lo).mean())
        if point.weight <= 0.0:
            return lo
        hi = float(self._bank.template(label, point.hi).mean())
        return (1.0 - point.weight) * lo + point.weight * hi

    def _refresh_slowdown(self) -> None:
        """ITL factor max(1, floor / cap) per model (None when no model is capped)."""
        if not np.any(np.isfinite(self._caps)):
            self._slowdown = None
            return
        model = self.config.gpu_power
        factors = np.ones(len(self._labels))
        for m in np.flatnonzero(np.isfinite(self._caps)):
            floor = model.floor(self._labels[m], self._mean_draw(int(m)))
            factors[m] = cap_slowdown(floor, float(self._caps[m]))
        self._slowdown = factors

    @property
    def power_caps(self) -> dict[str, float | None]:
        """Current GPU power cap per model, W per GPU (None: uncapped)."""
        return {label: (float(c) if math.isfinite(c) else None) for label, c in zip(self._labels, self._caps.tolist())}

    def _offset_changed(self) -> None:
        self._replicas_stale = True

    @staticmethod
    def _frozen(array: np.ndarray) -> np.ndarray:
        array.setflags(write=False)
        return array

    # -- results --------------------------------------------------------------------------------
    def server_power(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Last step's allocated servers, their phases and their power, W (for diagnostics)."""
        if self._fleet is None:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0)
        servers = self._fleet.allocation.flat_servers
        return servers, self._pool.phase[servers], self._fleet.last_server_power

    @property
    def pool(self) -> ServerPool:
        """This run's server pool."""
        return self._pool

    def tables(self) -> dict[str, pd.DataFrame]:
        """``state``: one row per step; time, power per phase, and per model batch, replicas, ITL, power."""
        rows = self._rows
        if not hasattr(self, "_rec_power"):
            return {}
        # Views of the recording buffers: the DataFrame constructor copies a dict's arrays into
        # its own blocks, so a copy here would only raise the peak memory.
        columns: dict[str, np.ndarray] = {
            "time_s": self._times[:rows],
            "power_a_w": self._rec_power[:rows, 0],
            "power_b_w": self._rec_power[:rows, 1],
            "power_c_w": self._rec_power[:rows, 2],
        }
        batch = _forward_fill(self._batch_log, rows, len(self._labels))
        replicas = _forward_fill(self._replica_log, rows, len(self._labels))
        for m, label in enumerate(self._labels):
            columns[f"{label}.batch"] = batch[:, m]
            columns[f"{label}.replicas"] = replicas[:, m]
            columns[f"{label}.itl_s"] = self._rec_itl[:rows, m]
            columns[f"{label}.power_w"] = self._rec_power[:rows, PHASES + m]
        if self._cap_log:  # only runs that used caps get cap columns
            caps = _forward_fill_float(self._cap_log, rows, len(self._labels))
            for m, label in enumerate(self._labels):
                columns[f"{label}.cap_w"] = caps[:, m]
        return {"state": pd.DataFrame(columns)}

    def summary(self) -> dict[str, Any]:
        """Data provenance and pool facts of the finished run."""
        facts: dict[str, Any] = {
            "data_source": self._data.description,
            "synthetic": bool(self._data.is_synthetic),
            "models": list(self._labels),
            "capacity_gpus": self.config.capacity_gpus,
            "steps": self._rows,
        }
        if hasattr(self, "_allocations"):
            facts.update(
                num_servers=self._pool.num_servers,
                allocations_computed=self._allocations.computed,
                allocation_cache_hits=self._allocations.hits,
                shifts_refused=self._refused,
            )
        return facts


def _forward_fill(log: Sequence[tuple[int, np.ndarray]], rows: int, width: int) -> np.ndarray:
    """Expand a change log [(first step, values), ...] into one row per step."""
    if rows == 0 or not log:
        return np.zeros((rows, width), dtype=np.int64)
    starts = np.array([k for k, _ in log] + [rows])
    values = np.stack([v for _, v in log]).astype(np.int64)
    return np.repeat(values, np.diff(starts), axis=0)[:rows]


def _forward_fill_float(log: Sequence[tuple[int, np.ndarray]], rows: int, width: int) -> np.ndarray:
    """Like :func:`_forward_fill` for float values (NaN before the first entry)."""
    if rows == 0 or not log:
        return np.full((rows, width), math.nan)
    starts = np.array([k for k, _ in log] + [rows])
    values = np.stack([v for _, v in log]).astype(float)
    return np.repeat(values, np.diff(starts), axis=0)[:rows]


def _template_values(template: Any) -> np.ndarray:
    """The per-GPU power array (W) of a data-source template."""
    values = getattr(template, "power_w", None)
    if values is None:
        values = getattr(template, "values", template)
    return np.asarray(values, dtype=float)
