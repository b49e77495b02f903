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

Durability (checked when the store opens; docs/deployment.md):

* `durability=fsync` (the default): the server must log every write before answering
  (`appendonly yes`, `appendfsync always`); otherwise the store refuses to open
  (`StoreConfigError`), since a restart would forget acknowledged commits.
* `durability=replicas` with `replicas=N`: every write is followed by `WAIT N`; a write
  that fewer than N replicas acknowledged within the timeout raises
  `StoreUnavailableError` (outcome unknown). At open the server must have N replicas
  connected. Redis replication stays asynchronous: see docs/deployment.md for what a
  failover can still lose.
* `durability=none`: no check (tests, development). Say so in the URL, on purpose.

A server that went backwards is refused: every write increments a revision counter
(`<prefix>@revision`) in the same script, and every read returns it. A reply whose
revision is lower than one this store object had already seen before sending the call
means the data set is older than what was acknowledged (restart without persistence,
replica promoted before it caught up, restore from a snapshot). The store raises
`StoreRolledBackError` and refuses every later call: a node must not re-accept old nonces
or re-issue versions. Recovery is an operator's decision (docs/operations.md).

URL: `redis://[user[:password]@]host[:port][/db][?prefix=jumpvpn:&durability=fsync]`, or
`rediss://` for TLS (options `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`,
`ssl_cert_reqs=required|optional|none`, `ssl_check_hostname=true|false`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from jumpvpn_core.stores._outage import OutageLog
from jumpvpn_core.stores._url import check_timeout, query_options, url_port
from jumpvpn_core.stores.base import (
    StoreConfigError,
    StoredSession,
    StoreError,
    StoreRolledBackError,
    StoreUnavailableError,
)

__all__ = ["DEFAULT_PREFIX", "DURABILITY_MODES", "RedisStore", "open_redis_store"]

DEFAULT_PREFIX = "jumpvpn:"
#: Accepted `durability=` values.
DURABILITY_MODES = ("fsync", "replicas", "none")
_REVISION_SUFFIX = "@revision"
_SCAN_COUNT = 500
_log = logging.getLogger("jumpvpn_core.stores.redis")

# Every script returns {outcome, revision}: outcome 1 (done) or 0 (refused), and the
# data set's revision counter after the call.
_CREATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
return {1, redis.call('INCR', KEYS[2])}
"""
_CAS_LUA = """
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then
  return {0, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3])
return {1, redis.call('INCR', KEYS[2])}
"""
_DELETE_LUA = """
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then
  return {0, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
redis.call('DEL', KEYS[1])
return {1, redis.call('INCR', KEYS[2])}
"""
_GET_LUA = """
local r = redis.call('HMGET', KEYS[1], 'v', 'd')
return {r[1], r[2], tonumber(redis.call('GET', KEYS[2]) or '0')}
"""

#: The compare-and-set script and its SHA1, public so benchmarks can call it bare
#: (keys: the record, then the revision counter).
CAS_SCRIPT = _CAS_LUA
CAS_SCRIPT_SHA = hashlib.sha1(_CAS_LUA.encode(), usedforsecurity=False).hexdigest()


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


class _Script:
    """A Lua script called by EVALSHA, falling back to EVAL when the server lost it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    def __call__(self, client: redis.Redis, keys: tuple[str, str], *args: bytes | str) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return client.eval(self.source, len(keys), *keys, *args)


class RedisStore:
    """`SessionStore` on a Redis server. Thread-safe (a connection pool underneath)."""

    def __init__(self, client: redis.Redis, *, prefix: str = DEFAULT_PREFIX,
                 durability: str = "fsync", replicas: int = 0,
                 wait_timeout_s: float = 2.0, owns_client: bool = False) -> None:
        """Use `client` (built with `decode_responses=False`, retries off: an existing
        client may be passed in) and key prefix; checks `durability` (see the module
        docstring) and loads the scripts now, so an unreachable or unsafe server fails
        here. `close()` closes the client only when `owns_client` (the store opened it)."""
        if not prefix:
            raise StoreConfigError("redis key prefix must not be empty")
        if durability not in DURABILITY_MODES:
            raise StoreConfigError(
                f"redis durability must be one of {', '.join(DURABILITY_MODES)}, "
                f"got {durability!r}"
            )
        if type(replicas) is not int or replicas < 0:
            raise StoreConfigError(f"redis replicas must be a count >= 0, got {replicas!r}")
        if durability == "replicas" and replicas < 1:
            raise StoreConfigError("redis durability=replicas needs replicas=N (N >= 1)")
        self._client = client
        self._owns_client = owns_client
        self._outage = OutageLog(_log, "redis")
        self._prefix = prefix
        self._revision_key = prefix + _REVISION_SUFFIX
        self._durability = durability
        self._replicas = replicas if durability != "none" else 0
        self._wait_ms = max(1, int(check_timeout(wait_timeout_s) * 1000))
        self._create = _Script(_CREATE_LUA)
        self._cas = _Script(_CAS_LUA)
        self._delete = _Script(_DELETE_LUA)
        self._get = _Script(_GET_LUA)
        self._seen = 0  # highest revision any reply has shown this store object
        self._seen_lock = threading.Lock()
        self._rolled_back = False
        with _errors("connect", self._outage):
            self._check_durability()
            for script in (self._create, self._cas, self._delete, self._get):
                loaded = client.script_load(script.source)
                if loaded != script.sha:
                    raise StoreError("redis returned an unexpected script SHA1")

    def _check_durability(self) -> None:
        if self._durability == "none":
            _log.warning("redis store opened with durability=none: a restart of the server "
                         "can lose acknowledged commits")
            return
        info = self._client.info("replication")
        if str(info.get("role", "master")) != "master":
            raise StoreConfigError("redis server is a replica: point the store at the primary")
        if self._durability == "replicas":
            connected = int(info.get("connected_slaves", 0))
            if connected < self._replicas:
                raise StoreConfigError(
                    f"redis durability=replicas needs {self._replicas} connected replicas, "
                    f"the server has {connected}"
                )
            return
        try:
            config = self._client.config_get("append*")
        except redis.exceptions.ResponseError as exc:  # CONFIG disabled (managed servers)
            raise StoreConfigError(
                "cannot check redis persistence (CONFIG GET refused): enable appendonly "
                "with appendfsync always and allow CONFIG GET, or choose durability="
                "replicas or durability=none in the store URL"
            ) from exc
        settings = {_text(key): _text(value) for key, value in dict(config).items()}
        appendonly = settings.get("appendonly", "")
        appendfsync = settings.get("appendfsync", "")
        if appendonly != "yes" or appendfsync != "always":
            raise StoreConfigError(
                f"redis server does not log every write before answering (appendonly="
                f"{appendonly}, appendfsync={appendfsync}): a restart would lose "
                "acknowledged commits. Set appendonly yes and appendfsync always, or choose "
                "durability=replicas&replicas=N or durability=none in the store URL"
            )

    @property
    def prefix(self) -> str:
        """The key prefix of this store's records."""
        return self._prefix

    @property
    def client(self) -> redis.Redis:
        """The underlying redis-py client (diagnostics, benchmarks); do not write through it."""
        return self._client

    @property
    def revision(self) -> int:
        """The highest revision of the data set this store object has seen."""
        with self._seen_lock:
            return self._seen

    @property
    def rolled_back(self) -> bool:
        """True once a reply showed the server had gone backwards (every call now fails)."""
        return self._rolled_back

    def key(self, session_id: bytes) -> str:
        """The Redis key holding `session_id`'s record."""
        return self._prefix + session_id.hex()

    def _keys(self, session_id: bytes) -> tuple[str, str]:
        return self.key(session_id), self._revision_key

    def _floor(self) -> int:
        """The revision every later reply must reach; refuses once rolled back."""
        if self._rolled_back:
            raise StoreRolledBackError(
                "redis store went backwards earlier; refusing until reopened by an operator"
            )
        with self._seen_lock:
            return self._seen

    def _observe(self, floor: int, revision: Any) -> None:
        """Check a reply's revision against what was seen before the call was sent."""
        try:
            value = int(revision)
        except (TypeError, ValueError) as exc:
            raise StoreError("redis reply carried no revision") from exc
        if value < floor:
            self._rolled_back = True
            _log.error("redis store went backwards: revision %d after %d was seen", value,
                       floor)
            raise StoreRolledBackError(
                f"redis data set went backwards (revision {value} < {floor} already seen): "
                "restarted without persistence, restored, or failed over to a lagging replica"
            )
        with self._seen_lock:
            self._seen = max(self._seen, value)

    def _write(self, script: _Script, session_id: bytes, what: str, *args: bytes | str) -> bool:
        floor = self._floor()
        with _errors(what, self._outage):
            result = script(self._client, self._keys(session_id), *args)
        outcome, revision = _pair(result)
        self._observe(floor, revision)
        if outcome and self._replicas:
            with _errors("wait", self._outage):
                acked = int(self._client.wait(self._replicas, self._wait_ms))
            if acked < self._replicas:
                raise StoreUnavailableError(
                    f"redis {what} reached {acked} of {self._replicas} replicas in time; "
                    "its outcome after a failover is unknown"
                )
        return outcome

    def get(self, session_id: bytes) -> StoredSession | None:
        floor = self._floor()
        with _errors("get", self._outage):
            reply = self._get(self._client, self._keys(session_id))
        if not isinstance(reply, list) or len(reply) != 3:
            raise StoreError("redis get script returned an unexpected reply")
        version, data, revision = reply
        self._observe(floor, revision)
        return _record(session_id, version, data)

    def create(self, session_id: bytes, version: int, data: bytes) -> bool:
        return self._write(self._create, session_id, "create", str(int(version)), data)

    def compare_and_set(
        self, session_id: bytes, expected_version: int, new_version: int, data: bytes
    ) -> bool:
        return self._write(self._cas, session_id, "compare_and_set",
                           str(int(expected_version)), str(int(new_version)), data)

    def delete(self, session_id: bytes, expected_version: int) -> bool:
        return self._write(self._delete, session_id, "delete", str(int(expected_version)))

    def time_ms(self) -> int:
        """The server's clock in Unix epoch milliseconds (the cluster's time reference)."""
        with _errors("time", self._outage):
            seconds, micros = self._client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def scan(self) -> Iterator[StoredSession]:
        """Every record under the prefix, by SCAN (each record once, even if SCAN repeats).

        A key under the prefix that is not a session id is skipped and logged; a damaged
        record is returned as it is (it will not decode, and its reader quarantines it).
        """
        self._floor()
        pattern = _glob_escape(self._prefix) + "*"
        prefix = self._prefix.encode()
        revision_key = self._revision_key.encode()
        seen: set[bytes] = set()
        cursor: int = 0
        while True:
            with _errors("scan", self._outage):
                cursor, keys = self._client.scan(cursor, match=pattern, count=_SCAN_COUNT)
                fresh: list[tuple[bytes, bytes]] = []
                for k in keys:
                    if not isinstance(k, bytes) or k in seen or k == revision_key:
                        continue
                    seen.add(k)
                    try:
                        fresh.append((k, bytes.fromhex(k[len(prefix) :].decode("ascii"))))
                    except (UnicodeDecodeError, ValueError):
                        _log.warning("skipping a redis key under the store prefix that is "
                                     "not a session id: %r", k[:80])
                pipe = self._client.pipeline(transaction=False)
                for k, _ in fresh:
                    pipe.hmget(k, ["v", "d"])
                # One key of another type (a string someone SET under the prefix) fails
                # its own HMGET with WRONGTYPE, not the page: raise_on_error=False.
                rows = pipe.execute(raise_on_error=False) if fresh else []
            for (k, session_id), row in zip(fresh, rows, strict=True):
                if isinstance(row, redis.exceptions.ResponseError):
                    _log.warning("skipping a redis key under the store prefix that is not a "
                                 "session record (%s): %r", type(row).__name__, k[:80])
                    continue
                version, data = row
                record = _record(session_id, version, data)
                if record is not None:  # deleted between SCAN and HMGET
                    yield record
            if cursor == 0:
                return

    def close(self) -> None:
        """Close the client if this store opened it (`owns_client`); a client passed in
        is left to its owner."""
        if self._owns_client:
            with _errors("close", self._outage):
                self._client.close()


@contextlib.contextmanager
def _errors(what: str, outage: OutageLog) -> Iterator[None]:
    """Turn every redis-py or socket failure into `StoreUnavailableError` (logged)."""
    try:
        yield
    except (redis.exceptions.RedisError, OSError) as exc:
        outage.failed(what, exc)
        raise StoreUnavailableError(f"redis {what} failed: {type(exc).__name__}: {exc}") from exc
    outage.answered()


def _record(session_id: bytes, version: Any, data: Any) -> StoredSession | None:
    """The record, or None if absent. A damaged hash (a field missing, a version that is
    not a number) comes back as a record that will not decode: version 0 and/or empty data,
    so its reader fails closed on it (never a crash, never a guess)."""
    if version is None and data is None:
        return None
    sound = isinstance(version, bytes) and len(version) <= 20 and version.isdigit()
    number = int(version) if sound else 0
    payload = bytes(data) if isinstance(data, bytes) else b""
    if not sound or not isinstance(data, bytes):
        _log.warning("redis record of session %s is damaged", session_id.hex())
    return StoredSession(session_id, number, payload)


def _pair(result: Any) -> tuple[bool, Any]:
    if (not isinstance(result, list) or len(result) != 2 or result[0] not in (0, 1)):
        raise StoreError(f"redis script returned {result!r}, expected [0|1, revision]")
    return bool(result[0]), result[1]


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


_CERT_REQS = {"required": "required", "optional": "optional", "none": "none"}
_BOOLEAN = {"true": True, "false": False}


def open_redis_store(url: str, *, timeout_s: float = 2.0) -> RedisStore:
    """Open `redis://` or `rediss://` (TLS) `[user[:password]@]host[:port][/db][?...]` with
    socket connect and read timeouts of `timeout_s`.

    Query options: `prefix`, `durability` (fsync | replicas | none), `replicas` (N for
    `WAIT`), and for `rediss://` `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`,
    `ssl_cert_reqs` (required | optional | none), `ssl_check_hostname` (true | false).
    """
    timeout = check_timeout(timeout_s)
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise StoreConfigError(f"not a redis URL: scheme {parts.scheme!r}")
    tls = parts.scheme == "rediss"
    tls_keys = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs",
                "ssl_check_hostname")
    options = query_options(
        parts, allowed=("prefix", "durability", "replicas", *(tls_keys if tls else ())))
    if parts.fragment:
        raise StoreConfigError("redis store URL must not have a #fragment")
    port = url_port(parts) or 6379
    host = parts.hostname
    if not host:
        raise StoreConfigError("redis store URL has no host: use redis://host:port/db")
    db_text = parts.path.lstrip("/") or "0"
    if not db_text.isdigit() or len(db_text) > 5:
        raise StoreConfigError(f"redis database must be a number, got {db_text[:20]!r}")
    prefix = options.get("prefix", DEFAULT_PREFIX)
    replicas_text = options.get("replicas", "0")
    if not replicas_text.isdigit() or len(replicas_text) > 3:
        raise StoreConfigError(f"redis replicas must be a count, got {replicas_text[:20]!r}")
    ssl: dict[str, Any] = {}
    if tls:
        ssl["ssl"] = True
        for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            if key in options:
                ssl[key] = options[key]
        if "ssl_cert_reqs" in options:
            reqs = _CERT_REQS.get(options["ssl_cert_reqs"])
            if reqs is None:
                raise StoreConfigError("ssl_cert_reqs must be required, optional or none")
            ssl["ssl_cert_reqs"] = reqs
        if "ssl_check_hostname" in options:
            check = _BOOLEAN.get(options["ssl_check_hostname"])
            if check is None:
                raise StoreConfigError("ssl_check_hostname must be true or false")
            ssl["ssl_check_hostname"] = check
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
        **ssl,
    )
    try:
        return RedisStore(client, prefix=prefix, durability=options.get("durability", "fsync"),
                          replicas=int(replicas_text), wait_timeout_s=timeout,
                          owns_client=True)
    except BaseException:
        client.close()
        raise
