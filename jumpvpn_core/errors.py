"""Typed errors, one family per kind of bad input, and the rule for what a message may say.

Every error the library raises on purpose is a `JumpVpnError`. Decoders raise exactly one
family each (see `specs/bad-input.md`):

* `InvalidTransportError`  a transport descriptor or its `kind:host:port` text;
* `InvalidEventError`      an event, or a record built by hand with values no driver may use;
* `PolicyError`            policy values or a policy record;
* `StateDecodeError`       a plain-data session state (a store record's content);
* `JsonDecodeError`        JSON text itself (syntax, depth, size of integers, duplicates);
* `FormDecodeError`        the JSON form of an event, effect or conformance request.

No message, `repr` or `args` ever holds a value that could be secret. Messages name the
field and describe the offending value by `describe()`: its type and size, never its
content (an integer is shown only when it fits in 64 bits: no secret is that short).
"""

from __future__ import annotations

import re

__all__ = [
    "FormDecodeError",
    "InvalidEventError",
    "InvalidTransportError",
    "JsonDecodeError",
    "JumpVpnError",
    "PolicyError",
    "StateDecodeError",
    "describe",
    "field_name",
]

_U64_MAX = (1 << 64) - 1
# A name is echoed only when it looks like one of our field names or enum values: letters
# and underscores, at most 40 of them. The hex or base64 text of a key or secret does not
# (hex has digits, base64 of a key is longer and has digits or padding).
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z_]{0,39}")


def describe(value: object) -> str:
    """What `value` is, without its content: safe to put in any message.

    >>> describe(b"secret"), describe("x" * 3), describe(7), describe(1 << 80)
    ('bytes of length 6', 'a string of length 3', '7', 'an int of 81 bits')
    """
    if value is None or type(value) is bool:
        return repr(value)
    if type(value) is int:
        return str(value) if -_U64_MAX <= value <= _U64_MAX else \
            f"an int of {value.bit_length()} bits"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"{type(value).__name__} of length {len(value)}"
    if isinstance(value, str):
        return f"a string of length {len(value)}"
    if isinstance(value, list | tuple | dict | set | frozenset):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


def field_name(key: object) -> str:
    """`key` quoted if it looks like a field name or enum value, else a description of it."""
    if isinstance(key, str) and _FIELD_NAME.fullmatch(key):
        return repr(key)
    return f"<{describe(key)}>"


class JumpVpnError(Exception):
    """Base class for every error the library raises on purpose."""


class PolicyError(JumpVpnError, ValueError):
    """A `Policy` was built with invalid values. `problems` lists every one of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("invalid policy: " + "; ".join(problems))


class InvalidTransportError(JumpVpnError, ValueError):
    """A transport descriptor is malformed (unknown kind, bad host, port out of range)."""


class InvalidEventError(JumpVpnError, ValueError):
    """An event was built with values no driver may send (negative time, wrong types)."""


class StateDecodeError(JumpVpnError, ValueError):
    """Plain data could not be turned back into a session state (missing or bad field)."""


class JsonDecodeError(JumpVpnError, ValueError):
    """Text is not JSON the library accepts (see `jumpvpn_core.jsonsafe`)."""


class FormDecodeError(JumpVpnError, ValueError):
    """A JSON form (event, effect, policy, conformance request) is malformed."""
