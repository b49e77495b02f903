"""The peer module plays the other end of the link for every harness (seed §2.2, §3.1, §3.2).

Each test drives a real client and a real server core through `jumpvpn_core.peer` only, so
a change to delivery or to the proof encoding breaks here first.
"""

from __future__ import annotations

import pytest

from jumpvpn_core import peer
from jumpvpn_core.effects import (
    BindTransport,
    Rejected,
    SendPathChallenge,
    SendReattachAccept,
    SendReattachRequest,
)
from jumpvpn_core.events import Attach, DeliveryTimeout, PathChallengeReceived, ReattachAccepted
from jumpvpn_core.invariants import checked_step
from jumpvpn_core.machine import step
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.state import ClientSide, SessionState, new_session
from jumpvpn_core.transport import TransportDescriptor

SID = bytes(range(16))
SECRET = b"peer module test secret, 32 b.!!"
C1 = TransportDescriptor.udp("10.0.0.2", 4000)
A1 = TransportDescriptor.udp("198.51.100.7", 4000)
A2 = TransportDescriptor.udp("198.51.100.8", 5000)
T0 = 10_000


def _pair() -> tuple[SessionState, SessionState]:
    client, _ = step(new_session(Role.CLIENT, SID, SECRET, T0), Attach(T0, C1))
    server, _ = step(new_session(Role.SERVER, SID, SECRET, T0), Attach(T0, A1))
    return client, server


def _reasons(effects: tuple[object, ...]) -> list[ReasonCode]:
    return [e.reason for e in effects if isinstance(e, Rejected)]


@pytest.mark.requirement("RM-2.2")
def test_a_delivered_client_request_is_accepted_and_its_accept_reattaches_the_client() -> None:
    client, server = _pair()
    client, effects, violations = checked_step(client, DeliveryTimeout(T0 + 10))
    assert violations == []
    sent = next(e for e in effects if isinstance(e, SendReattachRequest))
    request = peer.request_received(sent, T0 + 11, A1, size=200)
    assert request.source == A1
    assert request.proof == sent.proof
    server, effects, violations = checked_step(server, request)
    assert violations == []
    assert _reasons(effects) == []
    accept_effect = next(e for e in effects if isinstance(e, SendReattachAccept))
    accept = peer.received(accept_effect, T0 + 12, C1)
    assert isinstance(accept, ReattachAccepted)
    assert accept.bound == A1
    client, effects, violations = checked_step(client, accept)
    assert violations == []
    assert client.phase is Phase.ATTACHED
    assert client.link.active == C1
    assert isinstance(client.side, ClientSide)
    assert client.side.known_version == server.state_version


def test_the_peer_signs_exactly_what_the_client_core_signs() -> None:
    client, _server = _pair()
    _, effects = step(client, DeliveryTimeout(T0 + 10))
    sent = next(e for e in effects if isinstance(e, SendReattachRequest))
    proof = peer.Peer.from_secret(SECRET, SID).request_proof(
        sent.nonce, sent.state_version, sent.timestamp_ms, sent.candidate, sent.challenge)
    assert proof == sent.proof


@pytest.mark.requirement("RM-3.2")
def test_a_forged_request_is_refused_and_an_honest_one_accepted() -> None:
    _client, server = _pair()
    forged = peer.next_request(server, T0 + 5, A1, forged_proof=peer.FORGED_PROOF)
    after, effects = step(server, forged)
    assert after is server
    assert _reasons(effects) == [ReasonCode.PROOF_INVALID]
    honest = peer.next_request(server, T0 + 5, A1)
    after, effects = step(server, honest)
    assert after is not server
    assert _reasons(effects) == []


@pytest.mark.requirement("RM-2.3")
def test_a_challenge_is_delivered_and_answered_through_the_peer() -> None:
    _client, server = _pair()
    opened, effects = step(server, peer.next_request(server, T0 + 5, A2, size=1200))
    challenge = next(e for e in effects if isinstance(e, SendPathChallenge))
    seen = peer.received(challenge, T0 + 6, C1)
    assert isinstance(seen, PathChallengeReceived)
    assert (seen.via, seen.observed, seen.challenge) == (C1, A2, challenge.challenge)
    bound, effects = step(opened, peer.answer_challenge(opened, T0 + 6))
    assert bound.link.active == A2
    assert _reasons(effects) == []


def test_a_forged_accept_is_refused_by_the_client() -> None:
    client, _server = _pair()
    recovering, _ = step(client, DeliveryTimeout(T0 + 10))
    after, effects = step(recovering, peer.accept_pending(recovering, T0 + 11,
                                                          forged_proof=peer.FORGED_PROOF))
    assert after is recovering
    assert _reasons(effects) == [ReasonCode.ACCEPT_INVALID]


def test_helpers_refuse_the_wrong_role_and_missing_exchanges() -> None:
    client, server = _pair()
    with pytest.raises(TypeError):
        peer.next_request(client, T0, A1)
    with pytest.raises(TypeError):
        peer.accept_pending(server, T0)
    with pytest.raises(ValueError, match="no path challenge"):
        peer.answer_challenge(server, T0)
    with pytest.raises(TypeError, match="not a message"):
        peer.received(BindTransport(SID, C1, None), T0)


def test_the_control_key_never_shows_in_a_repr() -> None:
    me = peer.Peer.from_secret(SECRET, SID)
    assert me.control_key.hex() not in repr(me)
    assert repr(me.control_key) not in repr(me)
