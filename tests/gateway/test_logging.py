"""The library's `logging` loggers: what a gateway and a store log, at which level, and
that no session secret, control key or record content ever reaches a log line.

Loggers: `jumpvpn_core.gateway` and `jumpvpn_core.stores.<kind>` (docs/operations.md).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from jumpvpn_core.gateway import OwnershipMode
from jumpvpn_core.gateway.records import RecordInvalidError, decode_record
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.stores import StoreUnavailableError, open_store
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.stores.sqlite import SqliteStore

from .support import CLIENT, T0, ClockedStore, make_gateway, reattach, secret_for, sid
from .test_fail_closed import ScriptedStore

GATEWAY = "jumpvpn_core.gateway"


def _control_key_hex(store: MemoryStore, session: bytes) -> str:
    record = store.get(session)
    assert record is not None
    key = json.loads(record.data)["control_key"]
    assert isinstance(key, str)
    assert len(key) >= 32
    return key


def _assert_secret_free(text: str, store: MemoryStore, session: bytes) -> None:
    assert secret_for(session).hex() not in text
    assert _control_key_hex(store, session) not in text
    assert "control_key" not in text


def test_a_refusal_is_logged_at_debug_only_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    gw = make_gateway(store)
    assert gw.open_session(sid(1), secret_for(sid(1)), CLIENT, T0).accepted
    with caplog.at_level(logging.INFO, logger=GATEWAY):
        forged = gw.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1,
                                             forge=True))
    assert forged.reason is not None
    assert caplog.records == []  # nothing per request above DEBUG
    with caplog.at_level(logging.DEBUG, logger=GATEWAY):
        again = gw.handle_reattach(reattach(sid(1), nonce=2, version=1, now=T0 + 2,
                                            forge=True))
    assert again.reason is not None
    lines = [r for r in caplog.records if r.name == GATEWAY]
    assert [r.levelno for r in lines] == [logging.DEBUG]
    assert lines[0].getMessage() == f"session {sid(1).hex()} refused: {again.reason.value}"
    _assert_secret_free(caplog.text, store, sid(1))


def test_a_quarantined_record_is_a_warning_naming_the_session_not_its_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    opener = make_gateway(store)
    assert opener.open_session(sid(2), secret_for(sid(2)), CLIENT, T0).accepted
    key = _control_key_hex(store, sid(2))
    record = store.get(sid(2))
    assert record is not None
    data = json.loads(record.data)
    data["link"]["active"] = "udp:10.0.0.1:" + "9" * 5000  # decodes to nothing valid
    assert store.compare_and_set(sid(2), record.version, record.version + 1,
                                 json.dumps(data).encode())
    node = make_gateway(store)
    with caplog.at_level(logging.WARNING, logger=GATEWAY):
        assert node.resume(T0 + 5) == 0
    assert node.quarantined == 1
    warnings = [r for r in caplog.records if r.name == GATEWAY]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "quarantined" in warnings[0].getMessage()
    assert sid(2).hex() in warnings[0].getMessage()
    assert key not in caplog.text
    assert "9999" not in caplog.text
    assert secret_for(sid(2)).hex() not in caplog.text


def test_a_record_that_stops_decoding_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    gw = make_gateway(store)
    assert gw.open_session(sid(3), secret_for(sid(3)), CLIENT, T0).accepted
    assert store.compare_and_set(sid(3), 1, 2, b'{"format": 1, "secret": "s3cret"}')
    with caplog.at_level(logging.WARNING, logger=GATEWAY):
        ended = gw.handle_reattach(reattach(sid(3), nonce=1, version=1, now=T0 + 1))
    assert ended.reason is ReasonCode.STORE_RECORD_INVALID
    assert [r.getMessage() for r in caplog.records if r.name == GATEWAY] == [
        f"store record of session {sid(3).hex()} (version 2) does not decode "
        "(RecordInvalidError): refused, never repaired"]
    assert "s3cret" not in caplog.text


def test_a_store_that_went_backwards_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    gw = make_gateway(store)
    assert gw.open_session(sid(4), secret_for(sid(4)), CLIENT, T0).accepted
    first = store.get(sid(4))
    assert first is not None
    accepted = gw.handle_reattach(reattach(sid(4), nonce=1, version=1, now=T0 + 1,
                                           source=CLIENT))
    assert accepted.store_version is not None
    assert accepted.store_version > first.version
    # The store loses that commit (restored from a snapshot, say).
    current = store.get(sid(4))
    assert current is not None
    assert store.delete(sid(4), current.version)
    assert store.create(sid(4), first.version, first.data)
    with caplog.at_level(logging.ERROR, logger=GATEWAY):
        refused = gw.handle_reattach(reattach(sid(4), nonce=1, version=1, now=T0 + 2))
    assert refused.reason is ReasonCode.STORE_UNAVAILABLE
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == GATEWAY] == [
        (logging.ERROR, f"store returned version {first.version} of session {sid(4).hex()} "
                        f"after this node had seen {accepted.store_version}: the store went "
                        "backwards; refused")]


def test_ownership_ambiguity_is_a_warning_once(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    owner = make_gateway(store, mode=OwnershipMode.STICKY)
    assert owner.open_session(sid(5), secret_for(sid(5)), CLIENT, T0).accepted
    record = store.get(sid(5))
    assert record is not None
    assert store.compare_and_set(sid(5), record.version, record.version + 1, record.data)
    with caplog.at_level(logging.WARNING, logger=GATEWAY):
        ended = owner.handle_reattach(reattach(sid(5), nonce=1, version=1, now=T0 + 1))
    assert ended.reason is ReasonCode.OWNERSHIP_AMBIGUOUS
    lines = [r for r in caplog.records if r.name == GATEWAY]
    assert [r.getMessage() for r in lines] == [
        f"session {sid(5).hex()}: its record changed behind this node (ownership "
        "ambiguous); terminating it"]


def test_ownership_ambiguity_is_logged_when_found_not_when_the_termination_is_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ScriptedStore(MemoryStore())
    owner = make_gateway(store, mode=OwnershipMode.STICKY)
    assert owner.open_session(sid(6), secret_for(sid(6)), CLIENT, T0).accepted
    record = store.inner.get(sid(6))
    assert record is not None
    assert store.inner.compare_and_set(sid(6), record.version, record.version + 1,
                                       record.data)
    store.script["get"] = ["fail"]  # the termination cannot read the store this time
    with caplog.at_level(logging.WARNING, logger=GATEWAY):
        first = owner.handle_reattach(reattach(sid(6), nonce=1, version=1, now=T0 + 1))
    assert first.reason is ReasonCode.STORE_UNAVAILABLE
    assert ["ownership ambiguous" in r.getMessage() for r in caplog.records
            if r.name == GATEWAY] == [True]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=GATEWAY):
        second = owner.handle_reattach(reattach(sid(6), nonce=1, version=1, now=T0 + 2))
    assert second.reason is ReasonCode.OWNERSHIP_AMBIGUOUS  # retried, ended this time
    assert [r for r in caplog.records if r.name == GATEWAY] == []


def test_leaving_and_reentering_the_clock_contract_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ClockedStore()
    gw = make_gateway(store, node="edge-7", nodes=("edge-7",), max_clock_skew_ms=500)
    with caplog.at_level(logging.INFO, logger=GATEWAY):
        gw.check_clock(T0 + 50_000)
        gw.check_clock(T0 + 60_000)  # still out: no second line
        gw.check_clock(T0 + 10)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == GATEWAY]
    assert lines == [
        (logging.WARNING, "clock_out_of_contract: node edge-7 is 50000 ms off the store's "
                          "clock (bound 500 ms)"),
        (logging.INFO, "clock_within_contract: node edge-7 is 10 ms off the store's clock "
                       "(bound 500 ms)"),
    ]


def test_a_store_outage_is_one_warning_then_debug_then_info_on_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.db"
    store = open_store(f"sqlite:///{path}")
    assert isinstance(store, SqliteStore)
    secret_data = b"control-key-" + secret_for(sid(6))
    assert store.create(sid(6), 1, secret_data)
    other = sqlite3.connect(path)
    other.execute("ALTER TABLE sessions RENAME TO hidden")  # every call now fails
    other.commit()
    logger = "jumpvpn_core.stores.sqlite"
    with caplog.at_level(logging.DEBUG, logger=logger):
        for _ in range(3):
            with pytest.raises(StoreUnavailableError):
                store.compare_and_set(sid(6), 1, 2, secret_data)
        other.execute("ALTER TABLE hidden RENAME TO sessions")
        other.commit()
        assert store.get(sid(6)) is not None
        assert store.get(sid(6)) is not None
    other.close()
    store.close()
    levels = [r.levelno for r in caplog.records if r.name == logger]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG, logging.INFO]
    assert "compare_and_set" in caplog.records[0].getMessage()
    assert secret_for(sid(6)).hex() not in caplog.text
    assert "control-key" not in caplog.text


def test_accepted_totals_count_each_kind_of_input_exactly() -> None:
    store = MemoryStore()
    gw = make_gateway(store)
    assert gw.accepted_totals == {"open_session": 0, "reattach": 0, "event": 0}
    for n in (1, 2):
        assert gw.open_session(sid(n), secret_for(sid(n)), CLIENT, T0).accepted
    assert gw.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1)).accepted
    assert not gw.handle_reattach(reattach(sid(2), nonce=1, version=1, now=T0 + 1,
                                           forge=True)).accepted
    assert gw.accepted_totals == {"open_session": 2, "reattach": 1, "event": 0}


# --- resume and the clock contract: the lines an operator greps for, pinned whole -----------


def test_a_quarantined_record_is_logged_with_its_error_cut_to_200_characters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    opener = make_gateway(store)
    assert opener.open_session(sid(1), secret_for(sid(1)), CLIENT, T0).accepted
    opener.close()
    [record] = store.scan()
    # A record whose error message is long: four unknown policy fields, each named.
    data = json.loads(record.data)
    for n in range(4):
        data["policy"][f"{n}" * 300] = 1
    assert store.compare_and_set(sid(1), record.version, record.version + 1,
                                 json.dumps(data).encode())
    [damaged] = store.scan()
    with pytest.raises(RecordInvalidError) as caught:
        decode_record(damaged)
    detail = str(caught.value)
    assert len(detail) > 200  # the cut below is exercised
    node = make_gateway(store)
    with caplog.at_level(logging.WARNING, logger="jumpvpn_core.gateway"):
        assert node.resume(T0 + 5) == 0
    node.close()
    assert [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()] == [
        f"resume: store record of session {sid(1).hex()} (version {damaged.version}) "
        f"quarantined: RecordInvalidError: {detail[:200]}"
    ]


def test_a_record_ahead_of_the_clock_is_logged_and_left_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    opener = make_gateway(store, max_clock_skew_ms=100_000)
    assert opener.open_session(sid(2), secret_for(sid(2)), CLIENT, T0 + 60_000).accepted
    opener.close()
    node = make_gateway(store, max_clock_skew_ms=1_000)
    with caplog.at_level(logging.WARNING, logger="jumpvpn_core.gateway"):
        assert node.resume(T0) == 0
    node.close()
    assert [r.getMessage() for r in caplog.records if "ahead" in r.getMessage()] == [
        f"resume: store record of session {sid(2).hex()} is ahead of this node's clock "
        "beyond the skew bound; left alone"
    ]
