"""The rows of a feeder folder's CSV tables, and the OpenDSS commands each row becomes.

Each table (``linecodes.csv``, ``lines.csv``, ...) has a frozen pydantic row model; names are
stored lower-case, since OpenDSS element names are case-insensitive. A number is written back
as the shortest text that reads as the same double, so OpenDSS parses exactly the value in
the table. :class:`~g2gsim.grid.feeders.FeederDefinition` assembles the tables into a feeder.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from g2gsim.grid.errors import FeederDefinitionError

__all__ = [
    "ELEMENT_TABLES",
    "ELEMENT_WRITERS",
    "TABLES",
    "BusCoordinate",
    "BusSpec",
    "CapacitorRow",
    "LineCodeRow",
    "LineRow",
    "LoadRow",
    "Name",
    "Positive",
    "RegulatorRow",
    "Row",
    "SourceSpec",
    "SwitchRow",
    "TransformerRow",
    "bus_of",
    "dss_number",
    "linecode_command",
    "nodes_of",
    "read_table",
]

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


class Row(BaseModel):
    """One row of a feeder table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @property
    def key(self) -> str:
        """What names the row in its table (and in ``build_order``)."""
        raise NotImplementedError


class _Element(Row):
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


class RegulatorRow(Row):
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


class BusCoordinate(Row):
    """Drawing coordinates of a bus (arbitrary units, as in the IEEE data)."""

    bus: Name
    x: Finite
    y: Finite

    @property
    def key(self) -> str:
        return self.bus


class SourceSpec(Row):
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
TABLES: Mapping[str, type[Row]] = MappingProxyType(
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


# -- OpenDSS command writers -----------------------------------------------------------------------------
def dss_number(value: float | int) -> str:
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
        rows.append(" ".join(dss_number(v) for v in values[i : i + n]))
        i, n = i + n, n + 1
    return "[" + " | ".join(rows) + "]"


def linecode_command(code: LineCodeRow, base_frequency_hz: float) -> str:
    parts = [
        f"New LineCode.{code.name}",
        f"nphases={code.phases}",
        f"basefreq={dss_number(base_frequency_hz)}",
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
        f"linecode={line.linecode} length={dss_number(line.length)} units={line.units}"
    ]


def _switch_commands(sw: SwitchRow) -> list[str]:
    # Switch=yes first: it resets impedances and length, which the values after it override.
    parts = [f"New Line.{sw.name}", f"phases={sw.phases}", f"bus1={sw.bus1}", f"bus2={sw.bus2}"]
    if sw.switch:
        parts.append("switch=yes")
    parts += [f"{k}={dss_number(getattr(sw, k))}" for k in ("r1", "r0", "x1", "x0", "c1", "c0")]
    if sw.length is not None:
        parts.append(f"length={dss_number(sw.length)}")
    if sw.units is not None:
        parts.append(f"units={sw.units}")
    return [" ".join(parts)]


def _transformer_commands(t: TransformerRow) -> list[str]:
    windings = [
        f"wdg={w} bus={bus} conn={conn} kv={dss_number(kv)} kva={dss_number(kva)} %r={dss_number(r)}"
        for w, bus, conn, kv, kva, r in (
            (1, t.bus1, t.conn1, t.kv1, t.kva1, t.pct_r1),
            (2, t.bus2, t.conn2, t.kv2, t.kva2, t.pct_r2),
        )
    ]
    return [f"New Transformer.{t.name} phases={t.phases} windings=2 xhl={dss_number(t.xhl)} " + " ".join(windings)]


def _regulator_commands(r: RegulatorRow) -> list[str]:
    parts = [f"New Transformer.{r.transformer}", f"phases={r.phases}", "windings=2"]
    if r.bank is not None:
        parts.append(f"bank={r.bank}")
    parts += [
        f"buses=[{r.bus1} {r.bus2}]",
        "conns=[wye wye]",
        f"kvs=[{dss_number(r.kv)} {dss_number(r.kv)}]",
        f"kvas=[{dss_number(r.kva)} {dss_number(r.kva)}]",
        f"xhl={dss_number(r.xhl)}",
    ]
    if r.pct_load_loss is not None:
        parts.append(f"%loadloss={dss_number(r.pct_load_loss)}")
    if r.ppm_antifloat is not None:
        parts.append(f"ppm_antifloat={dss_number(r.ppm_antifloat)}")
    control = (
        f"New RegControl.{r.control} transformer={r.transformer} winding={r.winding} vreg={dss_number(r.vreg)} "
        f"band={dss_number(r.band)} ptratio={dss_number(r.ptratio)} ctprim={dss_number(r.ctprim)} r={dss_number(r.r)} x={dss_number(r.x)}"
    )
    return [" ".join(parts), control]


def _load_commands(load: LoadRow) -> list[str]:
    if not load.enabled:
        return []
    command = (
        f"New Load.{load.name} bus1={load.bus} phases={load.phases} conn={load.conn} model={load.model} "
        f"kv={dss_number(load.kv)} kw={dss_number(load.kw)} kvar={dss_number(load.kvar)}"
    )
    if load.vminpu is not None:
        command += f" vminpu={dss_number(load.vminpu)}"
    return [command]


def _capacitor_commands(cap: CapacitorRow) -> list[str]:
    if not cap.enabled:
        return []
    return [
        f"New Capacitor.{cap.name} bus1={cap.bus} phases={cap.phases} kvar={dss_number(cap.kvar)} kv={dss_number(cap.kv)}"
    ]


#: Element table -> the OpenDSS commands of one of its rows.
ELEMENT_WRITERS: Mapping[str, Callable[[Any], list[str]]] = MappingProxyType(
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
def read_table(path: Path, model: type[Row]) -> list[Row]:
    """Rows of one CSV table validated by `model`; a missing file is an empty table.

    The first row that is neither blank nor a ``#`` comment is the header; empty cells take
    the field's default. Errors give the file's own line number.
    """
    if not path.is_file():
        return []
    rows: list[Row] = []
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
