"""One fault-injecting store: any `SessionStore`, with faults switched on and off explicitly.

The scenario runner (`store <name> down|lose-replies`, races between gateways sharing a
store) and the simulator (partitions, store outages, split-brain interleavings) both put a
`FaultyStore` in front of a real store. Nothing here is random or timed: a fault is on
exactly while the caller says so.

Faults:

* `StoreFault.DOWN`: every call raises `StoreUnavailableError` before it reaches the store.
* `StoreFault.LOSE_REPLIES`: every write is carried out, then its reply is lost: the caller
  sees `StoreUnavailableError` and cannot know the write landed.
* `unreachable`: a callable consulted on every call; when it returns a reason, the call
  raises `StoreUnavailableError(reason)` before reaching the store (a partition whose
  schedule lives with the caller).
* `hold_reads(session_ids)`: the next read of each of these sessions returns the record as
  it is *now*, whatever is committed in between (every node of a race reads before any of
  them commits); `release_reads()` forgets what was held.

Hooks let a caller interleave or observe without subclassing: `after_read(session_id)` runs
after a read reached the store and before it returns (a rival may run to the end there),
`after_commit(session_id, version, data, created)` after a create or compare-and-set landed.

Counters: `reads` (calls to `get` that reached the store), `writes` (creates,
compare-and-sets and deletes that reached it), `refused` (calls refused by a fault).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator

from jumpvpn_core.stores.base import SessionStore, StoredSession, StoreUnavailableError

__all__ = ["FaultyStore", "StoreFault"]


class StoreFault(enum.StrEnum):
    """The fault a `FaultyStore` injects (its value is the scenario scripts' word)."""

    NONE = "up"
    DOWN = "down"
    LOSE_REPLIES = "lose-replies"


class FaultyStore:
    """A `SessionStore` in front of `inner` that fails exactly when told to."""

    def __init__(self, inner: SessionStore, *,
                 unreachable: Callable[[], str | None] | None = None,
                 after_read: Callable[[bytes], None] | None = None,
                 after_commit: Callable[[bytes, int, bytes, bool], None] | None = None
                 ) -> None:
        self.inner = inner
        self.fault = StoreFault.NONE
        self.unreachable = unreachable
        self.after_read = after_read
        self.after_commit = after_commit
        self.reads = 0
        self.writes = 0
        self.refused = 0
        self._held: dict[bytes, StoredSession | None] = {}

    # --- switching faults ---------------------------------------------------------------

    def hold_reads(self, session_ids: Iterable[bytes]) -> None:
        """The next read of each session returns its record as it is now."""
        for session_id in session_ids:
            self._held[session_id] = self.peek(session_id)

    def release_reads(self) -> None:
        """Forget every held read."""
        self._held.clear()

    def peek(self, session_id: bytes) -> StoredSession | None:
        """The record as it is, with no fault, hook or count (the caller's own look)."""
        if isinstance(self.inner, FaultyStore):
            return self.inner.peek(session_id)
        return self.inner.get(session_id)

    # --- the store contract -------------------------------------------------------------

    def _reach(self) -> None:
        reason = "store is down" if self.fault is StoreFault.DOWN else None
        if reason is None and self.unreachable is not None:
            reason = self.unreachable()
        if reason is not None:
            self.refused += 1
            raise StoreUnavailableError(reason)

    def _write(self, landed: bool) -> bool:
        if self.fault is StoreFault.LOSE_REPLIES:
            raise StoreUnavailableError("the store's reply was lost")
        return landed

    def get(self, session_id: bytes) -> StoredSession | None:
        """The record (or the one held for this read)."""
        self._reach()
        self.reads += 1
        record = self.inner.get(session_id)
        if session_id in self._held:
            record = self._held.pop(session_id)
        if self.after_read is not None:
            self.after_read(session_id)
        return record

    def create(self, session_id: bytes, version: int, data: bytes) -> bool:
        """Insert a new record."""
        self._reach()
        self.writes += 1
        created = self.inner.create(session_id, version, data)
        if created and self.after_commit is not None:
            self.after_commit(session_id, version, data, True)
        return self._write(created)

    def compare_and_set(
        self, session_id: bytes, expected_version: int, new_version: int, data: bytes
    ) -> bool:
        """Replace the record iff its version is `expected_version`."""
        self._reach()
        self.writes += 1
        done = self.inner.compare_and_set(session_id, expected_version, new_version, data)
        if done and self.after_commit is not None:
            self.after_commit(session_id, new_version, data, False)
        return self._write(done)

    def delete(self, session_id: bytes, expected_version: int) -> bool:
        """Remove the record iff its version is `expected_version`."""
        self._reach()
        self.writes += 1
        return self._write(self.inner.delete(session_id, expected_version))

    def scan(self) -> Iterator[StoredSession]:
        """Every record."""
        self._reach()
        return self.inner.scan()

    def close(self) -> None:
        """Nothing to release (the inner store belongs to the caller)."""
