"""Telemetry off the caller's path: one bounded queue and one worker per sink (§6.1).

A gateway hands every audit and summary record to a `Fanout`. The fanout calls each of
its targets inline, and every target is guaranteed not to block:

* a sink that declares `nonblocking = True` (`NullSink`, `ListSink`, every `QueueSink`,
  hence `JsonlFileSink` and `LoggingSink`) is called directly: its `emit` returns at once;
* any other sink (a custom class, a network client) is wrapped in a `SinkWorker`: a
  bounded queue drained by a thread of its own. When that sink blocks or crawls, its
  queue fills and further records are dropped and counted; the caller never waits, and
  no other sink is held up (each has its own worker).

`Fanout.close(timeout_s)` stops every worker it created within one shared deadline, so it
returns within `timeout_s` whatever the sinks do. Sinks the caller passed in are not
closed: whoever created them closes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from jumpvpn_core.telemetry.sinks import QueueSink, TelemetrySink

__all__ = ["DEFAULT_WORKER_CAPACITY", "Fanout", "SinkWorker", "is_nonblocking"]

#: Records a `SinkWorker` holds for a slow sink before it drops (and counts) new ones.
DEFAULT_WORKER_CAPACITY = 10_000

Record = Mapping[str, Any]


def is_nonblocking(sink: object) -> bool:
    """True when `sink` declares that its `emit` never blocks (class attribute)."""
    return getattr(type(sink), "nonblocking", False) is True


class SinkWorker(QueueSink):
    """Any `TelemetrySink` behind a bounded queue and a thread of its own.

    `emit` never blocks; whatever the wrapped sink's `emit` does happens on the worker's
    thread. Drops (queue full, the sink raised) are counted in `dropped` and reported to
    the sink as `telemetry_dropped` records, like any `QueueSink`.
    """

    nonblocking: ClassVar[bool] = True

    def __init__(self, sink: TelemetrySink, *, capacity: int = DEFAULT_WORKER_CAPACITY,
                 report_interval_s: float = 10.0) -> None:
        self.sink = sink
        super().__init__(sink.emit, capacity=capacity, report_interval_s=report_interval_s,
                         name=f"jumpvpn-telemetry-{type(sink).__name__}")


class Fanout:
    """Hands each record to every target without ever blocking; see the module docstring.

    `errors` counts records a target's own `emit` raised on (a non-blocking sink should
    never raise; counted anyway, never propagated). `dropped` adds up the drops of the
    workers this fanout created.
    """

    nonblocking: ClassVar[bool] = True

    def __init__(self, sinks: Iterable[TelemetrySink], *,
                 capacity: int = DEFAULT_WORKER_CAPACITY,
                 wrap: Callable[[TelemetrySink, int], SinkWorker] | None = None) -> None:
        make = wrap if wrap is not None else (lambda s, c: SinkWorker(s, capacity=c))
        self.workers: list[SinkWorker] = []
        self.targets: list[TelemetrySink] = []
        for sink in sinks:
            if is_nonblocking(sink):
                self.targets.append(sink)
            else:
                worker = make(sink, capacity)
                self.workers.append(worker)
                self.targets.append(worker)
        self.errors = 0

    def emit(self, record: Record) -> None:
        """Hand `record` to every target; never blocks, never raises."""
        for target in self.targets:
            try:
                target.emit(record)
            except Exception:  # a sink must never change a decision (§6.1); count, go on
                self.errors += 1

    @property
    def dropped(self) -> int:
        """Records the workers dropped (a slow or failing sink), all workers together."""
        return sum(worker.dropped for worker in self.workers)

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the workers this fanout created, all within `timeout_s`. Idempotent."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        for worker in self.workers:
            worker.close(max(0.0, deadline - time.monotonic()))
