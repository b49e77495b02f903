"""The server's handlers: traffic from bound and unvalidated addresses, reattach requests.

Reached through the server's dispatch table in `machine`, once the checks that every
event gets have passed; each answers with the new state and its effects. Package-private.
"""

from __future__ import annotations

from hmac import compare_digest

from cryptography.hazmat.primitives.hmac import HMAC

from jumpvpn_core._kernel import (
    ACCEPT,
    NO_EFFECTS,
    RC,
    REQUEST,
    SEEN,
    TOO_OLD,
    A,
    B,
    Out,
    R,
    drop_pending,
    heard_on_active,
    link_heard,
    record_switch,
    reject,
    rejected,
    same_phase,
    steady_traffic,
    switch_refusal,
    transition,
)
from jumpvpn_core.effects import (
    BindTransport,
    Effect,
    SendPathChallenge,
    SendReattachAccept,
)
from jumpvpn_core.events import (
    InboundTraffic,
    ReattachRequest,
)
from jumpvpn_core.proof import (
    U64_MAX,
    challenge_mac,
    compute_proof,
    derive_challenge,
    keyed_mac,
    verify_proof,
)
from jumpvpn_core.replay import check_nonce, mark_nonce
from jumpvpn_core.state import (
    AcceptRecord,
    PendingPath,
    ServerSide,
    SessionState,
)
from jumpvpn_core.transport import TransportDescriptor


def server_inbound(state: SessionState, event: InboundTraffic) -> Out:
    phase = state.phase
    if phase is B:
        return reject(state, event, RC.EVENT_NOT_APPLICABLE)
    now = event.now_ms
    source = event.transport
    active = state.link.active
    if source is active or source == active:  # identity first, as in client_inbound
        if phase is R and state.side.pending is None:
            # Validation of the other address is over and the old path works: revert.
            return transition(state, RC.PATH_REVERTED, now, heard_on_active(state, now))
        return steady_traffic(state, now), NO_EFFECTS
    side = state.side
    assert isinstance(side, ServerSide)
    # Traffic from an address nobody has validated. It never replaces the binding; at most
    # it starts a path validation, and what we send there is capped (amplification).
    policy = state.ident.policy
    pending = side.pending
    if pending is not None:
        if pending.address != source:
            return reject(state, event, RC.PATH_VALIDATION_IN_PROGRESS)
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
            pending.request_nonce,
        )
        new_side = ServerSide(side.binding_version, side.replay_top, side.replay_bits,
                              side.verified_times, new_pending, side.challenge_counter,
                              side.last_accept)
        sends: list[Effect] = (
            [path_challenge(state, source, pending.challenge, pending.request_nonce,
                            side.binding_version, now)] if send else []
        )
        return same_phase(state, now, side=new_side), sends
    new_side, sends = open_validation(state, side, source, event.size, 0, now)
    if phase is A:
        new, effects = transition(state, RC.UNEXPECTED_SOURCE_ADDRESS, now, side=new_side)
        effects.extend(sends)
        return new, effects
    return same_phase(state, now, side=new_side), sends


def path_challenge(state: SessionState, to: TransportDescriptor, challenge: bytes,
                   request_nonce: int, binding_version: int, now: int,
                   keyed: HMAC | None = None) -> SendPathChallenge:
    """The challenge for `to`, with the MAC that lets the client authenticate it."""
    ident = state.ident
    mac = challenge_mac(ident.control_key, ident.session_id, request_nonce, binding_version,
                        now, to, challenge, keyed)
    return SendPathChallenge(to, ident.session_id, challenge, request_nonce, binding_version,
                             now, mac)


def open_validation(state: SessionState, side: ServerSide, address: TransportDescriptor,
                            received: int, already_sent: int, now: int,
                            replay: tuple[int, int] | None = None,
                            verified_times: tuple[int, ...] | None = None,
                            request_nonce: int = 0, keyed: HMAC | None = None,
                            ) -> tuple[ServerSide, list[Effect]]:
    """Start validating `address`. `request_nonce` is the verified request that asks for
    it (0: unproven traffic); `received` and `already_sent` are that address's bytes."""
    ident = state.ident
    policy = ident.policy
    counter = side.challenge_counter + 1
    if keyed is None:
        keyed = keyed_mac(ident.control_key)
    challenge = derive_challenge(ident.control_key, ident.session_id, counter, keyed)
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
        request_nonce,
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
    sends: list[Effect] = [
        path_challenge(state, address, challenge, request_nonce, side.binding_version, now,
                       keyed)
    ] if send else []
    return new_side, sends


def validation_timed_out(state: SessionState, side: ServerSide, now: int) -> Out:
    cleared = drop_pending(side)
    if state.phase is R and state.link.heard_in_phase:
        return transition(state, RC.PATH_REVERTED, now, side=cleared)
    return same_phase(state, now, side=cleared), []


def server_request(state: SessionState, event: ReattachRequest) -> Out:
    """§2.3, §3.1-§3.3: cheap checks first, cryptography last, bind only a validated path."""
    if state.phase is B:
        return reject(state, event, RC.EVENT_NOT_APPLICABLE)
    ident = state.ident
    policy = ident.policy
    side = state.side
    assert isinstance(side, ServerSide)
    now = event.now_ms
    if event.session_id != ident.session_id:
        return reject(state, event, RC.SESSION_MISMATCH)
    times = side.verified_times
    limit = policy.reattach_rate_limit
    if len(times) >= limit and now - times[-limit] < policy.reattach_rate_window_ms:
        return reject(state, event, RC.RATE_LIMITED)
    verdict = check_nonce(side.replay_top, side.replay_bits, policy.replay_window_bits,
                          event.nonce)
    if verdict is SEEN:
        last = side.last_accept
        if last is not None and event.nonce == last.nonce and compare_digest(
            event.proof, last.request_proof
        ):
            # An exact retransmission of the request behind the current binding: its accept
            # was lost. Still a replay (nothing changes), but re-send the stored accept to
            # the binding itself, never to the packet's source.
            return state, [rejected(state, event, RC.REPLAY_DETECTED), last.accept]
        return reject(state, event, RC.REPLAY_DETECTED)
    if verdict is TOO_OLD:
        return reject(state, event, RC.NONCE_TOO_OLD)
    version_claimed = event.state_version
    if version_claimed != side.binding_version:
        if version_claimed > side.binding_version:
            return reject(state, event, RC.VERSION_AHEAD)
        last = side.last_accept
        # A client that missed the accept behind the current binding still speaks the
        # version it had then; a newer nonce proves the request is not from before it.
        if last is None or event.nonce <= last.nonce or version_claimed < last.request_version:
            return reject(state, event, RC.STALE_STATE_VERSION)
    if event.timestamp_ms + policy.proof_max_age_ms < now:
        return reject(state, event, RC.PROOF_EXPIRED)
    if event.timestamp_ms > now + policy.max_clock_skew_ms:
        return reject(state, event, RC.PROOF_FROM_FUTURE)
    active = state.link.active
    pending = side.pending
    target: TransportDescriptor | None
    received = event.size
    already_sent = 0
    if event.challenge:
        if pending is None or not compare_digest(event.challenge, pending.challenge):
            return reject(state, event, RC.CHALLENGE_MISMATCH)
        if event.source != pending.address or event.candidate != pending.address:
            # The proof names one path and the packet came on another: ambiguity (§2.3).
            return reject(state, event, RC.AMBIGUOUS_PATH)
        target = pending.address
    elif event.source == active:
        target = active
    else:
        if pending is not None and pending.address != event.source:
            # One validation at a time, but unproven traffic never blocks a proof-backed
            # reattach (§2.2, §3.1): a validation that a verified request opened holds;
            # one that traffic alone opened is pre-empted below, once this request's proof
            # verifies. The new validation is paid for by this request's bytes alone.
            if pending.request_nonce:
                return reject(state, event, RC.PATH_VALIDATION_IN_PROGRESS)
        elif pending is not None:
            received += pending.bytes_received
            already_sent = pending.bytes_sent
        if already_sent + policy.path_challenge_size_bytes > (
            policy.amplification_factor * received
        ):
            return reject(state, event, RC.AMPLIFICATION_LIMITED)
        target = None
    roaming = state.roaming
    switched = target is not None and target != active
    if switched:
        refusal = switch_refusal(roaming, policy, now)
        if refusal is not None:
            return reject(state, event, refusal)
    # Only now, with every cheap check passed, spend an HMAC.
    # Keyed once: a verified request on a bound path computes a second proof (the accept)
    # with the same key, and copying a keyed context is cheaper than keying another.
    keyed = keyed_mac(ident.control_key)
    if not verify_proof(ident.control_key, event.proof, REQUEST,
                        ident.session_id, event.nonce, event.state_version, event.timestamp_ms,
                        event.candidate, event.challenge, keyed):
        return reject(state, event, RC.PROOF_INVALID)
    replay = mark_nonce(side.replay_top, side.replay_bits, policy.replay_window_bits,
                        event.nonce)
    new_times = (*times, now)[-limit:]
    if target is None:
        new_side, sends = open_validation(state, side, event.source, received,
                                          already_sent, now, replay, new_times,
                                          event.nonce, keyed)
        return same_phase(state, now, side=new_side), sends
    version = state.state_version + 1
    if version > U64_MAX:  # a hand-built state at 2^64-1: no version left to bind under
        return reject(state, event, RC.EVENT_NOT_APPLICABLE)
    accept_proof = compute_proof(ident.control_key, ACCEPT,
                                 ident.session_id, event.nonce, version, now, target,
                                 keyed=keyed)
    accept = SendReattachAccept(target, ident.session_id, event.nonce, version, now,
                                accept_proof)
    bound_side = ServerSide(version, replay[0], replay[1], new_times, None,
                            side.challenge_counter,
                            AcceptRecord(event.nonce, event.state_version, event.proof, accept))
    if switched:
        roaming = record_switch(roaming, policy, now)
    link = link_heard(target, False, now)
    new, effects = transition(state, RC.REATTACHED, now, link, roaming, bound_side)
    if switched:
        effects.append(BindTransport(ident.session_id, target, active))
    effects.append(accept)
    return new, effects

