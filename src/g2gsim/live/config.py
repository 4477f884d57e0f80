"""Configuration of a live site: which servers, which power meters, start-up and fault policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class LiveStartupError(RuntimeError):
    """The live site could not start (a server or meter unreachable, warm-up timed out, ...)."""


class LiveServerError(RuntimeError):
    """A live server failed during a run and the site is configured to stop on failures."""


@dataclass(frozen=True)
class LiveServerConfig:
    """One vLLM server (one model) and the zeusd GPUs that serve it.

    Attributes:
        model: Site model label it serves.
        url: Base URL of the OpenAI-compatible server (``http://host:port``).
        served_model_name: Name under ``/v1/models`` and in requests (None: the spec's model_id).
        zeusd: ``host:port`` of the zeusd instance metering its GPUs.
        gpu_ids: zeusd GPU indices of this server.
        requests: JSONL file of chat-completion request bodies (None: a built-in prompt).
        max_tokens: Completion length of built-in requests.
    """

    model: str
    url: str
    zeusd: str
    gpu_ids: tuple[int, ...]
    served_model_name: str | None = None
    requests: str | None = None
    max_tokens: int = 256

    def __post_init__(self) -> None:
        if not self.gpu_ids:
            raise ValueError(f"live server for {self.model!r}: gpu_ids must not be empty")
        host, sep, port = self.zeusd.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"live server for {self.model!r}: zeusd must be host:port, got {self.zeusd!r}")


@dataclass(frozen=True)
class LiveSiteConfig:
    """Servers of a live site and how it starts, measures and reacts to failures (SPEC 3)."""

    servers: tuple[LiveServerConfig, ...]
    buffer_s: float = 10.0
    warmup_buffer_s: float | None = None  # None: buffer_s
    first_reading_timeout_s: float = 10.0
    warmup_timeout_s: float = 60.0
    saturation_fraction: float = 0.95
    itl_window_s: float = 1.0
    stale_after_s: float = 2.0
    health_interval_s: float = 1.0
    metrics_interval_s: float = 0.5
    request_timeout_s: float = 5.0
    on_server_failure: Literal["continue", "stop"] = "continue"

    def __post_init__(self) -> None:
        labels = [s.model for s in self.servers]
        if len(set(labels)) != len(labels):
            raise ValueError(f"a live site needs one server per model; repeated: {sorted(labels)}")
        if self.on_server_failure not in ("continue", "stop"):
            raise ValueError(f"on_server_failure must be 'continue' or 'stop', got {self.on_server_failure!r}")

    def server(self, label: str) -> LiveServerConfig:
        for server in self.servers:
            if server.model == label:
                return server
        raise KeyError(f"no live server for model {label!r}; servers for {[s.model for s in self.servers]}")

    @property
    def warmup_fill_s(self) -> float:
        return self.buffer_s if self.warmup_buffer_s is None else min(self.warmup_buffer_s, self.buffer_s)
