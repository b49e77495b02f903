"""`open_store(url)`: a store adapter by URL.

Kept apart from `stores.base` so that the contract module imports no concrete store (each
adapter imports `base`; only this module imports the adapters, lazily, so a missing
optional dependency is reported for the scheme that needs it).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from jumpvpn_core.stores.base import SessionStore, StoreConfigError

__all__ = ["open_store"]


def open_store(url: str, *, timeout_s: float = 2.0) -> SessionStore:
    """Open a store by URL; connects at once, so an unreachable server fails here.

    * `memory://`                      in-process (simulators, tests)
    * `sqlite:///path/to/file.db`      embedded, durable; the text after `sqlite:///` is the
      path as written (`sqlite:///rel.db` relative, `sqlite:////abs/file.db` absolute);
      `sqlite://:memory:` for tests
    * `redis://[user[:pw]@]host:port/db[?prefix=jumpvpn:]`
                                       shared; CAS by a Lua script; keys `<prefix><sid hex>`
    * `postgresql://user@host:port/db[?table=jumpvpn_sessions]` (or `postgres://`)
                                       shared; CAS by `UPDATE ... WHERE version = expected`;
                                       also `pool_size`, `durability`, `sslmode`,
                                       `sslrootcert`, `sslcert`, `sslkey`
    * `etcd://host:port[,host:port...][?prefix=/jumpvpn/sessions/]` (`etcds://` for TLS)
                                       shared, Raft-replicated; CAS by a transaction on the
                                       key's mod revision (recommended for clusters)

    `timeout_s` bounds connecting and every call (busy timeout, socket timeouts,
    `connect_timeout` / `statement_timeout`). Raises `StoreConfigError` for a malformed URL
    (unknown scheme or query key, missing path or host, bad port, invalid table name) or an
    unsafe server (durability), `StoreSchemaError` for a store written by a newer release,
    and `StoreUnavailableError` when the server cannot be reached in time. Messages name
    the offending option, never a value that could be a credential.
    """
    if not isinstance(url, str) or "://" not in url:
        # Not echoed: a mistyped URL may still hold a password.
        raise StoreConfigError("store URL must look like scheme://... (a string)")
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from jumpvpn_core.stores.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from jumpvpn_core.stores.sqlite import SqliteStore, parse_sqlite_url

        return SqliteStore(parse_sqlite_url(url), timeout_s=timeout_s)
    if scheme in ("redis", "rediss"):
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
    if scheme in ("etcd", "etcds"):
        try:
            from jumpvpn_core.stores.etcd import open_etcd_store
        except ImportError as exc:  # the optional dependency is missing
            raise StoreConfigError("etcd store needs the 'etcd' extra installed") from exc
        return open_etcd_store(url, timeout_s=timeout_s)
    raise StoreConfigError(
        f"unknown store scheme {scheme!r}: use memory, sqlite, redis, postgresql or etcd"
    )
