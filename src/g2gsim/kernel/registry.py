"""Component kinds by role and `type` name: what each section of a scenario file builds.

A kind pairs the pydantic model of its file section (validated when the file is loaded) with
a builder ``build(section, context) -> Component``. Packages register their kinds when they
are imported; a plugin that lower layers cannot import (the live site, a user's package) is
found through the entry points of group ``g2gsim.plugins``, loaded once, on the first miss.

:class:`Section` is the strict base of file sections: frozen, unknown keys and non-finite
numbers rejected with the allowed keys named, field docstrings listed in the class's help.
"""

from __future__ import annotations

import builtins
import importlib.metadata
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from g2gsim.kernel.component import Component

__all__ = [
    "PLUGIN_GROUP",
    "ComponentKind",
    "RegistryError",
    "Role",
    "Section",
    "UnknownKindError",
    "expect",
    "kinds",
    "load_plugins",
    "lookup",
    "register",
]

#: Entry-point group whose modules register kinds when imported.
PLUGIN_GROUP = "g2gsim.plugins"

Role = Literal["controller", "site", "grid"]
ROLES: tuple[str, ...] = ("controller", "site", "grid")


class RegistryError(ValueError):
    """A kind cannot be registered (a name taken by another kind) or a plugin failed to load."""


class UnknownKindError(RegistryError, LookupError):
    """No kind of that role has that `type` name; the message lists the known ones."""


@dataclass(frozen=True)
class ComponentKind:
    """One buildable kind of component.

    Attributes:
        role: "controller", "site" or "grid".
        type: Its name in scenario files (a controller section's ``type = "..."``).
        section: The pydantic model of its file section.
        build: ``build(section, context) -> Component``; the context is the scenario
            builder's (see ``g2gsim.controllers.base.BuildContext`` for controllers).
    """

    role: str
    type: str
    section: builtins.type[BaseModel]
    build: Callable[[Any, Any], Component]

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise RegistryError(f"kind {self.type!r}: role must be one of {list(ROLES)}, got {self.role!r}")
        if not isinstance(self.type, str) or not self.type:
            raise RegistryError(f"a {self.role} kind needs a non-empty type name, got {self.type!r}")


_KINDS: dict[tuple[str, str], ComponentKind] = {}
_HINTS: dict[tuple[str, str], str] = {}
_plugins_loaded = False


def register(kind: ComponentKind) -> ComponentKind:
    """Add a kind. Registering it again (or a redefinition of the same section class, as when
    a notebook cell runs twice) replaces it; another kind under a taken name is an error, so
    a plugin cannot silently replace a built-in."""
    key = (kind.role, kind.type)
    known = _KINDS.get(key)
    if known is not None and _qualname(known.section) != _qualname(kind.section):
        raise RegistryError(
            f"{kind.role} type {kind.type!r} is already registered "
            f"(section {_qualname(known.section)}); choose another name for {_qualname(kind.section)}"
        )
    _KINDS[key] = kind
    return kind


def unregister(role: str, type_name: str) -> None:
    """Remove a kind (tests and interactive sessions that re-register a class)."""
    _KINDS.pop((role, type_name), None)


def expect(role: str, type_name: str, hint: str) -> None:
    """Say where a kind that may be missing comes from: `hint` ends the error of a failed lookup."""
    _HINTS[(role, type_name)] = hint


def kinds(role: str) -> dict[str, ComponentKind]:
    """The registered kinds of a role by type name, sorted (plugins not loaded)."""
    return {t: _KINDS[(r, t)] for r, t in sorted(_KINDS) if r == role}


def lookup(role: str, type_name: str) -> ComponentKind:
    """The kind of `role` named `type_name`; on a miss, load the plugins once and retry."""
    kind = _KINDS.get((role, type_name))
    if kind is None and not _plugins_loaded:
        load_plugins()
        kind = _KINDS.get((role, type_name))
    if kind is None:
        known = ", ".join(repr(t) for t in kinds(role)) or "(none)"
        hint = _HINTS.get((role, type_name))
        message = f"unknown {role} type {type_name!r}; known: {known}"
        raise UnknownKindError(f"{role} kind {type_name!r} {hint}" if hint else message)
    return kind


def plugin_entry_points() -> Iterable[Any]:
    """The installed entry points of :data:`PLUGIN_GROUP` (tests replace this function)."""
    return importlib.metadata.entry_points(group=PLUGIN_GROUP)


def load_plugins() -> list[str]:
    """Import every plugin module once (each registers its kinds); returns their names."""
    global _plugins_loaded
    _plugins_loaded = True
    loaded = []
    for entry in plugin_entry_points():
        try:
            entry.load()
        except ImportError as exc:
            # A plugin whose optional dependencies are missing: its kinds stay unknown and
            # the lookup error (with its hint) says how to install them.
            loaded.append(f"{entry.name} (not loaded: {exc})")
            continue
        loaded.append(entry.name)
    return loaded


def reset_plugins() -> None:
    """Forget that plugins were loaded, so the next miss loads them again (tests)."""
    global _plugins_loaded
    _plugins_loaded = False


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# -- the strict base of file sections ---------------------------------------------------------------
class Section(BaseModel):
    """Base of a scenario-file section: frozen, no unknown keys, finite numbers only.

    An unknown key is reported with the keys allowed there; each field's docstring becomes
    its description and is listed under "Fields" in the class's help. Serialised, ``name``
    and ``type`` come first, then the section's own fields, then those it inherits (so a
    section that embeds a component's model still reads naturally in a file).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)

    @model_validator(mode="wrap")
    @classmethod
    def _name_allowed_keys(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            errors = exc.errors()
            if not any(_own_unknown_key(e) for e in errors):
                raise
            allowed = ", ".join(sorted(cls.model_fields))
            details = [
                InitErrorDetails(
                    type=PydanticCustomError(
                        e["type"],
                        f"unknown key {e['loc'][0]!r}; allowed: {allowed}" if _own_unknown_key(e) else e["msg"],
                    ),
                    loc=e["loc"],
                    input=e["input"],
                )
                for e in errors
            ]
            raise ValidationError.from_exception_data(exc.title, details) from None

    @model_serializer(mode="wrap")
    def _serialize_in_order(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        if not isinstance(data, dict):
            return data
        data = self.serialized(data, info)
        first = [key for key in ("name", "type") if key in data]
        own = [key for key in vars(type(self)).get("__annotations__", {}) if key in data and key not in first]
        order = first + own
        return {**{key: data[key] for key in order}, **{k: v for k, v in data.items() if k not in order}}

    def serialized(self, data: dict[str, Any], info: SerializationInfo) -> dict[str, Any]:
        """Adjust the serialised fields (a hook for subclasses); default: unchanged."""
        return data

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        fields = field_help(cls)
        if cls.__doc__ is not None and "\nFields:\n" not in cls.__doc__ and fields:
            cls.__doc__ = f"{inspect.cleandoc(cls.__doc__)}\n\nFields:\n{fields}\n"


def _own_unknown_key(error: Any) -> bool:
    return bool(error["type"] == "extra_forbidden" and len(error["loc"]) == 1)


def field_help(model: type[BaseModel]) -> str:
    """One line per field: name, default and description (for a class's help text)."""
    lines = []
    for name, info in model.model_fields.items():
        if info.is_required():
            default = "required"
        elif info.default_factory is not None:
            factory = info.default_factory
            default = f"default: {getattr(factory, '__name__', 'computed')}()"
        else:
            default = f"default {_shown(info.default)}"
        described = f": {info.description}" if info.description else ""
        lines.append(f"    {name} ({default}){described}")
    return "\n".join(lines)


def _shown(value: Any) -> str:
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, BaseModel):
        return f"{type(value).__name__}()" if not value.model_fields_set else repr(value)
    return repr(value)
