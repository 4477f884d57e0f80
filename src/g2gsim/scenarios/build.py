"""Turn a validated :class:`Scenario` into components and a :class:`Simulation`.

Arrows point one way: the scenario layer imports components; components never import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from g2gsim.data import DataSource, open_data_source
from g2gsim.data.spec import PAPER_MODELS, ModelSpec
from g2gsim.datacenter.config import (
    DatacenterConfig,
    Facility,
    ModelDeployment,
    PowerAugmentation,
    ReplicaSchedule,
    TrainingRun,
    TrainingSchedule,
)
from g2gsim.datacenter.offline import OfflineDatacenter
from g2gsim.grid.config import GridConfig, SiteAttachment
from g2gsim.grid.errors import GridError
from g2gsim.grid.opendss import OpenDSSGrid
from g2gsim.kernel.component import Component
from g2gsim.kernel.simulation import Simulation
from g2gsim.scenarios.model import (
    BatchScheduleSection,
    BudgetSection,
    GridOperatorSection,
    GridSection,
    LoadShiftSection,
    NoopSection,
    OFOSection,
    PowerBudgetSection,
    ProportionalCurtailmentSection,
    RuleBasedSection,
    Scenario,
    ScenarioError,
    SiteSection,
    StorageDroopSection,
    TapScheduleSection,
    TrainingEntry,
)


@dataclass
class BuiltScenario:
    """A scenario with its components assembled into a simulation."""

    scenario: Scenario
    simulation: Simulation
    data: DataSource
    grid: OpenDSSGrid
    sites: dict[str, OfflineDatacenter]

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
    catalogue = dict(PAPER_MODELS)
    for label, fields in scenario.models.items():
        try:
            catalogue[label] = ModelSpec(**{"model_label": label, **fields})
        except ValidationError as exc:
            raise ScenarioError(f"models.{label}: {exc}") from None
    return catalogue


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


def datacenter_config(site: SiteSection, catalogue: Mapping[str, ModelSpec]) -> DatacenterConfig:
    """The trace-driven datacenter configuration of one site section."""
    deployments = []
    for entry in site.models:
        spec = catalogue.get(entry.model)
        if spec is None:
            raise ScenarioError(f"sites.{site.name}.models: unknown model {entry.model!r}; known: {sorted(catalogue)}")
        schedule = ReplicaSchedule(initial=entry.replicas)
        for ramp in entry.ramps:
            schedule = schedule.ramp_to(ramp.target, ramp.t_start_s, ramp.t_end_s)
        deployments.append(ModelDeployment(spec=spec, initial_batch=entry.initial_batch, replicas=schedule))
    return DatacenterConfig(
        deployments=tuple(deployments),
        capacity_gpus=site.capacity_gpus,
        facility=Facility(
            gpus_per_server=site.gpus_per_server,
            base_kw_per_phase=site.base_kw_per_phase,
            power_factor=site.power_factor,
        ),
        augmentation=PowerAugmentation(
            amplitude_scale_range=site.amplitude_scale_range, noise_fraction=site.noise_fraction
        ),
        training=_training(site.training),
        seed=site.seed,
        gpu_power=site.gpu_power,
    )


def grid_config(grid: GridSection, sites: tuple[SiteSection, ...]) -> GridConfig:
    """The OpenDSS grid configuration, with every site attached at its bus."""
    return GridConfig(
        feeder=grid.feeder,
        period_s=grid.period_s,
        source_pu=grid.source_pu,
        initial_taps=grid.taps_pu(),
        excluded_buses=grid.excluded_buses,
        coupling=grid.coupling,
        regulator_self_control=grid.regulator_self_control,
        tap_limits=grid.tap_limits,
        sites=tuple(
            SiteAttachment(site=s.name, bus=s.bus, connection=s.connection, power_factor=s.power_factor) for s in sites
        ),
        generators=grid.generators,
        loads=grid.loads,
        storage=grid.storage,
    )


def _links(section: Any) -> dict[str, Any]:
    return {"command_link": section.command_link, "measurement_link": section.measurement_link}


def build_controller(section: Any, scenario: Scenario) -> Component:
    """One controller component from its section."""
    from g2gsim import controllers as ctl

    common = _links(section)
    if isinstance(section, NoopSection):
        return ctl.Noop(section.name, section.period_s, **common)
    if isinstance(section, TapScheduleSection):
        schedule = None
        for event in section.events:
            entry = ctl.TapPosition(**event.taps_pu()).at(event.t_s)
            schedule = entry if schedule is None else schedule | entry
        return ctl.TapScheduleController(section.name, schedule, grid=section.grid, period=section.period_s, **common)
    if isinstance(section, BatchScheduleSection):
        schedules: dict[str, Any] = {}
        for event in section.events:
            entry = ctl.BatchSizeChange(event.batch, ramp_up_rate=event.ramp_up_rate).at(event.t_s)
            schedules[event.model] = entry if event.model not in schedules else schedules[event.model] | entry
        return ctl.BatchScheduleController(
            section.name, schedules, datacenter=section.site, period=section.period_s, **common
        )
    if isinstance(section, OFOSection):
        config = ctl.OFOConfig(**{"v_min": scenario.v_min, "v_max": scenario.v_max, **section.params})
        return ctl.OFOBatchController(
            section.name, datacenter=section.site, grid=section.grid, config=config, period=section.period_s, **common
        )
    if isinstance(section, RuleBasedSection):
        config = ctl.RuleBasedConfig(**{"v_min": scenario.v_min, "v_max": scenario.v_max, **section.params})
        return ctl.RuleBasedController(
            section.name, datacenter=section.site, grid=section.grid, config=config, period=section.period_s, **common
        )
    if isinstance(section, LoadShiftSection):
        config = ctl.LoadShiftConfig(**{"v_min": scenario.v_min, "v_max": scenario.v_max, **section.params})
        return ctl.LoadShiftController(
            section.name, datacenters=section.sites, grid=section.grid, config=config, period=section.period_s, **common
        )
    if isinstance(section, StorageDroopSection):
        config = ctl.StorageDroopConfig(**section.params)
        storage = {s.name: s for s in scenario.grid.storage}
        missing = [name for name in section.storage if name not in storage]
        if missing:
            raise ScenarioError(
                f"controllers.{section.name}.storage: unknown storage {missing}; grid storage: {sorted(storage)}"
            )
        return ctl.StorageDroopController(
            section.name,
            grid=section.grid,
            storage=[storage[name] for name in section.storage],
            config=config,
            period=section.period_s,
            **common,
        )
    if isinstance(section, BudgetSection | GridOperatorSection | PowerBudgetSection | ProportionalCurtailmentSection):
        _check_caps_reach_a_trace_driven_site(section, scenario)
        return _build_budget_controller(section, common)
    raise ScenarioError(f"controller {section.name!r}: unsupported type {type(section).__name__}")


def _check_caps_reach_a_trace_driven_site(section: Any, scenario: Scenario) -> None:
    """GPU power caps (SetPowerCap) exist only in the trace-driven datacenter: a controller
    that would send them to a live site is an error now, not minutes into a hardware run."""
    site = next((s for s in scenario.sites if s.name == getattr(section, "site", None)), None)
    if site is None or site.live is None:
        return
    if isinstance(section, ProportionalCurtailmentSection):
        raise ScenarioError(
            f"controllers.{section.name}: proportional_curtailment sets GPU power caps, which live site "
            f"{site.name!r} cannot apply (its servers take batch sizes only); use power_budget with "
            "params.knobs = ['batch', 'replicas']"
        )
    if isinstance(section, PowerBudgetSection):
        from g2gsim.controllers.power_budget import PowerBudgetConfig

        knobs = list(section.params.get("knobs", PowerBudgetConfig.model_fields["knobs"].default))
        if "caps" in knobs:
            raise ScenarioError(
                f"controllers.{section.name}.params.knobs: {knobs} includes 'caps', but live site {site.name!r} "
                "cannot apply GPU power caps; allowed there: 'batch', 'replicas'"
            )


def _build_budget_controller(section: Any, common: dict[str, Any]) -> Component:
    """Budget sources and budget controllers (issue 10)."""
    from g2gsim.controllers import budget as bud
    from g2gsim.controllers import power_budget as pb

    if isinstance(section, BudgetSection):
        if section.kw is not None:
            return bud.ConstantBudget(section.name, section.site, section.kw)
        if section.profile is not None:
            try:
                schedule = bud.budget_from_csv(section.profile)
            except (OSError, ValueError) as exc:
                raise ScenarioError(f"controllers.{section.name}.profile: {exc}") from None
        else:
            schedule = None
            for event in section.events:
                entry = bud.Budget(event.kw).at(event.t_s)
                schedule = entry if schedule is None else schedule | entry
        return bud.ScheduledBudget(section.name, section.site, schedule)
    if isinstance(section, GridOperatorSection):
        return bud.GridOperator(
            section.name,
            section.site,
            section.grid,
            normal_kw=section.normal_kw,
            curtail_kw=section.curtail_kw,
            v_trigger=section.v_trigger,
            power_trigger_kw=section.power_trigger_kw,
            hold_s=section.hold_s,
        )
    if isinstance(section, PowerBudgetSection):
        return pb.PowerBudgetController(
            section.name,
            section.site,
            section.budget,
            pb.PowerBudgetConfig(**section.params),
            period=section.period_s,
            **common,
        )
    return pb.ProportionalCurtailment(
        section.name, section.site, section.budget, period=section.period_s, margin=section.margin, **common
    )


def _live_datacenter(site: SiteSection, catalogue: Mapping[str, ModelSpec], data: DataSource, seed: int | None) -> Any:
    """A live site (SPEC 3); the live package (the ``live`` extra) is imported only here."""
    from g2gsim.live.config import LiveServerConfig, LiveSiteConfig
    from g2gsim.live.datacenter import LiveDatacenter

    live = site.live
    assert live is not None
    options = live.model_dump(exclude={"servers", "realtime_factor"})
    servers = tuple(
        LiveServerConfig(**{**server.model_dump(), "gpu_ids": tuple(server.gpu_ids)}) for server in live.servers
    )
    config = LiveSiteConfig(servers=servers, **options)
    return LiveDatacenter(site.name, datacenter_config(site, catalogue), data, config, period=site.period_s, seed=seed)


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
    catalogue = model_catalogue(scenario)
    try:
        sites = {
            site.name: (
                OfflineDatacenter(
                    site.name,
                    datacenter_config(site, catalogue),
                    data,
                    period=site.period_s,
                    seed=site_seed(scenario.seed, site.seed),
                )
                if site.live is None
                else _live_datacenter(site, catalogue, data, site_seed(scenario.seed, site.seed))
            )
            for site in scenario.sites
        }
        grid = OpenDSSGrid(scenario.grid.name, grid_config(scenario.grid, scenario.sites))
        controllers = []
        for section in scenario.controllers:
            try:
                controllers.append(build_controller(section, scenario))
            except ValidationError as exc:
                raise ScenarioError(f"scenario {scenario.name!r}: controller {section.name!r}: {exc}") from None
    except ValidationError as exc:
        raise ScenarioError(f"scenario {scenario.name!r}: {exc}") from None
    except (GridError, OSError) as exc:
        # An unknown feeder, an unreadable .dss or training-trace file.
        raise ScenarioError(f"scenario {scenario.name!r}: {exc}") from None
    simulation = Simulation(
        [*sites.values(), grid, *controllers],
        scenario.horizon_s,
        seed=scenario.seed,
        metadata={"scenario": scenario.name, "data_source": data.description},
        realtime_factor=_realtime_factor(scenario),
    )
    return BuiltScenario(scenario=scenario, simulation=simulation, data=data, grid=grid, sites=sites)
