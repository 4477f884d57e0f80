"""Configuration of a live site (SPEC 3): its servers, power meters, start-up and fault policy.

Pure data (pydantic), so a scenario's ``[sites.live]`` table validates when the file is read,
without the ``live`` extra; :mod:`g2gsim.live` runs it against real (or fake) servers.

A server's GPUs are metered by one zeusd (``zeusd = "host:port"`` with ``gpu_ids``) or by
several (``gpu_endpoints = [{host, port, gpu_indices}, ...]``, e.g. a tensor-parallel
replica across two nodes); either way :attr:`LiveServerConfig.meters` lists them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, JsonValue, field_validator, model_validator

from g2gsim.kernel.registry import Section

__all__ = ["RESERVED_REQUEST_FIELDS", "GpuEndpoint", "LiveServerConfig", "LiveSiteConfig"]

#: Request fields the live site sets itself (streaming with per-chunk token counts).
RESERVED_REQUEST_FIELDS = ("model", "stream", "stream_options")


def _empty(value: Any) -> bool:
    return not value


def _split_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or "/" in host:
        raise ValueError(f"zeusd must be host:port (no scheme or path), got {value!r}")
    return host, int(port)


class GpuEndpoint(Section):
    """One zeusd daemon and the indices of the GPUs it meters for a server."""

    host: str = Field(min_length=1, description="host name or address of the zeusd daemon (no scheme)")
    port: int = Field(default=4938, ge=1, le=65535, description="TCP port of the zeusd daemon")
    gpu_indices: tuple[int, ...] = Field(min_length=1, description="zeusd GPU indices of this server on that daemon")

    @field_validator("host")
    @classmethod
    def _plain_host(cls, value: str) -> str:
        if "/" in value or any(c.isspace() for c in value):
            raise ValueError(f"host must be a plain host name or address (no scheme or path), got {value!r}")
        return value

    @field_validator("gpu_indices")
    @classmethod
    def _distinct_indices(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(i < 0 for i in value) or len(set(value)) != len(value):
            raise ValueError(f"gpu_indices must be distinct non-negative integers, got {list(value)}")
        return value

    @property
    def endpoint(self) -> str:
        """``host:port``, the key zeus's streaming client uses."""
        return f"{self.host}:{self.port}"


class LiveServerConfig(Section):
    """One vLLM server (one model) of a live site and the zeusd GPUs that serve it."""

    model: str = Field(description="label of the site model this server runs (one of its [[sites.models]])")
    url: str = Field(min_length=1, description="base URL of the vLLM OpenAI-compatible server, e.g. http://host:8000")
    served_model_name: str | None = Field(
        default=None, description="name the server lists under /v1/models (default: the spec's model_id)"
    )
    zeusd: str | None = Field(
        default=None, description="zeusd TCP endpoint host:port of this server's GPUs (with gpu_ids)"
    )
    gpu_ids: tuple[int, ...] | None = Field(
        default=None, min_length=1, description="zeusd GPU indices that serve this model (with zeusd)"
    )
    gpu_endpoints: tuple[GpuEndpoint, ...] = Field(
        default=(),
        exclude_if=_empty,
        description="several zeusd daemons metering this server's GPUs: [{host, port, gpu_indices}, ...] "
        "(instead of zeusd + gpu_ids)",
    )
    requests: str | None = Field(default=None, description="JSONL file of chat requests; default: a built-in prompt")
    max_tokens: int = Field(default=256, gt=0, description="completion length of generated requests")
    request_extra_body: dict[str, JsonValue] = Field(
        default_factory=dict,
        exclude_if=_empty,
        description="fields merged into every request body, e.g. chat_template_kwargs "
        f"(not {', '.join(RESERVED_REQUEST_FIELDS)}, which the live site sets)",
    )

    @field_validator("zeusd")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            _split_host_port(value)
        return value

    @field_validator("request_extra_body")
    @classmethod
    def _no_reserved_fields(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        reserved = sorted(set(value) & set(RESERVED_REQUEST_FIELDS))
        if reserved:
            raise ValueError(
                f"request_extra_body may not set {reserved}: the live site sets "
                f"{list(RESERVED_REQUEST_FIELDS)} itself (it streams with per-chunk token counts)"
            )
        return value

    @model_validator(mode="after")
    def _one_metering_form(self) -> LiveServerConfig:
        single = self.zeusd is not None or self.gpu_ids is not None
        if self.gpu_endpoints and single:
            raise ValueError(f"server for {self.model!r}: give either zeusd + gpu_ids or gpu_endpoints, not both")
        if not self.gpu_endpoints and (self.zeusd is None or self.gpu_ids is None):
            raise ValueError(
                f'server for {self.model!r} needs its GPUs\' power meters: zeusd = "host:port" with gpu_ids = [...], '
                "or gpu_endpoints = [{host, port, gpu_indices}, ...]"
            )
        pairs = self.gpus
        repeated = sorted({f"{e} GPU {g}" for e, g in pairs if pairs.count((e, g)) > 1})
        if repeated:
            raise ValueError(f"server for {self.model!r} meters a GPU twice: {repeated}")
        return self

    @property
    def meters(self) -> tuple[GpuEndpoint, ...]:
        """The zeusd daemons of this server and the GPUs each meters (either form)."""
        if self.gpu_endpoints:
            return self.gpu_endpoints
        assert self.zeusd is not None and self.gpu_ids is not None
        host, port = _split_host_port(self.zeusd)
        return (GpuEndpoint(host=host, port=port, gpu_indices=self.gpu_ids),)

    @property
    def gpus(self) -> list[tuple[str, int]]:
        """Every metered GPU as (zeusd ``host:port``, GPU index), in meter order."""
        return [(meter.endpoint, gpu) for meter in self.meters for gpu in meter.gpu_indices]


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
    ttft_window_s: float = Field(default=10.0, gt=0, description="window of the time-to-first-token mean, s")
    stale_after_s: float = Field(default=2.0, gt=0, description="a power reading older than this is stale, s")
    reconnect_initial_s: float = Field(
        default=0.5, gt=0, description="a stale power meter is reconnected after this delay, s (doubling each try)"
    )
    reconnect_max_s: float = Field(default=30.0, gt=0, description="longest delay between reconnection tries, s")
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
        owner: dict[tuple[str, int], str] = {}
        for server in self.servers:
            for gpu in server.gpus:
                if gpu in owner:
                    raise ValueError(
                        f"zeusd {gpu[0]} GPU {gpu[1]} is metered for both {owner[gpu]!r} and {server.model!r}; "
                        "a GPU serves one model"
                    )
                owner[gpu] = server.model
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError(
                f"reconnect_max_s ({self.reconnect_max_s:g}) must be >= reconnect_initial_s "
                f"({self.reconnect_initial_s:g})"
            )
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
