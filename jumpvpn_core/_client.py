"""The client's handlers: loss, timeouts, failures, candidates, challenges, accepts.

Each takes `(state, event)` and returns `(state, effects)`; `machine.step` dispatches to
them after the checks common to every event. Private: nothing here is public API.
"""

from __future__ import annotations

from jumpvpn_core._kernel import (
    ACCEPT,
    NO_EFFECTS,
    RC,
    REQUEST,
    A,
    B,
    D,
    ListOut,
    Out,
    R,
    drop_pending,
    link_heard,
    link_with_failed,
    link_with_loss,
    record_switch,
    reject,
    same_phase,
    steady_traffic,
    switch_refusal,
    transition,
)
from jumpvpn_core.effects import (
    BindTransport,
    Effect,
    SendReattachRequest,
)
from jumpvpn_core.events import (
    AllTransportsFailed,
    CandidateDiscovered,
    CandidateLost,
    DeliveryTimeout,
    InboundTraffic,
    PacketLoss,
    PathChallengeReceived,
    ProbeLost,
    ReattachAccepted,
    RttSample,
    TransportFailed,
)
from jumpvpn_core.proof import (
    compute_proof,
    verify_challenge_mac,
    verify_proof,
)
from jumpvpn_core.quality import migration_due, ranked, sampled, upgrade_target
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.state import (
    ClientSide,
    Link,
    PendingReattach,
    Roaming,
    SessionState,
)
from jumpvpn_core.transport import TransportDescriptor


def viable_paths(link: Link, roaming: Roaming) -> tuple[TransportDescriptor, ...]:
    """Transports a reattach may be tried on, in a stable order: active first (unless
    failed), then candidates in discovery order. `client_attempt` ranks them by quality."""
    if link.active is not None and not link.active_failed:
        return (link.active, *roaming.candidates)
    return roaming.candidates


def client_attempt(state: SessionState, side: ClientSide, link: Link, roaming: Roaming,
                    now: int) -> tuple[ClientSide, list[Effect]]:
    """Send a reattach request on the next viable transport, if any: attempt `n` goes to
    the `n`-th (cyclically) of the viable paths ranked best first (`quality.ranked`)."""
    viable = viable_paths(link, roaming)
    if not viable:
        return ClientSide(side.known_version, side.next_nonce, None, side.attempt,
                          side.quality, side.better, side.better_since_ms), []
    viable = ranked(viable, side.quality, state.ident.policy, now)
    via = viable[side.attempt % len(viable)]
    nonce = side.next_nonce
    ident = state.ident
    proof = compute_proof(ident.control_key, REQUEST, ident.session_id,
                          nonce, side.known_version, now, via)
    request = SendReattachRequest(via, ident.session_id, nonce, side.known_version, now, via,
                                  b"", proof)
    pending = PendingReattach(request, now + ident.policy.reattach_timeout_ms, 1)
    return ClientSide(side.known_version, nonce + 1, pending, side.attempt + 1, side.quality,
                      side.better, side.better_since_ms), [request]


def enter_recovery(state: SessionState, reason: ReasonCode, now: int, link: Link,
                           roaming: Roaming) -> ListOut:
    side = state.side
    assert isinstance(side, ClientSide)
    new_side, sends = client_attempt(state, side, link, roaming, now)
    new, effects = transition(state, reason, now, link, roaming, new_side)
    effects.extend(sends)
    return new, effects


def reattach_timed_out(state: SessionState, side: ClientSide, now: int) -> Out:
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
        new_side = ClientSide(side.known_version, side.next_nonce, again, side.attempt,
                              side.quality, side.better, side.better_since_ms)
        return same_phase(state, now, side=new_side), [pending.request]
    if state.phase is R or state.phase is D:
        new_side, sends = client_attempt(state, side, link, state.roaming, now)
        return same_phase(state, now, side=new_side), sends
    # ATTACHED: a migration (or an answer to the server's challenge) went unanswered. The
    # hysteresis starts over: the next sample must find a better path again and wait out
    # a whole dwell time before another migration is tried.
    return same_phase(state, now, side=ClientSide(side.known_version, side.next_nonce, None,
                                                  side.attempt, side.quality, None, 0)), []


def client_inbound(state: SessionState, event: InboundTraffic) -> Out:
    if state.phase is B:
        return reject(state, event, RC.EVENT_NOT_APPLICABLE)
    transport = event.transport
    active = state.link.active
    # Performance: identity first. Drivers usually hand back the descriptor object the core
    # gave them, and `is` is far cheaper than the generated field-by-field __eq__.
    if transport is active or transport == active:
        return steady_traffic(state, event.now_ms), NO_EFFECTS
    if transport in state.roaming.candidates:
        return state, NO_EFFECTS  # a candidate is alive; nothing to change until needed
    return reject(state, event, RC.UNKNOWN_TRANSPORT)


def client_loss(state: SessionState, event: PacketLoss) -> Out:
    phase = state.phase
    if phase is B:
        return reject(state, event, RC.EVENT_NOT_APPLICABLE)
    if phase is not A:
        return state, []  # already recovering or degraded: more loss changes nothing
    now = event.now_ms
    link = state.link
    policy = state.ident.policy
    if link.loss_streak == 0 or now - link.loss_start_ms > policy.loss_window_ms:
        streak, start = event.count, now
    else:
        streak, start = link.loss_streak + event.count, link.loss_start_ms
    if streak >= policy.loss_threshold:
        reset = link_with_loss(link, 0, now, False, now)
        return enter_recovery(state, RC.LOSS_THRESHOLD_EXCEEDED, now, reset,
                                      state.roaming)
    new_link = link_with_loss(link, streak, start, link.heard_in_phase, now)
    return same_phase(state, now, link=new_link), []


def client_delivery_timeout(state: SessionState, event: DeliveryTimeout) -> Out:
    if state.phase is B:
        return reject(state, event, RC.EVENT_NOT_APPLICABLE)
    if state.phase is not A:
        return state, []
    return enter_recovery(state, RC.DELIVERY_TIMEOUT, event.now_ms, state.link,
                                  state.roaming)


def client_transport_failed(state: SessionState, event: TransportFailed) -> Out:
    now = event.now_ms
    transport = event.transport
    roaming = state.roaming
    link = state.link
    if transport in roaming.candidates:
        remaining = tuple(c for c in roaming.candidates if c != transport)
        return same_phase(state, now, roaming=Roaming.of(remaining, roaming.switch_times,
                                                       roaming.recovery_rounds)), []
    if transport != link.active or link.active_failed:
        return reject(state, event, RC.UNKNOWN_TRANSPORT)
    failed = link_with_failed(link, True, now)
    if state.phase is A:
        return enter_recovery(state, RC.TRANSPORT_FAILED, now, failed, roaming)
    if state.phase is D:
        return transition(state, RC.TRANSPORT_FAILED, now, failed)
    return same_phase(state, now, link=failed), []


def client_collapse(state: SessionState, event: AllTransportsFailed) -> Out:
    now = event.now_ms
    link = state.link
    failed = link_with_failed(link, link.active is not None, now)
    roaming = Roaming.of((), state.roaming.switch_times, state.roaming.recovery_rounds)
    side = state.side
    assert isinstance(side, ClientSide)
    if state.phase is A:
        # §7: nothing to try; wait for a candidate until the recovery window ends.
        return transition(state, RC.TRANSPORT_COLLAPSE, now, failed, roaming,
                           drop_pending(side))
    if state.phase is D:
        return transition(state, RC.TRANSPORT_COLLAPSE, now, failed, roaming)
    return same_phase(state, now, failed, roaming, drop_pending(side)), []


def client_candidate_discovered(state: SessionState, event: CandidateDiscovered) -> Out:
    now = event.now_ms
    transport = event.transport
    link = state.link
    roaming = state.roaming
    policy = state.ident.policy
    if transport == link.active:
        if not link.active_failed:
            return reject(state, event, RC.CANDIDATE_ALREADY_KNOWN)
        link = link_with_failed(link, False, now)
    elif transport in roaming.candidates:
        return reject(state, event, RC.CANDIDATE_ALREADY_KNOWN)
    elif len(roaming.candidates) >= policy.max_candidates:
        # §5.2: first come, first kept; a discovery beyond the bound is never stored.
        return reject(state, event, RC.CANDIDATE_LIMIT_REACHED)
    else:
        roaming = Roaming((*roaming.candidates, transport), roaming.switch_times,
                          roaming.recovery_rounds)
    side = state.side
    assert isinstance(side, ClientSide)
    if state.phase is D:
        if roaming.recovery_rounds >= policy.max_recovery_rounds:
            return transition(state, RC.RECOVERY_ROUNDS_EXCEEDED, now, link, roaming)
        return enter_recovery(state, RC.CANDIDATE_AVAILABLE, now, link, roaming)
    if state.phase is R and side.pending is None:
        new_side, sends = client_attempt(state, side, link, roaming, now)
        return same_phase(state, now, link, roaming, new_side), sends
    return same_phase(state, now, link, roaming), []


def client_candidate_lost(state: SessionState, event: CandidateLost) -> Out:
    roaming = state.roaming
    if event.transport not in roaming.candidates:
        return reject(state, event, RC.UNKNOWN_TRANSPORT)
    remaining = tuple(c for c in roaming.candidates if c != event.transport)
    return same_phase(state, event.now_ms,
                       roaming=Roaming.of(remaining, roaming.switch_times,
                                       roaming.recovery_rounds)), []


def client_challenge(state: SessionState, event: PathChallengeReceived) -> Out:
    if state.phase is B:
        return reject(state, event, RC.EVENT_NOT_APPLICABLE)
    via = event.via
    if via != state.link.active and via not in state.roaming.candidates:
        return reject(state, event, RC.UNKNOWN_TRANSPORT)
    side = state.side
    assert isinstance(side, ClientSide)
    ident = state.ident
    now = event.now_ms
    # Only our server holds the control key: anything else is refused before it can touch
    # the pending request (a spoofed challenge must never stall a recovery).
    if not verify_challenge_mac(ident.control_key, event.mac, ident.session_id, event.nonce,
                                event.state_version, event.timestamp_ms, event.observed,
                                event.challenge):
        return reject(state, event, RC.CHALLENGE_INVALID)
    pending = side.pending
    policy = ident.policy
    if event.nonce:
        # It answers one of our requests: only the one in flight may be replaced by it.
        if pending is None or event.nonce != pending.nonce:
            return reject(state, event, RC.CHALLENGE_STALE)
    elif pending is not None:
        # The server opened this validation on traffic alone; our own proof-backed request
        # in flight takes precedence (the server's validation for it will follow).
        return reject(state, event, RC.CHALLENGE_STALE)
    elif state.phase is A and via != state.link.active:
        # ATTACHED and healthy, the server saw traffic from one of our *other* paths (a
        # packet still in flight on a path we left): answering would move the session to a
        # path this client did not choose. A NAT rebinding of the active path arrives on
        # the active path and is answered.
        return reject(state, event, RC.CHALLENGE_STALE)
    if (event.state_version < side.known_version
            or event.timestamp_ms + policy.proof_max_age_ms < now
            or event.timestamp_ms > now + policy.max_clock_skew_ms):
        return reject(state, event, RC.CHALLENGE_STALE)
    nonce = side.next_nonce
    proof = compute_proof(ident.control_key, REQUEST, ident.session_id,
                          nonce, side.known_version, now, event.observed, event.challenge)
    request = SendReattachRequest(via, ident.session_id, nonce, side.known_version, now,
                                  event.observed, event.challenge, proof)
    answer = PendingReattach(request, now + policy.reattach_timeout_ms, 1)
    new_side = ClientSide(side.known_version, nonce + 1, answer, side.attempt, side.quality,
                          side.better, side.better_since_ms)
    return same_phase(state, now, side=new_side), [request]


def client_accepted(state: SessionState, event: ReattachAccepted) -> Out:
    if state.phase is B:
        return reject(state, event, RC.EVENT_NOT_APPLICABLE)
    ident = state.ident
    side = state.side
    assert isinstance(side, ClientSide)
    if event.session_id != ident.session_id:
        return reject(state, event, RC.SESSION_MISMATCH)
    pending = side.pending
    if event.state_version == side.known_version and event.via == state.link.active and (
        pending is None or event.nonce != pending.nonce
    ):
        # The server re-sent the accept already applied (it does so when a request is
        # retransmitted or replayed). Benign, and it changes nothing.
        return reject(state, event, RC.DUPLICATE_ACCEPT)
    if pending is None or event.nonce != pending.nonce or event.via != pending.via:
        return reject(state, event, RC.ACCEPT_INVALID)
    if event.state_version <= side.known_version:
        return reject(state, event, RC.STALE_STATE_VERSION)
    now = event.now_ms
    link = state.link
    roaming = state.roaming
    switched = event.via != link.active
    if switched:
        refusal = switch_refusal(roaming, ident.policy, now)
        if refusal is not None:
            return reject(state, event, refusal)
    if not verify_proof(ident.control_key, event.proof, ACCEPT,
                        ident.session_id, event.nonce, event.state_version, event.timestamp_ms,
                        event.bound):
        return reject(state, event, RC.ACCEPT_INVALID)
    reason = RC.REATTACHED
    if switched:
        remaining = tuple(c for c in roaming.candidates if c != event.via)
        if state.phase is A and event.via == side.better and link.active is not None and \
                not link.active_failed:
            # A proactive migration: the path left behind still works, so it stays a
            # candidate (the one removed leaves room for it) and may be measured again.
            reason = RC.MIGRATED_TO_BETTER_PATH
            remaining = (*remaining, link.active)
        roaming = record_switch(roaming, ident.policy, now, remaining)
    new_link = link_heard(event.via, False, now)
    new_side = ClientSide(event.state_version, side.next_nonce, None, 0, side.quality, None, 0)
    new, effects = transition(state, reason, now, new_link, roaming, new_side)
    if switched:
        effects.append(BindTransport(ident.session_id, event.via, link.active))
    return new, effects



# --- path quality (specs/path-quality.md) -------------------------------------------------


def start_migration(state: SessionState, side: ClientSide, target: TransportDescriptor,
                    now: int) -> tuple[ClientSide, SendReattachRequest]:
    """Send a proof-backed reattach request on `target` asking to bind it (proactive)."""
    ident = state.ident
    nonce = side.next_nonce
    proof = compute_proof(ident.control_key, REQUEST, ident.session_id,
                          nonce, side.known_version, now, target)
    request = SendReattachRequest(target, ident.session_id, nonce, side.known_version, now,
                                  target, b"", proof)
    pending = PendingReattach(request, now + ident.policy.reattach_timeout_ms, 1)
    return ClientSide(side.known_version, nonce + 1, pending, side.attempt, side.quality,
                      side.better, side.better_since_ms), request


def reconsider(state: SessionState, side: ClientSide, now: int) -> Out:
    """ATTACHED, no request pending: re-evaluate the hysteresis and migrate once it says so.

    The candidate that beats the active path (`upgrade_target`) is tracked in `better`
    from the first evaluation that finds it; another one (or none) restarts the dwell.
    Once `migration_due` has passed with no request in flight, the migration starts.
    """
    policy = state.ident.policy
    roaming = state.roaming
    target = upgrade_target(state.link, roaming, side.quality, policy, now)
    if target is None:
        better, since = None, 0
    elif target == side.better:
        better, since = side.better, side.better_since_ms
    else:
        better, since = target, now
    if better is not side.better or since != side.better_since_ms:
        side = ClientSide(side.known_version, side.next_nonce, side.pending, side.attempt,
                          side.quality, better, since)
    if better is not None and now >= migration_due(side, roaming, policy):
        side, request = start_migration(state, side, better, now)
        return same_phase(state, now, side=side), [request]
    return same_phase(state, now, side=side), NO_EFFECTS


def client_sample(state: SessionState, event: RttSample | ProbeLost) -> Out:
    """An RTT sample or a lost probe on a known local path: update its score, and in
    ATTACHED with no request pending reconsider a proactive migration (a request in flight,
    a migration or an answer to the server's challenge, runs to its outcome first)."""
    transport = event.transport
    link = state.link
    roaming = state.roaming
    if transport != link.active and transport not in roaming.candidates:
        return reject(state, event, RC.UNKNOWN_TRANSPORT)
    side = state.side
    assert isinstance(side, ClientSide)
    now = event.now_ms
    known = roaming.candidates if link.active is None else (link.active, *roaming.candidates)
    rtt = event.rtt_ms if type(event) is RttSample else None
    quality = sampled(side.quality, transport, rtt, now, known)
    side = ClientSide(side.known_version, side.next_nonce, side.pending, side.attempt, quality,
                      side.better, side.better_since_ms)
    if state.phase is A and side.pending is None:
        return reconsider(state, side, now)
    return same_phase(state, now, side=side), NO_EFFECTS
