"""Telemetry is off the gateway's path: no sink can hold a node up (RM-6.1, RM-6.2).

Speed is measured by `benchmarks/bench_gateway.py` (blocking sink vs null sink, same run);
these tests prove the structure: a custom sink runs on a worker of its own, a hung sink
never stalls an input, `close(t)` returns within its bound, and the last rejection window
is reported on close.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from jumpvpn_core.gateway import OwnershipMode
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.telemetry import (
    Fanout,
    ListSink,
    NullSink,
    QueueSink,
    SinkWorker,
    is_nonblocking,
)

from .support import CLIENT, T0, make_gateway, reattach, secret_for, sid

#: A hang detector, not a speed bound: every test here finishes in well under a second.
_HANG_S = 30.0


class _HungSink:
    """A custom sink whose emit blocks until released (an unreachable SIEM)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.records: list[dict[str, Any]] = []
        self.threads: set[str] = set()

    def emit(self, record: Any) -> None:
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        self.release.wait(_HANG_S)
        self.records.append(dict(record))

    def close(self) -> None:
        return None


def _run_in_thread(body: Any) -> bool:
    """Run `body` on a thread; True when it finished before the hang detector fired."""
    done = threading.Event()

    def target() -> None:
        body()
        done.set()

    threading.Thread(target=target, daemon=True).start()
    return done.wait(_HANG_S)


def test_declared_nonblocking_sinks_are_called_inline_and_others_get_a_worker() -> None:
    assert is_nonblocking(NullSink())
    assert is_nonblocking(ListSink())
    queued = QueueSink(lambda record: None)
    hung = _HungSink()
    assert not is_nonblocking(hung)
    fanout = Fanout([queued, hung])
    try:
        assert fanout.targets[0] is queued
        assert isinstance(fanout.targets[1], SinkWorker)
        assert fanout.targets[1].sink is hung
        assert fanout.workers == [fanout.targets[1]]
    finally:
        hung.release.set()
        fanout.close(1.0)
        queued.close(1.0)


@pytest.mark.requirement("RM-6.1")
def test_a_hung_custom_sink_never_stalls_the_gateway() -> None:
    hung = _HungSink()
    listed = ListSink()
    gateway = make_gateway(MemoryStore(), mode=OwnershipMode.SHARED, telemetry=[hung, listed])
    results: list[bool] = []

    def work() -> None:
        for i in range(200):
            opened = gateway.open_session(sid(i), secret_for(sid(i)), CLIENT, T0)
            accepted = gateway.handle_reattach(reattach(sid(i), nonce=1, version=1,
                                                        now=T0 + 10))
            results.append(opened.accepted and accepted.accepted)

    try:
        assert _run_in_thread(work), "the gateway waited for a hung sink"
        assert results == [True] * 200
        assert hung.entered.wait(_HANG_S)
        # The hung sink is called on its own worker, never on the caller's thread.
        assert hung.threads
        assert threading.current_thread().name not in hung.threads
        # The other sink got every record at once: one sink's hang holds up no other.
        assert len([r for r in listed.records if r["type"] == "state_change"]) == 400
    finally:
        hung.release.set()
        gateway.close(1.0)


@pytest.mark.requirement("RM-6.1")
def test_a_full_worker_queue_drops_and_counts() -> None:
    hung = _HungSink()
    gateway = make_gateway(MemoryStore(), mode=OwnershipMode.SHARED, telemetry=hung)
    gateway._fanout.workers[0].close(0.0)  # a stopped worker: every record is a drop
    for i in range(5):
        gateway.open_session(sid(i), secret_for(sid(i)), CLIENT, T0)
    assert gateway.telemetry_dropped == 5
    hung.release.set()
    gateway.close(0.5)


@pytest.mark.requirement("RM-6.1")
def test_queue_sink_close_returns_within_its_timeout_with_a_hung_backend() -> None:
    release = threading.Event()
    def hung_backend(record: Any) -> None:
        release.wait(_HANG_S)

    sink = QueueSink(hung_backend, capacity=4)
    for i in range(100):
        sink.emit({"i": i})
    started = time.monotonic()
    sink.close(0.5)
    elapsed = time.monotonic() - started
    release.set()
    assert elapsed < 0.5 + 0.1, f"close(0.5) took {elapsed:.3f} s"
    assert sink.dropped >= 95


@pytest.mark.requirement("RM-6.1")
def test_gateway_close_returns_within_its_timeout_whatever_the_sinks_do() -> None:
    hung = _HungSink()
    gateway = make_gateway(MemoryStore(), mode=OwnershipMode.SHARED, telemetry=[hung, hung])
    for i in range(50):
        gateway.open_session(sid(i), secret_for(sid(i)), CLIENT, T0)
    assert hung.entered.wait(_HANG_S)
    started = time.monotonic()
    gateway.close(0.4)
    elapsed = time.monotonic() - started
    hung.release.set()
    assert elapsed < 0.4 + 0.1, f"close(0.4) took {elapsed:.3f} s"


@pytest.mark.requirement("RM-6.2")
def test_close_reports_the_last_rejection_window() -> None:
    sink = ListSink()
    gateway = make_gateway(MemoryStore(), mode=OwnershipMode.SHARED, telemetry=sink,
                           aggregation_interval_ms=60_000)
    for i in range(3):
        result = gateway.handle_reattach(reattach(sid(i), nonce=1, version=1, now=T0))
        assert result.reason is not None
    assert not [r for r in sink.records if r["type"] == "reject_summary"]
    gateway.close()
    summaries = [r for r in sink.records if r["type"] == "reject_summary"]
    assert len(summaries) == 1
    assert summaries[0]["counts"] == {"UNKNOWN_SESSION": 3}
    gateway.close()  # idempotent: nothing is reported twice
    assert len([r for r in sink.records if r["type"] == "reject_summary"]) == 1


@pytest.mark.requirement("RM-6.2")
def test_records_after_close_are_not_delivered_late() -> None:
    delivered: list[Any] = []
    gate = threading.Event()

    def slow(record: Any) -> None:
        gate.wait(_HANG_S)
        delivered.append(record)

    sink = QueueSink(slow, capacity=50)
    for i in range(20):
        sink.emit({"i": i})
    sink.close(0.05)
    gate.set()
    deadline = time.monotonic() + _HANG_S
    while sink.dropped + sink.delivered < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    # At most the record the backend held when close() returned is delivered after it.
    assert sink.delivered <= 1
    assert sink.dropped + sink.delivered == 20
