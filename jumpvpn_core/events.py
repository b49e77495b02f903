"""Events: everything the world tells the core. Time and entropy arrive only here.

Every event carries `now_ms`, the driver's clock in integer milliseconds. Construction
validates field types and ranges and raises `InvalidEventError`, so a malformed event can
never reach `step()`. Whether an event *makes sense now* (phase, session id, freshness) is
decided by `step()`, which answers with an explicit `Rejected` effect instead of raising.
"""

from __future__ import annotations

from typing import Any, get_args

import attrs

from jumpvpn_core.errors import InvalidEventError, describe
from jumpvpn_core.proof import PROOF_SIZE, SESSION_ID_SIZE, U64_MAX
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "EVENT_TYPES",
    "AllTransportsFailed",
    "Attach",
    "CandidateDiscovered",
    "CandidateLost",
    "Close",
    "DeliveryTimeout",
    "Event",
    "Evict",
    "InboundTraffic",
    "OwnershipAmbiguous",
    "PacketLoss",
    "PathChallengeReceived",
    "ProbeLost",
    "ReattachAccepted",
    "ReattachRequest",
    "RttSample",
    "StoreRecordInvalid",
    "Tick",
    "TransportFailed",
]

def _time(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not int or value < 0 or value > U64_MAX:
        raise InvalidEventError(
            f"{attr.name} must be a non-negative int of milliseconds, got {describe(value)}"
        )


def _u64(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise InvalidEventError(
            f"{attr.name} must be an unsigned 64-bit int, got {describe(value)}")


def _positive(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not int or not 1 <= value <= U64_MAX:
        raise InvalidEventError(f"{attr.name} must be a positive int, got {describe(value)}")


def _size(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not int or not 0 <= value <= 1 << 20:
        raise InvalidEventError(
            f"{attr.name} must be a byte count in 0..1048576, got {describe(value)}")


def _transport(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, TransportDescriptor):
        raise InvalidEventError(f"{attr.name} must be a TransportDescriptor, got {describe(value)}")


#: Largest round-trip sample accepted, in ms (ten minutes: anything slower is no path).
RTT_MAX_MS = 600_000


def _rtt(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not int or not 1 <= value <= RTT_MAX_MS:
        raise InvalidEventError(
            f"{attr.name} must be an int of milliseconds in 1..{RTT_MAX_MS}, "
            f"got {describe(value)}")


def _session_id(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not bytes or len(value) != SESSION_ID_SIZE:
        raise InvalidEventError(
            f"{attr.name} must be {SESSION_ID_SIZE} bytes, got {describe(value)}")


def _proof(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    # Length is checked here; the content is judged by step() (PROOF_INVALID), never raised.
    if type(value) is not bytes or len(value) != PROOF_SIZE:
        raise InvalidEventError(f"{attr.name} must be {PROOF_SIZE} bytes, got {describe(value)}")


def _challenge(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not bytes or len(value) > 255:
        raise InvalidEventError(f"{attr.name} must be at most 255 bytes, got {describe(value)}")


def _nonempty_challenge(inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    _challenge(inst, attr, value)
    if not value:
        raise InvalidEventError(f"{attr.name} must not be empty")




# --- common to both roles -------------------------------------------------------------------


@attrs.frozen
class Tick:
    """Time has passed; fire whatever deadline is due. Deliver at `next_deadline(state)`."""

    now_ms: int = attrs.field(validator=_time)


@attrs.frozen
class Attach:
    """The handshake finished on `transport`: BIRTH -> ATTACHED with that binding."""

    now_ms: int = attrs.field(validator=_time)
    transport: TransportDescriptor = attrs.field(validator=_transport)


@attrs.frozen
class Close:
    """The application ends the session."""

    now_ms: int = attrs.field(validator=_time)


@attrs.frozen
class OwnershipAmbiguous:
    """The driver cannot tell who owns this session (§4.1). The core fails closed."""

    now_ms: int = attrs.field(validator=_time)


@attrs.frozen
class Evict:
    """The session table evicts this session (TTL or capacity, §5.3): it ends, explicitly."""

    now_ms: int = attrs.field(validator=_time)


@attrs.frozen
class StoreRecordInvalid:
    """The stored copy of this session failed to decode or to pass an invariant: fail closed."""

    now_ms: int = attrs.field(validator=_time)


@attrs.frozen
class InboundTraffic:
    """Authenticated traffic arrived.

    Client: `transport` is the local transport it arrived on. Server: `transport` is the
    source address the datagram came from (which nobody has verified yet).
    """

    now_ms: int = attrs.field(validator=_time)
    transport: TransportDescriptor = attrs.field(validator=_transport)
    size: int = attrs.field(default=0, validator=_size)


# --- client only ----------------------------------------------------------------------------


@attrs.frozen
class PacketLoss:
    """The driver's loss detector saw `count` more consecutive packets lost (§2.1)."""

    now_ms: int = attrs.field(validator=_time)
    count: int = attrs.field(default=1, validator=_positive)


@attrs.frozen
class DeliveryTimeout:
    """Nothing was acknowledged for the driver's delivery timeout (§2.2)."""

    now_ms: int = attrs.field(validator=_time)


@attrs.frozen
class TransportFailed:
    """A local transport is gone (socket error, interface down)."""

    now_ms: int = attrs.field(validator=_time)
    transport: TransportDescriptor = attrs.field(validator=_transport)


@attrs.frozen
class AllTransportsFailed:
    """Every local transport failed at once (§7)."""

    now_ms: int = attrs.field(validator=_time)


@attrs.frozen
class CandidateDiscovered:
    """A new local transport could carry the session (§5.2: stored only within the bound)."""

    now_ms: int = attrs.field(validator=_time)
    transport: TransportDescriptor = attrs.field(validator=_transport)


@attrs.frozen
class CandidateLost:
    """A stored candidate went away."""

    now_ms: int = attrs.field(validator=_time)
    transport: TransportDescriptor = attrs.field(validator=_transport)


@attrs.frozen
class RttSample:
    """A probe or packet sent on `transport` was answered after `rtt_ms` (path quality).

    `transport` is the local transport: the active one or a stored candidate. A sample
    below 1 ms is reported as 1. Samples only rank paths and may start a proactive
    migration to a better one (`specs/path-quality.md`); loss *detection* on the active
    path stays with `PacketLoss` and `DeliveryTimeout`.
    """

    now_ms: int = attrs.field(validator=_time)
    transport: TransportDescriptor = attrs.field(validator=_transport)
    rtt_ms: int = attrs.field(validator=_rtt)


@attrs.frozen
class ProbeLost:
    """A probe or packet sent on `transport` went unanswered (path quality).

    Counts toward the path's smoothed loss (`specs/path-quality.md`); it does not extend
    the active path's loss streak, which only `PacketLoss` does.
    """

    now_ms: int = attrs.field(validator=_time)
    transport: TransportDescriptor = attrs.field(validator=_transport)


@attrs.frozen
class PathChallengeReceived:
    """A path challenge arrived on `via`; the server says it sees this client as `observed`.

    `mac` authenticates it (see `proof.challenge_mac`): `nonce` names the client's request
    the challenge answers (0: the server opened the validation on traffic alone),
    `state_version` is the server's binding version and `timestamp_ms` its clock when it
    sent the challenge. Only a challenge whose MAC verifies can change anything.
    """

    now_ms: int = attrs.field(validator=_time)
    via: TransportDescriptor = attrs.field(validator=_transport)
    challenge: bytes = attrs.field(validator=_nonempty_challenge)
    observed: TransportDescriptor = attrs.field(validator=_transport)
    nonce: int = attrs.field(validator=_u64)
    state_version: int = attrs.field(validator=_u64)
    timestamp_ms: int = attrs.field(validator=_time)
    mac: bytes = attrs.field(validator=_proof)


@attrs.frozen
class ReattachAccepted:
    """The server accepted reattach `nonce` and bound `bound` at its `state_version`."""

    now_ms: int = attrs.field(validator=_time)
    via: TransportDescriptor = attrs.field(validator=_transport)
    session_id: bytes = attrs.field(validator=_session_id)
    nonce: int = attrs.field(validator=_positive)
    state_version: int = attrs.field(validator=_u64)
    timestamp_ms: int = attrs.field(validator=_time)
    bound: TransportDescriptor = attrs.field(validator=_transport)
    proof: bytes = attrs.field(validator=_proof)


# --- server only ----------------------------------------------------------------------------


@attrs.frozen
class ReattachRequest:
    """A reattach request arrived from `source` (unverified) asking to bind `candidate`.

    `challenge` is empty for a client-initiated request and echoes the server's path
    challenge when the request answers one.
    """

    now_ms: int = attrs.field(validator=_time)
    source: TransportDescriptor = attrs.field(validator=_transport)
    session_id: bytes = attrs.field(validator=_session_id)
    nonce: int = attrs.field(validator=_positive)
    state_version: int = attrs.field(validator=_u64)
    timestamp_ms: int = attrs.field(validator=_time)
    candidate: TransportDescriptor = attrs.field(validator=_transport)
    proof: bytes = attrs.field(validator=_proof)
    challenge: bytes = attrs.field(default=b"", validator=_challenge)
    size: int = attrs.field(default=0, validator=_size)


Event = (
    Tick
    | Attach
    | Close
    | OwnershipAmbiguous
    | Evict
    | StoreRecordInvalid
    | InboundTraffic
    | PacketLoss
    | DeliveryTimeout
    | TransportFailed
    | AllTransportsFailed
    | CandidateDiscovered
    | CandidateLost
    | PathChallengeReceived
    | ReattachAccepted
    | ReattachRequest
    | RttSample
    | ProbeLost
)

EVENT_TYPES: tuple[type, ...] = get_args(Event)
"""Every event class, in the order of the `Event` union."""
