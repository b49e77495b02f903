"""Store records of server sessions: how a state is written to a store and read back.

Record content is `json.dumps(state_to_data(state, include_secrets=True), sort_keys=True)`:
the store is trusted with the session's control key. A record that does not decode, holds
a client state or another session's state, or fails `check_state` is never repaired:
`decode_record` raises `RecordInvalidError`, which never carries a secret.
"""

from __future__ import annotations

import json

from jumpvpn_core import jsonsafe
from jumpvpn_core.codec import state_from_data, state_to_data
from jumpvpn_core.errors import JumpVpnError
from jumpvpn_core.invariants import check_state
from jumpvpn_core.phases import Role
from jumpvpn_core.state import SessionState
from jumpvpn_core.stores.base import StoredSession

__all__ = [
    "DECODER_ERRORS",
    "FIRST_VERSION",
    "RecordInvalidError",
    "decode_record",
    "encode_state",
]

#: Store version of a session's first commit (its creation).
FIRST_VERSION = 1

#: What a decoder may raise on a hostile or damaged record. The decoders' own family is
#: `JumpVpnError`; `ValueError` covers CPython's integer-digit limit and other bare value
#: errors, `RecursionError` deeply nested JSON, `TypeError`/`KeyError`/`AttributeError`
#: a record of the wrong shape, `UnicodeError` bytes that are not text. Caught defensively
#: so that one bad record can never abort a node; none of them is ever re-raised.
DECODER_ERRORS: tuple[type[BaseException], ...] = (
    JumpVpnError, ValueError, RecursionError, TypeError, KeyError, AttributeError,
    UnicodeError, OverflowError, IndexError,
)


class RecordInvalidError(JumpVpnError, ValueError):
    """A store record failed to decode or to pass `check_state`. Never carries secrets."""


def encode_state(state: SessionState) -> bytes:
    """Store record content of `state` (includes the control key: the store is trusted)."""
    return json.dumps(state_to_data(state, include_secrets=True), sort_keys=True).encode()


def decode_record(record: StoredSession) -> SessionState:
    """The server state in `record`, or `RecordInvalidError` saying what was wrong.

    Whatever the decoders raise on the record's content (see `DECODER_ERRORS`) becomes a
    `RecordInvalidError`. The library's own decoder errors (`JumpVpnError`) name the field
    and never a value (`specs/bad-input.md`), so their message is kept; any other error is
    named by its type only, since its message could echo key material.
    """
    try:
        state = state_from_data(jsonsafe.loads(record.data))
    except JumpVpnError as exc:
        raise RecordInvalidError(f"record does not decode: {type(exc).__name__}: {exc}"
                                 ) from None
    except DECODER_ERRORS as exc:
        raise RecordInvalidError(f"record does not decode: {type(exc).__name__}") from None
    if state.role is not Role.SERVER:
        raise RecordInvalidError("record holds a client state")
    if state.session_id != record.session_id:
        raise RecordInvalidError("record holds another session's state")
    try:
        violations = check_state(state)
    except DECODER_ERRORS as exc:
        raise RecordInvalidError(f"record fails check_state: {type(exc).__name__}") from None
    if violations:
        raise RecordInvalidError("record fails check_state: " + "; ".join(map(str, violations)))
    return state
