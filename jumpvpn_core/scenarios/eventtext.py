"""Canonical one-line text for events and effects.

Events: `EventName field=value ...`, every field in declaration order, values written as

* integers in decimal (`now_ms=1500`),
* bytes as `hex:<lowercase hex>` (empty bytes: `hex:`),
* transports in their descriptor form (`udp:10.0.0.1:4000`, `udp:[::1]:4000`).

`format_event` and `parse_event` are exact inverses; scenario scripts and conformance
counterexamples use this form. Effects have a compact, stable, display-only form
(`format_effect`): audit records read like `StateChanged ATTACHED -> RECOVERING ...`, and
proofs are shortened to their first four bytes, because an effect is never parsed back.
"""

from __future__ import annotations

import typing
from typing import Any

import attrs

from jumpvpn_core.effects import Effect, Rejected, StateChanged
from jumpvpn_core.errors import InvalidEventError, InvalidTransportError, JumpVpnError
from jumpvpn_core.events import EVENT_TYPES, Event
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "EVENT_TYPES_BY_NAME",
    "EventTextError",
    "format_effect",
    "format_event",
    "format_value",
    "parse_event",
    "parse_value",
]

EVENT_TYPES_BY_NAME: dict[str, type] = {cls.__name__: cls for cls in EVENT_TYPES}
_HEX = "hex:"
_PROOF_SHOWN_BYTES = 4


class EventTextError(JumpVpnError, ValueError):
    """A line of event text is malformed: unknown event, unknown field, bad value."""


def _field_types(cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in attrs.fields(cls)}


_FIELD_TYPES: dict[type, dict[str, type]] = {cls: _field_types(cls) for cls in EVENT_TYPES}


def format_value(value: object) -> str:
    """Canonical text of one field value (int, bytes or transport)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return _HEX + value.hex()
    if isinstance(value, TransportDescriptor):
        return str(value)
    if value is None:
        return "none"
    return str(value)


def parse_value(kind: type, text: str, name: str = "value") -> Any:
    """Parse `text` as a value of `kind` (int, bytes or TransportDescriptor)."""
    if kind is int:
        if not text.isdigit() or not text.isascii():
            raise EventTextError(f"{name} must be a decimal integer, got {text!r}")
        return int(text)
    if kind is bytes:
        if not text.startswith(_HEX):
            raise EventTextError(f"{name} must be written hex:<hex digits>, got {text!r}")
        digits = text[len(_HEX):]
        try:
            if len(digits) % 2 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError(digits)
            return bytes.fromhex(digits)
        except ValueError:
            raise EventTextError(f"{name} has malformed hex {digits!r}") from None
    if kind is TransportDescriptor:
        try:
            return TransportDescriptor.parse(text)
        except InvalidTransportError as exc:
            raise EventTextError(f"{name}: {exc}") from None
    raise EventTextError(f"{name} has a type the text form does not support")


def format_event(event: Event) -> str:
    """The canonical one-line text of `event`; `parse_event` turns it back into `event`."""
    cls = type(event)
    if cls not in _FIELD_TYPES:
        raise EventTextError(f"not an event: {cls.__name__}")
    parts = [cls.__name__]
    parts.extend(
        f"{f.name}={format_value(getattr(event, f.name))}" for f in attrs.fields(cls)
    )
    return " ".join(parts)


def parse_event(text: str, *, session_id: bytes | None = None) -> Event:
    """Parse canonical event text. Fields with defaults may be left out; so may
    `session_id` when a default `session_id` is given. Raises `EventTextError`."""
    tokens = text.split()
    if not tokens:
        raise EventTextError("empty event text")
    name, *assignments = tokens
    cls = EVENT_TYPES_BY_NAME.get(name)
    if cls is None:
        raise EventTextError(
            f"unknown event {name!r}; known events: {', '.join(sorted(EVENT_TYPES_BY_NAME))}"
        )
    types = _FIELD_TYPES[cls]
    values: dict[str, Any] = {}
    for token in assignments:
        key, sep, raw = token.partition("=")
        if not sep:
            raise EventTextError(f"{name}: expected field=value, got {token!r}")
        if key not in types:
            raise EventTextError(
                f"{name} has no field {key!r}; fields: {', '.join(types)}"
            )
        if key in values:
            raise EventTextError(f"{name}: field {key!r} given twice")
        values[key] = parse_value(types[key], raw, f"{name}.{key}")
    if "session_id" in types and "session_id" not in values and session_id is not None:
        values["session_id"] = session_id
    missing = [
        f.name for f in attrs.fields(cls)
        if f.name not in values and f.default is attrs.NOTHING
    ]
    if missing:
        raise EventTextError(f"{name}: missing field(s) {', '.join(missing)}")
    try:
        event: Event = cls(**values)
    except InvalidEventError as exc:
        raise EventTextError(f"{name}: {exc}") from None
    return event


def _compact_value(name: str, value: object) -> str:
    if name in ("proof", "mac") and isinstance(value, bytes):
        return f"{_HEX}{value[:_PROOF_SHOWN_BYTES].hex()}.."
    return format_value(value)


def format_compact(obj: object, *, session_id: bytes | None = None) -> str:
    """Display form of an event or action: like the canonical form, but without the
    `session_id` field when it equals `session_id`, and with proofs and MACs shortened."""
    cls: Any = type(obj)
    parts = [cls.__name__]
    for f in attrs.fields(cls):
        value = getattr(obj, f.name)
        if f.name == "session_id" and session_id is not None and value == session_id:
            continue
        parts.append(f"{f.name}={_compact_value(f.name, value)}")
    return " ".join(parts)


def format_effect(effect: Effect, *, session_id: bytes | None = None) -> str:
    """Compact, stable text of one effect (display only, never parsed back).

    Audit records: `StateChanged <from> -> <to> reason=<code> v=<version> t=<ms>` and
    `Rejected <code> class=<class> phase=<phase> v=<version> event=<type> t=<ms>`.
    Actions: their fields in order, `session_id` left out when it equals `session_id`.
    """
    if isinstance(effect, StateChanged):
        return (
            f"StateChanged {effect.from_phase.value} -> {effect.to_phase.value} "
            f"reason={effect.reason.value} v={effect.state_version} t={effect.ts_ms}"
        )
    if isinstance(effect, Rejected):
        return (
            f"Rejected {effect.reason.value} class={effect.reason_class.value} "
            f"phase={effect.phase.value} v={effect.state_version} event={effect.event} "
            f"t={effect.ts_ms}"
        )
    return format_compact(effect, session_id=session_id)
