"""Telemetry: non-blocking sinks for audit and summary records (risk model §6).

A driver-side package: it uses threads and clocks, so the core never imports it.
"""

from jumpvpn_core.telemetry.fanout import Fanout, SinkWorker, is_nonblocking
from jumpvpn_core.telemetry.sinks import (
    DROP_RECORD_TYPE,
    JsonlFileSink,
    ListSink,
    LoggingSink,
    NullSink,
    QueueSink,
    TelemetrySink,
)

__all__ = [
    "DROP_RECORD_TYPE",
    "Fanout",
    "JsonlFileSink",
    "ListSink",
    "LoggingSink",
    "NullSink",
    "QueueSink",
    "SinkWorker",
    "TelemetrySink",
    "is_nonblocking",
]
