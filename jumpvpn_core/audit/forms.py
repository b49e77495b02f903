"""JSON forms of events and effects, as used by golden vectors and audit tooling.

An event or effect is a JSON object `{"type": <class name>, <field>: <value>, ...}` with
one key per attrs field. Values are encoded by field name, the same way everywhere:

* transports (`transport`, `via`, `observed`, `bound`, `source`, `candidate`, `to`,
  `previous`) as their `kind:host:port` text (`previous` may be null);
* byte strings (`session_id`, `proof`, `challenge`, `mac`) as lowercase hex;
* enums (`role`, `from_phase`, `to_phase`, `phase`, `reason`, `reason_class`) as their value;
* everything else (integers, the `event` name string) as is.

The format is specified in `specs/vectors/README.md`.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from jumpvpn_core import effects as _effects
from jumpvpn_core import events as _events
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.reasons import ReasonClass, ReasonCode
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "EFFECT_CLASSES",
    "EVENT_CLASSES",
    "FormError",
    "effect_from_data",
    "effect_to_data",
    "event_from_data",
    "event_to_data",
]


class FormError(ValueError):
    """A JSON form does not describe a known event or effect."""


EVENT_CLASSES: dict[str, type] = {cls.__name__: cls for cls in _events.EVENT_TYPES}
EFFECT_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        _effects.StateChanged,
        _effects.Rejected,
        _effects.SendReattachRequest,
        _effects.SendPathChallenge,
        _effects.SendReattachAccept,
        _effects.BindTransport,
        _effects.SessionEnded,
    )
}

_TRANSPORT_FIELDS = frozenset(
    {"transport", "via", "observed", "bound", "source", "candidate", "to", "previous"}
)
_BYTES_FIELDS = frozenset({"session_id", "proof", "challenge", "mac"})
_ENUM_FIELDS: dict[str, type[enum.Enum]] = {
    "role": Role,
    "from_phase": Phase,
    "to_phase": Phase,
    "phase": Phase,
    "reason": ReasonCode,
    "reason_class": ReasonClass,
}


def _encode(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _TRANSPORT_FIELDS:
        assert isinstance(value, TransportDescriptor)
        return value.to_data()
    if name in _BYTES_FIELDS:
        assert isinstance(value, bytes)
        return value.hex()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _decode(name: str, value: Any) -> Any:
    try:
        if value is None:
            return None
        if name in _TRANSPORT_FIELDS:
            return TransportDescriptor.from_data(value)
        if name in _BYTES_FIELDS:
            if not isinstance(value, str):
                raise FormError(f"{name} must be a hex string")
            return bytes.fromhex(value)
        if name in _ENUM_FIELDS:
            return _ENUM_FIELDS[name](value)
    except ValueError as exc:
        raise FormError(f"{name}: {exc}") from None
    return value


def _to_data(obj: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"type": type(obj).__name__}
    for field in attrs.fields(type(obj)):
        data[field.name] = _encode(field.name, getattr(obj, field.name))
    return data


def _from_data(data: Any, classes: dict[str, type], what: str) -> Any:
    if not isinstance(data, dict):
        raise FormError(f"{what} must be a JSON object")
    cls = classes.get(data.get("type", ""))
    if cls is None:
        raise FormError(f"unknown {what} type {data.get('type')!r}")
    names = {field.name for field in attrs.fields(cls)}
    extra = sorted(set(data) - names - {"type"})
    if extra:
        raise FormError(f"{what} {cls.__name__} has unknown fields {extra}")
    kwargs = {name: _decode(name, data[name]) for name in names if name in data}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise FormError(f"{what} {cls.__name__}: {exc}") from None


def event_to_data(event: Any) -> dict[str, Any]:
    """JSON form of an event (every field, defaults included)."""
    if type(event) not in _events.EVENT_TYPES:
        raise FormError(f"not an event: {type(event).__name__}")
    return _to_data(event)


def event_from_data(data: Any) -> Any:
    """Inverse of `event_to_data`; missing defaulted fields take their default."""
    return _from_data(data, EVENT_CLASSES, "event")


def effect_to_data(effect: Any) -> dict[str, Any]:
    """JSON form of an effect."""
    if type(effect).__name__ not in EFFECT_CLASSES:
        raise FormError(f"not an effect: {type(effect).__name__}")
    return _to_data(effect)


def effect_from_data(data: Any) -> Any:
    """Inverse of `effect_to_data`."""
    return _from_data(data, EFFECT_CLASSES, "effect")
