"""The scenario: everything one run needs, as validated pydantic objects that serialise to TOML.

A scenario file is only the serialised form of these objects: build one in Python, or load
a file from ``processes/``; :meth:`Scenario.from_toml` and :meth:`Scenario.to_toml` round-trip.
Sections embed the components' own configuration models (a site's facility and
augmentation, the grid's options, each controller's tuning), so every default lives once.
A controller section is chosen by its ``type`` among the registered controller kinds
(:func:`~g2gsim.controllers.base.register_controller`).
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import (
    Field,
    PlainValidator,
    PrivateAttr,
    SerializeAsAny,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

import g2gsim.controllers  # noqa: F401  (registers the built-in controller kinds)
from g2gsim.controllers.base import ControllerSection
from g2gsim.data.spec import PAPER_MODELS, ModelSpec
from g2gsim.datacenter.config import Facility, PowerAugmentation, TraceReplay
from g2gsim.datacenter.live_config import LiveServerConfig, LiveSiteConfig
from g2gsim.datacenter.power_cap import GpuPowerCaps
from g2gsim.grid.config import TAP_STEP_PU, GridOptions, tap_pu
from g2gsim.grid.feeders import bundled_feeders, trust_feeder_dir
from g2gsim.kernel.links import Seconds
from g2gsim.kernel.moved import moved_names
from g2gsim.kernel.registry import Section, UnknownKindError, kinds, lookup
from g2gsim.kernel.time import as_period
from g2gsim.planning.plan import SloTargets
from g2gsim.scenarios.overrides import PathError, set_path

__all__ = [
    "TAP_STEP_PU",
    "ControllerSection",
    "GridSection",
    "ModelEntry",
    "RampEntry",
    "Scenario",
    "ScenarioError",
    "SiteSection",
    "SloSection",
    "TrainingEntry",
    "absolute_paths",
    "read_toml",
    "tap_pu",
]

Period = Annotated[Seconds, Field(description="a positive number of seconds")]

#: What a bus name in a scenario may hold (it goes into OpenDSS commands).
_BUS_NAME = re.compile(r"[A-Za-z0-9_-]+")
#: ModelSpec fields a site's model entry may change for that site (default: the catalogue's).
SERVING_FIELDS = ("gpus_per_replica", "itl_deadline_s", "feasible_batch_sizes")


def _positive_period(value: Any) -> Fraction:
    return as_period(value, name="period_s")


def _unset(value: Any) -> bool:
    return value is None


# -- sites ------------------------------------------------------------------------------
class RampEntry(Section):
    """Linear replica ramp to `target` between t_start_s and t_end_s."""

    target: int = Field(ge=0)
    """Replica count reached at t_end_s."""
    t_start_s: float = Field(ge=0)
    """Start of the ramp, s."""
    t_end_s: float = Field(ge=0)
    """End of the ramp, s."""

    @model_validator(mode="after")
    def _ordered(self) -> RampEntry:
        if self.t_end_s < self.t_start_s:
            raise ValueError(f"t_end_s ({self.t_end_s}) must be >= t_start_s ({self.t_start_s})")
        return self


class SloSection(SloTargets):
    """A site's ``[sites.slo]`` table, or the same fields in one model entry (which win): the
    batch limit and the targets it is planned with.

    ``batch_limit = "plan"`` cuts the model's feasible batch sizes at the largest batch that
    meets its ITL deadline, the TTFT deadline (if given) and the KV-cache memory at the given
    lengths (:mod:`g2gsim.planning`); a number cuts them there. Every controller and the
    datacenter then see only the sizes at or below the limit.
    """

    batch_limit: int | Literal["plan"] | None = Field(default=None, exclude_if=_unset)
    """Largest batch a controller may command: a positive number, or "plan" (from the targets)."""

    @field_validator("batch_limit")
    @classmethod
    def _positive_limit(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value <= 0:
            raise ValueError(f'batch_limit must be a positive batch size or "plan", got {value}')
        return value

    def targets(self) -> SloTargets:
        """The planning targets alone (no batch limit)."""
        return SloTargets(**{name: getattr(self, name) for name in SloTargets.model_fields})

    def limit_problems(self) -> list[str]:
        """What keeps these fields from being planned with (empty when nothing does)."""
        problems = self.problems()
        if self.batch_limit == "plan" and not self.has_lengths:
            problems.append('batch_limit = "plan" needs input_tokens and output_tokens (in the entry or [sites.slo])')
        return problems


class ModelEntry(SloSection):
    """One model served at a site: which model, how many replicas, the starting batch, and
    optionally the serving fields of its spec, and its batch limit and SLO targets, for this site."""

    model: str = Field(description="a label of the model catalogue or of the scenario's [models]")
    replicas: int = Field(ge=0)
    """Replicas at t = 0."""
    initial_batch: int = Field(default=128, gt=0)
    """Batch size at t = 0 (a feasible size of the model)."""
    ramps: tuple[RampEntry, ...] = ()
    """Replica ramps."""
    gpus_per_replica: int | None = Field(default=None, ge=1, exclude_if=_unset)
    """GPUs one replica occupies (default: the catalogue's; it also selects the measurements)."""
    itl_deadline_s: float | None = Field(default=None, gt=0, exclude_if=_unset)
    """Inter-token latency deadline, s (default: the catalogue's)."""
    feasible_batch_sizes: tuple[int, ...] | None = Field(default=None, min_length=1, exclude_if=_unset)
    """Batch sizes a controller may command (default: the catalogue's)."""

    def spec(self, catalogue: Mapping[str, ModelSpec]) -> ModelSpec:
        """The model's spec at this site: the catalogue's, with this entry's serving fields."""
        base = catalogue[self.model]
        changes = {name: getattr(self, name) for name in SERVING_FIELDS if getattr(self, name) is not None}
        if not changes:
            return base
        return ModelSpec.model_validate({**base.model_dump(exclude_unset=True), **changes})


class TrainingEntry(Section):
    """A training job overlaid on the site's power."""

    n_gpus: int = Field(gt=0)
    """GPUs the job runs on."""
    t_start_s: float = Field(ge=0)
    """Start, s."""
    t_end_s: float = Field(ge=0)
    """End, s."""
    target_peak_w_per_gpu: float = Field(default=400.0, gt=0)
    """Peak power per GPU the trace is rescaled to, W."""
    trace: str = Field(default="synthetic", description='"synthetic" or a CSV path (t_s, power_W)')
    trace_seed: int = 2
    """Seed of the synthetic trace."""


class SiteSection(Facility, PowerAugmentation, TraceReplay, Section):
    """A datacenter site and where it connects to the grid.

    Facility fields (gpus_per_server, base_kw_per_phase, power_factor), power augmentation
    fields (amplitude_scale_range, noise_fraction) and trace replay fields (template_s,
    itl_mode, layout) sit directly in the table.
    """

    name: str = Field(min_length=1)
    """Component name."""
    bus: str = Field(min_length=1)
    """Feeder bus it connects to."""
    period_s: Period = Fraction(1, 10)
    """Step of the site, s."""
    capacity_gpus: int = Field(gt=0)
    """GPUs of the inference server pool."""
    connection: Literal["wye", "delta"] = "wye"
    """How its load connects to the bus."""
    seed: int | None = Field(
        default=None,
        ge=0,
        description="the site's own stream key (0 or more); combined with the scenario seed, so changing the "
        "scenario seed (e.g. --seed) changes every site while sites with different keys stay independent",
    )
    models: tuple[ModelEntry, ...] = Field(min_length=1)
    """The models it serves."""
    training: tuple[TrainingEntry, ...] = ()
    """Training jobs on GPUs outside the pool."""
    gpu_power: GpuPowerCaps = Field(
        default_factory=GpuPowerCaps,
        description="GPU power-cap grid (rated_w, step_w, min_cap_w) and per-model performance floors (floor_w)",
    )
    live: LiveSiteConfig | None = Field(default=None, description="present: a live site (SPEC 3)")
    slo: SloSection | None = Field(
        default=None, description="batch limit and SLO targets of every model (a model entry's own fields win)"
    )

    @field_validator("period_s", mode="before")
    @classmethod
    def _positive_period(cls, value: Any) -> Fraction:
        return _positive_period(value)

    @field_validator("bus")
    @classmethod
    def _bus_name(cls, value: str) -> str:
        if not _BUS_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a bus name: letters, digits, '_' and '-' only, without phases")
        return value

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

    def slo_of(self, entry: ModelEntry) -> SloSection:
        """A model entry's batch limit and targets: the site's [sites.slo], the entry's own fields winning."""
        own = SloSection(**{name: getattr(entry, name) for name in SloSection.model_fields})
        return own if self.slo is None else self.slo.merged(own)

    @property
    def kind(self) -> str:
        """The registered site kind that builds it: "live" with a [sites.live] table, else "offline"."""
        return "offline" if self.live is None else "live"

    def facility(self) -> Facility:
        """Its facility fields as the datacenter's model."""
        return Facility(**{name: getattr(self, name) for name in Facility.model_fields})

    def augmentation(self) -> PowerAugmentation:
        """Its augmentation fields as the datacenter's model."""
        return PowerAugmentation(**{name: getattr(self, name) for name in PowerAugmentation.model_fields})

    def replay(self) -> TraceReplay:
        """Its trace replay fields as the datacenter's model."""
        return TraceReplay(**{name: getattr(self, name) for name in TraceReplay.model_fields})


# -- grid -------------------------------------------------------------------------------
class GridSection(GridOptions, Section):
    """The feeder and how it is solved (the grid's options), plus its name and initial tap steps."""

    name: str = "grid"
    """Component name."""
    initial_tap_steps: dict[str, int] = Field(default_factory=dict)
    """Initial tap step by regulator (ratio 1 + 0.00625 n); `initial_taps` ratios win."""

    @property
    def kind(self) -> str:
        """The registered grid kind that builds it."""
        return "opendss"

    def taps_pu(self) -> dict[str, float]:
        """Initial taps in pu, from steps and explicit ratios (ratios win)."""
        return {**{k: tap_pu(v) for k, v in self.initial_tap_steps.items()}, **self.initial_taps}

    def options(self) -> dict[str, Any]:
        """The grid's options (GridOptions fields), taps converted to ratios."""
        options = {name: getattr(self, name) for name in GridOptions.model_fields}
        return {**options, "initial_taps": self.taps_pu()}


# -- controllers ------------------------------------------------------------------------
def _controller_section(value: Any) -> ControllerSection:
    """Validate a controller table with the section of its registered `type`."""
    if isinstance(value, ControllerSection):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"a controller is a table with a `type`, got {value!r}")
    type_name = value.get("type")
    if type_name is None:
        raise ValueError(f"a controller needs a `type`; known: {', '.join(map(repr, kinds('controller')))}")
    try:
        kind = lookup("controller", str(type_name))
    except UnknownKindError as exc:
        raise ValueError(str(exc)) from None
    section = kind.section.model_validate(value)
    assert isinstance(section, ControllerSection)
    return section


#: A ``[[controllers]]`` table, validated by the section of its registered type.
ControllerEntry = Annotated[SerializeAsAny[ControllerSection], PlainValidator(_controller_section)]


# -- scenario ---------------------------------------------------------------------------
class ScenarioError(ValueError):
    """A scenario file or object is invalid; the message names the file, the key and the problem."""


def read_toml(file: Path, what: str, error: type[ValueError]) -> dict[str, Any]:
    """The tables of a TOML file; a missing file or bad TOML raises `error` naming `what` and the file."""
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} {file} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} {file} is a folder, not a TOML file") from None
    except UnicodeDecodeError as exc:
        raise error(f"{file}: not a text (TOML) file: byte {exc.start} is not UTF-8") from None
    except OSError as exc:
        raise error(f"{what} {file} cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{file}: not valid TOML: {exc}") from None


class Scenario(Section):
    """One co-simulation: grid, sites, controllers, horizon, seed and data source."""

    name: str = Field(min_length=1)
    """The scenario's name."""
    description: str = ""
    """What it shows."""
    horizon_s: Period = Fraction(3600)
    """Simulated time, s."""
    seed: int = Field(default=0, ge=0)
    """The scenario seed, 0 or more (every random stream derives from it)."""
    data: str | None = Field(default=None, description="None: bundled synthetic data; else a data folder")
    models: dict[str, ModelSpec] = Field(
        default_factory=dict, description="extra model specs by label (fields of ModelSpec; the key is the label)"
    )
    v_min: float = Field(default=0.95, gt=0)
    """Lower voltage limit, pu (metrics, and controllers that do not set their own)."""
    v_max: float = Field(default=1.05, gt=0)
    """Upper voltage limit, pu (metrics, and controllers that do not set their own)."""
    grid: GridSection
    """The feeder."""
    sites: tuple[SiteSection, ...] = Field(min_length=1)
    """The datacenter sites."""
    controllers: tuple[ControllerEntry, ...] = ()
    """The controllers, in stepping order."""

    _folder: Path | None = PrivateAttr(default=None)

    @field_validator("horizon_s", mode="before")
    @classmethod
    def _positive_horizon(cls, value: Any) -> Fraction:
        return as_period(value, name="horizon_s")

    @field_validator("models", mode="before")
    @classmethod
    def _labels_from_keys(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        labelled = {}
        for label, fields in value.items():
            if isinstance(fields, Mapping):
                given = fields.get("model_label", label)
                if given != label:
                    raise ValueError(f"models.{label}: model_label {given!r} differs from its key; omit it")
                fields = {**fields, "model_label": label}
            labelled[label] = fields
        return labelled

    @field_serializer("models")
    def _models_as_given(self, models: dict[str, ModelSpec]) -> dict[str, Any]:
        return {
            label: spec.model_dump(mode="json", exclude_unset=True, exclude={"model_label"})
            for label, spec in models.items()
        }

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        names = [self.grid.name, *(s.name for s in self.sites), *(c.name for c in self.controllers)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"component names must be unique; repeated: {duplicates}")
        site_names = {s.name for s in self.sites}
        for controller in self.controllers:
            for named in controller.referenced_sites():
                if named not in site_names:
                    raise ValueError(
                        f"controller {controller.name!r} refers to site {named!r}; sites: {sorted(site_names)}"
                    )
        if self.v_min >= self.v_max:
            raise ValueError(f"v_min ({self.v_min}) must be below v_max ({self.v_max})")
        catalogue = {**PAPER_MODELS, **self.models}
        for i, site in enumerate(self.sites):
            for j, entry in enumerate(site.models):
                if entry.model not in catalogue:
                    raise ValueError(
                        f"sites.{i}.models.{j}.model: unknown model {entry.model!r} (site {site.name!r}); "
                        f"known: {sorted(catalogue)}"
                    )
                try:
                    spec = entry.spec(catalogue)
                except ValidationError as exc:
                    problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                    raise ValueError(f"sites.{i}.models.{j} ({entry.model}): {problems}") from None
                _check_batch_limit(site.slo_of(entry), entry, spec, f"sites.{i}.models.{j} ({entry.model})")
        return self

    def __eq__(self, other: object) -> bool:
        """Equal content (where the scenario was read from does not count)."""
        if not isinstance(other, Scenario):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    # -- files --------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | Path) -> Scenario:
        """Load and validate a scenario file; errors name the file, the key and the problem.

        Relative paths in the file (``data``, a ``.dss`` or table-folder ``feeder``, CSV load
        profiles, training traces, live request files, budget profiles) are relative to the
        file's folder; the loaded scenario holds them absolute, so its :meth:`to_toml` reruns
        from anywhere.
        """
        file = Path(path)
        raw = read_toml(file, "scenario file", ScenarioError)
        folder = file.resolve().parent
        raw = absolute_paths(raw, folder)
        _trust_own_feeder(raw, folder)
        return cls.from_dict(raw, source=str(file), folder=folder)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = "<scenario>", folder: Path | None = None) -> Scenario:
        """Validate a parsed scenario mapping; `folder` is where its relative paths point."""
        try:
            scenario = cls.model_validate(raw)
        except ValidationError as exc:
            raise ScenarioError(_format_validation_error(source, exc, raw)) from None
        scenario._folder = folder
        return scenario

    @property
    def folder(self) -> Path | None:
        """The folder of the file it was read from (None: built in Python)."""
        return self._folder

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
        """A validated copy with fields changed: top-level ones by name (``horizon_s=600``) or
        nested ones by dotted path (``**{"sites.0.models.0.replicas": 360}``)."""
        return self.with_changes(changes)

    def with_changes(self, changes: Mapping[str, Any], *, what: str = "overrides", noun: str = "path") -> Scenario:
        """A validated copy with every dotted path of `changes` set; errors name `what` (the
        changes' origin) and call a path a `noun` ("axis" in a sweep)."""
        raw = copy.deepcopy(self.to_dict())
        try:
            for path, value in changes.items():
                set_path(raw, path, value, noun)
        except PathError as exc:
            raise ScenarioError(f"{self.name} ({what}): {exc}") from None
        return Scenario.from_dict(raw, source=f"{self.name} ({what})", folder=self._folder)


def _check_batch_limit(slo: SloSection, entry: ModelEntry, spec: ModelSpec, where: str) -> None:
    """A model's limit and targets are complete, and a fixed limit keeps its starting batch feasible."""
    problems = slo.limit_problems()
    if problems:
        raise ValueError(f"{where}: {'; '.join(problems)}")
    limit = slo.batch_limit
    if isinstance(limit, int):
        if not any(b <= limit for b in spec.feasible):
            raise ValueError(f"{where}: batch_limit {limit} is below every feasible batch size {list(spec.feasible)}")
        if entry.initial_batch > limit:
            raise ValueError(f"{where}: initial_batch {entry.initial_batch} is above batch_limit {limit}")


# -- paths in a scenario file ----------------------------------------------------------------------
def _absolute(value: Any, folder: Path, keep: tuple[str, ...] = ()) -> Any:
    """`value` as an absolute path string when it is a relative path (texts in `keep` stay as they are)."""
    if not isinstance(value, str) or not value or value.lower() in keep:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (folder / path).resolve())


def _table_items(raw: Mapping[str, Any], *keys: str) -> list[dict[str, Any]]:
    """The tables of a list of tables at `keys` (absent or malformed entries are left to validation)."""
    node: Any = raw
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    return [item for item in node if isinstance(item, dict)] if isinstance(node, list) else []


def absolute_paths(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A copy of a scenario file's tables with every relative path made relative to `folder`."""
    raw = copy.deepcopy(raw)
    if "data" in raw:
        raw["data"] = _absolute(raw["data"], folder, keep=("bundled", "synthetic"))
    grid = raw.get("grid")
    if isinstance(grid, dict):
        if "feeder" in grid:
            grid["feeder"] = _absolute(grid["feeder"], folder, keep=bundled_feeders())
        for item in [*_table_items(grid, "generators"), *_table_items(grid, "loads")]:
            profile = item.get("profile")
            if isinstance(profile, dict) and profile.get("kind") == "csv" and "path" in profile:
                profile["path"] = _absolute(profile["path"], folder)
    for site in _table_items(raw, "sites"):
        for job in _table_items(site, "training"):
            if "trace" in job:
                job["trace"] = _absolute(job["trace"], folder, keep=("synthetic",))
        for server in _table_items(site, "live", "servers"):
            if "requests" in server:
                server["requests"] = _absolute(server["requests"], folder)
    for controller in _table_items(raw, "controllers"):
        if isinstance(controller.get("profile"), str):
            controller["profile"] = _absolute(controller["profile"], folder)
    return raw


def _trust_own_feeder(raw: Mapping[str, Any], folder: Path) -> None:
    """A scenario file may name a ``.dss`` feeder in its own folder (or below): trust that folder."""
    grid = raw.get("grid")
    feeder = grid.get("feeder") if isinstance(grid, Mapping) else None
    own = isinstance(feeder, str) and feeder.lower() not in bundled_feeders()
    if own and Path(str(feeder)).resolve().is_relative_to(folder):
        trust_feeder_dir(folder)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _format_validation_error(source: str, exc: ValidationError, raw: Any = None) -> str:
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
        lines.append(f"  - {key}: {error['msg']}{shown}{_whose(raw, error['loc'])}")
    return "\n".join(lines)


def _whose(raw: Any, loc: tuple[Any, ...]) -> str:
    """ " [controller 'ofo']" for a location inside a named site or controller of `raw`."""
    if len(loc) < 3 or loc[0] not in ("sites", "controllers") or not isinstance(raw, Mapping):
        return ""
    items, index = raw.get(loc[0]), loc[1]
    if not isinstance(items, list | tuple) or not isinstance(index, int) or not -len(items) <= index < len(items):
        return ""
    name = items[index].get("name") if isinstance(items[index], Mapping) else None
    return f" [{loc[0][:-1]} {name!r}]" if isinstance(name, str) else ""


# -- names that moved ---------------------------------------------------------------------------
_MOVED = {
    "NoopSection": "g2gsim.controllers.noop",
    "TapScheduleSection": "g2gsim.controllers.schedules",
    "BatchScheduleSection": "g2gsim.controllers.schedules",
    "TapEvent": "g2gsim.controllers.schedules",
    "BatchEvent": "g2gsim.controllers.schedules",
    "OFOSection": "g2gsim.controllers.ofo",
    "RuleBasedSection": "g2gsim.controllers.rule_based",
    "LoadShiftSection": "g2gsim.controllers.load_shift",
    "StorageDroopSection": "g2gsim.controllers.storage_droop",
    "BudgetEvent": "g2gsim.controllers.budget",
    "BudgetSection": "g2gsim.controllers.budget",
    "GridOperatorSection": "g2gsim.controllers.budget",
    "PowerBudgetSection": "g2gsim.controllers.power_budget",
    "ProportionalCurtailmentSection": "g2gsim.controllers.proportional_curtailment",
}
_RENAMED = {"LiveSection": LiveSiteConfig, "LiveServerEntry": LiveServerConfig}

__getattr__ = moved_names(__name__, _MOVED, _RENAMED)
