"""The one JSON form of events, effects, policies and audit records.

Golden vectors, the conformance protocol (`specs/conformance-protocol.md`), the scenario
runner's trace and the trace verifier all read and write these forms, so a protocol change
lands here once.

An event or effect is a JSON object `{"type": <class name>, <field>: <value>, ...}` with
one key per field, in declaration order. A value is written by its declared type:

* integers as JSON numbers, strings as JSON strings;
* byte strings (`session_id`, `proof`, `challenge`, `mac`) as lowercase hex (`"00ff..."`);
* transports as their `kind:host:port` text (`"udp:10.0.0.1:4000"`, `"udp:[::1]:4000"`);
* enums (phases, roles, reason codes and classes) as their string value;
* an optional field that is absent (`BindTransport.previous`) as `null`.

Decoding is strict and goes through one function, `_decode_value`: an unknown type, an
unknown field, a missing field without a default, or a value of the wrong JSON type raises
`FormError` naming the class and field, never quoting the value (`specs/bad-input.md`).
Bytes must be lower-case hex. JSON text is read by `jumpvpn_core.jsonsafe` only. An event
field with a default may be omitted; every effect field is required. A policy is the
object of its fields by name.

An audit record is what `StateChanged.to_record()` / `Rejected.to_record()` write
(`specs/audit-records.md`); `record_from_data` reads one back into its effect.

Pure: no clock, randomness, files or network. Formats: `specs/vectors/README.md`,
`specs/conformance-protocol.md`, `specs/audit-records.md`.
"""

from __future__ import annotations

import enum
import re
import types
import typing
from typing import Any

import attrs

from jumpvpn_core import events as _events
from jumpvpn_core import jsonsafe
from jumpvpn_core.effects import AUDIT_RECORD_VERSION, Effect, Rejected, StateChanged
from jumpvpn_core.errors import (
    FormDecodeError,
    InvalidEventError,
    InvalidTransportError,
    JsonDecodeError,
    PolicyError,
    describe,
    field_name,
)
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.reasons import ReasonClass, ReasonCode
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "EFFECT_CLASSES",
    "EVENT_CLASSES",
    "FormError",
    "JsonObject",
    "effect_from_data",
    "effect_to_data",
    "event_from_data",
    "event_to_data",
    "parse_json",
    "policy_from_data",
    "policy_to_data",
    "record_from_data",
]

JsonObject = dict[str, Any]
"""A decoded JSON object."""


class FormError(FormDecodeError):
    """A JSON form does not describe a known event, effect, policy or audit record."""


_HEX = re.compile(r"(?:[0-9a-f]{2})*")


def parse_json(text: str | bytes) -> Any:
    """The one place JSON text is parsed: the value, or `FormError` when `text` is not
    JSON that `jumpvpn_core.jsonsafe` accepts (bounded depth and integers, UTF-8, no NaN,
    no repeated keys)."""
    try:
        return jsonsafe.loads(text)
    except JsonDecodeError as exc:
        raise FormError(f"not JSON: {exc}") from None


EVENT_CLASSES: dict[str, type] = {cls.__name__: cls for cls in _events.EVENT_TYPES}
EFFECT_CLASSES: dict[str, type] = {cls.__name__: cls for cls in typing.get_args(Effect)}


@attrs.frozen
class _Field:
    name: str
    kind: type
    optional: bool
    required: bool


def _fields(cls: type) -> tuple[_Field, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for field in attrs.fields(cls):
        kind = hints[field.name]
        optional = False
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            options = [o for o in typing.get_args(kind) if o is not type(None)]
            optional = len(options) < len(typing.get_args(kind))
            kind = options[0]
        out.append(_Field(field.name, kind, optional, field.default is attrs.NOTHING))
    return tuple(out)


_FIELDS: dict[type, tuple[_Field, ...]] = {
    cls: _fields(cls) for cls in (*EVENT_CLASSES.values(), *EFFECT_CLASSES.values())
}


def _encode_value(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, TransportDescriptor):
        return value.to_data()
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _to_data(obj: Any) -> JsonObject:
    data: JsonObject = {"type": type(obj).__name__}
    for field in _FIELDS[type(obj)]:
        data[field.name] = _encode_value(getattr(obj, field.name))
    return data


def _decode_value(where: str, field: _Field, value: object) -> object:
    """The one place a JSON value becomes a field value (or a `FormError`)."""
    if value is None and field.optional:
        return None
    kind = field.kind
    if kind is TransportDescriptor:
        if not isinstance(value, str):
            raise FormError(f"{where}: field {field.name!r} must be a transport string, "
                            f"got {describe(value)}")
        try:
            return TransportDescriptor.from_data(value)
        except InvalidTransportError as exc:
            raise FormError(f"{where}: field {field.name!r}: {exc}") from None
    if kind is bytes:
        if not isinstance(value, str) or not _HEX.fullmatch(value):
            raise FormError(f"{where}: field {field.name!r} must be lower-case hex, "
                            f"got {describe(value)}")
        return bytes.fromhex(value)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(value)
        except ValueError:
            raise FormError(f"{where}: field {field.name!r}: {describe(value)} is not a "
                            f"{kind.__name__}") from None
    if kind is str:
        if not isinstance(value, str):
            raise FormError(f"{where}: field {field.name!r} must be a string, "
                            f"got {describe(value)}")
        return value
    if type(value) is not int:
        raise FormError(f"{where}: field {field.name!r} must be an integer, "
                        f"got {describe(value)}")
    return value


def _from_data(data: object, classes: dict[str, type], what: str) -> Any:
    if not isinstance(data, dict):
        raise FormError(f"an {what} must be a JSON object")
    name = data.get("type")
    cls = classes.get(name) if isinstance(name, str) else None
    if cls is None or not isinstance(name, str):
        raise FormError(f"unknown {what} type {field_name(name)}")
    fields = _FIELDS[cls]
    known = {f.name for f in fields}
    extra = [field_name(key) for key in data if key not in known and key != "type"]
    missing = [f.name for f in fields if f.required and f.name not in data]
    if extra or missing:
        raise FormError(f"{name}: unknown field(s) {extra}, missing field(s) {missing}")
    kwargs = {f.name: _decode_value(name, f, data[f.name]) for f in fields if f.name in data}
    try:
        return cls(**kwargs)
    except (InvalidEventError, TypeError, ValueError) as exc:
        raise FormError(f"{name}: {exc}") from None


def event_to_data(event: Any) -> JsonObject:
    """JSON form of an event (every field, defaults included)."""
    if type(event) not in _events.EVENT_TYPES:
        raise FormError(f"not an event: {type(event).__name__}")
    return _to_data(event)


def event_from_data(data: object) -> Any:
    """Inverse of `event_to_data`; a missing field with a default takes its default."""
    return _from_data(data, EVENT_CLASSES, "event")


def effect_to_data(effect: Effect) -> JsonObject:
    """JSON form of an effect (its normalised form: two implementations conform when their
    normalised effects are equal, in order)."""
    if EFFECT_CLASSES.get(type(effect).__name__) is not type(effect):
        raise FormError(f"not an effect: {type(effect).__name__}")
    return _to_data(effect)


def effect_from_data(data: object) -> Effect:
    """Inverse of `effect_to_data`: every field present, nothing else."""
    effect: Effect = _from_data(data, EFFECT_CLASSES, "effect")
    return effect


def policy_to_data(policy: Policy) -> JsonObject:
    """Every policy field, by name."""
    return policy.to_data()


def policy_from_data(data: object) -> Policy:
    """Inverse of `policy_to_data`; raises `FormError` on anything invalid."""
    try:
        return Policy.from_data(data)
    except PolicyError as exc:
        raise FormError(f"policy: {exc}") from None


# --- audit records ------------------------------------------------------------------------------


def _record_field(record: JsonObject, key: str, kind: type) -> Any:
    if key not in record:
        raise FormError(f"record has no {key!r}")
    value = record[key]
    if kind is int:
        if type(value) is not int or value < 0:
            raise FormError(f"{key!r} must be a non-negative integer, got {describe(value)}")
    elif not isinstance(value, kind):
        raise FormError(f"{key!r} must be a {kind.__name__}, got {describe(value)}")
    return value


def _record_enum(record: JsonObject, key: str, kind: type[Any], what: str) -> Any:
    value = _record_field(record, key, str)
    try:
        return kind(value)
    except ValueError:
        raise FormError(f"unknown {what} {field_name(value)}") from None


def record_from_data(record: JsonObject) -> StateChanged | Rejected:
    """The audit effect an audit record describes (`to_record()` read back).

    Checks the shape only: version, type, field types, known phases, roles and reason
    codes, a 16-byte session id. Whether the record may follow its predecessors is the
    trace verifier's business (`jumpvpn_core.audit.trace`).
    """
    if type(record.get("v")) is not int or record.get("v") != AUDIT_RECORD_VERSION:
        raise FormError(f"unsupported record version {describe(record.get('v'))}")
    kind = record.get("type")
    if kind not in ("state_change", "reject"):
        raise FormError(f"unknown record type {field_name(kind)}")
    session = _record_field(record, "session_id", str)
    if len(session) != 32 or any(c not in "0123456789abcdef" for c in session):
        raise FormError(f"session_id must be 32 lowercase hex digits, got {describe(session)}")
    role = _record_enum(record, "role", Role, "role")
    reason = _record_enum(record, "reason", ReasonCode, "reason code")
    version = _record_field(record, "state_version", int)
    ts = _record_field(record, "ts_ms", int)
    if kind == "state_change":
        src = _record_enum(record, "from", Phase, "phase")
        dst = _record_enum(record, "to", Phase, "phase")
        return StateChanged(bytes.fromhex(session), role, src, dst, reason, version, ts)
    phase = _record_enum(record, "phase", Phase, "phase")
    event = _record_field(record, "event", str)
    klass = _record_enum(record, "class", ReasonClass, "reason class")
    nonce = request_version = None
    if "nonce" in record or "request_version" in record:
        # The refused request's own nonce and version (record version 2): both or neither.
        nonce = _record_field(record, "nonce", int)
        request_version = _record_field(record, "request_version", int)
    return Rejected(bytes.fromhex(session), role, reason, klass, phase, version, event, ts,
                    nonce, request_version)

