"""What a restarted node loads, and what it leaves alone (RM-4.1, RM-4.2, RM-5.3).

Shared mode: the table is a cache; resume never evicts, terminates or deletes a record.
Sticky mode: the node's own sessions only, capacity enforced explicitly. Any record that
does not decode is quarantined (left untouched, reported, counted) and the rest resumes.
"""

from __future__ import annotations

import json

import pytest

from jumpvpn_core.effects import StateChanged
from jumpvpn_core.events import Close
from jumpvpn_core.gateway import OwnershipMode, owner_of
from jumpvpn_core.gateway.resume import QUARANTINE_LIST_MAX, ResumeReport
from jumpvpn_core.phases import Phase
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.telemetry import ListSink

from .support import CLIENT, T0, make_gateway, reattach, secret_for, sid


def _snapshot(store: MemoryStore) -> dict[bytes, tuple[int, bytes]]:
    return {r.session_id: (r.version, r.data) for r in store.scan()}


def _open(store: MemoryStore, count: int) -> None:
    opener = make_gateway(store, max_sessions=count + 10)
    for i in range(count):
        assert opener.open_session(sid(i), secret_for(sid(i)), CLIENT, T0).accepted


@pytest.mark.requirement("RM-4.1")
@pytest.mark.requirement("RM-5.3")
def test_shared_resume_on_a_small_node_deletes_and_evicts_nothing() -> None:
    store = MemoryStore()
    _open(store, 300)
    serving = make_gateway(store, node="n0", max_sessions=1_000)
    before = _snapshot(store)
    small = make_gateway(store, node="n0", max_sessions=100)
    assert small.resume(T0 + 5) == 100
    report = small.last_resume
    assert report is not None
    assert (report.resumed, report.skipped, report.evicted, report.purged) == (100, 200, 0, 0)
    assert len(small) == 100
    # Not one record deleted or changed: every session is still served by the other node.
    assert _snapshot(store) == before
    for i in range(300):
        served = serving.handle_reattach(reattach(sid(i), nonce=1, version=1, now=T0 + 10))
        assert served.accepted, (i, served.reason)


@pytest.mark.requirement("RM-5.3")
def test_shared_cache_never_exceeds_max_sessions() -> None:
    store = MemoryStore()
    _open(store, 12)
    node = make_gateway(store, max_sessions=5)
    for i in range(12):
        assert node.handle_reattach(reattach(sid(i), nonce=1, version=1, now=T0 + 10)).accepted
        assert len(node) <= 5
    assert len(node) == 5


@pytest.mark.requirement("RM-5.3")
def test_sticky_resume_ends_own_sessions_beyond_capacity_explicitly() -> None:
    store = MemoryStore()
    sink = ListSink()
    _open(store, 4)
    node = make_gateway(store, mode=OwnershipMode.STICKY, max_sessions=2, telemetry=sink)
    assert node.resume(T0 + 5) == 2
    report = node.last_resume
    assert report is not None
    assert (report.resumed, report.evicted) == (2, 2)
    ended = [r for r in sink.records if r["type"] == "state_change"
             and r.get("reason") == ReasonCode.SESSION_EVICTED.value]
    assert len(ended) == 2
    # The evicted sessions' records are gone (terminated, committed, then deleted).
    assert len(list(store.scan())) == 2


@pytest.mark.requirement("RM-4.1")
def test_sticky_resume_loads_only_the_sessions_this_node_owns() -> None:
    store = MemoryStore()
    _open(store, 40)
    nodes = ("a", "b")
    node = make_gateway(store, mode=OwnershipMode.STICKY, node="a", nodes=nodes)
    mine = sorted(sid(i) for i in range(40) if owner_of(sid(i), nodes) == "a")
    assert 0 < len(mine) < 40
    assert node.resume(T0 + 5) == len(mine)
    assert sorted(node.session_ids()) == mine


def _mangled(store: MemoryStore, key: int, change: str) -> None:
    record = store.get(sid(key))
    assert record is not None
    data = json.loads(record.data)
    if change == "huge-port":
        data["link"]["active"] = "udp:10.0.0.1:" + "9" * 5000
    elif change == "deep":
        data["link"] = None
        text = json.dumps(data).replace('"link": null', '"link": ' + "[" * 5000 + "]" * 5000)
        assert store.compare_and_set(sid(key), record.version, record.version + 1,
                                     text.encode())
        return
    elif change == "unknown-field":
        data["surprise"] = 1
    elif change == "missing-field":
        del data["link"]
    elif change == "huge-int":
        data["state_version"] = int("7" * 4000)
        text = json.dumps(data).replace('"state_version": 7', '"state_version": ' + "7" * 5000)
        assert store.compare_and_set(sid(key), record.version, record.version + 1,
                                     text.encode())
        return
    elif change == "not-json":
        assert store.compare_and_set(sid(key), record.version, record.version + 1, b"\xff{")
        return
    elif change == "client-state":
        data["role"] = "client"
    assert store.compare_and_set(sid(key), record.version, record.version + 1,
                                 json.dumps(data).encode())


_BAD = ("huge-port", "deep", "missing-field", "huge-int", "not-json", "client-state")


@pytest.mark.requirement("RM-4.1")
@pytest.mark.parametrize("mode", [OwnershipMode.SHARED, OwnershipMode.STICKY])
def test_resume_quarantines_records_it_cannot_decode_and_resumes_the_rest(
    mode: OwnershipMode,
) -> None:
    store = MemoryStore()
    _open(store, 10)
    for key, change in enumerate(_BAD):
        _mangled(store, key, change)
    before = _snapshot(store)
    sink = ListSink()
    node = make_gateway(store, mode=mode, telemetry=sink)
    assert node.resume(T0 + 5) == 10 - len(_BAD)
    assert node.quarantined == len(_BAD)
    report = node.last_resume
    assert report is not None
    assert report.quarantined == len(_BAD)
    assert sorted(report.quarantined_ids) == sorted(sid(i).hex() for i in range(len(_BAD)))
    assert _snapshot(store) == before  # left in the store, untouched
    invalid = [r for r in sink.records if r["type"] == "store_record_invalid"]
    assert sorted(r["session_id"] for r in invalid) == sorted(report.quarantined_ids)
    for record in invalid:  # the report names the error's type, never the content
        assert "9999" not in record["detail"]
        assert "control_key" not in record["detail"]
    assert sorted(node.session_ids()) == [sid(i) for i in range(len(_BAD), 10)]


@pytest.mark.requirement("RM-4.1")
def test_a_quarantined_session_is_refused_not_served() -> None:
    store = MemoryStore()
    _open(store, 2)
    _mangled(store, 0, "huge-port")
    node = make_gateway(store)
    node.resume(T0 + 5)
    refused = node.handle_reattach(reattach(sid(0), nonce=1, version=1, now=T0 + 10))
    assert not refused.accepted
    assert refused.reason is ReasonCode.STORE_RECORD_INVALID
    assert refused.effects == ()


class _KeepsRecords(MemoryStore):
    """A store whose deletes do not happen (a purge that failed before a restart); once
    `noting` is set, deletes are noted (and still not done)."""

    def __init__(self) -> None:
        super().__init__()
        self.noting = False
        self.purged: list[bytes] = []

    def delete(self, session_id: bytes, expected_version: int) -> bool:
        if self.noting:
            self.purged.append(session_id)
        return self.noting


@pytest.mark.requirement("RM-4.2")
@pytest.mark.parametrize("mode", [OwnershipMode.SHARED, OwnershipMode.STICKY])
def test_terminated_records_are_purged_only_by_a_sticky_owner(mode: OwnershipMode) -> None:
    store = _KeepsRecords()
    _open(store, 3)
    closed = make_gateway(store).handle(sid(0), Close(T0 + 1))
    assert closed.phase is Phase.TERMINATED
    assert any(isinstance(e, StateChanged) for e in closed.effects)
    left = store.get(sid(0))
    assert left is not None
    store.noting = True
    purged = store.purged
    node = make_gateway(store, mode=mode)
    assert node.resume(T0 + 5) == 2
    report = node.last_resume
    assert report is not None
    if mode is OwnershipMode.SHARED:
        assert purged == []
        assert report.purged == 0
    else:
        assert purged == [sid(0)]
        assert report.purged == 1


@pytest.mark.requirement("RM-4.1")
def test_a_record_with_unknown_fields_never_aborts_a_restart() -> None:
    # Whether the decoder refuses unknown fields is the decoder's rule; either way the
    # record is accounted for and the node comes up.
    store = MemoryStore()
    _open(store, 3)
    _mangled(store, 1, "unknown-field")
    node = make_gateway(store)
    resumed = node.resume(T0 + 5)
    report = node.last_resume
    assert report is not None
    assert resumed + report.quarantined == 3


def _open_at(store: MemoryStore, key: int, now: int) -> None:
    opener = make_gateway(store, max_clock_skew_ms=100_000)
    assert opener.open_session(sid(key), secret_for(sid(key)), CLIENT, now).accepted


@pytest.mark.requirement("RM-5.3")
def test_sticky_resume_accounts_for_every_record_exactly() -> None:
    store = MemoryStore()
    now = T0 + 10_000
    _open_at(store, 0, now - 5)  # resumed
    _open_at(store, 1, now + 1_000)  # ahead by exactly the bound: resumed
    _open_at(store, 2, now + 1_001)  # ahead beyond the bound: left alone
    _open_at(store, 3, now)
    _mangled(store, 3, "not-json")  # quarantined
    sink = ListSink()
    node = make_gateway(store, mode=OwnershipMode.STICKY, node="n0", telemetry=sink)
    assert node.resume(now) == 2
    assert node.last_resume == ResumeReport(resumed=2, quarantined=1, skipped=1,
                                            quarantined_ids=(sid(3).hex(),))
    assert node.resume(now) == 0  # everything is in the table already, or left alone
    assert node.last_resume == ResumeReport(quarantined=1, skipped=3,
                                            quarantined_ids=(sid(3).hex(),))
    assert node.quarantined == 2
    node.close()
    by_type: dict[str, list[dict[str, object]]] = {}
    for record in sink.records:
        by_type.setdefault(record["type"], []).append(dict(record))
    assert by_type["session_resumed"] == [
        {"v": 1, "type": "session_resumed", "session_id": sid(i).hex(), "phase": "ATTACHED",
         "state_version": 1, "store_version": 1, "node": "n0", "ts_ms": now}
        for i in (0, 1)
    ]
    assert by_type["store_record_ahead"][0] == {
        "v": 1, "type": "store_record_ahead", "session_id": sid(2).hex(),
        "record_clock_ms": now + 1_001, "node": "n0", "ts_ms": now}
    invalid = by_type["store_record_invalid"][0]
    assert {k: invalid[k] for k in ("v", "type", "session_id", "store_version", "node",
                                    "ts_ms")} == {
        "v": 1, "type": "store_record_invalid", "session_id": sid(3).hex(),
        "store_version": 2, "node": "n0", "ts_ms": now}
    assert str(invalid["detail"]).startswith("record does not decode")


@pytest.mark.requirement("RM-5.3")
def test_sticky_resume_evicts_beyond_capacity_at_the_records_own_clock() -> None:
    store = MemoryStore()
    now = T0 + 10_000
    for key in range(3):
        _open_at(store, key, now + 500)  # ahead of the node, within the bound
    node = make_gateway(store, mode=OwnershipMode.STICKY, max_sessions=1)
    assert node.resume(now) == 1
    assert node.last_resume == ResumeReport(resumed=1, evicted=2)
    assert len(list(store.scan())) == 1  # the two evicted were ended and deleted
    assert node.rejection_totals == {}


@pytest.mark.requirement("RM-5.3")
def test_shared_resume_fills_the_cache_exactly_to_capacity() -> None:
    store = MemoryStore()
    _open(store, 5)
    node = make_gateway(store, max_sessions=3)
    assert node.resume(T0 + 5) == 3
    assert node.last_resume == ResumeReport(resumed=3, skipped=2)
    assert len(node) == 3


def test_the_quarantine_list_is_bounded_and_the_count_exact() -> None:
    store = MemoryStore()
    for key in range(QUARANTINE_LIST_MAX + 1):
        store.create(sid(key), 1, b"\xff{")
    node = make_gateway(store)
    assert node.resume(T0) == 0
    report = node.last_resume
    assert report is not None
    assert report.quarantined == QUARANTINE_LIST_MAX + 1
    assert len(report.quarantined_ids) == QUARANTINE_LIST_MAX


@pytest.mark.parametrize("mode", [OwnershipMode.SHARED, OwnershipMode.STICKY])
def test_every_terminated_record_is_counted_once(mode: OwnershipMode) -> None:
    store = _KeepsRecords()
    _open(store, 4)
    closer = make_gateway(store)
    for key in (0, 1):
        assert closer.handle(sid(key), Close(T0 + 1)).phase is Phase.TERMINATED
    node = make_gateway(store, mode=mode)
    assert node.resume(T0 + 5) == 2
    if mode is OwnershipMode.SHARED:
        assert node.last_resume == ResumeReport(resumed=2, skipped=2)
    else:
        assert node.last_resume == ResumeReport(resumed=2, purged=2)
