"""Telemetry sinks for scenario scripts (`sink <name> healthy|raising|blocking|lossy`).

`QueuedSink` is a real `QueueSink` in front of a backend that works, hangs until released,
or fails every n-th record; `RaisingSink` is a badly written sink whose `emit` raises. Both
count what the nodes offered and what was delivered, so a script can print it (§6.1, §6.2).
`Tee` is a node's telemetry: every record to the script's trace, then to its sink.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from jumpvpn_core.telemetry import DROP_RECORD_TYPE, QueueSink

__all__ = ["SINK_WAIT_S", "QueuedSink", "RaisingSink", "Sink", "Tee"]

#: Bound on waiting for a sink's drain thread (start, close); a script fails past it.
SINK_WAIT_S = 5.0
#: A blocking backend gives up after this long even if nobody releases it.
_BLOCK_BOUND_S = 10.0
_PROBE_TYPE = "scenario_probe"


class RaisingSink:
    """A badly written sink: `emit` itself raises (the gateway must shrug it off)."""

    kind = "raising"

    def __init__(self) -> None:
        self.offered = 0

    def emit(self, record: Mapping[str, Any]) -> None:
        self.offered += 1
        raise RuntimeError("audit backend unreachable")

    def close(self) -> None:
        return None

    def summary(self) -> str:
        return f"offered={self.offered} delivered=0 dropped={self.offered} (emit raised)"


class QueuedSink:
    """A real `QueueSink` in front of a backend that works, hangs or fails every n-th record.

    Only gateway records count as offered / delivered; the start-up probe of a blocking
    backend and the sink's own drop reports are counted apart.
    """

    def __init__(self, kind: str, capacity: int, every: int) -> None:
        self.kind = kind
        self.every = every
        self.offered = 0
        self.delivered = 0
        self.reported = 0
        self._handed = 0
        self._entered = threading.Event()
        self._release = threading.Event()
        if kind != "blocking":
            self._release.set()
        self.queue = QueueSink(self._backend, capacity=capacity, report_interval_s=3600.0,
                               name=f"scenario-sink-{kind}")
        if kind == "blocking":
            # Park the drain thread inside the backend before the script goes on, so what
            # fits in the queue (and what is dropped) does not depend on thread timing.
            self.queue.emit({"type": _PROBE_TYPE})
            if not self._entered.wait(SINK_WAIT_S):
                self._release.set()
                raise TimeoutError("the blocking sink's drain thread did not start")

    def _backend(self, record: Mapping[str, Any]) -> None:
        self._entered.set()
        if not self._release.wait(_BLOCK_BOUND_S):
            raise TimeoutError("backend hung")
        self._handed += 1
        if self.kind == "lossy" and self._handed % self.every == 0:
            raise ConnectionError("record lost on the way to the backend")
        if record.get("type") == DROP_RECORD_TYPE:
            self.reported += int(record["dropped"])
        elif record.get("type") != _PROBE_TYPE:
            self.delivered += 1

    def emit(self, record: Mapping[str, Any]) -> None:
        self.offered += 1
        self.queue.emit(record)

    def close(self) -> None:
        self._release.set()
        self.queue.close(SINK_WAIT_S)

    def summary(self) -> str:
        return (f"offered={self.offered} delivered={self.delivered} "
                f"dropped={self.queue.dropped} reported_dropped={self.reported}")


Sink = RaisingSink | QueuedSink


class Tee:
    """A gateway's telemetry: every record to the script trace, then to the scenario sink.

    `fresh` collects `(node, record)` for the runner to print; `trace` is the script's
    audit trace, where each record is tagged with its node, store and script.
    """

    def __init__(self, node: str, store: str, script: str,
                 fresh: list[tuple[str, dict[str, Any]]], trace: list[dict[str, Any]],
                 sink: Sink | None) -> None:
        self.node = node
        self.store = store
        self.script = script
        self.fresh = fresh
        self.trace = trace
        self.sink = sink

    def emit(self, record: Mapping[str, Any]) -> None:
        """Print-queue, trace, then hand the record to the sink."""
        self.fresh.append((self.node, dict(record)))
        traced = dict(record)
        traced["node"] = self.node
        # A session's one chain of states lives in its store: nodes sharing a store write
        # one stream, nodes with stores of their own write separate ones.
        traced["store"] = self.store
        traced["script"] = self.script
        self.trace.append(traced)
        if self.sink is not None:
            self.sink.emit(record)

    def close(self) -> None:
        """Nothing to release (the sink is closed by `sink <name> close`)."""
