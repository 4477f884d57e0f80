"""What every controller's scenario section shares, what its builder may ask of the scenario,
and the one line that puts a controller into scenario files.

A controller module defines its tuning model (a :class:`~g2gsim.kernel.registry.Section`), its
section (a :class:`ControllerSection` with a ``type`` literal and, if it is tuned, a ``params``
field of that model), a ``from_config(section, context)`` class method, and registers::

    register_controller("ofo", OFOSection)(OFOBatchController)

The scenario then accepts ``[[controllers]] type = "ofo"`` tables, validates them when the
file is loaded and builds the controller through the registry.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar, ParamSpec, Protocol, TypedDict, TypeVar

from pydantic import (
    BaseModel,
    Field,
    SerializationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticUndefined

from g2gsim.grid.config import StorageSpec
from g2gsim.kernel.component import Component
from g2gsim.kernel.links import INSTANT, LinkSpec, Seconds
from g2gsim.kernel.registry import ComponentKind, Section, register
from g2gsim.kernel.time import TimeLike, as_period
from g2gsim.kernel.triggers import PERIODIC, Trigger

__all__ = [
    "BuildContext",
    "ControllerKeywords",
    "ControllerSection",
    "Links",
    "VoltageLimits",
    "config_or_default",
    "register_controller",
    "renamed_attribute",
    "renamed_keyword",
    "required_period",
    "scenario_path",
    "with_voltage_limits",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
C = TypeVar("C", bound=BaseModel)


class Links(TypedDict):
    """The link keywords of a controller constructor."""

    command_link: LinkSpec
    measurement_link: LinkSpec


class ControllerKeywords(Links):
    """The keywords every feedback controller's constructor takes: its links and its trigger."""

    trigger: Trigger


class ControllerSection(Section):
    """A ``[[controllers]]`` table of a scenario file: what every controller section has."""

    name: str = Field(min_length=1)
    """Component name, unique in the scenario."""
    type: str
    """The registered controller type, e.g. "ofo"."""
    period_s: Seconds | None = Fraction(1)
    """Control period, s; none (omitted in the file) for an event-driven controller."""
    command_link: LinkSpec = INSTANT
    """Delay, jitter and loss of the commands it sends."""
    measurement_link: LinkSpec = INSTANT
    """Delay, jitter and loss of the measurements it reads."""
    trigger: Trigger = PERIODIC
    """When it steps: "periodic" (every period), "on_change" (when what it reads is published)
    or { threshold_pu = 0.002 } (when an observed voltage moves that much or leaves the band),
    with at most one step per min_interval_s (default: the period)."""

    #: Sections of controllers that fire at their own event times (schedules, budget sources)
    #: set this: an event trigger does not apply to them.
    event_timed: ClassVar[bool] = False

    @field_validator("period_s", mode="before")
    @classmethod
    def _positive_period(cls, value: Any) -> Fraction | None:
        return None if value is None else as_period(value, name="period_s")

    @model_validator(mode="after")
    def _trigger_applies(self) -> ControllerSection:
        if self.event_timed and not self.trigger.is_periodic:
            raise ValueError(
                f"trigger: a {self.type!r} controller fires at its own event times; an event trigger "
                f"({self.trigger.mode}) does not apply to it"
            )
        if not self.trigger.is_periodic and self.period_s is None and self.trigger.min_interval_s is None:
            raise ValueError("trigger: an event trigger needs period_s or trigger.min_interval_s")
        return self

    def serialized(self, data: dict[str, Any], info: SerializationInfo) -> dict[str, Any]:
        """``params`` serialise as written (only the keys given), so scenario-wide defaults
        such as v_min / v_max keep applying after a round trip through a file; the default
        trigger is left out."""
        params = getattr(self, "params", None)
        if isinstance(params, BaseModel) and "params" in data:
            data["params"] = params.model_dump(mode=info.mode, exclude_unset=True)
        if self.trigger.is_periodic:
            data.pop("trigger", None)
        return data

    def referenced_sites(self) -> tuple[str, ...]:
        """The sites this controller names (its ``site`` or ``sites`` field), checked against
        the scenario's sites when it is loaded."""
        sites = getattr(self, "sites", None)
        if sites is not None:
            return tuple(sites)
        site = getattr(self, "site", None)
        return () if site is None else (site,)

    def links(self) -> Links:
        """The link keywords of a controller constructor."""
        return {"command_link": self.command_link, "measurement_link": self.measurement_link}

    def controller_keywords(self) -> ControllerKeywords:
        """The link and trigger keywords of a feedback controller's constructor."""
        return {**self.links(), "trigger": self.trigger}


class BuildContext(Protocol):
    """What a controller's builder may ask of the scenario it is built for."""

    @property
    def v_min(self) -> float:
        """The scenario-wide lower voltage limit, pu."""
        ...

    @property
    def v_max(self) -> float:
        """The scenario-wide upper voltage limit, pu."""
        ...

    @property
    def storage(self) -> Mapping[str, StorageSpec]:
        """The grid's batteries by name."""
        ...

    @property
    def folder(self) -> Path | None:
        """The folder of the scenario file (None: the scenario was not read from a file)."""
        ...

    def site_is_live(self, site: str) -> bool:
        """Whether a site is live (real servers: batch sizes only, no GPU power caps)."""
        ...


def scenario_path(context: BuildContext, path: str | Path) -> Path:
    """A path named in a scenario: relative to the scenario file's folder when it came from a
    file, else to the working directory."""
    given = Path(path)
    return given if given.is_absolute() or context.folder is None else context.folder / given


class VoltageLimits(Section):
    """The voltage band a controller holds (its ``v_min`` / ``v_max`` params): unset, they are the
    scenario's limits (see :func:`with_voltage_limits`)."""

    v_min: float = Field(default=0.95, gt=0, description="lower voltage limit, pu (default: the scenario's v_min)")
    v_max: float = Field(default=1.05, gt=0, description="upper voltage limit, pu (default: the scenario's v_max)")

    @model_validator(mode="after")
    def _limits_ordered(self) -> VoltageLimits:
        if self.v_min >= self.v_max:
            raise ValueError(f"v_min ({self.v_min}) must be below v_max ({self.v_max})")
        return self


V = TypeVar("V", bound=VoltageLimits)


def with_voltage_limits(config: V, context: BuildContext) -> V:
    """`config` with the scenario's v_min / v_max wherever its own params do not set them."""
    missing = {name: getattr(context, name) for name in ("v_min", "v_max") if name not in config.model_fields_set}
    if not missing:
        return config
    return type(config).model_validate({**missing, **config.model_dump(exclude_unset=True)})


def register_controller(type_name: str, section: type[ControllerSection]) -> Callable[[T], T]:
    """Put a controller into scenario files under ``type = "<type_name>"``.

    ``register_controller("ofo", OFOSection)(OFOBatchController)`` (or as a class decorator):
    the target is a class with ``from_config(section, context)`` or a function
    ``(section, context) -> Component``; `section` validates the file's table.
    """
    _check_section(type_name, section)

    def decorate(target: T) -> T:
        build = getattr(target, "from_config", None) if isinstance(target, type) else target
        if not callable(build):
            raise TypeError(
                f"register_controller({type_name!r}): {target!r} needs a from_config(section, context) "
                "class method, or pass a function (section, context) -> Component"
            )
        register(ComponentKind("controller", type_name, section, _checked(type_name, build)))
        return target

    return decorate


def _check_section(type_name: str, section: type[ControllerSection]) -> None:
    if not (isinstance(section, type) and issubclass(section, ControllerSection)):
        raise TypeError(f"register_controller({type_name!r}): the section must subclass ControllerSection")
    default = section.model_fields["type"].default
    if default is not PydanticUndefined and default != type_name:
        raise TypeError(
            f"register_controller({type_name!r}): {section.__name__}.type defaults to {default!r}; "
            f"declare `type: Literal[{type_name!r}] = {type_name!r}`"
        )


def _checked(type_name: str, build: Callable[..., Any]) -> Callable[[Any, Any], Component]:
    @functools.wraps(build)
    def checked(section: Any, context: Any) -> Component:
        component = build(section, context)
        if not isinstance(component, Component):
            raise TypeError(f"the builder of controller type {type_name!r} returned {component!r}, not a Component")
        return component

    return checked


# -- constructor checks shared by the controllers ----------------------------------------------------
def required_period(period: TimeLike | None, owner: str, what: str = "control period") -> TimeLike:
    """`period`, or a ValueError saying `owner` (e.g. "OFO controller 'ofo'") needs one."""
    if period is None:
        raise ValueError(f"{owner} needs a {what}")
    return period


def config_or_default(name: str, config: object | None, kind: type[C]) -> C:
    """A controller's typed parameters: `config`, or `kind`'s defaults when None; a TypeError
    naming the controller when `config` is of another type (a dict, a sibling's config)."""
    if config is None:
        return kind()
    if not isinstance(config, kind):
        article = "an" if kind.__name__[0] in "AEIOU" else "a"
        raise TypeError(f"{name!r}: config must be {article} {kind.__name__}, got {type(config).__name__}")
    return config


# -- renamed arguments ------------------------------------------------------------------------------
def renamed_keyword(old: str, new: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Accept keyword `old` as a deprecated name of `new` for one release (with a warning)."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if old in kwargs:
                owner = function.__qualname__.removesuffix(".__init__")
                if new in kwargs:
                    raise TypeError(f"{owner}: give {new}= only ({old}= is its deprecated name)")
                warnings.warn(
                    f"{owner}({old}=...) is renamed {new}=; the old name goes in the next release",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper

    return decorate


def renamed_attribute(new: str, old: str) -> property:
    """A read-only attribute `old` that warns and returns attribute `new` (one release)."""

    def get(self: Any) -> Any:
        warnings.warn(
            f"{type(self).__name__}.{old} is renamed {new}; the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(self, new)

    return property(get, doc=f"Deprecated name of ``{new}``.")
