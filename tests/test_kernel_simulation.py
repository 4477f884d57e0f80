"""Runs: exact firing times, phased same-tick order, determinism, reset, assembly errors, results.

Toy components stand in for the three roles: sites (datacenter-like, phase 1) publish a
noisy power level that commands move, a grid (phase 2) sums the sites' latest values, and
controllers (phase 3) nudge one site each from what they see of the grid.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from itertools import groupby
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

from g2gsim.kernel import (
    INSTANT,
    AssemblyError,
    Command,
    ComponentError,
    Controller,
    DatacenterComponent,
    GridComponent,
    LinkSpec,
    Phase,
    RunResult,
    Simulation,
    read_chunks,
)

Trace = list[tuple[int, Phase, str]]

PERIOD_TEXTS = ["0.05", "0.1", "0.25", "1", "1/3", "0.2", "0.5", "0.15", "2/3"]
PERIODS = st.sampled_from(PERIOD_TEXTS)
DELAYS = st.sampled_from(["0", "0.05", "0.1", "0.25", "1/3", "1"])
HORIZONS = st.sampled_from(["1", "1.5", "2", "2.35", "7/3", "3"])


def _spelled(text: str) -> st.SearchStrategy[Any]:
    """One period in every way a user may write it: string, float (if decimal) or Fraction."""
    options: list[Any] = [text, Fraction(text)]
    if "/" not in text:
        options.append(float(text))
    return st.sampled_from(options)


PERIOD_VALUES = PERIODS.flatmap(_spelled)


# -- toy components ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Nudge(Command):
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Command):
    """A command nobody accepts."""


class ToySite(DatacenterComponent):
    """Publishes 10 * level + noise; a Nudge moves the level at the next step."""

    accepts = (Nudge,)

    def __init__(self, name: str, period: Any, trace: Trace | None = None, *, seed: int | None = None):
        super().__init__(name, period, seed=seed)
        self.trace = trace

    def reset(self, ctx) -> None:
        super().reset(ctx)
        self.box = ctx.mailbox("state")
        self.noise = ctx.rng("noise")
        self.level = 0
        self.rows: list[tuple[int, float, int, int]] = []
        self.applied: list[tuple[int, int]] = []

    def step(self, tick: int) -> None:
        for command in self.take_commands():
            assert isinstance(command, Nudge)
            self.level += command.amount
            self.applied.append((tick, command.amount))
        power = 10 * self.level + int(self.noise.integers(0, 100))
        self.rows.append((tick, self.ctx.seconds(tick), self.level, power))
        if self.trace is not None:
            self.trace.append((tick, self.role, self.name))
        self.box.publish(tick, power)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"state": pd.DataFrame(self.rows, columns=["tick", "time_s", "level", "power"])}


class ToyGrid(GridComponent):
    """Sums the sites' latest values (an error if a site has not published); flags overloads."""

    def __init__(self, name: str, period: Any, sites: list[str], trace: Trace | None = None, *, limit: int = 150):
        super().__init__(name, period)
        self.sites = sites
        self.trace = trace
        self.limit = limit

    def dependencies(self) -> Mapping[str, type]:
        return {site: ToySite for site in self.sites}

    def reset(self, ctx) -> None:
        super().reset(ctx)
        self.box = ctx.mailbox("state")
        self.rows: list[tuple[int, float, int]] = []

    def start(self) -> None:
        self.inputs = [self.ctx.subscribe(site) for site in self.sites]

    def step(self, tick: int) -> None:
        total = sum(box.value for box in self.inputs)
        if total > self.limit:
            self.ctx.event("overload", {"total": total})
        self.rows.append((tick, self.ctx.seconds(tick), total))
        if self.trace is not None:
            self.trace.append((tick, self.role, self.name))
        self.box.publish(tick, total)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"voltages": pd.DataFrame(self.rows, columns=["tick", "time_s", "total"])}

    def summary(self) -> dict[str, Any]:
        return {"solves": len(self.rows)}


class ToyController(Controller):
    """Reads the grid (maybe through a delayed link) and nudges one site up or down."""

    def __init__(
        self,
        name: str,
        period: Any,
        *,
        site: str,
        grid: str = "grid",
        trace: Trace | None = None,
        amount: int | None = None,
        command_link: LinkSpec = INSTANT,
        measurement_link: LinkSpec = INSTANT,
        seed: int | None = None,
    ):
        super().__init__(name, period, command_link=command_link, measurement_link=measurement_link, seed=seed)
        self.site, self.grid, self.trace, self.amount = site, grid, trace, amount

    def dependencies(self) -> Mapping[str, type]:
        return {self.grid: ToyGrid, self.site: ToySite}

    def reset(self, ctx) -> None:
        super().reset(ctx)
        self.rows: list[tuple[int, int]] = []

    def start(self) -> None:
        self.view = self.ctx.subscribe(self.grid)

    def control(self, tick: int):
        seen = self.view.get(-1)
        self.rows.append((tick, seen))
        if self.trace is not None:
            self.trace.append((tick, self.role, self.name))
        amount = self.amount if self.amount is not None else (1 if seen < 100 else -1)
        return [Nudge(target=self.site, amount=amount)]

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"seen": pd.DataFrame(self.rows, columns=["tick", "seen"])}


def _assert_same_results(a: RunResult, b: RunResult) -> None:
    assert sorted(a.tables) == sorted(b.tables)
    for key in a.tables:
        assert_frame_equal(a.tables[key], b.tables[key])
    assert_frame_equal(a.events, b.events)
    assert_frame_equal(a.commands, b.commands)


# -- (a) exact firing times ----------------------------------------------------------------
@given(periods=st.lists(PERIOD_VALUES, min_size=1, max_size=5), horizon=HORIZONS)
def test_every_component_fires_exactly_at_its_multiples_before_the_horizon(periods: list[Any], horizon: str) -> None:
    sites = [ToySite(f"site{i}", period) for i, period in enumerate(periods)]
    sim = Simulation(sites, horizon)
    result = sim.run()
    exact = [Fraction(str(p)) if isinstance(p, float) else Fraction(p) for p in periods]
    assert all((dt / sim.clock.tick).denominator == 1 for dt in exact)  # whole ticks
    T = Fraction(horizon)
    for site, dt in zip(sites, exact):
        frame = result.table(f"{site.name}/state")
        fired = [sim.clock.seconds(int(t)) for t in frame["tick"]]
        expected = [k * dt for k in range(int(T / dt) + 2) if k * dt < T]
        assert fired == expected
        # The recorded float time is the correctly rounded exact time, never an accumulated sum.
        assert frame["time_s"].tolist() == [float(t) for t in expected]
        assert all(type(t) is int for t, *_ in site.rows)


def test_a_float_period_of_a_tenth_never_drifts_over_an_hour() -> None:
    site = ToySite("site", 0.1)
    sim = Simulation([site], 3600)
    frame = sim.run().table("site/state")
    assert len(frame) == 36_000
    assert frame["time_s"].iloc[-1] == 3599.9
    assert frame["time_s"].tolist() == [k / 10 for k in range(36_000)]
    drifting, t = [], 0.0
    for _ in range(36_000):
        drifting.append(t)
        t += 0.1
    assert frame["time_s"].tolist() != drifting  # what a float clock would have done


@pytest.mark.parametrize(
    ("period", "horizon", "fired_s"),
    [
        ("0.3", "1", ["0", "0.3", "0.6", "0.9"]),
        ("0.25", "1", ["0", "0.25", "0.5", "0.75"]),
        ("0.4", "1.05", ["0", "0.4", "0.8"]),
        ("1/3", "1", ["0", "1/3", "2/3"]),
    ],
)
def test_a_horizon_that_is_not_a_multiple_of_the_period_is_allowed(
    period: str, horizon: str, fired_s: list[str]
) -> None:
    site = ToySite("site", period)
    sim = Simulation([site], horizon)
    sim.run()
    assert [sim.clock.seconds(t) for t, *_ in site.rows] == [Fraction(s) for s in fired_s]


# -- (b) same-tick order ---------------------------------------------------------------------
def _scenario(spec: dict[str, Any], trace: Trace) -> list[Any]:
    """Fresh components in canonical order: sites, grid, controllers."""
    sites = [ToySite(f"site{i}", p, trace) for i, p in enumerate(spec["site_periods"])]
    grid = ToyGrid("grid", spec["grid_period"], [s.name for s in sites], trace, limit=120)
    controllers = [
        ToyController(
            f"ctl{i}",
            p,
            site=f"site{i}",
            trace=trace,
            command_link=LinkSpec(delay_s=d),
            measurement_link=LinkSpec(delay_s=m),
        )
        for i, (p, d, m) in enumerate(spec["controllers"])
    ]
    return [*sites, grid, *controllers]


@st.composite
def _scenario_specs(draw) -> dict[str, Any]:
    site_periods = draw(st.lists(PERIODS, min_size=1, max_size=3))
    controllers = draw(st.lists(st.tuples(PERIODS, DELAYS, DELAYS), min_size=1, max_size=len(site_periods)))
    return {
        "site_periods": site_periods,
        "grid_period": draw(PERIODS),
        "controllers": controllers,
        "horizon": draw(HORIZONS),
        "seed": draw(st.integers(0, 9)),
    }


def _check_phased(trace: Trace, declared: list[str]) -> None:
    """Ticks ascend, phases ascend within a tick, and ties follow the declared order."""
    keys = [(tick, phase) for tick, phase, _ in trace]
    assert keys == sorted(keys)
    rank = {name: i for i, name in enumerate(declared)}
    for _, group in groupby(trace, key=lambda row: (row[0], row[1])):
        names = [name for *_, name in group]
        assert names == sorted(names, key=rank.__getitem__)
        assert len(set(names)) == len(names)  # one step per component and tick


@given(spec=_scenario_specs(), data=st.data())
def test_results_do_not_depend_on_process_creation_order(spec: dict[str, Any], data) -> None:
    baseline_trace: Trace = []
    baseline = Simulation(_scenario(spec, baseline_trace), spec["horizon"], seed=spec["seed"]).run()

    trace: Trace = []
    components = data.draw(st.permutations(_scenario(spec, trace)), label="declared order")
    result = Simulation(components, spec["horizon"], seed=spec["seed"]).run()

    _check_phased(trace, [c.name for c in components])
    # Each controller commands its own site, so the declared order within a phase cannot
    # matter for the data; only row order of same-time commands in the log may differ.
    assert sorted(trace) == sorted(baseline_trace)
    for key in baseline.tables:
        assert_frame_equal(result.tables[key], baseline.tables[key])
    assert_frame_equal(result.events, baseline.events)
    by_time = ["sent_s", "source"]
    assert_frame_equal(
        result.commands.sort_values(by_time).reset_index(drop=True),
        baseline.commands.sort_values(by_time).reset_index(drop=True),
    )


@given(spec=_scenario_specs(), data=st.data())
def test_interleaving_roles_in_the_list_changes_nothing(spec: dict[str, Any], data) -> None:
    """Same relative order inside each role, roles shuffled: even the traces are identical."""
    baseline_trace: Trace = []
    baseline = Simulation(_scenario(spec, baseline_trace), spec["horizon"], seed=spec["seed"]).run()

    trace: Trace = []
    components = _scenario(spec, trace)
    roles = data.draw(st.permutations([c.role for c in components]), label="role slots")
    queues = {role: [c for c in components if c.role == role] for role in set(roles)}
    interleaved = [queues[role].pop(0) for role in roles]
    result = Simulation(interleaved, spec["horizon"], seed=spec["seed"]).run()

    assert trace == baseline_trace
    _assert_same_results(result, baseline)


def test_ties_inside_a_phase_follow_the_declared_order() -> None:
    def applied(declared_first: str) -> tuple[list[tuple[int, int]], Trace]:
        trace: Trace = []
        a = ToyController("a", "0.5", site="site", trace=trace, amount=1)
        b = ToyController("b", "0.5", site="site", trace=trace, amount=2)
        site, other = ToySite("site", "0.25", trace), ToySite("other", "0.25", trace)
        grid = ToyGrid("grid", "0.5", ["site", "other"], trace)
        ctls = [a, b] if declared_first == "a" else [b, a]
        sites = [site, other] if declared_first == "a" else [other, site]
        Simulation([grid, *ctls, *sites], 1).run()
        return site.applied, trace

    applied_ab, trace_ab = applied("a")
    applied_ba, trace_ba = applied("b")
    assert applied_ab == [(1, 1), (1, 2), (3, 1), (3, 2)]
    assert applied_ba == [(1, 2), (1, 1), (3, 2), (3, 1)]
    assert [n for t, _, n in trace_ab if t == 0] == ["site", "other", "grid", "a", "b"]
    assert [n for t, _, n in trace_ba if t == 0] == ["other", "site", "grid", "b", "a"]


def test_a_grid_reads_the_datacenters_of_its_own_tick() -> None:
    site = ToySite("site", "0.1")
    grid = ToyGrid("grid", "0.1", ["site"])
    result = Simulation([grid, site], 1).run()
    assert result.table("grid/voltages")["total"].tolist() == result.table("site/state")["power"].tolist()


# -- (d) determinism, seeds and reset --------------------------------------------------------
def _noisy_run(seed: int) -> RunResult:
    trace: Trace = []
    link = LinkSpec(delay_s="0.1", jitter_s="0.3", loss_probability=0.2)
    components = [
        ToySite("site0", "0.1", trace),
        ToySite("site1", "0.25", trace),
        ToyGrid("grid", "0.1", ["site0", "site1"], trace, limit=100),
        ToyController("ctl0", "0.5", site="site0", command_link=link, measurement_link=link),
        ToyController("ctl1", "1", site="site1", command_link=link),
    ]
    return Simulation(components, 10, seed=seed).run()


@given(st.integers(0, 2**32))
def test_same_seed_is_bit_identical(seed: int) -> None:
    _assert_same_results(_noisy_run(seed), _noisy_run(seed))


def test_different_seeds_change_noise_and_latency_samples() -> None:
    a, b = _noisy_run(1), _noisy_run(2)
    assert not a.table("site0/state")["power"].equals(b.table("site0/state")["power"])
    assert not a.commands["deliver_s"].equals(b.commands["deliver_s"])
    assert a.commands["sent_s"].equals(b.commands["sent_s"])  # the schedule is not random


def test_a_component_seed_overrides_the_run_seed_for_that_component_only() -> None:
    def powers(run_seed: int) -> tuple[list[int], list[int]]:
        pinned, free = ToySite("pinned", "0.1", seed=42), ToySite("free", "0.1")
        result = Simulation([pinned, free], 2, seed=run_seed).run()
        return (result.table("pinned/state")["power"].tolist(), result.table("free/state")["power"].tolist())

    (pinned_1, free_1), (pinned_2, free_2) = powers(1), powers(2)
    assert pinned_1 == pinned_2
    assert free_1 != free_2


def test_a_simulation_can_be_run_twice_with_identical_results() -> None:
    link = LinkSpec(delay_s="0.1", jitter_s="0.3", loss_probability=0.2)
    components = [
        ToySite("site", "0.1"),
        ToyGrid("grid", "0.1", ["site"], limit=100),
        ToyController("ctl", "0.5", site="site", command_link=link, measurement_link=link),
    ]
    sim = Simulation(components, 20, seed=3)
    first = sim.run()
    second = sim.run()
    _assert_same_results(first, second)
    assert len(first.commands) == 40 and len(first.events) > 0
    assert first.meta["summary"] == second.meta["summary"] == {"grid": {"solves": 200}}


# -- assembly and run errors ------------------------------------------------------------------
@pytest.mark.parametrize("period", [0, "0", -0.1, "-1/3"])
def test_a_non_positive_period_is_refused_with_the_components_name(period: Any) -> None:
    with pytest.raises(ValueError, match=r"site\.period must be > 0"):
        ToySite("site", period)


@pytest.mark.parametrize("horizon", [0, -1])
def test_a_non_positive_horizon_is_refused(horizon: int) -> None:
    with pytest.raises(ValueError, match="horizon_s must be > 0"):
        Simulation([ToySite("site", "0.1")], horizon)


def test_a_component_needs_a_name() -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        ToySite("", "0.1")


def test_an_empty_simulation_is_refused() -> None:
    with pytest.raises(AssemblyError, match="at least one component"):
        Simulation([], 1)


def test_duplicate_names_are_refused_naming_both_types() -> None:
    with pytest.raises(AssemblyError, match=r"two components are named 'x' \(ToySite and ToyGrid\)"):
        Simulation([ToySite("x", "0.1"), ToyGrid("x", "0.1", [])], 1)


def test_a_missing_dependency_is_named() -> None:
    components = [ToySite("site", "0.1"), ToyController("ctl", "1", site="site")]
    with pytest.raises(AssemblyError, match=r"ToyController 'ctl' needs component 'grid' \(ToyGrid\)"):
        Simulation(components, 1)


def test_an_incompatible_dependency_names_both_types() -> None:
    components = [ToySite("site", "0.1"), ToySite("grid", "0.1"), ToyController("ctl", "1", site="site")]
    with pytest.raises(AssemblyError) as info:
        Simulation(components, 1)
    message = str(info.value)
    assert "ToyController 'ctl' is not compatible with ToySite 'grid'" in message
    assert "it needs a ToyGrid" in message


class _Stray(Controller):
    """Sends a command chosen by the test at its first step."""

    def __init__(self, name: str, command: Command) -> None:
        super().__init__(name, "1")
        self.command = command

    def control(self, tick: int):
        return [self.command]


def test_an_unknown_command_target_fails_the_run_with_a_clear_error() -> None:
    sim = Simulation([ToySite("site", "0.1"), _Stray("ctl", Nudge(target="nowhere", amount=1))], 2)
    with pytest.raises(
        ComponentError, match=r"'ctl' failed at t = 0 s: LookupError: .*unknown component 'nowhere'"
    ) as info:
        sim.run()
    assert info.value.component == "ctl" and isinstance(info.value.cause, LookupError)
    assert "['ctl', 'site']" in str(info.value)


def test_an_ambiguous_target_must_be_named() -> None:
    sim = Simulation([ToySite("a", "0.1"), ToySite("b", "0.1"), _Stray("ctl", Nudge(amount=1))], 2)
    with pytest.raises(ComponentError, match=r"without a target and 2 components accept it \(\['a', 'b'\]\)"):
        sim.run()


def test_a_unique_acceptor_is_found_without_a_target() -> None:
    site = ToySite("site", "0.5")
    result = Simulation([site, _Stray("ctl", Nudge(amount=3))], 2).run()
    assert site.applied == [(1, 3), (3, 3)]  # sent at t = 0, 1 s; applied at 0.5, 1.5 s
    assert result.commands["target"].tolist() == ["site", "site"]


def test_a_command_the_target_does_not_accept_is_a_type_error() -> None:
    sim = Simulation([ToySite("site", "0.1"), _Stray("ctl", Ping(target="site"))], 2)
    with pytest.raises(ComponentError, match=r"TypeError: ToySite 'site' cannot handle Ping .*accepts: Nudge"):
        sim.run()


def test_a_time_that_is_not_a_multiple_of_the_tick_is_an_error_unless_declared() -> None:
    class Late(DatacenterComponent):
        def run(self):
            yield self.ctx.at_tick(self.ctx.clock.ticks("0.15"))
            self.step(self.ctx.now)

        def step(self, tick: int) -> None:
            self.fired = self.ctx.clock.seconds(tick)

    with pytest.raises(ComponentError, match=r"ValueError: 3/20 s is not a whole number of base ticks"):
        Simulation([Late("late", "0.1")], 1).run()
    late = Late("late", "0.1")
    Simulation([late], 1, extra_times=["0.05"]).run()
    assert late.fired == Fraction(3, 20)


def test_a_failing_step_names_the_component_and_the_time() -> None:
    class Fragile(DatacenterComponent):
        def step(self, tick: int) -> None:
            if tick == 3:
                raise RuntimeError("boom")

    with pytest.raises(ComponentError, match=r"Fragile 'f' failed at t = 0.75 s: RuntimeError: boom"):
        Simulation([Fragile("f", "0.25")], 2).run()


def test_subscribing_to_an_unpublished_mailbox_lists_the_published_ones() -> None:
    components = [
        ToySite("site", "0.1"),
        ToyGrid("grid", "0.1", ["site"]),
        ToyController("ctl", "1", site="site", grid="grid"),
    ]
    components[1].start = lambda: components[1].ctx.subscribe("site", "power")  # type: ignore[method-assign]
    with pytest.raises(LookupError, match=r"site\.power.*\['grid\.state', 'site\.state'\]"):
        Simulation(components, 1).run()


# -- results ---------------------------------------------------------------------------------
def test_results_round_trip_through_parquet_exactly(tmp_path: Path) -> None:
    result = _noisy_run(5)
    assert len(result.events_of("overload")) > 0
    assert len(result.events_of("link_drop")) > 0
    assert (result.commands["status"] == "dropped").any()
    folder = result.to_parquet(tmp_path / "run")
    back = RunResult.from_parquet(folder)
    _assert_same_results(back, result)
    assert back.meta == json.loads(json.dumps(result.meta, default=str))


def test_a_run_without_events_or_commands_round_trips_too(tmp_path: Path) -> None:
    result = Simulation([ToySite("site", "0.5")], 1).run()
    assert result.events.empty and result.commands.empty
    _assert_same_results(RunResult.from_parquet(result.to_parquet(tmp_path)), result)


def test_reading_a_folder_without_results_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="holds no g2gsim results"):
        RunResult.from_parquet(tmp_path)


def test_result_lookups() -> None:
    result = _noisy_run(0)
    assert set(result.tables_of("state")) == {"site0", "site1"}
    assert result.meta["tick_s"] == "1/20"
    assert result.meta["components"]["grid"] == "ToyGrid"
    with pytest.raises(KeyError, match=r"no table 'nope/state'; tables: \["):
        result.table("nope/state")


def test_progress_and_streaming(tmp_path: Path) -> None:
    components = [ToySite("site", "0.1"), ToyGrid("grid", "0.5", ["site"])]
    reports: list[float] = []
    result = Simulation(components, 10).run(progress=reports.append, stream_to=tmp_path, chunk_s=3)
    assert reports[0] == 0.0 and reports[-1] == 1.0 and reports == sorted(reports)
    chunks = read_chunks(tmp_path)
    for key, frame in result.tables.items():
        assert_frame_equal(chunks[key], frame)
    assert len(list((tmp_path / "chunks" / "site__state").glob("part-*.parquet"))) == 4


class _Stopper(DatacenterComponent):
    """Counts stop() calls; raises `error` at tick 3 (a run failing or interrupted mid-way)."""

    def __init__(self, name: str, error: BaseException | None = None) -> None:
        super().__init__(name, "0.25")
        self.error = error
        self.stops = 0

    def reset(self, ctx) -> None:
        super().reset(ctx)
        self.rows: list[float] = []

    def step(self, tick: int) -> None:
        self.rows.append(self.ctx.seconds(tick))
        if tick == 3 and self.error is not None:
            raise self.error

    def stop(self) -> None:
        self.stops += 1

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"state": pd.DataFrame({"time_s": self.rows})}


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_run_stops_every_component_and_keeps_its_chunks(
    tmp_path: Path, error: BaseException
) -> None:
    failing, bystander = _Stopper("f", error), _Stopper("b")
    with pytest.raises((ComponentError, KeyboardInterrupt)):
        Simulation([failing, bystander], 10).run(stream_to=tmp_path, chunk_s=300)
    assert failing.stops == 1 and bystander.stops == 1
    assert (tmp_path / "chunks").is_dir(), "what was computed before the failure is on disk"


def test_a_finished_run_stops_every_component_once() -> None:
    one, two = _Stopper("a"), _Stopper("b")
    Simulation([one, two], 1).run()
    assert one.stops == 1 and two.stops == 1
