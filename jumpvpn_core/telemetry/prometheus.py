"""Prometheus metrics of gateway nodes and their stores (the optional `metrics` extra).

Everything lives in the `CollectorRegistry` passed in (a new private one when none is):
nothing is registered in prometheus_client's global registry unless the caller passes
that one on purpose. Three ways in, none of which can hold a gateway up:

* `GatewayMetrics.watch(gateway)`: at scrape time, reads the counters the gateway keeps
  anyway (admissions per input kind, rejections per reason and class, honest
  retransmissions, quarantined records, telemetry records dropped, sessions in the
  table). Nothing runs on the gateway's path.
* `GatewayMetrics.sink`: a non-blocking telemetry sink (pass it in `Gateway(telemetry=
  [...])`) counting phase transitions from the `state_change` audit records.
* `GatewayMetrics.instrument(store)`: a `SessionStore` wrapper timing every call
  (histogram) and counting the calls that raised, per call and error type.

Metrics (name: type, labels):

* `jumpvpn_gateway_admissions_total`: counter; node, input (open_session, reattach, event)
* `jumpvpn_gateway_rejections_total`: counter; node, reason, class
* `jumpvpn_gateway_retransmissions_total`: counter; node
* `jumpvpn_gateway_quarantined_records_total`: counter; node
* `jumpvpn_gateway_sessions`: gauge; node
* `jumpvpn_telemetry_dropped_total`: counter; node
* `jumpvpn_telemetry_errors_total`: counter; node
* `jumpvpn_telemetry_sink_dropped_total`: counter; sink (sinks named in `watch_sink`)
* `jumpvpn_gateway_transitions_total`: counter; from_phase, to_phase
* `jumpvpn_store_call_seconds`: histogram; store, call
* `jumpvpn_store_errors_total`: counter; store, call, error
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from jumpvpn_core.reasons import ReasonCode, reason_class
from jumpvpn_core.stores.base import SessionStore, StoredSession, StoreError

__all__ = [
    "STORE_LATENCY_BUCKETS",
    "CountsDrops",
    "GatewayMetrics",
    "InstrumentedStore",
    "TransitionSink",
    "WatchedGateway",
]

#: Histogram buckets of store calls, in seconds (a LAN round trip to a fsync'd commit).
STORE_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                         1.0, 2.5, 5.0)

_T = TypeVar("_T")


class WatchedGateway(Protocol):
    """What `GatewayMetrics.watch` reads from a gateway (`Gateway` has all of it)."""

    node_id: str
    retransmissions: int
    accepted_totals: dict[str, int]

    @property
    def rejection_totals(self) -> dict[ReasonCode, int]: ...

    @property
    def quarantined(self) -> int: ...

    @property
    def telemetry_dropped(self) -> int: ...

    @property
    def telemetry_errors(self) -> int: ...

    def __len__(self) -> int: ...


class CountsDrops(Protocol):
    """A sink that counts the records it dropped (every `QueueSink`, `SinkWorker`)."""

    @property
    def dropped(self) -> int: ...


class TransitionSink:
    """Counts `state_change` audit records into a counter; ignores every other record.
    Non-blocking: one counter increment per record, inline."""

    nonblocking: ClassVar[bool] = True

    def __init__(self, counter: Counter) -> None:
        self._counter = counter

    def emit(self, record: Mapping[str, Any]) -> None:
        if record.get("type") != "state_change":
            return
        source, target = record.get("from"), record.get("to")
        if isinstance(source, str) and isinstance(target, str):
            self._counter.labels(source, target).inc()

    def close(self) -> None:
        return None


class InstrumentedStore:
    """A `SessionStore` that times each call of the store it wraps and counts the calls
    that raised. Results and exceptions pass through unchanged; any other attribute
    (`time_ms`, `client`, ...) is the wrapped store's."""

    def __init__(self, store: SessionStore, latency: Histogram, errors: Counter,
                 name: str) -> None:
        self.store = store
        self.name = name
        self._latency = latency
        self._errors = errors

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.store, attribute)

    def _timed(self, call: str, work: Callable[[], _T]) -> _T:
        start = time.perf_counter()
        try:
            return work()
        except StoreError as exc:
            self._errors.labels(self.name, call, type(exc).__name__).inc()
            raise
        finally:
            self._latency.labels(self.name, call).observe(time.perf_counter() - start)

    def get(self, session_id: bytes) -> StoredSession | None:
        return self._timed("get", lambda: self.store.get(session_id))

    def create(self, session_id: bytes, version: int, data: bytes) -> bool:
        return self._timed("create", lambda: self.store.create(session_id, version, data))

    def compare_and_set(
        self, session_id: bytes, expected_version: int, new_version: int, data: bytes
    ) -> bool:
        return self._timed("compare_and_set", lambda: self.store.compare_and_set(
            session_id, expected_version, new_version, data))

    def delete(self, session_id: bytes, expected_version: int) -> bool:
        return self._timed("delete", lambda: self.store.delete(session_id, expected_version))

    def scan(self) -> Iterator[StoredSession]:
        """The wrapped scan; each batch the store fetches is timed as one `scan` call
        (the time to produce the next record, so a consumer's own pace is not counted)."""
        records = self.store.scan()
        while True:
            try:
                record = self._timed("scan", lambda: next(records))
            except StopIteration:
                return
            yield record

    def close(self) -> None:
        self._timed("close", self.store.close)


class _GatewayCollector:
    """Reads the watched gateways' own counters at scrape time."""

    def __init__(self) -> None:
        self._gateways: list[WatchedGateway] = []
        self._sinks: dict[str, CountsDrops] = {}
        self._lock = threading.Lock()

    def add_sink(self, name: str, sink: CountsDrops) -> None:
        with self._lock:
            if name in self._sinks:
                raise ValueError(f"a sink named {name!r} is already watched")
            self._sinks[name] = sink

    def add(self, gateway: WatchedGateway) -> None:
        with self._lock:
            if any(g.node_id == gateway.node_id for g in self._gateways):
                raise ValueError(f"a gateway named {gateway.node_id!r} is already watched")
            self._gateways.append(gateway)

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            gateways = list(self._gateways)
            sinks = dict(self._sinks)
        return self._families(gateways, sinks)

    def _families(self, gateways: Sequence[WatchedGateway] = (),
                  sinks: Mapping[str, CountsDrops] | None = None) -> list[Metric]:
        admissions = CounterMetricFamily(
            "jumpvpn_gateway_admissions", "Inputs accepted and committed, per input kind.",
            labels=["node", "input"])
        rejections = CounterMetricFamily(
            "jumpvpn_gateway_rejections", "Inputs refused, per reason code and class.",
            labels=["node", "reason", "class"])
        retransmissions = CounterMetricFamily(
            "jumpvpn_gateway_retransmissions",
            "REPLAY_DETECTED refusals answered with the stored accept (honest "
            "retransmissions).", labels=["node"])
        quarantined = CounterMetricFamily(
            "jumpvpn_gateway_quarantined_records",
            "Store records left untouched because they do not decode.", labels=["node"])
        dropped = CounterMetricFamily(
            "jumpvpn_telemetry_dropped",
            "Telemetry records dropped on the way to a slow or failing sink.",
            labels=["node"])
        errors = CounterMetricFamily(
            "jumpvpn_telemetry_errors",
            "Records a sink raised on when called inline (a well-behaved sink never does).",
            labels=["node"])
        sink_dropped = CounterMetricFamily(
            "jumpvpn_telemetry_sink_dropped",
            "Records a watched sink dropped itself (its queue full, its backend failing).",
            labels=["sink"])
        sessions = GaugeMetricFamily(
            "jumpvpn_gateway_sessions", "Sessions in the node's table.", labels=["node"])
        for gateway in gateways:
            node = gateway.node_id
            for kind, count in sorted(dict(gateway.accepted_totals).items()):
                admissions.add_metric([node, kind], count)
            for reason, count in sorted(gateway.rejection_totals.items()):
                rejections.add_metric([node, reason.value, reason_class(reason).value], count)
            retransmissions.add_metric([node], gateway.retransmissions)
            quarantined.add_metric([node], gateway.quarantined)
            dropped.add_metric([node], gateway.telemetry_dropped)
            errors.add_metric([node], gateway.telemetry_errors)
            sessions.add_metric([node], len(gateway))
        for name, sink in sorted((sinks or {}).items()):
            sink_dropped.add_metric([name], sink.dropped)
        return [admissions, rejections, retransmissions, quarantined, dropped, errors,
                sink_dropped, sessions]


class GatewayMetrics:
    """The metrics of one process's gateways and stores, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 latency_buckets: Sequence[float] = STORE_LATENCY_BUCKETS) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.transitions = Counter(
            "jumpvpn_gateway_transitions", "Committed phase transitions of sessions.",
            ["from_phase", "to_phase"], registry=self.registry)
        self.store_latency = Histogram(
            "jumpvpn_store_call_seconds", "Duration of store calls, including failed ones.",
            ["store", "call"], buckets=tuple(latency_buckets), registry=self.registry)
        self.store_errors = Counter(
            "jumpvpn_store_errors", "Store calls that raised, per error type.",
            ["store", "call", "error"], registry=self.registry)
        self._collector = _GatewayCollector()
        self.registry.register(self._collector)
        #: The telemetry sink counting transitions: pass it to `Gateway(telemetry=...)`.
        self.sink = TransitionSink(self.transitions)

    def watch(self, gateway: WatchedGateway) -> None:
        """Expose `gateway`'s counters (read at scrape time), labelled with its node id."""
        self._collector.add(gateway)

    def watch_sink(self, name: str, sink: CountsDrops) -> None:
        """Expose `sink.dropped` as `jumpvpn_telemetry_sink_dropped_total{sink=name}`. For
        sinks the gateway calls inline (`QueueSink`s such as `JsonlFileSink`): their own
        queue drops are not in the gateway's `telemetry_dropped`, which counts only the
        workers it made for blocking sinks."""
        self._collector.add_sink(name, sink)

    def instrument(self, store: SessionStore, name: str | None = None) -> InstrumentedStore:
        """`store` wrapped so its calls are timed and its errors counted, labelled `name`
        (default: the store class's name without `Store`, lower case: `postgres`)."""
        label = name if name is not None else type(store).__name__.removesuffix("Store").lower()
        return InstrumentedStore(store, self.store_latency, self.store_errors, label)
