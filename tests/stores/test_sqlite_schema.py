"""SQLite store: the file's layout version (`PRAGMA user_version`), migration of a file
from before versioning, and refusal of a file from a newer release."""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from jumpvpn_core.stores import StoreSchemaError, StoreUnavailableError, open_store
from jumpvpn_core.stores.sqlite import SCHEMA_VERSION, SqliteStore

# The layout every file had before the store kept a version (user_version 0).
_LAYOUT_1 = """
CREATE TABLE sessions (
    session_id BLOB PRIMARY KEY,
    version INTEGER NOT NULL,
    data BLOB NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID
"""


def _inspect(path: Path) -> tuple[int, bool]:
    """(user_version, whether the updated_at index exists)."""
    conn = sqlite3.connect(path)
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        index = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                             " AND name = 'sessions_updated_at'").fetchone()[0]
    finally:
        conn.close()
    return version, index == 1


def _layout_1(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(_LAYOUT_1)
        conn.execute("INSERT INTO sessions (session_id, version, data) VALUES (?, 5, ?)",
                     (b"\x01" * 16, b"old"))
        conn.commit()
    finally:
        conn.close()


def test_new_file_is_created_at_the_current_schema(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    assert isinstance(store, SqliteStore)
    store.close()
    assert store.schema_migrated_from is None
    assert _inspect(tmp_path / "s.db") == (SCHEMA_VERSION, True)


def test_memory_database_gets_the_current_schema() -> None:
    store = open_store("sqlite://:memory:")
    assert isinstance(store, SqliteStore)
    assert store.create(b"\x00" * 16, 0, b"x")
    store.close()


def test_file_of_schema_1_is_migrated_with_its_records(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _layout_1(path)
    assert _inspect(path) == (0, False)
    store = open_store(f"sqlite:///{path}")
    assert isinstance(store, SqliteStore)
    try:
        assert store.schema_migrated_from == 1
        record = store.get(b"\x01" * 16)
        assert record is not None
        assert (record.version, record.data) == (5, b"old")
        assert store.compare_and_set(b"\x01" * 16, 5, 6, b"new")
    finally:
        store.close()
    assert _inspect(path) == (SCHEMA_VERSION, True)
    again = SqliteStore(str(path))
    again.close()
    assert again.schema_migrated_from is None


@pytest.mark.parametrize("newer", [SCHEMA_VERSION + 1, 1000])
def test_file_of_a_newer_schema_is_refused_and_left_alone(tmp_path: Path, newer: int) -> None:
    path = tmp_path / "new.db"
    open_store(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {newer}")
    conn.close()
    with pytest.raises(StoreSchemaError, match=f"schema {newer}, newer than"):
        open_store(f"sqlite:///{path}")
    assert _inspect(path)[0] == newer


def test_file_of_an_unknown_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = -3")
    conn.close()
    with pytest.raises(StoreSchemaError, match="unknown schema -3"):
        open_store(f"sqlite:///{path}")


def _open_and_report(url: str) -> int:
    store = open_store(url)
    assert isinstance(store, SqliteStore)
    store.close()
    return store.schema_migrated_from or 0


def test_processes_opening_one_old_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    _layout_1(path)
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        outcomes = pool.map(_open_and_report, [f"sqlite:///{path}"] * 3)
    assert sorted(outcomes) == [0, 0, 1]
    assert _inspect(path) == (SCHEMA_VERSION, True)


class _NoWalConnection:
    """A real connection whose `PRAGMA journal_mode = WAL` answers as SQLite does when it
    cannot change the mode (a file system without shared memory, a VFS without WAL): with
    the mode it kept."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.closed = False

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if " ".join(sql.upper().split()) == "PRAGMA JOURNAL_MODE = WAL":
            return self.conn.execute("SELECT 'delete'")
        return self.conn.execute(sql, *args)

    def close(self) -> None:
        self.closed = True
        self.conn.close()


def test_file_that_cannot_enter_wal_mode_is_refused_and_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without WAL a committed compare-and-set is not promised to survive a crash the way
    the store says: it refuses to open, names the mode it got, and keeps no connection."""
    opened: list[_NoWalConnection] = []
    real_connect = sqlite3.connect

    def connect(path: str, **kwargs: Any) -> _NoWalConnection:
        wrapper = _NoWalConnection(real_connect(path, **kwargs))
        opened.append(wrapper)
        return wrapper

    monkeypatch.setattr("jumpvpn_core.stores.sqlite.sqlite3.connect", connect)
    with pytest.raises(StoreUnavailableError,
                       match=r"^sqlite store could not enter WAL mode \(delete\)$"):
        open_store(f"sqlite:///{tmp_path / 'nowal.db'}")
    assert len(opened) == 1
    assert opened[0].closed


def test_file_marked_schema_1_is_migrated_and_the_migration_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file whose user_version says 1 (the first layout, marked) migrates like an unmarked
    one, and the open says so at WARNING with the file and both versions."""
    path = tmp_path / "marked.db"
    _layout_1(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with caplog.at_level(logging.WARNING, logger="jumpvpn_core.stores.sqlite"):
        store = SqliteStore(str(path))
    store.close()
    assert store.schema_migrated_from == 1
    assert _inspect(path) == (SCHEMA_VERSION, True)
    assert [r.getMessage() for r in caplog.records] == [
        f"sqlite store {path} migrated from schema 1 to {SCHEMA_VERSION}"]


def test_open_while_another_writer_holds_the_file_is_unavailable_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The schema check needs the write lock: held elsewhere past the timeout, the open
    fails as unavailable (the failed BEGIN leaves nothing to roll back) and logs the
    error's type."""
    path = tmp_path / "busy.db"
    open_store(f"sqlite:///{path}").close()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with caplog.at_level(logging.WARNING, logger="jumpvpn_core.stores.sqlite"), \
                pytest.raises(StoreUnavailableError,
                              match=r"^cannot initialise sqlite store: database is locked$"):
            SqliteStore(str(path), timeout_s=0.1)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert [r.getMessage() for r in caplog.records] == [
        "cannot initialise sqlite store: OperationalError"]
    SqliteStore(str(path)).close()  # nothing was left locked


def test_a_failing_call_is_logged_once_naming_the_store_and_the_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "wiped.db"
    store = SqliteStore(str(path))
    wiper = sqlite3.connect(path, isolation_level=None)
    wiper.execute("DROP TABLE sessions")
    wiper.close()
    try:
        with caplog.at_level(logging.DEBUG, logger="jumpvpn_core.stores.sqlite"):
            for _ in range(2):
                with pytest.raises(StoreUnavailableError):
                    store.get(b"\x01" * 16)
    finally:
        store.close()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "sqlite store get failed (OperationalError: no such table: "
                          "sessions); further failures are logged at DEBUG until it "
                          "answers again"),
        (logging.DEBUG, "sqlite store get failed (OperationalError: no such table: "
                        "sessions)"),
    ]


class _CloseFails:
    """A connection whose close fails (a handle broken under the store)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        return self.conn.execute(sql, *args)

    def close(self) -> None:
        self.conn.close()
        raise sqlite3.ProgrammingError("handle broken")


def test_a_close_that_fails_is_unavailable_and_the_store_stays_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_connect = sqlite3.connect

    def connect(path: str, **kwargs: Any) -> _CloseFails:
        return _CloseFails(real_connect(path, **kwargs))

    monkeypatch.setattr("jumpvpn_core.stores.sqlite.sqlite3.connect", connect)
    store = SqliteStore(str(tmp_path / "c.db"))
    with pytest.raises(StoreUnavailableError, match=r"^sqlite close failed: handle broken$"):
        store.close()
    store.close()  # closed all the same: a second close is a no-op


class _BrokenInTransaction(_CloseFails):
    """A connection that breaks inside the schema transaction: reading the schema version
    fails, and so does the ROLLBACK after it (the handle is gone)."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql in ("PRAGMA user_version", "ROLLBACK"):
            raise sqlite3.OperationalError(f"disk I/O error ({sql.split()[0]})")
        return self.conn.execute(sql, *args)

    def close(self) -> None:
        self.conn.close()


def test_a_failure_whose_rollback_fails_too_reports_the_first_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ROLLBACK's own error is swallowed: the caller sees why the open failed."""
    real_connect = sqlite3.connect
    monkeypatch.setattr("jumpvpn_core.stores.sqlite.sqlite3.connect",
                        lambda path, **kwargs: _BrokenInTransaction(real_connect(path, **kwargs)))
    with pytest.raises(StoreUnavailableError,
                       match=r"^cannot initialise sqlite store: disk I/O error \(PRAGMA\)$"):
        SqliteStore(str(tmp_path / "b.db"))


def test_the_default_lock_wait_is_two_seconds(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "t.db"))
    try:
        assert store._connection().execute("PRAGMA busy_timeout").fetchone()[0] == 2000
    finally:
        store.close()
