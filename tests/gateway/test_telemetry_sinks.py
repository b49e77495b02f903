"""Telemetry never blocks and never changes a decision (RM-6.1, RM-6.2)."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from jumpvpn_core.effects import Effect, Rejected, StateChanged
from jumpvpn_core.events import Close, InboundTraffic
from jumpvpn_core.gateway import Gateway, OwnershipMode
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.telemetry import (
    DROP_RECORD_TYPE,
    JsonlFileSink,
    LoggingSink,
    QueueSink,
    TelemetrySink,
)

from .support import CLIENT, ROAMED, T0, make_gateway, reattach, secret_for, sid


def _wait_until(predicate: Any, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def test_jsonl_sink_writes_one_json_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlFileSink(path)
    for i in range(5):
        sink.emit({"type": "x", "i": i})
    sink.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line)["i"] for line in lines] == [0, 1, 2, 3, 4]
    assert sink.dropped == 0
    assert sink.delivered == 5


def test_logging_sink_sends_records_to_the_logger(caplog: pytest.LogCaptureFixture) -> None:
    sink = LoggingSink("jumpvpn.test.audit")
    with caplog.at_level(logging.INFO, logger="jumpvpn.test.audit"):
        sink.emit({"type": "state_change", "reason": "CLOSED"})
        sink.close()
    assert [json.loads(r.getMessage())["reason"] for r in caplog.records] == ["CLOSED"]


@pytest.mark.requirement("RM-6.1")
def test_full_queue_drops_and_counts_instead_of_blocking() -> None:
    release = threading.Event()
    seen: list[Any] = []

    def hung_backend(record: Any) -> None:
        seen.append(record)
        release.wait(5.0)

    sink = QueueSink(hung_backend, capacity=4, report_interval_s=0.05)
    started = time.monotonic()
    for i in range(100):
        sink.emit({"i": i})
    elapsed = time.monotonic() - started
    # The backend holds one record and the queue four more: the rest were dropped.
    assert _wait_until(lambda: len(seen) == 1)
    assert sink.dropped >= 95
    assert elapsed < 5.0  # emit() did not wait for the hung backend
    release.set()
    assert _wait_until(lambda: any(r.get("type") == DROP_RECORD_TYPE for r in seen))
    sink.close()
    reports = [r for r in seen if r.get("type") == DROP_RECORD_TYPE]
    assert sum(r["dropped"] for r in reports) == sink.dropped


@pytest.mark.requirement("RM-6.2")
def test_raising_backend_loses_records_but_counts_them() -> None:
    def broken(record: Any) -> None:
        raise OSError("SIEM unreachable")

    sink = QueueSink(broken, capacity=100, report_interval_s=0.05)
    for i in range(10):
        sink.emit({"i": i})
    assert _wait_until(lambda: sink.dropped >= 10)
    sink.close()
    assert sink.delivered == 0
    sink.emit({"after": "close"})
    assert sink.dropped >= 11


def _scenario(gateway: Gateway) -> list[tuple[Any, ...]]:
    """A fixed event sequence: opens, accepts, path validation, floods, replays, closes."""
    outcomes: list[tuple[Any, ...]] = []

    def note(result: Any) -> None:
        actions = tuple(e for e in result.effects if not isinstance(e, StateChanged | Rejected))
        outcomes.append((result.accepted, result.reason, result.store_version, actions))

    for i in range(20):
        note(gateway.open_session(sid(i), secret_for(sid(i)), CLIENT, T0))
    for i in range(20):
        note(gateway.handle_reattach(reattach(sid(i), nonce=1, version=1, now=T0 + 10)))
        note(gateway.handle_reattach(reattach(sid(i), nonce=1, version=2, now=T0 + 11)))
        note(gateway.handle_reattach(reattach(sid(i), nonce=2, version=2, now=T0 + 12,
                                              source=ROAMED)))
        for k in range(5):
            note(gateway.handle_reattach(reattach(sid(i), nonce=50 + k, version=2,
                                                  now=T0 + 13, forge=True)))
        note(gateway.handle(sid(i), InboundTraffic(T0 + 14, CLIENT, 500)))
    for i in range(0, 20, 3):
        note(gateway.handle(sid(i), Close(T0 + 20)))
    for result in gateway.tick(T0 + 90_000):
        note(result)
    return outcomes


def _states(store: MemoryStore) -> dict[bytes, tuple[int, bytes]]:
    return {r.session_id: (r.version, r.data) for r in store.scan()}


def _run_with(sink: TelemetrySink) -> tuple[list[tuple[Any, ...]], dict[bytes, Any]]:
    store = MemoryStore()
    gw = make_gateway(store, mode=OwnershipMode.SHARED, telemetry=sink,
                      aggregation_interval_ms=5, source_flood_limit=50,
                      global_flood_limit=100_000)
    outcomes = _scenario(gw)
    return outcomes, _states(store)


@pytest.mark.requirement("RM-6.1")
@pytest.mark.requirement("RM-6.2")
def test_failing_sinks_change_no_state_and_no_decision(tmp_path: Path) -> None:
    healthy = JsonlFileSink(tmp_path / "audit.jsonl")
    baseline = _run_with(healthy)
    healthy.close()
    assert _wait_until(lambda: healthy.delivered > 0)
    written = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert any(json.loads(line)["type"] == "reject_summary" for line in written)

    def raising(record: Any) -> None:
        raise RuntimeError("backend down")

    release = threading.Event()

    def blocking(record: Any) -> None:
        release.wait(10.0)

    class RaisingEmit:
        """Not even a queue: emit() itself raises. The gateway must not care."""

        def emit(self, record: Any) -> None:
            raise ConnectionError("sink down")

        def close(self) -> None:
            return None

    raising_sink = QueueSink(raising, capacity=8)
    blocking_sink = QueueSink(blocking, capacity=8)
    try:
        for sink in (raising_sink, blocking_sink, RaisingEmit()):
            assert _run_with(sink) == baseline
        assert raising_sink.dropped > 0
        assert blocking_sink.dropped > 0
    finally:
        release.set()
        raising_sink.close()
        blocking_sink.close()
    # The baseline really did something: accepts, rejections and terminations.
    outcomes = baseline[0]
    assert sum(1 for o in outcomes if o[0]) > 40
    assert sum(1 for o in outcomes if not o[0]) > 100
    effects: list[Effect] = [e for o in outcomes for e in o[3]]
    assert effects


def test_close_gives_the_sinks_two_seconds_by_default_and_passes_a_given_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gw = make_gateway(MemoryStore())
    bounds: list[float] = []
    monkeypatch.setattr(gw._fanout, "close", bounds.append)
    gw.close()
    gw.close(0.25)
    assert bounds == [2.0, 0.25]
