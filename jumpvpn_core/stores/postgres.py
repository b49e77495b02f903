"""PostgreSQL store: shared by a cluster; compare-and-set by a guarded UPDATE.

Records live in one table (`?table=`, default `jumpvpn_sessions`, created if absent):
`session_id bytea primary key, version bigint not null, data bytea not null,
updated_at timestamptz default now()`. Every statement runs on its own (autocommit, or
committed when the pool takes its connection back); a compare-and-set is
`UPDATE ... WHERE session_id = %s AND version = %s` and succeeds iff it changed one row,
which row locking makes atomic against every other writer.

Connections: a store opened from a URL owns a `psycopg_pool.ConnectionPool`
(`?pool_size=N`, default 4; at least one connection is kept open) whose connections carry
`connect_timeout`, `statement_timeout` and `lock_timeout` from `timeout_s`. An existing
pool (`pool=`) or connection (`connection=`, autocommit, used behind a lock) may be passed
in instead: its own settings (timeouts included) are kept, and the store never closes what
it did not open. A call that loses its connection (server restart, `pg_terminate_backend`,
network cut) raises `StoreUnavailableError`; its outcome is unknown. A pool replaces the
broken connection; a passed connection stays broken (its owner reconnects).

Schema (`SCHEMA_VERSION`): the table `jumpvpn_schema` holds one row per store table with
the layout version it is in. Opening a table of an older layout migrates it, in one
transaction under an advisory lock (docs/operations.md lists the steps); opening a table
whose layout is newer than this code knows raises `StoreSchemaError` (never used as is).

Durability (checked when the store opens; docs/deployment.md): the server's
`synchronous_commit` and `synchronous_standby_names` as this store's sessions see them are
read and exposed (`synchronous_commit`, `synchronous_standby_names`) and logged.

* `durability=fsync` (default): refuses `synchronous_commit=off` (`StoreConfigError`): a
  crash would lose commits the store had acknowledged.
* `durability=replicas`: also needs `synchronous_standby_names` set and
  `synchronous_commit` `on`, `remote_write` or `remote_apply`: an acknowledged commit is
  on a synchronous standby before the reply.
* `durability=none`: no check (tests, development). Say so in the URL, on purpose.

URL: `postgresql://user[:password]@host[:port]/dbname[?table=name&pool_size=N&durability=
fsync|replicas|none&sslmode=...&sslrootcert=...&sslcert=...&sslkey=...]` (`postgres://`
too). The `ssl*` options go to libpq as they are.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from jumpvpn_core.stores._outage import OutageLog
from jumpvpn_core.stores._url import check_timeout, query_options, url_port
from jumpvpn_core.stores.base import (
    StoreConfigError,
    StoredSession,
    StoreSchemaError,
    StoreUnavailableError,
)

__all__ = [
    "DEFAULT_POOL_SIZE",
    "DEFAULT_TABLE",
    "DURABILITY_MODES",
    "SCHEMA_TABLE",
    "SCHEMA_VERSION",
    "TLS_OPTIONS",
    "PostgresStore",
    "open_postgres_store",
    "validate_table_name",
]

DEFAULT_TABLE = "jumpvpn_sessions"
DEFAULT_POOL_SIZE = 4
_MAX_POOL_SIZE = 100
#: The table holding each store table's layout version.
SCHEMA_TABLE = "jumpvpn_schema"
#: The layout version this code writes and reads. 1: the table without a version row
#: (before versioning); 2: adds the `updated_at` index and the version row.
SCHEMA_VERSION = 2
#: Accepted `durability=` values.
DURABILITY_MODES = ("fsync", "replicas", "none")
#: URL query options handed to libpq unchanged.
TLS_OPTIONS = ("sslmode", "sslrootcert", "sslcert", "sslkey")
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_SYNC_STANDBY_MODES = ("on", "remote_write", "remote_apply")
# pg_advisory_xact_lock key serialising schema work of every store table ("jump").
_SCHEMA_LOCK = 0x6A756D70
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_MAX_IDENTIFIER = 63
_INDEX_SUFFIX = "_updated_at"
_SCAN_BATCH = 500
_log = logging.getLogger("jumpvpn_core.stores.postgres")

_T = TypeVar("_T")
Connection = psycopg.Connection[tuple[object, ...]]
Cursor = psycopg.Cursor[tuple[object, ...]]


def validate_table_name(name: str) -> str:
    """`name` if it is a plain SQL identifier (letters, digits, `_`; at most 63), else
    `StoreConfigError`."""
    if not _TABLE_NAME.fullmatch(name):
        raise StoreConfigError(
            f"invalid table name {name!r}: use letters, digits and _ (at most 63, "
            "not starting with a digit)"
        )
    return name


def _index_name(table: str) -> str:
    # `<table>_updated_at`. PostgreSQL cuts identifiers at 63 bytes, and cutting the suffix
    # could give the table's own name (a 63-character table: CREATE INDEX IF NOT EXISTS
    # would then skip the index) or another table's: a long name keeps a prefix of the
    # table and a digest of the whole name instead.
    name = table + _INDEX_SUFFIX
    if len(name) <= _MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(table.encode()).hexdigest()[:8]
    keep = _MAX_IDENTIFIER - len(_INDEX_SUFFIX) - len(digest) - 1
    return f"{table[:keep]}_{digest}{_INDEX_SUFFIX}"


class PostgresStore:
    """`SessionStore` on a PostgreSQL table. Thread-safe (a pool, or one passed connection
    behind a lock)."""

    def __init__(
        self,
        conninfo: str | None = None,
        *,
        table: str = DEFAULT_TABLE,
        timeout_s: float = 2.0,
        pool: ConnectionPool[Connection] | None = None,
        connection: Connection | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        durability: str = "fsync",
    ) -> None:
        """Use exactly one of `conninfo` (a libpq URL or key=value string: the store opens
        and owns a pool of up to `pool_size` connections), `pool` or `connection` (passed
        in: used, never closed). Migrates or creates `table`, and checks `durability`.
        Raises `StoreUnavailableError` if the server cannot be reached, `StoreConfigError`
        for a bad argument or an unsafe server, `StoreSchemaError` for a newer layout."""
        self._timeout = check_timeout(timeout_s)
        if sum(x is not None for x in (conninfo, pool, connection)) != 1:
            raise StoreConfigError("give exactly one of conninfo, pool or connection")
        if type(pool_size) is not int or not 1 <= pool_size <= _MAX_POOL_SIZE:
            raise StoreConfigError(f"pool_size must be 1..{_MAX_POOL_SIZE}, got {pool_size!r}")
        if durability not in DURABILITY_MODES:
            raise StoreConfigError(
                f"postgres durability must be one of {', '.join(DURABILITY_MODES)}"
            )
        if connection is not None and not connection.autocommit:
            raise StoreConfigError("a connection passed to the postgres store must be in "
                                   "autocommit mode")
        self._table = validate_table_name(table)
        self._durability = durability
        ident = sql.Identifier(table)
        self._sql_get = sql.SQL("SELECT version, data FROM {} WHERE session_id = %s").format(ident)
        self._sql_create = sql.SQL(
            "INSERT INTO {} (session_id, version, data) VALUES (%s, %s, %s)"
            " ON CONFLICT (session_id) DO NOTHING"
        ).format(ident)
        self._sql_cas = sql.SQL(
            "UPDATE {} SET version = %s, data = %s, updated_at = now()"
            " WHERE session_id = %s AND version = %s"
        ).format(ident)
        self._sql_delete = sql.SQL("DELETE FROM {} WHERE session_id = %s AND version = %s").format(
            ident
        )
        self._sql_scan = sql.SQL(
            "SELECT session_id, version, data FROM {} WHERE session_id > %s"
            " ORDER BY session_id LIMIT %s"
        ).format(ident)
        self._sql_scan_first = sql.SQL(
            "SELECT session_id, version, data FROM {} ORDER BY session_id LIMIT %s"
        ).format(ident)
        self._lock = threading.Lock()
        self._outage = OutageLog(_log, "postgres")
        self._closed = False
        self._connection = connection
        self._owns_pool = conninfo is not None
        if conninfo is not None:
            pool = self._open_pool(conninfo, pool_size)
        self._pool = pool
        self.synchronous_commit = ""
        self.synchronous_standby_names = ""
        self.schema_migrated_from: int | None = None
        try:
            self._prepare()
        except BaseException:
            self.close()
            raise

    def _open_pool(self, conninfo: str, pool_size: int) -> ConnectionPool[Connection]:
        timeout_ms = max(1, math.ceil(self._timeout * 1000))
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, math.ceil(self._timeout)),
            "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
        }
        try:  # one direct attempt first: the pool would only report a timeout, not why
            psycopg.connect(conninfo, **kwargs).close()
        except psycopg.Error as exc:
            self._outage.failed("connect", exc)
            raise StoreUnavailableError(
                f"postgres connect: cannot connect: {type(exc).__name__}: {exc}"
            ) from exc
        pool: ConnectionPool[Connection] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs=kwargs,
            timeout=self._timeout,
            open=False,
            name=f"jumpvpn-{self._table}",
        )
        try:
            pool.open(wait=True, timeout=self._timeout)
        except psycopg.Error as exc:
            with contextlib.suppress(psycopg.Error):
                pool.close(timeout=self._timeout)
            raise StoreUnavailableError(
                f"postgres connect: cannot connect: {type(exc).__name__}: {exc}"
            ) from exc
        return pool

    def _prepare(self) -> None:
        """Schema and durability checks at open (one transaction for the schema)."""

        def work(conn: Connection) -> tuple[str, str]:
            with conn.transaction():
                self.schema_migrated_from = _migrate(conn, self._table)
            commit = conn.execute("SHOW synchronous_commit").fetchone()
            standbys = conn.execute("SHOW synchronous_standby_names").fetchone()
            assert commit is not None
            assert standbys is not None
            return str(commit[0]), str(standbys[0])

        commit, standbys = self._run("open", work)
        self.synchronous_commit, self.synchronous_standby_names = commit, standbys
        if self.schema_migrated_from is not None:
            _log.warning("postgres table %s migrated from schema %d to %d", self._table,
                         self.schema_migrated_from, SCHEMA_VERSION)
        _log.info("postgres store on table %s: synchronous_commit=%s, "
                  "synchronous_standby_names=%r, durability=%s", self._table, commit,
                  standbys, self._durability)
        if self._durability == "none":
            _log.warning("postgres store opened with durability=none: its settings are not "
                         "checked")
            return
        if commit == "off":
            raise StoreConfigError(
                "postgres synchronous_commit is off: a server crash would lose acknowledged "
                "commits. Set synchronous_commit to on (or remote_apply with synchronous "
                "standbys), or choose durability=none in the store URL"
            )
        if self._durability == "replicas" and (
            not standbys.strip() or commit not in _SYNC_STANDBY_MODES
        ):
            raise StoreConfigError(
                f"postgres durability=replicas needs synchronous_standby_names set and "
                f"synchronous_commit on, remote_write or remote_apply (the server has "
                f"synchronous_commit={commit}, synchronous_standby_names="
                f"{'set' if standbys.strip() else 'empty'})"
            )

    @property
    def table(self) -> str:
        """The table holding the records."""
        return self._table

    @property
    def pool(self) -> ConnectionPool[Connection] | None:
        """The connection pool in use (None when a single connection was passed in)."""
        return self._pool

    def backend_pid(self) -> int | None:
        """The server process id of a connection this store would use now, or None."""
        try:
            return self._run("backend_pid", lambda conn: conn.info.backend_pid)
        except StoreUnavailableError:
            return None

    @contextlib.contextmanager
    def _borrow(self) -> Iterator[Connection]:
        if self._closed:
            raise StoreUnavailableError("postgres store is closed")
        if self._pool is not None:
            with self._pool.connection(timeout=self._timeout) as conn:
                yield conn
            return
        assert self._connection is not None
        with self._lock:
            if self._connection.closed or self._connection.broken:
                raise StoreUnavailableError(
                    "postgres connection passed to the store is closed or broken"
                )
            yield self._connection

    def _run(self, what: str, work: Callable[[Connection], _T]) -> _T:
        """`work(connection)` on a borrowed connection; every driver error becomes
        `StoreUnavailableError` (outcome unknown for a write)."""
        try:
            with self._borrow() as conn:
                result = work(conn)
        except psycopg.Error as exc:
            self._outage.failed(what, exc)
            raise StoreUnavailableError(
                f"postgres {what} failed: {type(exc).__name__}: {exc}"
            ) from exc
        self._outage.answered()
        return result

    def _execute(self, what: str, query: sql.Composed, params: tuple[object, ...],
                 read: Callable[[Cursor], _T]) -> _T:
        return self._run(what, lambda conn: read(conn.execute(query, params)))

    def time_ms(self) -> int:
        """The server's clock in Unix epoch milliseconds (`clock_timestamp()`): the
        cluster's time reference for `Gateway.check_clock`."""

        def read(conn: Connection) -> int:
            row = conn.execute(
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint").fetchone()
            assert row is not None
            return int(str(row[0]))

        return self._run("time", read)

    def get(self, session_id: bytes) -> StoredSession | None:
        row = self._execute("get", self._sql_get, (session_id,), lambda c: c.fetchone())
        if row is None:
            return None
        version, data = row
        assert isinstance(version, int)
        assert isinstance(data, bytes)
        return StoredSession(session_id, version, data)

    def create(self, session_id: bytes, version: int, data: bytes) -> bool:
        return self._write("create", self._sql_create, (session_id, version, data))

    def compare_and_set(
        self, session_id: bytes, expected_version: int, new_version: int, data: bytes
    ) -> bool:
        params = (new_version, data, session_id, expected_version)
        return self._write("compare_and_set", self._sql_cas, params)

    def delete(self, session_id: bytes, expected_version: int) -> bool:
        return self._write("delete", self._sql_delete, (session_id, expected_version))

    def _write(self, what: str, query: sql.Composed, params: tuple[object, ...]) -> bool:
        rowcount = self._execute(what, query, params, lambda c: c.rowcount)
        if rowcount not in (0, 1):
            raise StoreUnavailableError(f"postgres {what} changed {rowcount} rows")
        return rowcount == 1

    def scan(self) -> Iterator[StoredSession]:
        """Every record, read in batches ordered by session id (memory stays bounded)."""
        after: bytes | None = None
        while True:
            if after is None:
                rows = self._execute("scan", self._sql_scan_first, (_SCAN_BATCH,),
                                     lambda c: c.fetchall())
            else:
                rows = self._execute("scan", self._sql_scan, (after, _SCAN_BATCH),
                                     lambda c: c.fetchall())
            for sid, version, data in rows:
                assert isinstance(sid, bytes)
                assert isinstance(version, int)
                assert isinstance(data, bytes)
                yield StoredSession(sid, version, data)
            if len(rows) < _SCAN_BATCH:
                return
            last = rows[-1][0]
            assert isinstance(last, bytes)
            after = last

    def close(self) -> None:
        """Stop using the connections; closes the pool only if this store opened it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._owns_pool and self._pool is not None:
            with contextlib.suppress(psycopg.Error):  # already broken: nothing to release
                self._pool.close(timeout=self._timeout)


def _migrate(conn: Connection, table: str) -> int | None:
    """Bring `table` to `SCHEMA_VERSION` inside the caller's transaction; the version it
    was migrated from, or None when nothing had to change (or the table was new)."""
    ident = sql.Identifier(table)
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))

    def exists(name: str) -> bool:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                           (sql.Identifier(name).as_string(conn),)).fetchone()
        return row is not None and bool(row[0])

    # Existence first: CREATE ... IF NOT EXISTS needs CREATE on the schema even when the
    # table is there, and a role trusted with its table only must still open a current one.
    versioned = exists(SCHEMA_TABLE)
    row = conn.execute(
        sql.SQL("SELECT version FROM {} WHERE store_table = %s").format(
            sql.Identifier(SCHEMA_TABLE)), (table,)).fetchone() if versioned else None
    present = exists(table)
    if row is None:
        found = 1 if present else None  # a table without a version row is layout 1
    else:
        found = int(str(row[0]))
        if not present:
            found = None  # the table was dropped; its row is stale
    if found is not None and found > SCHEMA_VERSION:
        raise StoreSchemaError(
            f"postgres table {table} has schema {found}, newer than this code's "
            f"{SCHEMA_VERSION}: upgrade jumpvpn-core before opening it"
        )
    if found is not None and found < 1:
        raise StoreSchemaError(f"postgres table {table} has an invalid schema version")
    if found == SCHEMA_VERSION:
        return None
    if not versioned:
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (store_table text PRIMARY KEY,"
            " version integer NOT NULL, changed_at timestamptz NOT NULL DEFAULT now())"
        ).format(sql.Identifier(SCHEMA_TABLE)))
    # Layout 1 (every deployment before versioning), and the start of a new table.
    conn.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} ("
        " session_id bytea PRIMARY KEY,"
        " version bigint NOT NULL,"
        " data bytea NOT NULL,"
        " updated_at timestamptz DEFAULT now())"
    ).format(ident))
    # 1 -> 2: an index on updated_at (operators find the oldest records without a scan).
    conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (updated_at)").format(
        sql.Identifier(_index_name(table)), ident))
    conn.execute(sql.SQL(
        "INSERT INTO {} (store_table, version) VALUES (%s, %s) ON CONFLICT (store_table)"
        " DO UPDATE SET version = EXCLUDED.version, changed_at = now()"
    ).format(sql.Identifier(SCHEMA_TABLE)), (table, SCHEMA_VERSION))
    return found


def open_postgres_store(url: str, *, timeout_s: float = 2.0) -> PostgresStore:
    """Open `postgresql://user@host:port/db[?table=name&...]` (see the module docstring),
    migrating or creating the table."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise StoreConfigError(f"not a postgresql URL: scheme {parts.scheme!r}")
    options = query_options(
        parts, allowed=("table", "pool_size", "durability", *TLS_OPTIONS))
    if parts.fragment:
        raise StoreConfigError("postgresql store URL must not have a #fragment")
    url_port(parts)
    if not parts.hostname:
        raise StoreConfigError("postgresql store URL has no host: use postgresql://user@host/db")
    if not parts.path.lstrip("/"):
        raise StoreConfigError("postgresql store URL names no database: use .../dbname")
    table = validate_table_name(options.get("table", DEFAULT_TABLE))
    size_text = options.get("pool_size", str(DEFAULT_POOL_SIZE))
    if not size_text.isdigit() or len(size_text) > 3:
        raise StoreConfigError(f"pool_size must be a count 1..{_MAX_POOL_SIZE}")
    if options.get("sslmode", "prefer") not in _SSL_MODES:
        raise StoreConfigError(f"sslmode must be one of {', '.join(_SSL_MODES)}")
    for key in TLS_OPTIONS:
        if key in options and not options[key]:
            raise StoreConfigError(f"query option {key!r} is empty")
    libpq = {key: options[key] for key in TLS_OPTIONS if key in options}
    conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(libpq), ""))
    return PostgresStore(conninfo, table=table, timeout_s=timeout_s,
                         pool_size=int(size_text),
                         durability=options.get("durability", "fsync"))
