"""A lost accept is recoverable without weakening replay protection (RM-3.2, RM-2.1)."""

from __future__ import annotations

import pytest

from jumpvpn_core import (
    Attach,
    InboundTraffic,
    PacketLoss,
    Phase,
    Policy,
    ReasonCode,
    ReattachAccepted,
    ReattachRequest,
    Rejected,
    Role,
    SendReattachAccept,
    SendReattachRequest,
    SessionState,
    StateChanged,
    Tick,
    TransportDescriptor,
    check_step,
    new_session,
    step,
)
from jumpvpn_core.effects import Effect
from jumpvpn_core.state import ClientSide

SID = bytes(range(16))
SECRET = b"k" * 32
PATH = TransportDescriptor.udp("10.0.0.1", 4000)
SPOOF = TransportDescriptor.udp("198.51.100.9", 999)
POLICY = Policy(loss_threshold=2, reattach_timeout_ms=200, reattach_retransmits=2)


def _checked(state: SessionState, event: object) -> tuple[SessionState, tuple[Effect, ...]]:
    new, effects = step(state, event)
    assert check_step(state, event, new, effects) == []
    return new, effects


def _as_request(req: SendReattachRequest, now: int, source: TransportDescriptor
                ) -> ReattachRequest:
    return ReattachRequest(now, source, req.session_id, req.nonce, req.state_version,
                           req.timestamp_ms, req.candidate, req.proof, req.challenge, 200)


def _recovering_pair() -> tuple[SessionState, SessionState, SendReattachRequest]:
    client = new_session(Role.CLIENT, SID, SECRET, 0, POLICY)
    server = new_session(Role.SERVER, SID, SECRET, 0, POLICY)
    client, _ = _checked(client, Attach(0, PATH))
    server, _ = _checked(server, Attach(0, PATH))
    client, _ = _checked(client, PacketLoss(10, 2))
    assert client.phase is Phase.RECOVERING
    side = client.side
    assert isinstance(side, ClientSide)
    assert side.pending is not None
    return client, server, side.pending.request


@pytest.mark.requirement("RM-3.2")
def test_lost_accept_is_recovered_by_resending_the_same_request() -> None:
    client, server, request = _recovering_pair()
    server, effects = _checked(server, _as_request(request, 20, PATH))
    assert any(isinstance(e, SendReattachAccept) for e in effects)  # ...and it is lost
    client, effects = _checked(client, Tick(10 + POLICY.reattach_timeout_ms))
    assert effects == (request,), "the client re-sends the very same request"
    before = server
    server, effects = _checked(server, _as_request(request, 230, PATH))
    assert server is before
    reject, resent = effects
    assert isinstance(reject, Rejected)
    assert reject.reason is ReasonCode.REPLAY_DETECTED
    assert isinstance(resent, SendReattachAccept)
    assert resent.to == PATH
    client, effects = _checked(client, ReattachAccepted(
        240, PATH, SID, resent.nonce, resent.state_version, resent.timestamp_ms, resent.to,
        resent.proof))
    assert client.phase is Phase.ATTACHED
    assert any(isinstance(e, StateChanged) and e.reason is ReasonCode.REATTACHED
               for e in effects)


@pytest.mark.requirement("RM-3.2")
def test_replayed_request_from_a_spoofed_source_resends_only_to_the_binding() -> None:
    _client, server, request = _recovering_pair()
    server, _ = _checked(server, _as_request(request, 20, PATH))
    before = server
    server, effects = _checked(server, _as_request(request, 30, SPOOF))
    assert server is before
    assert [type(e) for e in effects] == [Rejected, SendReattachAccept]
    resent = effects[1]
    assert isinstance(resent, SendReattachAccept)
    assert resent.to == PATH != SPOOF


@pytest.mark.requirement("RM-3.2")
def test_a_replay_of_an_older_request_gets_no_accept() -> None:
    client, server, first = _recovering_pair()
    server, effects = _checked(server, _as_request(first, 20, PATH))
    accept = next(e for e in effects if isinstance(e, SendReattachAccept))
    client, _ = _checked(client, ReattachAccepted(25, PATH, SID, accept.nonce,
                                                  accept.state_version, accept.timestamp_ms,
                                                  accept.to, accept.proof))
    client, effects = _checked(client, PacketLoss(40, 2))
    second = next(e for e in effects if isinstance(e, SendReattachRequest))
    server, _ = _checked(server, _as_request(second, 50, PATH))
    before = server
    server, effects = _checked(server, _as_request(first, 60, PATH))
    assert server is before
    assert [type(e) for e in effects] == [Rejected]


@pytest.mark.requirement("RM-9")
def test_degraded_client_keeps_trying_proof_backed_reattaches() -> None:
    policy = Policy(loss_threshold=2, reattach_timeout_ms=200, reattach_retransmits=0,
                    max_recovery_window_ms=1_000, max_degraded_ms=5_000)
    client = new_session(Role.CLIENT, SID, SECRET, 0, policy)
    client, _ = _checked(client, Attach(0, PATH))
    client, _ = _checked(client, PacketLoss(10, 2))
    client, _ = _checked(client, InboundTraffic(500, PATH, 100))
    client, effects = _checked(client, Tick(1_010))
    assert client.phase is Phase.DEGRADED
    assert any(isinstance(e, SendReattachRequest) for e in effects)
    client, effects = _checked(client, Tick(1_210))
    assert client.phase is Phase.DEGRADED
    assert any(isinstance(e, SendReattachRequest) for e in effects)
