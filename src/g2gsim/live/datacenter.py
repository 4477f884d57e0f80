"""The live datacenter (SPEC 3): same state and commands as the trace-driven one, real servers.

Threads: one asyncio loop thread talks to every vLLM server (load, ITL, metrics, health,
batch-size calls); zeus's streaming threads and one sampler thread fill the power buffer.
A step never waits on I/O: it applies commands by *scheduling* batch-size calls on the loop,
drains the outcomes and events the background work queued since the previous step, reads
the latest ITL and a copy of the power buffer, computes the augmented fleet power and
publishes a :class:`DatacenterState`.

Augmentation: the site's server pool is the trace-driven one (:class:`ServerPool`, same
layout stream, phases, amplitudes and allocation by replica counts). Instead of a template,
each virtual server reads the rolling buffer of one of its model's real GPUs (virtual servers
of a model cycle over its real GPUs), `stagger` samples (``stagger x dt`` seconds) before the
newest, times ``gpus_per_server x amplitude``, plus the same optional noise.

Batch: each model has one sender on the loop that sends its targets one call at a time, the
newest winning (a target superseded while a call is in flight is never sent), so calls never
overtake each other. The state reports the batch each server last *accepted*. A refused
``/set_max_num_seqs`` call keeps the old value (``batch_set_failed``); a call with no answer
is retried, and if it never gets one the server may or may not run the new batch
(``batch_set_unconfirmed``); either way the next command with that batch is sent again.
ITL: the sliding-window ITL of each server (NaN before the first sample); TTFT likewise. A
server that goes down is reported (``server_down``); with ``on_server_failure = "continue"``
the site keeps its last values, with ``"stop"`` the step raises :class:`LiveServerError` and
the run stops (every thread and connection is released by :meth:`stop`, which the real-time
kernel always calls). Steps with a server down or one of its meters stale are flagged per
model, and :meth:`summary` gives the seconds of stale data per server.

What it publishes is a :class:`~g2gsim.live.state.LiveDatacenterState` (measured power,
augmentation factor, Prometheus snapshot); what it records is described in
:mod:`g2gsim.live.tables`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from g2gsim.datacenter.base import ConfiguredDatacenter
from g2gsim.datacenter.commands import SetBatchSize, ShiftReplicas
from g2gsim.datacenter.config import DatacenterConfig
from g2gsim.datacenter.pool import PHASES, Allocation, AllocationCache, ServerPool
from g2gsim.kernel.commands import Command
from g2gsim.kernel.time import TimeLike
from g2gsim.live.config import LiveServerError, LiveSiteConfig, LiveStartupError
from g2gsim.live.state import LiveDatacenterState
from g2gsim.live.tables import LiveRecorder, gpu_column

if TYPE_CHECKING:
    from g2gsim.data.source import DataSource
    from g2gsim.kernel.context import RunContext
    from g2gsim.live._loop import LoopThread
    from g2gsim.live.power import PowerFeed
    from g2gsim.live.vllm import BatchCall, ServerLink

#: Calls of one batch target that get no answer before the sender gives up (and reports it).
BATCH_CALL_ATTEMPTS = 3

__all__ = ["LiveDatacenter"]


class LiveDatacenter(ConfiguredDatacenter):
    """A site whose power and latency come from live vLLM servers and zeusd power meters.

    Args:
        name: Component name.
        config: The site (deployments give the simulated replica counts and initial batches).
        data: The data source of the fitted curves controllers use.
        live: Servers, meters, start-up and failure policy.
        period: Step, s.
        seed: Layout and noise seed (as for the trace-driven site).
    """

    def __init__(
        self,
        name: str,
        config: DatacenterConfig,
        data: DataSource,
        live: LiveSiteConfig,
        period: TimeLike = Fraction(1, 10),
        seed: int | None = None,
    ) -> None:
        super().__init__(name, period, seed=config.seed if seed is None else seed)
        self.config = config
        self.live = live
        self._data = data
        self._labels = config.labels
        for label in self._labels:
            live.server(label)  # every model needs a server
        extra = sorted({s.model for s in live.servers} - set(self._labels))
        if extra:
            raise ValueError(f"live site {name!r}: servers for models the site does not run: {extra}")
        self._per_replica = {d.label: d.spec.gpus_per_replica for d in config.deployments}
        self._gpr = np.array([self._per_replica[label] for label in self._labels], dtype=np.int64)
        # Power-buffer rows: every metered GPU of each model, in label order.
        self._gpus = [(label, gpu) for label in self._labels for gpu in live.server(label).gpus]
        self._gpu_model = np.array([self._labels.index(label) for label, _ in self._gpus], dtype=np.int64)
        self._gpu_rows = [np.flatnonzero(self._gpu_model == m) for m in range(len(self._labels))]
        real_gpus = np.array([rows.size for rows in self._gpu_rows], dtype=float)
        self._real_replicas = real_gpus / self._gpr  # fractional when a replica is partly metered
        self._meters_of = [frozenset(endpoint for endpoint, _ in live.server(label).gpus) for label in self._labels]
        self._loop: LoopThread | None = None
        self._links: list[ServerLink] = []
        self._power: PowerFeed | None = None
        self._running = False

    # -- lifecycle ------------------------------------------------------------------------------
    def reset(self, ctx: RunContext) -> None:
        """Fresh run: pool, replica table, buffers. Connections are made in :meth:`start`."""
        self.stop()  # a previous run that was not stopped
        super().reset(ctx)
        assert self.period is not None
        config = self.config
        self._box = ctx.mailbox("state")
        self._period_ticks = ctx.clock.ticks(self.period)
        n = ctx.step_count(self.period)
        self._dt = float(self.period)
        self._times = np.arange(n) * self._dt
        self._buffer_len = max(2, int(round(self.live.buffer_s / self._dt)))
        self._pool = ServerPool.build(
            num_servers=config.num_servers,
            gpus_per_server=config.facility.gpus_per_server,
            labels=self._labels,
            template_length=self._buffer_len,
            amplitude_range=config.augmentation.amplitude_scale_range,
            rng=ctx.rng("layout"),
        )
        self._allocations = AllocationCache(self._pool, self._labels, self._per_replica)
        self._noise_rng = ctx.rng("noise") if config.augmentation.noise_fraction > 0 else None
        self._offset = np.zeros(len(self._labels), dtype=np.int64)
        self._base_w = config.facility.base_kw_per_phase * 1000.0
        self._replica_key: tuple[int, ...] | None = None
        self._allocation: Allocation | None = None
        self._reader: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._events: deque = deque()
        self._outcomes: deque = deque()
        self._batch = np.array([d.initial_batch for d in config.deployments], dtype=np.int64)
        self._requested: list[int | None] = [int(b) for b in self._batch]  # last target sent, per model
        self._targets: dict[int, tuple[int, float]] = {}  # on the I/O loop: newest unsent target
        self._senders: set[int] = set()  # on the I/O loop: models whose sender runs
        self._down: set[str] = set()
        self._reconnects: dict[str, int] = {}
        self._refused = 0
        self._failed_sets = 0
        columns = [gpu_column(label, endpoint, gpu) for label, (endpoint, gpu) in self._gpus]
        self._recorder = LiveRecorder(self._labels, columns, self._times)

    def start(self) -> None:
        """Start-up (SPEC 3): health and model checks, first power reading per meter, initial
        batch sizes, load, warm-up until saturated and the buffer is full. Blocking (it runs
        before the kernel's clock starts); any failure releases everything and raises
        :class:`LiveStartupError`."""
        try:
            self._start_up()
        except BaseException:
            self.stop()
            raise

    def _start_up(self) -> None:
        from g2gsim.live._loop import LoopThread
        from g2gsim.live.power import PowerFeed
        from g2gsim.live.vllm import ServerLink

        live = self.live
        self._loop = LoopThread(f"g2gsim-live-{self.name}")
        self._links = []
        for label in self._labels:
            server = live.server(label)
            served = server.served_model_name or self.config.specs[label].model_id
            self._links.append(ServerLink(server, served, live, self._events))
        loop = self._loop
        setup_timeout = 4 * live.request_timeout_s + 5

        async def _open_and_check() -> None:
            for link in self._links:
                await link.open()
            for link in self._links:
                await link.check()

        loop.call(_open_and_check(), timeout=setup_timeout * len(self._links))

        self._power = PowerFeed(
            [gpu for _, gpu in self._gpus],
            dt=self._dt,
            buffer_s=live.buffer_s,
            stale_after_s=live.stale_after_s,
            events=self._events,
            reconnect_initial_s=live.reconnect_initial_s,
            reconnect_max_s=live.reconnect_max_s,
        )
        self._power.start()
        self._power.wait_first_reading(live.first_reading_timeout_s)

        async def _initial_batches() -> list[BatchCall]:
            return [await link.set_batch(int(b)) for link, b in zip(self._links, self._batch)]

        outcomes = loop.call(_initial_batches(), timeout=setup_timeout * len(self._links))
        failed = {link.label: call.reason for link, call in zip(self._links, outcomes) if not call.ok}
        if failed:
            raise LiveStartupError(f"site {self.name!r}: could not set the initial batch sizes: {failed}")

        async def _start_load() -> None:
            for link in self._links:
                link.start_load()

        loop.call(_start_load(), timeout=setup_timeout)
        self._warm_up()
        self._running = True

    def _warm_up(self) -> None:
        """Wait until every server is saturated and the power buffer holds `warmup_fill_s` of
        samples taken since (so the virtual servers start from saturated readings)."""
        live = self.live
        start = time.monotonic()
        need = [live.saturation_fraction * float(b) for b in self._batch]
        assert self._power is not None
        # the buffer holds whole samples: never wait for more than it can hold
        fill_s = min(live.warmup_fill_s, self._power.capacity_s) - 1e-9
        saturated_at: float | None = None
        while True:
            now = time.monotonic()
            elapsed = now - start
            for link in self._links:
                link.trajectory.append((round(elapsed, 2), float(link.running)))
            if all(link.running >= n for link, n in zip(self._links, need)):
                saturated_at = now if saturated_at is None else saturated_at
                if now - saturated_at >= fill_s:
                    return
            if elapsed > live.warmup_timeout_s:
                self._warm_up_failed(need, 0.0 if saturated_at is None else now - saturated_at)
            time.sleep(0.1)

    def _warm_up_failed(self, need: list[float], buffered_s: float) -> None:
        """Raise the warm-up timeout, with each server's trajectory of running requests."""
        live = self.live
        lines = []
        for link, n in zip(self._links, need):
            points = link.trajectory[:: max(1, len(link.trajectory) // 20)]
            lines.append(
                f"  {link.label}: needs {n:g} running, last {link.running:g}; "
                f"(s, running) {points}; request errors {link.request_errors}"
            )
        raise LiveStartupError(
            f"site {self.name!r}: warm-up did not saturate within {live.warmup_timeout_s:g} s "
            f"(power buffer filled while saturated {buffered_s:.1f}/{live.warmup_fill_s:g} s):\n" + "\n".join(lines)
        )

    def stop(self) -> None:
        """Stop load, power streams and the loop thread; close every connection. Idempotent."""
        self._running = False
        power, self._power = self._power, None
        if power is not None:
            power.stop()
            self._reconnects = power.reconnects
        loop, self._loop = self._loop, None
        if loop is not None:
            links = list(self._links)

            async def _close() -> None:
                for link in links:
                    await link.close()

            loop.stop(_close())

    # -- one step -------------------------------------------------------------------------------
    def step(self, tick: int) -> None:
        k = tick // self._period_ticks
        self._drain()
        if self._inbox:
            self._apply(self.take_commands(), k)
        self._update_replicas(k)
        assert self._allocation is not None and self._power is not None
        buffer, newest, filled = self._power.snapshot()
        power = self._fleet_power(k, buffer, newest, filled)
        gpu_w = buffer[:, newest] if filled else np.zeros(buffer.shape[0])
        state, down, power_stale = self._state(k, power, gpu_w)
        self._recorder.record(k, state, gpu_w, self._power.max_age_s(), down, power_stale)
        for m, link in enumerate(self._links):
            self._recorder.record_itl(k, m, _drain_samples(link.itl_samples))
        self._box.publish(tick, state)

    def _state(
        self, k: int, power: np.ndarray, gpu_w: np.ndarray
    ) -> tuple[LiveDatacenterState, np.ndarray, np.ndarray]:
        """The state of step k (augmented and measured power, the servers' readings), and the
        per-model flags server down / power stale."""
        assert self._allocation is not None and self._power is not None
        links = self._links
        n_models = len(self._labels)
        replicas = self._allocation.active_replicas
        serving = replicas > 0
        measured = np.bincount(self._gpu_model, weights=gpu_w, minlength=n_models)
        stale_meters = self._power.stale
        down = np.array([label in self._down for label in self._labels], dtype=bool)
        power_stale = np.array([not meters.isdisjoint(stale_meters) for meters in self._meters_of], dtype=bool)
        batch = self._batch.copy()
        state = LiveDatacenterState(
            site=self.name,
            time_s=float(self._times[k]),
            models=self._labels,
            power_w=_frozen(power[:PHASES]),
            model_power_w=_frozen(power[PHASES:]),
            batch=_frozen(batch),
            replicas=replicas,
            itl_s=_frozen(np.where(serving, [link.itl_s for link in links], math.nan)),
            phase_share=self._allocation.phase_share,
            ttft_s=_frozen(np.where(serving, [link.ttft_s for link in links], math.nan)),
            measured_power_w=_frozen(np.full(PHASES, measured.sum() / PHASES)),
            measured_model_power_w=_frozen(measured),
            augmentation_factor=_frozen(replicas / self._real_replicas),
            running=_frozen(np.array([link.running for link in links], dtype=float)),
            waiting=_frozen(np.array([link.waiting for link in links], dtype=float)),
            kv_cache_usage=_frozen(np.array([link.kv_cache_usage for link in links], dtype=float)),
            preemptions=_frozen(np.array([link.preemptions for link in links], dtype=float)),
            stale=_frozen(down | power_stale),
        )
        return state, down, power_stale

    def _drain(self) -> None:
        """Record what the background threads reported since the last step; apply batch outcomes."""
        while self._events:
            topic, payload = self._events.popleft()
            self.ctx.event(topic, payload)
            if topic == "server_down":
                self._down.add(payload["model"])
            elif topic == "server_up":
                self._down.discard(payload["model"])
        while self._outcomes:
            m, batch, call, attempts = self._outcomes.popleft()
            if call.ok:
                self._batch[m] = batch
                self.ctx.event("batch_set", {"model": self._labels[m], "batch": int(batch)})
                continue
            self._failed_sets += 1
            if self._requested[m] == batch:
                self._requested[m] = None  # the next command with this batch is sent again
            payload = {"model": self._labels[m], "batch": int(batch), "reason": call.reason, "attempts": attempts}
            if call.uncertain:
                # No answer: the server may run the new batch; the state keeps reporting the
                # last acknowledged one, and the event says so.
                self.ctx.event("batch_set_unconfirmed", {**payload, "reported": int(self._batch[m])})
            else:
                self.ctx.event("batch_set_failed", {**payload, "kept": int(self._batch[m])})
        if self._down and self.live.on_server_failure == "stop":
            raise LiveServerError(
                f"live site {self.name!r}: server(s) down for {sorted(self._down)} and on_server_failure = 'stop'"
            )

    def _apply(self, commands: list[Command], k: int) -> None:
        for command in commands:
            if isinstance(command, SetBatchSize):
                self._set_batch(command)
            elif isinstance(command, ShiftReplicas):
                self._shift(command, k)
            else:
                raise self.reject(command)

    def _set_batch(self, command: SetBatchSize) -> None:
        """Validate, then hand the new targets to each model's sender (the step does not wait).

        A target equal to the last one requested (not the last one acknowledged, which may
        be about to change) is not sent again, unless that request failed.
        """
        requests = []
        for label, batch in command.batch.items():
            m = self._index(label, command)
            if int(batch) <= 0:
                raise ValueError(
                    f"SetBatchSize for site {self.name!r}: batch of {label!r} must be positive, got {batch}"
                )
            requests.append((m, int(batch), float(command.ramp_up_rate.get(label, 0.0))))
        for label in command.ramp_up_rate:
            self._index(label, command)
        assert self._loop is not None
        for m, batch, rate in requests:
            if batch == self._requested[m] and rate == 0:
                continue
            self._requested[m] = batch
            self._loop.submit(self._request_batch(m, batch, rate))

    async def _request_batch(self, m: int, batch: int, rate: float) -> None:
        """On the I/O loop: make (batch, rate) model m's newest target; start its sender if idle.

        One sender per model sends targets one at a time, newest first wins (a target
        superseded while a call is in flight is never sent), so calls never overtake each
        other. A call without an answer is retried (the server may or may not have applied
        it) up to :data:`BATCH_CALL_ATTEMPTS` times unless a newer target arrives.
        """
        self._targets[m] = (batch, rate)
        if m in self._senders:
            return
        self._senders.add(m)
        try:
            while m in self._targets:
                target = self._targets.pop(m)
                for attempt in range(1, BATCH_CALL_ATTEMPTS + 1):
                    call = await self._links[m].set_batch(*target)
                    if call.ok or not call.uncertain or m in self._targets or attempt == BATCH_CALL_ATTEMPTS:
                        break
                self._outcomes.append((m, target[0], call, attempt))
        finally:
            self._senders.discard(m)

    def _update_replicas(self, k: int) -> None:
        requested = np.maximum(self._replica_timeline().at(k) + self._offset, 0)
        key = tuple(requested.tolist())
        if key == self._replica_key:
            return
        allocation = self._allocations.at(key, self.name, self._times[k])
        self._replica_key = key
        if allocation is not self._allocation:
            self._allocation = allocation
            self._reader = self._buffer_reader(allocation)

    def _overlay(self, k: int) -> float:
        """Base load plus training power per phase at step k (training evaluated at its time)."""
        training = self.config.training
        if not len(training):
            return self._base_w
        return self._base_w + float(training.power(self._times[k : k + 1])[0]) / PHASES

    def _buffer_reader(self, allocation: Allocation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per allocated virtual server: its real-GPU buffer row, its stagger (samples), its gain."""
        servers = allocation.flat_servers
        rows = np.empty(servers.size, dtype=np.int64)
        for m in range(len(self._labels)):
            mine = np.flatnonzero(allocation.flat_model == m)
            gpu_rows = self._gpu_rows[m]
            rows[mine] = gpu_rows[np.arange(mine.size) % gpu_rows.size]
        stagger = self._pool.stagger[servers] % self._buffer_len
        gain = self._pool.gpus_per_server * self._pool.amplitude[servers]
        return rows, stagger, gain

    def _fleet_power(self, k: int, buffer: np.ndarray, newest: int, filled: int) -> np.ndarray:
        """[phase a, b, c, model 1..M] power, W, from the newest buffer at each server's stagger."""
        assert self._allocation is not None and self._reader is not None
        rows, stagger, gain = self._reader
        back = np.minimum(stagger, max(filled - 1, 0))
        server_power = buffer[rows, (newest - back) % buffer.shape[1]] * gain
        nf = self.config.augmentation.noise_fraction
        if self._noise_rng is not None and server_power.size:
            server_power = server_power + self._noise_rng.normal(0.0, nf, server_power.size) * np.maximum(
                server_power, 1.0
            )
            np.maximum(server_power, 0.0, out=server_power)
        n_models = len(self._labels)
        sums = np.bincount(self._allocation.flat_key, weights=server_power, minlength=n_models * PHASES)
        sums = sums.reshape(n_models, PHASES)
        out = np.empty(PHASES + n_models)
        out[:PHASES] = sums.sum(axis=0) + self._overlay(k)
        out[PHASES:] = sums.sum(axis=1)
        return out

    # -- results --------------------------------------------------------------------------------
    def tables(self) -> dict[str, pd.DataFrame]:
        """``state``, ``gpu_power`` and ``itl_samples`` (see :mod:`g2gsim.live.tables`)."""
        if not hasattr(self, "_recorder"):
            return {}
        return self._recorder.tables()

    def stale_seconds(self) -> dict[str, dict[str, float]]:
        """Seconds of stale data per server (model label): ``stale`` (down or a meter stale),
        ``server_down`` and ``power_stale``."""
        if not hasattr(self, "_recorder"):
            return {}
        steps = self._recorder.stale_steps()
        return {
            flag: {label: float(n) * self._dt for label, n in zip(self._labels, counts.tolist())}
            for flag, counts in steps.items()
        }

    def summary(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "data_source": self._data.description,
            "synthetic": bool(self._data.is_synthetic),
            "live": True,
            "models": list(self._labels),
            "capacity_gpus": self.config.capacity_gpus,
            "steps": self._recorder.rows if hasattr(self, "_recorder") else 0,
            "buffer_s": self.live.buffer_s,
        }
        if hasattr(self, "_recorder"):
            stale = self.stale_seconds()
            facts.update(
                batch_set_failures=self._failed_sets,
                shifts_refused=self._refused,
                requests_completed={link.label: link.completed for link in self._links},
                request_errors={link.label: link.request_errors for link in self._links},
                stale_s_by_server=stale["stale"],
                server_down_s_by_server=stale["server_down"],
                power_stale_s_by_server=stale["power_stale"],
                servers_down_at_end=sorted(self._down),
                meter_reconnects=dict(self._reconnects),
                real_gpus_by_model={label: int(rows.size) for label, rows in zip(self._labels, self._gpu_rows)},
            )
        return facts


def _frozen(array: np.ndarray) -> np.ndarray:
    """The array, read-only (a published state's arrays are never mutated)."""
    array = np.asarray(array)
    array.setflags(write=False)
    return array


def _drain_samples(samples: deque[tuple[float, int]]) -> list[tuple[float, int]]:
    """Everything queued so far by the I/O loop (it may keep appending meanwhile)."""
    drained = []
    while samples:
        try:
            drained.append(samples.popleft())
        except IndexError:
            break
    return drained
