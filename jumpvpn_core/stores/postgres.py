"""PostgreSQL store: shared by a cluster; compare-and-set by a guarded UPDATE.

Records live in one table (`?table=`, default `jumpvpn_sessions`, created if absent):
`session_id bytea primary key, version bigint not null, data bytea not null,
updated_at timestamptz default now()`. Every statement runs in autocommit; a
compare-and-set is `UPDATE ... WHERE session_id = %s AND version = %s` and succeeds iff it
changed one row, which row locking makes atomic against every other writer.

One connection per store, shared behind a lock. `connect_timeout` and the server-side
`statement_timeout` (and `lock_timeout`) come from `timeout_s`. A call that loses its
connection (server restart, `pg_terminate_backend`, network cut) raises
`StoreUnavailableError`; its outcome is unknown. The next call connects again.

URL: `postgresql://user[:password]@host[:port]/dbname[?table=name]` (`postgres://` too).
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from jumpvpn_core.stores._url import check_timeout, query_options, url_port
from jumpvpn_core.stores.base import StoreConfigError, StoredSession, StoreUnavailableError

__all__ = ["DEFAULT_TABLE", "PostgresStore", "open_postgres_store", "validate_table_name"]

DEFAULT_TABLE = "jumpvpn_sessions"
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SCAN_BATCH = 500


def validate_table_name(name: str) -> str:
    """`name` if it is a plain SQL identifier (letters, digits, `_`; at most 63), else
    `StoreConfigError`."""
    if not _TABLE_NAME.fullmatch(name):
        raise StoreConfigError(
            f"invalid table name {name!r}: use letters, digits and _ (at most 63, "
            "not starting with a digit)"
        )
    return name


class PostgresStore:
    """`SessionStore` on a PostgreSQL table. Thread-safe (one connection behind a lock)."""

    def __init__(
        self, conninfo: str, *, table: str = DEFAULT_TABLE, timeout_s: float = 2.0
    ) -> None:
        """Connect to `conninfo` (a libpq URL or key=value string) and create `table` if it
        is absent. Raises `StoreUnavailableError` if the server cannot be reached."""
        self._timeout = check_timeout(timeout_s)
        self._conninfo = conninfo
        self._table = validate_table_name(table)
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
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._closed = False
        with self._lock:
            conn = self._connection("connect")
            try:
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {} ("
                        " session_id bytea PRIMARY KEY,"
                        " version bigint NOT NULL,"
                        " data bytea NOT NULL,"
                        " updated_at timestamptz DEFAULT now())"
                    ).format(ident)
                )
            except psycopg.errors.UniqueViolation:
                pass  # another process created the table at the same moment
            except psycopg.Error as exc:
                self._drop_connection()
                raise StoreUnavailableError(f"postgres create table failed: {exc}") from exc

    @property
    def table(self) -> str:
        """The table holding the records."""
        return self._table

    def backend_pid(self) -> int | None:
        """The server process id of the current connection, or None if not connected."""
        with self._lock:
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                return None
            return conn.info.backend_pid

    def _connection(self, what: str) -> psycopg.Connection[tuple[object, ...]]:
        """The live connection, connecting first if needed. Caller holds the lock."""
        if self._closed:
            raise StoreUnavailableError("postgres store is closed")
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self._drop_connection()
        timeout_ms = max(1, math.ceil(self._timeout * 1000))
        try:
            self._conn = psycopg.connect(
                self._conninfo,
                autocommit=True,
                connect_timeout=max(1, math.ceil(self._timeout)),
                options=f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
            )
        except psycopg.Error as exc:
            raise StoreUnavailableError(f"postgres {what}: cannot connect: {exc}") from exc
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):  # already broken: nothing to release
                conn.close()

    def _run(
        self, what: str, query: sql.Composed, params: tuple[object, ...]
    ) -> psycopg.Cursor[tuple[object, ...]]:
        """Execute `query` on the live connection (caller holds the lock)."""
        conn = self._connection(what)
        try:
            return conn.execute(query, params)
        except psycopg.Error as exc:
            if (
                conn.broken
                or conn.closed
                or isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
            ):
                self._drop_connection()
            raise StoreUnavailableError(
                f"postgres {what} failed: {type(exc).__name__}: {exc}"
            ) from exc

    def get(self, session_id: bytes) -> StoredSession | None:
        with self._lock:
            row = self._run("get", self._sql_get, (session_id,)).fetchone()
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
        with self._lock:
            rowcount = self._run(what, query, params).rowcount
        if rowcount not in (0, 1):
            raise StoreUnavailableError(f"postgres {what} changed {rowcount} rows")
        return rowcount == 1

    def scan(self) -> Iterator[StoredSession]:
        """Every record, read in batches ordered by session id (memory stays bounded)."""
        after: bytes | None = None
        while True:
            with self._lock:
                if after is None:
                    cursor = self._run("scan", self._sql_scan_first, (_SCAN_BATCH,))
                else:
                    cursor = self._run("scan", self._sql_scan, (after, _SCAN_BATCH))
                rows = cursor.fetchall()
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
        with self._lock:
            self._closed = True
            self._drop_connection()


def open_postgres_store(url: str, *, timeout_s: float = 2.0) -> PostgresStore:
    """Open `postgresql://user@host:port/db[?table=name]`, creating the table if absent."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise StoreConfigError(f"not a postgresql URL: scheme {parts.scheme!r}")
    options = query_options(parts, allowed=("table",))
    if parts.fragment:
        raise StoreConfigError("postgresql store URL must not have a #fragment")
    url_port(parts)
    if not parts.hostname:
        raise StoreConfigError("postgresql store URL has no host: use postgresql://user@host/db")
    if not parts.path.lstrip("/"):
        raise StoreConfigError("postgresql store URL names no database: use .../dbname")
    table = validate_table_name(options.get("table", DEFAULT_TABLE))
    conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))
    return PostgresStore(conninfo, table=table, timeout_s=timeout_s)
