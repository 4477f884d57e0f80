"""Feeders: the project's own IEEE test-feeder definitions and user OpenDSS master files.

A bundled feeder is a folder of ``feeders/`` (see :func:`g2gsim.resources.feeders_dir`):
``feeder.toml`` (circuit, source, voltage bases, excluded buses, notes on the datacenter-
study modifications) and CSV tables, one per kind of element (``linecodes``, ``lines``,
``switches``, ``transformers``, ``regulators``, ``loads``, ``capacitors``, ``buscoords``).
:class:`FeederDefinition` validates them (errors name the file, the row and the field) and
:meth:`FeederDefinition.to_dss_commands` writes the OpenDSS commands that build the circuit.

OpenDSS numbers buses and nodes in the order elements are defined, and that order fixes
the node order of every voltage vector. ``build_order`` in ``feeder.toml`` therefore says
in which order the tables' rows are emitted, so a bundled feeder reproduces the node order
of the OpenG2G feeder files it matches.

A :class:`Feeder` is what an engine compiles: a name, its OpenDSS commands and metadata
(default excluded buses, regulator controls, bus coordinates). :func:`load_feeder` makes
one from a bundled name (``"ieee13"``) or a user ``.dss`` master file (compiled by
absolute path). Datacenters, PV and storage are never part of a feeder: the grid
component attaches them.
"""

from __future__ import annotations

import csv
import math
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from g2gsim.grid.errors import FeederDefinitionError, GridError
from g2gsim.resources import feeders_dir

# -- field types -----------------------------------------------------------------------------------
_NAME = re.compile(r"^[a-z0-9_][a-z0-9_\-]*$")
_BUS_SPEC = re.compile(r"^[a-z0-9_][a-z0-9_\-]*(\.[0-9]+)*$")


def _lower_name(value: Any) -> Any:
    """Element names are case-insensitive in OpenDSS: store them lower-case."""
    return value.strip().lower() if isinstance(value, str) else value


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a valid element name (letters, digits, '_' and '-')")
    return value


def _check_bus_spec(value: str) -> str:
    if not _BUS_SPEC.match(value):
        raise ValueError(f"{value!r} is not a bus, optionally with nodes ('671', '671.1.2.3')")
    return value


def _split_numbers(value: Any) -> Any:
    """A matrix cell: whitespace-separated numbers, lower triangle row by row."""
    if isinstance(value, str):
        return tuple(float(x) for x in value.replace("|", " ").split())
    return value


Name = Annotated[str, BeforeValidator(_lower_name), AfterValidator(_check_name)]
BusSpec = Annotated[str, BeforeValidator(_lower_name), AfterValidator(_check_bus_spec)]
Phases = Annotated[int, Field(ge=1, le=3)]
Positive = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
LowerTriangle = Annotated[tuple[float, ...], BeforeValidator(_split_numbers)]
LengthUnit = Annotated[Literal["mi", "kft", "km", "m", "ft", "in", "cm", "mm"], BeforeValidator(_lower_name)]
Connection = Annotated[Literal["wye", "delta"], BeforeValidator(_lower_name)]


def bus_of(spec: str) -> str:
    """Bus name of a bus spec: ``"671.1.2.3"`` -> ``"671"``."""
    return spec.partition(".")[0]


def nodes_of(spec: str) -> tuple[int, ...]:
    """Nodes of a bus spec: ``"671.1.3"`` -> (1, 3); none given -> ()."""
    _, _, nodes = spec.partition(".")
    return tuple(int(n) for n in nodes.split(".")) if nodes else ()


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @property
    def key(self) -> str:
        """What names the row in its table (and in ``build_order``)."""
        raise NotImplementedError


class _Element(_Row):
    """A table row that becomes one OpenDSS element, named by `name`."""

    name: Name

    @property
    def key(self) -> str:
        return self.name


# -- table rows ------------------------------------------------------------------------------------
class LineCodeRow(_Element):
    """Impedance per unit length of a line type: lower-triangle phase matrices.

    R and X in ohm per `units`, C in nF per `units` (OpenDSS's LineCode matrices); no C
    matrix means OpenDSS's default capacitance.
    """

    phases: Phases
    units: LengthUnit
    r_matrix: LowerTriangle
    x_matrix: LowerTriangle
    c_matrix: LowerTriangle | None = None

    @model_validator(mode="after")
    def _matrix_sizes(self) -> LineCodeRow:
        size = self.phases * (self.phases + 1) // 2
        for label in ("r_matrix", "x_matrix", "c_matrix"):
            values = getattr(self, label)
            if values is not None and len(values) != size:
                raise ValueError(
                    f"{label} of a {self.phases}-phase line code needs {size} lower-triangle values, got {len(values)}"
                )
            if values is not None and not all(math.isfinite(v) for v in values):
                raise ValueError(f"{label} has non-finite values")
        return self


class LineRow(_Element):
    """A line segment between two buses, typed by a line code."""

    phases: Phases
    bus1: BusSpec
    bus2: BusSpec
    linecode: Name
    length: Positive
    units: LengthUnit


class SwitchRow(_Element):
    """A switch or very short line given by sequence impedances per unit length.

    `switch` marks it as an OpenDSS switch (``Switch=yes``: 1 m-ohm-class impedance, shown
    as a switch by topology); r/x in ohm and c in nF per unit length; `length` without
    `units` is in OpenDSS's unitless length.
    """

    phases: Phases
    bus1: BusSpec
    bus2: BusSpec
    switch: bool = False
    r1: NonNegative
    x1: Finite
    r0: NonNegative
    x0: Finite
    c1: NonNegative = 0.0
    c0: NonNegative = 0.0
    length: Positive | None = None
    units: LengthUnit | None = None


class TransformerRow(_Element):
    """A two-winding power transformer (kV line-to-line for 3-phase units, kVA of the unit)."""

    phases: Phases
    xhl: Positive = Field(description="leakage reactance, % on the winding-1 kVA base")
    bus1: BusSpec
    conn1: Connection
    kv1: Positive
    kva1: Positive
    pct_r1: NonNegative
    bus2: BusSpec
    conn2: Connection
    kv2: Positive
    kva2: Positive
    pct_r2: NonNegative


class RegulatorRow(_Row):
    """A step-voltage regulator: a wye-wye regulating transformer and its RegControl.

    The transformer has equal windings (`kv`, `kva`); the control settings follow OpenDSS's
    RegControl (vreg and band in volts on the PT secondary, R and X of the line-drop
    compensator in volts). Taps are moved by command; the control only acts when the grid
    lets OpenDSS control its regulators.
    """

    control: Name
    transformer: Name
    bank: Name | None = None
    phases: Phases
    bus1: BusSpec
    bus2: BusSpec
    kv: Positive
    kva: Positive
    xhl: Positive
    pct_load_loss: NonNegative | None = None
    ppm_antifloat: NonNegative | None = None
    winding: Annotated[int, Field(ge=1, le=2)] = 2
    vreg: Positive
    band: Positive
    ptratio: Positive
    ctprim: Positive
    r: Finite = 0.0
    x: Finite = 0.0

    @property
    def key(self) -> str:
        return self.control


class LoadRow(_Element):
    """A spot load (kV line-to-line for delta or 3-phase loads, phase voltage for wye 1-phase).

    `model` is OpenDSS's load model (1 constant PQ, 2 constant Z, 5 constant I, ...);
    `enabled` = no keeps a load of the original IEEE data in the table but out of the circuit.
    """

    bus: BusSpec
    phases: Phases
    conn: Connection
    model: Annotated[int, Field(ge=1, le=8)]
    kv: Positive
    kw: NonNegative
    kvar: Finite
    vminpu: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None
    enabled: bool = True


class CapacitorRow(_Element):
    """A shunt capacitor bank (`enabled` = no keeps it in the data but out of the circuit)."""

    bus: BusSpec
    phases: Phases
    kvar: Positive
    kv: Positive
    enabled: bool = True


class BusCoordinate(_Row):
    """Drawing coordinates of a bus (arbitrary units, as in the IEEE data)."""

    bus: Name
    x: Finite
    y: Finite

    @property
    def key(self) -> str:
        return self.bus


class SourceSpec(_Row):
    """The substation source (OpenDSS Vsource ``source``): either short-circuit MVA or
    sequence impedances in ohm; unset fields keep OpenDSS's defaults.
    """

    bus: Name = "sourcebus"
    base_kv: Positive
    pu: Positive = 1.0
    angle_deg: Finite | None = None
    phases: Phases | None = None
    mvasc3: Positive | None = None
    mvasc1: Positive | None = None
    r1: NonNegative | None = None
    x1: NonNegative | None = None
    r0: NonNegative | None = None
    x0: NonNegative | None = None

    @model_validator(mode="after")
    def _one_impedance_form(self) -> SourceSpec:
        by_mva = self.mvasc3 is not None or self.mvasc1 is not None
        by_ohm = any(v is not None for v in (self.r1, self.x1, self.r0, self.x0))
        if by_mva and by_ohm:
            raise ValueError("give the source strength either as mvasc3/mvasc1 or as r1/x1/r0/x0, not both")
        return self


#: Table file stem (``lines`` for ``lines.csv``) -> model of one row.
TABLES: Mapping[str, type[_Row]] = MappingProxyType(
    {
        "linecodes": LineCodeRow,
        "lines": LineRow,
        "switches": SwitchRow,
        "transformers": TransformerRow,
        "regulators": RegulatorRow,
        "loads": LoadRow,
        "capacitors": CapacitorRow,
        "buscoords": BusCoordinate,
    }
)
#: Tables whose rows become circuit elements (their order matters, see ``build_order``).
ELEMENT_TABLES = ("transformers", "regulators", "lines", "switches", "capacitors", "loads")
_BUILD_ENTRY = re.compile(r"^(?P<table>[a-z]+)(\[(?P<first>[^\]:]+)(:(?P<last>[^\]]+))?\])?$")


# -- the definition ----------------------------------------------------------------------------------
class FeederDefinition(BaseModel):
    """A validated, immutable feeder: settings from ``feeder.toml`` plus its element tables."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    title: str = ""
    description: str = ""
    modifications: tuple[str, ...] = ()
    base_frequency_hz: Positive = 60.0
    voltage_bases_kv: tuple[Positive, ...] = Field(min_length=1)
    source: SourceSpec
    excluded_buses: tuple[Name, ...] = ()
    initial_solve: bool = Field(
        default=False, description="solve once at the end of the compile (OpenDSS's static control mode moves taps)"
    )
    build_order: tuple[str, ...] | None = None
    linecodes: tuple[LineCodeRow, ...] = ()
    lines: tuple[LineRow, ...] = ()
    switches: tuple[SwitchRow, ...] = ()
    transformers: tuple[TransformerRow, ...] = ()
    regulators: tuple[RegulatorRow, ...] = ()
    loads: tuple[LoadRow, ...] = ()
    capacitors: tuple[CapacitorRow, ...] = ()
    buscoords: tuple[BusCoordinate, ...] = ()

    # -- cross-table checks ------------------------------------------------------------------------
    @model_validator(mode="after")
    def _consistent(self) -> FeederDefinition:
        for table in ("linecodes", *ELEMENT_TABLES):
            _unique_keys(table, getattr(self, table))
        _unique_across("Line", {"lines": self.lines, "switches": self.switches})
        _unique_across(
            "Transformer",
            {
                "transformers": [t.name for t in self.transformers],
                "regulators": [r.transformer for r in self.regulators],
            },
        )
        self._check_linecodes()
        self._check_nodes()
        # excluded buses may be absent (a shared list such as SPEC 7's names "sourcebus" for
        # every feeder); coordinates of a bus that does not exist are a typo.
        unknown = sorted({c.bus for c in self.buscoords} - set(self.buses()))
        if unknown:
            raise ValueError(f"buscoords.csv gives coordinates of buses that no element connects: {unknown}")
        _unique_keys("buscoords", self.buscoords)
        self.element_order()  # validates build_order
        return self

    def _check_linecodes(self) -> None:
        codes = {c.name: c for c in self.linecodes}
        for line in self.lines:
            code = codes.get(line.linecode)
            if code is None:
                raise ValueError(f"lines.csv, line {line.name!r}: line code {line.linecode!r} is not in linecodes.csv")
            if code.phases != line.phases:
                raise ValueError(
                    f"lines.csv, line {line.name!r}: {line.phases}-phase line uses the {code.phases}-phase line code {code.name!r}"
                )

    def _check_nodes(self) -> None:
        two_terminal: list[tuple[str, str, int, tuple[str, ...]]] = [
            ("lines.csv", r.name, r.phases, (r.bus1, r.bus2)) for r in self.lines
        ]
        two_terminal += [("switches.csv", r.name, r.phases, (r.bus1, r.bus2)) for r in self.switches]
        two_terminal += [("regulators.csv", r.control, r.phases, (r.bus1, r.bus2)) for r in self.regulators]
        for table, name, phases, specs in two_terminal:
            for spec in specs:
                nodes = [n for n in nodes_of(spec) if n != 0]
                if nodes and len(nodes) != phases:
                    raise ValueError(f"{table}, {name!r}: bus {spec!r} gives {len(nodes)} nodes for {phases} phase(s)")

    # -- derived views -------------------------------------------------------------------------------
    def buses(self) -> tuple[str, ...]:
        """Every bus the circuit will have, in OpenDSS's order (order of first connection)."""
        seen: dict[str, None] = {self.source.bus: None}
        for table, row in self.element_order():
            for spec in _row_buses(table, row):
                seen.setdefault(bus_of(spec), None)
        return tuple(seen)

    @property
    def regulator_controls(self) -> tuple[str, ...]:
        """Regulator-control names, in table order."""
        return tuple(r.control for r in self.regulators)

    @property
    def bus_coordinates(self) -> Mapping[str, tuple[float, float]]:
        """Bus -> (x, y) drawing coordinates."""
        return MappingProxyType({c.bus: (c.x, c.y) for c in self.buscoords})

    def element_order(self) -> list[tuple[str, _Row]]:
        """(table, row) for every element row, in the order they are defined in OpenDSS."""
        tables: dict[str, Sequence[_Row]] = {t: getattr(self, t) for t in ELEMENT_TABLES}
        entries = self.build_order if self.build_order is not None else ELEMENT_TABLES
        placed: dict[tuple[str, str], str] = {}
        order: list[tuple[str, _Row]] = []
        for entry in entries:
            table, rows = _select(entry, tables)
            for row in rows:
                where = (table, row.key)
                if where in placed:
                    raise ValueError(
                        f"build_order: {table}.csv row {row.key!r} is placed twice ({placed[where]!r} and {entry!r})"
                    )
                placed[where] = entry
                order.append((table, row))
        missing = [f"{t}.csv:{r.key}" for t in ELEMENT_TABLES for r in tables[t] if (t, r.key) not in placed]
        if missing:
            raise ValueError(f"build_order leaves out rows {missing}")
        return order

    # -- OpenDSS ------------------------------------------------------------------------------------
    def to_dss_commands(self) -> list[str]:
        """The OpenDSS commands that build this feeder (after a ``Clear``)."""
        commands = [f"Set DefaultBaseFrequency={_num(self.base_frequency_hz)}", self._circuit_command()]
        commands += [_linecode_command(c, self.base_frequency_hz) for c in self.linecodes]
        for table, row in self.element_order():
            commands += _ELEMENT_WRITERS[table](row)
        bases = ", ".join(_num(v) for v in self.voltage_bases_kv)
        commands += [f"Set VoltageBases=[{bases}]", "CalcVoltageBases"]
        if self.initial_solve:
            commands.append("Solve")
        commands += [f"SetBusXY bus={c.bus} X={_num(c.x)} Y={_num(c.y)}" for c in self.buscoords]
        return commands

    def _circuit_command(self) -> str:
        s = self.source
        parts = [f"New Circuit.{self.name}", f"bus1={s.bus}", f"basekv={_num(s.base_kv)}", f"pu={_num(s.pu)}"]
        optional = {
            "angle": s.angle_deg,
            "phases": s.phases,
            "mvasc3": s.mvasc3,
            "mvasc1": s.mvasc1,
            "r1": s.r1,
            "x1": s.x1,
            "r0": s.r0,
            "x0": s.x0,
        }
        parts += [f"{key}={_num(value)}" for key, value in optional.items() if value is not None]
        return " ".join(parts)

    # -- files ----------------------------------------------------------------------------------------
    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str]) -> FeederDefinition:
        """Read and validate ``feeder.toml`` and the CSV tables of a feeder folder."""
        folder = Path(folder).resolve()
        settings_file = folder / "feeder.toml"
        if not settings_file.is_file():
            raise FeederDefinitionError(f"{folder} is not a feeder folder: it has no feeder.toml")
        try:
            settings = tomllib.loads(settings_file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise FeederDefinitionError(f"{settings_file}: not valid TOML: {exc}") from exc
        clashes = sorted(set(settings) & set(TABLES))
        if clashes:
            raise FeederDefinitionError(f"{settings_file}: tables {clashes} belong in CSV files, not in feeder.toml")
        stray = sorted(p.name for p in folder.glob("*.csv") if p.stem not in TABLES)
        if stray:
            raise FeederDefinitionError(f"{folder}: unknown table files {stray}; known tables: {sorted(TABLES)}")
        tables = {stem: _read_table(folder / f"{stem}.csv", model) for stem, model in TABLES.items()}
        try:
            return cls.model_validate({**settings, **tables})
        except ValidationError as exc:
            raise FeederDefinitionError(_describe_definition_error(folder, exc)) from exc


def _unique_keys(table: str, rows: Sequence[_Row]) -> None:
    seen: set[str] = set()
    for row in rows:
        if row.key in seen:
            raise ValueError(f"{table}.csv: {row.key!r} appears more than once")
        seen.add(row.key)


def _unique_across(kind: str, tables: Mapping[str, Sequence[Any]]) -> None:
    """Names that become the same OpenDSS class must not collide across tables."""
    owner: dict[str, str] = {}
    for table, rows in tables.items():
        for row in rows:
            name = row if isinstance(row, str) else row.name
            if name in owner:
                raise ValueError(f"{kind}.{name} is defined twice (in {owner[name]}.csv and {table}.csv)")
            owner[name] = table


def _select(entry: str, tables: Mapping[str, Sequence[_Row]]) -> tuple[str, Sequence[_Row]]:
    """Rows named by one build_order entry: ``table``, ``table[name]`` or ``table[first:last]``."""
    match = _BUILD_ENTRY.match(entry.strip().lower())
    if match is None or match["table"] not in tables:
        raise ValueError(
            f"build_order entry {entry!r} is not 'table', 'table[name]' or 'table[first:last]' with a table in {list(tables)}"
        )
    table = match["table"]
    rows = tables[table]
    if match["first"] is None:
        return table, rows
    keys = [r.key for r in rows]
    first, last = match["first"], match["last"] or match["first"]
    for k in (first, last):
        if k not in keys:
            raise ValueError(f"build_order entry {entry!r}: {table}.csv has no row {k!r}")
    i, j = keys.index(first), keys.index(last)
    if j < i:
        raise ValueError(f"build_order entry {entry!r}: {last!r} comes before {first!r} in {table}.csv")
    return table, rows[i : j + 1]


def _row_buses(table: str, row: Any) -> tuple[str, ...]:
    if table in ("loads", "capacitors"):
        return (row.bus,) if row.enabled else ()
    return (row.bus1, row.bus2)


# -- OpenDSS command writers -----------------------------------------------------------------------------
def _num(value: float | int) -> str:
    """Shortest text that reads back as the same double (OpenDSS parses it identically)."""
    if isinstance(value, bool):
        raise TypeError("a number was expected")
    if isinstance(value, int):
        return str(value)
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _matrix(values: Sequence[float]) -> str:
    """Lower triangle as OpenDSS matrix text: ``[a | b c | d e f]``."""
    rows, i, n = [], 0, 1
    while i < len(values):
        rows.append(" ".join(_num(v) for v in values[i : i + n]))
        i, n = i + n, n + 1
    return "[" + " | ".join(rows) + "]"


def _linecode_command(code: LineCodeRow, base_frequency_hz: float) -> str:
    parts = [
        f"New LineCode.{code.name}",
        f"nphases={code.phases}",
        f"basefreq={_num(base_frequency_hz)}",
        f"units={code.units}",
        f"rmatrix={_matrix(code.r_matrix)}",
        f"xmatrix={_matrix(code.x_matrix)}",
    ]
    if code.c_matrix is not None:
        parts.append(f"cmatrix={_matrix(code.c_matrix)}")
    return " ".join(parts)


def _line_commands(line: LineRow) -> list[str]:
    return [
        f"New Line.{line.name} phases={line.phases} bus1={line.bus1} bus2={line.bus2} "
        f"linecode={line.linecode} length={_num(line.length)} units={line.units}"
    ]


def _switch_commands(sw: SwitchRow) -> list[str]:
    # Switch=yes first: it resets impedances and length, which the values after it override.
    parts = [f"New Line.{sw.name}", f"phases={sw.phases}", f"bus1={sw.bus1}", f"bus2={sw.bus2}"]
    if sw.switch:
        parts.append("switch=yes")
    parts += [f"{k}={_num(getattr(sw, k))}" for k in ("r1", "r0", "x1", "x0", "c1", "c0")]
    if sw.length is not None:
        parts.append(f"length={_num(sw.length)}")
    if sw.units is not None:
        parts.append(f"units={sw.units}")
    return [" ".join(parts)]


def _transformer_commands(t: TransformerRow) -> list[str]:
    windings = [
        f"wdg={w} bus={bus} conn={conn} kv={_num(kv)} kva={_num(kva)} %r={_num(r)}"
        for w, bus, conn, kv, kva, r in (
            (1, t.bus1, t.conn1, t.kv1, t.kva1, t.pct_r1),
            (2, t.bus2, t.conn2, t.kv2, t.kva2, t.pct_r2),
        )
    ]
    return [f"New Transformer.{t.name} phases={t.phases} windings=2 xhl={_num(t.xhl)} " + " ".join(windings)]


def _regulator_commands(r: RegulatorRow) -> list[str]:
    parts = [f"New Transformer.{r.transformer}", f"phases={r.phases}", "windings=2"]
    if r.bank is not None:
        parts.append(f"bank={r.bank}")
    parts += [
        f"buses=[{r.bus1} {r.bus2}]",
        "conns=[wye wye]",
        f"kvs=[{_num(r.kv)} {_num(r.kv)}]",
        f"kvas=[{_num(r.kva)} {_num(r.kva)}]",
        f"xhl={_num(r.xhl)}",
    ]
    if r.pct_load_loss is not None:
        parts.append(f"%loadloss={_num(r.pct_load_loss)}")
    if r.ppm_antifloat is not None:
        parts.append(f"ppm_antifloat={_num(r.ppm_antifloat)}")
    control = (
        f"New RegControl.{r.control} transformer={r.transformer} winding={r.winding} vreg={_num(r.vreg)} "
        f"band={_num(r.band)} ptratio={_num(r.ptratio)} ctprim={_num(r.ctprim)} r={_num(r.r)} x={_num(r.x)}"
    )
    return [" ".join(parts), control]


def _load_commands(load: LoadRow) -> list[str]:
    if not load.enabled:
        return []
    command = (
        f"New Load.{load.name} bus1={load.bus} phases={load.phases} conn={load.conn} model={load.model} "
        f"kv={_num(load.kv)} kw={_num(load.kw)} kvar={_num(load.kvar)}"
    )
    if load.vminpu is not None:
        command += f" vminpu={_num(load.vminpu)}"
    return [command]


def _capacitor_commands(cap: CapacitorRow) -> list[str]:
    if not cap.enabled:
        return []
    return [f"New Capacitor.{cap.name} bus1={cap.bus} phases={cap.phases} kvar={_num(cap.kvar)} kv={_num(cap.kv)}"]


_ELEMENT_WRITERS: Mapping[str, Any] = MappingProxyType(
    {
        "lines": _line_commands,
        "switches": _switch_commands,
        "transformers": _transformer_commands,
        "regulators": _regulator_commands,
        "loads": _load_commands,
        "capacitors": _capacitor_commands,
    }
)


# -- reading tables --------------------------------------------------------------------------------------
def _read_table(path: Path, model: type[_Row]) -> list[_Row]:
    """Rows of one CSV table validated by `model`; a missing file is an empty table.

    The first row that is neither blank nor a ``#`` comment is the header; empty cells take
    the field's default. Errors give the file's own line number.
    """
    if not path.is_file():
        return []
    rows: list[_Row] = []
    header: list[str] | None = None
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        for record in reader:
            if not any(cell.strip() for cell in record) or record[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [cell.strip() for cell in record]
                continue
            number = reader.line_num
            if len(record) > len(header):
                raise FeederDefinitionError(
                    f"{path.parent.name}/{path.name}, line {number}: {len(record)} cells for {len(header)} columns {header}"
                )
            cells = {k: v.strip() for k, v in zip(header, record) if v.strip() != ""}
            try:
                rows.append(model.model_validate(cells))
            except ValidationError as exc:
                raise FeederDefinitionError(_describe_row_error(path, number, cells, exc)) from exc
    return rows


def _describe_row_error(path: Path, line: int, cells: Mapping[str, str], exc: ValidationError) -> str:
    key = cells.get("name") or cells.get("control") or cells.get("bus") or "?"
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if not where:  # a check across the row's fields
            problems.append(message)
            continue
        got = f" (got {error['input']!r})" if where in cells else ""
        problems.append(f"field {where!r}: {message}{got}")
    return f"{path.parent.name}/{path.name}, row at line {line} ({key!r}): " + "; ".join(problems)


def _describe_definition_error(folder: Path, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        prefix = f"feeder.toml field {where!r}: " if where else ""
        problems.append(prefix + str(error["msg"]).removeprefix("Value error, "))
    return f"feeder {folder.name!r} ({folder}): " + "; ".join(problems)


# -- feeders as engines see them --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Feeder:
    """A feeder ready to compile: its OpenDSS commands and the metadata the simulator needs.

    `excluded_buses` are left out of voltage vectors and metrics by default (substation
    buses); `regulator_controls` and `bus_coordinates` are known up front for bundled
    feeders and empty for user ``.dss`` files (read them from the compiled circuit).
    """

    name: str
    source: Path | None  # the feeder folder or master file; None for an in-memory definition
    commands: tuple[str, ...]
    excluded_buses: tuple[str, ...] = ()
    regulator_controls: tuple[str, ...] = ()
    bus_coordinates: Mapping[str, tuple[float, float]] = field(default_factory=lambda: MappingProxyType({}))
    definition: FeederDefinition | None = None

    @classmethod
    def from_definition(cls, definition: FeederDefinition, source: Path | None = None) -> Feeder:
        """A feeder built from the project's own tables."""
        return cls(
            name=definition.name,
            source=source,
            commands=tuple(definition.to_dss_commands()),
            excluded_buses=definition.excluded_buses,
            regulator_controls=definition.regulator_controls,
            bus_coordinates=definition.bus_coordinates,
            definition=definition,
        )

    @classmethod
    def from_dss_file(
        cls, master: str | os.PathLike[str], *, name: str | None = None, excluded_buses: Iterable[str] = ()
    ) -> Feeder:
        """A user feeder: an OpenDSS master file, compiled by absolute path."""
        path = Path(master).expanduser().resolve()
        if not path.is_file():
            raise GridError(f"feeder file {path} does not exist")
        text = str(path)
        if '"' in text:
            raise GridError(f"feeder file {path}: OpenDSS cannot compile a path containing '\"'")
        return cls(
            name=(name or path.stem).lower(),
            source=path,
            commands=(f'Compile "{text}"',),
            excluded_buses=tuple(b.lower() for b in excluded_buses),
        )

    @property
    def is_bundled(self) -> bool:
        """True for a feeder built from tables, False for a user ``.dss`` file."""
        return self.definition is not None


def bundled_feeders() -> tuple[str, ...]:
    """Names of the feeders shipped with g2gsim."""
    return tuple(sorted(p.parent.name for p in feeders_dir().glob("*/feeder.toml")))


@cache
def bundled_definition(name: str) -> FeederDefinition:
    """The validated definition of a bundled feeder (read once per process)."""
    folder = feeders_dir() / name.lower()
    if not (folder / "feeder.toml").is_file():
        raise KeyError(f"no bundled feeder {name!r}; bundled feeders: {list(bundled_feeders())}")
    definition = FeederDefinition.from_folder(folder)
    if definition.name != name.lower():
        raise FeederDefinitionError(f"{folder}/feeder.toml names the feeder {definition.name!r}, not {name.lower()!r}")
    return definition


def load_feeder(source: str | os.PathLike[str] | FeederDefinition | Feeder) -> Feeder:
    """A feeder from a bundled name (``"ieee13"``), a ``.dss`` master file, a feeder folder
    (``feeder.toml`` and tables) or a definition.
    """
    if isinstance(source, Feeder):
        return source
    if isinstance(source, FeederDefinition):
        return Feeder.from_definition(source)
    if isinstance(source, str) and source.lower() in bundled_feeders():
        name = source.lower()
        return Feeder.from_definition(bundled_definition(name), feeders_dir() / name)
    path = Path(source).expanduser()
    if path.is_dir():
        folder = path.resolve()
        return Feeder.from_definition(FeederDefinition.from_folder(folder), folder)
    if path.is_file():
        return Feeder.from_dss_file(path)
    raise GridError(
        f"unknown feeder {str(source)!r}: neither a bundled feeder {list(bundled_feeders())}, "
        f"nor an existing .dss file or feeder folder"
    )
