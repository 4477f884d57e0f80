"""GPU power from zeusd: the ``zeus`` package's streaming client and a rolling per-GPU buffer.

Each zeusd daemon (TCP ``host:port``; also what the fakes serve) gets its own
`zeus.monitor.power_streaming.PowerStreamingClient`, whose threads keep an SSE connection
and expose the latest reading per GPU. A sampler thread here reads every daemon's snapshot
every `dt` seconds and appends one column to a ring buffer (GPUs x `buffer_s / dt`
samples): the buffer advances on a fixed grid whatever the meters' own rates.

A daemon that has sent nothing for `stale_after_s` is *stale*: its GPUs' columns repeat the
last readings and a ``power_stale`` event is queued (``power_restored`` when readings
resume). A supervisor thread reconnects a stale daemon with exponential backoff (a new
streaming client after `reconnect_initial_s`, doubling up to `reconnect_max_s`; each try is
a ``power_reconnect`` event), so a meter that restarts is picked up again without hammering
one that stays down. The kernel only ever takes a copy of the buffer
(:meth:`PowerFeed.snapshot`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from g2gsim.live.config import LiveStartupError

__all__ = ["PowerFeed"]


class _Meter:
    """One zeusd daemon: its streaming client and its reconnection state."""

    def __init__(self, endpoint: str, gpus: Sequence[int], delay_s: float) -> None:
        self.endpoint = endpoint
        host, _, port = endpoint.rpartition(":")
        self.host = host
        self.port = int(port)
        self.gpus = sorted(set(gpus))
        self.client: Any = None
        self.last_timestamp: float | None = None
        self.delay_s = delay_s
        self.next_try = 0.0
        self.reconnects = 0

    def connect(self, reconnect_delay_s: float) -> None:
        """A new streaming client (blocking: discovery and clock offset); raises if unreachable."""
        from zeus.monitor.power_streaming import PowerStreamingClient
        from zeus.utils.zeusd import ZeusdConfig

        config = ZeusdConfig.tcp(self.host, self.port, gpu_indices=self.gpus, cpu_indices=[])
        self.client = PowerStreamingClient([config], reconnect_delay_s=reconnect_delay_s)

    def reading(self) -> Any:
        """The newest reading of this daemon (None before any, or while disconnected)."""
        client = self.client
        return None if client is None else client.get_power().get(self.endpoint)

    def close(self) -> None:
        """Stop the client's threads and close zeus's HTTP client (it has no close of its own)."""
        client, self.client = self.client, None
        if client is None:
            return
        client.stop()
        for daemon in getattr(client, "_daemon_clients", {}).values():
            http = getattr(daemon, "_client", None)
            if http is not None:
                http.close()


class PowerFeed:
    """Rolling per-GPU power buffer fed by zeusd streams.

    Args:
        gpus: (zeusd ``host:port``, GPU index) of every buffer row, in row order.
        dt: Sampling period of the buffer, s.
        buffer_s: Buffer length, s.
        stale_after_s: Age after which a daemon's readings count as stale.
        events: Thread-safe queue for (topic, payload) events to the kernel.
        reconnect_initial_s / reconnect_max_s: Backoff of the reconnection of a stale daemon.
    """

    def __init__(
        self,
        gpus: Sequence[tuple[str, int]],
        *,
        dt: float,
        buffer_s: float,
        stale_after_s: float,
        events: deque,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 30.0,
    ) -> None:
        self.rows = list(gpus)
        self.dt = float(dt)
        self.length = max(2, int(round(buffer_s / dt)))
        self.stale_after_s = float(stale_after_s)
        self._events = events
        self._initial_s = float(reconnect_initial_s)
        self._max_s = float(reconnect_max_s)
        endpoints = sorted({endpoint for endpoint, _ in self.rows})
        self._meters = {
            e: _Meter(e, [g for endpoint, g in self.rows if endpoint == e], self._initial_s) for e in endpoints
        }
        self._buffer = np.zeros((len(self.rows), self.length))
        self._position = 0  # next column to write
        self._filled = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        #: Stale daemons (``host:port``), replaced as a whole so other threads may read it.
        self.stale: frozenset[str] = frozenset()
        self.stale_events = 0

    @property
    def endpoints(self) -> list[str]:
        return list(self._meters)

    @property
    def reconnects(self) -> dict[str, int]:
        """Reconnection tries per daemon so far."""
        return {e: meter.reconnects for e, meter in self._meters.items()}

    def start(self) -> None:
        """Connect to every zeusd daemon (blocking, at start-up) and start sampling."""
        for meter in self._meters.values():
            try:
                meter.connect(self._initial_s)
            except Exception as exc:  # zeus raises its own connection errors, httpx errors, ValueError
                raise LiveStartupError(
                    f"zeusd power meter {meter.endpoint} (GPUs {meter.gpus}) not usable: {type(exc).__name__}: {exc}"
                ) from None
        for target, name in ((self._sample_loop, "g2gsim-live-power"), (self._supervise, "g2gsim-live-meters")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait_first_reading(self, timeout_s: float) -> None:
        """Block until every daemon has sent a reading for each of its GPUs, or raise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.missing():
                return
            time.sleep(0.05)
        raise LiveStartupError(
            f"no power reading within {timeout_s:g} s from zeusd for (endpoint, GPU) {self.missing()}"
        )

    def missing(self) -> list[tuple[str, int]]:
        readings = {e: meter.reading() for e, meter in self._meters.items()}
        return [(e, g) for e, g in self.rows if readings[e] is None or g not in readings[e].gpu_power_w]

    # -- threads ------------------------------------------------------------------------------
    def _sample_loop(self) -> None:
        column = np.zeros(len(self.rows))
        next_time = time.monotonic()
        while not self._stop.is_set():
            readings = {e: meter.reading() for e, meter in self._meters.items()}
            for i, (endpoint, gpu) in enumerate(self.rows):
                reading = readings[endpoint]
                if reading is not None and gpu in reading.gpu_power_w:
                    column[i] = reading.gpu_power_w[gpu]
            self._update_staleness(readings)
            with self._lock:
                self._buffer[:, self._position] = column
                self._position = (self._position + 1) % self.length
                self._filled = min(self._filled + 1, self.length)
            next_time += self.dt
            delay = next_time - time.monotonic()
            if delay < -self.dt:  # fell behind (CPU load): do not burst to catch up
                next_time = time.monotonic()
                delay = 0.0
            self._stop.wait(max(delay, 0.0))

    def _update_staleness(self, readings: dict[str, Any]) -> None:
        """Age every daemon's newest reading; report daemons turning stale or fresh again."""
        now = time.time()
        stale = set(self.stale)
        for endpoint, meter in self._meters.items():
            reading = readings[endpoint]
            if reading is not None:
                meter.last_timestamp = reading.timestamp_s
            if meter.last_timestamp is None:
                continue
            # no reading now: the last one keeps ageing, so a silent meter turns stale
            age = now - meter.last_timestamp
            if age > self.stale_after_s and endpoint not in stale:
                stale.add(endpoint)
                self.stale_events += 1
                meter.next_try = time.monotonic() + meter.delay_s
                self._events.append(("power_stale", {"zeusd": endpoint, "age_s": round(age, 3)}))
            elif age <= self.stale_after_s and endpoint in stale:
                stale.discard(endpoint)
                meter.delay_s = self._initial_s
                self._events.append(("power_restored", {"zeusd": endpoint, "reconnects": meter.reconnects}))
        if stale != self.stale:
            self.stale = frozenset(stale)

    def _supervise(self) -> None:
        """Reconnect stale daemons, each after its backoff delay (doubling up to the maximum)."""
        while not self._stop.wait(0.05):
            for endpoint in sorted(self.stale):
                meter = self._meters[endpoint]
                if time.monotonic() < meter.next_try or self._stop.is_set():
                    continue
                meter.reconnects += 1
                meter.close()
                payload: dict[str, Any] = {"zeusd": endpoint, "attempt": meter.reconnects}
                try:
                    meter.connect(meter.delay_s)
                except Exception as exc:
                    payload["error"] = f"{type(exc).__name__}: {exc}"
                if self._stop.is_set():
                    meter.close()  # stop() may already have closed the others
                payload["next_delay_s"] = meter.delay_s = min(2.0 * meter.delay_s, self._max_s)
                meter.next_try = time.monotonic() + meter.delay_s
                self._events.append(("power_reconnect", payload))

    # -- reading the buffer ---------------------------------------------------------------------
    @property
    def filled_s(self) -> float:
        """Seconds of buffer filled so far."""
        return self._filled * self.dt

    @property
    def capacity_s(self) -> float:
        """Seconds the buffer holds when full (``buffer_s`` rounded to whole samples)."""
        return self.length * self.dt

    def snapshot(self) -> tuple[np.ndarray, int, int]:
        """(copy of the buffer, index of the newest column, columns filled)."""
        with self._lock:
            return self._buffer.copy(), (self._position - 1) % self.length, self._filled

    def max_age_s(self) -> float:
        """Age of the oldest daemon's newest reading, s (inf before any reading)."""
        stamps = [m.last_timestamp for m in self._meters.values() if m.last_timestamp is not None]
        if not stamps:
            return float("inf")
        return time.time() - min(stamps)

    def stop(self) -> None:
        """Stop sampling, reconnecting and every zeus streaming thread; close zeus's HTTP clients."""
        self._stop.set()
        for thread in self._threads:
            thread.join(15.0)
        self._threads = []
        for meter in self._meters.values():
            meter.close()
