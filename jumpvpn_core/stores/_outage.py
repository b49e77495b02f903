"""How the store adapters log failing calls without flooding the log during an outage.

The first failure after a success is a WARNING (the store became unavailable), every
further one a DEBUG line, and the first success after failures an INFO line (the store
answers again). Lines name the store and the call and the error's type and first line,
never a record's data or a URL's password.
"""

from __future__ import annotations

import logging
import threading

__all__ = ["OutageLog", "describe"]

_MAX_TEXT = 200


def describe(exc: BaseException) -> str:
    """`Type: first line of the message` (bounded), for a log line."""
    text = str(exc).strip().splitlines()
    first = text[0][:_MAX_TEXT] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class OutageLog:
    """Per-store failure logging; thread-safe."""

    def __init__(self, logger: logging.Logger, store: str) -> None:
        self._logger = logger
        self._store = store
        self._failing = False
        self._lock = threading.Lock()

    @property
    def failing(self) -> bool:
        """True from a failed call until the next call that succeeds."""
        return self._failing

    def failed(self, what: str, exc: BaseException) -> None:
        """Record a failed call."""
        with self._lock:
            first, self._failing = not self._failing, True
        if first:
            self._logger.warning("%s store %s failed (%s); further failures are logged at "
                                 "DEBUG until it answers again", self._store, what,
                                 describe(exc))
        else:
            self._logger.debug("%s store %s failed (%s)", self._store, what, describe(exc))

    def answered(self) -> None:
        """Record a call that succeeded."""
        if not self._failing:
            return
        with self._lock:
            was, self._failing = self._failing, False
        if was:
            self._logger.info("%s store answers again", self._store)
