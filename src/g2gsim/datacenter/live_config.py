"""Configuration of a live site (SPEC 3): its servers, power meters, start-up and fault policy.

Pure data (pydantic), so a scenario's ``[sites.live]`` table validates when the file is read,
without the ``live`` extra; :mod:`g2gsim.live` runs it against real (or fake) servers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from g2gsim.kernel.registry import Section

__all__ = ["LiveServerConfig", "LiveSiteConfig"]


class LiveServerConfig(Section):
    """One vLLM server (one model) of a live site and the zeusd GPUs that serve it."""

    model: str = Field(description="label of the site model this server runs (one of its [[sites.models]])")
    url: str = Field(min_length=1, description="base URL of the vLLM OpenAI-compatible server, e.g. http://host:8000")
    served_model_name: str | None = Field(
        default=None, description="name the server lists under /v1/models (default: the spec's model_id)"
    )
    zeusd: str = Field(min_length=1, description="zeusd TCP endpoint host:port of the GPUs serving this model")
    gpu_ids: tuple[int, ...] = Field(min_length=1, description="zeusd GPU indices that serve this model")
    requests: str | None = Field(default=None, description="JSONL file of chat requests; default: a built-in prompt")
    max_tokens: int = Field(default=256, gt=0, description="completion length of generated requests")

    @field_validator("zeusd")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or "/" in host:
            raise ValueError(f"zeusd must be host:port (no scheme or path), got {value!r}")
        return value


class LiveSiteConfig(Section):
    """A live site: power and latency come from real servers (a scenario's ``[sites.live]``).

    A scenario with any live site runs on the real-time kernel (`realtime_factor`).
    """

    servers: tuple[LiveServerConfig, ...] = Field(min_length=1, description="one server per model of the site")
    realtime_factor: float = Field(default=1.0, gt=0, description="simulated seconds per wall-clock second")
    buffer_s: float = Field(default=10.0, gt=0, description="rolling per-GPU power buffer, s")
    warmup_buffer_s: float | None = Field(
        default=None, gt=0, description="buffer to fill before starting; default buffer_s"
    )
    first_reading_timeout_s: float = Field(default=10.0, gt=0, description="wait for each meter's first reading, s")
    warmup_timeout_s: float = Field(default=60.0, gt=0, description="wait for the servers to saturate, s")
    saturation_fraction: float = Field(
        default=0.95, gt=0, le=1, description="running requests / batch that counts as saturated"
    )
    itl_window_s: float = Field(default=1.0, gt=0, description="window of the inter-token latency measurement, s")
    stale_after_s: float = Field(default=2.0, gt=0, description="a power reading older than this is stale, s")
    health_interval_s: float = Field(default=1.0, gt=0, description="how often each server's health is checked, s")
    metrics_interval_s: float = Field(default=0.5, gt=0, description="how often each server's /metrics is scraped, s")
    request_timeout_s: float = Field(default=5.0, gt=0, description="timeout of one HTTP request, s")
    on_server_failure: Literal["continue", "stop"] = Field(
        default="continue", description="a server that fails mid-run: keep its last values, or stop the run"
    )

    @model_validator(mode="after")
    def _one_server_per_model(self) -> LiveSiteConfig:
        labels = [s.model for s in self.servers]
        if len(set(labels)) != len(labels):
            raise ValueError(f"a live site needs one server per model; repeated: {sorted(labels)}")
        return self

    def server(self, label: str) -> LiveServerConfig:
        """The server of a model label."""
        for server in self.servers:
            if server.model == label:
                return server
        raise KeyError(f"no live server for model {label!r}; servers for {[s.model for s in self.servers]}")

    @property
    def warmup_fill_s(self) -> float:
        """The power buffer (s) to fill before the run starts."""
        return self.buffer_s if self.warmup_buffer_s is None else min(self.warmup_buffer_s, self.buffer_s)
