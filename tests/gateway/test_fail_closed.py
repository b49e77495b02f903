"""Fail-closed paths of the gateway, each with a test that fails when the path is broken.

RM-4.1: a node that cannot tell whose record it holds terminates or refuses; it never
serves on a guess. RM-4.2: a store that does not answer is never taken for a commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from jumpvpn_core.effects import SessionEnded
from jumpvpn_core.errors import PolicyError
from jumpvpn_core.events import Close
from jumpvpn_core.gateway import (
    Gateway,
    GatewayPolicy,
    GatewayResult,
    OwnershipMode,
    owner_of,
    records,
)
from jumpvpn_core.gateway.records import RecordInvalidError, decode_record, encode_state
from jumpvpn_core.gateway.resume import ResumeReport
from jumpvpn_core.invariants import Violation
from jumpvpn_core.machine import step
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.state import new_session
from jumpvpn_core.stores.base import SessionStore, StoredSession, StoreUnavailableError
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.telemetry import ListSink

from .support import CLIENT, ROAMED, T0, ClockedStore, make_gateway, reattach, secret_for, sid


class ScriptedStore:
    """A store whose next calls fail as scripted, and whose backing store can be swapped
    (a restore from an older snapshot).

    `script[method]` lists the outcomes of that method's next calls, first first: "fail"
    (raises before reaching the store), "lose" (carried out, then the reply is lost: a
    write that landed but raised), or a callable run before the call reaches the store (a
    rival writing in between). An empty list means every call goes through.
    """

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.script: dict[str, list[str | Callable[[], object]]] = {}

    def _next(self, method: str) -> str | None:
        queue = self.script.get(method)
        if not queue:
            return None
        outcome = queue.pop(0)
        if callable(outcome):
            outcome()
            return None
        if outcome == "fail":
            raise StoreUnavailableError(f"{method} timed out (test)")
        return outcome

    def get(self, session_id: bytes) -> StoredSession | None:
        self._next("get")
        return self.inner.get(session_id)

    def create(self, session_id: bytes, version: int, data: bytes) -> bool:
        return self.inner.create(session_id, version, data)

    def compare_and_set(self, session_id: bytes, expected_version: int, new_version: int,
                        data: bytes) -> bool:
        lose = self._next("compare_and_set") == "lose"
        done = self.inner.compare_and_set(session_id, expected_version, new_version, data)
        if lose:
            raise StoreUnavailableError("reply lost (test)")
        return done

    def delete(self, session_id: bytes, expected_version: int) -> bool:
        self._next("delete")
        return self.inner.delete(session_id, expected_version)

    def scan(self) -> Iterator[StoredSession]:
        return self.inner.scan()

    def close(self) -> None:
        self.inner.close()


def _record(store: SessionStore, session_id: bytes) -> StoredSession:
    record = store.get(session_id)
    assert record is not None
    return record


@pytest.mark.requirement("RM-4.1")
def test_an_ambiguous_session_stays_ambiguous_after_a_termination_that_failed() -> None:
    store = ScriptedStore(MemoryStore())
    owner = make_gateway(store, mode=OwnershipMode.STICKY)
    owner.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    opened = _record(store, sid(1))
    # Another writer commits behind the owner's back; the owner's commit then fails, and
    # its attempt to terminate the session cannot even read the store.
    store.inner.compare_and_set(sid(1), 1, 2, opened.data)
    store.script["get"] = ["fail"]
    first = owner.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1))
    _refused(first, sid(1), ReasonCode.STORE_UNAVAILABLE)
    assert owner.local_state(sid(1)) is not None  # not ended yet: nothing was committed
    # The store comes back from an older snapshot, at the very version the owner knew.
    restored = MemoryStore()
    restored.create(sid(1), opened.version, opened.data)
    store.inner = restored
    second = owner.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 2))
    # Ownership stays in doubt: the session is ended on the store's record, never served.
    assert not second.accepted
    assert second.reason is ReasonCode.OWNERSHIP_AMBIGUOUS
    assert second.phase is Phase.TERMINATED
    assert any(isinstance(e, SessionEnded) for e in second.effects)
    assert owner.local_state(sid(1)) is None
    assert restored.get(sid(1)) is None


@pytest.mark.requirement("RM-4.1")
@pytest.mark.requirement("RM-4.2")
def test_a_foreign_record_at_the_version_of_a_commit_in_doubt_is_not_adopted() -> None:
    store = ScriptedStore(MemoryStore())
    owner = make_gateway(store, mode=OwnershipMode.STICKY)
    owner.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    opened = _record(store, sid(1))
    store.script["compare_and_set"] = ["fail"]
    lost = owner.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1))
    assert (lost.accepted, lost.reason) == (False, ReasonCode.STORE_UNAVAILABLE)
    # The owner's write never landed; another writer took version 2 with other content.
    assert store.inner.compare_and_set(sid(1), 1, 2, opened.data)
    nxt = owner.handle_reattach(reattach(sid(1), nonce=2, version=1, now=T0 + 2))
    assert not nxt.accepted
    assert nxt.reason is ReasonCode.OWNERSHIP_AMBIGUOUS
    assert nxt.phase is Phase.TERMINATED
    assert owner.local_state(sid(1)) is None


@pytest.mark.requirement("RM-4.2")
def test_a_commit_in_doubt_that_never_landed_is_retried_from_the_known_version() -> None:
    store = ScriptedStore(MemoryStore())
    owner = make_gateway(store, mode=OwnershipMode.STICKY)
    owner.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    store.script["compare_and_set"] = ["fail"]
    lost = owner.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1))
    assert lost.reason is ReasonCode.STORE_UNAVAILABLE
    retry = owner.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 2))
    assert retry.accepted
    assert retry.store_version == 2
    # Resolved once and for all: the next input is served from the table as usual.
    assert owner.handle_reattach(reattach(sid(1), nonce=2, version=1, now=T0 + 3)).accepted


@pytest.mark.requirement("RM-4.1")
def test_a_cached_session_whose_record_breaks_is_terminated_and_reported_refused() -> None:
    store = MemoryStore()
    node = make_gateway(store)
    node.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    store.compare_and_set(sid(1), 1, 2, b"\xff not json")
    ended = node.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1))
    assert ended.session_id == sid(1)
    assert ended.accepted is False
    assert ended.reason is ReasonCode.STORE_RECORD_INVALID
    assert ended.phase is Phase.TERMINATED
    assert ended.store_version == 3  # the termination itself was committed ...
    assert any(isinstance(e, SessionEnded) for e in ended.effects)
    assert store.get(sid(1)) is None  # ... and the record then removed
    assert node.local_state(sid(1)) is None
    assert node.rejection_totals.get(ReasonCode.STORE_RECORD_INVALID) == 1


def test_handle_refuses_a_request_for_another_session_and_changes_nothing() -> None:
    store = MemoryStore()
    node = make_gateway(store, global_flood_limit=1, source_flood_limit=1)
    node.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    node.open_session(sid(2), secret_for(sid(2)), CLIENT, T0)
    before = (_record(store, sid(1)), _record(store, sid(2)))
    message = r"^session_id does not match the request's session id$"
    with pytest.raises(ValueError, match=message):
        node.handle(sid(1), reattach(sid(2), nonce=1, version=1, now=T0 + 1))
    assert (_record(store, sid(1)), _record(store, sid(2))) == before
    # A matching request goes through the flood limits like `handle_reattach`: one token.
    assert node.handle(sid(1), reattach(sid(1), nonce=1, version=1, now=T0 + 1)).accepted
    limited = node.handle(sid(2), reattach(sid(2), nonce=1, version=1, now=T0 + 1))
    assert limited.reason is ReasonCode.FLOOD_LIMITED


def test_a_record_that_decodes_but_fails_check_state_is_invalid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore()
    node = make_gateway(store)
    node.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    record = _record(store, sid(1))
    assert decode_record(record).session_id == sid(1)
    # Today the codec itself refuses every state `check_state` would (tested in
    # `test_the_codec_refuses_what_check_state_would`); the invariants are still checked
    # on every record, so a decoder loosened later cannot let such a state through.
    seen: list[object] = []

    def violated(state: object) -> list[Violation]:
        seen.append(state)
        return [Violation("terminated_absorbing", "planted for the test")]

    monkeypatch.setattr(records, "check_state", violated)
    with pytest.raises(RecordInvalidError, match="fails check_state: terminated_absorbing"):
        decode_record(record)
    assert len(seen) == 1

    def broken(state: object) -> list[Violation]:
        raise KeyError("x")

    monkeypatch.setattr(records, "check_state", broken)
    with pytest.raises(RecordInvalidError, match="fails check_state: KeyError"):
        decode_record(record)


def test_the_codec_refuses_what_check_state_would() -> None:
    store = MemoryStore()
    node = make_gateway(store)
    node.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    # A reattach from a new address opens a path validation (a pending exchange).
    opened = node.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 5,
                                           source=ROAMED))
    assert opened.accepted
    record = _record(store, sid(1))
    assert decode_record(record).side.pending is not None
    tampered: list[dict[str, Any]] = []
    for change in (
        {"phase": "TERMINATED", "end_reason": "SESSION_EVICTED"},  # keeps a pending exchange
        {"roaming": {"candidates": [f"udp:10.0.0.{i}:1" for i in range(3, 9)],
                     "recovery_rounds": 0, "switch_times": []}},  # beyond max_candidates
    ):
        data = json.loads(record.data)
        data.update(change)
        tampered.append(data)
    data = json.loads(record.data)
    data["side"]["verified_times"] = list(range(1, 7))  # beyond reattach_rate_limit
    tampered.append(data)
    for data in tampered:
        with pytest.raises(RecordInvalidError, match="does not decode"):
            decode_record(StoredSession(sid(1), record.version, json.dumps(data).encode()))


# --- every refusal names its session, is not accepted, commits nothing ---------------------


def _refused(result: GatewayResult, session: bytes, reason: ReasonCode, *,
             version: int | None = None, phase: Phase | None = None) -> None:
    assert result.session_id == session
    assert result.accepted is False
    assert result.reason is reason
    assert result.store_version == version
    assert result.phase is phase


def _sticky_owner(store: SessionStore, idle_ttl_ms: int = 600_000) -> Gateway:
    owner = make_gateway(store, mode=OwnershipMode.STICKY, session_idle_ttl_ms=idle_ttl_ms)
    assert owner.open_session(sid(1), secret_for(sid(1)), CLIENT, T0).accepted
    return owner


def test_refusals_before_the_session_is_loaded_name_the_session() -> None:
    store = MemoryStore()
    flood = make_gateway(store, global_flood_limit=1, source_flood_limit=1)
    flood.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    assert flood.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1)).accepted
    _refused(flood.handle_reattach(reattach(sid(1), nonce=2, version=1, now=T0 + 1)),
             sid(1), ReasonCode.FLOOD_LIMITED)
    source = make_gateway(store, global_flood_limit=10, source_flood_limit=1)
    assert source.handle_reattach(reattach(sid(1), nonce=2, version=1, now=T0 + 2)).accepted
    _refused(source.handle_reattach(reattach(sid(1), nonce=3, version=1, now=T0 + 2)),
             sid(1), ReasonCode.SOURCE_FLOOD_LIMITED)
    nodes = ("n0", "n1")
    foreign = next(sid(i) for i in range(100) if owner_of(sid(i), nodes) == "n1")
    sticky = make_gateway(store, mode=OwnershipMode.STICKY, nodes=nodes, node="n0")
    _refused(sticky.handle_reattach(reattach(foreign, nonce=1, version=1, now=T0)),
             foreign, ReasonCode.NOT_OWNER)
    mine = next(sid(i) for i in range(100) if owner_of(sid(i), nodes) == "n0")
    _refused(sticky.handle_reattach(reattach(mine, nonce=1, version=1, now=T0)),
             mine, ReasonCode.UNKNOWN_SESSION)
    assert flood.committed(sid(99)) is None


def test_a_shared_node_forgets_a_cached_session_whose_record_is_gone() -> None:
    store = ScriptedStore(MemoryStore())
    node = make_gateway(store)
    node.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    store.script["get"] = ["fail"]
    _refused(node.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1)),
             sid(1), ReasonCode.STORE_UNAVAILABLE)
    assert node.local_state(sid(1)) is not None
    assert store.inner.delete(sid(1), 1)  # another node ended it
    _refused(node.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 2)),
             sid(1), ReasonCode.UNKNOWN_SESSION)
    assert node.local_state(sid(1)) is None


def test_core_refusals_and_failed_commits_name_the_session_and_its_phase() -> None:
    store = ScriptedStore(MemoryStore())
    node = make_gateway(store)
    node.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    _refused(node.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1,
                                           forge=True)),
             sid(1), ReasonCode.PROOF_INVALID, phase=Phase.ATTACHED)
    store.script["compare_and_set"] = ["fail"]
    _refused(node.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 2)),
             sid(1), ReasonCode.STORE_UNAVAILABLE)
    store.script["compare_and_set"] = [lambda: store.inner.compare_and_set(
        sid(1), 1, 2, _record(store.inner, sid(1)).data)]
    _refused(node.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 3)),
             sid(1), ReasonCode.COMMIT_CONFLICT)


def test_a_committed_step_that_refuses_the_input_reports_and_counts_the_refusal() -> None:
    store = MemoryStore()
    node = make_gateway(store)
    node.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    # 60 s of silence: the core's transport-lost deadline fires before the request is
    # handled, so the step ends the session (a change, committed) and refuses the request.
    late = node.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 60_000))
    assert late.session_id == sid(1)
    assert late.accepted is False
    assert late.reason is ReasonCode.SESSION_TERMINATED
    assert late.store_version == 2
    assert late.phase is Phase.TERMINATED
    assert any(isinstance(e, SessionEnded) for e in late.effects)
    assert node.rejection_totals == {ReasonCode.SESSION_TERMINATED: 1}
    assert store.get(sid(1)) is None


def test_a_stepped_terminated_record_leaves_the_cache() -> None:
    store = MemoryStore()
    node = make_gateway(store)
    node.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    committed = node.committed(sid(1))
    assert committed is not None
    ended, _ = step(committed[1], Close(T0 + 1))
    assert ended.phase is Phase.TERMINATED
    # Another node ended the session and could not delete its record.
    assert store.compare_and_set(sid(1), 1, 2, encode_state(ended))
    _refused(node.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 2)),
             sid(1), ReasonCode.SESSION_TERMINATED, phase=Phase.TERMINATED)
    assert node.local_state(sid(1)) is None


@pytest.mark.requirement("RM-5.3")
@pytest.mark.parametrize("mode", [OwnershipMode.SHARED, OwnershipMode.STICKY])
def test_idle_means_the_ttl_exactly_plus_the_skew_bound_in_shared_mode(
    mode: OwnershipMode,
) -> None:
    store = MemoryStore()
    node = make_gateway(store, mode=mode, session_idle_ttl_ms=5_000, max_clock_skew_ms=700)
    node.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    idle_at = T0 + 5_000 + (700 if mode is OwnershipMode.SHARED else 0)
    assert node.tick(idle_at - 1) == []
    (evicted,) = node.tick(idle_at)
    assert (evicted.session_id, evicted.phase) == (sid(1), Phase.TERMINATED)


def test_making_room_evicts_idle_sessions_without_counting_a_refusal() -> None:
    store = MemoryStore()
    node = make_gateway(store, mode=OwnershipMode.STICKY, max_sessions=1,
                        session_idle_ttl_ms=5_000)
    node.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    assert node.open_session(sid(2), secret_for(sid(2)), CLIENT, T0 + 5_000).accepted
    assert store.get(sid(1)) is None
    assert node.rejection_totals == {}


# --- the owner's fail-closed paths ----------------------------------------------------------


@pytest.mark.requirement("RM-4.1")
def test_a_failed_fail_closed_termination_is_reported_and_retried() -> None:
    store = ScriptedStore(MemoryStore())
    owner = _sticky_owner(store)
    opened = _record(store, sid(1))
    store.inner.compare_and_set(sid(1), 1, 2, opened.data)
    # The owner's commit loses; its termination's own commit then fails.
    store.script["compare_and_set"] = ["ok", "fail"]
    _refused(owner.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1)),
             sid(1), ReasonCode.STORE_UNAVAILABLE)
    # A record that keeps changing under the termination: given up after a bound.
    bump: list[str | Callable[[], object]] = [lambda: store.inner.compare_and_set(
        sid(1), _record(store.inner, sid(1)).version, _record(store.inner, sid(1)).version + 1,
        opened.data)]
    store.script["compare_and_set"] = bump * 3
    _refused(owner.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 2)),
             sid(1), ReasonCode.COMMIT_CONFLICT)
    assert _record(store, sid(1)).version == 5
    # Quiet again: the next input ends it on the store's record.
    done = owner.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 3))
    _refused(done, sid(1), ReasonCode.OWNERSHIP_AMBIGUOUS, version=6, phase=Phase.TERMINATED)
    assert store.get(sid(1)) is None
    assert owner.rejection_totals == {ReasonCode.STORE_UNAVAILABLE: 1,
                                      ReasonCode.COMMIT_CONFLICT: 1,
                                      ReasonCode.OWNERSHIP_AMBIGUOUS: 1}


@pytest.mark.requirement("RM-4.1")
def test_a_record_gone_behind_the_owner_ends_the_session_as_ambiguous() -> None:
    store = MemoryStore()
    owner = _sticky_owner(store)
    assert store.delete(sid(1), 1)
    _refused(owner.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1)),
             sid(1), ReasonCode.OWNERSHIP_AMBIGUOUS)
    assert owner.local_state(sid(1)) is None
    assert owner.rejection_totals == {ReasonCode.OWNERSHIP_AMBIGUOUS: 1}


@pytest.mark.requirement("RM-4.1")
def test_a_record_already_terminated_behind_the_owner_is_removed() -> None:
    store = ScriptedStore(MemoryStore())
    owner = _sticky_owner(store)
    committed = owner.committed(sid(1))
    assert committed is not None
    ended, _ = step(committed[1], Close(T0 + 1))
    assert store.inner.compare_and_set(sid(1), 1, 2, encode_state(ended))
    store.script["delete"] = ["fail"]
    _refused(owner.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 2)),
             sid(1), ReasonCode.OWNERSHIP_AMBIGUOUS, phase=Phase.TERMINATED)
    assert owner.local_state(sid(1)) is None
    assert store.get(sid(1)) is not None  # the delete failed (best effort) ...
    assert owner.resume(T0 + 3) == 0
    assert store.get(sid(1)) is None  # ... and the next resume purged it


@pytest.mark.requirement("RM-4.1")
def test_an_undecodable_record_behind_the_owner_is_ended_on_the_owners_state() -> None:
    store = ScriptedStore(MemoryStore())
    sink = ListSink()
    owner = make_gateway(store, mode=OwnershipMode.STICKY, telemetry=sink)
    owner.open_session(sid(1), secret_for(sid(1)), CLIENT, T0 + 500)
    assert store.inner.compare_and_set(sid(1), 1, 2, b"\xff not json")
    store.script["delete"] = ["fail"]
    # `now` behind the session's own clock: the termination is stamped at the later one.
    result = owner.handle(sid(1), Close(T0 + 500))
    _refused(result, sid(1), ReasonCode.OWNERSHIP_AMBIGUOUS, version=3, phase=Phase.TERMINATED)
    owner.close()
    (change,) = [r for r in sink.records if r["type"] == "state_change"
                 and r["to"] == "TERMINATED"]
    assert change["reason"] == "STORE_RECORD_INVALID"
    left = decode_record(_record(store, sid(1)))  # the delete failed: what was committed
    assert left.phase is Phase.TERMINATED
    assert left.link.clock_ms == T0 + 500


@pytest.mark.requirement("RM-4.2")
def test_an_in_doubt_termination_that_landed_is_adopted_and_the_record_removed() -> None:
    store = ScriptedStore(MemoryStore())
    owner = _sticky_owner(store, idle_ttl_ms=5_000)
    store.script["compare_and_set"] = ["lose"]
    (lost,) = owner.tick(T0 + 5_000)  # the idle eviction landed; its reply was lost
    _refused(lost, sid(1), ReasonCode.STORE_UNAVAILABLE)
    assert decode_record(_record(store, sid(1))).phase is Phase.TERMINATED
    store.script["delete"] = ["fail"]
    nxt = owner.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 5_001))
    _refused(nxt, sid(1), ReasonCode.SESSION_TERMINATED, phase=Phase.TERMINATED)
    assert owner.local_state(sid(1)) is None
    assert owner.rejection_totals == {ReasonCode.STORE_UNAVAILABLE: 1,
                                      ReasonCode.SESSION_TERMINATED: 1}
    assert _record(store, sid(1)).version == 2  # delete failed: left for resume
    assert owner.resume(T0 + 5_002) == 0
    assert store.get(sid(1)) is None


@pytest.mark.requirement("RM-4.2")
def test_an_unreadable_store_leaves_a_commit_in_doubt_unresolved() -> None:
    store = ScriptedStore(MemoryStore())
    owner = _sticky_owner(store)
    store.script["compare_and_set"] = ["lose"]
    _refused(owner.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1)),
             sid(1), ReasonCode.STORE_UNAVAILABLE)
    store.script["get"] = ["fail"]
    _refused(owner.handle_reattach(reattach(sid(1), nonce=2, version=1, now=T0 + 2)),
             sid(1), ReasonCode.STORE_UNAVAILABLE)
    # Readable again: the landed write is adopted, so its nonce stays used.
    replay = owner.handle_reattach(reattach(sid(1), nonce=1, version=2, now=T0 + 3))
    assert replay.reason is ReasonCode.REPLAY_DETECTED


# --- the results of the public inputs, field by field ---------------------------------------


class _RaisingSink:
    def emit(self, record: Mapping[str, Any]) -> None:
        raise RuntimeError("sink broke (test)")

    def close(self) -> None:
        """Nothing to release."""


def test_gateway_defaults_and_configuration_are_applied() -> None:
    plain = Gateway(MemoryStore())
    assert plain.node_id == plain.policy.node_ids[0]
    assert plain.session_policy == Policy()
    assert plain.last_resume is None
    assert plain.telemetry_errors == 0
    two = GatewayPolicy(node_ids=("a", "b"))
    assert Gateway(MemoryStore(), two).node_id == "a"
    with pytest.raises(PolicyError, match=r"node_id 'zz' is not one of policy\.node_ids"):
        Gateway(MemoryStore(), two, node_id="zz")
    short = Policy(transport_lost_ttl_ms=20_000)
    node = Gateway(MemoryStore(), session_policy=short)
    assert node.session_policy is short
    node.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    state = node.local_state(sid(1))
    assert state is not None
    assert state.ident.policy == short


def test_a_sink_that_raises_is_counted_once_per_record() -> None:
    node = make_gateway(MemoryStore())
    node.telemetry = _RaisingSink()
    assert node.open_session(sid(1), secret_for(sid(1)), CLIENT, T0).accepted  # one record
    assert node.telemetry_errors == 1
    node.handle(sid(1), Close(T0 + 1))  # one more state change
    assert node.telemetry_errors == 2


def test_a_rejection_that_closes_a_window_emits_its_summary() -> None:
    sink = ListSink()
    node = make_gateway(MemoryStore(), telemetry=sink, aggregation_interval_ms=1_000)
    node.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0))
    node.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1_000))
    node.close()
    summaries = [r for r in sink.records if r["type"] == "reject_summary"]
    assert [s["counts"] for s in summaries] == [{"UNKNOWN_SESSION": 1}] * 2


def test_the_first_clock_check_within_the_contract_reports_nothing() -> None:
    sink = ListSink()
    node = make_gateway(ClockedStore(T0), telemetry=sink)
    assert node.check_clock(T0 + 10) == 10
    assert node.clock_fault is False
    node.close()
    assert [r for r in sink.records if r["type"].startswith("clock_")] == []


@pytest.mark.requirement("RM-4.1")
def test_open_session_results_name_the_session_and_what_was_committed() -> None:
    store = ScriptedStore(MemoryStore())
    node = make_gateway(store, max_sessions=2)
    opened = node.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    assert (opened.session_id, opened.accepted, opened.reason) == (sid(1), True, None)
    assert (opened.store_version, opened.phase) == (1, Phase.ATTACHED)
    _refused(node.open_session(sid(1), secret_for(sid(1)), CLIENT, T0 + 1),
             sid(1), ReasonCode.COMMIT_CONFLICT)
    other = make_gateway(store)  # another node opened sid(2) already
    other.open_session(sid(2), secret_for(sid(2)), CLIENT, T0)
    _refused(node.open_session(sid(2), secret_for(sid(2)), CLIENT, T0 + 2),
             sid(2), ReasonCode.COMMIT_CONFLICT)
    node.open_session(sid(3), secret_for(sid(3)), CLIENT, T0 + 3)
    _refused(node.open_session(sid(4), secret_for(sid(4)), CLIENT, T0 + 4),
             sid(4), ReasonCode.SESSION_TABLE_FULL)
    roomy = make_gateway(ScriptedStore(MemoryStore()))
    assert isinstance(roomy.store, ScriptedStore)
    roomy.store.inner = _Unavailable()
    _refused(roomy.open_session(sid(5), secret_for(sid(5)), CLIENT, T0),
             sid(5), ReasonCode.STORE_UNAVAILABLE)
    nodes = ("n0", "n1")
    foreign = next(sid(i) for i in range(100) if owner_of(sid(i), nodes) == "n1")
    sticky = make_gateway(MemoryStore(), mode=OwnershipMode.STICKY, nodes=nodes)
    _refused(sticky.open_session(foreign, secret_for(foreign), CLIENT, T0),
             foreign, ReasonCode.NOT_OWNER)
    assert node.rejection_totals == {ReasonCode.COMMIT_CONFLICT: 2,
                                     ReasonCode.SESSION_TABLE_FULL: 1}


class _Unavailable(MemoryStore):
    def create(self, session_id: bytes, version: int, data: bytes) -> bool:
        raise StoreUnavailableError("down (test)")


@pytest.mark.requirement("RM-4.1")
def test_clock_refusals_name_the_session_and_the_bound_is_inclusive() -> None:
    store = ClockedStore(T0)
    ahead = make_gateway(store, max_clock_skew_ms=1_000)
    for i in (1, 2, 3):
        ahead.open_session(sid(i), secret_for(sid(i)), CLIENT, T0 + 1_000)
    behind = make_gateway(store, max_clock_skew_ms=1_000)
    # Ahead by 1 ms and by exactly the bound: served at the session's clock.
    assert behind.handle(sid(1), Close(T0 + 999)).accepted
    assert behind.handle(sid(2), Close(T0)).accepted
    _refused(behind.handle(sid(3), Close(T0 - 1)), sid(3), ReasonCode.TIME_WENT_BACKWARDS)
    store.now_ms = T0 + 5_000
    behind.check_clock(T0)
    assert behind.clock_fault
    _refused(behind.handle(sid(3), Close(T0 + 2_000)), sid(3),
             ReasonCode.TIME_WENT_BACKWARDS)
    _refused(behind.open_session(sid(4), secret_for(sid(4)), CLIENT, T0),
             sid(4), ReasonCode.TIME_WENT_BACKWARDS)


@pytest.mark.requirement("RM-5.3")
def test_a_request_for_an_idle_session_ends_it_and_is_refused_with_the_commit() -> None:
    store = ScriptedStore(MemoryStore())
    node = make_gateway(store, session_idle_ttl_ms=5_000, max_clock_skew_ms=0)
    for i in (1, 2):
        node.open_session(sid(i), secret_for(sid(i)), CLIENT, T0)
    late = node.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 5_000))
    _refused(late, sid(1), ReasonCode.SESSION_TERMINATED, version=2, phase=Phase.TERMINATED)
    assert any(isinstance(e, SessionEnded) for e in late.effects)
    # The eviction's own commit fails: refused as such, the session is not ended.
    store.script["compare_and_set"] = ["fail"]
    _refused(node.handle_reattach(reattach(sid(2), nonce=1, version=1, now=T0 + 5_001)),
             sid(2), ReasonCode.STORE_UNAVAILABLE)
    assert node.rejection_totals == {ReasonCode.SESSION_TERMINATED: 1,
                                     ReasonCode.STORE_UNAVAILABLE: 1}
    assert _record(store, sid(2)).version == 1


@pytest.mark.requirement("RM-4.1")
def test_a_broken_record_whose_termination_cannot_commit_is_still_refused() -> None:
    store = ScriptedStore(MemoryStore())
    node = make_gateway(store)
    node.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    assert store.inner.compare_and_set(sid(1), 1, 2, b"\xff not json")
    store.script["compare_and_set"] = ["fail"]
    _refused(node.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1)),
             sid(1), ReasonCode.STORE_RECORD_INVALID)
    assert node.rejection_totals == {ReasonCode.STORE_UNAVAILABLE: 1}
    assert _record(store, sid(1)).data == b"\xff not json"  # never repaired
    fresh = make_gateway(store)  # no copy of its own: refused outright
    _refused(fresh.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 2)),
             sid(1), ReasonCode.STORE_RECORD_INVALID)


@pytest.mark.requirement("RM-4.2")
def test_a_shared_node_refuses_a_store_that_went_backwards() -> None:
    store = ScriptedStore(MemoryStore())
    node = make_gateway(store)
    node.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    opened = _record(store, sid(1))
    assert node.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1)).accepted
    restored = MemoryStore()  # restarted from a snapshot older than what the node saw
    restored.create(sid(1), opened.version, opened.data)
    store.inner = restored
    _refused(node.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 2)),
             sid(1), ReasonCode.STORE_UNAVAILABLE)
    assert node.rejection_totals == {ReasonCode.STORE_UNAVAILABLE: 1}
    assert _record(store, sid(1)).version == 1  # the nonce was not accepted again


@pytest.mark.requirement("RM-4.1")
def test_terminations_remove_the_record_at_once_when_the_store_answers() -> None:
    store = ScriptedStore(MemoryStore())
    owner = _sticky_owner(store, idle_ttl_ms=5_000)
    owner.open_session(sid(2), secret_for(sid(2)), CLIENT, T0)
    # A landed eviction whose reply was lost, adopted on the next input: deleted.
    store.script["compare_and_set"] = ["lose"]
    assert [r.reason for r in owner.tick(T0 + 5_000)] == [ReasonCode.STORE_UNAVAILABLE, None]
    _refused(owner.handle(sid(1), Close(T0 + 5_001)), sid(1), ReasonCode.SESSION_TERMINATED,
             phase=Phase.TERMINATED)
    assert store.get(sid(1)) is None
    # A record another writer already ended: the owner deletes it.
    other = _sticky_owner(ScriptedStore(MemoryStore()))
    assert isinstance(other.store, ScriptedStore)
    committed = other.committed(sid(1))
    assert committed is not None
    ended, _ = step(committed[1], Close(T0 + 1))
    assert other.store.inner.compare_and_set(sid(1), 1, 2, encode_state(ended))
    _refused(other.handle(sid(1), Close(T0 + 2)), sid(1), ReasonCode.OWNERSHIP_AMBIGUOUS,
             phase=Phase.TERMINATED)
    assert other.store.get(sid(1)) is None


@pytest.mark.requirement("RM-4.1")
@pytest.mark.parametrize("rival", ["deletes", "terminates", "writes"])
def test_a_rival_writing_during_a_sticky_restart_eviction_is_handled(rival: str) -> None:
    store = ScriptedStore(MemoryStore())
    opener = make_gateway(store)
    for key in (1, 2):
        opener.open_session(sid(key), secret_for(sid(key)), CLIENT, T0)
    victim = sid(2)
    record = _record(store, victim)

    def rival_writes() -> None:
        if rival == "deletes":
            assert store.inner.delete(victim, 1)
            return
        data = record.data
        if rival == "terminates":
            ended, _ = step(decode_record(record), Close(T0 + 1))
            data = encode_state(ended)
        assert store.inner.compare_and_set(victim, 1, 2, data)

    # The eviction of the session beyond capacity (the scan's second record) loses its
    # compare-and-set to the rival: the node fails closed on that session and goes on.
    store.script["compare_and_set"] = [rival_writes]
    node = make_gateway(store, mode=OwnershipMode.STICKY, max_sessions=1)
    assert node.resume(T0 + 5) == 1
    assert node.last_resume == ResumeReport(resumed=1, evicted=1)
    assert node.local_state(victim) is None
    assert store.get(victim) is None


def test_a_rejection_stepped_at_a_later_session_clock_closes_the_window() -> None:
    sink = ListSink()
    store = MemoryStore()
    ahead = make_gateway(store, max_clock_skew_ms=1_000)
    ahead.open_session(sid(1), secret_for(sid(1)), CLIENT, 2_000)
    node = make_gateway(store, telemetry=sink, aggregation_interval_ms=1_000,
                        max_clock_skew_ms=1_000)
    node.handle_reattach(reattach(sid(9), nonce=1, version=1, now=1_500))  # unknown
    # At 1999 the window [1000, 2000) is still open; the session's clock is 2000, so the
    # refusal is counted at 2000 and closes that window.
    forged = node.handle_reattach(reattach(sid(1), nonce=1, version=1, now=1_999, forge=True))
    assert forged.reason is ReasonCode.PROOF_INVALID
    summaries = [r for r in sink.records if r["type"] == "reject_summary"]
    assert [s["counts"] for s in summaries] == [{"UNKNOWN_SESSION": 1}]
    node.close()


# --- store records: what decode_record says, and what it never says ------------------------


def _opened_record() -> StoredSession:
    store = MemoryStore()
    make_gateway(store).open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    return _record(store, sid(1))


def test_record_content_is_sorted_json_of_the_state() -> None:
    record = _opened_record()
    assert record.data == json.dumps(json.loads(record.data), sort_keys=True).encode()
    assert list(json.loads(record.data)) == sorted(json.loads(record.data))


def test_records_of_the_wrong_role_or_session_are_refused_by_name() -> None:
    client_state = new_session(Role.CLIENT, sid(1), secret_for(sid(1)), T0, Policy())
    client = StoredSession(sid(1), 1, encode_state(client_state))
    with pytest.raises(RecordInvalidError, match=r"^record holds a client state$"):
        decode_record(client)
    moved = StoredSession(sid(2), 1, _opened_record().data)
    with pytest.raises(RecordInvalidError, match=r"^record holds another session's state$"):
        decode_record(moved)


def test_record_errors_name_the_decoder_error_type_and_never_a_foreign_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(RecordInvalidError,
                       match=r"^record does not decode: JsonDecodeError: not UTF-8"):
        decode_record(StoredSession(sid(1), 1, b"\xff{"))
    record = _opened_record()

    def explodes(data: object) -> object:
        raise RecursionError("secret 0123abcd")  # a foreign error could echo content

    monkeypatch.setattr(records, "state_from_data", explodes)
    with pytest.raises(RecordInvalidError) as info:
        decode_record(record)
    assert str(info.value) == "record does not decode: RecursionError"


def test_every_check_state_violation_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    record = _opened_record()
    two = [Violation("bounded_memory", "5 candidates"), Violation("role_layout", "mixed")]
    monkeypatch.setattr(records, "check_state", lambda state: two)
    with pytest.raises(RecordInvalidError) as info:
        decode_record(record)
    assert str(info.value) == ("record fails check_state: bounded_memory: 5 candidates; "
                               "role_layout: mixed")
