"""Prometheus metrics (`jumpvpn_core.telemetry.prometheus`) and the example node that
serves them (`docs/examples/metrics_server.py`), scraped over real HTTP."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from jumpvpn_core.effects import StateChanged
from jumpvpn_core.gateway import GatewayResult
from jumpvpn_core.reasons import ReasonClass, ReasonCode, reason_class
from jumpvpn_core.stores import StoreUnavailableError, open_store
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.telemetry import QueueSink
from jumpvpn_core.telemetry.prometheus import GatewayMetrics

from .support import CLIENT, ROAMED, T0, make_gateway, reattach, secret_for, sid

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "metrics_server.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("metrics_server_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # attrs resolves the class's annotations through it
    spec.loader.exec_module(module)
    return module


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on /metrics, by (sample name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _transitions(results: list[GatewayResult]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for result in results:
        for effect in result.effects:
            if isinstance(effect, StateChanged):
                key = (effect.from_phase.value, effect.to_phase.value)
                counts[key] = counts.get(key, 0) + 1
    return counts


def test_example_serves_metrics_that_match_what_the_gateway_did(tmp_path: Path) -> None:
    example = _example()
    node = example.serve(f"sqlite:///{tmp_path / 's.db'}", port=0)
    try:
        assert node.port > 0
        gateway = node.gateway
        results: list[GatewayResult] = []
        for i in range(3):
            results.append(gateway.open_session(sid(i), secret_for(sid(i)), CLIENT, T0))
        assert all(r.accepted for r in results)
        moved = gateway.handle_reattach(reattach(sid(0), nonce=1, version=1, now=T0 + 10,
                                                 source=ROAMED, candidate=ROAMED))
        assert moved.accepted  # opens a path validation: committed, no transition yet
        results.append(moved)
        forged = [gateway.handle_reattach(reattach(sid(1), nonce=n, version=1, now=T0 + 20 + n,
                                                   forge=True)) for n in (1, 2)]
        results.extend(forged)
        unknown = gateway.handle_reattach(reattach(sid(99), nonce=1, version=1, now=T0 + 30))
        assert unknown.reason is ReasonCode.UNKNOWN_SESSION
        reason = forged[0].reason
        assert reason is not None
        assert all(f.reason is reason for f in forged)

        samples = _scrape(node.port)
        node_label = ("node", gateway.node_id)
        admitted = ("jumpvpn_gateway_admissions_total",
                    tuple(sorted([node_label, ("input", "open_session")])))
        assert samples[admitted] == 3
        reattached = ("jumpvpn_gateway_admissions_total",
                      tuple(sorted([node_label, ("input", "reattach")])))
        assert samples[reattached] == 1
        refused = ("jumpvpn_gateway_rejections_total", tuple(sorted(
            [node_label, ("reason", reason.value), ("class", reason_class(reason).value)])))
        assert samples[refused] == 2
        missing = ("jumpvpn_gateway_rejections_total", tuple(sorted(
            [node_label, ("reason", "UNKNOWN_SESSION"),
             ("class", reason_class(ReasonCode.UNKNOWN_SESSION).value)])))
        assert samples[missing] == 1
        assert samples[("jumpvpn_gateway_sessions", (node_label,))] == 3
        expected = _transitions(results)
        assert expected  # opening a session is a transition
        for (source, target), count in expected.items():
            key = ("jumpvpn_gateway_transitions_total",
                   (("from_phase", source), ("to_phase", target)))
            assert samples[key] == count
        creates = ("jumpvpn_store_call_seconds_count",
                   (("call", "create"), ("store", "sqlite")))
        assert samples[creates] == 3
        cas = ("jumpvpn_store_call_seconds_count",
               (("call", "compare_and_set"), ("store", "sqlite")))
        committed = sum(1 for r in results[3:] if r.store_version is not None)
        assert samples[cas] == committed
        assert samples[("jumpvpn_telemetry_dropped_total", (node_label,))] == 0
        # The next scrape sees new work: counters are read live, not cached.
        gateway.handle_reattach(reattach(sid(2), nonce=1, version=1, now=T0 + 40, forge=True))
        assert _scrape(node.port)[refused] == 3
    finally:
        node.close()


def test_store_errors_are_counted_and_timed_per_call_and_type(tmp_path: Path) -> None:
    metrics = GatewayMetrics()
    store = metrics.instrument(open_store(f"sqlite:///{tmp_path / 'e.db'}"))
    assert store.name == "sqlite"
    assert store.create(b"\x01" * 16, 0, b"x")
    store.store.close()  # closed underneath: every call now fails
    for _ in range(2):
        with pytest.raises(StoreUnavailableError):
            store.get(b"\x01" * 16)
    value = metrics.registry.get_sample_value
    assert value("jumpvpn_store_errors_total", {"store": "sqlite", "call": "get",
                                                "error": "StoreUnavailableError"}) == 2
    assert value("jumpvpn_store_call_seconds_count", {"store": "sqlite", "call": "get"}) == 2
    assert value("jumpvpn_store_call_seconds_count",
                 {"store": "sqlite", "call": "create"}) == 1
    assert value("jumpvpn_store_errors_total", {"store": "sqlite", "call": "create",
                                                "error": "StoreUnavailableError"}) is None


def test_instrumented_store_passes_results_and_other_attributes_through() -> None:
    inner = MemoryStore()
    metrics = GatewayMetrics()
    store = metrics.instrument(inner, name="primary")
    assert store.create(b"\x02" * 16, 3, b"d")
    assert not store.create(b"\x02" * 16, 3, b"d")
    assert not store.compare_and_set(b"\x02" * 16, 9, 10, b"e")
    assert [r.version for r in store.scan()] == [3]
    assert store.delete(b"\x02" * 16, 3)
    assert store.get(b"\x02" * 16) is None
    assert getattr(store, "time_ms", None) is None  # the memory store keeps no time
    value = metrics.registry.get_sample_value
    assert value("jumpvpn_store_call_seconds_count",
                 {"store": "primary", "call": "create"}) == 2
    assert value("jumpvpn_store_call_seconds_count", {"store": "primary", "call": "scan"}) == 2


class _RaisingSink:
    """A custom sink (so it runs on a worker) that fails on every record."""

    def emit(self, record: Any) -> None:
        raise RuntimeError("backend down")

    def close(self) -> None:
        return None


def test_telemetry_drops_and_quarantined_records_are_exposed() -> None:
    metrics = GatewayMetrics()
    store = MemoryStore()
    gateway = make_gateway(store, telemetry=[metrics.sink, _RaisingSink()])
    metrics.watch(gateway)
    for i in range(3):
        assert gateway.open_session(sid(i), secret_for(sid(i)), CLIENT, T0).accepted
    deadline = time.monotonic() + 30
    while gateway.telemetry_dropped < 3 and time.monotonic() < deadline:
        time.sleep(0.01)  # the worker drops records on its own thread
    labels = {"node": gateway.node_id}
    value = metrics.registry.get_sample_value
    assert value("jumpvpn_telemetry_dropped_total", labels) == gateway.telemetry_dropped >= 3
    assert store.compare_and_set(sid(0), 1, 2, b"not a state")
    fresh = make_gateway(store, node="n0")
    metrics_fresh = GatewayMetrics()
    metrics_fresh.watch(fresh)
    fresh.resume(T0 + 1)
    assert metrics_fresh.registry.get_sample_value(
        "jumpvpn_gateway_quarantined_records_total", labels) == 1
    gateway.close()
    fresh.close()


def test_metrics_live_in_the_registry_given_never_the_global_one() -> None:
    first, second = GatewayMetrics(), GatewayMetrics(CollectorRegistry())
    assert first.registry is not second.registry
    assert first.registry is not REGISTRY
    assert REGISTRY.get_sample_value("jumpvpn_gateway_transitions_total",
                                     {"from_phase": "NEW", "to_phase": "ACTIVE"}) is None
    names = {metric.name for metric in REGISTRY.collect()}
    assert not any(name.startswith("jumpvpn_") for name in names)


def test_one_registry_watches_several_nodes_apart() -> None:
    metrics = GatewayMetrics()
    store = MemoryStore()
    one = make_gateway(store, node="a", nodes=("a", "b"))
    two = make_gateway(store, node="b", nodes=("a", "b"))
    metrics.watch(one)
    metrics.watch(two)
    with pytest.raises(ValueError, match="already watched"):
        metrics.watch(one)
    assert one.open_session(sid(1), secret_for(sid(1)), CLIENT, T0).accepted
    refused = two.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    assert refused.reason is ReasonCode.COMMIT_CONFLICT
    value = metrics.registry.get_sample_value
    assert value("jumpvpn_gateway_admissions_total", {"node": "a", "input": "open_session"}) == 1
    assert value("jumpvpn_gateway_admissions_total", {"node": "b", "input": "open_session"}) == 0
    assert value("jumpvpn_gateway_rejections_total", {
        "node": "b", "reason": "COMMIT_CONFLICT",
        "class": reason_class(ReasonCode.COMMIT_CONFLICT).value}) == 1
    assert reason_class(ReasonCode.COMMIT_CONFLICT) is not ReasonClass.SECURITY_EVENT


def test_a_watched_sink_reports_its_own_drops() -> None:
    metrics = GatewayMetrics()
    hung = threading.Event()

    def backend(record: Any) -> None:
        hung.wait(30)  # a backend that hangs: the queue fills, records are dropped

    sink = QueueSink(backend, capacity=2)
    gateway = make_gateway(MemoryStore(), telemetry=[sink])
    metrics.watch(gateway)
    metrics.watch_sink("audit-file", sink)
    with pytest.raises(ValueError, match="already watched"):
        metrics.watch_sink("audit-file", sink)
    for i in range(10):
        assert gateway.open_session(sid(i), secret_for(sid(i)), CLIENT, T0).accepted
    value = metrics.registry.get_sample_value
    dropped = value("jumpvpn_telemetry_sink_dropped_total", {"sink": "audit-file"})
    assert dropped == sink.dropped > 0
    # Inline sinks' drops are theirs: the gateway's own count covers only its workers.
    assert value("jumpvpn_telemetry_dropped_total", {"node": gateway.node_id}) == 0
    assert value("jumpvpn_telemetry_errors_total", {"node": gateway.node_id}) == 0
    hung.set()
    gateway.close()
    sink.close()
