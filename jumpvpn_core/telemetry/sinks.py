"""Telemetry sinks that can never stall or change a session (risk model §6.1, §6.2).

Every sink here is a `QueueSink`: `emit(record)` puts the record on a bounded queue and
returns at once; one background thread drains the queue into a *backend* (a JSONL file,
the stdlib `logging` module, or any callable). Whatever the backend does — raise, hang,
crawl — the caller of `emit()` is unaffected:

* queue full (backend slow or hung): the record is dropped and counted;
* backend raises: the record is dropped and counted, the thread carries on;
* the drop count is itself reported: `dropped` (a property, exact), and a
  `telemetry_dropped` record handed to the backend at most every `report_interval_s`
  while drops keep happening.

Losing records reduces visibility only; nothing that a sink does flows back into the
gateway's decisions (the gateway does not even look at the result of `emit`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = [
    "DROP_RECORD_TYPE",
    "JsonlFileSink",
    "ListSink",
    "LoggingSink",
    "NullSink",
    "QueueSink",
    "TelemetrySink",
]

#: `type` of the record a sink writes to report its own drops.
DROP_RECORD_TYPE = "telemetry_dropped"

Record = Mapping[str, Any]


@runtime_checkable
class TelemetrySink(Protocol):
    """Where a gateway sends audit and summary records. `emit` must never block or raise."""

    def emit(self, record: Record) -> None:
        """Hand over one JSON-ready record."""
        ...

    def close(self) -> None:
        """Flush what can be flushed within a bounded time, then stop. Idempotent."""
        ...


class NullSink:
    """Discards everything. The default when a gateway is given no sink."""

    #: `emit` returns at once and never raises: a gateway may call it inline.
    nonblocking: ClassVar[bool] = True

    def emit(self, record: Record) -> None:
        return None

    def close(self) -> None:
        return None


class ListSink:
    """Keeps records in a list, synchronously. For tests and simulators (never blocks)."""

    #: `emit` only appends under a lock held for no longer: a gateway may call it inline.
    nonblocking: ClassVar[bool] = True

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def emit(self, record: Record) -> None:
        with self._lock:
            self.records.append(dict(record))

    def close(self) -> None:
        return None


class QueueSink:
    """A bounded, non-blocking queue in front of a backend, drained by one daemon thread.

    `backend(record)` is called only on the drain thread. `capacity` bounds memory: at most
    that many records wait; more are dropped and counted.
    """

    #: `emit` is a `put_nowait`: a gateway may call it inline.
    nonblocking: ClassVar[bool] = True

    def __init__(
        self,
        backend: Callable[[Record], None],
        *,
        capacity: int = 10_000,
        report_interval_s: float = 10.0,
        name: str = "jumpvpn-telemetry",
    ) -> None:
        if type(capacity) is not int or capacity < 1:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        if not report_interval_s > 0:
            raise ValueError(f"report_interval_s must be > 0, got {report_interval_s!r}")
        self._backend = backend
        self._queue: queue.Queue[Record | None] = queue.Queue(maxsize=capacity)
        self._report_interval_s = report_interval_s
        self._lock = threading.Lock()
        self._dropped = 0
        self._reported = 0
        self._delivered = 0
        self._closed = False
        self._deadline: float | None = None
        self._thread = threading.Thread(target=self._drain, name=name, daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Records lost so far (queue full, backend raised, or emitted after close)."""
        with self._lock:
            return self._dropped

    @property
    def delivered(self) -> int:
        """Records the backend accepted without raising."""
        with self._lock:
            return self._delivered

    def _count_drop(self) -> None:
        with self._lock:
            self._dropped += 1

    def emit(self, record: Record) -> None:
        """Queue `record`; never blocks, never raises."""
        if self._closed:
            self._count_drop()
            return
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._count_drop()

    def _deliver(self, record: Record) -> bool:
        try:
            self._backend(record)
        except Exception:  # the backend is untrusted: whatever it raises is one lost record
            return False
        with self._lock:
            self._delivered += 1
        return True

    def _abandoned(self) -> bool:
        deadline = self._deadline
        return deadline is not None and time.monotonic() >= deadline

    def _report_drops(self) -> None:
        with self._lock:
            dropped = self._dropped
            new = dropped - self._reported
            self._reported = dropped
        if new > 0 and not self._deliver(
            {"v": 1, "type": DROP_RECORD_TYPE, "dropped": new, "dropped_total": dropped}
        ):
            self._count_drop()

    def _drain(self) -> None:
        next_report = time.monotonic() + self._report_interval_s
        while True:
            try:
                record = self._queue.get(timeout=self._report_interval_s)
            except queue.Empty:
                record = None
                if self._closed:
                    break
            else:
                if record is None:  # close() sentinel
                    if not self._abandoned():
                        self._report_drops()
                    break
                if self._abandoned():
                    # close() has returned: what is left is lost, counted, not delivered late.
                    self._count_drop()
                    continue
                if not self._deliver(record):
                    self._count_drop()
            now = time.monotonic()
            if now >= next_report:
                self._report_drops()
                next_report = now + self._report_interval_s

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop accepting records, drain what is queued within `timeout_s`, then return.

        Returns within `timeout_s` (one deadline covers handing over the stop marker and
        waiting for the drain thread), whatever the backend does: a hung backend's thread
        is a daemon and is abandoned. What was still queued then is lost (and counted if
        the thread ever gets to it).
        """
        if self._closed:
            return
        deadline = time.monotonic() + max(0.0, timeout_s)
        self._deadline = deadline
        self._closed = True
        # If the backend is stuck the queue stays full; the daemon thread is abandoned.
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
        self._thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def finished(self) -> bool:
        """True once the drain thread has stopped (after `close`)."""
        return not self._thread.is_alive()


class JsonlFileSink(QueueSink):
    """Appends one JSON object per line to `path` (flushed per record)."""

    def __init__(self, path: str | Path, **options: Any) -> None:
        self.path = Path(path)
        self._file = self.path.open("a", encoding="utf-8")
        super().__init__(self._write, **options)

    def _write(self, record: Record) -> None:
        self._file.write(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self, timeout_s: float = 2.0) -> None:
        super().close(timeout_s)
        if not self._thread.is_alive():
            self._file.close()


class LoggingSink(QueueSink):
    """Sends each record, as one JSON string, to a stdlib `logging` logger."""

    def __init__(
        self,
        logger: logging.Logger | str = "jumpvpn.audit",
        level: int = logging.INFO,
        **options: Any,
    ) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level
        super().__init__(self._log, **options)

    def _log(self, record: Record) -> None:
        self.logger.log(self.level, json.dumps(record, sort_keys=True, separators=(",", ":")))
