"""Unproven traffic never blocks a proof-backed reattach; path challenges are authenticated.

The core half of issue 10's first two findings: replayed data from another address used to
open a validation that refused the real client's signed reattach, and a spoofed path
challenge used to replace a recovering client's request. Every step runs the invariant
checkers (`tests.harness.checked_step`). Times are virtual integer milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from jumpvpn_core import (
    Attach,
    CandidateDiscovered,
    Effect,
    InboundTraffic,
    Phase,
    Policy,
    ReasonClass,
    ReasonCode,
    Role,
    SendPathChallenge,
    SendReattachAccept,
    SendReattachRequest,
    SessionState,
    TransportDescriptor,
    TransportFailed,
    new_session,
)
from jumpvpn_core.codec import state_from_data, state_to_data
from jumpvpn_core.peer import (
    FORGED_PROOF,
    Peer,
    accept_received,
    challenge_pending,
    challenge_received,
    next_request,
    request_received,
)
from jumpvpn_core.state import ClientSide, ServerSide
from tests.harness import SECRET, SESSION_ID, checked_step, rejections

RC = ReasonCode
HOME = TransportDescriptor.udp("192.0.2.1", 4000)
CLIENT_NAT = TransportDescriptor.udp("203.0.113.9", 4001)
ATTACKER = TransportDescriptor.udp("198.51.100.66", 9999)
ATTACKER_2 = TransportDescriptor.udp("198.51.100.67", 9999)
PORT_0 = TransportDescriptor.udp("10.0.0.1", 4000)
PORT_1 = TransportDescriptor.udp("10.0.0.1", 4001)


def _server(policy: Policy | None = None) -> SessionState:
    state, _ = checked_step(new_session(Role.SERVER, SESSION_ID, SECRET, 0, policy),
                            Attach(0, HOME))
    return state


def _recovering_client(policy: Policy | None = None) -> SessionState:
    """A client whose port 0 died: a signed request is in flight on port 1."""
    state, _ = checked_step(new_session(Role.CLIENT, SESSION_ID, SECRET, 0, policy),
                            Attach(0, PORT_0))
    state, _ = checked_step(state, CandidateDiscovered(500, PORT_1))
    state, effects = checked_step(state, TransportFailed(1_000, PORT_0))
    assert state.phase is Phase.RECOVERING
    assert [type(e) for e in effects][-1] is SendReattachRequest
    return state


def _reasons(effects: Sequence[Effect]) -> list[ReasonCode]:
    return [r.reason for r in rejections(effects)]


def _pending(state: SessionState) -> object:
    side = state.side
    assert isinstance(side, ServerSide)
    return side.pending


# --- 1. unproven traffic never blocks a proof-backed reattach -----------------------------------


@pytest.mark.requirement("RM-2.2")
@pytest.mark.requirement("RM-3.1")
def test_a_signed_request_pre_empts_a_validation_that_replayed_traffic_opened() -> None:
    server = _server()
    server, effects = checked_step(server, InboundTraffic(1_000, ATTACKER, 200))
    assert server.phase is Phase.RECOVERING
    assert [e.nonce for e in effects if isinstance(e, SendPathChallenge)] == [0]
    request = next_request(server, 1_100, CLIENT_NAT, size=128)
    server, effects = checked_step(server, request)
    assert rejections(effects) == []
    [challenge] = [e for e in effects if isinstance(e, SendPathChallenge)]
    assert (challenge.to, challenge.nonce) == (CLIENT_NAT, request.nonce)
    side = server.side
    assert isinstance(side, ServerSide)
    assert side.pending is not None
    assert (side.pending.address, side.pending.request_nonce) == (CLIENT_NAT, request.nonce)
    assert server.active == HOME  # pre-emption binds nothing: the answer must come first
    answer = Peer.of(server).request(1_120, CLIENT_NAT, nonce=request.nonce + 1,
                                     state_version=side.binding_version,
                                     challenge=challenge.challenge, size=128)
    server, effects = checked_step(server, answer)
    assert server.phase is Phase.ATTACHED
    assert server.active == CLIENT_NAT


@pytest.mark.requirement("RM-3.1")
def test_nothing_unproven_pre_empts_anything() -> None:
    """Traffic never pre-empts (a traffic- or a request-opened validation); a forged or
    too-small request leaves a traffic-opened validation exactly as it was."""
    server = _server()
    opened, _ = checked_step(server, InboundTraffic(1_000, ATTACKER, 200))
    for event, reason in (
        (InboundTraffic(1_010, ATTACKER_2, 200), RC.PATH_VALIDATION_IN_PROGRESS),
        (next_request(opened, 1_010, CLIENT_NAT, size=128, forged_proof=FORGED_PROOF),
         RC.PROOF_INVALID),
        (next_request(opened, 1_010, CLIENT_NAT, size=10), RC.AMPLIFICATION_LIMITED),
    ):
        after, effects = checked_step(opened, event)
        assert after is opened
        assert _reasons(effects) == [reason]
    proven, _ = checked_step(opened, next_request(opened, 1_020, CLIENT_NAT, size=128))
    for event in (InboundTraffic(1_030, ATTACKER, 200),
                  next_request(proven, 1_030, ATTACKER_2, size=128)):
        after, effects = checked_step(proven, event)
        assert after is proven
        assert _reasons(effects) == [RC.PATH_VALIDATION_IN_PROGRESS]


@pytest.mark.requirement("RM-3.1")
def test_pre_emption_is_bounded_by_the_rate_limit() -> None:
    """Replayed traffic and signed requests, alternating: the first request pre-empts, the
    traffic never takes the validation back, and verified requests stay rate-limited."""
    policy = Policy(reattach_rate_limit=2, reattach_rate_window_ms=1_000)
    server = _server(policy)
    outcomes = []
    for now in (1_000, 1_100, 1_200):
        server, _ = checked_step(server, InboundTraffic(now, ATTACKER, 200))
        after, effects = checked_step(server, next_request(server, now + 1, CLIENT_NAT,
                                                           size=128))
        outcomes.append(_reasons(effects))
        if _reasons(effects):
            assert after is server
        server = after
        side = server.side
        assert isinstance(side, ServerSide)
        assert side.pending is not None
        assert side.pending.address == CLIENT_NAT
    assert outcomes == [[], [], [RC.RATE_LIMITED]]
    assert server.active == HOME


@pytest.mark.requirement("RM-2.2")
@pytest.mark.requirement("RM-3.1")
def test_replayed_data_from_another_address_no_longer_ends_the_session() -> None:
    """The issue's reproduction: replayed data every 500 ms from an attacker's address while
    the real client keeps asking to reattach from its new address. Before, every request
    was refused PATH_VALIDATION_IN_PROGRESS and the session ended at 12 s; now the client's
    first request binds and the attacker's address is never bound. (Each replay still
    opens a validation toward the attacker's address, which the client's own traffic
    reverts; the transport's data-plane replay window drops such packets before the core
    sees them.)"""
    server = _server()
    client = _recovering_client()
    bound_to: list[TransportDescriptor] = []
    now = 1_000
    while now < 13_000:
        server, _ = checked_step(server, InboundTraffic(now, ATTACKER, 200))
        pending = client.side.pending if isinstance(client.side, ClientSide) else None
        if client.phase is Phase.RECOVERING and pending is not None:
            server, effects = checked_step(server, request_received(
                pending.request, now + 10, CLIENT_NAT, 128))
            for challenge in (e for e in effects if isinstance(e, SendPathChallenge)):
                client, answers = checked_step(client, challenge_received(
                    challenge, now + 20, PORT_1))
                for answer in (e for e in answers if isinstance(e, SendReattachRequest)):
                    server, accepts = checked_step(server, request_received(
                        answer, now + 30, CLIENT_NAT, 128))
                    for accept in accepts:
                        if isinstance(accept, SendReattachAccept):
                            client, _ = checked_step(client, accept_received(
                                accept, now + 40, PORT_1))
        if client.phase is Phase.ATTACHED:  # its heartbeats keep arriving from its address
            server, _ = checked_step(server, InboundTraffic(now + 50, CLIENT_NAT, 42))
        if server.active is not None:
            bound_to.append(server.active)
        now += 500
    assert client.phase is Phase.ATTACHED
    assert server.phase is not Phase.TERMINATED
    assert ATTACKER not in bound_to
    assert CLIENT_NAT in bound_to


# --- 2. authenticated path challenges ----------------------------------------------------------


@pytest.mark.requirement("RM-3.1")
@pytest.mark.requirement("RM-2.2")
def test_spoofed_challenges_any_number_never_touch_the_pending_request() -> None:
    client = _recovering_client()
    peer = Peer.of(client)
    side = client.side
    assert isinstance(side, ClientSide)
    assert side.pending is not None
    for index in range(5_000):
        spoof = peer.challenge(1_010, PORT_1, challenge=index.to_bytes(16, "big"),
                               observed=ATTACKER, nonce=(side.pending.nonce, 0)[index % 2],
                               state_version=side.known_version,
                               forged_mac=index.to_bytes(32, "big"))
        after, effects = checked_step(client, spoof)
        assert after is client
        [refusal] = rejections(effects)
        assert refusal.reason is RC.CHALLENGE_INVALID
        assert refusal.reason_class is ReasonClass.SECURITY_EVENT
    # The recovery goes on as if none had arrived: the genuine challenge is answered.
    genuine = challenge_pending(client, 1_020, b"\x42" * 16, observed=CLIENT_NAT)
    _answered, effects = checked_step(client, genuine)
    assert [type(e) for e in effects] == [SendReattachRequest]


@pytest.mark.requirement("RM-3.1")
def test_genuine_challenges_that_do_not_answer_the_request_in_flight_are_stale() -> None:
    client = _recovering_client(Policy(proof_max_age_ms=200))
    side = client.side
    assert isinstance(side, ClientSide)
    assert side.pending is not None
    nonce = side.pending.nonce
    stale = [
        challenge_pending(client, 1_010, b"\x01" * 16, observed=ATTACKER, nonce=0),
        challenge_pending(client, 1_010, b"\x01" * 16, observed=ATTACKER, nonce=nonce + 5),
        challenge_pending(client, 1_010, b"\x01" * 16, observed=CLIENT_NAT,
                          state_version=side.known_version - 1),
        challenge_pending(client, 1_500, b"\x01" * 16, observed=CLIENT_NAT,
                          timestamp_ms=1_000),
        challenge_pending(client, 1_010, b"\x01" * 16, observed=CLIENT_NAT,
                          timestamp_ms=1_010 + client.policy.max_clock_skew_ms + 1),
    ]
    for event in stale:
        after, effects = checked_step(client, event)
        assert after is client, event
        assert _reasons(effects) == [RC.CHALLENGE_STALE]
    genuine = challenge_pending(client, 1_020, b"\x01" * 16, observed=CLIENT_NAT)
    answered, _ = checked_step(client, genuine)
    again, effects = checked_step(answered, genuine)  # replayed once answered
    assert again is answered
    assert _reasons(effects) == [RC.CHALLENGE_STALE]


@pytest.mark.requirement("RM-2.2")
def test_a_traffic_opened_challenge_is_answered_when_nothing_is_in_flight() -> None:
    server = _server()
    client, _ = checked_step(new_session(Role.CLIENT, SESSION_ID, SECRET, 0), Attach(0, HOME))
    server, effects = checked_step(server, InboundTraffic(1_000, CLIENT_NAT, 200))
    [challenge] = [e for e in effects if isinstance(e, SendPathChallenge)]
    client, effects = checked_step(client, challenge_received(challenge, 1_010, HOME))
    [answer] = [e for e in effects if isinstance(e, SendReattachRequest)]
    assert answer.candidate == CLIENT_NAT
    assert answer.challenge == challenge.challenge


def test_a_state_record_of_format_1_decodes_its_validation_as_unproven() -> None:
    server = _server()
    opened, _ = checked_step(server, next_request(server, 1_000, CLIENT_NAT, size=128))
    data = state_to_data(opened, include_secrets=True)
    assert data["format"] == 3
    assert data["side"]["pending"]["request_nonce"] == 1
    data["format"] = 1
    del data["side"]["pending"]["request_nonce"]
    for name in ("quality_max_age_ms", "quality_loss_penalty_ms", "migration_margin_ms",
                 "migration_dwell_ms"):
        del data["policy"][name]
    old = state_from_data(data)
    side = old.side
    assert isinstance(side, ServerSide)
    assert side.pending is not None
    assert side.pending.request_nonce == 0
    assert state_from_data(state_to_data(opened, include_secrets=True)) == opened
