"""The store contract every adapter implements (`open_store(url)` is in `stores.factory`).

Ownership rule (seed §4.1): a session's record changes only by compare-and-set on its
version. `compare_and_set(sid, expected, new_version, data)` succeeds iff the stored
version equals `expected`, atomically with respect to every other writer on every node.

Errors: a store that cannot be reached, or does not answer in time, raises
`StoreUnavailableError` (the caller rejects the request: §4.2); a malformed URL raises
`StoreConfigError` at start-up, naming what was wrong. Record *content* is opaque bytes
here; decoding it (and failing closed when it does not decode) is the gateway's job.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import attrs

__all__ = [
    "SessionStore",
    "StoreConfigError",
    "StoreError",
    "StoreRolledBackError",
    "StoreSchemaError",
    "StoreUnavailableError",
    "StoredSession",
]


class StoreError(Exception):
    """Base class of store errors."""


class StoreUnavailableError(StoreError):
    """The store could not be reached or did not answer in time."""


class StoreConfigError(StoreError, ValueError):
    """The store URL or options are wrong. Raised at start-up, never a hang."""


class StoreSchemaError(StoreConfigError):
    """The store's layout is one this code cannot use: newer than it knows (written by a
    later release) or not a layout at all. Raised at open; the store is never used as is."""


class StoreRolledBackError(StoreUnavailableError):
    """The store answered with data older than this client has already seen: it went
    backwards (restarted without persistence, restored from an old snapshot, failed over
    to a replica that had not caught up). The store object refuses every call from then on:
    serving from a rolled-back store could re-accept old nonces or re-issue versions."""


@attrs.frozen
class StoredSession:
    """One committed record: the session's version and its opaque encoded state."""

    session_id: bytes
    version: int
    data: bytes = attrs.field(repr=False)  # encoded state, may hold key material


@runtime_checkable
class SessionStore(Protocol):
    """What a gateway needs from a store. All methods are synchronous and thread-safe."""

    def get(self, session_id: bytes) -> StoredSession | None:
        """The committed record of `session_id`, or None."""
        ...

    def create(self, session_id: bytes, version: int, data: bytes) -> bool:
        """Insert a new record; False (and no change) if the session already exists."""
        ...

    def compare_and_set(
        self, session_id: bytes, expected_version: int, new_version: int, data: bytes
    ) -> bool:
        """Replace the record iff its version is `expected_version`. Atomic."""
        ...

    def delete(self, session_id: bytes, expected_version: int) -> bool:
        """Remove the record iff its version is `expected_version`."""
        ...

    def scan(self) -> Iterator[StoredSession]:
        """Every record, in no particular order (used on restart)."""
        ...

    def close(self) -> None:
        """Release connections. Idempotent."""
        ...
