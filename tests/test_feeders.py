"""Bundled feeders vs OpenG2G's reference feeders, engines, user .dss files, table validation."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from g2gsim.grid.engine import DSSEngine
from g2gsim.grid.errors import FeederDefinitionError, GridError
from g2gsim.grid.feeders import Feeder, FeederDefinition, bundled_feeders, load_feeder
from g2gsim.resources import feeders_dir

#: .dss feeders of these tests sit in their own folders and the reference folder, trusted here.
pytestmark = pytest.mark.usefixtures("trusted_feeder_dirs")

TAP_STEP = 0.00625
REFERENCE_FILES = {
    "ieee13": "ieee13/IEEE13Bus.dss",
    "ieee34": "ieee34/IEEE34Bus.dss",
    "ieee123": "ieee123/IEEE123Bus.dss",
}


#: Datacenter buses and total three-phase MW per site of each loading case.
SITES = {"ieee13": ("671",), "ieee34": ("850", "834"), "ieee123": ("8", "23", "60", "105")}
LOADINGS_MW = {"ieee13": (0.0, 1.0, 3.0, 5.0), "ieee34": (0.0, 0.5, 1.0, 2.0), "ieee123": (0.0, 0.25, 0.5, 0.8)}
#: Tap cases (regulator control -> step n, tap = 1 + 0.00625 n); None keeps the compiled taps.
TAP_CASES: dict[str, list[dict[str, int] | None]] = {
    "ieee13": [None, {"creg1a": 14, "creg1b": 6, "creg1c": 15}, {"creg1a": 16, "creg1b": 6, "creg1c": 17}],
    "ieee34": [
        None,
        {"creg1a": 12, "creg1b": 8, "creg1c": 10, "creg2a": 8, "creg2b": 8, "creg2c": 8},
        {"creg1a": 12, "creg1b": 8, "creg1c": 10, "creg2a": 10, "creg2b": 10, "creg2c": 10},
    ],
    "ieee123": [
        None,
        {"creg1a": 9, "creg2a": 5, "creg3a": 5, "creg3c": 5, "creg4a": 14, "creg4b": 1, "creg4c": 4},
        {"creg1a": 9, "creg2a": 5, "creg3a": 5, "creg3c": 5, "creg4a": 16, "creg4b": 1, "creg4c": 4},
    ],
}
SOURCE_PU = {"ieee13": 1.0, "ieee34": 1.09, "ieee123": 1.0}
PF = 0.95


# -- helpers ------------------------------------------------------------------------------------------
def compiled(feeder: str | Path) -> DSSEngine:
    engine = DSSEngine()
    engine.compile_feeder(load_feeder(feeder))
    return engine


def attach_datacenter(engine: DSSEngine, bus: str) -> list[int]:
    """Three single-phase constant-PQ wye loads at `bus` (0 kW), as the simulator attaches them."""
    engine.dss.Circuit.SetActiveBus(bus)
    kv = engine.dss.Bus.kVBase()
    names = [f"dc_{bus}_{phase}" for phase in (1, 2, 3)]
    for phase, name in zip((1, 2, 3), names):
        engine.run(f"New Load.{name} bus1={bus}.{phase} phases=1 conn=wye model=1 kv={kv} kw=0 kvar=0")
    return [engine.load_index(name) for name in names]


def set_taps(engine: DSSEngine, steps: dict[str, int]) -> None:
    """Regulator taps through the RegControls/Transformers interfaces: tap(n) = 1 + 0.00625 n."""
    dss = engine.dss
    for control, step in steps.items():
        dss.RegControls.Name(control)
        transformer, winding = dss.RegControls.Transformer(), dss.RegControls.Winding()
        dss.Transformers.Name(transformer)
        dss.Transformers.Wdg(winding)
        dss.Transformers.Tap(1.0 + TAP_STEP * step)


def reference_master(reference_dir: Path, feeder: str) -> Path:
    return reference_dir / "feeders" / REFERENCE_FILES[feeder]


# -- the bundled feeders reproduce the reference feeders --------------------------------------------------
@pytest.mark.parametrize("feeder", ["ieee13", "ieee34", "ieee123"])
@pytest.mark.parametrize("case", [0, 1, 2])
def test_every_node_voltage_matches_the_reference_feeder(reference_dir: Path, feeder: str, case: int) -> None:
    ours, ref = compiled(feeder), compiled(reference_master(reference_dir, feeder))
    engines = (ours, ref)
    assert ours.node_names() == ref.node_names()
    assert ours.bus_names() == ref.bus_names()
    taps = TAP_CASES[feeder][case]
    loads = {}
    for engine in engines:
        engine.run(f"Edit Vsource.source pu={SOURCE_PU[feeder]}")
        loads[engine] = [i for bus in SITES[feeder] for i in attach_datacenter(engine, bus)]
        if taps is not None:
            set_taps(engine, taps)
    tan_phi = math.tan(math.acos(PF))
    worst = 0.0
    for step, mw in enumerate(LOADINGS_MW[feeder]):
        kw = 1000.0 * mw / 3.0
        for engine in engines:
            for index in loads[engine]:
                engine.set_load_kw_kvar(index, kw, kw * tan_phi)
            engine.solve(float(step))
        v_ours, v_ref = ours.all_bus_mag_pu(), ref.all_bus_mag_pu()
        assert v_ours.shape == v_ref.shape == (len(ours.node_names()),)
        assert np.isfinite(v_ours).all()
        worst = max(worst, float(np.max(np.abs(v_ours - v_ref))))
    assert worst <= 1e-6, f"{feeder} case {case}: max |dV| = {worst:.3e} pu"


@pytest.mark.parametrize("feeder", ["ieee13", "ieee34", "ieee123"])
def test_elements_match_the_reference_feeder(reference_dir: Path, feeder: str) -> None:
    """Same elements, same primitive matrices, same regulator settings (for self-control runs)."""
    ours, ref = compiled(feeder), compiled(reference_master(reference_dir, feeder))
    for engine in (ours, ref):
        engine.solve(0.0)  # builds every primitive matrix
    names = ours.dss.Circuit.AllElementNames()
    assert sorted(names) == sorted(ref.dss.Circuit.AllElementNames())
    for name in names:
        yprims = []
        for engine in (ours, ref):
            engine.dss.Circuit.SetActiveElement(name)
            yprims.append(np.asarray(engine.dss.CktElement.YPrim()))
        assert np.array_equal(yprims[0], yprims[1]), name
    for control in ref.regcontrol_names():
        settings = []
        for engine in (ours, ref):
            rc = engine.dss.RegControls
            rc.Name(control)
            settings.append(
                (
                    rc.Transformer(),
                    rc.Winding(),
                    rc.ForwardVreg(),
                    rc.ForwardBand(),
                    rc.PTRatio(),
                    rc.CTPrimary(),
                    rc.ForwardR(),
                    rc.ForwardX(),
                    rc.Delay(),
                    rc.TapDelay(),
                    rc.MaxTapChange(),
                )
            )
        assert settings[0] == settings[1], control


def test_the_compiled_ieee13_has_no_datacenter_load_and_no_capacitors() -> None:
    engine = compiled("ieee13")
    dss = engine.dss
    load_buses = set()
    index = dss.Loads.First()
    while index > 0:
        dss.Circuit.SetActiveElement(f"Load.{dss.Loads.Name()}")
        load_buses.add(dss.CktElement.BusNames()[0].split(".")[0])
        index = dss.Loads.Next()
    assert "671" not in load_buses
    assert dss.Capacitors.Count() == 0
    assert dss.PVsystems.Count() == 0 and dss.Storages.Count() == 0 and dss.Generators.Count() == 0


# -- metadata ---------------------------------------------------------------------------------------------
def test_bundled_feeders_and_their_spec_metadata() -> None:
    assert set(bundled_feeders()) >= {"ieee13", "ieee34", "ieee123"}
    expected = {
        "ieee13": {"sourcebus", "650", "rg60"},
        "ieee34": {"sourcebus", "800", "802", "806", "808", "810", "812", "814", "888", "890"},
        "ieee123": {"sourcebus", "150", "150r", "149", "9r", "25r", "160r", "61s", "610", "300_open", "94_open"},
    }
    controls = {
        "ieee13": ("creg1a", "creg1b", "creg1c"),
        "ieee34": ("creg1a", "creg1b", "creg1c", "creg2a", "creg2b", "creg2c"),
        "ieee123": ("creg1a", "creg2a", "creg3a", "creg3c", "creg4a", "creg4b", "creg4c"),
    }
    for name in ("ieee13", "ieee34", "ieee123"):
        feeder = load_feeder(name)
        assert feeder.name == name and feeder.is_bundled
        assert set(feeder.excluded_buses) == expected[name]
        assert feeder.regulator_controls == controls[name]
        engine = compiled(name)
        engine.solve(0.0)
        assert engine.regcontrol_names() == list(controls[name])
        buses = set(engine.bus_names())
        assert all(name == name.lower() for name in buses)
        assert set(feeder.bus_coordinates) <= buses
        if name != "ieee123":  # the IEEE 123 data has no coordinates for its two open points
            assert set(feeder.bus_coordinates) == buses
        engine.dss.Circuit.SetActiveBus("rg60" if name == "ieee13" else "850" if name == "ieee34" else "8")
        assert engine.dss.Bus.Coorddefined()


def test_load_feeder_accepts_names_paths_folders_and_definitions(tmp_path: Path) -> None:
    bundled = load_feeder("IEEE13")
    assert load_feeder(bundled) is bundled
    folder = tmp_path / "copy13"
    shutil.copytree(feeders_dir() / "ieee13", folder)
    from_folder = load_feeder(folder)
    assert from_folder.commands == bundled.commands and from_folder.source == folder.resolve()
    assert load_feeder(bundled.definition).commands == bundled.commands  # type: ignore[arg-type]
    with pytest.raises(GridError, match=r"unknown feeder 'ieee99'.*ieee13"):
        load_feeder("ieee99")


# -- engines ------------------------------------------------------------------------------------------------
def test_several_engines_in_one_process_keep_their_own_circuits() -> None:
    def solved(feeder: str, kw: float) -> np.ndarray:
        engine = compiled(feeder)
        for index in attach_datacenter(engine, SITES[feeder][0]):
            engine.set_load_kw_kvar(index, kw, 0.3 * kw)
        engine.solve(0.0)
        return engine.all_bus_mag_pu()

    alone = {
        ("ieee13", 300.0): solved("ieee13", 300.0),
        ("ieee13", 1500.0): solved("ieee13", 1500.0),
        ("ieee34", 500.0): solved("ieee34", 500.0),
    }
    engines = {key: compiled(key[0]) for key in alone}
    indices = {key: attach_datacenter(engine, SITES[key[0]][0]) for key, engine in engines.items()}
    for key, engine in engines.items():  # interleaved: every write and solve goes to its own circuit
        for index in indices[key]:
            engine.set_load_kw_kvar(index, key[1], 0.3 * key[1])
    for engine in engines.values():
        engine.solve(0.0)
    for key, engine in engines.items():
        assert engine.feeder_name == key[0]
        np.testing.assert_array_equal(engine.all_bus_mag_pu(), alone[key])
    light, heavy = engines[("ieee13", 300.0)], engines[("ieee13", 1500.0)]
    assert light.all_bus_mag_pu().min() > heavy.all_bus_mag_pu().min()
    assert len(engines[("ieee34", 500.0)].node_names()) != len(light.node_names())


def test_compiling_never_changes_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "feeder files"
    elsewhere.mkdir()
    (elsewhere / "codes.dss").write_text("New LineCode.c1 nphases=3 r1=0.3 x1=0.6 r0=0.9 x0=1.8 units=km\n")
    (elsewhere / "master.dss").write_text(
        "Clear\nNew Circuit.rel basekv=12.47 bus1=src\nRedirect codes.dss\n"
        "New Line.l1 bus1=src bus2=b linecode=c1 length=1 units=km\n"
        "New Load.ld bus1=b phases=3 kv=12.47 kw=300 kvar=100\nSet VoltageBases=[12.47]\nCalcVoltageBases\n"
    )
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = os.getcwd()
    engine = compiled(Path("..") / "feeder files" / "master.dss")  # relative path, relative Redirect inside
    assert os.getcwd() == before
    engine.compile_feeder(load_feeder("ieee34"))
    assert os.getcwd() == before
    assert os.listdir(work) == []  # OpenDSS wrote nothing into the working directory


def test_a_user_dss_file_loads_by_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "Master.dss").write_text(
        "Clear\nNew Circuit.tiny basekv=12.47 bus1=src pu=1.02\n"
        "New Line.l1 bus1=src bus2=a phases=3 r1=0.1 x1=0.2 r0=0.3 x0=0.6 length=2 units=km\n"
        "New Load.ld bus1=a phases=3 kv=12.47 kw=900 kvar=300 model=1\n"
        "Set VoltageBases=[12.47]\nCalcVoltageBases\n"
    )
    monkeypatch.chdir(tmp_path)
    feeder = load_feeder("tiny/Master.dss")
    assert isinstance(feeder, Feeder) and not feeder.is_bundled
    assert feeder.name == "master" and feeder.source.is_absolute()
    assert feeder.commands == (f'Compile "{tmp_path.resolve() / "tiny" / "Master.dss"}"',)
    assert feeder.excluded_buses == () and feeder.regulator_controls == ()
    engine = DSSEngine()
    engine.compile_feeder(feeder)
    engine.solve(0.0)
    assert engine.node_names() == ["src.1", "src.2", "src.3", "a.1", "a.2", "a.3"]
    v = engine.all_bus_mag_pu()
    assert v[:3] == pytest.approx([1.02] * 3, abs=1e-3) and (v[3:] < v[:3]).all()
    named = Feeder.from_dss_file(tmp_path / "tiny" / "Master.dss", name="Tiny", excluded_buses=["SRC"])
    assert named.name == "tiny" and named.excluded_buses == ("src",)


def test_a_broken_dss_file_is_a_grid_error_naming_the_feeder_and_opendss(tmp_path: Path) -> None:
    master = tmp_path / "broken.dss"
    master.write_text("Clear\nNew Circuit.broken basekv=12.47 bus1=src\nNew Line.l1 bus1=src bus2=b linecode=missing\n")
    with pytest.raises(GridError, match=r"(?s)feeder 'broken'.*LineCode object \"missing\" not found") as info:
        compiled(master)
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(GridError, match="does not exist"):
        Feeder.from_dss_file(tmp_path / "nowhere.dss")


def test_run_errors_name_the_feeder_and_opendss_message() -> None:
    engine = compiled("ieee13")
    with pytest.raises(GridError, match=r"feeder 'ieee13': OpenDSS rejected 'New Line.x.*LineCode object \"nope\""):
        engine.run("New Line.x bus1=671 bus2=new linecode=nope")
    with pytest.raises(GridError, match=r"feeder 'ieee13'.*no load 'absent'"):
        engine.load_index("absent")
    with pytest.raises(
        GridError, match=r"OpenDSS engine \(no feeder compiled\): OpenDSS rejected .Frobnicate now.: \(#"
    ):
        DSSEngine().run("Frobnicate now")


def test_a_non_converging_solve_names_feeder_time_and_opendss() -> None:
    engine = compiled("ieee13")
    engine.run("New Load.huge bus1=671 phases=3 kv=4.16 kw=120000 kvar=1000 model=1 vminpu=0 vlowpu=0")
    with pytest.raises(GridError, match=r"feeder 'ieee13'.*t = 12\.5 s did not converge.*OpenDSS"):
        engine.solve(12.5)


def test_element_api_writes_equal_text_edits() -> None:
    # A text Edit re-initialises the solution while the element API does not, so the two
    # land on slightly different points within OpenDSS's convergence tolerance (1e-4).
    fast, text = compiled("ieee13"), compiled("ieee13")
    index = fast.load_index("670a")
    fast.set_load_kw_kvar(index, 250.0, 90.0)
    text.run("Edit Load.670a kw=250 kvar=90")
    for engine in (fast, text):
        engine.solve(0.0)
    np.testing.assert_allclose(fast.all_bus_mag_pu(), text.all_bus_mag_pu(), rtol=0, atol=1e-5)
    fast.dss.Loads.Idx(index)
    assert (fast.dss.Loads.kW(), fast.dss.Loads.kvar()) == (250.0, 90.0)


def test_solving_with_controls_lets_opendss_move_the_taps() -> None:
    engine = compiled("ieee34")
    set_taps(engine, {c: 0 for c in engine.regcontrol_names()})
    engine.solve(0.0)
    engine.solve(0.0, controls=True)
    engine.dss.Transformers.Name("reg1a")
    engine.dss.Transformers.Wdg(2)
    assert engine.dss.Transformers.Tap() > 1.0


# -- validation of the tables -----------------------------------------------------------------------------------
@pytest.fixture
def ieee13_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "ieee13"
    shutil.copytree(feeders_dir() / "ieee13", folder)
    return folder


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


def test_a_bad_cell_names_file_line_row_and_field(ieee13_copy: Path) -> None:
    lines = ieee13_copy / "lines.csv"
    _edit(lines, "632670,3,632.1.2.3,670.1.2.3,mtx601,667,ft", "632670,3,632.1.2.3,670.1.2.3,mtx601,-667,ft")
    number = _line_of(lines, "632670,")
    with pytest.raises(
        FeederDefinitionError,
        match=rf"ieee13/lines.csv, row at line {number} \('632670'\): field 'length'.*greater than 0.*'-667'",
    ):
        FeederDefinition.from_folder(ieee13_copy)


@pytest.mark.parametrize(
    ("table", "old", "new", "message"),
    [
        (
            "lines.csv",
            "632633,3,632.1.2.3,633.1.2.3,mtx602",
            "632633,3,632.1.2.3,633.1.2.3,mtx699",
            r"line '632633': line code 'mtx699' is not in linecodes.csv",
        ),
        (
            "lines.csv",
            "632645,2,632.3.2,645.3.2,mtx603",
            "632645,3,632.3.2,645.3.2,mtx603",
            r"3-phase line uses the 2-phase line code 'mtx603'",
        ),
        ("lines.csv", "684611,1,684.3,611.3", "684611,1,684.3.1,611.3", r"bus '684.3.1' gives 2 nodes for 1 phase"),
        (
            "linecodes.csv",
            "mtx605,1,mi,1.3292,",
            "mtx605,1,mi,1.3292 0.1,",
            r"\('mtx605'\): r_matrix of a 1-phase line code needs 1 lower-triangle values, got 2",
        ),
        (
            "linecodes.csv",
            "mtx605,1,mi,",
            "mtx605,1,furlong,",
            r"linecodes.csv, row at line \d+ \('mtx605'\): field 'units'",
        ),
        ("loads.csv", "645,645.2,1,wye,1,2.4,170,125,yes", "645,645.2,1,star,1,2.4,170,125,yes", r"field 'conn'"),
        (
            "loads.csv",
            "652,652.1,1,wye,1,2.4,128,86,yes",
            "675a,652.1,1,wye,1,2.4,128,86,yes",
            r"loads.csv: '675a' appears more than once",
        ),
        (
            "regulators.csv",
            "creg1b,reg1b",
            "creg1b,reg1a",
            r"Transformer.reg1a is defined twice \(in regulators.csv and regulators.csv\)",
        ),
        ("buscoords.csv", "680,200,0", "681,200,0", r"coordinates of buses that no element connects: \['681'\]"),
        ("transformers.csv", "xfm1,3,2,633,wye", "xfm1,3,2,633 bad,wye", r"field 'bus1'.*not a bus"),
    ],
)
def test_table_errors_are_clear(ieee13_copy: Path, table: str, old: str, new: str, message: str) -> None:
    _edit(ieee13_copy / table, old, new)
    with pytest.raises(FeederDefinitionError, match=message):
        FeederDefinition.from_folder(ieee13_copy)


def test_unknown_columns_files_and_settings_are_errors(ieee13_copy: Path, tmp_path: Path) -> None:
    caps = ieee13_copy / "capacitors.csv"
    _edit(caps, "name,bus,phases,kvar,kv,enabled", "name,bus,phases,kvar,kv,enabled,colour")
    _edit(caps, "cap1,675,3,600,4.16,no", "cap1,675,3,600,4.16,no,red")
    with pytest.raises(FeederDefinitionError, match=r"capacitors.csv, row at line \d+ \('cap1'\): field 'colour'"):
        FeederDefinition.from_folder(ieee13_copy)
    _edit(caps, "cap1,675,3,600,4.16,no,red", "cap1,675,3,600,4.16,no")
    _edit(caps, "name,bus,phases,kvar,kv,enabled,colour", "name,bus,phases,kvar,kv,enabled")
    FeederDefinition.from_folder(ieee13_copy)
    (ieee13_copy / "line.csv").write_text("name\n")
    with pytest.raises(FeederDefinitionError, match=r"unknown table files \['line.csv'\]"):
        FeederDefinition.from_folder(ieee13_copy)
    (ieee13_copy / "line.csv").unlink()
    settings = ieee13_copy / "feeder.toml"
    _edit(settings, '"lines", "switches"]', '"lines"]')
    with pytest.raises(
        FeederDefinitionError, match=r"feeder 'ieee13'.*build_order leaves out rows \['switches.csv:671692'\]"
    ):
        FeederDefinition.from_folder(ieee13_copy)
    _edit(settings, '"lines"]', '"lines", "switches", "lines[650632]"]')
    with pytest.raises(FeederDefinitionError, match=r"lines.csv row '650632' is placed twice"):
        FeederDefinition.from_folder(ieee13_copy)
    _edit(settings, ', "lines[650632]"]', "]")
    _edit(settings, "pu = 1.0001", "pu = 1.0001\nr1 = 0.1")
    with pytest.raises(FeederDefinitionError, match=r"either as mvasc3/mvasc1 or as r1/x1/r0/x0"):
        FeederDefinition.from_folder(ieee13_copy)
    with pytest.raises(FeederDefinitionError, match="has no feeder.toml"):
        FeederDefinition.from_folder(tmp_path)


def test_disabled_rows_stay_in_the_data_but_out_of_the_circuit() -> None:
    definition = load_feeder("ieee13").definition
    assert definition is not None
    removed = {load.name: load for load in definition.loads if not load.enabled}
    assert set(removed) == {"671"} and removed["671"].kw == 1155.0
    assert {c.name for c in definition.capacitors if not c.enabled} == {"cap1", "cap2"}
    commands = "\n".join(definition.to_dss_commands()).lower()
    assert "load.671 " not in commands and "capacitor." not in commands


def test_ieee34_line_lengths_are_half_the_ieee_values() -> None:
    definition = load_feeder("ieee34").definition
    assert definition is not None
    lengths = {line.name: line.length for line in definition.lines}
    # IEEE 34 node data (ft): 800-802 2580, 802-806 1730, 858-834 5830, 834-860 2020
    assert lengths["l1"] * 1000 == pytest.approx(2580 / 2)
    assert lengths["l2"] * 1000 == pytest.approx(1730 / 2)
    assert lengths["l29"] * 1000 == pytest.approx(5830 / 2)
    assert lengths["l17"] * 1000 == pytest.approx(2020 / 2)


def test_creating_an_engine_never_moves_the_working_directory(tmp_path, monkeypatch) -> None:
    from g2gsim.grid.engine import DSSEngine

    monkeypatch.chdir(tmp_path)
    engine = DSSEngine()
    assert Path.cwd() == tmp_path
    engine.compile_feeder(load_feeder("ieee13"))
    assert Path.cwd() == tmp_path
