"""The base of every command a controller sends through a link to a component."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """A typed instruction for one component.

    `target` names the component; None means "the only component that accepts this type",
    resolved when the command is sent (ambiguity is an error).
    """

    target: str | None = None

    def payload(self) -> dict[str, Any]:
        """The command's fields except the target, for logs and result tables."""
        fields = dataclasses.asdict(self)
        fields.pop("target", None)
        return fields

    def payload_json(self) -> str:
        """Payload as canonical JSON."""
        return json.dumps(self._plain_payload() or self.payload(), sort_keys=True, default=json_default)

    def plain_fields(self) -> dict[str, Any] | None:
        """The payload as plain Python (what JSON gives back) when every field is a plain value
        or a dict of plain values with text keys: the fields themselves, each dict copied, and
        no deep copy of the command (a command log builds one per command). None otherwise."""
        fields = self._plain_payload()
        if fields is None:
            return None
        for name, value in fields.items():
            if type(value) is dict:
                if not all(type(k) is str for k in value):
                    return None
                fields[name] = dict(value)
        return fields

    def _plain_payload(self) -> dict[str, Any] | None:
        """The fields as they are when they hold only plain values and dicts of them (their
        JSON is that of :meth:`payload`, without its deep copy); None otherwise."""
        fields = {name: getattr(self, name) for name in _payload_names(type(self))}
        for value in fields.values():
            if type(value) in _PLAIN:
                continue
            if type(value) is not dict or not all(type(k) in _PLAIN and type(v) in _PLAIN for k, v in value.items()):
                return None
        return fields or None


def _payload_names(kind: type[Command]) -> tuple[str, ...]:
    """A command class's field names except the target (a command log asks once per command)."""
    names = _PAYLOAD_NAMES.get(kind)
    if names is None:
        names = _PAYLOAD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(kind) if f.name != "target")
    return names


_PAYLOAD_NAMES: dict[type[Command], tuple[str, ...]] = {}


#: Value types whose JSON does not depend on a copy (the leaves ``dataclasses.asdict`` keeps).
_PLAIN = frozenset({str, int, float, bool, type(None)})


def json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
