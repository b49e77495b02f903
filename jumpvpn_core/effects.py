"""Effects: everything the core asks the world to do, in the order it must be done.

Two kinds:

* audit records (`StateChanged`, `Rejected`): exactly one `StateChanged` per transition and
  exactly one `Rejected` per refused input. Their `to_record()` dicts are the JSONL audit
  trace format, specified in `specs/audit-records.md` (a public, versioned contract).
* actions (`SendReattachRequest`, `SendPathChallenge`, `SendReattachAccept`,
  `BindTransport`, `SessionEnded`): what the driver must put on the wire or change.

Effects never contain key material. Proofs and challenges are not secret: they are sent
in the clear by design.
"""

from __future__ import annotations

from typing import Any

import attrs

from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.reasons import ReasonClass, ReasonCode
from jumpvpn_core.records import fast_init
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "AUDIT_RECORD_VERSION",
    "AuditEffect",
    "BindTransport",
    "Effect",
    "Rejected",
    "SendPathChallenge",
    "SendReattachAccept",
    "SendReattachRequest",
    "SessionEnded",
    "StateChanged",
]

#: Version of the audit record format (`to_record()` keys and meanings). 2: a reject of a
#: reattach request or accept carries its `nonce` and `request_version`.
AUDIT_RECORD_VERSION = 2



@fast_init  # hot path: built on every step (see jumpvpn_core.records)
@attrs.frozen
class StateChanged:
    """Audit: one transition. `state_version` is the version *after* the transition."""

    session_id: bytes
    role: Role
    from_phase: Phase
    to_phase: Phase
    reason: ReasonCode
    state_version: int
    ts_ms: int

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready audit record."""
        return {
            "v": AUDIT_RECORD_VERSION,
            "type": "state_change",
            "session_id": self.session_id.hex(),
            "role": self.role.value,
            "from": self.from_phase.value,
            "to": self.to_phase.value,
            "reason": self.reason.value,
            "state_version": self.state_version,
            "ts_ms": self.ts_ms,
        }


@fast_init  # hot path: built on every step (see jumpvpn_core.records)
@attrs.frozen
class Rejected:
    """Audit: one refused input. The state after the step is the state before it.

    `nonce` and `request_version` are the refused event's own `nonce` and `state_version`
    when it has them (`ReattachRequest`, `ReattachAccepted`), so a refusal can be matched
    to the request it refused; None for every other event.
    """

    session_id: bytes
    role: Role
    reason: ReasonCode
    reason_class: ReasonClass
    phase: Phase
    state_version: int
    event: str
    ts_ms: int
    nonce: int | None
    request_version: int | None

    @property
    def security_event(self) -> bool:
        """True when the rejection is a SECURITY_EVENT (§3.2)."""
        return self.reason_class is ReasonClass.SECURITY_EVENT

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready audit record."""
        record: dict[str, Any] = {
            "v": AUDIT_RECORD_VERSION,
            "type": "reject",
            "class": self.reason_class.value,
            "session_id": self.session_id.hex(),
            "role": self.role.value,
            "reason": self.reason.value,
            "phase": self.phase.value,
            "state_version": self.state_version,
            "event": self.event,
            "ts_ms": self.ts_ms,
        }
        if self.nonce is not None:
            record["nonce"] = self.nonce
            record["request_version"] = self.request_version
        return record


AuditEffect = StateChanged | Rejected


@fast_init  # hot path: built on every step (see jumpvpn_core.records)
@attrs.frozen
class SendReattachRequest:
    """Client: send a reattach request through local transport `via`."""

    via: TransportDescriptor
    session_id: bytes
    nonce: int
    state_version: int
    timestamp_ms: int
    candidate: TransportDescriptor
    challenge: bytes
    proof: bytes


@fast_init  # hot path: built on every step (see jumpvpn_core.records)
@attrs.frozen
class SendPathChallenge:
    """Server: send `challenge` to the unvalidated address `to` (it is the observed address).

    `mac` (`proof.challenge_mac` over the session id, `nonce`, `state_version`,
    `timestamp_ms`, `to` and `challenge`) lets the client tell it from a spoofed one.
    `nonce` is the nonce of the verified request that opened the validation, 0 when
    unproven traffic opened it; `state_version` is the server's binding version.
    """

    to: TransportDescriptor
    session_id: bytes
    challenge: bytes
    nonce: int
    state_version: int
    timestamp_ms: int
    mac: bytes


@fast_init  # hot path: built on every step (see jumpvpn_core.records)
@attrs.frozen
class SendReattachAccept:
    """Server: tell the client at `to` that reattach `nonce` bound it at `state_version`."""

    to: TransportDescriptor
    session_id: bytes
    nonce: int
    state_version: int
    timestamp_ms: int
    proof: bytes


@fast_init  # hot path: built on every step (see jumpvpn_core.records)
@attrs.frozen
class BindTransport:
    """Route the session's traffic through `transport` from now on (`previous` is released)."""

    session_id: bytes
    transport: TransportDescriptor
    previous: TransportDescriptor | None


@fast_init  # hot path: built on every step (see jumpvpn_core.records)
@attrs.frozen
class SessionEnded:
    """The session is TERMINATED: tear down its transports and forget its keys."""

    session_id: bytes
    reason: ReasonCode


Effect = (
    StateChanged
    | Rejected
    | SendReattachRequest
    | SendPathChallenge
    | SendReattachAccept
    | BindTransport
    | SessionEnded
)
