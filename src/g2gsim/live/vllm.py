"""Client side of one vLLM OpenAI-compatible server: health, load, ITL, queue metrics, batch size.

Everything here runs as coroutines on the live site's background loop (:class:`LoopThread`).
What the kernel reads (`itl_s`, `running`, `waiting`, `healthy`, ...) are plain attributes
assigned atomically by the loop; events for the kernel's log go through a thread-safe deque.

ITL: every streamed chunk with cumulative ``usage.completion_tokens`` (vLLM's
``stream_options.continuous_usage_stats``; else one token per non-empty chunk) gives a sample
(arrival time, seconds since the request's previous chunk, tokens in this chunk); the first
chunk of a request (time to first token) is not an ITL sample. The ITL of the last
``itl_window_s`` seconds is sum(seconds) / sum(tokens) over the samples that arrived in it;
with no samples in the window the last value is kept (its age is reported). Each sample's
seconds per token and tokens also go to :attr:`ServerLink.itl_samples`, which the site drains
every step to record what it measured.

TTFT: the seconds from sending a request to its first token chunk; the mean over the
requests whose first token arrived in the last ``ttft_window_s`` seconds (the last value
kept when none did). Under the site's saturating load this includes the time a request
waits in the server's queue, as a user's request would.

Requests: the JSONL file's bodies (or a built-in prompt), each with the server's
``request_extra_body`` merged in (its fields win), then the model name and the streaming
options the measurement needs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from g2gsim.live.config import LiveServerConfig, LiveSiteConfig, LiveStartupError

#: The Prometheus samples read from ``/metrics`` (sums over label sets).
METRICS = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:kv_cache_usage_perc": "kv_cache_usage",
    "vllm:num_preemptions_total": "preemptions",
}

BUILTIN_PROMPT = "Explain, step by step, how a power distribution feeder regulates voltage."

#: ITL samples kept for the recording between two drains by the site (older ones are dropped).
ITL_SAMPLE_BACKLOG = 4096


def parse_metrics(text: str) -> dict[str, float]:
    """The vLLM queue metrics of a Prometheus text page, by short name (missing ones absent)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            short = METRICS.get(sample.name)
            if short is not None:
                found[short] = found.get(short, 0.0) + float(sample.value)
    return found


def load_requests(
    path: str | Path, served_name: str, max_tokens: int, extra_body: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Request bodies from a JSONL file: each line a chat-completion body or ``{"messages": ...}``
    or ``{"prompt": "..."}``; `extra_body` is merged into each, then `model` and the streaming
    options are set."""
    bodies = []
    file = Path(path)
    for number, line in enumerate(file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LiveStartupError(f"{file}:{number}: not JSON: {exc}") from None
        if "messages" not in item:
            if "prompt" not in item:
                raise LiveStartupError(f"{file}:{number}: a request needs 'messages' or 'prompt'")
            item = {"messages": [{"role": "user", "content": str(item.pop("prompt"))}], **item}
        item.setdefault("max_tokens", max_tokens)
        bodies.append(item)
    if not bodies:
        raise LiveStartupError(f"{file}: no requests")
    return [_streaming(body, served_name, extra_body) for body in bodies]


def _streaming(body: dict[str, Any], served_name: str, extra_body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        **body,
        **(extra_body or {}),
        "model": served_name,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }


@dataclass(frozen=True, slots=True)
class BatchCall:
    """Outcome of one /set_max_num_seqs call."""

    ok: bool
    reason: str
    uncertain: bool = False  # no answer: the server may or may not have applied it


class ServerLink:
    """The live site's connection to one vLLM server (one model)."""

    def __init__(self, config: LiveServerConfig, served_name: str, site: LiveSiteConfig, events: deque) -> None:
        self.config = config
        self.label = config.model
        self.served_name = served_name
        self.site = site
        self.base = config.url.rstrip("/")
        self._events = events
        extra = config.request_extra_body
        if config.requests:
            self._bodies = load_requests(config.requests, served_name, config.max_tokens, extra)
        else:
            body = {"messages": [{"role": "user", "content": BUILTIN_PROMPT}], "max_tokens": config.max_tokens}
            self._bodies = [_streaming(body, served_name, extra)]
        self._next_body = 0
        self.session: aiohttp.ClientSession | None = None
        # -- read by the kernel (atomic attribute assignments) --
        self.itl_s = float("nan")
        self.itl_time = 0.0  # monotonic time of the newest ITL sample
        self.ttft_s = float("nan")
        #: (seconds per token, tokens) of every ITL sample, for the site's recording (bounded if not drained).
        self.itl_samples: deque[tuple[float, int]] = deque(maxlen=ITL_SAMPLE_BACKLOG)
        self.running = 0.0
        self.waiting = 0.0
        self.kv_cache_usage = float("nan")
        self.preemptions = 0.0
        self.healthy = True
        self.batch = 0  # the batch the server last accepted
        self.inflight = 0
        self.completed = 0
        self.request_errors = 0
        self.trajectory: list[tuple[float, float]] = []  # (s since warm-up start, running) while warming up
        self._samples: deque[tuple[float, float, int]] = deque()
        self._first_tokens: deque[tuple[float, float]] = deque()  # (arrival time, TTFT s)
        self._tasks: set[asyncio.Task] = set()
        self._load_on = False
        self._wake = asyncio.Event()

    # -- plumbing --------------------------------------------------------------------------
    def _event(self, topic: str, **payload: Any) -> None:
        self._events.append((topic, {"model": self.label, **payload}))

    async def open(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, connect=self.site.request_timeout_s, sock_read=None)
        self.session = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0))

    async def close(self) -> None:
        self._load_on = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.session is not None:
            session, self.session = self.session, None
            await session.close()

    def _short(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.site.request_timeout_s)

    async def _get(self, path: str) -> aiohttp.ClientResponse:
        assert self.session is not None
        return await self.session.get(self.base + path, timeout=self._short())

    # -- start-up --------------------------------------------------------------------------
    async def check(self) -> None:
        """/health must answer 200 and /v1/models must list the served model."""
        where = f"vLLM server for model {self.label!r} at {self.base}"
        try:
            async with await self._get("/health") as response:
                if response.status != 200:
                    raise LiveStartupError(f"{where}: /health answered HTTP {response.status}")
            async with await self._get("/v1/models") as response:
                if response.status != 200:
                    raise LiveStartupError(f"{where}: /v1/models answered HTTP {response.status}")
                listing = await response.json()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise LiveStartupError(f"{where} is not reachable: {type(exc).__name__}: {exc}") from None
        served = [item.get("id") for item in listing.get("data", [])]
        if self.served_name not in served:
            raise LiveStartupError(f"{where} does not serve {self.served_name!r}; it serves {served}")

    # -- batch size ------------------------------------------------------------------------
    async def set_batch(self, batch: int, ramp_up_rate: float = 0.0) -> BatchCall:
        """POST /set_max_num_seqs; on success the accepted batch becomes `self.batch`.

        A refused connection or an error status means the server kept its batch; a timeout or
        a connection lost after the request went out leaves it unknown (``uncertain``): the
        server may have applied it.
        """
        params = {"max_num_seqs": str(int(batch))}
        if ramp_up_rate > 0:
            params["ramp_up_rate"] = repr(float(ramp_up_rate))
        assert self.session is not None
        try:
            async with await self.session.post(
                self.base + "/set_max_num_seqs", params=params, timeout=self._short()
            ) as response:
                if response.status != 200:
                    return BatchCall(False, f"HTTP {response.status}: {(await response.text())[:200]}")
        except (aiohttp.ClientConnectorError, ConnectionRefusedError) as exc:
            return BatchCall(False, f"{type(exc).__name__}: {exc}")
        except TimeoutError:
            return BatchCall(False, f"no answer within {self.site.request_timeout_s:g} s", uncertain=True)
        except (aiohttp.ClientError, OSError) as exc:
            return BatchCall(False, f"{type(exc).__name__}: {exc}", uncertain=True)
        self.batch = int(batch)
        self._wake.set()
        return BatchCall(True, "")

    # -- load ------------------------------------------------------------------------------
    def target_inflight(self) -> int:
        """Requests kept in flight: the batch plus a margin, so the server stays saturated."""
        return self.batch + max(2, self.batch // 8)

    def start_load(self) -> None:
        self._load_on = True
        loop = asyncio.get_running_loop()
        for coro in (self._generator(), self._monitor(), self._itl_reporter()):
            task = loop.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _generator(self) -> None:
        while self._load_on:
            if self.healthy:
                while self.inflight < self.target_inflight():
                    self.inflight += 1
                    task = asyncio.get_running_loop().create_task(self._one_request())
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), 0.1)
            except TimeoutError:
                pass

    async def _one_request(self) -> None:
        body = self._bodies[self._next_body % len(self._bodies)]
        self._next_body += 1
        assert self.session is not None
        try:
            sent = time.monotonic()
            async with self.session.post(self.base + "/v1/chat/completions", json=body) as response:
                if response.status != 200:
                    self.request_errors += 1
                    await asyncio.sleep(0.5)
                    return
                await self._read_stream(response, sent)
                self.completed += 1
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            self.request_errors += 1
            await asyncio.sleep(0.5)  # do not hammer a failing server
        finally:
            self.inflight -= 1
            self._wake.set()

    async def _read_stream(self, response: aiohttp.ClientResponse, sent: float) -> None:
        last_time: float | None = None
        last_tokens = 0
        async for raw in response.content:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            now = time.monotonic()
            chunk = json.loads(data)
            usage = chunk.get("usage") or {}
            if "completion_tokens" in usage:
                tokens = int(usage["completion_tokens"])
            else:
                choices = chunk.get("choices") or []
                has_text = any((c.get("delta") or {}).get("content") for c in choices)
                tokens = last_tokens + (1 if has_text else 0)
            new = tokens - last_tokens
            if new <= 0:
                continue
            if last_time is None:
                self._first_tokens.append((now, now - sent))
            else:
                self._samples.append((now, now - last_time, new))
                self.itl_samples.append(((now - last_time) / new, new))
            last_time, last_tokens = now, tokens

    async def _itl_reporter(self) -> None:
        """Every 50 ms: the windowed ITL (seconds over tokens) and the windowed mean TTFT."""
        window = self.site.itl_window_s
        ttft_window = self.site.ttft_window_s
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            samples = self._samples
            while samples and samples[0][0] < now - window:
                samples.popleft()
            tokens = sum(s[2] for s in samples)
            if tokens > 0:
                self.itl_s = sum(s[1] for s in samples) / tokens
                self.itl_time = samples[-1][0]
            firsts = self._first_tokens
            while firsts and firsts[0][0] < now - ttft_window:
                firsts.popleft()
            if firsts:
                self.ttft_s = sum(f[1] for f in firsts) / len(firsts)

    async def scrape(self) -> dict[str, float]:
        """One /metrics scrape (raises on failure)."""
        async with await self._get("/metrics") as response:
            if response.status != 200:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message="metrics unavailable"
                )
            values = parse_metrics(await response.text())
        self.running = values.get("running", self.running)
        self.waiting = values.get("waiting", self.waiting)
        self.kv_cache_usage = values.get("kv_cache_usage", self.kv_cache_usage)
        self.preemptions = values.get("preemptions", self.preemptions)
        return values

    async def _health(self) -> bool:
        try:
            async with await self._get("/health") as response:
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    async def _monitor(self) -> None:
        """Health every `health_interval_s`, metrics every `metrics_interval_s`; report transitions."""
        next_health = 0.0
        while True:
            now = time.monotonic()
            if now >= next_health:
                next_health = now + self.site.health_interval_s
                ok = await self._health()
                if ok != self.healthy:
                    self.healthy = ok
                    if ok:
                        self._event("server_up", url=self.base)
                    else:
                        self._event("server_down", url=self.base, policy=self.site.on_server_failure)
            if self.healthy:
                try:
                    await self.scrape()
                except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
                    pass
            await asyncio.sleep(self.site.metrics_interval_s)
