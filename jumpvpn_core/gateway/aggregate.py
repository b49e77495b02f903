"""Rejection aggregation: a flood of rejections becomes one summary record per interval.

Windows are aligned on multiples of `interval_ms` of the gateway's (injected) clock. A
rejection counted at `now_ms` in a later window first closes the current one, which is
returned as a record for the telemetry sink. Security events are counted like every other
rejection and also totalled on their own, so an auditor never loses them, only their
per-request detail.
"""

from __future__ import annotations

from typing import Any

from jumpvpn_core.effects import AUDIT_RECORD_VERSION
from jumpvpn_core.reasons import ReasonClass, ReasonCode, reason_class

__all__ = ["SUMMARY_RECORD_TYPE", "RejectAggregator"]

SUMMARY_RECORD_TYPE = "reject_summary"


class RejectAggregator:
    """Counts rejections per reason per window; `count` and `flush` return closed windows."""

    __slots__ = ("_counts", "_start", "interval_ms", "totals")

    def __init__(self, interval_ms: int) -> None:
        if interval_ms < 1:
            raise ValueError("interval_ms must be positive")
        self.interval_ms = interval_ms
        self._start: int | None = None
        self._counts: dict[ReasonCode, int] = {}
        #: Every rejection ever counted, per reason (never reset).
        self.totals: dict[ReasonCode, int] = {}

    def _window(self, now_ms: int) -> int:
        return now_ms - now_ms % self.interval_ms

    def flush(self, now_ms: int) -> list[dict[str, Any]]:
        """Close the current window if `now_ms` is past it; return its summary (or nothing)."""
        if self._start is None or now_ms < self._start + self.interval_ms:
            return []
        record = self._summary()
        self._start = None
        self._counts = {}
        return [record]

    def count(self, reason: ReasonCode, now_ms: int) -> list[dict[str, Any]]:
        """Count one rejection at `now_ms`; returns the summary of a window it closed."""
        closed = self.flush(now_ms)
        if self._start is None:
            self._start = self._window(now_ms)
        self._counts[reason] = self._counts.get(reason, 0) + 1
        self.totals[reason] = self.totals.get(reason, 0) + 1
        return closed

    def close(self) -> list[dict[str, Any]]:
        """Close the open window now, whatever the time; return its summary (or nothing).

        Used when a node stops: the last window's counts are reported, not lost. The record
        keeps the window's nominal bounds.
        """
        if self._start is None:
            return []
        record = self._summary()
        self._start = None
        self._counts = {}
        return [record]

    def pending(self) -> dict[ReasonCode, int]:
        """Counts of the still-open window."""
        return dict(self._counts)

    def _summary(self) -> dict[str, Any]:
        assert self._start is not None
        counts = {reason.value: n for reason, n in sorted(self._counts.items())}
        security = sum(
            n for reason, n in self._counts.items()
            if reason_class(reason) is ReasonClass.SECURITY_EVENT
        )
        return {
            "v": AUDIT_RECORD_VERSION,
            "type": SUMMARY_RECORD_TYPE,
            "window_start_ms": self._start,
            "window_end_ms": self._start + self.interval_ms,
            "total": sum(self._counts.values()),
            "security_events": security,
            "counts": counts,
        }
