"""The store contract every adapter implements, and `open_store(url)`.

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
from urllib.parse import urlsplit

import attrs

__all__ = [
    "SessionStore",
    "StoreConfigError",
    "StoreError",
    "StoreUnavailableError",
    "StoredSession",
    "open_store",
]


class StoreError(Exception):
    """Base class of store errors."""


class StoreUnavailableError(StoreError):
    """The store could not be reached or did not answer in time."""


class StoreConfigError(StoreError, ValueError):
    """The store URL or options are wrong. Raised at start-up, never a hang."""


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


def open_store(url: str, *, timeout_s: float = 2.0) -> SessionStore:
    """Open a store by URL; connects at once, so an unreachable server fails here.

    * `memory://`                      in-process (simulators, tests)
    * `sqlite:///path/to/file.db`      embedded, durable; the text after `sqlite:///` is the
      path as written (`sqlite:///rel.db` relative, `sqlite:////abs/file.db` absolute);
      `sqlite://:memory:` for tests
    * `redis://[user[:pw]@]host:port/db[?prefix=jumpvpn:]`
                                       shared; CAS by a Lua script; keys `<prefix><sid hex>`
    * `postgresql://user@host:port/db[?table=jumpvpn_sessions]` (or `postgres://`)
                                       shared; CAS by `UPDATE ... WHERE version = expected`

    `timeout_s` bounds connecting and every call (busy timeout, socket timeouts,
    `connect_timeout` / `statement_timeout`). Raises `StoreConfigError` for a malformed URL
    (unknown scheme or query key, missing path or host, bad port, invalid table name) and
    `StoreUnavailableError` when the server cannot be reached in time.
    """
    if not isinstance(url, str) or "://" not in url:
        raise StoreConfigError(f"store URL must look like scheme://..., got {url!r}")
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from jumpvpn_core.stores.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from jumpvpn_core.stores.sqlite import SqliteStore, parse_sqlite_url

        return SqliteStore(parse_sqlite_url(url), timeout_s=timeout_s)
    if scheme == "redis":
        try:
            from jumpvpn_core.stores.redis import open_redis_store
        except ImportError as exc:  # the optional dependency is missing
            raise StoreConfigError("redis store needs the 'redis' extra installed") from exc
        return open_redis_store(url, timeout_s=timeout_s)
    if scheme in ("postgresql", "postgres"):
        try:
            from jumpvpn_core.stores.postgres import open_postgres_store
        except ImportError as exc:  # the optional dependency is missing
            raise StoreConfigError("postgres store needs the 'postgres' extra installed") from exc
        return open_postgres_store(url, timeout_s=timeout_s)
    raise StoreConfigError(
        f"unknown store scheme {scheme!r}: use memory, sqlite, redis or postgresql"
    )
