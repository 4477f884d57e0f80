"""The scenario: everything one run needs, as validated pydantic objects that serialise to TOML.

A scenario file is only the serialised form of these objects: build one in Python, or load
a file from ``processes/``; :meth:`Scenario.from_toml` and :meth:`Scenario.to_toml` round-trip.
"""

from __future__ import annotations

import tomllib
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from g2gsim.data.spec import PAPER_MODELS
from g2gsim.datacenter.power_cap import GpuPowerCaps
from g2gsim.grid.config import GeneratorAttachment, LoadAttachment, StorageSpec
from g2gsim.kernel.links import INSTANT, LinkSpec, Seconds
from g2gsim.kernel.time import as_period

TAP_STEP_PU = 0.00625


def tap_pu(step: int) -> float:
    """Tap ratio of a step of a 32-step +-10 % regulator: 1 + 0.00625 n."""
    return 1.0 + step * TAP_STEP_PU


def _period(value: Any) -> Fraction:
    return as_period(value, name="period_s")


Period = Annotated[Seconds, Field(description="a positive number of seconds")]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# -- sites ------------------------------------------------------------------------------
class RampEntry(_Section):
    """Linear replica ramp to `target` between t_start_s and t_end_s."""

    target: int = Field(ge=0)
    t_start_s: float = Field(ge=0)
    t_end_s: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> RampEntry:
        if self.t_end_s < self.t_start_s:
            raise ValueError(f"t_end_s ({self.t_end_s}) must be >= t_start_s ({self.t_start_s})")
        return self


class ModelEntry(_Section):
    """One model served at a site: which model, how many replicas, the starting batch."""

    model: str = Field(description="a label of the model catalogue or of the scenario's [models]")
    replicas: int = Field(ge=0)
    initial_batch: int = Field(default=128, gt=0)
    ramps: tuple[RampEntry, ...] = ()


class TrainingEntry(_Section):
    """A training job overlaid on the site's power."""

    n_gpus: int = Field(gt=0)
    t_start_s: float = Field(ge=0)
    t_end_s: float = Field(ge=0)
    target_peak_w_per_gpu: float = Field(default=400.0, gt=0)
    trace: str = Field(default="synthetic", description='"synthetic" or a CSV path (t_s, power_W)')
    trace_seed: int = 2


class LiveServerEntry(_Section):
    """One real (or fake) LLM server of a live site and the GPU power meter behind it."""

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


class LiveSection(_Section):
    """Marks a site as live (hardware in the loop): power and latency come from real servers.

    A scenario with any live site runs on the real-time kernel (`realtime_factor`).
    """

    servers: tuple[LiveServerEntry, ...] = Field(min_length=1)
    realtime_factor: float = Field(default=1.0, gt=0)
    buffer_s: float = Field(default=10.0, gt=0, description="rolling per-GPU power buffer, s")
    warmup_buffer_s: float | None = Field(
        default=None, gt=0, description="buffer to fill before starting; default buffer_s"
    )
    first_reading_timeout_s: float = Field(default=10.0, gt=0)
    warmup_timeout_s: float = Field(default=60.0, gt=0)
    saturation_fraction: float = Field(default=0.95, gt=0, le=1)
    itl_window_s: float = Field(default=1.0, gt=0)
    stale_after_s: float = Field(default=2.0, gt=0)
    health_interval_s: float = Field(default=1.0, gt=0)
    metrics_interval_s: float = Field(default=0.5, gt=0, description="how often each server's /metrics is scraped, s")
    request_timeout_s: float = Field(default=5.0, gt=0)
    on_server_failure: Literal["continue", "stop"] = "continue"


class SiteSection(_Section):
    """A datacenter site and where it connects to the grid."""

    name: str = Field(min_length=1)
    bus: str = Field(min_length=1)
    period_s: Period = Fraction(1, 10)
    capacity_gpus: int = Field(gt=0)
    gpus_per_server: int = Field(default=8, gt=0)
    base_kw_per_phase: float = Field(default=0.0, ge=0)
    power_factor: float = Field(default=0.95, gt=0, le=1)
    connection: Literal["wye", "delta"] = "wye"
    amplitude_scale_range: tuple[float, float] = (1.0, 1.0)
    noise_fraction: float = Field(default=0.0, ge=0)
    seed: int | None = Field(
        default=None,
        description="the site's own stream key; combined with the scenario seed, so changing the "
        "scenario seed (e.g. --seed) changes every site while sites with different keys stay independent",
    )
    models: tuple[ModelEntry, ...] = Field(min_length=1)
    training: tuple[TrainingEntry, ...] = ()
    gpu_power: GpuPowerCaps = Field(
        default_factory=GpuPowerCaps,
        description="GPU power-cap grid (rated_w, step_w, min_cap_w) and per-model performance floors (floor_w)",
    )
    live: LiveSection | None = Field(default=None, description="present: a live site (SPEC 3)")

    @field_validator("period_s", mode="before")
    @classmethod
    def _positive_period(cls, value: Any) -> Fraction:
        return _period(value)

    @model_validator(mode="after")
    def _live_servers_match_models(self) -> SiteSection:
        if self.live is None:
            return self
        labels = [entry.model for entry in self.models]
        served = [server.model for server in self.live.servers]
        if sorted(served) != sorted(labels):
            raise ValueError(
                f"live site {self.name!r}: needs exactly one [[sites.live.servers]] per model; "
                f"models {sorted(labels)}, servers for {sorted(served)}"
            )
        return self


# -- grid -------------------------------------------------------------------------------
class GridSection(_Section):
    """The feeder and how it is solved."""

    name: str = "grid"
    feeder: str = Field(description='a bundled feeder ("ieee13", "ieee34", "ieee123") or a .dss path')
    period_s: Period = Fraction(1, 10)
    source_pu: float | None = Field(default=None, gt=0)
    initial_tap_steps: dict[str, int] = Field(default_factory=dict)
    initial_taps: dict[str, float] = Field(default_factory=dict)
    excluded_buses: tuple[str, ...] | None = None
    coupling: Literal["latest", "mean"] = "latest"
    regulator_self_control: bool = False
    tap_limits: Literal["enforce", "allow"] = "enforce"
    generators: tuple[GeneratorAttachment, ...] = ()
    loads: tuple[LoadAttachment, ...] = ()
    storage: tuple[StorageSpec, ...] = ()

    @field_validator("period_s", mode="before")
    @classmethod
    def _positive_period(cls, value: Any) -> Fraction:
        return _period(value)

    def taps_pu(self) -> dict[str, float]:
        """Initial taps in pu, from steps and explicit ratios (ratios win)."""
        return {**{k: tap_pu(v) for k, v in self.initial_tap_steps.items()}, **self.initial_taps}


# -- controllers ------------------------------------------------------------------------
class _ControllerBase(_Section):
    name: str = Field(min_length=1)
    period_s: Period | None = Fraction(1)
    command_link: LinkSpec = INSTANT
    measurement_link: LinkSpec = INSTANT

    @field_validator("period_s", mode="before")
    @classmethod
    def _positive_period(cls, value: Any) -> Fraction | None:
        return None if value is None else _period(value)


class TapEvent(_Section):
    t_s: float = Field(ge=0)
    taps: dict[str, float] = Field(default_factory=dict)
    tap_steps: dict[str, int] = Field(default_factory=dict)

    def taps_pu(self) -> dict[str, float]:
        return {**{k: tap_pu(v) for k, v in self.tap_steps.items()}, **self.taps}


class BatchEvent(_Section):
    t_s: float = Field(ge=0)
    model: str
    batch: int = Field(gt=0)
    ramp_up_rate: float = Field(default=0.0, ge=0)


class NoopSection(_ControllerBase):
    type: Literal["noop"] = "noop"


class TapScheduleSection(_ControllerBase):
    type: Literal["tap_schedule"] = "tap_schedule"
    period_s: Period | None = None
    grid: str = "grid"
    events: tuple[TapEvent, ...] = Field(min_length=1)


class BatchScheduleSection(_ControllerBase):
    type: Literal["batch_schedule"] = "batch_schedule"
    period_s: Period | None = None
    site: str
    events: tuple[BatchEvent, ...] = Field(min_length=1)


class OFOSection(_ControllerBase):
    type: Literal["ofo"] = "ofo"
    site: str
    grid: str = "grid"
    params: dict[str, Any] = Field(default_factory=dict)


class RuleBasedSection(_ControllerBase):
    type: Literal["rule_based"] = "rule_based"
    site: str
    grid: str = "grid"
    params: dict[str, Any] = Field(default_factory=dict)


class LoadShiftSection(_ControllerBase):
    type: Literal["load_shift"] = "load_shift"
    sites: tuple[str, ...] = Field(min_length=2)
    grid: str = "grid"
    params: dict[str, Any] = Field(default_factory=dict)


class StorageDroopSection(_ControllerBase):
    type: Literal["storage_droop"] = "storage_droop"
    grid: str = "grid"
    storage: tuple[str, ...] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class BudgetEvent(_Section):
    """A site power budget (kW, three-phase total) in force from t_s on."""

    t_s: float = Field(ge=0)
    kw: float = Field(gt=0)


class BudgetSection(_ControllerBase):
    """A site power budget: a constant `kw`, scheduled `events`, or a CSV `profile` (t_s, budget_kw)."""

    type: Literal["budget"] = "budget"
    period_s: Period | None = None
    site: str
    kw: float | None = Field(default=None, gt=0)
    events: tuple[BudgetEvent, ...] = ()
    profile: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> BudgetSection:
        given = [k for k, v in (("kw", self.kw), ("events", self.events or None), ("profile", self.profile)) if v]
        if len(given) != 1:
            raise ValueError(f"give exactly one of kw, events, profile (got {given or 'none'})")
        return self


class GridOperatorSection(_ControllerBase):
    """An event-driven operator that lowers a site's budget while the feeder is stressed."""

    type: Literal["grid_operator"] = "grid_operator"
    period_s: Period | None = None
    site: str
    grid: str = "grid"
    normal_kw: float = Field(gt=0)
    curtail_kw: float = Field(gt=0)
    v_trigger: float | None = Field(default=None, gt=0)
    power_trigger_kw: float | None = Field(default=None, gt=0)
    hold_s: float = Field(default=300.0, ge=0)


class PowerBudgetSection(_ControllerBase):
    """The power-budget controller of a site, following the budget component `budget`."""

    type: Literal["power_budget"] = "power_budget"
    site: str
    budget: str
    params: dict[str, Any] = Field(default_factory=dict)


class ProportionalCurtailmentSection(_ControllerBase):
    """The naive baseline: equal-fraction GPU power caps to meet the budget."""

    type: Literal["proportional_curtailment"] = "proportional_curtailment"
    site: str
    budget: str
    margin: float = Field(default=0.03, ge=0, lt=1)


ControllerSection = Annotated[
    NoopSection
    | TapScheduleSection
    | BatchScheduleSection
    | OFOSection
    | RuleBasedSection
    | LoadShiftSection
    | StorageDroopSection
    | BudgetSection
    | GridOperatorSection
    | PowerBudgetSection
    | ProportionalCurtailmentSection,
    Field(discriminator="type"),
]


# -- scenario ---------------------------------------------------------------------------
class ScenarioError(ValueError):
    """A scenario file or object is invalid; the message names the file, the key and the problem."""


def read_toml(file: Path, what: str, error: type[ValueError]) -> dict[str, Any]:
    """The tables of a TOML file; a missing file or bad TOML raises `error` naming `what` and the file."""
    try:
        return tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise error(f"{what} {file} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{file}: not valid TOML: {exc}") from None


class Scenario(_Section):
    """One co-simulation: grid, sites, controllers, horizon, seed and data source."""

    name: str = Field(min_length=1)
    description: str = ""
    horizon_s: Period = Fraction(3600)
    seed: int = 0
    data: str | None = Field(default=None, description="None: bundled synthetic data; else a data folder")
    models: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="extra model specs by label (fields of ModelSpec)"
    )
    v_min: float = Field(default=0.95, gt=0)
    v_max: float = Field(default=1.05, gt=0)
    grid: GridSection
    sites: tuple[SiteSection, ...] = Field(min_length=1)
    controllers: tuple[ControllerSection, ...] = ()

    @field_validator("horizon_s", mode="before")
    @classmethod
    def _positive_horizon(cls, value: Any) -> Fraction:
        return as_period(value, name="horizon_s")

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        names = [self.grid.name, *(s.name for s in self.sites), *(c.name for c in self.controllers)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"component names must be unique; repeated: {duplicates}")
        site_names = {s.name for s in self.sites}
        for controller in self.controllers:
            for site in _controller_sites(controller):
                if site not in site_names:
                    raise ValueError(
                        f"controller {controller.name!r} refers to site {site!r}; sites: {sorted(site_names)}"
                    )
        if self.v_min >= self.v_max:
            raise ValueError(f"v_min ({self.v_min}) must be below v_max ({self.v_max})")
        known = set(PAPER_MODELS) | set(self.models)
        for i, site in enumerate(self.sites):
            for j, entry in enumerate(site.models):
                if entry.model not in known:
                    raise ValueError(
                        f"sites.{i}.models.{j}.model: unknown model {entry.model!r} (site {site.name!r}); "
                        f"known: {sorted(known)}"
                    )
        return self

    # -- files --------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | Path) -> Scenario:
        """Load and validate a scenario file; errors name the file, the key and the problem."""
        file = Path(path)
        return cls.from_dict(read_toml(file, "scenario file", ScenarioError), source=str(file))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = "<scenario>") -> Scenario:
        """Validate a parsed scenario mapping."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ScenarioError(_format_validation_error(source, exc)) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (TOML-compatible: no None values, exact fractions as floats or 'n/d')."""
        return _drop_none(self.model_dump(mode="json"))

    def to_toml(self, path: str | Path | None = None) -> str:
        """Serialise to TOML; also write it to `path` when given."""
        text = tomli_w.dumps(self.to_dict())
        if path is not None:
            Path(path).write_text(text)
        return text

    @property
    def is_live(self) -> bool:
        """True when some site is live (runs against real servers on the real-time kernel)."""
        return any(site.live is not None for site in self.sites)

    def with_overrides(self, **changes: Any) -> Scenario:
        """A validated copy with top-level fields replaced (horizon_s, seed, data, ...)."""
        return Scenario.from_dict({**self.to_dict(), **changes}, source=f"{self.name} (overrides)")


def _controller_sites(controller: Any) -> tuple[str, ...]:
    if hasattr(controller, "sites"):
        return tuple(controller.sites)
    site = getattr(controller, "site", None)
    return () if site is None else (site,)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _format_validation_error(source: str, exc: ValidationError) -> str:
    errors = exc.errors()
    # pydantic also reports a min_length tuple (e.g. `sites`) as "too short" when one of its
    # items is invalid (the count is of valid items): drop that echo of the item's own error.
    errors = [
        e
        for e in errors
        if not (
            e["type"] == "too_short"
            and any(len(o["loc"]) > len(e["loc"]) and o["loc"][: len(e["loc"])] == e["loc"] for o in errors)
        )
    ]
    lines = [f"{source}: {len(errors)} problem(s) in the scenario"]
    for error in errors:
        key = ".".join(str(part) for part in error["loc"]) or "<top level>"
        given = error.get("input")
        shown = "" if isinstance(given, dict | list) or repr(given) in error["msg"] else f" (got {given!r})"
        lines.append(f"  - {key}: {error['msg']}{shown}")
    return "\n".join(lines)
