"""Feeder topology: regulator zones (SPEC 7), up/downstream, three-phase buses, distances, drawing."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from g2gsim.grid.engine import DSSEngine
from g2gsim.grid.feeders import load_feeder
from g2gsim.grid.topology import FeederTopology
from g2gsim.plots import plot_feeder

#: .dss feeders of these tests sit in their own folders and the reference folder, trusted here.
pytestmark = pytest.mark.usefixtures("trusted_feeder_dirs")

FT_PER_MI = 5280.0


@pytest.fixture(scope="module")
def topologies() -> dict[str, FeederTopology]:
    found = {}
    for name in ("ieee13", "ieee34", "ieee123"):
        engine = DSSEngine()
        engine.compile_feeder(load_feeder(name))
        found[name] = FeederTopology.from_engine(engine)
    return found


def _tiny_engine(tmp_path: Path) -> DSSEngine:
    master = tmp_path / "tiny.dss"
    master.write_text(
        "Clear\nNew Circuit.tiny basekv=12.47 bus1=src\n"
        "New Line.l1 bus1=src bus2=a phases=3 r1=0.1 x1=0.2 r0=0.3 x0=0.6 length=2 units=km\n"
        "New Line.l2 bus1=a bus2=b phases=3 r1=0.1 x1=0.2 r0=0.3 x0=0.6 length=1 units=km\n"
        "New Line.l3 bus1=a.2 bus2=c.2 phases=1 r1=0.4 x1=0.4 r0=0.4 x0=0.4 length=1 units=km\n"
    )
    engine = DSSEngine()
    engine.compile_feeder(load_feeder(master))  # not solved: topology builds what it needs
    return engine


# -- regulator zones ------------------------------------------------------------------------------------------
def test_ieee34_zones_contain_the_spec_zones(topologies: dict[str, FeederTopology]) -> None:
    zones = topologies["ieee34"].regulator_zones()
    spec_creg1 = {"814r", "850", "816", "824", "828", "830", "854"}
    spec_creg2 = {"852r", "832", "858", "834", "860", "836", "840", "862", "842", "844", "846", "848"}
    for phase in "abc":
        assert spec_creg1 <= zones[f"creg1{phase}"]
        assert spec_creg2 <= zones[f"creg2{phase}"]
        assert zones[f"creg1{phase}"] == zones["creg1a"] and zones[f"creg2{phase}"] == zones["creg2a"]
    assert not zones["creg1a"] & zones["creg2a"]
    assert "852" in zones["creg1a"] and "832" not in zones["creg1a"]  # 852 feeds regulator 2
    assert not {"800", "814", "sourcebus"} & (zones["creg1a"] | zones["creg2a"])
    assert {"888", "890"} <= zones["creg2a"]  # behind the in-line transformer, still regulator 2's
    nested = topologies["ieee34"].regulator_zones(nested=True)
    assert nested["creg1a"] == zones["creg1a"] | zones["creg2a"]


def test_ieee13_and_ieee123_zones(topologies: dict[str, FeederTopology]) -> None:
    z13 = topologies["ieee13"].regulator_zones()
    assert z13["creg1a"] == z13["creg1b"] == z13["creg1c"]
    assert z13["creg1a"] == {
        "rg60",
        "632",
        "633",
        "634",
        "645",
        "646",
        "670",
        "671",
        "680",
        "684",
        "611",
        "652",
        "692",
        "675",
    }
    z123 = topologies["ieee123"].regulator_zones()
    assert z123["creg2a"] == {"9r", "14", "10", "11"}
    assert z123["creg3a"] == z123["creg3c"] == {"25r", "26", "27", "31", "32", "33"}
    assert z123["creg4a"] == z123["creg4b"] == z123["creg4c"]
    assert {"160r", "67", "72", "76", "97", "101", "105", "108", "300"} <= z123["creg4a"]
    assert {"150r", "1", "8", "13", "23", "60", "25", "9", "160"} <= z123["creg1a"]
    assert not {"67", "9r", "26", "105"} & z123["creg1a"]
    every = set().union(*z123.values())
    assert every == set(topologies["ieee123"].buses) - {"150"}  # every bus but the source is regulated


# -- up- and downstream -------------------------------------------------------------------------------------
def test_downstream_and_upstream_buses(topologies: dict[str, FeederTopology]) -> None:
    t13 = topologies["ieee13"]
    assert t13.source_bus == "sourcebus"
    assert t13.downstream_buses("671") == {"680", "684", "611", "652", "692", "675"}
    assert t13.downstream_buses("675") == frozenset()
    assert t13.downstream_buses("sourcebus") == set(t13.buses) - {"sourcebus"}
    assert t13.upstream_buses("671") == ("sourcebus", "650", "rg60", "632", "670")
    assert t13.path("652", "675") == ["652", "684", "671", "692", "675"]
    assert topologies["ieee123"].source_bus == "150"
    assert "300_open" in topologies["ieee123"].downstream_buses("151")
    with pytest.raises(KeyError, match="no bus 'nowhere'"):
        t13.downstream_buses("nowhere")


def test_three_phase_buses(topologies: dict[str, FeederTopology]) -> None:
    assert set(topologies["ieee13"].three_phase_buses()) == {
        "sourcebus",
        "650",
        "rg60",
        "632",
        "633",
        "634",
        "670",
        "671",
        "680",
        "692",
        "675",
    }
    t34 = set(topologies["ieee34"].three_phase_buses())
    assert {"850", "834", "860", "888"} <= t34 and not {"810", "818", "826", "856", "864", "838"} & t34
    t123 = set(topologies["ieee123"].three_phase_buses())
    assert {"8", "23", "60", "105", "7", "76", "108"} <= t123  # SPEC 7 site buses
    assert not {"9r", "25r", "33", "94_open"} & t123  # single-phase buses (33 is on phase A only)


# -- edges and electrical distance -------------------------------------------------------------------------
def test_edge_kinds(topologies: dict[str, FeederTopology]) -> None:
    g13 = topologies["ieee13"].graph
    kinds = {key: data["kind"] for _, _, key, data in g13.edges(keys=True, data=True)}
    assert kinds["transformer.sub"] == kinds["transformer.xfm1"] == "transformer"
    assert kinds["transformer.reg1a"] == "regulator" and kinds["line.671692"] == "switch"
    assert kinds["line.650632"] == "line"
    assert g13.number_of_edges("650", "rg60") == 3  # one per single-phase regulator
    g123 = topologies["ieee123"].graph
    switches = {key for _, _, key, data in g123.edges(keys=True, data=True) if data["kind"] == "switch"}
    assert switches == {f"line.sw{i}" for i in range(1, 9)}
    line = g13.get_edge_data("rg60", "632")["line.650632"]
    assert (line["length"], line["units"], line["phases"]) == (2000.0, "ft", 3)


def test_line_impedance_is_the_positive_sequence_series_impedance(topologies: dict[str, FeederTopology]) -> None:
    definition = load_feeder("ieee13").definition
    assert definition is not None
    code = next(c for c in definition.linecodes if c.name == "mtx601")
    r, x = code.r_matrix, code.x_matrix  # lower triangle: aa, ba, bb, ca, cb, cc
    z_self = complex(r[0] + r[2] + r[5], x[0] + x[2] + x[5]) / 3
    z_mutual = complex(r[1] + r[3] + r[4], x[1] + x[3] + x[4]) / 3
    z1 = (z_self - z_mutual) * 2000.0 / FT_PER_MI  # ohm/mi over 2000 ft
    line = topologies["ieee13"].graph.get_edge_data("rg60", "632")["line.650632"]
    assert line["r1_ohm"] == pytest.approx(z1.real, rel=1e-9)
    assert line["x1_ohm"] == pytest.approx(z1.imag, rel=1e-9)
    assert line["z1_pu"] == pytest.approx(abs(z1) / 4.16**2, rel=1e-3)  # 1 MVA base at 4.16 kV


def test_electrical_distance(topologies: dict[str, FeederTopology], tmp_path: Path) -> None:
    t13 = topologies["ieee13"]
    assert t13.electrical_distance("671", "671") == 0.0
    for weight in ("z1_pu", "z1_ohm", "r1_ohm"):
        whole = t13.electrical_distance("650", "680", weight)
        assert whole == pytest.approx(
            t13.electrical_distance("650", "632", weight) + t13.electrical_distance("632", "680", weight)
        )
        assert whole == pytest.approx(t13.electrical_distance("680", "650", weight))
        assert whole > 0
    # behind the 4.16/0.48 kV transformer a per-unit distance grows by the transformer's impedance
    xfm = t13.graph.get_edge_data("633", "634")["transformer.xfm1"]
    assert xfm["z1_pu"] == pytest.approx(math.hypot(2.0, 1.1) / 100 / 0.5)  # (X 2 %, R 2 x 0.55 %) on 500 kVA
    assert t13.electrical_distance("632", "634") == pytest.approx(t13.electrical_distance("632", "633") + xfm["z1_pu"])
    t34 = topologies["ieee34"]
    assert t34.electrical_distance("800", "834") > t34.electrical_distance("800", "850") > 0
    with pytest.raises(ValueError, match="weight must be"):
        t13.electrical_distance("650", "680", "length")  # type: ignore[arg-type]
    tiny = FeederTopology.from_engine(_tiny_engine(tmp_path))
    assert tiny.electrical_distance("src", "b", "z1_ohm") == pytest.approx(3 * math.hypot(0.1, 0.2))
    assert tiny.electrical_distance("src", "b", "r1_ohm") == pytest.approx(0.3)
    assert tiny.three_phase_buses() == ("src", "a", "b")
    assert tiny.downstream_buses("a") == {"b", "c"} and tiny.regulator_zones() == {}


# -- drawing ----------------------------------------------------------------------------------------------------
def test_plot_uses_bus_coordinates_and_highlights(topologies: dict[str, FeederTopology]) -> None:
    t13 = topologies["ieee13"]
    assert t13.has_coordinates() and t13.coordinates()["671"] == (200.0, 100.0)
    ax = plot_feeder(t13, highlight={"671": "datacenter"})
    texts = [t.get_text() for t in ax.texts]
    assert "datacenter" in texts
    assert len(ax.lines) >= t13.graph.number_of_edges()
    xs = np.concatenate([line.get_xdata() for line in ax.lines if len(line.get_xdata())])
    assert xs.min() == 0.0 and xs.max() == 400.0  # the IEEE 13 drawing coordinates
    ax34 = plot_feeder(topologies["ieee34"], highlight=["850", "834"], labels=True)
    assert {"850", "834"} <= {t.get_text() for t in ax34.texts}
    with pytest.raises(KeyError, match="cannot highlight bus 'nowhere'"):
        plot_feeder(t13, highlight=["nowhere"])


def test_plot_without_coordinates_draws_a_layered_layout(tmp_path: Path) -> None:
    tiny = FeederTopology.from_grid(SimpleNamespace(engine=_tiny_engine(tmp_path)))
    assert not tiny.has_coordinates()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    try:
        assert plot_feeder(tiny, ax=ax, highlight={"b": "site"}) is ax
        assert "site" in [t.get_text() for t in ax.texts]
    finally:
        plt.close(fig)
