"""`step(state, event) -> (state, effects)` and `next_deadline(state)`: the sans-IO core.

Shape (after etcd raft's `Step`): `step` runs the checks common to every role and event
(terminated? time backwards? deadlines due?), then hands the event to the handler for the
state's role. Handlers only ever ask `jumpvpn_core.phases` for a transition; they never
pick a target phase themselves.

Contract, for drivers:

* The core never reads a clock, randomness, files, env or the network. Same inputs, same
  outputs, bit for bit.
* Deadlines due at `event.now_ms` fire *before* the event is handled (an expired session
  never accepts a reattach). Deliver `Tick(now)` when `now >= next_deadline(state)`.
* A refused input returns the very same state object (after any due deadline fired) and
  exactly one `Rejected` effect saying why.
* Execute effects in order. Audit records come first in a step's output, actions after.
"""

from __future__ import annotations

from collections.abc import Callable
from hmac import compare_digest
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from jumpvpn_core.effects import (
    BindTransport,
    Effect,
    Rejected,
    SendPathChallenge,
    SendReattachAccept,
    SendReattachRequest,
    SessionEnded,
    StateChanged,
)
from jumpvpn_core.errors import InvalidEventError
from jumpvpn_core.events import (
    EVENT_TYPES,
    AllTransportsFailed,
    Attach,
    CandidateDiscovered,
    CandidateLost,
    Close,
    DeliveryTimeout,
    Evict,
    InboundTraffic,
    OwnershipAmbiguous,
    PacketLoss,
    PathChallengeReceived,
    ReattachAccepted,
    ReattachRequest,
    StoreRecordInvalid,
    Tick,
    TransportFailed,
)
from jumpvpn_core.phases import Phase, Role, transition_target
from jumpvpn_core.policy import Policy
from jumpvpn_core.proof import (
    MessageType,
    compute_proof,
    derive_challenge,
    keyed_mac,
    verify_proof,
)
from jumpvpn_core.reasons import ReasonClass, ReasonCode, reason_class
from jumpvpn_core.replay import ReplayVerdict, check_nonce, mark_nonce
from jumpvpn_core.state import (
    AcceptRecord,
    ClientSide,
    Link,
    PendingPath,
    PendingReattach,
    Roaming,
    ServerSide,
    SessionState,
)
from jumpvpn_core.transport import TransportDescriptor

__all__ = ["StepResult", "advance_time", "next_deadline", "step"]

StepResult = tuple[SessionState, tuple[Effect, ...]]
# What a handler returns. Paths that grow their effects use a list; rejections and no-ops
# return a tuple, which step() hands back without copying.
_Out = tuple[SessionState, list[Effect] | tuple[Effect, ...]]
# What `_transition` and the helpers that extend its effects return.
_ListOut = tuple[SessionState, list[Effect]]
_NO_EFFECTS: tuple[Effect, ...] = ()

_B, _A, _R, _D, _T = (
    Phase.BIRTH,
    Phase.ATTACHED,
    Phase.RECOVERING,
    Phase.DEGRADED,
    Phase.TERMINATED,
)
# Performance: on CPython 3.11, reading a member off an Enum class (`ReasonCode.CLOSED`)
# costs over 100 ns, more than a whole attrs field store. The hot paths therefore read
# members from module constants, or from `_RC`, a plain namespace holding every
# `ReasonCode` member (mypy checks `_RC.X` against `ReasonCode` itself).
if TYPE_CHECKING:
    _RC = ReasonCode
else:
    _RC = SimpleNamespace(**ReasonCode.__members__)
_CLIENT = Role.CLIENT
_SEEN, _TOO_OLD = ReplayVerdict.SEEN, ReplayVerdict.TOO_OLD
_REQUEST, _ACCEPT = MessageType.REATTACH_REQUEST, MessageType.REATTACH_ACCEPT
_SWITCH_WINDOW_MS = 60_000
# Each due deadline moves a deadline forward or ends the session, so a handful of passes
# always drains them; the bound only guards against a bug turning into a hang.
_MAX_TIMER_PASSES = 8


# --- small builders ---------------------------------------------------------------------------


# Performance: a rejection must be cheap (it is what an attacker can make us do at line
# rate), so the reason -> class lookup is a precomputed table instead of two set lookups
# per refused input.
_REASON_CLASS: dict[ReasonCode, ReasonClass] = {code: reason_class(code) for code in ReasonCode}


def _rejected(state: SessionState, event: Any, reason: ReasonCode) -> Rejected:
    ident = state.ident
    return Rejected(
        ident.session_id,
        ident.role,
        reason,
        _REASON_CLASS[reason],
        state.phase,
        state.state_version,
        type(event).__name__,
        event.now_ms,
    )


def _reject(state: SessionState, event: Any, reason: ReasonCode) -> _Out:
    # Performance: `_rejected` written out (one Python call less per refused input), and a
    # one-element tuple that step() passes on as is (no list, no copy).
    ident = state.ident
    return state, (Rejected(ident.session_id, ident.role, reason, _REASON_CLASS[reason],
                            state.phase, state.state_version, type(event).__name__,
                            event.now_ms),)


def _with_clock(link: Link, now: int) -> Link:
    if link.clock_ms == now:
        return link
    return Link(
        link.active,
        link.active_failed,
        link.last_rx_ms,
        link.loss_streak,
        link.loss_start_ms,
        link.heard_in_phase,
        now,
    )


def _same_phase(
    state: SessionState,
    now: int,
    link: Link | None = None,
    roaming: Roaming | None = None,
    side: ServerSide | ClientSide | None = None,
) -> SessionState:
    """A state change that is not a transition: version and phase stay."""
    return SessionState(
        state.ident,
        state.phase,
        state.state_version,
        state.phase_since_ms,
        _with_clock(link if link is not None else state.link, now),
        roaming if roaming is not None else state.roaming,
        side if side is not None else state.side,
        state.end_reason,
    )


def _transition(
    state: SessionState,
    reason: ReasonCode,
    now: int,
    link: Link | None = None,
    roaming: Roaming | None = None,
    side: ServerSide | ClientSide | None = None,
) -> _ListOut:
    """Move to the phase the table gives for `reason`: version + 1, one audit record."""
    to = transition_target(state.phase, reason)
    version = state.state_version + 1
    link = link if link is not None else state.link
    roaming = roaming if roaming is not None else state.roaming
    side = side if side is not None else state.side
    link = Link(
        link.active,
        link.active_failed,
        link.last_rx_ms,
        link.loss_streak,
        link.loss_start_ms,
        False,
        now,
    )
    if to is _R and state.phase is not _R:
        roaming = Roaming(roaming.candidates, roaming.switch_times, roaming.recovery_rounds + 1)
    elif to is _A and roaming.recovery_rounds:
        roaming = Roaming.of(roaming.candidates, roaming.switch_times, 0)
    if to is _T:
        side = _drop_pending(side)
    ident = state.ident
    new = SessionState(ident, to, version, now, link, roaming, side, reason if to is _T else None)
    effects: list[Effect] = [
        StateChanged(ident.session_id, ident.role, state.phase, to, reason, version, now)
    ]
    if to is _T:
        effects.append(SessionEnded(ident.session_id, reason))
    return new, effects


def _drop_pending(side: ServerSide | ClientSide) -> ServerSide | ClientSide:
    if side.pending is None:
        return side
    if isinstance(side, ServerSide):
        return ServerSide(
            side.binding_version,
            side.replay_top,
            side.replay_bits,
            side.verified_times,
            None,
            side.challenge_counter,
            side.last_accept,
        )
    return ClientSide(side.known_version, side.next_nonce, None, side.attempt)


def _switch_refusal(roaming: Roaming, policy: Policy, now: int) -> ReasonCode | None:
    """Anti-flap: cooldown since the last switch, and a sliding per-minute bound."""
    times = roaming.switch_times
    if times and now - times[-1] < policy.switch_cooldown_ms:
        return _RC.SWITCH_COOLDOWN
    limit = policy.max_switches_per_minute
    if len(times) >= limit and now - times[-limit] < _SWITCH_WINDOW_MS:
        return _RC.SWITCH_RATE_EXCEEDED
    return None


def _record_switch(roaming: Roaming, policy: Policy, now: int,
                   candidates: tuple[TransportDescriptor, ...] | None = None) -> Roaming:
    # Only the newest `max_switches_per_minute` times matter: fixed-size history.
    times = (*roaming.switch_times, now)[-policy.max_switches_per_minute:]
    return Roaming.of(
        roaming.candidates if candidates is None else candidates, times, roaming.recovery_rounds
    )


# --- deadlines --------------------------------------------------------------------------------


def next_deadline(state: SessionState) -> int | None:
    """The earliest time at which `Tick` must be delivered, or None once TERMINATED."""
    # Performance: runs on every step, so plain comparisons instead of min() calls.
    phase = state.phase
    if phase is _T:
        return None
    ident = state.ident
    policy = ident.policy
    deadline = ident.created_ms + policy.session_max_lifetime_ms
    if phase is _B:
        bound = state.phase_since_ms + policy.birth_timeout_ms
        if bound < deadline:
            deadline = bound
    else:
        bound = state.link.last_rx_ms + policy.transport_lost_ttl_ms
        if bound < deadline:
            deadline = bound
        if phase is _R:
            bound = state.phase_since_ms + policy.max_recovery_window_ms
            if bound < deadline:
                deadline = bound
        elif phase is _D:
            bound = state.phase_since_ms + policy.max_degraded_ms
            if bound < deadline:
                deadline = bound
    pending = state.side.pending
    if pending is not None and pending.deadline_ms < deadline:
        deadline = pending.deadline_ms
    return deadline


def _fire_one(state: SessionState, now: int) -> _Out:
    """Fire the most important due deadline. Termination bounds come first (§8)."""
    ident = state.ident
    policy = ident.policy
    phase = state.phase
    if now >= ident.created_ms + policy.session_max_lifetime_ms:
        return _transition(state, _RC.SESSION_LIFETIME_EXCEEDED, now)
    if phase is _B:
        if now >= state.phase_since_ms + policy.birth_timeout_ms:
            return _transition(state, _RC.BIRTH_TIMEOUT, now)
    elif now >= state.link.last_rx_ms + policy.transport_lost_ttl_ms:
        return _transition(state, _RC.TRANSPORT_LOST_TTL_EXPIRED, now)
    if phase is _R and now >= state.phase_since_ms + policy.max_recovery_window_ms:
        return _recovery_window_ended(state, now)
    if phase is _D and now >= state.phase_since_ms + policy.max_degraded_ms:
        return _transition(state, _RC.DEGRADED_TIMEOUT, now)
    side = state.side
    if side.pending is not None and now >= side.pending.deadline_ms:
        if isinstance(side, ClientSide):
            return _client_reattach_timed_out(state, side, now)
        return _server_validation_timed_out(state, side, now)
    return state, []


def _recovery_window_ended(state: SessionState, now: int) -> _ListOut:
    link = state.link
    side = _drop_pending(state.side)
    if link.heard_in_phase and link.active is not None and not link.active_failed:
        # §9: a usable but impaired path remains. A client keeps making proof-backed
        # reattach attempts from DEGRADED; only an accepted one leads back to ATTACHED.
        sends: list[Effect] = []
        if isinstance(side, ClientSide):
            side, sends = _client_attempt(state, side, link, state.roaming, now)
        new, effects = _transition(state, _RC.RECOVERY_PARTIAL, now, side=side)
        effects.extend(sends)
        return new, effects
    if not _viable(link, state.roaming):
        return _transition(state, _RC.NO_VIABLE_CANDIDATE, now, side=side)
    return _transition(state, _RC.RECOVERY_WINDOW_EXCEEDED, now, side=side)


def _fire_due(state: SessionState, now: int) -> _ListOut:
    effects: list[Effect] = []
    for _ in range(_MAX_TIMER_PASSES):
        deadline = next_deadline(state)
        if deadline is None or now < deadline:
            break
        new, fired = _fire_one(state, now)
        if new is state:
            break
        state = new
        effects.extend(fired)
    return state, effects


def advance_time(state: SessionState, now_ms: int) -> StepResult:
    """Fire every deadline due at `now_ms`. Equivalent to `step(state, Tick(now_ms))`."""
    return step(state, Tick(now_ms))


# --- the step ---------------------------------------------------------------------------------


def step(state: SessionState, event: Any) -> StepResult:
    """Apply one event. Returns the new state and the effects the driver must execute.

    Raises `InvalidEventError` only for programming errors (an object that is not an event,
    or a state that is not a `SessionState`). Everything an attacker or a network can cause
    comes back as an explicit `Rejected` effect instead.
    """
    # Performance: one dict per role keyed by the event's type. A (role, type) tuple key
    # would be built and hashed on every call, and hashing an enum member runs Python code.
    event_type = type(event)
    if type(state) is not SessionState and not isinstance(state, SessionState):
        raise InvalidEventError(f"step() needs a SessionState, got {type(state).__name__}")
    handlers = _CLIENT_HANDLERS if state.ident.role is _CLIENT else _SERVER_HANDLERS
    handler = handlers.get(event_type)
    if handler is None and event_type not in EVENT_TYPES:
        raise InvalidEventError(f"step() needs an event, got {event_type.__name__}")
    if state.phase is _T:
        return state, (_rejected(state, event, _RC.SESSION_TERMINATED),)
    now = event.now_ms
    if now < state.link.clock_ms:
        return state, (_rejected(state, event, _RC.TIME_WENT_BACKWARDS),)
    deadline = next_deadline(state)
    if deadline is not None and now >= deadline:
        state, prefix = _fire_due(state, now)
        if state.phase is _T and event_type is not Tick:
            prefix.append(_rejected(state, event, _RC.SESSION_TERMINATED))
            return state, tuple(prefix)
        if handler is None:
            return state, (*prefix, _rejected(state, event, _RC.EVENT_NOT_APPLICABLE))
        new, effects = handler(state, event)
        return new, (*prefix, *effects)
    if handler is None:
        return state, (_rejected(state, event, _RC.EVENT_NOT_APPLICABLE),)
    new, effects = handler(state, event)
    # tuple() of a tuple is the tuple itself: rejections and no-ops are not copied.
    return new, tuple(effects)


# --- handlers common to both roles --------------------------------------------------------------


def _on_tick(state: SessionState, event: Tick) -> _Out:
    # Due deadlines already fired in step(); a Tick carries nothing else.
    return state, _NO_EFFECTS


def _terminate_with(reason: ReasonCode) -> Callable[[SessionState, Any], _Out]:
    def handle(state: SessionState, event: Any) -> _Out:
        return _transition(state, reason, event.now_ms)

    handle.__name__ = f"_on_{reason.value.lower()}"
    return handle


def _on_attach(state: SessionState, event: Attach) -> _Out:
    if state.phase is not _B:
        return _reject(state, event, _RC.EVENT_NOT_APPLICABLE)
    now = event.now_ms
    transport = event.transport
    version = state.state_version + 1
    side = state.side
    new_side: ServerSide | ClientSide
    if isinstance(side, ServerSide):
        new_side = ServerSide(version, side.replay_top, side.replay_bits, side.verified_times,
                              None, side.challenge_counter, None)
    else:
        new_side = ClientSide(version, side.next_nonce, None, side.attempt)
    roaming = state.roaming
    if transport in roaming.candidates:
        roaming = Roaming.of(tuple(c for c in roaming.candidates if c != transport),
                          roaming.switch_times, roaming.recovery_rounds)
    link = Link(transport, False, now, 0, now, False, now)
    new, effects = _transition(state, _RC.ATTACH_COMPLETED, now, link, roaming, new_side)
    effects.append(BindTransport(state.ident.session_id, transport, None))
    return new, effects


def _heard_on_active(state: SessionState, now: int) -> Link:
    link = state.link
    if link.last_rx_ms == now and link.clock_ms == now and link.heard_in_phase and \
            not link.loss_streak:
        return link
    return Link(link.active, link.active_failed, now, 0, now, True, now)


def _steady_traffic(state: SessionState, now: int) -> SessionState:
    """Traffic on the active path with nothing else to do: the commonest step of all.

    Performance: builds the new `Link` and `SessionState` directly (what `_heard_on_active`
    plus `_same_phase` would build, without their intermediate calls and checks).
    """
    link = state.link
    if link.last_rx_ms == now and link.clock_ms == now and link.heard_in_phase and \
            not link.loss_streak:
        return state
    return SessionState(state.ident, state.phase, state.state_version, state.phase_since_ms,
                        Link(link.active, link.active_failed, now, 0, now, True, now),
                        state.roaming, state.side, state.end_reason)


# --- client handlers --------------------------------------------------------------------------


def _viable(link: Link, roaming: Roaming) -> tuple[TransportDescriptor, ...]:
    """Transports a reattach may be tried on, in a stable order: active first, then
    candidates in discovery order."""
    if link.active is not None and not link.active_failed:
        return (link.active, *roaming.candidates)
    return roaming.candidates


def _client_attempt(state: SessionState, side: ClientSide, link: Link, roaming: Roaming,
                    now: int) -> tuple[ClientSide, list[Effect]]:
    """Send a reattach request on the next viable transport (round robin), if any."""
    viable = _viable(link, roaming)
    if not viable:
        return ClientSide(side.known_version, side.next_nonce, None, side.attempt), []
    via = viable[side.attempt % len(viable)]
    nonce = side.next_nonce
    ident = state.ident
    proof = compute_proof(ident.control_key, _REQUEST, ident.session_id,
                          nonce, side.known_version, now, via)
    request = SendReattachRequest(via, ident.session_id, nonce, side.known_version, now, via,
                                  b"", proof)
    pending = PendingReattach(request, now + ident.policy.reattach_timeout_ms, 1)
    return ClientSide(side.known_version, nonce + 1, pending, side.attempt + 1), [request]


def _client_enter_recovery(state: SessionState, reason: ReasonCode, now: int, link: Link,
                           roaming: Roaming) -> _ListOut:
    side = state.side
    assert isinstance(side, ClientSide)
    new_side, sends = _client_attempt(state, side, link, roaming, now)
    new, effects = _transition(state, reason, now, link, roaming, new_side)
    effects.extend(sends)
    return new, effects


def _client_reattach_timed_out(state: SessionState, side: ClientSide, now: int) -> _Out:
    pending = side.pending
    assert pending is not None
    policy = state.ident.policy
    link = state.link
    via_usable = (pending.via == link.active and not link.active_failed) or (
        pending.via in state.roaming.candidates
    )
    if (
        via_usable
        and pending.sends <= policy.reattach_retransmits
        and pending.request.timestamp_ms + policy.proof_max_age_ms > now
    ):
        # Re-send the same request: if its accept was lost, only this exact request can
        # get it back (a new one would carry a version the server has moved past).
        again = PendingReattach(pending.request, now + policy.reattach_timeout_ms,
                                pending.sends + 1)
        new_side = ClientSide(side.known_version, side.next_nonce, again, side.attempt)
        return _same_phase(state, now, side=new_side), [pending.request]
    if state.phase is _R or state.phase is _D:
        new_side, sends = _client_attempt(state, side, link, state.roaming, now)
        return _same_phase(state, now, side=new_side), sends
    return _same_phase(state, now, side=_drop_pending(side)), []


def _client_inbound(state: SessionState, event: InboundTraffic) -> _Out:
    if state.phase is _B:
        return _reject(state, event, _RC.EVENT_NOT_APPLICABLE)
    transport = event.transport
    active = state.link.active
    # Performance: identity first. Drivers usually hand back the descriptor object the core
    # gave them, and `is` is far cheaper than the generated field-by-field __eq__.
    if transport is active or transport == active:
        return _steady_traffic(state, event.now_ms), _NO_EFFECTS
    if transport in state.roaming.candidates:
        return state, _NO_EFFECTS  # a candidate is alive; nothing to change until needed
    return _reject(state, event, _RC.UNKNOWN_TRANSPORT)


def _client_loss(state: SessionState, event: PacketLoss) -> _Out:
    phase = state.phase
    if phase is _B:
        return _reject(state, event, _RC.EVENT_NOT_APPLICABLE)
    if phase is not _A:
        return state, []  # already recovering or degraded: more loss changes nothing
    now = event.now_ms
    link = state.link
    policy = state.ident.policy
    if link.loss_streak == 0 or now - link.loss_start_ms > policy.loss_window_ms:
        streak, start = event.count, now
    else:
        streak, start = link.loss_streak + event.count, link.loss_start_ms
    if streak >= policy.loss_threshold:
        reset = Link(link.active, link.active_failed, link.last_rx_ms, 0, now, False, now)
        return _client_enter_recovery(state, _RC.LOSS_THRESHOLD_EXCEEDED, now, reset,
                                      state.roaming)
    new_link = Link(link.active, link.active_failed, link.last_rx_ms, streak, start,
                    link.heard_in_phase, now)
    return _same_phase(state, now, link=new_link), []


def _client_delivery_timeout(state: SessionState, event: DeliveryTimeout) -> _Out:
    if state.phase is _B:
        return _reject(state, event, _RC.EVENT_NOT_APPLICABLE)
    if state.phase is not _A:
        return state, []
    return _client_enter_recovery(state, _RC.DELIVERY_TIMEOUT, event.now_ms, state.link,
                                  state.roaming)


def _client_transport_failed(state: SessionState, event: TransportFailed) -> _Out:
    now = event.now_ms
    transport = event.transport
    roaming = state.roaming
    link = state.link
    if transport in roaming.candidates:
        remaining = tuple(c for c in roaming.candidates if c != transport)
        return _same_phase(state, now, roaming=Roaming.of(remaining, roaming.switch_times,
                                                       roaming.recovery_rounds)), []
    if transport != link.active or link.active_failed:
        return _reject(state, event, _RC.UNKNOWN_TRANSPORT)
    failed = Link(link.active, True, link.last_rx_ms, link.loss_streak, link.loss_start_ms,
                  link.heard_in_phase, now)
    if state.phase is _A:
        return _client_enter_recovery(state, _RC.TRANSPORT_FAILED, now, failed, roaming)
    if state.phase is _D:
        return _transition(state, _RC.TRANSPORT_FAILED, now, failed)
    return _same_phase(state, now, link=failed), []


def _client_collapse(state: SessionState, event: AllTransportsFailed) -> _Out:
    now = event.now_ms
    link = state.link
    failed = Link(link.active, link.active is not None, link.last_rx_ms, link.loss_streak,
                  link.loss_start_ms, link.heard_in_phase, now)
    roaming = Roaming.of((), state.roaming.switch_times, state.roaming.recovery_rounds)
    side = state.side
    assert isinstance(side, ClientSide)
    if state.phase is _A:
        # §7: nothing to try; wait for a candidate until the recovery window ends.
        return _transition(state, _RC.TRANSPORT_COLLAPSE, now, failed, roaming,
                           _drop_pending(side))
    if state.phase is _D:
        return _transition(state, _RC.TRANSPORT_COLLAPSE, now, failed, roaming)
    return _same_phase(state, now, failed, roaming, _drop_pending(side)), []


def _client_candidate_discovered(state: SessionState, event: CandidateDiscovered) -> _Out:
    now = event.now_ms
    transport = event.transport
    link = state.link
    roaming = state.roaming
    policy = state.ident.policy
    if transport == link.active:
        if not link.active_failed:
            return _reject(state, event, _RC.CANDIDATE_ALREADY_KNOWN)
        link = Link(link.active, False, link.last_rx_ms, link.loss_streak, link.loss_start_ms,
                    link.heard_in_phase, now)
    elif transport in roaming.candidates:
        return _reject(state, event, _RC.CANDIDATE_ALREADY_KNOWN)
    elif len(roaming.candidates) >= policy.max_candidates:
        # §5.2: first come, first kept; a discovery beyond the bound is never stored.
        return _reject(state, event, _RC.CANDIDATE_LIMIT_REACHED)
    else:
        roaming = Roaming((*roaming.candidates, transport), roaming.switch_times,
                          roaming.recovery_rounds)
    side = state.side
    assert isinstance(side, ClientSide)
    if state.phase is _D:
        if roaming.recovery_rounds >= policy.max_recovery_rounds:
            return _transition(state, _RC.RECOVERY_ROUNDS_EXCEEDED, now, link, roaming)
        return _client_enter_recovery(state, _RC.CANDIDATE_AVAILABLE, now, link, roaming)
    if state.phase is _R and side.pending is None:
        new_side, sends = _client_attempt(state, side, link, roaming, now)
        return _same_phase(state, now, link, roaming, new_side), sends
    return _same_phase(state, now, link, roaming), []


def _client_candidate_lost(state: SessionState, event: CandidateLost) -> _Out:
    roaming = state.roaming
    if event.transport not in roaming.candidates:
        return _reject(state, event, _RC.UNKNOWN_TRANSPORT)
    remaining = tuple(c for c in roaming.candidates if c != event.transport)
    return _same_phase(state, event.now_ms,
                       roaming=Roaming.of(remaining, roaming.switch_times,
                                       roaming.recovery_rounds)), []


def _client_challenge(state: SessionState, event: PathChallengeReceived) -> _Out:
    if state.phase is _B:
        return _reject(state, event, _RC.EVENT_NOT_APPLICABLE)
    via = event.via
    if via != state.link.active and via not in state.roaming.candidates:
        return _reject(state, event, _RC.UNKNOWN_TRANSPORT)
    side = state.side
    assert isinstance(side, ClientSide)
    ident = state.ident
    now = event.now_ms
    nonce = side.next_nonce
    proof = compute_proof(ident.control_key, _REQUEST, ident.session_id,
                          nonce, side.known_version, now, event.observed, event.challenge)
    request = SendReattachRequest(via, ident.session_id, nonce, side.known_version, now,
                                  event.observed, event.challenge, proof)
    pending = PendingReattach(request, now + ident.policy.reattach_timeout_ms, 1)
    new_side = ClientSide(side.known_version, nonce + 1, pending, side.attempt)
    return _same_phase(state, now, side=new_side), [request]


def _client_accepted(state: SessionState, event: ReattachAccepted) -> _Out:
    if state.phase is _B:
        return _reject(state, event, _RC.EVENT_NOT_APPLICABLE)
    ident = state.ident
    side = state.side
    assert isinstance(side, ClientSide)
    if event.session_id != ident.session_id:
        return _reject(state, event, _RC.SESSION_MISMATCH)
    pending = side.pending
    if event.state_version == side.known_version and event.via == state.link.active and (
        pending is None or event.nonce != pending.nonce
    ):
        # The server re-sent the accept already applied (it does so when a request is
        # retransmitted or replayed). Benign, and it changes nothing.
        return _reject(state, event, _RC.DUPLICATE_ACCEPT)
    if pending is None or event.nonce != pending.nonce or event.via != pending.via:
        return _reject(state, event, _RC.ACCEPT_INVALID)
    if event.state_version <= side.known_version:
        return _reject(state, event, _RC.STALE_STATE_VERSION)
    now = event.now_ms
    link = state.link
    roaming = state.roaming
    switched = event.via != link.active
    if switched:
        refusal = _switch_refusal(roaming, ident.policy, now)
        if refusal is not None:
            return _reject(state, event, refusal)
    if not verify_proof(ident.control_key, event.proof, _ACCEPT,
                        ident.session_id, event.nonce, event.state_version, event.timestamp_ms,
                        event.bound):
        return _reject(state, event, _RC.ACCEPT_INVALID)
    if switched:
        remaining = tuple(c for c in roaming.candidates if c != event.via)
        roaming = _record_switch(roaming, ident.policy, now, remaining)
    new_link = Link(event.via, False, now, 0, now, True, now)
    new_side = ClientSide(event.state_version, side.next_nonce, None, 0)
    new, effects = _transition(state, _RC.REATTACHED, now, new_link, roaming, new_side)
    if switched:
        effects.append(BindTransport(ident.session_id, event.via, link.active))
    return new, effects


# --- server handlers --------------------------------------------------------------------------


def _server_inbound(state: SessionState, event: InboundTraffic) -> _Out:
    phase = state.phase
    if phase is _B:
        return _reject(state, event, _RC.EVENT_NOT_APPLICABLE)
    now = event.now_ms
    source = event.transport
    active = state.link.active
    if source is active or source == active:  # identity first, as in _client_inbound
        if phase is _R and state.side.pending is None:
            # Validation of the other address is over and the old path works: revert.
            return _transition(state, _RC.PATH_REVERTED, now, _heard_on_active(state, now))
        return _steady_traffic(state, now), _NO_EFFECTS
    side = state.side
    assert isinstance(side, ServerSide)
    # Traffic from an address nobody has validated. It never replaces the binding; at most
    # it starts a path validation, and what we send there is capped (amplification).
    policy = state.ident.policy
    pending = side.pending
    if pending is not None:
        if pending.address != source:
            return _reject(state, event, _RC.PATH_VALIDATION_IN_PROGRESS)
        received = pending.bytes_received + event.size
        send = (not pending.challenge_sent and pending.bytes_sent
                + policy.path_challenge_size_bytes <= policy.amplification_factor * received)
        new_pending = PendingPath(
            pending.address,
            pending.challenge,
            pending.deadline_ms,
            received,
            pending.bytes_sent + (policy.path_challenge_size_bytes if send else 0),
            pending.challenge_sent or send,
        )
        new_side = ServerSide(side.binding_version, side.replay_top, side.replay_bits,
                              side.verified_times, new_pending, side.challenge_counter,
                              side.last_accept)
        sends: list[Effect] = (
            [SendPathChallenge(source, state.ident.session_id, pending.challenge)] if send else []
        )
        return _same_phase(state, now, side=new_side), sends
    new_side, sends = _server_open_validation(state, side, source, event.size, 0, now)
    if phase is _A:
        new, effects = _transition(state, _RC.UNEXPECTED_SOURCE_ADDRESS, now, side=new_side)
        effects.extend(sends)
        return new, effects
    return _same_phase(state, now, side=new_side), sends


def _server_open_validation(state: SessionState, side: ServerSide, address: TransportDescriptor,
                            received: int, already_sent: int, now: int,
                            replay: tuple[int, int] | None = None,
                            verified_times: tuple[int, ...] | None = None,
                            ) -> tuple[ServerSide, list[Effect]]:
    ident = state.ident
    policy = ident.policy
    counter = side.challenge_counter + 1
    challenge = derive_challenge(ident.control_key, ident.session_id, counter)
    send = already_sent + policy.path_challenge_size_bytes <= (
        policy.amplification_factor * received
    )
    pending = PendingPath(
        address,
        challenge,
        now + policy.path_validation_timeout_ms,
        received,
        already_sent + (policy.path_challenge_size_bytes if send else 0),
        send,
    )
    top, bits = replay if replay is not None else (side.replay_top, side.replay_bits)
    new_side = ServerSide(
        side.binding_version,
        top,
        bits,
        side.verified_times if verified_times is None else verified_times,
        pending,
        counter,
        side.last_accept,
    )
    sends: list[Effect] = [SendPathChallenge(address, ident.session_id, challenge)] if send else []
    return new_side, sends


def _server_validation_timed_out(state: SessionState, side: ServerSide, now: int) -> _Out:
    cleared = _drop_pending(side)
    if state.phase is _R and state.link.heard_in_phase:
        return _transition(state, _RC.PATH_REVERTED, now, side=cleared)
    return _same_phase(state, now, side=cleared), []


def _server_request(state: SessionState, event: ReattachRequest) -> _Out:
    """§2.3, §3.1-§3.3: cheap checks first, cryptography last, bind only a validated path."""
    if state.phase is _B:
        return _reject(state, event, _RC.EVENT_NOT_APPLICABLE)
    ident = state.ident
    policy = ident.policy
    side = state.side
    assert isinstance(side, ServerSide)
    now = event.now_ms
    if event.session_id != ident.session_id:
        return _reject(state, event, _RC.SESSION_MISMATCH)
    times = side.verified_times
    limit = policy.reattach_rate_limit
    if len(times) >= limit and now - times[-limit] < policy.reattach_rate_window_ms:
        return _reject(state, event, _RC.RATE_LIMITED)
    verdict = check_nonce(side.replay_top, side.replay_bits, policy.replay_window_bits,
                          event.nonce)
    if verdict is _SEEN:
        last = side.last_accept
        if last is not None and event.nonce == last.nonce and compare_digest(
            event.proof, last.request_proof
        ):
            # An exact retransmission of the request behind the current binding: its accept
            # was lost. Still a replay (nothing changes), but re-send the stored accept to
            # the binding itself, never to the packet's source.
            return state, [_rejected(state, event, _RC.REPLAY_DETECTED), last.accept]
        return _reject(state, event, _RC.REPLAY_DETECTED)
    if verdict is _TOO_OLD:
        return _reject(state, event, _RC.NONCE_TOO_OLD)
    version_claimed = event.state_version
    if version_claimed != side.binding_version:
        if version_claimed > side.binding_version:
            return _reject(state, event, _RC.VERSION_AHEAD)
        last = side.last_accept
        # A client that missed the accept behind the current binding still speaks the
        # version it had then; a newer nonce proves the request is not from before it.
        if last is None or event.nonce <= last.nonce or version_claimed < last.request_version:
            return _reject(state, event, _RC.STALE_STATE_VERSION)
    if event.timestamp_ms + policy.proof_max_age_ms < now:
        return _reject(state, event, _RC.PROOF_EXPIRED)
    if event.timestamp_ms > now + policy.max_clock_skew_ms:
        return _reject(state, event, _RC.PROOF_FROM_FUTURE)
    active = state.link.active
    pending = side.pending
    target: TransportDescriptor | None
    received = event.size
    already_sent = 0
    if event.challenge:
        if pending is None or not compare_digest(event.challenge, pending.challenge):
            return _reject(state, event, _RC.CHALLENGE_MISMATCH)
        if event.source != pending.address or event.candidate != pending.address:
            # The proof names one path and the packet came on another: ambiguity (§2.3).
            return _reject(state, event, _RC.AMBIGUOUS_PATH)
        target = pending.address
    elif event.source == active:
        target = active
    else:
        if pending is not None and pending.address != event.source:
            return _reject(state, event, _RC.PATH_VALIDATION_IN_PROGRESS)
        if pending is not None:
            received += pending.bytes_received
            already_sent = pending.bytes_sent
        if already_sent + policy.path_challenge_size_bytes > (
            policy.amplification_factor * received
        ):
            return _reject(state, event, _RC.AMPLIFICATION_LIMITED)
        target = None
    roaming = state.roaming
    switched = target is not None and target != active
    if switched:
        refusal = _switch_refusal(roaming, policy, now)
        if refusal is not None:
            return _reject(state, event, refusal)
    # Only now, with every cheap check passed, spend an HMAC.
    # Keyed once: a verified request on a bound path computes a second proof (the accept)
    # with the same key, and copying a keyed context is cheaper than keying another.
    keyed = keyed_mac(ident.control_key)
    if not verify_proof(ident.control_key, event.proof, _REQUEST,
                        ident.session_id, event.nonce, event.state_version, event.timestamp_ms,
                        event.candidate, event.challenge, keyed):
        return _reject(state, event, _RC.PROOF_INVALID)
    replay = mark_nonce(side.replay_top, side.replay_bits, policy.replay_window_bits,
                        event.nonce)
    new_times = (*times, now)[-limit:]
    if target is None:
        new_side, sends = _server_open_validation(state, side, event.source, received,
                                                  already_sent, now, replay, new_times)
        return _same_phase(state, now, side=new_side), sends
    version = state.state_version + 1
    accept_proof = compute_proof(ident.control_key, _ACCEPT,
                                 ident.session_id, event.nonce, version, now, target,
                                 keyed=keyed)
    accept = SendReattachAccept(target, ident.session_id, event.nonce, version, now,
                                accept_proof)
    bound_side = ServerSide(version, replay[0], replay[1], new_times, None,
                            side.challenge_counter,
                            AcceptRecord(event.nonce, event.state_version, event.proof, accept))
    if switched:
        roaming = _record_switch(roaming, policy, now)
    link = Link(target, False, now, 0, now, True, now)
    new, effects = _transition(state, _RC.REATTACHED, now, link, roaming, bound_side)
    if switched:
        effects.append(BindTransport(ident.session_id, target, active))
    effects.append(accept)
    return new, effects


# --- dispatch table ---------------------------------------------------------------------------

_Handler = Callable[[SessionState, Any], _Out]

_COMMON: dict[type, _Handler] = {
    Tick: _on_tick,
    Attach: _on_attach,
    Close: _terminate_with(_RC.CLOSED),
    OwnershipAmbiguous: _terminate_with(_RC.OWNERSHIP_AMBIGUOUS),
    Evict: _terminate_with(_RC.SESSION_EVICTED),
    StoreRecordInvalid: _terminate_with(_RC.STORE_RECORD_INVALID),
}

_CLIENT_HANDLERS: dict[type, _Handler] = {
    **_COMMON,
    InboundTraffic: _client_inbound,
    PacketLoss: _client_loss,
    DeliveryTimeout: _client_delivery_timeout,
    TransportFailed: _client_transport_failed,
    AllTransportsFailed: _client_collapse,
    CandidateDiscovered: _client_candidate_discovered,
    CandidateLost: _client_candidate_lost,
    PathChallengeReceived: _client_challenge,
    ReattachAccepted: _client_accepted,
}

_SERVER_HANDLERS: dict[type, _Handler] = {
    **_COMMON,
    InboundTraffic: _server_inbound,
    ReattachRequest: _server_request,
}
