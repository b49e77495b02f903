"""SQLite store: the embedded, durable default.

One file in WAL mode with `synchronous=FULL`, so a committed compare-and-set survives a
crash and readers never block the writer. Every write is a single autocommitted
statement; compare-and-set is `UPDATE ... WHERE session_id = ? AND version = ?` and
succeeds iff exactly one row changed, which SQLite makes atomic across threads and across
processes sharing the file. Within a process, one connection is shared behind a lock;
other processes wait for the file lock up to the busy timeout (`timeout_s`) and then get
`StoreUnavailableError`.

Schema: the file's `PRAGMA user_version` is its layout version (`SCHEMA_VERSION`). 0 is
the layout before versioning (layout 1), or a new file; opening it migrates it in one
`BEGIN IMMEDIATE` transaction (so processes opening it at once migrate it once); a file
of a newer layout raises `StoreSchemaError` and is never used as is.

URLs (the path after `sqlite:///` is taken as written, like SQLAlchemy does):

* `sqlite:////abs/path.db` (or `f"sqlite:///{absolute_path}"`): an absolute path;
* `sqlite:///relative.db`: relative to the working directory;
* `sqlite://:memory:`: a private in-memory database (tests only; not durable).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from jumpvpn_core.stores._outage import OutageLog
from jumpvpn_core.stores._url import check_timeout, query_options
from jumpvpn_core.stores.base import (
    StoreConfigError,
    StoredSession,
    StoreSchemaError,
    StoreUnavailableError,
)

__all__ = ["SCHEMA_VERSION", "SqliteStore", "parse_sqlite_url"]

#: The layout version this code writes and reads (`PRAGMA user_version`). 1: the table
#: alone (files from before versioning carry user_version 0); 2: adds the `updated_at`
#: index.
SCHEMA_VERSION = 2
_log = logging.getLogger("jumpvpn_core.stores.sqlite")

_MEMORY = ":memory:"
_SCAN_BATCH = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id BLOB PRIMARY KEY,
    version INTEGER NOT NULL,
    data BLOB NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID
"""
# 1 -> 2: an index on updated_at (operators find the oldest records without a scan).
_INDEX = "CREATE INDEX IF NOT EXISTS sessions_updated_at ON sessions (updated_at)"
_SQL_GET = "SELECT version, data FROM sessions WHERE session_id = ?"
_SQL_CREATE = "INSERT OR IGNORE INTO sessions (session_id, version, data) VALUES (?, ?, ?)"
_SQL_CAS = (
    "UPDATE sessions SET version = ?, data = ?,"
    " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    " WHERE session_id = ? AND version = ?"
)
_SQL_DELETE = "DELETE FROM sessions WHERE session_id = ? AND version = ?"
_SQL_SCAN = (
    "SELECT session_id, version, data FROM sessions WHERE session_id > ?"
    " ORDER BY session_id LIMIT ?"
)


def parse_sqlite_url(url: str) -> str:
    """The database path named by a `sqlite://` URL (`:memory:` for the in-memory form)."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise StoreConfigError(f"not a sqlite URL: scheme {parts.scheme!r}")
    query_options(parts, allowed=())
    if parts.fragment:
        raise StoreConfigError("sqlite store URL must not have a #fragment")
    if parts.netloc == _MEMORY and parts.path in ("", "/"):
        return _MEMORY
    if parts.netloc:
        raise StoreConfigError(
            f"sqlite store URL has a host part {parts.netloc!r}: use sqlite:///path/to/file.db"
        )
    path = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not path or path.endswith("/"):
        raise StoreConfigError("sqlite store URL names no database file: use sqlite:///file.db")
    if path == _MEMORY:
        return _MEMORY
    if "\x00" in path:
        raise StoreConfigError("sqlite store URL path contains a NUL byte")
    parent = Path(path).parent
    if not parent.is_dir():
        raise StoreConfigError(f"sqlite store directory does not exist: {str(parent)!r}")
    return path


class SqliteStore:
    """`SessionStore` on one SQLite file (or a private in-memory database)."""

    def __init__(self, path: str, *, timeout_s: float = 2.0) -> None:
        """Open (and create if absent) the database at `path`, waiting at most `timeout_s`
        for another process's lock before raising `StoreUnavailableError`."""
        timeout = check_timeout(timeout_s)
        self._path = path
        self._lock = threading.Lock()
        self._closed = False
        #: The layout this open migrated the file from (None: nothing to migrate).
        self.schema_migrated_from: int | None = None
        self._outage = OutageLog(_log, "sqlite")
        try:
            conn = sqlite3.connect(
                path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot open sqlite store: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if path != _MEMORY:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreUnavailableError(f"sqlite store could not enter WAL mode ({mode})")
            conn.execute("PRAGMA synchronous = FULL")
            self.schema_migrated_from = _migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            _log.warning("cannot initialise sqlite store: %s", type(exc).__name__)
            raise StoreUnavailableError(f"cannot initialise sqlite store: {exc}") from exc
        except (StoreUnavailableError, StoreSchemaError):
            conn.close()
            raise
        self._conn = conn
        if self.schema_migrated_from is not None:
            _log.warning("sqlite store %s migrated from schema %d to %d", path,
                         self.schema_migrated_from, SCHEMA_VERSION)

    def _failed(self, what: str, exc: sqlite3.Error) -> StoreUnavailableError:
        self._outage.failed(what, exc)
        return StoreUnavailableError(f"sqlite {what} failed: {exc}")

    @property
    def path(self) -> str:
        """The database file (or `:memory:`)."""
        return self._path

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreUnavailableError("sqlite store is closed")
        return self._conn

    def get(self, session_id: bytes) -> StoredSession | None:
        with self._lock:
            try:
                row = self._connection().execute(_SQL_GET, (session_id,)).fetchone()
            except sqlite3.Error as exc:
                raise self._failed("get", exc) from exc
        self._outage.answered()
        if row is None:
            return None
        return StoredSession(session_id, int(row[0]), bytes(row[1]))

    def create(self, session_id: bytes, version: int, data: bytes) -> bool:
        return self._write(_SQL_CREATE, (session_id, version, data), "create")

    def compare_and_set(
        self, session_id: bytes, expected_version: int, new_version: int, data: bytes
    ) -> bool:
        params = (new_version, data, session_id, expected_version)
        return self._write(_SQL_CAS, params, "compare_and_set")

    def delete(self, session_id: bytes, expected_version: int) -> bool:
        return self._write(_SQL_DELETE, (session_id, expected_version), "delete")

    def _write(self, sql: str, params: tuple[bytes | int, ...], what: str) -> bool:
        with self._lock:
            try:
                cursor = self._connection().execute(sql, params)
            except sqlite3.Error as exc:
                raise self._failed(what, exc) from exc
        self._outage.answered()
        if cursor.rowcount not in (0, 1):
            raise StoreUnavailableError(f"sqlite {what} changed {cursor.rowcount} rows")
        return cursor.rowcount == 1

    def scan(self) -> Iterator[StoredSession]:
        """Every record, read in batches ordered by session id (memory stays bounded)."""
        after = b""
        while True:
            with self._lock:
                try:
                    rows = self._connection().execute(_SQL_SCAN, (after, _SCAN_BATCH)).fetchall()
                except sqlite3.Error as exc:
                    raise self._failed("scan", exc) from exc
            for sid, version, data in rows:
                yield StoredSession(bytes(sid), int(version), bytes(data))
            if len(rows) < _SCAN_BATCH:
                return
            after = bytes(rows[-1][0])

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.close()
            except sqlite3.Error as exc:  # closing a broken handle must not hide the close
                raise StoreUnavailableError(f"sqlite close failed: {exc}") from exc


def _migrate(conn: sqlite3.Connection) -> int | None:
    """Bring the file to `SCHEMA_VERSION`; the layout it was migrated from, or None when
    nothing changed (already current, or a new file)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise StoreSchemaError(
                f"sqlite store file has schema {found}, newer than this code's "
                f"{SCHEMA_VERSION}: upgrade jumpvpn-core before opening it"
            )
        if found == SCHEMA_VERSION:
            conn.execute("COMMIT")
            return None
        exists = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sessions'"
        ).fetchone()[0]
        if found not in (0, 1):
            raise StoreSchemaError(f"sqlite store file has an unknown schema {found}")
        conn.execute(_SCHEMA)
        conn.execute(_INDEX)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):  # the failure may have ended it already
            conn.execute("ROLLBACK")
        raise
    return 1 if exists else None
