"""JSON forms of events, effects, policies and session parameters (conformance protocol v1).

These are the shapes `specs/conformance-protocol.md` specifies. Every value is plain JSON:

* integers are JSON numbers (decimal);
* byte strings are lowercase hex strings (`"00ff..."`);
* transports are their text form (`"udp:10.0.0.1:4000"`);
* enums are their string values (`"ATTACHED"`, `"REPLAY_DETECTED"`).

Decoding is strict: an unknown type, a missing or extra field, or a value of the wrong
type raises `WireError` naming the problem. Nothing here ever handles a secret other than
the test secret a conformance run sends on purpose.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

import attrs

from jumpvpn_core.effects import Effect
from jumpvpn_core.errors import InvalidEventError, InvalidTransportError, PolicyError
from jumpvpn_core.events import EVENT_TYPES
from jumpvpn_core.policy import Policy
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "PROTOCOL_VERSION",
    "JsonObject",
    "WireError",
    "effect_from_json",
    "effect_to_json",
    "event_from_json",
    "event_to_json",
    "policy_from_json",
    "policy_to_json",
]

#: Version of the conformance protocol and of these JSON forms.
PROTOCOL_VERSION = 2

JsonObject = dict[str, Any]

_EVENTS_BY_NAME: dict[str, type] = {t.__name__: t for t in EVENT_TYPES}
_TRANSPORT_FIELDS = frozenset({"transport", "via", "observed", "source", "candidate", "bound"})
_BYTES_FIELDS = frozenset({"session_id", "proof", "challenge", "mac"})


class WireError(ValueError):
    """A JSON message does not have the shape the protocol requires."""


def _value_to_json(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, TransportDescriptor):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or type(value) in (int, bool, str):
        return value
    if isinstance(value, tuple):
        return [_value_to_json(v) for v in value]
    raise WireError(f"no JSON form for {type(value).__name__}")


def event_to_json(event: Any) -> JsonObject:
    """`{"type": "<EventName>", "<field>": <value>, ...}` with every field present."""
    name = type(event).__name__
    if name not in _EVENTS_BY_NAME or not attrs.has(type(event)):
        raise WireError(f"not an event: {name}")
    out: JsonObject = {"type": name}
    for field in attrs.fields(type(event)):
        out[field.name] = _value_to_json(getattr(event, field.name))
    return out


def _field_from_json(name: str, value: object) -> object:
    if name in _TRANSPORT_FIELDS:
        if not isinstance(value, str):
            raise WireError(f"field {name!r} must be a transport string, got {value!r}")
        try:
            return TransportDescriptor.parse(value)
        except InvalidTransportError as exc:
            raise WireError(f"field {name!r}: {exc}") from None
    if name in _BYTES_FIELDS:
        if not isinstance(value, str):
            raise WireError(f"field {name!r} must be a hex string")
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise WireError(f"field {name!r} is not valid hex") from None
    if type(value) is not int:
        raise WireError(f"field {name!r} must be an integer, got {value!r}")
    return value


def event_from_json(data: object) -> Any:
    """Inverse of `event_to_json`. Fields with a default may be omitted; nothing else."""
    if not isinstance(data, dict):
        raise WireError("an event must be a JSON object")
    name = data.get("type")
    if not isinstance(name, str) or name not in _EVENTS_BY_NAME:
        raise WireError(f"unknown event type {name!r}")
    cls = _EVENTS_BY_NAME[name]
    fields = {f.name: f for f in attrs.fields(cls)}
    extra = sorted(set(data) - set(fields) - {"type"})
    if extra:
        raise WireError(f"{name}: unknown field(s) {extra}")
    kwargs: dict[str, object] = {}
    for fname, field in fields.items():
        if fname not in data:
            if field.default is attrs.NOTHING:
                raise WireError(f"{name}: missing field {fname!r}")
            continue
        kwargs[fname] = _field_from_json(fname, data[fname])
    try:
        return cls(**kwargs)
    except (InvalidEventError, TypeError) as exc:
        raise WireError(f"{name}: {exc}") from None


def effect_to_json(effect: Effect) -> JsonObject:
    """The normalised form of one effect: its type name and every field, JSON-ready.

    Two implementations conform when their normalised effects are equal, in order.
    """
    out: JsonObject = {"type": type(effect).__name__}
    for field in attrs.fields(type(effect)):
        out[field.name] = _value_to_json(getattr(effect, field.name))
    return out


_EFFECTS_BY_NAME: dict[str, type] = {t.__name__: t for t in typing.get_args(Effect)}


def _effect_field_from_json(name: str, kind: Any, value: object) -> object:
    options = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union,
                                                                   types.UnionType) else ()
    if options:
        if value is None and type(None) in options:
            return None
        kind = next(o for o in options if o is not type(None))
    if kind is TransportDescriptor:
        return _field_from_json("transport", value)
    if kind is bytes:
        return _field_from_json("proof", value)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(value)
        except ValueError:
            raise WireError(f"field {name!r}: {value!r} is not a {kind.__name__}") from None
    if kind is str:
        if not isinstance(value, str):
            raise WireError(f"field {name!r} must be a string, got {value!r}")
        return value
    return _field_from_json(name, value)


def effect_from_json(data: object) -> Effect:
    """Inverse of `effect_to_json`: every field present, nothing else."""
    if not isinstance(data, dict):
        raise WireError("an effect must be a JSON object")
    name = data.get("type")
    if not isinstance(name, str) or name not in _EFFECTS_BY_NAME:
        raise WireError(f"unknown effect type {name!r}")
    cls = _EFFECTS_BY_NAME[name]
    hints = typing.get_type_hints(cls)
    names = [f.name for f in attrs.fields(cls)]
    extra = sorted(set(data) - set(names) - {"type"})
    missing = [n for n in names if n not in data]
    if extra or missing:
        raise WireError(f"{name}: unknown field(s) {extra}, missing field(s) {missing}")
    kwargs = {n: _effect_field_from_json(n, hints[n], data[n]) for n in names}
    try:
        effect: Effect = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise WireError(f"{name}: {exc}") from None
    return effect


def policy_to_json(policy: Policy) -> JsonObject:
    """Every policy field, by name."""
    return policy.to_data()


def policy_from_json(data: object) -> Policy:
    """Inverse of `policy_to_json`; raises `WireError` on anything invalid."""
    try:
        return Policy.from_data(data)
    except (PolicyError, TypeError) as exc:
        raise WireError(f"policy: {exc}") from None
