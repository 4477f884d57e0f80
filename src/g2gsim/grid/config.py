"""What an OpenDSS grid is made of: feeder, attachments, profiles and storage (SPEC 4.1, 4.2, 7).

Every object here is a frozen pydantic model: validated once, immutable, serialisable.
Power conventions:

- g2gsim's API takes TOTAL three-phase kW for generators and external loads and splits it
  equally over the phases. OpenG2G's ``power_kw`` is per phase, so an OpenG2G value is one
  third of the g2gsim value; :func:`from_openg2g_per_phase` converts a profile (x3).
- Datacenter power comes per phase from the datacenter's state (W); the attachment only
  says where and how it connects.
- A power factor is a lagging/unity cos(phi) in (0, 1]; reactive power is kW * tan(acos(pf)),
  with pf clamped to [1e-6, 0.999999] as OpenG2G does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from g2gsim.kernel.links import Seconds
from g2gsim.kernel.time import as_period

#: Ratio change of one step of a 32-step +-10 % voltage regulator (5/8 %).
TAP_STEP_PU = 0.00625

#: Names that may appear inside OpenDSS commands unquoted.
_DSS_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def tap_pu(step: int) -> float:
    """Tap ratio (pu) of regulator step `step`: 1 + 0.00625 n (n in [-16, 16] for +-10 %)."""
    if isinstance(step, bool) or not isinstance(step, int | np.integer):
        raise TypeError(f"a tap step is a whole number, got {step!r}")
    return 1.0 + int(step) * TAP_STEP_PU


def clamp_power_factor(pf: float) -> float:
    """Power factor clamped to [1e-6, 0.999999], so tan(acos(pf)) stays finite (as OpenG2G)."""
    return max(min(float(pf), 0.999999), 1e-6)


def tan_phi(pf: float) -> float:
    """kvar per kW of a lagging power factor."""
    return math.tan(math.acos(clamp_power_factor(pf)))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


PowerFactor = Annotated[float, Field(gt=0.0, le=1.0, description="cos(phi) in (0, 1]")]


# -- synthetic shapes (SPEC 7) ------------------------------------------------------------
def smooth_bump(t: np.ndarray, center: float, half_width: float) -> np.ndarray:
    """(1 - ((t - c)/w)^2)^2 inside |t - c| < w, else 0: a smooth bump of height 1."""
    x = np.abs(t - center) / half_width
    return np.where(x < 1.0, (1.0 - x * x) ** 2, 0.0)


def irregular_fluctuation(t: np.ndarray, seed: float) -> np.ndarray:
    """1 + five incommensurate sinusoids (about +-15 %), phase-shifted by `seed`."""
    two_pi = 2.0 * math.pi
    return (
        1.0
        + 0.06 * np.sin(two_pi * t / 173.0 + seed)
        + 0.05 * np.sin(two_pi * t / 97.3 + seed * 2.3)
        + 0.04 * np.sin(two_pi * t / 251.7 + seed * 0.7)
        + 0.03 * np.sin(two_pi * t / 41.9 + seed * 4.1)
        + 0.02 * np.sin(two_pi * t / 317.3 + seed * 1.9)
    )


def _pv_shape(t: np.ndarray, profile: int) -> np.ndarray:
    """Unit-peak synthetic PV shape of SPEC 7 (trend x cloud dips x fluctuation)."""
    if profile == 0:
        trend = 0.85 - 0.30 * (t / 3600.0)
        cloud = 1.0 - 0.55 * smooth_bump(t, 600, 120) - 0.40 * smooth_bump(t, 2100, 180)
        seed = 0.3
    elif profile == 1:
        trend = 0.55 + 0.40 * smooth_bump(t, 1200, 900)
        cloud = 1.0 - 0.60 * smooth_bump(t, 1680, 240) - 0.25 * smooth_bump(t, 2400, 150)
        seed = 2.1
    else:
        trend = 0.30 + 0.65 * np.minimum(1.0, t / 900.0)
        cloud = 1.0 - 0.70 * smooth_bump(t, 2700, 300) - 0.30 * smooth_bump(t, 1200, 100)
        seed = 2.0 + 2 * 3.7  # the reference's per-site seed formula (9.4)
    return trend * np.maximum(cloud, 0.05) * irregular_fluctuation(t, seed)


def _load_shape(t: np.ndarray, profile: int) -> np.ndarray:
    """Unit-peak synthetic load shape k of SPEC 7 (bumps x one sinusoidal ripple)."""
    b = smooth_bump
    if profile == 0:
        shape = 0.15 + 0.85 * b(t, 2280, 1400) + 0.20 * b(t, 2280, 180)
    elif profile == 1:
        shape = 0.10 + 0.50 * b(t, 1500, 600) + 0.80 * b(t, 2880, 500)
    elif profile == 2:
        shape = 0.80 - 0.55 * b(t, 1800, 1200) + 0.70 * b(t, 2520, 400)
    elif profile == 3:
        shape = 0.10 + 0.90 * b(t, 3120, 800)
    else:
        shape = 0.10 + 0.60 * b(t, 1080, 300) + 0.75 * b(t, 2100, 350) + 0.90 * b(t, 3300, 300)
    ripple = 1.0 + 0.06 * np.sin(2.0 * math.pi * t / (130.0 + 37 * profile) + 1.4 * profile)
    return shape * ripple


def _times(t: Any) -> np.ndarray:
    return np.asarray(t, dtype=float)


# -- profiles -------------------------------------------------------------------------------
class ConstantProfile(_Frozen):
    """The same TOTAL three-phase power at every time."""

    kind: Literal["constant"] = "constant"
    kw: float = Field(description="total three-phase kW")

    def power_kw(self, t: np.ndarray) -> np.ndarray:
        """Total kW at each time in `t` (s)."""
        return np.full(_times(t).shape, float(self.kw))

    def scaled(self, factor: float) -> ConstantProfile:
        """The same profile with power multiplied by `factor`."""
        return self.model_copy(update={"kw": self.kw * factor})


class CsvProfile(_Frozen):
    """TOTAL three-phase kW interpolated linearly from a CSV time series (held at the ends).

    Columns are chosen by name; by default the first column is time (s) and the second is
    power (kW). `scale` multiplies the file's values (3.0 reads an OpenG2G per-phase file).
    """

    kind: Literal["csv"] = "csv"
    path: Path
    time_column: str | None = Field(default=None, description="time column (s); default: the first")
    power_column: str | None = Field(default=None, description="power column (kW); default: the second")
    scale: float = Field(default=1.0, description="multiplier applied to the file's power values")

    _series: tuple[np.ndarray, np.ndarray] | None = PrivateAttr(default=None)

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return Path(value).expanduser().resolve()

    @model_validator(mode="after")
    def _readable(self) -> CsvProfile:
        self._series = self._read()
        return self

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        try:
            frame = pd.read_csv(self.path)
        except FileNotFoundError:
            raise ValueError(f"CSV profile {self.path} does not exist") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise ValueError(f"CSV profile {self.path} cannot be read: {exc}") from None
        columns = list(frame.columns)
        time_col = self.time_column if self.time_column is not None else (columns[0] if columns else None)
        power_col = self.power_column if self.power_column is not None else (columns[1] if len(columns) > 1 else None)
        for role, name in (("time", time_col), ("power", power_col)):
            if name is None or name not in frame.columns:
                raise ValueError(f"CSV profile {self.path} has no {role} column {name!r}; columns: {columns}")
        t = pd.to_numeric(frame[time_col], errors="coerce").to_numpy(dtype=float)
        p = pd.to_numeric(frame[power_col], errors="coerce").to_numpy(dtype=float)
        if t.size < 2:
            raise ValueError(f"CSV profile {self.path} needs at least 2 rows, has {t.size}")
        if not (np.isfinite(t).all() and np.isfinite(p).all()):
            raise ValueError(f"CSV profile {self.path} has non-numeric or missing values")
        if np.any(np.diff(t) <= 0):
            raise ValueError(f"CSV profile {self.path}: column {time_col!r} must be strictly increasing")
        return t, p

    def power_kw(self, t: np.ndarray) -> np.ndarray:
        """Total kW at each time in `t` (s), linear between rows, constant beyond the ends."""
        if self._series is None:
            self._series = self._read()
        times, power = self._series
        return np.interp(_times(t), times, power) * self.scale

    def scaled(self, factor: float) -> CsvProfile:
        """The same profile with power multiplied by `factor`."""
        return CsvProfile(
            path=self.path,
            time_column=self.time_column,
            power_column=self.power_column,
            scale=self.scale * factor,
        )


class SyntheticPV(_Frozen):
    """Synthetic PV output of SPEC 7 (profiles 0, 1, 2), peaking near `peak_kw` TOTAL kW."""

    kind: Literal["synthetic_pv"] = "synthetic_pv"
    peak_kw: float = Field(ge=0.0, description="total three-phase peak kW")
    profile: Literal[0, 1, 2] = 0

    def power_kw(self, t: np.ndarray) -> np.ndarray:
        """Total kW at each time in `t` (s), clipped at >= 0."""
        return np.maximum(self.peak_kw * _pv_shape(_times(t), self.profile), 0.0)

    def scaled(self, factor: float) -> SyntheticPV:
        """The same profile with the peak multiplied by `factor`."""
        return self.model_copy(update={"peak_kw": self.peak_kw * factor})


class SyntheticLoad(_Frozen):
    """Synthetic feeder load of SPEC 7 (profiles 0 to 4), scaled by `peak_kw` TOTAL kW."""

    kind: Literal["synthetic_load"] = "synthetic_load"
    peak_kw: float = Field(ge=0.0, description="total three-phase peak kW")
    profile: Literal[0, 1, 2, 3, 4] = 0

    def power_kw(self, t: np.ndarray) -> np.ndarray:
        """Total kW at each time in `t` (s), clipped at >= 0."""
        return np.maximum(self.peak_kw * _load_shape(_times(t), self.profile), 0.0)

    def scaled(self, factor: float) -> SyntheticLoad:
        """The same profile with the peak multiplied by `factor`."""
        return self.model_copy(update={"peak_kw": self.peak_kw * factor})


Profile = Annotated[
    ConstantProfile | CsvProfile | SyntheticPV | SyntheticLoad,
    Field(discriminator="kind"),
]

#: Phases in OpenG2G's per-phase power convention.
OPENG2G_PHASES = 3


def from_openg2g_per_phase(profile: ConstantProfile | CsvProfile | SyntheticPV | SyntheticLoad):
    """Convert a profile written with OpenG2G's per-phase ``power_kw`` into g2gsim totals (x3).

    OpenG2G writes its generator/load value on each of the three phases, so a "10 kW" PV in
    an OpenG2G preset injects 30 kW in all; g2gsim's equivalent profile says 30 kW.
    """
    return profile.scaled(OPENG2G_PHASES)


# -- attachments ------------------------------------------------------------------------------
def _dss_safe(value: str, what: str) -> str:
    if not _DSS_SAFE.match(value):
        raise ValueError(f"{what} {value!r} may only use letters, digits, '_' and '-' (it is used in OpenDSS commands)")
    return value


class SiteAttachment(_Frozen):
    """A datacenter component connected at a three-phase bus as three single-phase PQ loads."""

    site: str = Field(min_length=1, description="name of the datacenter component")
    bus: str = Field(min_length=1)
    connection: Literal["wye", "delta"] = "wye"
    power_factor: PowerFactor | None = Field(default=None, description="None: the datacenter's own")

    @field_validator("bus")
    @classmethod
    def _bus(cls, value: str) -> str:
        return _dss_safe(value, "bus")


class _Injection(_Frozen):
    name: str = Field(min_length=1)
    bus: str = Field(min_length=1)
    profile: Profile

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dss_safe(value, "name")

    @field_validator("bus")
    @classmethod
    def _bus(cls, value: str) -> str:
        return _dss_safe(value, "bus")


class GeneratorAttachment(_Injection):
    """A generator (e.g. PV) at a bus: TOTAL kW from its profile, split over three phases.

    Modelled as OpenG2G does: three single-phase constant-PQ loads with negative power.
    """

    power_factor: PowerFactor = 1.0


class LoadAttachment(_Injection):
    """A time-varying external load at a bus: TOTAL kW from its profile, split over three phases."""

    power_factor: PowerFactor = 0.96


class StorageSpec(_Frozen):
    """A battery as a native OpenDSS Storage element on a three-phase bus, dispatched externally.

    Ratings bound commands: |P| <= rated_kw and sqrt(P^2 + Q^2) <= rated_kva.
    """

    name: str = Field(min_length=1)
    bus: str = Field(min_length=1)
    rated_kw: float = Field(gt=0.0)
    rated_kva: float | None = Field(default=None, gt=0.0, description="None: equal to rated_kw")
    rated_kwh: float = Field(gt=0.0)
    initial_soc: float = Field(default=0.5, ge=0.0, le=1.0)
    reserve_soc: float = Field(default=0.0, ge=0.0, le=1.0)
    charge_efficiency: float = Field(default=1.0, gt=0.0, le=1.0)
    discharge_efficiency: float = Field(default=1.0, gt=0.0, le=1.0)
    idling_loss_percent: float = Field(default=0.0, ge=0.0, description="OpenDSS %IdlingkW")
    connection: Literal["wye", "delta"] = "wye"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dss_safe(value, "storage name")

    @field_validator("bus")
    @classmethod
    def _bus(cls, value: str) -> str:
        return _dss_safe(value, "bus")

    @model_validator(mode="after")
    def _consistent(self) -> StorageSpec:
        if self.rated_kva is not None and self.rated_kva < self.rated_kw:
            raise ValueError(
                f"storage {self.name!r}: rated_kva ({self.rated_kva}) must be >= rated_kw ({self.rated_kw})"
            )
        if self.reserve_soc > self.initial_soc:
            raise ValueError(
                f"storage {self.name!r}: reserve_soc ({self.reserve_soc}) must not exceed "
                f"initial_soc ({self.initial_soc})"
            )
        return self

    @property
    def kva(self) -> float:
        """Apparent-power rating, kVA."""
        return self.rated_kw if self.rated_kva is None else self.rated_kva


# -- the grid ---------------------------------------------------------------------------------
class SolveOnChange(_Frozen):
    """Solve only when the loads moved: ``solve = { on_change_kw = 5.0 }``.

    At each grid period the grid solves when some attached load's per-phase kW (a site's or
    a profile's) moved by more than `on_change_kw` since the last solve, or a command is
    pending; otherwise it records the step with the voltages (and loads) of the last solve
    and publishes nothing, so controllers woken by its state sleep on.
    """

    on_change_kw: float = Field(gt=0.0, description="per-phase kW move of any load that needs a new solve")


def _solve_policy(value: Any) -> Any:
    """``"every_period"`` (the default) is spelled None inside the model."""
    if value == "every_period":
        return None
    return value


class GridOptions(_Frozen):
    """How a feeder is set up and solved: everything of a grid but the datacenters attached to it.

    `initial_taps` maps a regulator-control name (e.g. ``creg1a``) or a phase shorthand
    (``a``/``b``/``c``, valid where one regulator serves that phase) to a tap ratio in pu;
    :meth:`tap_pu` turns a step into a ratio. `excluded_buses` None means the feeder's own
    defaults (e.g. sourcebus, 650, rg60 on IEEE 13).
    """

    feeder: str = Field(min_length=1, description='bundled feeder name ("ieee13", ...) or a .dss path')
    period_s: Seconds = Fraction(1, 10)
    source_pu: float | None = Field(default=None, gt=0.0)
    initial_taps: Mapping[str, float] = Field(default_factory=dict)
    excluded_buses: tuple[str, ...] | None = None
    coupling: Literal["latest", "mean"] = "latest"
    regulator_self_control: bool = False
    tap_limits: Literal["enforce", "allow"] = Field(
        default="enforce",
        description='"enforce": a tap outside the regulator\'s [MinTap, MaxTap] is an error; "allow": '
        "it is applied as OpenDSS would (and recorded as an event), as the reference's presets require",
    )
    generators: tuple[GeneratorAttachment, ...] = ()
    loads: tuple[LoadAttachment, ...] = ()
    storage: tuple[StorageSpec, ...] = ()
    solve: Annotated[SolveOnChange | None, BeforeValidator(_solve_policy)] = Field(
        default=None, description='None or "every_period": a power flow every period; { on_change_kw = ... }: on change'
    )
    tolerance: float | None = Field(
        default=None, gt=0.0, description="power-flow tolerance, pu (None: OpenDSS's default, 1e-4)"
    )
    max_iterations: int | None = Field(
        default=None, ge=1, description="power-flow iteration limit (None: OpenDSS's default, 15)"
    )
    measurement_tolerance: float | None = Field(
        default=None,
        gt=0.0,
        description="tolerance of the solves at the steps controllers measure, every measurement_period_s "
        "(up to 100 iterations), so what they read does not depend on the run's tolerance (None: the run's)",
    )
    measurement_period_s: Seconds | None = Field(
        default=None, description="period of those steps, s (None: 1 s, the presets' control period)"
    )

    @staticmethod
    def tap_pu(step: int) -> float:
        """Tap ratio (pu) of regulator step `step`: 1 + 0.00625 n."""
        return tap_pu(step)

    @field_validator("period_s", mode="before")
    @classmethod
    def _positive_period(cls, value: Any) -> Fraction:
        return as_period(value, name="period_s")

    @field_validator("measurement_period_s", mode="before")
    @classmethod
    def _positive_measurement_period(cls, value: Any) -> Fraction | None:
        return None if value is None else as_period(value, name="measurement_period_s")

    @field_validator("initial_taps")
    @classmethod
    def _taps(cls, value: Mapping[str, float]) -> dict[str, float]:
        taps: dict[str, float] = {}
        for key, ratio in value.items():
            if not math.isfinite(ratio) or ratio <= 0.0:
                raise ValueError(f"initial tap {key!r} must be a positive ratio in pu, got {ratio!r}")
            lowered = key.lower()
            if lowered in taps:
                raise ValueError(f"initial tap {key!r} is given twice (names are case-insensitive)")
            taps[lowered] = float(ratio)
        return taps

    @model_validator(mode="after")
    def _unique_elements(self) -> GridOptions:
        elements = [e.name.lower() for e in (*self.generators, *self.loads)] + [s.name.lower() for s in self.storage]
        repeated = sorted({e for e in elements if elements.count(e) > 1})
        if repeated:
            raise ValueError(
                f"generator, load and storage names must be unique (case-insensitive); repeated: {repeated}"
            )
        if self.solve is not None and self.storage:
            raise ValueError(
                "solve.on_change_kw cannot be used with storage: a battery's energy is integrated at every "
                'solve (use solve = "every_period")'
            )
        return self


class GridConfig(GridOptions):
    """Everything an :class:`~g2gsim.grid.opendss.OpenDSSGrid` needs besides its name: the
    feeder options and the datacenters attached to it."""

    sites: tuple[SiteAttachment, ...] = ()

    @model_validator(mode="after")
    def _unique_sites(self) -> GridConfig:
        sites = [s.site for s in self.sites]
        repeated = sorted({s for s in sites if sites.count(s) > 1})
        if repeated:
            raise ValueError(f"a datacenter can be attached once; repeated sites: {repeated}")
        return self
