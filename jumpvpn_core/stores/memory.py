"""In-process store: a dict behind a lock. For simulators and tests; not durable."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from jumpvpn_core.stores.base import StoredSession

__all__ = ["MemoryStore"]


class MemoryStore:
    """`SessionStore` in memory. CAS is atomic under one lock."""

    def __init__(self) -> None:
        self._records: dict[bytes, StoredSession] = {}
        self._lock = threading.Lock()

    def get(self, session_id: bytes) -> StoredSession | None:
        with self._lock:
            return self._records.get(session_id)

    def create(self, session_id: bytes, version: int, data: bytes) -> bool:
        with self._lock:
            if session_id in self._records:
                return False
            self._records[session_id] = StoredSession(session_id, version, data)
            return True

    def compare_and_set(
        self, session_id: bytes, expected_version: int, new_version: int, data: bytes
    ) -> bool:
        with self._lock:
            current = self._records.get(session_id)
            if current is None or current.version != expected_version:
                return False
            self._records[session_id] = StoredSession(session_id, new_version, data)
            return True

    def delete(self, session_id: bytes, expected_version: int) -> bool:
        with self._lock:
            current = self._records.get(session_id)
            if current is None or current.version != expected_version:
                return False
            del self._records[session_id]
            return True

    def scan(self) -> Iterator[StoredSession]:
        with self._lock:
            snapshot = list(self._records.values())
        return iter(snapshot)

    def close(self) -> None:
        return None
