"""GPU power from zeusd: the ``zeus`` package's streaming client and a rolling per-GPU buffer.

`zeus.monitor.power_streaming.PowerStreamingClient` keeps one SSE connection per zeusd
endpoint (TCP ``host:port``; also what the fakes serve) in its own threads and exposes the
latest reading per GPU. A sampler thread here reads that snapshot every `dt` seconds and
appends one column to a ring buffer (GPUs x `buffer_s / dt` samples): the buffer advances on
a fixed grid whatever the meter's own rate. A GPU whose endpoint has sent nothing for
`stale_after_s` is *stale*: its column repeats the last reading and a ``power_stale`` event
is queued (``power_restored`` when readings resume). The kernel only ever takes a copy of the
buffer (:meth:`PowerFeed.snapshot`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence

import numpy as np

from g2gsim.live.config import LiveStartupError


class PowerFeed:
    """Rolling per-GPU power buffer fed by zeusd streams.

    Args:
        gpus: (zeusd ``host:port``, GPU index) of every buffer row, in row order.
        dt: Sampling period of the buffer, s.
        buffer_s: Buffer length, s.
        stale_after_s: Age after which an endpoint's readings count as stale.
        events: Thread-safe queue for (topic, payload) events to the kernel.
    """

    def __init__(
        self,
        gpus: Sequence[tuple[str, int]],
        *,
        dt: float,
        buffer_s: float,
        stale_after_s: float,
        events: deque,
        reconnect_delay_s: float = 0.5,
    ) -> None:
        self.rows = list(gpus)
        self.dt = float(dt)
        self.length = max(2, int(round(buffer_s / dt)))
        self.stale_after_s = float(stale_after_s)
        self._events = events
        self._reconnect_delay_s = reconnect_delay_s
        self._buffer = np.zeros((len(self.rows), self.length))
        self._position = 0  # next column to write
        self._filled = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._client = None
        self._thread: threading.Thread | None = None
        self.stale: set[str] = set()
        self.last_timestamp: dict[str, float] = {}
        self.stale_events = 0

    @property
    def endpoints(self) -> list[str]:
        return sorted({endpoint for endpoint, _ in self.rows})

    def start(self) -> None:
        """Connect to every zeusd endpoint (blocking, at start-up) and start sampling."""
        from zeus.monitor.power_streaming import PowerStreamingClient
        from zeus.utils.zeusd import ZeusdConfig

        configs = []
        for endpoint in self.endpoints:
            host, _, port = endpoint.rpartition(":")
            ids = sorted({gpu for e, gpu in self.rows if e == endpoint})
            configs.append(ZeusdConfig.tcp(host, int(port), gpu_indices=ids, cpu_indices=[]))
        try:
            self._client = PowerStreamingClient(configs, reconnect_delay_s=self._reconnect_delay_s)
        except Exception as exc:  # zeus raises its own connection errors, httpx errors, ValueError
            raise LiveStartupError(
                f"zeusd power meter(s) {self.endpoints} not usable: {type(exc).__name__}: {exc}"
            ) from None
        self._thread = threading.Thread(target=self._sample_loop, name="g2gsim-live-power", daemon=True)
        self._thread.start()

    def wait_first_reading(self, timeout_s: float) -> None:
        """Block until every endpoint has sent a reading for each of its GPUs, or raise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.missing():
                return
            time.sleep(0.05)
        raise LiveStartupError(
            f"no power reading within {timeout_s:g} s from zeusd for (endpoint, GPU) {self.missing()}"
        )

    def missing(self) -> list[tuple[str, int]]:
        readings = self._client.get_power() if self._client is not None else {}
        return [(e, g) for e, g in self.rows if e not in readings or g not in readings[e].gpu_power_w]

    def _sample_loop(self) -> None:
        assert self._client is not None
        column = np.zeros(len(self.rows))
        next_time = time.monotonic()
        failing = False
        while not self._stop.is_set():
            try:
                readings = self._client.get_power()
            except Exception as exc:
                if not failing:
                    failing = True
                    self._events.append(("power_read_failed", {"error": f"{type(exc).__name__}: {exc}"}))
                readings = {}
            else:
                if failing:
                    failing = False
                    self._events.append(("power_read_restored", {}))
            now = time.time()
            for i, (endpoint, gpu) in enumerate(self.rows):
                reading = readings.get(endpoint)
                if reading is not None and gpu in reading.gpu_power_w:
                    column[i] = reading.gpu_power_w[gpu]
            for endpoint in self.endpoints:
                reading = readings.get(endpoint)
                if reading is not None:
                    self.last_timestamp[endpoint] = reading.timestamp_s
                elif endpoint not in self.last_timestamp:
                    continue
                # no reading now: the last one keeps ageing, so a silent meter turns stale
                age = now - self.last_timestamp[endpoint]
                if age > self.stale_after_s and endpoint not in self.stale:
                    self.stale.add(endpoint)
                    self.stale_events += 1
                    self._events.append(("power_stale", {"zeusd": endpoint, "age_s": round(age, 3)}))
                elif age <= self.stale_after_s and endpoint in self.stale:
                    self.stale.discard(endpoint)
                    self._events.append(("power_restored", {"zeusd": endpoint}))
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
        """Age of the oldest endpoint's newest reading, s (inf before any reading)."""
        if not self.last_timestamp:
            return float("inf")
        now = time.time()
        return max(now - t for t in self.last_timestamp.values())

    def stop(self) -> None:
        """Stop sampling and every zeus streaming thread; close zeus's HTTP clients."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        client, self._client = self._client, None
        if client is not None:
            client.stop()
            # zeus 0.16's ZeusdClient keeps an httpx.Client (used for discovery) with no
            # close(): close it here so no keep-alive socket outlives the run.
            for daemon in getattr(client, "_daemon_clients", {}).values():
                http = getattr(daemon, "_client", None)
                if http is not None:
                    http.close()
