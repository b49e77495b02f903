"""Redis store: shared by a cluster; compare-and-set by a Lua script.

A record is a hash under `<prefix><session id hex>` with two fields: `v` (the version in
decimal) and `d` (the opaque data). Create, compare-and-set and delete each run as one Lua
script, so the version check and the write are atomic on the server. Scripts are loaded
once at open and called by EVALSHA; if the server has lost them (restart, SCRIPT FLUSH,
failover) the call falls back to EVAL, which also re-caches them.

redis-py's automatic retries are switched off on purpose: a write whose reply was lost may
or may not have been applied, and retrying it could turn a won compare-and-set into a
reported loss. Such a call raises `StoreUnavailableError` instead: the caller knows the
outcome is unknown and re-reads. A later call opens a fresh connection.

URL: `redis://[user[:password]@]host[:port][/db][?prefix=jumpvpn:]`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from jumpvpn_core.stores._url import check_timeout, query_options, url_port
from jumpvpn_core.stores.base import (
    StoreConfigError,
    StoredSession,
    StoreError,
    StoreUnavailableError,
)

__all__ = ["DEFAULT_PREFIX", "RedisStore", "open_redis_store"]

DEFAULT_PREFIX = "jumpvpn:"
_SCAN_COUNT = 500

_CREATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
return 1
"""
_CAS_LUA = """
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3])
return 1
"""
_DELETE_LUA = """
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

#: The compare-and-set script and its SHA1, public so benchmarks can call it bare.
CAS_SCRIPT = _CAS_LUA
CAS_SCRIPT_SHA = hashlib.sha1(_CAS_LUA.encode(), usedforsecurity=False).hexdigest()


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


class _Script:
    """A Lua script called by EVALSHA, falling back to EVAL when the server lost it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def __call__(self, client: redis.Redis, key: str, *args: bytes | str) -> Any:
        try:
            return client.evalsha(self.sha, 1, key, *args)
        except redis.exceptions.NoScriptError:
            return client.eval(self.source, 1, key, *args)


class RedisStore:
    """`SessionStore` on a Redis server. Thread-safe (a connection pool underneath)."""

    def __init__(self, client: redis.Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        """Use `client` (built with `decode_responses=False`, retries off) and key prefix;
        loads the scripts now, so an unreachable server fails here."""
        if not prefix:
            raise StoreConfigError("redis key prefix must not be empty")
        self._client = client
        self._prefix = prefix
        self._create = _Script(_CREATE_LUA)
        self._cas = _Script(_CAS_LUA)
        self._delete = _Script(_DELETE_LUA)
        with _errors("connect"):
            for script in (self._create, self._cas, self._delete):
                loaded = client.script_load(script.source)
                if loaded != script.sha:
                    raise StoreError("redis returned an unexpected script SHA1")

    @property
    def prefix(self) -> str:
        """The key prefix of this store's records."""
        return self._prefix

    @property
    def client(self) -> redis.Redis:
        """The underlying redis-py client (diagnostics, benchmarks); do not write through it."""
        return self._client

    def key(self, session_id: bytes) -> str:
        """The Redis key holding `session_id`'s record."""
        return self._prefix + session_id.hex()

    def get(self, session_id: bytes) -> StoredSession | None:
        with _errors("get"):
            version, data = self._client.hmget(self.key(session_id), ["v", "d"])
        return _record(session_id, version, data)

    def create(self, session_id: bytes, version: int, data: bytes) -> bool:
        with _errors("create"):
            result = self._create(self._client, self.key(session_id), str(int(version)), data)
        return _flag(result)

    def compare_and_set(
        self, session_id: bytes, expected_version: int, new_version: int, data: bytes
    ) -> bool:
        key = self.key(session_id)
        with _errors("compare_and_set"):
            result = self._cas(
                self._client, key, str(int(expected_version)), str(int(new_version)), data
            )
        return _flag(result)

    def delete(self, session_id: bytes, expected_version: int) -> bool:
        with _errors("delete"):
            result = self._delete(self._client, self.key(session_id), str(int(expected_version)))
        return _flag(result)

    def scan(self) -> Iterator[StoredSession]:
        """Every record under the prefix, by SCAN (each record once, even if SCAN repeats)."""
        pattern = _glob_escape(self._prefix) + "*"
        prefix = self._prefix.encode()
        seen: set[bytes] = set()
        cursor: int = 0
        while True:
            with _errors("scan"):
                cursor, keys = self._client.scan(cursor, match=pattern, count=_SCAN_COUNT)
                fresh = [k for k in keys if isinstance(k, bytes) and k not in seen]
                pipe = self._client.pipeline(transaction=False)
                for k in fresh:
                    pipe.hmget(k, ["v", "d"])
                rows = pipe.execute() if fresh else []
            for k, (version, data) in zip(fresh, rows, strict=True):
                seen.add(k)
                try:
                    session_id = bytes.fromhex(k[len(prefix) :].decode("ascii"))
                except (UnicodeDecodeError, ValueError) as exc:
                    raise StoreError(
                        f"redis key under the store prefix is not ours: {k!r}"
                    ) from exc
                record = _record(session_id, version, data)
                if record is not None:  # deleted between SCAN and HMGET
                    yield record
            if cursor == 0:
                return

    def close(self) -> None:
        with _errors("close"):
            self._client.close()


@contextlib.contextmanager
def _errors(what: str) -> Iterator[None]:
    """Turn every redis-py or socket failure into `StoreUnavailableError`."""
    try:
        yield
    except (redis.exceptions.RedisError, OSError) as exc:
        raise StoreUnavailableError(f"redis {what} failed: {type(exc).__name__}: {exc}") from exc


def _record(session_id: bytes, version: Any, data: Any) -> StoredSession | None:
    if version is None and data is None:
        return None
    if not isinstance(version, bytes) or not isinstance(data, bytes):
        raise StoreError(f"redis record for session {session_id.hex()} is incomplete")
    try:
        return StoredSession(session_id, int(version), bytes(data))
    except ValueError as exc:
        raise StoreError(f"redis record for session {session_id.hex()} has a bad version") from exc


def _flag(result: Any) -> bool:
    if result not in (0, 1):
        raise StoreError(f"redis script returned {result!r}, expected 0 or 1")
    return bool(result)


def open_redis_store(url: str, *, timeout_s: float = 2.0) -> RedisStore:
    """Open `redis://[user[:password]@]host[:port][/db][?prefix=...]` with socket connect
    and read timeouts of `timeout_s`."""
    timeout = check_timeout(timeout_s)
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise StoreConfigError(f"not a redis URL: scheme {parts.scheme!r}")
    options = query_options(parts, allowed=("prefix",))
    if parts.fragment:
        raise StoreConfigError("redis store URL must not have a #fragment")
    port = url_port(parts) or 6379
    host = parts.hostname
    if not host:
        raise StoreConfigError("redis store URL has no host: use redis://host:port/db")
    db_text = parts.path.lstrip("/") or "0"
    if not db_text.isdigit():
        raise StoreConfigError(f"redis database must be a number, got {db_text!r}")
    prefix = options.get("prefix", DEFAULT_PREFIX)
    client = redis.Redis(
        host=host,
        port=port,
        db=int(db_text),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=False,
    )
    try:
        return RedisStore(client, prefix=prefix)
    except BaseException:
        client.close()
        raise
