"""Fail-closed paths of the gateway, each with a test that fails when the path is broken.

RM-4.1: a node that cannot tell whose record it holds terminates or refuses; it never
serves on a guess. RM-4.2: a store that does not answer is never taken for a commit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from jumpvpn_core.effects import SessionEnded
from jumpvpn_core.gateway import OwnershipMode, records
from jumpvpn_core.gateway.records import RecordInvalidError, decode_record
from jumpvpn_core.invariants import Violation
from jumpvpn_core.phases import Phase
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.stores.base import SessionStore, StoredSession, StoreUnavailableError
from jumpvpn_core.stores.memory import MemoryStore

from .support import CLIENT, ROAMED, T0, make_gateway, reattach, secret_for, sid


class ScriptedStore:
    """A store whose next `get` or next compare-and-set fails (without reaching it), and
    whose backing store can be swapped (a restore from an older snapshot)."""

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.fail_next_get = False
        self.fail_next_cas = False

    def get(self, session_id: bytes) -> StoredSession | None:
        if self.fail_next_get:
            self.fail_next_get = False
            raise StoreUnavailableError("read timed out (test)")
        return self.inner.get(session_id)

    def create(self, session_id: bytes, version: int, data: bytes) -> bool:
        return self.inner.create(session_id, version, data)

    def compare_and_set(self, session_id: bytes, expected_version: int, new_version: int,
                        data: bytes) -> bool:
        if self.fail_next_cas:
            self.fail_next_cas = False
            raise StoreUnavailableError("write timed out before reaching the store (test)")
        return self.inner.compare_and_set(session_id, expected_version, new_version, data)

    def delete(self, session_id: bytes, expected_version: int) -> bool:
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
    store.fail_next_get = True
    first = owner.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1))
    assert (first.accepted, first.reason) == (False, ReasonCode.STORE_UNAVAILABLE)
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
    store.fail_next_cas = True
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
    store.fail_next_cas = True
    lost = owner.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1))
    assert lost.reason is ReasonCode.STORE_UNAVAILABLE
    retry = owner.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 2))
    assert retry.accepted
    assert retry.store_version == 2


@pytest.mark.requirement("RM-4.1")
def test_a_cached_session_whose_record_breaks_is_terminated_and_reported_refused() -> None:
    store = MemoryStore()
    node = make_gateway(store)
    node.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    store.compare_and_set(sid(1), 1, 2, b"\xff not json")
    ended = node.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1))
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
    with pytest.raises(ValueError, match="session_id does not match"):
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
