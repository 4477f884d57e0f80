"""Turn a validated :class:`Scenario` into components and a :class:`Simulation`.

Every section is built by the kind registered under its type (:mod:`g2gsim.kernel.registry`):
controllers by their ``type``, sites by :attr:`SiteSection.kind` ("offline" here, "live"
from the :mod:`g2gsim.live` plugin), the grid by :attr:`GridSection.kind`. Builders receive a
:class:`ScenarioContext`. Arrows point one way: this layer imports components; components
never import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from g2gsim.data import DataSource, open_data_source
from g2gsim.data.spec import PAPER_MODELS, ModelSpec
from g2gsim.datacenter.base import Datacenter
from g2gsim.datacenter.config import (
    DatacenterConfig,
    ModelDeployment,
    ReplicaSchedule,
    TrainingRun,
    TrainingSchedule,
)
from g2gsim.datacenter.offline import OfflineDatacenter
from g2gsim.grid.config import GridConfig, SiteAttachment, StorageSpec
from g2gsim.grid.errors import FeederDefinitionError, GridError
from g2gsim.grid.opendss import OpenDSSGrid
from g2gsim.kernel.component import Component
from g2gsim.kernel.registry import ComponentKind, UnknownKindError, expect, lookup, register
from g2gsim.kernel.simulation import Simulation
from g2gsim.planning import BatchPlan, MissingFigureError, ModelBounds, limit_spec, plan_model
from g2gsim.scenarios.model import GridSection, Scenario, ScenarioError, SiteSection, TrainingEntry

__all__ = [
    "BuiltScenario",
    "ScenarioContext",
    "batch_limits",
    "build_controller",
    "build_simulation",
    "datacenter_config",
    "grid_config",
    "model_catalogue",
    "site_seed",
]


@dataclass
class BuiltScenario:
    """A scenario with its components assembled into a simulation."""

    scenario: Scenario
    simulation: Simulation
    data: DataSource
    grid: OpenDSSGrid
    sites: dict[str, Datacenter]

    @property
    def deadlines(self) -> dict[str, dict[str, float]]:
        """ITL deadline (s) per site and model."""
        return {
            name: {label: spec.itl_deadline_s for label, spec in dc.specs.items()} for name, dc in self.sites.items()
        }

    @property
    def site_buses(self) -> dict[str, str]:
        """Site name -> bus."""
        return {site.name: site.bus for site in self.scenario.sites}


def model_catalogue(scenario: Scenario) -> dict[str, ModelSpec]:
    """The paper's five models plus the scenario's own `[models]` (which win on a clash)."""
    return {**PAPER_MODELS, **scenario.models}


@dataclass(frozen=True)
class ScenarioContext:
    """What a builder may ask of the scenario being built (it satisfies the controllers'
    :class:`~g2gsim.controllers.base.BuildContext`)."""

    scenario: Scenario
    data: DataSource | None = None
    """The data source (None when only controllers are built)."""

    @cached_property
    def catalogue(self) -> dict[str, ModelSpec]:
        """The model catalogue of the scenario."""
        return model_catalogue(self.scenario)

    @property
    def v_min(self) -> float:
        """The scenario-wide lower voltage limit, pu."""
        return self.scenario.v_min

    @property
    def v_max(self) -> float:
        """The scenario-wide upper voltage limit, pu."""
        return self.scenario.v_max

    @property
    def storage(self) -> Mapping[str, StorageSpec]:
        """The grid's batteries by name."""
        return {spec.name: spec for spec in self.scenario.grid.storage}

    @property
    def folder(self) -> Path | None:
        """The folder of the scenario file (None: not read from a file)."""
        return self.scenario.folder

    def site_is_live(self, site: str) -> bool:
        """Whether the named site is live."""
        return any(s.name == site and s.live is not None for s in self.scenario.sites)

    def datacenter_config(self, site: SiteSection) -> DatacenterConfig:
        """The configuration of a site section, each model's feasible sizes cut at its batch limit."""
        return datacenter_config(site, self.catalogue, self.batch_limits(site))

    @cached_property
    def _limits(self) -> dict[str, dict[str, BatchLimit]]:
        return {site.name: batch_limits(site, self.catalogue, self.data) for site in self.scenario.sites}

    def batch_limits(self, site: SiteSection) -> dict[str, BatchLimit]:
        """The batch limit of each model of a site that has one (planned with the data source)."""
        return self._limits[site.name]

    def slo_bounds(self, site: str) -> dict[str, ModelBounds]:
        """Every bound of each model of the named site (ITL deadline, TTFT deadline, memory), as planned."""
        sections = {s.name: s for s in self.scenario.sites}
        if site not in sections:
            raise KeyError(f"no site {site!r}; sites: {sorted(sections)}")
        section = sections[site]
        out = {}
        for entry in section.models:
            slo = section.slo_of(entry)
            if slo.has_lengths:
                out[entry.model] = _bounds(entry.spec(self.catalogue), slo, self.data, f"site {site!r}")
        return out

    def site_seed(self, site: SiteSection) -> int | None:
        """The seed of a site's random streams."""
        return site_seed(self.scenario.seed, site.seed)

    def require_data(self) -> DataSource:
        """The data source, which site builders need."""
        if self.data is None:
            raise RuntimeError("this build context has no data source (only controllers can be built)")
        return self.data


def _training(entries: tuple[TrainingEntry, ...]) -> TrainingSchedule:
    from g2gsim.data.training import load_training_trace, synthetic_training_trace

    schedule = TrainingSchedule()
    for entry in entries:
        if entry.trace == "synthetic":
            trace = synthetic_training_trace(seed=entry.trace_seed)
        else:
            trace = load_training_trace(Path(entry.trace))
        run = TrainingRun(trace=trace, n_gpus=entry.n_gpus, target_peak_w_per_gpu=entry.target_peak_w_per_gpu)
        schedule = schedule | run.at(entry.t_start_s, entry.t_end_s)
    return schedule


@dataclass(frozen=True)
class BatchLimit:
    """A model's batch limit: a number from the scenario, or planned (then with its plan)."""

    limit: int
    plan: BatchPlan | None = None

    def why(self) -> str:
        """What set the limit, for messages."""
        if self.plan is None:
            return "batch_limit in the scenario"
        return f"planned; binding bound: {self.plan.binding}"


def _bounds(spec: ModelSpec, slo: Any, data: DataSource | None, where: str) -> ModelBounds:
    try:
        return ModelBounds.of(spec, slo.targets(), source=data)
    except (MissingFigureError, ValueError) as exc:
        raise ScenarioError(f"{where}, model {spec.model_label!r}: {exc}") from None


def batch_limits(
    site: SiteSection, catalogue: Mapping[str, ModelSpec], data: DataSource | None
) -> dict[str, BatchLimit]:
    """Per model of a site with a ``batch_limit``: the number given, or the plan's largest feasible batch
    meeting every bound (which needs the data source's fits)."""
    out = {}
    where = f"site {site.name!r}"
    for entry in site.models:
        slo = site.slo_of(entry)
        if slo.batch_limit is None:
            continue
        if isinstance(slo.batch_limit, int):
            out[entry.model] = BatchLimit(slo.batch_limit)
            continue
        if data is None:
            raise ScenarioError(f'{where}: batch_limit = "plan" of {entry.model!r} needs the data source')
        spec = entry.spec(catalogue)
        try:
            fits = data.logistic_fits(spec)
        except LookupError as exc:
            raise ScenarioError(f'{where}: batch_limit = "plan" of {entry.model!r}: {exc}') from None
        plan = plan_model(spec, fits, _bounds(spec, slo, data, where))
        if plan.max_batch is None:
            raise ScenarioError(
                f'{where}: batch_limit = "plan" of {entry.model!r}: no feasible batch size {list(spec.feasible)} '
                f"meets every bound (binding: {plan.binding}; limits {plan.limits})"
            )
        out[entry.model] = BatchLimit(plan.max_batch, plan)
    return out


def datacenter_config(
    site: SiteSection, catalogue: Mapping[str, ModelSpec], limits: Mapping[str, BatchLimit] | None = None
) -> DatacenterConfig:
    """The datacenter configuration of one site section, each model's feasible sizes cut at its limit in `limits`."""
    deployments = []
    for entry in site.models:
        if entry.model not in catalogue:
            raise ScenarioError(f"sites.{site.name}.models: unknown model {entry.model!r}; known: {sorted(catalogue)}")
        schedule = ReplicaSchedule(initial=entry.replicas)
        for ramp in entry.ramps:
            schedule = schedule.ramp_to(ramp.target, ramp.t_start_s, ramp.t_end_s)
        spec = _limited(site, entry.model, entry.initial_batch, entry.spec(catalogue), (limits or {}).get(entry.model))
        deployments.append(ModelDeployment(spec=spec, initial_batch=entry.initial_batch, replicas=schedule))
    return DatacenterConfig(
        deployments=tuple(deployments),
        capacity_gpus=site.capacity_gpus,
        facility=site.facility(),
        augmentation=site.augmentation(),
        replay=site.replay(),
        training=_training(site.training),
        seed=site.seed,
        gpu_power=site.gpu_power,
    )


def _limited(site: SiteSection, label: str, initial: int, spec: ModelSpec, limit: BatchLimit | None) -> ModelSpec:
    """`spec` cut at its batch limit; a starting batch above the limit is an error naming both."""
    if limit is None:
        return spec
    where = f"site {site.name!r}, model {label!r}"
    if initial > limit.limit:
        kept = [b for b in spec.feasible if b <= limit.limit]
        raise ScenarioError(
            f"{where}: initial_batch {initial} is above the batch limit {limit.limit} ({limit.why()}); "
            f"set initial_batch to one of {kept}"
        )
    try:
        return limit_spec(spec, limit.limit, why=limit.why())
    except ValueError as exc:
        raise ScenarioError(f"{where}: {exc}") from None


def grid_config(grid: GridSection, sites: tuple[SiteSection, ...]) -> GridConfig:
    """The OpenDSS grid configuration, with every site attached at its bus."""
    return GridConfig(
        **grid.options(),
        sites=tuple(
            SiteAttachment(site=s.name, bus=s.bus, connection=s.connection, power_factor=s.power_factor) for s in sites
        ),
    )


def build_controller(section: Any, scenario: Scenario) -> Component:
    """One controller component from its section (built by its registered kind)."""
    return _build_controller(section, ScenarioContext(scenario))


def _build_controller(section: Any, context: ScenarioContext) -> Component:
    scenario = context.scenario
    try:
        return lookup("controller", section.type).build(section, context)
    except UnknownKindError as exc:
        raise ScenarioError(f"scenario {scenario.name!r}: controller {section.name!r}: {exc}") from None
    except ValidationError as exc:
        raise ScenarioError(f"scenario {scenario.name!r}: controller {section.name!r}: {exc}") from None
    except (ValueError, TypeError, OSError) as exc:
        raise ScenarioError(f"scenario {scenario.name!r}: controller {section.name!r}: {exc}") from None


def _build_offline_site(site: SiteSection, context: ScenarioContext) -> Component:
    """The trace-driven datacenter of a site section."""
    config = context.datacenter_config(site)
    return OfflineDatacenter(
        site.name, config, context.require_data(), period=site.period_s, seed=context.site_seed(site)
    )


def _build_opendss_grid(grid: GridSection, context: ScenarioContext) -> Component:
    """The OpenDSS grid of the grid section, with every site attached."""
    return OpenDSSGrid(grid.name, grid_config(grid, context.scenario.sites))


register(ComponentKind("site", "offline", SiteSection, _build_offline_site))
register(ComponentKind("grid", "opendss", GridSection, _build_opendss_grid))
expect("site", "live", "is provided by g2gsim.live; pip install 'g2gsim[live]'")


def _realtime_factor(scenario: Scenario) -> float | None:
    """None for a simulation; the (smallest) live site's factor when any site is live."""
    factors = [site.live.realtime_factor for site in scenario.sites if site.live is not None]
    return min(factors) if factors else None


def site_seed(scenario_seed: int, site_key: int | None) -> int | None:
    """The seed of a site's random streams: None (the scenario seed) without a key, else a
    64-bit value drawn from both, so ``--seed`` varies every site and keys keep them apart."""
    if site_key is None:
        return None
    return int(np.random.SeedSequence([int(scenario_seed), int(site_key)]).generate_state(2, np.uint64)[0] >> 1)


def build_simulation(scenario: Scenario, *, check_only: bool = False) -> BuiltScenario:
    """Components for every section, assembled in declared order into a Simulation."""
    try:
        data = open_data_source(None if scenario.data in (None, "bundled") else Path(scenario.data))
    except (OSError, ValueError) as exc:
        raise ScenarioError(f"scenario {scenario.name!r}: {exc}") from None
    context = ScenarioContext(scenario, data)
    try:
        sites = {site.name: _build_site(site, context) for site in scenario.sites}
        grid = lookup("grid", scenario.grid.kind).build(scenario.grid, context)
        controllers = [_build_controller(section, context) for section in scenario.controllers]
    except ValidationError as exc:
        raise ScenarioError(f"scenario {scenario.name!r}: {exc}") from None
    except (GridError, FeederDefinitionError, OSError) as exc:
        # An unknown feeder, a bad feeder table, an unreadable .dss or training-trace file.
        raise ScenarioError(f"scenario {scenario.name!r}: {exc}") from None
    assert isinstance(grid, OpenDSSGrid)
    metadata: dict[str, Any] = {"scenario": scenario.name, "data_source": data.description}
    limits = {site.name: {m: lim.limit for m, lim in context.batch_limits(site).items()} for site in scenario.sites}
    if any(limits.values()):
        metadata["batch_limits"] = {name: own for name, own in limits.items() if own}
    simulation = Simulation(
        [*sites.values(), grid, *controllers],
        scenario.horizon_s,
        seed=scenario.seed,
        metadata=metadata,
        realtime_factor=_realtime_factor(scenario),
    )
    return BuiltScenario(scenario=scenario, simulation=simulation, data=data, grid=grid, sites=sites)


def _build_site(site: SiteSection, context: ScenarioContext) -> Datacenter:
    try:
        kind = lookup("site", site.kind)
    except UnknownKindError as exc:
        raise ScenarioError(f"scenario {context.scenario.name!r}: site {site.name!r}: {exc}") from None
    component = kind.build(site, context)
    if not isinstance(component, Datacenter):
        raise ScenarioError(f"site kind {site.kind!r} built {component!r}, not a Datacenter")
    return component
