"""The clock contract of a cluster, with skewed nodes (RM-4.1, RM-4.2, RM-5.3, RM-8).

Nodes share one time base and stay within `max_clock_skew_ms` of each other. A node a
little behind still serves; a record ahead beyond the bound is refused, never terminated or
deleted; a node found out of contract by the store's clock refuses everything.
"""

from __future__ import annotations

import pytest

from jumpvpn_core.gateway import OwnershipMode
from jumpvpn_core.phases import Phase
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.stores.base import StoreUnavailableError
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.telemetry import ListSink

from .support import CLIENT, ROAMED, T0, ClockedStore, make_gateway, reattach, secret_for, sid


def _records(store: MemoryStore) -> dict[bytes, tuple[int, bytes]]:
    return {r.session_id: (r.version, r.data) for r in store.scan()}


@pytest.mark.requirement("RM-4.1")
def test_a_node_slightly_behind_still_serves_at_the_sessions_clock() -> None:
    store = MemoryStore()
    ahead = make_gateway(store, node="n0", max_clock_skew_ms=1_000)
    behind = make_gateway(store, node="n0", max_clock_skew_ms=1_000)
    ahead.open_session(sid(1), secret_for(sid(1)), CLIENT, T0 + 5_000)
    # `behind` is 800 ms behind `ahead`: within the bound it serves, at the record's clock.
    served = behind.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 4_200,
                                             timestamp=T0 + 4_200, source=ROAMED))
    assert served.reason is not ReasonCode.TIME_WENT_BACKWARDS
    assert served.store_version == 2  # committed: the path validation marked its nonce
    state = behind.committed(sid(1))
    assert state is not None
    assert state[1].link.clock_ms == T0 + 5_000  # the session's time did not go back


@pytest.mark.requirement("RM-4.1")
@pytest.mark.requirement("RM-8")
def test_a_record_ahead_beyond_the_bound_is_refused_never_ended_or_deleted() -> None:
    store = MemoryStore()
    ahead = make_gateway(store, max_clock_skew_ms=1_000)
    ahead.open_session(sid(1), secret_for(sid(1)), CLIENT, T0 + 5_000)
    before = _records(store)
    behind = make_gateway(store, max_clock_skew_ms=1_000)  # 5 s behind: out of contract
    for event_time in (T0, T0 + 3_000, T0 + 3_999):
        refused = behind.handle_reattach(reattach(sid(1), nonce=1, version=1, now=event_time))
        assert refused.reason is ReasonCode.TIME_WENT_BACKWARDS
        assert refused.effects == ()
        assert refused.store_version is None
    assert behind.tick(T0 + 3_000) == []
    assert _records(store) == before
    # Resume leaves it alone too, and says so.
    sink = ListSink()
    restarted = make_gateway(store, max_clock_skew_ms=1_000, telemetry=sink)
    assert restarted.resume(T0) == 0
    assert [r["type"] for r in sink.records] == ["store_record_ahead"]
    assert _records(store) == before


@pytest.mark.requirement("RM-5.3")
def test_a_node_ahead_within_the_bound_never_evicts_a_session_just_served() -> None:
    store = MemoryStore()
    ttl = 10_000
    server = make_gateway(store, session_idle_ttl_ms=ttl, max_clock_skew_ms=1_000)
    server.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    # 100 ms before the TTL on the serving node's clock; this node is 900 ms ahead.
    other = make_gateway(store, session_idle_ttl_ms=ttl, max_clock_skew_ms=1_000)
    result = other.handle_reattach(reattach(sid(1), nonce=1, version=1,
                                            now=T0 + ttl - 100 + 900))
    assert result.reason is not ReasonCode.SESSION_TERMINATED
    committed = other.committed(sid(1))
    assert committed is not None
    assert committed[1].phase is not Phase.TERMINATED
    # Idle past the TTL plus the bound, it is evicted (explicitly) by whichever node sees it.
    last = committed[1].link.clock_ms
    late = other.handle_reattach(reattach(sid(1), nonce=2, version=1,
                                          now=last + ttl + 1_000))
    assert late.reason is ReasonCode.SESSION_TERMINATED


@pytest.mark.requirement("RM-4.2")
@pytest.mark.requirement("RM-8")
@pytest.mark.parametrize("offset_ms", [700_000, -5_000])
def test_a_node_out_of_contract_with_the_store_clock_refuses_everything(
    offset_ms: int,
) -> None:
    base = T0 + 10_000
    store = ClockedStore(base)
    healthy = make_gateway(store, mode=OwnershipMode.SHARED)
    for i in range(3):
        assert healthy.open_session(sid(i), secret_for(sid(i)), CLIENT, base).accepted
    before = _records(store)
    sink = ListSink()
    skewed = make_gateway(store, mode=OwnershipMode.SHARED, telemetry=sink)
    now = base + 100 + offset_ms
    assert skewed.check_clock(now) == 100 + offset_ms
    assert skewed.clock_fault
    for i in range(3):
        refused = skewed.handle_reattach(reattach(sid(i), nonce=1, version=1, now=now))
        assert refused.reason is ReasonCode.TIME_WENT_BACKWARDS
    assert skewed.open_session(sid(9), secret_for(sid(9)), CLIENT, now).reason is (
        ReasonCode.TIME_WENT_BACKWARDS)
    assert skewed.tick(now) == []
    assert _records(store) == before  # nothing terminated, deleted or created
    assert [r["type"] for r in sink.records] == ["clock_out_of_contract"]
    # Back within the bound (the operator fixed the clock): it serves again.
    store.now_ms = base + 200
    assert skewed.check_clock(base + 250) == 50
    assert not skewed.clock_fault
    assert skewed.handle_reattach(reattach(sid(0), nonce=1, version=1,
                                           now=base + 250)).accepted
    assert [r["type"] for r in sink.records][-1] != "clock_out_of_contract"


def test_check_clock_without_a_store_clock_changes_nothing() -> None:
    gateway = make_gateway(MemoryStore())
    assert gateway.check_clock(T0) is None
    assert not gateway.clock_fault
    assert gateway.clock_offset_ms is None


class _BrokenClockStore(MemoryStore):
    def time_ms(self) -> int:
        raise StoreUnavailableError("no answer (test)")


@pytest.mark.requirement("RM-8")
def test_the_clock_bound_is_inclusive_both_ways_and_each_change_is_reported() -> None:
    store = ClockedStore(T0)
    sink = ListSink()
    node = make_gateway(store, node="n0", max_clock_skew_ms=500, telemetry=sink)
    assert node.check_clock(T0 + 500) == 500
    assert node.check_clock(T0 - 500) == -500
    assert not node.clock_fault
    assert node.check_clock(T0 + 501) == 501
    assert node.clock_fault
    assert node.clock_offset_ms == 501
    assert node.check_clock(T0 - 501) == -501  # still out: reported once
    assert node.check_clock(T0 + 3) == 3
    assert not node.clock_fault
    node.close()
    assert [r for r in sink.records if r["type"].startswith("clock_")] == [
        {"v": 1, "type": "clock_out_of_contract", "node": "n0", "offset_ms": 501,
         "bound_ms": 500, "ts_ms": T0 + 501},
        {"v": 1, "type": "clock_within_contract", "node": "n0", "offset_ms": 3,
         "bound_ms": 500, "ts_ms": T0 + 3},
    ]


def test_a_store_clock_that_does_not_answer_changes_nothing() -> None:
    node = make_gateway(ClockedStore(T0), max_clock_skew_ms=500)
    node.check_clock(T0 + 900)
    assert node.clock_fault
    node.store = _BrokenClockStore()
    assert node.check_clock(T0) is None
    assert node.clock_fault  # the last verdict stands
    assert node.clock_offset_ms == 900
