"""The one fault-injecting store: faults are on exactly while switched on, never random,
and a lost reply still lands its write (what makes §4.2's in-doubt commits possible)."""

from __future__ import annotations

import pytest

from jumpvpn_core.stores.base import StoredSession, StoreUnavailableError
from jumpvpn_core.stores.faulty import FaultyStore, StoreFault
from jumpvpn_core.stores.memory import MemoryStore

SID = bytes(range(16))


@pytest.mark.requirement("RM-4.2")
def test_down_refuses_every_call_before_it_reaches_the_store_until_switched_back() -> None:
    store = FaultyStore(MemoryStore())
    store.fault = StoreFault.DOWN
    for call in (lambda: store.get(SID), lambda: store.create(SID, 1, b"a"),
                 lambda: store.compare_and_set(SID, 1, 2, b"b"), lambda: store.delete(SID, 1),
                 lambda: list(store.scan())):
        with pytest.raises(StoreUnavailableError, match="store is down"):
            call()
    assert (store.reads, store.writes, store.refused) == (0, 0, 5)
    assert store.peek(SID) is None
    store.fault = StoreFault.NONE
    assert store.create(SID, 1, b"a")
    assert store.get(SID) == StoredSession(SID, 1, b"a")


@pytest.mark.requirement("RM-4.2")
def test_a_lost_reply_lands_the_write_but_the_caller_sees_unavailable() -> None:
    store = FaultyStore(MemoryStore())
    assert store.create(SID, 1, b"a")
    store.fault = StoreFault.LOSE_REPLIES
    with pytest.raises(StoreUnavailableError, match="reply was lost"):
        store.compare_and_set(SID, 1, 2, b"b")
    record = store.peek(SID)
    assert record is not None
    assert record.version == 2
    assert store.get(SID) == record  # reads still answer
    assert store.writes == 2


@pytest.mark.requirement("RM-4.1")
def test_held_reads_show_each_node_the_record_from_before_the_race_once() -> None:
    shared = FaultyStore(MemoryStore())
    shared.create(SID, 1, b"a")
    first, second = FaultyStore(shared), FaultyStore(shared)
    first.hold_reads([SID])
    second.hold_reads([SID])
    assert shared.reads == 0  # holding is the runner's own look, not a read
    assert first.get(SID) == StoredSession(SID, 1, b"a")
    assert first.compare_and_set(SID, 1, 2, b"b")
    # The second node read before the first committed: it sees version 1, its CAS fails.
    assert second.get(SID) == StoredSession(SID, 1, b"a")
    assert not second.compare_and_set(SID, 1, 2, b"c")
    # Held once: the next read is live.
    assert second.get(SID) == StoredSession(SID, 2, b"b")
    assert shared.reads == 3


@pytest.mark.requirement("RM-4.1")
def test_caller_owned_reachability_and_hooks_run_in_order() -> None:
    seen: list[object] = []
    partitioned = [False]
    store = FaultyStore(
        MemoryStore(),
        unreachable=lambda: "partitioned" if partitioned[0] else None,
        after_read=lambda sid: seen.append(("read", sid)),
        after_commit=lambda sid, version, data, created: seen.append(
            ("commit", version, created)),
    )
    assert store.create(SID, 1, b"a")
    assert store.compare_and_set(SID, 1, 2, b"b")
    assert not store.compare_and_set(SID, 1, 3, b"c")  # did not land: no hook
    store.get(SID)
    partitioned[0] = True
    with pytest.raises(StoreUnavailableError, match="partitioned"):
        store.get(SID)
    assert seen == [("commit", 1, True), ("commit", 2, False), ("read", SID)]
    assert store.refused == 1
