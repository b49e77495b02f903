"""Session hosts of the UDP server: the deadline heap, the local table, the gateway adapter.

Sans-IO: time is passed in, no socket is opened. The other end of the link is played by
`jumpvpn_core.peer`.
"""

from __future__ import annotations

import hashlib

import pytest

from jumpvpn_core import peer
from jumpvpn_core.effects import BindTransport, SendPathChallenge, SendReattachAccept, SessionEnded
from jumpvpn_core.events import InboundTraffic
from jumpvpn_core.gateway import Gateway, GatewayPolicy, OwnershipMode
from jumpvpn_core.machine import next_deadline
from jumpvpn_core.phases import Phase
from jumpvpn_core.policy import Policy
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.state import SessionState
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.transport import TransportDescriptor
from jumpvpn_core.transports.udp import (
    GatewaySessionHost,
    LocalSessionHost,
    SessionHost,
    SessionTableError,
)
from jumpvpn_core.transports.udp.hosts import DeadlineHeap

POLICY = Policy(transport_lost_ttl_ms=5_000, path_validation_timeout_ms=300)
HOME = TransportDescriptor.udp("10.0.0.1", 4000)
ROAMED = TransportDescriptor.udp("10.0.0.2", 5000)


def sid(i: int) -> bytes:
    return i.to_bytes(16, "big")


def secret(session_id: bytes) -> bytes:
    return hashlib.sha256(b"host test secret" + session_id).digest()


def gateway_host(**limits: int) -> GatewaySessionHost:
    policy = GatewayPolicy(ownership=OwnershipMode.STICKY, node_ids=("n0",), **limits)
    return GatewaySessionHost(Gateway(MemoryStore(), policy, node_id="n0",
                                      session_policy=POLICY))


def state_of(host: LocalSessionHost | GatewaySessionHost, session_id: bytes) -> SessionState:
    state = host.get(session_id)
    assert state is not None
    return state


# --- the deadline heap -----------------------------------------------------------------------


def test_the_heap_keeps_the_earliest_deadline_of_each_session() -> None:
    heap = DeadlineHeap()
    heap.schedule(b"a", 300)
    heap.schedule(b"b", 200)
    heap.schedule(b"a", 500)  # later: the earlier entry stays (it is re-read when it fires)
    assert heap.earliest() == 200
    heap.schedule(b"a", 100)  # earlier: replaces
    assert heap.earliest() == 100
    assert heap.due(99) == []
    assert heap.due(250) == [b"a", b"b"]
    assert heap.earliest() is None  # the stale 300 entry of "a" is skipped
    heap.schedule(b"c", 10)
    heap.schedule(b"c", None)
    assert heap.earliest() is None
    assert len(heap) == 0


@pytest.mark.requirement("RM-5.1")
def test_the_heap_stays_proportional_to_the_sessions() -> None:
    heap = DeadlineHeap()
    for t in range(100_000, 0, -1):  # every change an earlier deadline: worst case
        heap.schedule(sid(t % 10), t)
    assert len(heap) == 10
    assert len(heap._heap) <= 2 * 10 + 64 + 1
    assert heap.earliest() == 1


# --- both hosts ------------------------------------------------------------------------------


@pytest.fixture(params=["local", "gateway"])
def host(request: pytest.FixtureRequest) -> LocalSessionHost | GatewaySessionHost:
    if request.param == "local":
        return LocalSessionHost(POLICY)
    return gateway_host()


@pytest.mark.requirement("RM-1", "RM-2.2")
def test_tick_steps_only_the_due_session_and_ends_it_at_its_bound(
        host: LocalSessionHost | GatewaySessionHost) -> None:
    typed: SessionHost = host
    for i, t0 in enumerate((1_000, 2_000, 3_000)):
        effects = typed.open(sid(i), secret(sid(i)), HOME, t0)
        assert any(isinstance(e, BindTransport) for e in effects)
    first = next_deadline(state_of(host, sid(0)))
    assert typed.next_deadline() == first == 1_000 + POLICY.transport_lost_ttl_ms
    others = [state_of(host, sid(1)), state_of(host, sid(2))]
    assert typed.tick(first - 1) == []
    effects = typed.tick(first)
    assert [e for e in effects if isinstance(e, SessionEnded)] == [
        SessionEnded(sid(0), ReasonCode.TRANSPORT_LOST_TTL_EXPIRED)]
    assert [state_of(host, sid(1)), state_of(host, sid(2))] == others
    assert typed.next_deadline() == 2_000 + POLICY.transport_lost_ttl_ms


@pytest.mark.requirement("RM-2.2", "RM-2.3")
def test_a_host_validates_and_binds_a_new_path_through_the_peer(
        host: LocalSessionHost | GatewaySessionHost) -> None:
    typed: SessionHost = host
    typed.open(sid(7), secret(sid(7)), HOME, 1_000)
    effects = typed.handle(sid(7), InboundTraffic(1_100, ROAMED, 100))
    assert effects is not None
    assert [type(e) for e in effects if isinstance(e, SendPathChallenge)] == [SendPathChallenge]
    # The validation times out unanswered at its deadline, found by tick, not by polling.
    pending = state_of(host, sid(7)).side.pending
    assert pending is not None
    assert typed.next_deadline() == pending.deadline_ms
    request = peer.answer_challenge(state_of(host, sid(7)), 1_200, size=120)
    effects = typed.handle(sid(7), request)
    assert effects is not None
    assert BindTransport(sid(7), ROAMED, HOME) in effects
    assert any(isinstance(e, SendReattachAccept) and e.to == ROAMED for e in effects)
    assert state_of(host, sid(7)).link.active == ROAMED


def test_unknown_sessions_and_refused_opens(host: LocalSessionHost | GatewaySessionHost) -> None:
    typed: SessionHost = host
    assert typed.handle(sid(9), InboundTraffic(1_000, HOME, 10)) is None
    typed.open(sid(1), secret(sid(1)), HOME, 1_000)
    with pytest.raises(SessionTableError):
        typed.open(sid(1), secret(sid(1)), HOME, 1_001)
    assert typed.policy == POLICY


@pytest.mark.requirement("RM-5.3")
def test_the_gateway_host_wakes_for_idle_eviction() -> None:
    host = gateway_host(session_idle_ttl_ms=1_000)
    host.open(sid(3), secret(sid(3)), HOME, 1_000)
    assert host.next_deadline() == 2_000  # idle TTL comes before the core's 6,000
    effects = host.tick(2_000)
    assert SessionEnded(sid(3), ReasonCode.SESSION_EVICTED) in effects
    assert host.get(sid(3)) is None
    assert host.next_deadline() is None


@pytest.mark.requirement("RM-5.3")
def test_the_gateway_host_names_the_gateways_refusal() -> None:
    host = gateway_host(max_sessions=1)
    host.open(sid(1), secret(sid(1)), HOME, 1_000)
    with pytest.raises(SessionTableError, match="SESSION_TABLE_FULL"):
        host.open(sid(2), secret(sid(2)), HOME, 1_001)
    assert len(host) == 1
    assert state_of(host, sid(1)).phase is Phase.ATTACHED
