"""Feeders: the project's own IEEE test-feeder definitions and user OpenDSS master files.

A bundled feeder is a folder of ``feeders/`` (see :func:`g2gsim.resources.feeders_dir`):
``feeder.toml`` (circuit, source, voltage bases, excluded buses, notes on the datacenter-
study modifications) and CSV tables, one per kind of element (``linecodes``, ``lines``,
``switches``, ``transformers``, ``regulators``, ``loads``, ``capacitors``, ``buscoords``).
:class:`FeederDefinition` validates them (errors name the file, the row and the field) and
:meth:`FeederDefinition.to_dss_commands` writes the OpenDSS commands that build the circuit
(the row models and each row's commands are in :mod:`~g2gsim.grid.feeder_tables`).

OpenDSS numbers buses and nodes in the order elements are defined, and that order fixes
the node order of every voltage vector. ``build_order`` in ``feeder.toml`` therefore says
in which order the tables' rows are emitted, so a bundled feeder reproduces the node order
of the OpenG2G feeder files it matches.

A :class:`Feeder` is what an engine compiles: a name, its OpenDSS commands and metadata
(default excluded buses, regulator controls, bus coordinates). :func:`load_feeder` makes
one from a bundled name (``"ieee13"``) or a user ``.dss`` master file (compiled by
absolute path). Datacenters, PV and storage are never part of a feeder: the grid
component attaches them.

A ``.dss`` file is code: OpenDSS runs every command in it, and a command can write files
anywhere (``Save Circuit Dir=...``) or read any file. g2gsim therefore compiles ``.dss``
files only from trusted folders: the bundled feeders, the folder of a scenario file that
names one (trusted when the file is loaded), folders named with :func:`trust_feeder_dir`
(``--feeder-dir`` on the command line) and those listed in ``G2GSIM_FEEDER_DIRS``
(separated like ``PATH``). Feeder folders of tables are data, validated row by row, and may
sit anywhere.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from g2gsim.grid.errors import FeederDefinitionError, GridError
from g2gsim.grid.feeder_tables import (
    ELEMENT_TABLES,
    ELEMENT_WRITERS,
    TABLES,
    BusCoordinate,
    BusSpec,
    CapacitorRow,
    LineCodeRow,
    LineRow,
    LoadRow,
    Name,
    Positive,
    RegulatorRow,
    Row,
    SourceSpec,
    SwitchRow,
    TransformerRow,
    bus_of,
    dss_number,
    linecode_command,
    nodes_of,
    read_table,
)
from g2gsim.resources import feeders_dir

__all__ = [
    "ELEMENT_TABLES",
    "FEEDER_DIRS_ENV",
    "TABLES",
    "BusCoordinate",
    "BusSpec",
    "CapacitorRow",
    "Feeder",
    "FeederDefinition",
    "LineCodeRow",
    "LineRow",
    "LoadRow",
    "RegulatorRow",
    "SourceSpec",
    "SwitchRow",
    "TransformerRow",
    "bundled_definition",
    "bundled_feeders",
    "bus_of",
    "check_feeder_file",
    "load_feeder",
    "nodes_of",
    "trust_feeder_dir",
    "trusted_feeder_dirs",
]

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

    def element_order(self) -> list[tuple[str, Row]]:
        """(table, row) for every element row, in the order they are defined in OpenDSS."""
        tables: dict[str, Sequence[Row]] = {t: getattr(self, t) for t in ELEMENT_TABLES}
        entries = self.build_order if self.build_order is not None else ELEMENT_TABLES
        placed: dict[tuple[str, str], str] = {}
        order: list[tuple[str, Row]] = []
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
        commands = [f"Set DefaultBaseFrequency={dss_number(self.base_frequency_hz)}", self._circuit_command()]
        commands += [linecode_command(c, self.base_frequency_hz) for c in self.linecodes]
        for table, row in self.element_order():
            commands += ELEMENT_WRITERS[table](row)
        bases = ", ".join(dss_number(v) for v in self.voltage_bases_kv)
        commands += [f"Set VoltageBases=[{bases}]", "CalcVoltageBases"]
        if self.initial_solve:
            commands.append("Solve")
        commands += [f"SetBusXY bus={c.bus} X={dss_number(c.x)} Y={dss_number(c.y)}" for c in self.buscoords]
        return commands

    def _circuit_command(self) -> str:
        s = self.source
        parts = [
            f"New Circuit.{self.name}",
            f"bus1={s.bus}",
            f"basekv={dss_number(s.base_kv)}",
            f"pu={dss_number(s.pu)}",
        ]
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
        parts += [f"{key}={dss_number(value)}" for key, value in optional.items() if value is not None]
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
        tables = {stem: read_table(folder / f"{stem}.csv", model) for stem, model in TABLES.items()}
        try:
            return cls.model_validate({**settings, **tables})
        except ValidationError as exc:
            raise FeederDefinitionError(_describe_definition_error(folder, exc)) from exc


def _unique_keys(table: str, rows: Sequence[Row]) -> None:
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


def _select(entry: str, tables: Mapping[str, Sequence[Row]]) -> tuple[str, Sequence[Row]]:
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
        """A user feeder: an OpenDSS master file in a trusted folder (:func:`check_feeder_file`),
        compiled by absolute path."""
        path = Path(master).expanduser().resolve()
        if not path.is_file():
            raise GridError(f"feeder file {path} does not exist")
        check_feeder_file(path)
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


# -- where .dss files may come from -----------------------------------------------------------------------
#: Environment variable listing more folders (separated like PATH) whose .dss files may be compiled.
FEEDER_DIRS_ENV = "G2GSIM_FEEDER_DIRS"
_trusted_dirs: list[Path] = []


def trust_feeder_dir(folder: str | os.PathLike[str]) -> Path:
    """Allow the ``.dss`` files under `folder` (and its subfolders) to be compiled in this process."""
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise GridError(f"feeder folder {path} does not exist (a folder to trust .dss files from)")
    if path not in _trusted_dirs:
        _trusted_dirs.append(path)
    return path


def trusted_feeder_dirs() -> tuple[Path, ...]:
    """The folders whose ``.dss`` files g2gsim compiles: bundled, trusted in this process, and
    those of ``G2GSIM_FEEDER_DIRS``."""
    listed = [Path(p).expanduser().resolve() for p in os.environ.get(FEEDER_DIRS_ENV, "").split(os.pathsep) if p]
    return tuple(dict.fromkeys([feeders_dir().resolve(), *_trusted_dirs, *listed]))


def check_feeder_file(master: str | os.PathLike[str]) -> Path:
    """The resolved path of a ``.dss`` file in a trusted folder; a GridError otherwise (symbolic
    links are followed first, so a link cannot lead out of a trusted folder)."""
    path = Path(master).expanduser().resolve()
    trusted = trusted_feeder_dirs()
    if not any(path.is_relative_to(folder) for folder in trusted):
        raise GridError(
            f"feeder file {path}: not in a folder g2gsim compiles .dss files from ({', '.join(map(str, trusted))}); "
            "a .dss file is code (OpenDSS runs its commands, which can read and write files): put it beside the "
            "scenario file that names it, or trust its folder with --feeder-dir (G2GSIM_FEEDER_DIRS, "
            "g2gsim.grid.feeders.trust_feeder_dir)"
        )
    return path


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
