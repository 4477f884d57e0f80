"""Fake vLLM and zeusd servers: real HTTP servers on 127.0.0.1 that follow the fitted curves.

Use them to rehearse the live path without GPUs (``g2gsim fake-cluster``) and in tests.

Fake vLLM (one per model), a continuous-batching engine in miniature: every engine tick
(``tick_s``) the engine admits waiting requests while fewer than ``max_num_seqs`` run, and
each running request generates ``tick_s / ITL(running)`` tokens, where ITL(b) is the model's
fitted latency curve (``DataSource.logistic_fits(spec).latency``). Tokens are streamed as
OpenAI chat-completion chunks (SSE), several tokens per chunk like vLLM's
``--stream-interval``; every chunk carries cumulative ``usage`` (vLLM's
``continuous_usage_stats``) so clients can count tokens exactly; a request ends after a random
share of its ``max_tokens``, as at an end-of-sequence token. Endpoints: ``/health``,
``/v1/models``, ``/v1/chat/completions`` (streaming), ``/metrics`` (Prometheus text:
``vllm:num_requests_running``, ``vllm:num_requests_waiting``, ``vllm:kv_cache_usage_perc``,
``vllm:num_preemptions_total``) and ``POST /set_max_num_seqs?max_num_seqs=N[&ramp_up_rate=R]``.
Lowering ``max_num_seqs`` preempts the excess requests back to the queue at the next tick;
raising it with a rate R admits at most R more requests per second.

Fake zeusd: the endpoints the ``zeus`` package's ``PowerStreamingClient`` uses (``/discover``,
``/time``, ``/gpu/stream_power`` as server-sent events, plus ``/gpu/get_power``). Each GPU
belongs to one fake vLLM server and draws ``power_scale * P(running) / gpus_per_replica`` W,
P being the model's fitted power curve (W per replica), with 1 % noise; an idle server draws
``idle_fraction`` of P(1). A cluster may run several fake zeusd daemons, a server's GPUs
spread over them (``meters``), as a tensor-parallel replica across two nodes would be.
The fake vLLM keeps the last request bodies it received (:attr:`FakeVLLM.bodies`).

Faults: :meth:`FakeVLLM.kill` (the server stops listening: connections refused),
:attr:`FakeVLLM.delay_s` (every response is delayed), :attr:`FakeVLLM.reject_batch`
(``/set_max_num_seqs`` answers 503 and keeps its batch), :meth:`FakeZeusd.drop_stream` (open
power streams are closed and new ones refused until :meth:`FakeZeusd.restore_stream`).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from g2gsim.live._loop import LoopThread

__all__ = ["FakeCluster", "FakeVLLM", "FakeZeusd"]

HOST = "127.0.0.1"


async def _serve(app: web.Application, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on 127.0.0.1 (`port` 0: a free one); the runner and the bound port."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    return runner, runner.addresses[0][1]


@dataclass(eq=False)
class _Request:
    max_tokens: int
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    generated: float = 0.0
    queued: int = 0
    sent: int = 0
    done: bool = False


class FakeVLLM:
    """A fake vLLM OpenAI-compatible server for one model (see the module docstring).

    Args:
        spec: The model's :class:`~g2gsim.data.spec.ModelSpec`.
        fits: Its :class:`~g2gsim.data.fits.LogisticFits` (latency and power curves).
        max_num_seqs: Initial batch limit.
        served_model_name: Name under ``/v1/models`` (default: the spec's model_id).
        tick_s: Engine tick (and chunk interval) in seconds.
        seed: Noise seed.
        eos_fraction: A request ends (as at an end-of-sequence token) after a uniform random
            fraction in this range of its ``max_tokens``, so requests do not all end together.
    """

    def __init__(
        self,
        spec: Any,
        fits: Any,
        *,
        max_num_seqs: int = 128,
        served_model_name: str | None = None,
        tick_s: float = 0.1,
        seed: int = 0,
        eos_fraction: tuple[float, float] = (0.5, 1.0),
    ) -> None:
        self.spec = spec
        self.eos_fraction = eos_fraction
        self.fits = fits
        self.label = spec.model_label
        self.served_model_name = served_model_name or spec.model_id
        self.gpus_per_replica = int(spec.gpus_per_replica)
        self.tick_s = float(tick_s)
        self.max_num_seqs = int(max_num_seqs)
        self._limit = float(max_num_seqs)  # effective limit during a ramp-up
        self._ramp_rate = 0.0
        self.delay_s = 0.0
        self.reject_batch = False  # fault: /set_max_num_seqs answers 503 and keeps its batch
        self.running: list[_Request] = []
        self.waiting: deque[_Request] = deque()
        self.preemptions = 0
        self.set_calls: list[tuple[int, float]] = []
        self.bodies: deque[dict[str, Any]] = deque(maxlen=32)  # the last chat-completion bodies received
        self._rng = random.Random(seed)
        self._runner: web.AppRunner | None = None
        self._engine: asyncio.Task | None = None
        self.port = 0
        self._registry = CollectorRegistry()
        labels = ["model_name"]
        self._g_running = Gauge("vllm:num_requests_running", "requests running", labels, registry=self._registry)
        self._g_waiting = Gauge("vllm:num_requests_waiting", "requests waiting", labels, registry=self._registry)
        self._g_kv = Gauge("vllm:kv_cache_usage_perc", "KV cache usage", labels, registry=self._registry)
        self._c_preempt = Counter("vllm:num_preemptions", "preemptions", labels, registry=self._registry)

    # -- model ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def itl_s(self, running: int) -> float:
        """ITL at a running batch, s (fitted latency curve)."""
        return max(float(self.fits.latency.eval(max(running, 1))), 1e-4)

    def gpu_power_w(self, idle_fraction: float = 0.3) -> float:
        """Power of one of this server's GPUs now, W (before the zeusd scale and noise)."""
        n = len(self.running)
        per_replica = float(self.fits.power.eval(max(n, 1)))
        if n == 0:
            per_replica *= idle_fraction
        return per_replica / self.gpus_per_replica

    # -- server -----------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/set_max_num_seqs", self._set_max_num_seqs)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def start(self, port: int = 0) -> None:
        self._runner, self.port = await _serve(self.app(), port)
        self._engine = asyncio.get_running_loop().create_task(self._engine_loop())

    async def stop(self) -> None:
        """Stop serving (also the ``server down`` fault): open streams end, connections are refused."""
        if self._engine is not None:
            self._engine.cancel()
            self._engine = None
        for request in [*self.running, *self.waiting]:
            request.queue.put_nowait(None)
        self.running.clear()
        self.waiting.clear()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    kill = stop

    async def _delay(self) -> None:
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)

    async def _health(self, request: web.Request) -> web.Response:
        await self._delay()
        return web.Response(status=200)

    async def _models(self, request: web.Request) -> web.Response:
        await self._delay()
        return web.json_response(
            {"object": "list", "data": [{"id": self.served_model_name, "object": "model", "owned_by": "g2gsim-fake"}]}
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        await self._delay()
        name = self.served_model_name
        self._g_running.labels(name).set(len(self.running))
        self._g_waiting.labels(name).set(len(self.waiting))
        self._g_kv.labels(name).set(min(1.0, len(self.running) / max(self.max_num_seqs, 1)))
        return web.Response(body=generate_latest(self._registry), content_type="text/plain", charset="utf-8")

    async def _set_max_num_seqs(self, request: web.Request) -> web.Response:
        await self._delay()
        try:
            value = int(request.query["max_num_seqs"])
            rate = float(request.query.get("ramp_up_rate", 0.0))
        except (KeyError, ValueError):
            return web.json_response({"error": "max_num_seqs (int) is required"}, status=400)
        if value < 1 or rate < 0 or not math.isfinite(rate):
            return web.json_response({"error": "max_num_seqs must be >= 1, ramp_up_rate >= 0"}, status=400)
        if self.reject_batch:
            return web.json_response({"error": "fault injected: batch changes refused"}, status=503)
        self.set_calls.append((value, rate))
        self.max_num_seqs = value
        if rate > 0 and value > self._limit:
            self._ramp_rate = rate
        else:
            self._ramp_rate = 0.0
            self._limit = float(value)
        return web.json_response({"max_num_seqs": value, "ramp_up_rate": rate})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        await self._delay()
        try:
            body = await request.json()
        except (json.JSONDecodeError, ValueError):
            return web.json_response({"error": "invalid JSON"}, status=400)
        self.bodies.append(body)
        if body.get("model") not in (None, self.served_model_name):
            return web.json_response({"error": f"model {body.get('model')!r} is not served"}, status=404)
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 64)
        if not body.get("stream"):
            return web.json_response({"error": "the fake only streams"}, status=400)
        length = max_tokens * self._rng.uniform(*self.eos_fraction)
        job = _Request(max_tokens=max(1, round(length)))
        self.waiting.append(job)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        try:
            await response.prepare(request)
            created = int(time.time())
            while True:
                item = await job.queue.get()
                if item is None:
                    break
                job.sent += item
                chunk = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": self.served_model_name,
                    "choices": [{"index": 0, "delta": {"content": " tok" * item}, "finish_reason": None}],
                    "usage": {"prompt_tokens": 16, "completion_tokens": job.sent, "total_tokens": 16 + job.sent},
                }
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
                if job.sent >= job.max_tokens:
                    await response.write(b"data: [DONE]\n\n")
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            job.done = True
            if job in self.running:
                self.running.remove(job)
            try:
                self.waiting.remove(job)
            except ValueError:
                pass
        return response

    async def _engine_loop(self) -> None:
        tick = self.tick_s
        while True:
            await asyncio.sleep(tick)
            if self._ramp_rate > 0:
                self._limit = min(float(self.max_num_seqs), self._limit + self._ramp_rate * tick)
                if self._limit >= self.max_num_seqs:
                    self._ramp_rate = 0.0
            limit = max(1, int(self._limit))
            while len(self.running) > limit:  # preempt the newest
                job = self.running.pop()
                self.waiting.appendleft(job)
                self.preemptions += 1
                self._c_preempt.labels(self.served_model_name).inc()
            while self.waiting and len(self.running) < limit:
                job = self.waiting.popleft()
                if not job.done:
                    self.running.append(job)
            if not self.running:
                continue
            itl = self.itl_s(len(self.running)) * (1.0 + 0.02 * self._rng.gauss(0.0, 1.0))
            per_tick = tick / max(itl, 1e-4)
            for job in self.running:
                job.generated += per_tick
                new = min(int(job.generated) - job.queued, job.max_tokens - job.queued)
                if new > 0:
                    job.queue.put_nowait(new)
                    job.queued += new


class FakeZeusd:
    """A fake zeusd: per-GPU power of attached fake vLLM servers, streamed as SSE.

    Args:
        servers: Fake vLLM servers, each getting ``gpus_per_replica`` consecutive GPU ids; or
            a mapping GPU id -> the fake vLLM server it belongs to.
        power_scale: Multiplies every GPU's power (to make a small rehearsal load big).
        interval_s: Streaming period per GPU.
        idle_fraction: Power of an idle server relative to P(1).
    """

    def __init__(
        self,
        servers: Sequence[FakeVLLM] | Mapping[int, FakeVLLM],
        *,
        power_scale: float = 1.0,
        interval_s: float = 0.1,
        idle_fraction: float = 0.3,
        seed: int = 0,
    ) -> None:
        self.gpus: dict[int, FakeVLLM] = {}
        if isinstance(servers, Mapping):
            self.gpus = {int(gpu): server for gpu, server in sorted(servers.items())}
        else:
            for server in servers:
                for _ in range(server.gpus_per_replica):
                    self.gpus[len(self.gpus)] = server
        self.power_scale = float(power_scale)
        self.interval_s = float(interval_s)
        self.idle_fraction = float(idle_fraction)
        self.dropped = False
        self._rng = random.Random(seed)
        self._streams: set[web.StreamResponse] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.port}"

    def gpu_ids_of(self, server: FakeVLLM) -> tuple[int, ...]:
        return tuple(gpu for gpu, owner in self.gpus.items() if owner is server)

    def power_w(self, gpu: int) -> float:
        base = self.gpus[gpu].gpu_power_w(self.idle_fraction) * self.power_scale
        return max(0.0, base * (1.0 + 0.01 * self._rng.gauss(0.0, 1.0)))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/discover", self._discover)
        app.router.add_get("/time", self._time)
        app.router.add_get("/gpu/get_power", self._get_power)
        app.router.add_get("/gpu/stream_power", self._stream_power)
        return app

    async def start(self, port: int = 0) -> None:
        self._runner, self.port = await _serve(self.app(), port)

    async def stop(self) -> None:
        self.dropped = True
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def drop_stream(self) -> None:
        """Fault: close every open power stream and refuse new ones (HTTP 503)."""
        self.dropped = True

    def restore_stream(self) -> None:
        self.dropped = False

    def _ids(self, request: web.Request) -> list[int]:
        raw = request.query.get("gpu_ids")
        if not raw:
            return sorted(self.gpus)
        ids = [int(x) for x in raw.split(",") if x.strip()]
        unknown = [i for i in ids if i not in self.gpus]
        if unknown:
            raise web.HTTPBadRequest(text=f"unknown GPU ids {unknown}")
        return ids

    async def _discover(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "gpus": [{"id": i, "name": f"Fake {self.gpus[i].spec.gpu_model}"} for i in sorted(self.gpus)],
                "cpus": [],
                "enabled_api_groups": ["gpu-read"],
                "auth_required": False,
            }
        )

    async def _time(self, request: web.Request) -> web.Response:
        return web.json_response({"timestamp_ms": int(time.time() * 1000)})

    async def _get_power(self, request: web.Request) -> web.Response:
        ids = self._ids(request)
        return web.json_response(
            {"timestamp_ms": int(time.time() * 1000), "power_mw": {str(i): int(self.power_w(i) * 1000) for i in ids}}
        )

    async def _stream_power(self, request: web.Request) -> web.StreamResponse:
        if self.dropped:
            return web.Response(status=503, text="power stream unavailable (fault injected)")
        ids = self._ids(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        try:
            while not self.dropped:
                now_ms = int(time.time() * 1000)
                text = "".join(
                    f"data: {json.dumps({'timestamp_ms': now_ms, 'gpu_id': i, 'power_mw': int(self.power_w(i) * 1000)})}\n\n"
                    for i in ids
                )
                await response.write(text.encode())
                await asyncio.sleep(self.interval_s)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response


#: Per model label: (fake zeusd number, GPU indices on it) of each part of its GPUs.
MeterLayout = Mapping[str, Sequence[tuple[int, Sequence[int]]]]


class FakeCluster:
    """Fake vLLM servers (one per model) and fake zeusd daemons, served from a background thread.

    Args:
        specs: Model specs by label.
        data: Data source of the fitted curves (``logistic_fits``).
        initial_batch: Starting ``max_num_seqs`` per label (default 128).
        power_scale: zeusd power multiplier.
        tick_s: Engine tick of the fake vLLM servers.
        meters: Which fake zeusd meters which GPUs of each model (see :data:`MeterLayout`);
            default: one daemon, each server's ``gpus_per_replica`` GPUs numbered in turn.
    """

    def __init__(
        self,
        specs: dict[str, Any],
        data: Any,
        *,
        initial_batch: dict[str, int] | None = None,
        power_scale: float = 1.0,
        tick_s: float = 0.1,
        zeusd_interval_s: float = 0.1,
        seed: int = 0,
        meters: MeterLayout | None = None,
    ) -> None:
        initial_batch = initial_batch or {}
        self.vllm: dict[str, FakeVLLM] = {
            label: FakeVLLM(
                spec, data.logistic_fits(spec), max_num_seqs=initial_batch.get(label, 128), tick_s=tick_s, seed=seed + i
            )
            for i, (label, spec) in enumerate(sorted(specs.items()))
        }
        layout = dict(meters) if meters is not None else _one_daemon(self.vllm)
        unknown = sorted(set(layout) - set(self.vllm))
        if unknown:
            raise ValueError(f"meters name models without a fake server: {unknown}; servers: {sorted(self.vllm)}")
        daemons: dict[int, dict[int, FakeVLLM]] = {}
        for label, parts in layout.items():
            for number, gpus in parts:
                owned = daemons.setdefault(int(number), {})
                taken = sorted(set(gpus) & set(owned))
                if taken:
                    raise ValueError(f"fake zeusd {number}: GPUs {taken} are given to two models")
                owned.update({int(gpu): self.vllm[label] for gpu in gpus})
        self.zeusds = [
            FakeZeusd(daemons.get(d, {}), power_scale=power_scale, interval_s=zeusd_interval_s, seed=seed + d)
            for d in range(max(daemons, default=0) + 1)
        ]
        self._layout = {
            label: [(int(n), tuple(int(g) for g in gpus)) for n, gpus in parts] for label, parts in layout.items()
        }
        self._loop: LoopThread | None = None

    @property
    def zeusd(self) -> FakeZeusd:
        """The first fake zeusd (the only one unless `meters` names several)."""
        return self.zeusds[0]

    def start(
        self,
        vllm_ports: dict[str, int] | None = None,
        zeusd_port: int = 0,
        zeusd_ports: Sequence[int] | None = None,
    ) -> FakeCluster:
        """Serve on 127.0.0.1: the given ports (0 or missing: any free port); `zeusd_ports`
        lists one port per fake zeusd (`zeusd_port` is the first one's)."""
        ports = vllm_ports or {}
        meter_ports = list(zeusd_ports) if zeusd_ports is not None else [zeusd_port]
        meter_ports += [0] * (len(self.zeusds) - len(meter_ports))
        self._loop = LoopThread("g2gsim-fake-cluster")

        async def _start() -> None:
            for label, server in self.vllm.items():
                await server.start(ports.get(label, 0))
            for daemon, port in zip(self.zeusds, meter_ports):
                await daemon.start(port)

        try:
            self._loop.call(_start(), timeout=30)
        except BaseException:
            self.stop()
            raise
        return self

    def run(self, coro_fn: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine function (e.g. ``fake.vllm[m].kill``) on the fakes' loop."""
        assert self._loop is not None, "the fake cluster is not started"
        return self._loop.call(coro_fn(), timeout)

    def kill(self, label: str) -> None:
        """Fault: the vLLM server of `label` goes down."""
        self.run(self.vllm[label].kill)

    def stop(self) -> None:
        if self._loop is None:
            return

        async def _stop() -> None:
            for daemon in self.zeusds:
                await daemon.stop()
            for server in self.vllm.values():
                await server.stop()

        loop, self._loop = self._loop, None
        loop.stop(_stop())

    def __enter__(self) -> FakeCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def endpoints(self) -> dict[str, dict[str, Any]]:
        """Per model: vLLM URL, served name and its meters (for a scenario file): ``zeusd`` and
        ``gpu_ids`` when one fake zeusd meters it, else ``gpu_endpoints``."""
        found: dict[str, dict[str, Any]] = {}
        for label, server in self.vllm.items():
            entry: dict[str, Any] = {"url": server.url, "served_model_name": server.served_model_name}
            parts = self._layout.get(label, [])
            if len(parts) == 1:
                number, gpus = parts[0]
                entry.update(zeusd=self.zeusds[number].endpoint, gpu_ids=list(gpus))
            else:
                entry["gpu_endpoints"] = [
                    {"host": HOST, "port": self.zeusds[number].port, "gpu_indices": list(gpus)}
                    for number, gpus in parts
                ]
            found[label] = entry
        return found


def _one_daemon(servers: Mapping[str, FakeVLLM]) -> dict[str, list[tuple[int, list[int]]]]:
    """The default layout: one fake zeusd, each server's GPUs numbered in turn."""
    layout: dict[str, list[tuple[int, list[int]]]] = {}
    next_gpu = 0
    for label, server in servers.items():
        layout[label] = [(0, list(range(next_gpu, next_gpu + server.gpus_per_replica)))]
        next_gpu += server.gpus_per_replica
    return layout
