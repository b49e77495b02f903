"""Session state: frozen, slotted records, grouped by how often they change.

A `SessionState` is a small record of references to sub-records. The groups are chosen so
that the commonest step (traffic on the active path) rebuilds only the two smallest
records; everything else is shared with the previous state. Nothing here is ever mutated.

* `Identity`  never changes: role, session id, control key (secret), policy, creation time.
* `Link`      the active binding and its liveness: changes on traffic and loss.
* `Roaming`   candidates, switch history, recovery rounds: changes on path events.
* `ServerSide` / `ClientSide`  the role's own protocol state (replay window, pending
  validation; nonces, pending reattach).
"""

from __future__ import annotations

from typing import Any

import attrs

from jumpvpn_core.effects import SendReattachAccept, SendReattachRequest
from jumpvpn_core.errors import InvalidEventError, describe
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.proof import CONTROL_KEY_SIZE, SESSION_ID_SIZE, U64_MAX, derive_control_key
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.records import fast_init
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "EMPTY_ROAMING",
    "AcceptRecord",
    "ClientSide",
    "Identity",
    "Link",
    "PathScore",
    "PendingPath",
    "PendingReattach",
    "Roaming",
    "ServerSide",
    "SessionState",
    "new_session",
]





def _check_role(_inst: object, _attr: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Role):
        raise InvalidEventError(f"role must be a Role, got {describe(value)}")


def _check_session_id(_inst: object, _attr: attrs.Attribute[Any], value: Any) -> None:
    if type(value) is not bytes or len(value) != SESSION_ID_SIZE:
        raise InvalidEventError(f"session_id must be {SESSION_ID_SIZE} bytes, "
                                f"got {describe(value)}")


def _check_control_key(_inst: object, _attr: attrs.Attribute[Any], value: Any) -> None:
    # A str of the right length would otherwise be accepted and fail inside the first HMAC.
    if type(value) is not bytes or len(value) != CONTROL_KEY_SIZE:
        raise InvalidEventError(f"control_key must be {CONTROL_KEY_SIZE} bytes, "
                                f"got {describe(value)}")


def _check_policy(_inst: object, _attr: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, Policy):
        raise InvalidEventError(f"policy must be a Policy, got {describe(value)}")


def _check_time(_inst: object, _attr: attrs.Attribute[Any], value: Any) -> None:
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise InvalidEventError(
            f"created_ms must be a non-negative int of milliseconds, got {describe(value)}")


@attrs.frozen
class Identity:
    """What a session is. Never changes after creation (the session is the anchor).

    Construction validates every field (`InvalidEventError`): the control key in particular
    must be 32 bytes, never a string that would only fail at the first proof.
    """

    role: Role = attrs.field(validator=_check_role)
    session_id: bytes = attrs.field(validator=_check_session_id)
    control_key: bytes = attrs.field(repr=False, validator=_check_control_key)
    policy: Policy = attrs.field(repr=False, validator=_check_policy)
    created_ms: int = attrs.field(validator=_check_time)


@fast_init  # hot path: built on every step (see jumpvpn_core.records)
@attrs.frozen
class Link:
    """The active binding and what the core knows of its health.

    `clock_ms` is the time of the latest event that changed the state; an event older than
    it is rejected with TIME_WENT_BACKWARDS. `heard_in_phase` records whether the active
    transport delivered traffic since the current phase began (partial viability, §9).
    """

    active: TransportDescriptor | None
    active_failed: bool
    last_rx_ms: int
    loss_streak: int
    loss_start_ms: int
    heard_in_phase: bool
    clock_ms: int


@fast_init  # hot path: built on every step (see jumpvpn_core.records)
@attrs.frozen
class Roaming:
    """Candidate paths, switch history and recovery rounds: all bounded by policy."""

    candidates: tuple[TransportDescriptor, ...]
    switch_times: tuple[int, ...]
    recovery_rounds: int

    @classmethod
    def of(cls, candidates: tuple[TransportDescriptor, ...], switch_times: tuple[int, ...],
           recovery_rounds: int) -> Roaming:
        """`Roaming(...)`, except that the empty record is the one shared `EMPTY_ROAMING`."""
        if not candidates and not switch_times and not recovery_rounds:
            return EMPTY_ROAMING
        return cls(candidates, switch_times, recovery_rounds)


# Memory: every server session and most clients have no candidates, no switch history and
# no recovery round under way. They all share this one immutable record instead of
# carrying their own (64 B each). It compares equal to any other empty `Roaming`.
EMPTY_ROAMING = Roaming((), (), 0)


@fast_init  # hot path: built on every step (see jumpvpn_core.records)
@attrs.frozen
class PendingPath:
    """Server: a path challenge in flight to an unvalidated address (§2.3).

    `request_nonce` is the nonce of the verified reattach request that opened the
    validation, or 0 when traffic nobody has proven opened it. A validation opened by
    unproven traffic never blocks a proof-backed reattach: a verified request from another
    address pre-empts it (see `specs/events.md`). One opened by a verified request is never
    pre-empted by unproven traffic.
    """

    address: TransportDescriptor
    challenge: bytes
    deadline_ms: int
    bytes_received: int
    bytes_sent: int
    challenge_sent: bool
    request_nonce: int


@fast_init  # hot path: built on every step (see jumpvpn_core.records)
@attrs.frozen
class AcceptRecord:
    """Server: the accept that produced the current binding, and the request it answered.

    If that exact request arrives again (same nonce and proof bytes, compared without any
    cryptography), it is still rejected as a replay, but the stored accept is re-sent to
    the current binding, never to the packet's source: a lost accept can be recovered and
    a replaying attacker learns nothing and moves nothing.

    `nonce` and `request_version` also define what "stale" means (§3.3): a client's nonces
    and known versions only grow, so a request with a newer nonce may lag behind the
    binding version (the client missed this accept) but may never claim a version older
    than `request_version`, which the client had already used.
    """

    nonce: int
    request_version: int
    request_proof: bytes
    accept: SendReattachAccept


@fast_init  # hot path: built on every step (see jumpvpn_core.records)
@attrs.frozen
class ServerSide:
    """Server protocol state.

    `binding_version` is the `state_version` at which the active binding was committed; a
    reattach request must carry exactly it (older: STALE_STATE_VERSION, newer:
    VERSION_AHEAD). `verified_times` holds the times of the latest verified requests, at
    most `policy.reattach_rate_limit` of them (per-session rate limit, §3.1).
    """

    binding_version: int
    replay_top: int
    replay_bits: int
    verified_times: tuple[int, ...]
    pending: PendingPath | None
    challenge_counter: int
    last_accept: AcceptRecord | None


@fast_init  # hot path: built on every step (see jumpvpn_core.records)
@attrs.frozen
class PendingReattach:
    """Client: a reattach request in flight, kept whole so it can be re-sent unchanged.

    Re-sending the very same request (same nonce, version and proof) is what lets a client
    recover from a lost accept: the server answers an exact retransmission of the request
    that produced its current binding by re-sending that accept (see `AcceptRecord`).
    """

    request: SendReattachRequest
    deadline_ms: int
    sends: int

    @property
    def nonce(self) -> int:
        """The request's nonce."""
        return self.request.nonce

    @property
    def via(self) -> TransportDescriptor:
        """The local transport the request went out on."""
        return self.request.via

    @property
    def candidate(self) -> TransportDescriptor:
        """The path the request asks to be bound."""
        return self.request.candidate


@fast_init  # built on every quality sample (see jumpvpn_core.records)
@attrs.frozen
class PathScore:
    """Client: what the measurements of one local path say (`specs/path-quality.md`).

    `srtt_ms` is the smoothed round-trip time (0 until a first `RttSample`), `loss_q16`
    the smoothed probe loss in 1/65536 (65536: every probe lost), `updated_ms` the time of
    the latest sample. Integers only: every client computes the same ranking, bit for bit.
    """

    transport: TransportDescriptor
    srtt_ms: int
    loss_q16: int
    updated_ms: int


@fast_init  # hot path: built on every step (see jumpvpn_core.records)
@attrs.frozen
class ClientSide:
    """Client protocol state. `known_version` is the server's binding version as last told.

    `quality` holds one `PathScore` per measured path (at most `max_candidates + 1`).
    `better` is the candidate that beat the active path by the migration margin at the
    latest evaluation, continuously since `better_since_ms` (None and 0 when none did):
    the hysteresis of proactive migration.
    """

    known_version: int
    next_nonce: int
    pending: PendingReattach | None
    attempt: int
    quality: tuple[PathScore, ...]
    better: TransportDescriptor | None
    better_since_ms: int


@fast_init  # hot path: built on every step (see jumpvpn_core.records)
@attrs.frozen
class SessionState:
    """One session, one role. Replace, never mutate: `step()` returns a new one."""

    ident: Identity
    phase: Phase
    state_version: int
    phase_since_ms: int
    link: Link
    roaming: Roaming
    side: ServerSide | ClientSide
    end_reason: ReasonCode | None

    @property
    def session_id(self) -> bytes:
        """The session id (16 bytes)."""
        return self.ident.session_id

    @property
    def role(self) -> Role:
        """Client or server."""
        return self.ident.role

    @property
    def policy(self) -> Policy:
        """The bounds this session runs under."""
        return self.ident.policy

    @property
    def active(self) -> TransportDescriptor | None:
        """The transport currently bound, if any."""
        return self.link.active


def new_session(
    role: Role,
    session_id: bytes,
    session_secret: bytes,
    now_ms: int,
    policy: Policy | None = None,
) -> SessionState:
    """Create a session in BIRTH at `state_version` 0.

    `session_id` (16 bytes) and `session_secret` (>= 16 bytes, from the embedder's
    authenticated handshake) are the only entropy the session ever needs.
    """
    if not isinstance(role, Role):
        raise InvalidEventError(f"role must be a Role, got {describe(role)}")
    if type(session_id) is not bytes or len(session_id) != SESSION_ID_SIZE:
        raise InvalidEventError(f"session_id must be {SESSION_ID_SIZE} bytes, "
                                f"got {describe(session_id)}")
    if type(session_secret) is not bytes or len(session_secret) < 16:
        raise InvalidEventError("session_secret must be at least 16 bytes, "
                                f"got {describe(session_secret)}")
    if type(now_ms) is not int or not 0 <= now_ms <= U64_MAX:
        raise InvalidEventError(f"now_ms must be a non-negative int, got {describe(now_ms)}")
    policy = policy if policy is not None else Policy()
    if not isinstance(policy, Policy):
        raise InvalidEventError(f"policy must be a Policy, got {type(policy).__name__}")
    side: ServerSide | ClientSide
    side = (
        ServerSide(0, 0, 0, (), None, 0, None) if role is Role.SERVER
        else ClientSide(0, 1, None, 0, (), None, 0)
    )
    return SessionState(
        ident=Identity(role, session_id, derive_control_key(session_secret, session_id),
                       policy, now_ms),
        phase=Phase.BIRTH,
        state_version=0,
        phase_since_ms=now_ms,
        link=Link(None, False, now_ms, 0, now_ms, False, now_ms),
        roaming=EMPTY_ROAMING,
        side=side,
        end_reason=None,
    )
