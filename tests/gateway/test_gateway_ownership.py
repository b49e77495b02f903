"""Ownership, commits and store failures (RM-4.1, RM-4.2), table bounds (RM-5.3), restart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jumpvpn_core.effects import SessionEnded, StateChanged
from jumpvpn_core.events import Close, InboundTraffic
from jumpvpn_core.gateway import AsyncGateway, OwnershipMode, encode_state, owner_of
from jumpvpn_core.phases import Phase
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.state import ServerSide
from jumpvpn_core.stores import open_store
from jumpvpn_core.stores.base import SessionStore, StoredSession, StoreUnavailableError
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.telemetry import ListSink

from .support import CLIENT, T0, make_gateway, reattach, secret_for, sid


class HookedStore:
    """A store that can run a hook before a CAS, or fail calls, to stage races and outages."""

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.before_cas: Callable[[], None] | None = None
        self.down = False
        self.cas_lands_then_times_out = False

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailableError("store down (test)")

    def get(self, session_id: bytes) -> StoredSession | None:
        self._check()
        return self.inner.get(session_id)

    def create(self, session_id: bytes, version: int, data: bytes) -> bool:
        self._check()
        return self.inner.create(session_id, version, data)

    def compare_and_set(self, session_id: bytes, expected_version: int, new_version: int,
                        data: bytes) -> bool:
        hook, self.before_cas = self.before_cas, None
        if hook is not None:
            hook()
        self._check()
        if self.cas_lands_then_times_out:
            self.cas_lands_then_times_out = False
            self.inner.compare_and_set(session_id, expected_version, new_version, data)
            raise StoreUnavailableError("reply lost (test)")
        return self.inner.compare_and_set(session_id, expected_version, new_version, data)

    def delete(self, session_id: bytes, expected_version: int) -> bool:
        self._check()
        return self.inner.delete(session_id, expected_version)

    def scan(self) -> Iterator[StoredSession]:
        self._check()
        return self.inner.scan()

    def close(self) -> None:
        self.inner.close()




@pytest.mark.requirement("RM-4.1")
def test_shared_mode_lost_compare_and_set_rejects_with_commit_conflict() -> None:
    store = HookedStore(MemoryStore())
    node_a = make_gateway(store, nodes=("n0", "n1"), node="n0")
    node_b = make_gateway(store, nodes=("n0", "n1"), node="n1")
    node_a.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    winner: list[bool] = []

    def node_b_commits_first() -> None:
        winner.append(node_b.handle_reattach(reattach(sid(1), nonce=2, version=1,
                                                      now=T0 + 1)).accepted)

    store.before_cas = node_b_commits_first
    lost = node_a.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1))
    assert winner == [True]
    assert lost.reason is ReasonCode.COMMIT_CONFLICT
    assert not lost.accepted
    assert lost.effects == ()
    record = store.get(sid(1))
    assert record is not None
    assert record.version == 2
    committed = node_a.committed(sid(1))
    assert committed is not None
    # Exactly one binding at version 2; the loser's nonce was never marked.
    side = committed[1].side
    assert isinstance(side, ServerSide)
    assert side.binding_version == 2
    retry = node_a.handle_reattach(reattach(sid(1), nonce=1, version=2, now=T0 + 2))
    assert retry.accepted
    assert retry.store_version == 3


@pytest.mark.requirement("RM-4.1")
def test_sticky_owner_finding_a_foreign_commit_terminates_instead_of_guessing() -> None:
    store = HookedStore(MemoryStore())
    sink = ListSink()
    nodes = ("n0", "n1")
    session = next(sid(i) for i in range(100) if owner_of(sid(i), nodes) == "n0")
    owner = make_gateway(store, mode=OwnershipMode.STICKY, nodes=nodes, node="n0",
                         telemetry=sink)
    owner.open_session(session, secret_for(session), CLIENT, T0)
    # Another writer (a misrouted node, an operator) commits behind the owner's back.
    record = store.get(session)
    assert record is not None
    store.inner.compare_and_set(session, record.version, record.version + 1, record.data)
    result = owner.handle_reattach(reattach(session, nonce=1, version=1, now=T0 + 1))
    assert not result.accepted
    assert result.reason is ReasonCode.OWNERSHIP_AMBIGUOUS
    assert result.phase is Phase.TERMINATED
    assert any(isinstance(e, SessionEnded) for e in result.effects)
    changes = [r for r in sink.records if r["type"] == "state_change"]
    assert changes[-1]["to"] == "TERMINATED"
    assert changes[-1]["reason"] == "OWNERSHIP_AMBIGUOUS"
    assert owner.local_state(session) is None
    assert store.get(session) is None  # the terminated record was then removed


@pytest.mark.requirement("RM-4.1")
def test_undecodable_record_is_never_guessed_about() -> None:
    store = MemoryStore()
    gw = make_gateway(store)
    gw.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    record = store.get(sid(1))
    assert record is not None
    store.compare_and_set(sid(1), 1, 2, b'{"format": 1, "garbage": true}')
    # With a cached copy the node terminates the session on the store's record.
    ended = gw.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1))
    assert ended.reason is ReasonCode.STORE_RECORD_INVALID
    assert ended.phase is Phase.TERMINATED
    changes = [e for e in ended.effects if isinstance(e, StateChanged)]
    assert [c.reason for c in changes] == [ReasonCode.STORE_RECORD_INVALID]
    # A node with no copy of its own refuses: it cannot know what the session was.
    store.create(sid(2), 1, b"\xff not json")
    fresh = make_gateway(store)
    refused = fresh.handle_reattach(reattach(sid(2), nonce=1, version=1, now=T0))
    assert refused.reason is ReasonCode.STORE_RECORD_INVALID
    assert refused.effects == ()
    stored = store.get(sid(2))
    assert stored is not None
    assert stored.data == b"\xff not json"


@pytest.mark.requirement("RM-4.2")
@pytest.mark.parametrize("mode", [OwnershipMode.SHARED, OwnershipMode.STICKY])
def test_store_outage_rejects_and_never_accepts_without_commit(mode: OwnershipMode) -> None:
    store = HookedStore(MemoryStore())
    gw = make_gateway(store, mode=mode)
    gw.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    store.down = True
    down = gw.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1))
    assert down.reason is ReasonCode.STORE_UNAVAILABLE
    assert not down.accepted
    assert down.effects == ()
    assert gw.open_session(sid(2), secret_for(sid(2)), CLIENT, T0).reason is \
        ReasonCode.STORE_UNAVAILABLE
    store.down = False
    back = gw.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 2))
    assert back.accepted
    assert back.store_version == 2


@pytest.mark.requirement("RM-4.2")
def test_sticky_commit_whose_reply_was_lost_is_resolved_from_the_store() -> None:
    store = HookedStore(MemoryStore())
    gw = make_gateway(store, mode=OwnershipMode.STICKY)
    gw.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    store.cas_lands_then_times_out = True
    lost = gw.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1))
    assert lost.reason is ReasonCode.STORE_UNAVAILABLE
    assert lost.effects == ()
    # The write did land: the owner adopts it (it is its own), so the nonce stays used.
    replay = gw.handle_reattach(reattach(sid(1), nonce=1, version=2, now=T0 + 2))
    assert replay.reason is ReasonCode.REPLAY_DETECTED
    nxt = gw.handle_reattach(reattach(sid(1), nonce=2, version=2, now=T0 + 3))
    assert nxt.accepted
    assert nxt.store_version == 3


@pytest.mark.requirement("RM-5.3")
def test_new_session_beyond_capacity_is_refused_with_session_table_full() -> None:
    store = MemoryStore()
    gw = make_gateway(store, mode=OwnershipMode.STICKY, max_sessions=3)
    for i in range(3):
        assert gw.open_session(sid(i), secret_for(sid(i)), CLIENT, T0).accepted
    full = gw.open_session(sid(3), secret_for(sid(3)), CLIENT, T0 + 1)
    assert full.reason is ReasonCode.SESSION_TABLE_FULL
    assert store.get(sid(3)) is None
    assert len(gw) == 3


@pytest.mark.requirement("RM-5.3")
@pytest.mark.parametrize("mode", [OwnershipMode.SHARED, OwnershipMode.STICKY])
def test_idle_sessions_are_evicted_explicitly_with_an_audit_record(mode: OwnershipMode) -> None:
    store = MemoryStore()
    sink = ListSink()
    # No clock skew allowed here: shared mode otherwise waits the skew bound past the TTL
    # (tests/gateway/test_clock_contract.py).
    gw = make_gateway(store, mode=mode, max_sessions=2, session_idle_ttl_ms=5_000,
                      max_clock_skew_ms=0, telemetry=sink)
    gw.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    gw.open_session(sid(2), secret_for(sid(2)), CLIENT, T0 + 3_000)
    # At capacity; sid(1) has been idle for 5 s: it is evicted, explicitly, to make room.
    third = gw.open_session(sid(3), secret_for(sid(3)), CLIENT, T0 + 5_000)
    assert third.accepted
    ended = [r for r in sink.records if r["type"] == "state_change" and r["to"] == "TERMINATED"]
    assert [(r["session_id"], r["reason"]) for r in ended] == [
        (sid(1).hex(), "SESSION_EVICTED")
    ]
    assert store.get(sid(1)) is None
    # A request for an idle session ends it (audited) and is refused.
    late = gw.handle_reattach(reattach(sid(2), nonce=1, version=1, now=T0 + 8_000))
    assert late.reason is ReasonCode.SESSION_TERMINATED
    assert [type(e) for e in late.effects] == [StateChanged, SessionEnded]
    # tick() evicts what is left once idle.
    results = gw.tick(T0 + 20_000)
    assert [r.phase for r in results] == [Phase.TERMINATED]
    assert len(gw) == 0
    assert list(store.scan()) == []


def test_core_deadlines_fire_on_tick_and_terminated_sessions_leave_the_table() -> None:
    store = MemoryStore()
    gw = make_gateway(store, mode=OwnershipMode.STICKY, session_idle_ttl_ms=10_000_000)
    gw.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    closed = gw.handle(sid(1), Close(T0 + 1))
    assert closed.accepted
    assert closed.phase is Phase.TERMINATED
    assert gw.local_state(sid(1)) is None
    gw.open_session(sid(2), secret_for(sid(2)), CLIENT, T0)
    # transport_lost_ttl_ms (60 s by default) ends a silent session on tick.
    results = gw.tick(T0 + 60_000)
    assert [r.phase for r in results] == [Phase.TERMINATED]
    assert store.get(sid(2)) is None


def _open_and_use(store: SessionStore, mode: OwnershipMode) -> None:
    gw = make_gateway(store, mode=mode)
    for i in range(5):
        assert gw.open_session(sid(i), secret_for(sid(i)), CLIENT, T0).accepted
        assert gw.handle_reattach(reattach(sid(i), nonce=7, version=1, now=T0 + 10)).accepted
    gw.handle(sid(0), Close(T0 + 20))


@pytest.mark.requirement("RM-4.2")
@pytest.mark.parametrize("mode", [OwnershipMode.SHARED, OwnershipMode.STICKY])
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_restart_on_the_same_store_resumes_every_session(
    tmp_path: Path, backend: str, mode: OwnershipMode
) -> None:
    store = MemoryStore() if backend == "memory" else open_store(
        f"sqlite:///{tmp_path / 'sessions.db'}")
    _open_and_use(store, mode)
    before = {r.session_id: (r.version, r.data) for r in store.scan()}
    if backend == "sqlite":
        store.close()
        store = open_store(f"sqlite:///{tmp_path / 'sessions.db'}")
    sink = ListSink()
    restarted = make_gateway(store, mode=mode, telemetry=sink)
    assert restarted.resume(T0 + 30) == 4
    assert sorted(restarted.session_ids()) == sorted(sid(i) for i in range(1, 5))
    assert {r.session_id: (r.version, r.data) for r in store.scan()} == before
    assert len([r for r in sink.records if r["type"] == "session_resumed"]) == 4
    for i in range(1, 5):
        # A nonce accepted before the restart is still rejected after it.
        replay = restarted.handle_reattach(reattach(sid(i), nonce=7, version=2, now=T0 + 40))
        assert replay.reason is ReasonCode.REPLAY_DETECTED
        fresh = restarted.handle_reattach(reattach(sid(i), nonce=8, version=2, now=T0 + 40))
        assert fresh.accepted
        assert fresh.store_version == 3
    assert restarted.handle_reattach(reattach(sid(0), nonce=8, version=2, now=T0 + 40)).reason \
        is ReasonCode.UNKNOWN_SESSION
    store.close()


@pytest.mark.requirement("RM-4.2")
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_crash_between_commit_and_effects_loses_no_committed_state(
    tmp_path: Path, backend: str
) -> None:
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 's.db'}"
    store = open_store(url)
    gw = make_gateway(store, mode=OwnershipMode.STICKY)
    gw.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    result = gw.handle_reattach(reattach(sid(1), nonce=3, version=1, now=T0 + 5))
    assert result.accepted
    local = gw.local_state(sid(1))
    assert local is not None
    committed_data = encode_state(local)
    # Crash: the effects (the accept, the audit) are never executed; the node is gone.
    del gw, result
    if backend == "sqlite":
        store.close()
        store = open_store(url)
    record = store.get(sid(1))
    assert record is not None
    assert (record.version, record.data) == (2, committed_data)
    again = make_gateway(store, mode=OwnershipMode.STICKY)
    again.resume(T0 + 6)
    state = again.local_state(sid(1))
    assert state is not None
    assert state.state_version == 2
    # The client never saw the accept; repeating its request is caught, not re-applied.
    repeat = again.handle_reattach(reattach(sid(1), nonce=3, version=1, now=T0 + 7))
    assert repeat.reason is ReasonCode.REPLAY_DETECTED
    store.close()


def test_async_wrapper_gives_the_same_results_off_the_event_loop() -> None:
    async def run() -> list[ReasonCode | None]:
        agw = AsyncGateway(make_gateway(MemoryStore()))
        now = agw.now_ms()
        assert isinstance(now, int)
        opened = await agw.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
        ok = await agw.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1))
        replay = await agw.handle_reattach(reattach(sid(1), nonce=1, version=2, now=T0 + 2))
        traffic = await agw.handle(sid(1), InboundTraffic(T0 + 3, CLIENT, 100))
        ticks = await agw.tick(T0 + 4)
        resumed = await agw.resume(T0 + 5)
        assert ticks == []
        assert resumed == 0
        assert traffic.accepted
        return [opened.reason, ok.reason, replay.reason]

    assert asyncio.run(run()) == [None, None, ReasonCode.REPLAY_DETECTED]
