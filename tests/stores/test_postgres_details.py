"""PostgreSQL store, details an operator or a caller relies on: the exact wording of its
errors and log lines, the timeouts and pool settings it derives from `timeout_s`, the
index it creates for every table name, a database without a schema-version table, the
durability check against synchronous standbys, and scans that fail on a later page."""

from __future__ import annotations

import logging
import threading
import uuid
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from jumpvpn_core.stores import (
    StoreConfigError,
    StoreUnavailableError,
    open_store,
)
from jumpvpn_core.stores.postgres import (
    SCHEMA_TABLE,
    SCHEMA_VERSION,
    PostgresStore,
    open_postgres_store,
    validate_table_name,
)
from tests.services import postgres_url_or_skip
from tests.stores.conftest import (
    TIMEOUT_S,
    drop_postgres_table,
    plus_query,
    postgres_table,
    without_query,
)

pytestmark = pytest.mark.services

Connection = psycopg.Connection[tuple[object, ...]]
LOGGER = "jumpvpn_core.stores.postgres"


def _show(store: PostgresStore, setting: str) -> str:
    pool = store.pool
    assert pool is not None
    with pool.connection() as conn:
        row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(setting))).fetchone()
    assert row is not None
    return str(row[0])


def _connect_timeout(store: PostgresStore) -> str:
    pool = store.pool
    assert pool is not None
    with pool.connection() as conn:
        return conn.info.get_parameters()["connect_timeout"]


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


def _indexes(base: str, table: str) -> dict[str, str]:
    with psycopg.connect(base, autocommit=True) as conn:
        rows = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
                            (table,)).fetchall()
    return {str(name): str(definition) for name, definition in rows}


@pytest.fixture
def base_url() -> str:
    return postgres_url_or_skip()


@pytest.fixture
def long_tables(base_url: str) -> Iterator[list[str]]:
    """Two table names of the full 63 characters that share their first 52; both are
    dropped afterwards."""
    stem = f"jumpvpn_test_{uuid.uuid4().hex}_".ljust(52, "x")
    tables = [stem + "a" * 11, stem + "b" * 11]
    yield tables
    for table in tables:
        drop_postgres_table(base_url, table)


@pytest.fixture
def private_schema(base_url: str) -> Iterator[str]:
    """An empty schema of its own (no `jumpvpn_schema` table in it), dropped afterwards."""
    name = f"jumpvpn_test_schema_{uuid.uuid4().hex}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


# --- argument and URL errors ----------------------------------------------------------------


def test_a_bad_table_name_error_states_the_rule() -> None:
    with pytest.raises(StoreConfigError) as info:
        validate_table_name("1sessions")
    assert str(info.value) == ("invalid table name '1sessions': use letters, digits and _ "
                               "(at most 63, not starting with a digit)")


def test_constructor_errors_say_what_to_give(base_url: str) -> None:
    with pytest.raises(StoreConfigError) as info:
        PostgresStore()
    assert str(info.value) == "give exactly one of conninfo, pool or connection"
    with pytest.raises(StoreConfigError) as info:
        PostgresStore(base_url, durability="always")
    assert str(info.value) == "postgres durability must be one of fsync, replicas, none"
    with psycopg.connect(base_url) as conn, pytest.raises(StoreConfigError) as info:
        PostgresStore(connection=conn)
    assert str(info.value) == ("a connection passed to the postgres store must be in "
                               "autocommit mode")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://postgres@127.0.0.1:5432/test", "not a postgresql URL: scheme 'mysql'"),
        ("postgresql://postgres@127.0.0.1:5432/test#main",
         "postgresql store URL must not have a #fragment"),
        ("postgresql:///test", "postgresql store URL has no host: use postgresql://user@host/db"),
        ("postgresql://postgres@127.0.0.1:5432/",
         "postgresql store URL names no database: use .../dbname"),
        ("postgresql://postgres@127.0.0.1:5432/test?sslmode=on",
         "sslmode must be one of disable, allow, prefer, require, verify-ca, verify-full"),
        ("postgresql://postgres@127.0.0.1:5432/test?pool_size=abc",
         "pool_size must be a count 1..100"),
        ("postgresql://postgres@127.0.0.1:5432/test?pool_size=1000",
         "pool_size must be a count 1..100"),
    ],
)
def test_url_errors_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(StoreConfigError) as info:
        open_postgres_store(url, timeout_s=TIMEOUT_S)
    assert str(info.value) == message


def test_a_database_named_like_the_path_separator_is_a_database(base_url: str) -> None:
    # Only the leading "/" of the path is not part of the name: /X names database X.
    url = urlsplit(base_url)._replace(path="/X").geturl()
    with pytest.raises(StoreUnavailableError, match='database "X" does not exist'):
        open_postgres_store(url, timeout_s=TIMEOUT_S)


# --- pool settings derived from timeout_s and pool_size -----------------------------------


def test_default_timeout_reaches_the_server_sessions(postgres_store_url: str) -> None:
    store = PostgresStore(without_query(postgres_store_url),
                          table=postgres_table(postgres_store_url))
    try:
        assert (_show(store, "statement_timeout"), _show(store, "lock_timeout")) == ("2s", "2s")
        assert _connect_timeout(store) == "2"
        assert store.pool is not None
        assert store.pool.timeout == 2.0
    finally:
        store.close()
    from_url = open_postgres_store(postgres_store_url)
    try:
        assert _show(from_url, "statement_timeout") == "2s"
    finally:
        from_url.close()


def test_timeout_reaches_pool_and_sessions(postgres_store_url: str) -> None:
    store = open_postgres_store(postgres_store_url, timeout_s=0.5)
    try:
        assert (_show(store, "statement_timeout"), _show(store, "lock_timeout")) == (
            "500ms", "500ms")
        assert _connect_timeout(store) == "1"  # whole seconds, at least one
        pool = store.pool
        assert pool is not None
        assert pool.timeout == 0.5
        assert pool.name == f"jumpvpn-{postgres_table(postgres_store_url)}"
    finally:
        store.close()
    store = open_postgres_store(postgres_store_url, timeout_s=TIMEOUT_S)
    try:
        assert _show(store, "statement_timeout") == f"{TIMEOUT_S:g}s"
        assert _connect_timeout(store) == f"{TIMEOUT_S:g}"
    finally:
        store.close()


def test_pool_size_up_to_100_is_accepted(postgres_store_url: str) -> None:
    store = open_store(plus_query(postgres_store_url, pool_size="100"), timeout_s=TIMEOUT_S)
    assert isinstance(store, PostgresStore)
    try:
        assert store.pool is not None
        assert (store.pool.min_size, store.pool.max_size) == (1, 100)
    finally:
        store.close()
    direct = PostgresStore(without_query(postgres_store_url),
                           table=postgres_table(postgres_store_url), pool_size=100,
                           timeout_s=TIMEOUT_S)
    try:
        assert direct.pool is not None
        assert direct.pool.max_size == 100
    finally:
        direct.close()


def test_a_store_from_a_url_gives_no_warnings_in_use(postgres_store_url: str) -> None:
    # Callers running with warnings as errors must be able to use the store.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = open_store(postgres_store_url, timeout_s=TIMEOUT_S)
        try:
            assert store.create(b"\x11" * 16, 0, b"x")
            record = store.get(b"\x11" * 16)
            assert record is not None
            assert record.data == b"x"
        finally:
            store.close()


# --- failures: messages and log lines ----------------------------------------------------


def test_an_unreachable_server_is_named_in_the_error_and_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER), \
            pytest.raises(StoreUnavailableError) as info:
        PostgresStore("postgresql://postgres@127.0.0.1:1/test", timeout_s=1.0)
    assert str(info.value).startswith("postgres connect: cannot connect: OperationalError: ")
    warned = _messages(caplog, logging.WARNING)
    assert len(warned) == 1
    assert warned[0].startswith("postgres store connect failed (OperationalError: ")


def test_a_server_lost_while_the_pool_fills_gives_up_after_the_timeout(
    postgres_store_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first direct attempt reaches the server; the pool's connections do not (as when
    # the server goes away just after): the store reports it within its timeout.
    real_connect = psycopg.connect
    base = without_query(postgres_store_url)

    def first_attempt_reaches_the_server(conninfo: str, **kwargs: Any) -> Connection:
        return real_connect(base, **kwargs)

    monkeypatch.setattr(psycopg, "connect", first_attempt_reaches_the_server)
    outcome: list[BaseException] = []

    def opener() -> None:
        try:
            PostgresStore("postgresql://postgres@127.0.0.1:1/test",
                          table=postgres_table(postgres_store_url), timeout_s=1.0)
        except BaseException as exc:  # the outcome is checked by the test
            outcome.append(exc)

    thread = threading.Thread(target=opener, daemon=True)
    thread.start()
    thread.join(timeout=15)  # a bound against a hang, not a speed check
    assert not thread.is_alive(), "the store kept waiting for its pool"
    assert len(outcome) == 1
    assert isinstance(outcome[0], StoreUnavailableError)
    assert str(outcome[0]).startswith("postgres connect: cannot connect: PoolTimeout: ")


def test_failures_name_the_call_in_the_error_and_the_log(
    postgres_store_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    pool: ConnectionPool[Connection] = ConnectionPool(
        without_query(postgres_store_url), min_size=1, max_size=1, open=True,
        kwargs={"autocommit": True})
    store = PostgresStore(pool=pool, table=postgres_table(postgres_store_url), timeout_s=TIMEOUT_S)
    pool.close()  # by its owner: every call of the store now fails in the driver
    calls: list[tuple[str, Any]] = [
        ("get", lambda: store.get(b"\x12" * 16)),
        ("create", lambda: store.create(b"\x12" * 16, 0, b"x")),
        ("compare_and_set", lambda: store.compare_and_set(b"\x12" * 16, 0, 1, b"y")),
        ("delete", lambda: store.delete(b"\x12" * 16, 0)),
        ("scan", lambda: list(store.scan())),
        ("time", store.time_ms),
    ]
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for what, call in calls:
            with pytest.raises(StoreUnavailableError) as info:
                call()
            assert str(info.value).startswith(f"postgres {what} failed: PoolClosed: "), what
        assert store.backend_pid() is None
    store.close()
    warned = _messages(caplog, logging.WARNING)
    assert len(warned) == 1
    assert warned[0].startswith("postgres store get failed (PoolClosed: ")
    assert warned[0].endswith("); further failures are logged at DEBUG until it answers again")
    debug = _messages(caplog, logging.DEBUG)
    expected = [what for what, _ in calls[1:]] + ["backend_pid"]
    assert len(debug) == len(expected)
    for line, what in zip(debug, expected, strict=True):
        assert line.startswith(f"postgres store {what} failed (PoolClosed: "), line


def test_a_scan_that_fails_on_a_later_page_says_so(
    postgres_store_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    base, table = without_query(postgres_store_url), postgres_table(postgres_store_url)
    open_store(postgres_store_url, timeout_s=TIMEOUT_S).close()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("INSERT INTO {} (session_id, version, data)"
                             " SELECT int4send(g), 0, 'x' FROM generate_series(1, 501) g")
                     .format(sql.Identifier(table)))
    pool: ConnectionPool[Connection] = ConnectionPool(
        base, min_size=1, max_size=1, open=True, kwargs={"autocommit": True})
    try:
        store = PostgresStore(pool=pool, table=table, timeout_s=TIMEOUT_S)
        records = store.scan()
        first_page = [next(records) for _ in range(500)]
        assert [r.session_id for r in first_page] == [
            i.to_bytes(4, "big") for i in range(1, 501)]
        pool.close()
        with caplog.at_level(logging.DEBUG, logger=LOGGER), \
                pytest.raises(StoreUnavailableError) as info:
            next(records)
        assert str(info.value).startswith("postgres scan failed: PoolClosed: ")
        assert _messages(caplog, logging.WARNING)[0].startswith(
            "postgres store scan failed (PoolClosed: ")
        store.close()
    finally:
        pool.close()


def test_a_schema_change_refused_at_open_names_the_open(
    postgres_store_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    # A read-only session cannot create the table: the open fails, and says so.
    with psycopg.connect(without_query(postgres_store_url), autocommit=True,
                         options="-c default_transaction_read_only=on") as conn:
        with caplog.at_level(logging.DEBUG, logger=LOGGER), \
                pytest.raises(StoreUnavailableError) as info:
            PostgresStore(connection=conn, table=postgres_table(postgres_store_url))
        assert not conn.closed
    assert str(info.value).startswith("postgres open failed: ReadOnlySqlTransaction: ")
    assert [m.split(" (")[0] for m in _messages(caplog, logging.WARNING)] == [
        "postgres store open failed"]
    assert "ReadOnlySqlTransaction" in _messages(caplog, logging.WARNING)[0]


def test_more_than_one_changed_row_is_an_error_not_a_success(postgres_store_url: str) -> None:
    # A table whose key constraint was dropped by hand holds two rows for one id: the store
    # must not report such a write as one compare-and-set.
    base, table = without_query(postgres_store_url), postgres_table(postgres_store_url)
    store = open_store(postgres_store_url, timeout_s=TIMEOUT_S)
    sid = b"\x13" * 16
    try:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(f"{table}_pkey")))
            for _ in range(2):
                conn.execute(sql.SQL("INSERT INTO {} (session_id, version, data)"
                                     " VALUES (%s, 0, 'x')").format(sql.Identifier(table)),
                             (sid,))
        with pytest.raises(StoreUnavailableError) as info:
            store.compare_and_set(sid, 0, 1, b"y")
        assert str(info.value) == "postgres compare_and_set changed 2 rows"
        with pytest.raises(StoreUnavailableError) as info:
            store.delete(sid, 1)
        assert str(info.value) == "postgres delete changed 2 rows"
    finally:
        store.close()


# --- open: log lines and durability ------------------------------------------------------


def test_open_logs_the_table_and_the_servers_settings(
    postgres_store_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    table = postgres_table(postgres_store_url)
    with psycopg.connect(without_query(postgres_store_url), autocommit=True) as conn:
        commit = conn.execute("SHOW synchronous_commit").fetchone()
        standbys = conn.execute("SHOW synchronous_standby_names").fetchone()
    assert commit is not None
    assert standbys is not None
    if commit[0] == "off":
        pytest.skip("the test server runs with synchronous_commit=off")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        open_store(postgres_store_url, timeout_s=TIMEOUT_S).close()
    assert _messages(caplog, logging.INFO) == [
        f"postgres store on table {table}: synchronous_commit={commit[0]}, "
        f"synchronous_standby_names={standbys[0]!r}, durability=fsync"]


def test_a_migration_is_logged_with_the_table_and_both_versions(
    postgres_store_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    base, table = without_query(postgres_store_url), postgres_table(postgres_store_url)
    with psycopg.connect(base, autocommit=True) as conn:  # the layout before versioning
        conn.execute(sql.SQL(
            "CREATE TABLE {} (session_id bytea PRIMARY KEY, version bigint NOT NULL,"
            " data bytea NOT NULL, updated_at timestamptz DEFAULT now())"
        ).format(sql.Identifier(table)))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        store = open_store(plus_query(postgres_store_url, durability="none"), timeout_s=TIMEOUT_S)
        store.close()
    assert _messages(caplog, logging.WARNING) == [
        f"postgres table {table} migrated from schema 1 to {SCHEMA_VERSION}",
        "postgres store opened with durability=none: its settings are not checked",
    ]


def test_synchronous_commit_off_error_says_how_to_fix_it(postgres_store_url: str) -> None:
    pool: ConnectionPool[Connection] = ConnectionPool(
        without_query(postgres_store_url), min_size=1, max_size=1, open=True,
        kwargs={"autocommit": True, "options": "-c synchronous_commit=off"})
    try:
        with pytest.raises(StoreConfigError) as info:
            PostgresStore(pool=pool, table=postgres_table(postgres_store_url))
        assert str(info.value) == (
            "postgres synchronous_commit is off: a server crash would lose acknowledged "
            "commits. Set synchronous_commit to on (or remote_apply with synchronous "
            "standbys), or choose durability=none in the store URL")
    finally:
        pool.close()


class _StandbyConnection(psycopg.Connection[tuple[Any, ...]]):
    """A session of a server configured with a synchronous standby: the shared test
    server has none, and naming one there would stall every commit."""

    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None,
                binary: bool = False) -> Any:
        if isinstance(query, str) and " ".join(query.lower().split()) == (
                "show synchronous_standby_names"):
            query = "SELECT 'standby_a'::text"
        return super().execute(query, params, prepare=prepare, binary=binary)


@pytest.mark.parametrize(
    ("commit", "refused"),
    [
        ("remote_apply", None),
        ("remote_write", None),
        ("on", None),
        ("local", "postgres durability=replicas needs synchronous_standby_names set and "
                  "synchronous_commit on, remote_write or remote_apply (the server has "
                  "synchronous_commit=local, synchronous_standby_names=set)"),
    ],
)
def test_replicas_mode_with_a_synchronous_standby(
    postgres_store_url: str, commit: str, refused: str | None,
) -> None:
    conn = _StandbyConnection.connect(without_query(postgres_store_url), autocommit=True,
                                      options=f"-c synchronous_commit={commit}")
    try:
        if refused is not None:
            with pytest.raises(StoreConfigError) as info:
                PostgresStore(connection=conn, table=postgres_table(postgres_store_url),
                              durability="replicas")
            assert str(info.value) == refused
            return
        store = PostgresStore(connection=conn, table=postgres_table(postgres_store_url),
                              durability="replicas")
        assert (store.synchronous_commit, store.synchronous_standby_names) == (
            commit, "standby_a")
        assert store.create(b"\x14" * 16, 0, b"x")
        store.close()
    finally:
        conn.close()


# --- schema: the index, and a database without the version table ---------------------------


def test_the_index_is_named_after_the_table(postgres_store_url: str) -> None:
    base, table = without_query(postgres_store_url), postgres_table(postgres_store_url)
    open_store(postgres_store_url, timeout_s=TIMEOUT_S).close()
    indexes = _indexes(base, table)
    assert f"{table}_updated_at" in indexes  # the name docs/operations.md gives
    assert indexes[f"{table}_updated_at"].endswith("(updated_at)")


def test_tables_of_63_characters_each_get_their_own_index(
    base_url: str, long_tables: list[str],
) -> None:
    names = []
    for table in long_tables:
        assert len(table) == 63
        store = PostgresStore(base_url, table=table, timeout_s=TIMEOUT_S)
        store.close()
        on_updated_at = [name for name, definition in _indexes(base_url, table).items()
                         if definition.endswith("(updated_at)")]
        assert len(on_updated_at) == 1, table
        assert on_updated_at[0] != table
        assert len(on_updated_at[0]) <= 63
        names.append(on_updated_at[0])
    assert names[0] != names[1]


def test_a_database_without_the_version_table_gets_one(
    base_url: str, private_schema: str,
) -> None:
    options = f"-c search_path={private_schema}"
    with psycopg.connect(base_url, autocommit=True, options=options) as conn:
        store = PostgresStore(connection=conn, table="sessions", timeout_s=TIMEOUT_S)
        assert store.schema_migrated_from is None
        assert store.create(b"\x15" * 16, 0, b"x")
        store.close()
        rows = conn.execute(sql.SQL("SELECT store_table, version FROM {}.{}").format(
            sql.Identifier(private_schema), sql.Identifier(SCHEMA_TABLE))).fetchall()
        assert rows == [("sessions", SCHEMA_VERSION)]
        again = PostgresStore(connection=conn, table="sessions", timeout_s=TIMEOUT_S)
        assert again.schema_migrated_from is None
        record = again.get(b"\x15" * 16)
        assert record is not None
        assert record.data == b"x"
        again.close()


# --- scan ----------------------------------------------------------------------------------


def test_scan_includes_the_empty_session_id(postgres_store_url: str) -> None:
    store = open_store(postgres_store_url, timeout_s=TIMEOUT_S)
    try:
        assert store.create(b"", 0, b"empty")
        assert store.create(b"\x00", 0, b"zero")
        assert [(r.session_id, r.data) for r in store.scan()] == [
            (b"", b"empty"), (b"\x00", b"zero")]
    finally:
        store.close()


def test_a_long_table_names_index_is_a_prefix_a_digest_and_the_suffix() -> None:
    """53 to 63 characters: the first 43 characters, `_`, 8 hex digits of the name's SHA-256,
    `_updated_at`: exactly 63 bytes, PostgreSQL's identifier limit (docs/operations.md)."""
    import hashlib

    from jumpvpn_core.stores.postgres import _index_name

    assert _index_name("t" * 52) == "t" * 52 + "_updated_at"  # fits: unchanged
    for table in ("a" * 53, "b" * 63, "sessions_" + "x" * 54):
        digest = hashlib.sha256(table.encode()).hexdigest()[:8]
        name = _index_name(table)
        assert name == f"{table[:43]}_{digest}_updated_at"
        assert len(name) == 63
