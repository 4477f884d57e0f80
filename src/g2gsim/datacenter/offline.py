"""The trace-driven ("offline") datacenter process (SPEC 2.2-2.5).

At each step the site applies the commands delivered since its last step, then publishes a
:class:`DatacenterState` in mailbox ``state`` and records the step into preallocated column
buffers. The power of every allocated server (from per-GPU templates, see
:mod:`g2gsim.datacenter.pool`), the measurement noise and the observed ITL of every model
are computed ahead for a block of steps in one vectorised pass; a step only publishes its
row. A block ends where the state is known to change (the next scheduled change) and is
recomputed from the current step when a command changes it earlier; the random streams are
consumed exactly as a step-by-step computation would (:mod:`g2gsim.datacenter.blocks`).

Scheduled changes are kernel events (:mod:`g2gsim.datacenter.schedule`): one process per
replica schedule sets the scheduled count at each step where its rounded value changes,
one process switches training runs on and off, and one process per batch ramp-up marks
the steps where the ramped batch moves, each in the DELIVER phase before the site's step.
No table of the horizon's steps is computed. Capacity is checked at t = 0 and at every
replica change, for the schedule at reset and for every ShiftReplicas.

A batch ramp-up (SetBatchSize with a rate R > 0 requests/s) moves the effective batch to
min(target, b0 + floor(R (t - t0))), where t0 is the time of the step that applied the
command and b0 the batch then, evaluated in exact time at the steps where it changes. A
batch between two measured sizes blends their operating points (power and ITL alike).
Lowering a batch is immediate. Commands of a step apply before the ramp changes of that step.

GPU power caps (SetPowerCap, W per GPU per model, ``None`` removes one) follow the
performance model of :mod:`g2gsim.datacenter.power_cap` (``config.gpu_power``): caps are
rounded down to 25 W steps within [min cap, rated power]; each GPU draws min(template,
cap); below the model's power floor its ITL is multiplied by floor / cap (so throughput
batch / ITL shrinks by the same factor). States report the caps.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from g2gsim.datacenter.base import ConfiguredDatacenter
from g2gsim.datacenter.blocks import Block, BlockLength, NormalStream
from g2gsim.datacenter.commands import SetBatchSize, SetPowerCap, ShiftReplicas
from g2gsim.datacenter.config import DatacenterConfig
from g2gsim.datacenter.latency import FleetLatency, MeanLatency
from g2gsim.datacenter.pool import (
    PHASES,
    Allocation,
    AllocationCache,
    FleetPower,
    OperatingPoint,
    ServerPool,
    TemplateBank,
)
from g2gsim.datacenter.power_cap import cap_slowdown
from g2gsim.datacenter.schedule import BatchRamp, ReplicaTimeline, StepClock, TrainingWindows, follow
from g2gsim.datacenter.state import DatacenterState, forward_fill
from g2gsim.kernel.commands import Command
from g2gsim.kernel.time import TimeLike, as_seconds, step_count

if TYPE_CHECKING:
    from mlenergy.data.modeling import ITLMixtureModel
    from simpy.events import Event

    from g2gsim.data.source import DataSource
    from g2gsim.kernel.context import RunContext

__all__ = ["OfflineDatacenter"]


_NO_RAMP = Fraction(0)  # ramp-up rate of a model a SetBatchSize gives no rate for
_NO_DRAWS = np.zeros(0)


@dataclass(frozen=True, eq=False)
class _RunData:
    """What every run of one horizon shares (immutable): the data source's templates and ITL
    fits, and the scheduled replicas as change events."""

    horizon: Fraction
    bank: TemplateBank
    known: tuple[tuple[int, ...], ...]  # per model, sorted batches with a template
    fits: tuple[dict[int, ITLMixtureModel | None], ...]
    timeline: ReplicaTimeline


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
    #: Most steps computed ahead in one pass (1: step by step; the results are the same).
    longest_block: ClassVar[int] = 64

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
        self._noise: NormalStream | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def prepare(self, horizon: Fraction) -> None:
        """Load the templates, fits and replica timeline of a run of this horizon (kept for
        every such run)."""
        self._load_data(horizon)

    def reset(self, ctx: RunContext) -> None:
        """Fresh run: data products, new pool and streams, the schedules' events, buffers."""
        super().reset(ctx)
        assert self.period is not None
        config = self.config
        self._box = ctx.mailbox("state")
        self._period_ticks = ctx.clock.ticks(self.period)
        self._n_steps = n = ctx.step_count(self.period)
        self._clock = StepClock(self._period_ticks, ctx.clock.tick)
        run_data = self._load_data(ctx.horizon)
        self._known = run_data.known
        self._bank = run_data.bank

        self._pool = ServerPool.build(
            num_servers=config.num_servers,
            gpus_per_server=config.facility.gpus_per_server,
            labels=self._labels,
            template_length=run_data.bank.max_length,
            amplitude_range=config.augmentation.amplitude_scale_range,
            rng=self._layout_rng(ctx),
        )
        self._allocations = AllocationCache(self._pool, self._labels, self._per_replica)
        if self._noise is not None:
            self._noise.close()  # the last run's stream: stop drawing its normals ahead
        self._noise = NormalStream(ctx.rng("noise")) if config.augmentation.noise_fraction > 0 else None
        self._latency_rng = ctx.rng("latency")
        self._latency_normals = NormalStream(self._latency_rng, rewind=True)
        self._latency = MeanLatency(run_data.fits) if config.replay.itl_mode == "mean" else FleetLatency(run_data.fits)

        self._timeline = run_data.timeline
        self._check_schedule_fits()
        self._scheduled_now = self._replica_timeline().at(0).copy()
        self._training = TrainingWindows(config.training, self._clock, n)
        self._reset_state()
        self._reset_recording(n)

    def _reset_state(self) -> None:
        """Run state at t = 0: initial batches, no offsets, caps, ramps or computed block."""
        n_models = len(self._labels)
        self._offset = np.zeros(n_models, dtype=np.int64)
        self._replicas_stale = True
        self._layout_steps = self._layout_changes()
        self._replica_key: tuple[int, ...] | None = None
        self._allocation: Allocation | None = None
        self._fleet: FleetPower | None = None
        self._ramps: dict[int, BatchRamp] = {}
        self._ramp_next: dict[int, int] = {}  # model -> next step its ramp changes the batch
        self._ramp_due = False
        self._batch = self._frozen(np.array([d.initial_batch for d in self.config.deployments], dtype=np.int64))
        self._points = [OperatingPoint.of(int(b), k) for b, k in zip(self._batch, self._known)]
        self._latency.set_points(self._points)
        self._refused = 0
        self._caps = np.full(n_models, math.inf)  # W per GPU, inf = uncapped
        self._caps_state = self._frozen(np.full(n_models, math.nan))
        self._slowdown: np.ndarray | None = None
        self._cap_log: list[tuple[int, np.ndarray]] = []
        self._block: Block | None = None
        self._block_allocation: Allocation | None = None
        self._computed_until = 0  # steps before this are computed for the present state
        self._blocks = self._blocks_cut = self._steps_recomputed = 0
        longest = self.longest_block
        self._lengths = BlockLength(first=min(16, longest), shortest=min(4, longest), longest=longest)

    def _reset_recording(self, n: int) -> None:
        """Column buffers for n steps, and read-only views of them for published states."""
        n_models = len(self._labels)
        self._rows = 0
        self._rec_power = np.zeros((n, PHASES + n_models))  # phases a, b, c, then models
        self._rec_itl = np.full((n, n_models), math.nan)
        self._power_out = self._rec_power.view()
        self._power_out.flags.writeable = False
        self._itl_out = self._rec_itl.view()
        self._itl_out.flags.writeable = False
        # batch and replicas change rarely: (first step, values) whenever they change
        self._batch_log: list[tuple[int, np.ndarray]] = []
        self._replica_log: list[tuple[int, np.ndarray]] = []

    def helper_processes(self) -> Iterator[Generator[Event, Any, None]]:
        """One kernel process per schedule that changes the site (replicas, training)."""
        ctx = self.ctx
        for m, changes in enumerate(self._replica_timeline().changes):
            if len(changes) > 1:
                yield follow(ctx, self._period_ticks, changes[1:], partial(self._scheduled_change, m))
        if self._training.edges:
            yield follow(ctx, self._period_ticks, self._training.changes(), self._training_edge)

    def _layout_rng(self, ctx: RunContext) -> np.random.Generator:
        """The stream the server layout is drawn from: the site's ``layout`` stream, or with
        ``replay.layout = "openg2g"`` ``default_rng(seed)`` as OpenG2G draws it (the same
        draws in the same order then give OpenG2G's layout for the same seed)."""
        if self.config.replay.layout == "openg2g":
            return np.random.default_rng(ctx.seed)
        return ctx.rng("layout")

    def _load_data(self, horizon: Fraction) -> _RunData:
        """Templates, fits and the replica timeline for this horizon (kept across runs: they
        are immutable); each template spans ``replay.template_s`` when set, else the horizon."""
        cached = self._run_data
        if cached is not None and cached.horizon == horizon:
            return cached
        assert self.period is not None
        length = float(horizon) if self.config.replay.template_s is None else self.config.replay.template_s
        templates: dict[tuple[str, int], np.ndarray] = {}
        known: list[tuple[int, ...]] = []
        fits: list[dict[int, ITLMixtureModel | None]] = []
        for deployment in self.config.deployments:
            spec = deployment.spec
            batches = tuple(sorted(set(spec.feasible_batch_sizes or ()) | {deployment.initial_batch}))
            model_fits: dict[int, ITLMixtureModel | None] = {}
            for batch in batches:
                template = self._data.power_template(spec, batch, self.period, length)
                template.check_dt(self.period)
                # per-GPU power (W): a template's power_w (a stand-in's values, or the array itself)
                values = getattr(template, "power_w", None)
                values = getattr(template, "values", template) if values is None else values
                templates[(spec.model_label, batch)] = np.asarray(values, dtype=float)
                model_fits[batch] = self._data.itl_fit(spec, batch)
            known.append(batches)
            fits.append(model_fits)
        bank = TemplateBank(templates, self.longest_block)
        timeline = ReplicaTimeline.build(self.config, self.period, step_count(self.period, horizon))
        self._run_data = _RunData(horizon, bank, tuple(known), tuple(fits), timeline)
        return self._run_data

    def _check_schedule_fits(self) -> None:
        """The scheduled replicas must fit the pool (GPUs and whole servers) at every change."""
        steps, rows = self._replica_timeline().from_step(0)
        bad = self._misfits(rows)
        if bad.size:
            j = int(bad[0])
            replicas = dict(zip(self._labels, rows[j].tolist()))
            raise ValueError(
                f"site {self.name!r}: at t = {self._clock.seconds(int(steps[j])):g} s the scheduled replicas "
                f"{replicas} need {int(rows[j] @ self._gpr)} GPUs / {int(self._servers(rows[j : j + 1])[0])} "
                f"servers but capacity_gpus = {self.config.capacity_gpus} ({self.config.num_servers} servers)"
            )

    # -- scheduled changes (kernel events, DELIVER phase) ---------------------------------------
    def _scheduled_change(self, m: int, replicas: int) -> bool:
        """Model m's scheduled replica count changes now."""
        self._scheduled_now[m] = replicas
        self._replicas_stale = True
        return True

    def _training_edge(self, edge: tuple[int, bool]) -> bool:
        """A training run starts or ends now."""
        self._training.switch(edge)
        self._computed_until = 0
        return True

    def _ramp_change(self, m: int, ramp: BatchRamp, next_step: int | None) -> bool:
        """Model m's ramped batch moves at this step (False: the ramp was replaced)."""
        if self._ramps.get(m) is not ramp:
            return False
        self._ramp_due = True
        if next_step is None:
            self._ramp_next.pop(m, None)
        else:
            self._ramp_next[m] = next_step
        return True

    def _follow_ramp(self, m: int, ramp: BatchRamp, k: int) -> None:
        """Start the process that marks each step where a new ramp moves the batch."""
        assert self.period is not None
        steps = []
        for step, _batch in ramp.changes(k, self.period):
            if step >= self._n_steps:
                break
            steps.append(step)
        if not steps:
            return
        self._ramp_next[m] = steps[0]
        changes = zip(steps, [*steps[1:], None])
        self.ctx.env.process(follow(self.ctx, self._period_ticks, changes, partial(self._ramp_change, m, ramp)))

    # -- one step -------------------------------------------------------------------------------
    def step(self, tick: int) -> None:
        """Apply commands and due changes, compute a block if needed, publish and record (most
        steps fall inside a computed block with nothing to apply: they only publish their row)."""
        k = tick // self._period_ticks
        block = self._block
        if (
            k < self._computed_until
            and not (self._inbox or self._ramp_due or self._replicas_stale)
            and block is not None
            and block.latency.rows is not None
        ):
            self._publish_row(tick, k, block)
            return
        self._full_step(tick, k)

    def _full_step(self, tick: int, k: int) -> None:
        """A step that applies commands or due changes, starts a block or samples the ITL."""
        self._prepare_step(tick, k)
        block = self._block
        assert block is not None
        if block.latency.rows is None:
            self._sample_itl(k)
        self._publish_row(tick, k, block)

    def _prepare_step(self, tick: int, k: int) -> None:
        """What step k does before it publishes: apply commands and due changes, start a block
        when one is needed, log the batches, replicas and caps it runs with."""
        if self._inbox:
            self._apply(self.take_commands(), tick, k)
        if self._ramp_due:
            self._advance_ramps(tick)
        if self._replicas_stale:
            self._update_replicas(k)
        if k >= self._computed_until:
            self._compute_block(k)
        assert self._block_allocation is not None
        batch, replicas = self._batch, self._block_allocation.active_replicas
        if not self._batch_log or self._batch_log[-1][1] is not batch:
            self._batch_log.append((k, batch))
        if not self._replica_log or self._replica_log[-1][1] is not replicas:
            self._replica_log.append((k, replicas))
        if self._cap_log and self._cap_log[-1][1] is not self._caps_state:
            self._cap_log.append((k, self._caps_state))

    def _sample_itl(self, k: int, count: int = 1) -> None:
        """A small fleet's ITL of steps k .. k + count - 1, drawn at their steps (not in the block)."""
        itl = self._latency.sample_rows(self._latency_rng, count)
        self._rec_itl[k : k + count] = itl if self._slowdown is None else itl * self._slowdown

    def _publish_row(self, tick: int, k: int, block: Block) -> None:
        """Publish step k's state from its block's rows (batch, replicas and caps as they are)."""
        self._rows = k + 1
        self._box.publish(tick, self._state_row(block, k - block.start))

    def _state_row(self, block: Block, i: int) -> DatacenterState:
        """The state of row i of `block` (batch, replicas and caps as they are now)."""
        allocation = self._block_allocation
        assert allocation is not None
        # Positional arguments (one state per step): site, time_s, models, power_w,
        # model_power_w, batch, replicas, itl_s, phase_share, power_cap_w.
        return DatacenterState(
            self.name,
            block.times[i],
            self._labels,
            block.phase_rows[i],
            block.model_rows[i],
            self._batch,
            allocation.active_replicas,
            block.itl_rows[i],
            allocation.phase_share,
            self._caps_state,
        )

    def stretch_steps(self, tick: int, limit: int) -> int:
        """Steps left in the computed block when nobody waits on each state; this tick's
        commands, due changes and new block are applied first, as its step would."""
        k = tick // self._period_ticks
        if not self._box.stretchable or k >= self._n_steps:
            return 0
        if self._inbox or self._ramp_due or self._replicas_stale or k >= self._computed_until:
            self._prepare_step(tick, k)
        count = max(0, min(limit, self._computed_until - k))
        if count > 1:  # the rows it would publish, for a grid that decides after it
            ticks = range(tick, tick + count * self._period_ticks, self._period_ticks)
            self._box.offer_stretch(ticks, self._power_out[k : k + count, :PHASES])
        return count

    def step_stretch(self, tick: int, count: int) -> None:
        """Publish `count` steps of the computed block at once: the last step's state, every
        state to queued readers, and the per-phase power rows (W) for a grid stepping with it."""
        block, k = self._block, tick // self._period_ticks
        assert block is not None
        first, self._rows = k - block.start, k + count
        if block.latency.rows is None:  # its ITL drawn as step() would, step after step
            self._sample_itl(k, count)
        self._box.publish_stretch(
            range(tick, tick + count * self._period_ticks, self._period_ticks),
            self._state_row(block, first + count - 1),
            self._power_out[k : k + count, :PHASES],
            lambda: [self._state_row(block, i) for i in range(first, first + count)],
        )

    def _compute_block(self, k: int) -> None:
        """Power (and ITL, in the normal regime) of steps k .. until the next known change."""
        self._close_block(k)
        self._blocks += 1
        fleet = self._fleet
        if fleet is None:
            assert self._allocation is not None
            caps = self._caps if self._slowdown is not None else None
            fleet = self._fleet = FleetPower(
                self._pool, self._allocation, self._bank, self._points, self.config.augmentation.noise_fraction, caps
            )
        stop = self._block_stop(k)
        count = stop - k
        noise_draws = fleet.noise_draws if self._noise is not None else 0
        normals = self._noise.take(count * noise_draws) if self._noise is not None and noise_draws else _NO_DRAWS
        times = self._clock.times(k, stop)
        overlay = self._base_overlay_w + self._training.power(times) / PHASES
        sums, servers = fleet.block(k, count, normals if noise_draws else None, overlay)
        self._rec_power[k:stop] = sums
        latency = self._latency.block(self._latency_normals, count)
        if latency.rows is not None:
            self._rec_itl[k:stop] = latency.rows if self._slowdown is None else latency.rows * self._slowdown
        # Row views are made here in C (iterating the block), not one by one in every step.
        self._block = Block(
            k,
            stop,
            servers,
            normals,
            noise_draws,
            latency,
            times=times.tolist(),
            phase_rows=list(self._power_out[k:stop, :PHASES]),
            model_rows=list(self._power_out[k:stop, PHASES:]),
            itl_rows=list(self._itl_out[k:stop]),
        )
        self._block_allocation = fleet.allocation
        self._computed_until = stop

    def _close_block(self, k: int) -> None:
        """Before a new block at step k: give back the draws of the old block's unused steps."""
        block = self._block
        if block is None:
            return
        if k >= block.stop:
            self._lengths.ran_out(changed=self._computed_until == 0)
            return
        used = k - block.start
        self._blocks_cut += 1
        self._steps_recomputed += block.stop - k
        if self._noise is not None and block.noise_draws:
            self._noise.unused(block.normals[used * block.noise_draws :])
        block.latency.unused(used)
        self._lengths.cut(used)

    def _block_stop(self, k: int) -> int:
        """End of a block from step k: its length, the horizon, or the next scheduled change of
        the state (new servers for the replicas, a training edge, a batch ramp step)."""
        stop = min(k + self._lengths.value, self._n_steps)
        layout = self._layout_steps
        i = int(np.searchsorted(layout, k, side="right"))
        next_layout = int(layout[i]) if i < layout.size else None
        for change in (next_layout, self._training.next_edge(k), *self._ramp_next.values()):
            if change is not None and k < change < stop:
                stop = change
        return stop

    @property
    def _base_overlay_w(self) -> float:
        return self.config.facility.base_kw_per_phase * 1000.0

    def _update_replicas(self, k: int) -> None:
        """Requested replicas from schedule + offsets; a new allocation when they changed."""
        self._replicas_stale = False
        requested = np.maximum(self._scheduled_now + self._offset, 0)
        key = tuple(requested.tolist())
        if key == self._replica_key:
            return
        allocation = self._allocations.at(key, self.name, self._clock.seconds(k))
        self._replica_key = key
        if allocation is not self._allocation:
            self._allocation = allocation
            self._fleet = None
            self._computed_until = 0
            self._latency.set_replicas(allocation.active_replicas)

    # -- commands -------------------------------------------------------------------------------
    def _apply(self, commands: Sequence[Command], tick: int, k: int) -> None:
        for command in commands:
            if isinstance(command, SetBatchSize):
                self._set_batch(command, tick, k)
            elif isinstance(command, ShiftReplicas):
                self._shift(command, k)
            elif isinstance(command, SetPowerCap):
                self._set_caps(command, k)
            else:
                raise self.reject(command)

    def _set_batch(self, command: SetBatchSize, tick: int, k: int) -> None:
        """Validate the whole command, then set batches (at once, or as a ramp-up)."""
        targets: dict[int, tuple[int, Fraction]] = {}
        rates = command.ramp_up_rate
        for label, size in command.batch.items():
            m = self._index(label, command)
            if size not in self._known[m]:
                raise ValueError(
                    f"SetBatchSize for site {self.name!r}: batch {size} of {label!r} is not a known "
                    f"batch size; allowed: {list(self._known[m])}"
                )
            # Most commands carry no ramp: skip the exact (Fraction) conversion of a default 0.
            rate = as_seconds(rates[label], name=f"ramp_up_rate[{label!r}]") if label in rates else _NO_RAMP
            targets[m] = (int(size), rate)
        for label in rates:
            self._index(label, command)
        batch = self._batch.copy()
        for m, (target, rate) in targets.items():
            if self._ramps:
                self._ramps.pop(m, None)
                self._ramp_next.pop(m, None)
            if rate is not _NO_RAMP and rate > 0 and target > batch[m]:  # (a Fraction compare is slow)
                ramp = BatchRamp(int(batch[m]), target, rate, self.ctx.clock.seconds(tick))
                self._ramps[m] = ramp
                self._follow_ramp(m, ramp, k)
            else:
                batch[m] = target
        self._set_batches(batch)

    def _advance_ramps(self, tick: int) -> None:
        """Move ramping batches to their value at this step's exact time (a ramp event is due)."""
        self._ramp_due = False
        t_now = self.ctx.clock.seconds(tick)
        batch = self._batch.copy()
        for m, ramp in list(self._ramps.items()):
            batch[m] = ramp.batch_at(t_now)
            if batch[m] >= ramp.target:
                del self._ramps[m]
                self._ramp_next.pop(m, None)
                self.ctx.event("batch_ramp_done", {"model": self._labels[m], "batch": ramp.target})
        self._set_batches(batch)

    def _set_batches(self, batch: np.ndarray) -> None:
        """Publish new effective batches and refresh the operating points that changed."""
        if batch.tolist() == self._batch.tolist():  # a handful of ints: cheaper than np.array_equal
            return
        for m in np.flatnonzero(batch != self._batch):
            self._points[m] = OperatingPoint.of(int(batch[m]), self._known[m])
        self._batch = self._frozen(batch)
        self._latency.set_points(self._points)
        self._fleet = None
        self._computed_until = 0
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
        self._computed_until = 0
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
        self._layout_steps = self._layout_changes()

    def _layout_changes(self) -> np.ndarray:
        """Steps where the servers the scheduled replicas (plus offsets) need change: the
        replica changes that give a new allocation (the others keep the fleet and its block)."""
        timeline = self._replica_timeline()
        requested = np.maximum(timeline.replicas + self._offset, 0)
        servers = -(-(requested * self._gpr) // self.config.facility.gpus_per_server)
        return timeline.steps[1:][np.any(servers[1:] != servers[:-1], axis=1)]

    @staticmethod
    def _frozen(array: np.ndarray) -> np.ndarray:
        array.setflags(write=False)
        return array

    # -- results --------------------------------------------------------------------------------
    def server_power(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Last step's allocated servers, their phases and their power, W (for diagnostics)."""
        block, allocation = self._block, self._block_allocation
        if block is None or allocation is None or not block.start < self._rows <= block.stop:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0)
        servers = allocation.flat_servers
        return servers, self._pool.phase[servers], block.servers[self._rows - 1 - block.start].copy()

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
            "time_s": self._clock.times(0, rows),
            "power_a_w": self._rec_power[:rows, 0],
            "power_b_w": self._rec_power[:rows, 1],
            "power_c_w": self._rec_power[:rows, 2],
        }
        batch = forward_fill(self._batch_log, rows, len(self._labels))
        replicas = forward_fill(self._replica_log, rows, len(self._labels))
        for m, label in enumerate(self._labels):
            columns[f"{label}.batch"] = batch[:, m]
            columns[f"{label}.replicas"] = replicas[:, m]
            columns[f"{label}.itl_s"] = self._rec_itl[:rows, m]
            columns[f"{label}.power_w"] = self._rec_power[:rows, PHASES + m]
        if self._cap_log:  # only runs that used caps get cap columns
            caps = forward_fill(self._cap_log, rows, len(self._labels), float, math.nan)
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
                blocks=self._blocks,
                blocks_cut=self._blocks_cut,
                steps_recomputed=self._steps_recomputed,
            )
        return facts
