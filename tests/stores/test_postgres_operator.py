"""PostgreSQL store, operator surface: TLS options handed to libpq, the connection pool,
passing in a pool or a connection, the schema version and its migration, and the
durability check of `synchronous_commit` at open (docs/deployment.md)."""

from __future__ import annotations

import logging
import os
import threading

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from jumpvpn_core.gateway import Gateway
from jumpvpn_core.stores import StoreConfigError, StoreSchemaError, StoreUnavailableError
from jumpvpn_core.stores.factory import open_store
from jumpvpn_core.stores.postgres import SCHEMA_TABLE, SCHEMA_VERSION, PostgresStore
from tests.stores.conftest import TIMEOUT_S, plus_query, postgres_table, without_query

pytestmark = pytest.mark.services

Connection = psycopg.Connection[tuple[object, ...]]


def _schema_row(base: str, table: str) -> int | None:
    with psycopg.connect(base, autocommit=True) as conn:
        row = conn.execute(
            sql.SQL("SELECT version FROM {} WHERE store_table = %s").format(
                sql.Identifier(SCHEMA_TABLE)), (table,)).fetchone()
    return None if row is None else int(str(row[0]))


def _has_index(base: str, table: str) -> bool:
    with psycopg.connect(base, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = %s"
                           " AND indexdef LIKE %s", (table, "%(updated_at)%")).fetchone()
    return row == (1,)


# --- TLS options ----------------------------------------------------------------------------


def test_ssl_options_reach_libpq(postgres_store_url: str, tmp_path: os.PathLike[str]) -> None:
    ca = os.path.join(tmp_path, "ca.pem")
    url = plus_query(postgres_store_url, sslmode="disable", sslrootcert=ca)
    store = open_store(url, timeout_s=TIMEOUT_S)
    assert isinstance(store, PostgresStore)
    try:
        assert store.pool is not None
        with store.pool.connection() as conn:
            params = conn.info.get_parameters()
        assert params["sslmode"] == "disable"
        assert params["sslrootcert"] == ca
    finally:
        store.close()


def test_sslmode_require_is_enforced_by_libpq(postgres_store_url: str) -> None:
    # The test server has TLS off: libpq refuses to go on without it, as asked.
    with psycopg.connect(without_query(postgres_store_url), autocommit=True) as conn:
        ssl_on = conn.execute("SHOW ssl").fetchone() == ("on",)
    if ssl_on:
        pytest.skip("the test server has TLS on: sslmode=require would succeed")
    with pytest.raises(StoreUnavailableError, match=r"(?i)ssl"):
        open_store(plus_query(postgres_store_url, sslmode="require"), timeout_s=TIMEOUT_S)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("sslpassword=s3cret-value", "'sslpassword'"),
        ("password=s3cret-value", "'password'"),
        ("sslmode=s3cret-value", "sslmode must be one of"),
        ("sslkey=", "'sslkey' is empty"),
        ("pool_size=s3cret-value", "pool_size"),
        ("pool_size=0", "pool_size"),
        ("pool_size=101", "pool_size"),
        ("durability=s3cret-value", "durability must be one of"),
    ],
)
def test_bad_query_option_is_a_config_error_naming_it_never_its_value(
    query: str, named: str
) -> None:
    url = f"postgresql://postgres@127.0.0.1:5432/test?{query}"
    with pytest.raises(StoreConfigError) as info:
        open_store(url, timeout_s=TIMEOUT_S)
    assert named in str(info.value)
    assert "s3cret" not in str(info.value)


# --- pool and passed-in connections -----------------------------------------------------------


def test_store_from_url_owns_a_pool_of_the_asked_size_and_closes_it(
    postgres_store_url: str,
) -> None:
    store = open_store(plus_query(postgres_store_url, pool_size="3"), timeout_s=TIMEOUT_S)
    assert isinstance(store, PostgresStore)
    pool = store.pool
    assert pool is not None
    assert (pool.min_size, pool.max_size) == (1, 3)
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            for round_ in range(20):
                sid = bytes([index, round_]) * 8
                assert store.create(sid, 0, b"x")
                assert store.compare_and_set(sid, 0, 1, b"y")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sum(1 for _ in store.scan()) == 120
    store.close()
    assert pool.closed
    with pytest.raises(StoreUnavailableError, match="closed"):
        store.get(b"\x00" * 16)


@pytest.mark.parametrize("autocommit", [True, False])
def test_passed_pool_is_used_and_never_closed(postgres_store_url: str, autocommit: bool) -> None:
    base = without_query(postgres_store_url)
    pool: ConnectionPool[Connection] = ConnectionPool(
        base, min_size=1, max_size=2, kwargs={"autocommit": autocommit}, open=True)
    try:
        store = PostgresStore(pool=pool, table=postgres_table(postgres_store_url),
                              timeout_s=TIMEOUT_S)
        assert store.pool is pool
        sid = b"\x01" * 16
        assert store.create(sid, 0, b"a")
        assert store.compare_and_set(sid, 0, 1, b"b")
        assert not store.compare_and_set(sid, 0, 2, b"c")
        store.close()
        assert not pool.closed
        # What the store wrote is committed: another connection sees it.
        with psycopg.connect(base, autocommit=True) as other:
            row = other.execute(
                sql.SQL("SELECT version, data FROM {} WHERE session_id = %s").format(
                    sql.Identifier(postgres_table(postgres_store_url))), (sid,)).fetchone()
        assert row == (1, b"b")
        with pool.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pool.close()


def test_passed_connection_is_used_and_never_closed(postgres_store_url: str) -> None:
    conn = psycopg.connect(without_query(postgres_store_url), autocommit=True)
    try:
        store = PostgresStore(connection=conn, table=postgres_table(postgres_store_url))
        assert store.pool is None
        sid = b"\x02" * 16
        assert store.create(sid, 0, b"a")
        record = store.get(sid)
        assert record is not None
        assert (record.version, record.data) == (0, b"a")
        assert store.backend_pid() == conn.info.backend_pid
        store.close()
        assert not conn.closed
        with pytest.raises(StoreUnavailableError, match="closed"):
            store.get(sid)
    finally:
        conn.close()


def test_broken_passed_connection_is_unavailable_not_a_driver_error(
    postgres_store_url: str,
) -> None:
    conn = psycopg.connect(without_query(postgres_store_url), autocommit=True)
    store = PostgresStore(connection=conn, table=postgres_table(postgres_store_url))
    conn.close()
    with pytest.raises(StoreUnavailableError, match="closed or broken"):
        store.get(b"\x03" * 16)
    assert store.backend_pid() is None


def test_passed_connection_outside_autocommit_is_refused(postgres_store_url: str) -> None:
    with psycopg.connect(without_query(postgres_store_url)) as conn, \
            pytest.raises(StoreConfigError, match="autocommit"):
        PostgresStore(connection=conn, table=postgres_table(postgres_store_url))


def test_exactly_one_source_of_connections() -> None:
    with pytest.raises(StoreConfigError, match="exactly one"):
        PostgresStore()
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn, \
            pytest.raises(StoreConfigError, match="exactly one"):
        PostgresStore("postgresql://postgres@127.0.0.1:5432/test", connection=conn)


# --- schema version and migration -------------------------------------------------------------


def test_new_table_is_created_at_the_current_schema(postgres_store_url: str) -> None:
    store = open_store(postgres_store_url, timeout_s=TIMEOUT_S)
    assert isinstance(store, PostgresStore)
    store.close()
    assert store.schema_migrated_from is None
    base, table = without_query(postgres_store_url), postgres_table(postgres_store_url)
    assert _schema_row(base, table) == SCHEMA_VERSION
    assert _has_index(base, table)


def test_table_of_schema_1_is_migrated_with_its_records(postgres_store_url: str) -> None:
    base, table = without_query(postgres_store_url), postgres_table(postgres_store_url)
    with psycopg.connect(base, autocommit=True) as conn:  # the layout before versioning
        conn.execute(sql.SQL(
            "CREATE TABLE {} (session_id bytea PRIMARY KEY, version bigint NOT NULL,"
            " data bytea NOT NULL, updated_at timestamptz DEFAULT now())"
        ).format(sql.Identifier(table)))
        conn.execute(sql.SQL("INSERT INTO {} (session_id, version, data) VALUES (%s, 7, %s)")
                     .format(sql.Identifier(table)), (b"\x04" * 16, b"old"))
    assert _schema_row(base, table) is None
    assert not _has_index(base, table)
    store = open_store(postgres_store_url, timeout_s=TIMEOUT_S)
    assert isinstance(store, PostgresStore)
    try:
        assert store.schema_migrated_from == 1
        record = store.get(b"\x04" * 16)
        assert record is not None
        assert (record.version, record.data) == (7, b"old")
        assert store.compare_and_set(b"\x04" * 16, 7, 8, b"new")
    finally:
        store.close()
    assert _schema_row(base, table) == SCHEMA_VERSION
    assert _has_index(base, table)
    again = open_store(postgres_store_url, timeout_s=TIMEOUT_S)
    assert isinstance(again, PostgresStore)
    again.close()
    assert again.schema_migrated_from is None  # migrated once


def test_table_of_a_newer_schema_is_refused_and_left_alone(postgres_store_url: str) -> None:
    base, table = without_query(postgres_store_url), postgres_table(postgres_store_url)
    open_store(postgres_store_url, timeout_s=TIMEOUT_S).close()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("UPDATE {} SET version = %s WHERE store_table = %s").format(
            sql.Identifier(SCHEMA_TABLE)), (SCHEMA_VERSION + 1, table))
    with pytest.raises(StoreSchemaError, match=f"schema {SCHEMA_VERSION + 1}, newer"):
        open_store(postgres_store_url, timeout_s=TIMEOUT_S)
    assert _schema_row(base, table) == SCHEMA_VERSION + 1  # not rewritten


def test_stores_opening_one_old_table_at_once_migrate_it_once(postgres_store_url: str) -> None:
    base, table = without_query(postgres_store_url), postgres_table(postgres_store_url)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL(
            "CREATE TABLE {} (session_id bytea PRIMARY KEY, version bigint NOT NULL,"
            " data bytea NOT NULL, updated_at timestamptz DEFAULT now())"
        ).format(sql.Identifier(table)))
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def opener() -> None:
        try:
            store = open_store(postgres_store_url, timeout_s=TIMEOUT_S)
            assert isinstance(store, PostgresStore)
            with lock:
                stores.append(store)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for store in stores:
        store.close()
    assert errors == []
    assert sorted(s.schema_migrated_from or 0 for s in stores) == [0, 0, 0, 1]


# --- durability: synchronous_commit -------------------------------------------------------


def test_open_reports_the_servers_synchronous_commit(
    postgres_store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with psycopg.connect(without_query(postgres_store_url), autocommit=True) as conn:
        row = conn.execute("SHOW synchronous_commit").fetchone()
    assert row is not None
    if row[0] == "off":
        pytest.skip("the test server runs with synchronous_commit=off")
    with caplog.at_level(logging.INFO, logger="jumpvpn_core.stores.postgres"):
        store = open_store(postgres_store_url, timeout_s=TIMEOUT_S)
    assert isinstance(store, PostgresStore)
    store.close()
    assert store.synchronous_commit == row[0]
    assert f"synchronous_commit={row[0]}" in caplog.text


def _pool_with(base: str, setting: str) -> ConnectionPool[Connection]:
    return ConnectionPool(base, min_size=1, max_size=1, open=True, kwargs={
        "autocommit": True, "options": f"-c synchronous_commit={setting}"})


def test_synchronous_commit_off_is_refused(postgres_store_url: str) -> None:
    pool = _pool_with(without_query(postgres_store_url), "off")
    try:
        with pytest.raises(StoreConfigError, match="synchronous_commit is off"):
            PostgresStore(pool=pool, table=postgres_table(postgres_store_url))
        assert not pool.closed  # refused, and still not closed: it is not the store's
    finally:
        pool.close()


def test_synchronous_commit_off_is_accepted_when_the_operator_opts_out(
    postgres_store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    pool = _pool_with(without_query(postgres_store_url), "off")
    try:
        with caplog.at_level(logging.WARNING, logger="jumpvpn_core.stores.postgres"):
            store = PostgresStore(pool=pool, table=postgres_table(postgres_store_url),
                                  durability="none")
        assert store.synchronous_commit == "off"
        assert store.create(b"\x05" * 16, 0, b"x")
        assert "durability=none" in caplog.text
    finally:
        pool.close()


def test_url_opt_out_and_replicas_mode(postgres_store_url: str) -> None:
    store = open_store(plus_query(postgres_store_url, durability="none"), timeout_s=TIMEOUT_S)
    store.close()
    with psycopg.connect(without_query(postgres_store_url), autocommit=True) as conn:
        row = conn.execute("SHOW synchronous_standby_names").fetchone()
    if row != ("",):
        pytest.skip("the test server has synchronous standbys configured")
    with pytest.raises(StoreConfigError, match="synchronous_standby_names=empty"):
        open_store(plus_query(postgres_store_url, durability="replicas"), timeout_s=TIMEOUT_S)


def test_remote_apply_with_standby_names_passes_replicas_mode(postgres_store_url: str) -> None:
    # The session's own settings are what the check reads: a session that asks for
    # remote_apply and names a standby is what durability=replicas requires.
    pool: ConnectionPool[Connection] = ConnectionPool(
        without_query(postgres_store_url), min_size=1, max_size=1, open=True,
        kwargs={"autocommit": True, "options": "-c synchronous_commit=remote_apply"})
    try:
        with pytest.raises(StoreConfigError, match="synchronous_standby_names=empty"):
            PostgresStore(pool=pool, table=postgres_table(postgres_store_url),
                          durability="replicas")
    finally:
        pool.close()


# --- logging ------------------------------------------------------------------------------


def test_a_lost_connection_is_logged_once_and_the_recovery_too(
    postgres_store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(plus_query(postgres_store_url, pool_size="1"), timeout_s=TIMEOUT_S)
    assert isinstance(store, PostgresStore)
    logger = "jumpvpn_core.stores.postgres"
    try:
        assert store.create(b"\x06" * 16, 0, b"s3cret-data")
        pid = store.backend_pid()
        with psycopg.connect(without_query(postgres_store_url), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with caplog.at_level(logging.DEBUG, logger=logger):
            with pytest.raises(StoreUnavailableError):
                store.compare_and_set(b"\x06" * 16, 0, 1, b"s3cret-data")
            assert store.compare_and_set(b"\x06" * 16, 0, 1, b"s3cret-data")
    finally:
        store.close()
    mine = [r for r in caplog.records if r.name == logger]
    assert [r.levelno for r in mine] == [logging.WARNING, logging.INFO]
    assert "compare_and_set failed" in mine[0].getMessage()
    assert "s3cret" not in caplog.text


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:s3cret@127.0.0.1:5432/test?a=1&&=b",
        "redis://:s3cret@127.0.0.1:6379/0?prefix=a&&=s3cret",
        "postgresql:postgres:s3cret@127.0.0.1/test",
    ],
)
def test_malformed_urls_never_echo_a_credential(url: str) -> None:
    with pytest.raises(StoreConfigError) as info:
        open_store(url, timeout_s=1.0)
    assert "s3cret" not in str(info.value)


def test_a_passed_pool_closed_by_its_owner_is_unavailable_not_a_driver_error(
    postgres_store_url: str,
) -> None:
    pool: ConnectionPool[Connection] = ConnectionPool(
        without_query(postgres_store_url), min_size=1, max_size=1, open=True,
        kwargs={"autocommit": True})
    store = PostgresStore(pool=pool, table=postgres_table(postgres_store_url))
    pool.close()
    with pytest.raises(StoreUnavailableError) as info:
        store.get(b"\x07" * 16)
    assert isinstance(info.value.__cause__, psycopg.Error)
    store.close()


def test_server_clock_is_the_clusters_time_reference(postgres_store_url: str) -> None:
    store = open_store(postgres_store_url, timeout_s=TIMEOUT_S)
    assert isinstance(store, PostgresStore)
    try:
        with psycopg.connect(without_query(postgres_store_url), autocommit=True) as conn:
            before = conn.execute(
                "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint").fetchone()
        server_ms = store.time_ms()
        assert before is not None
        assert before[0] <= server_ms  # the server's clock, read after `before`
        assert server_ms - int(str(before[0])) < 60_000
        gateway = Gateway(store)
        offset = gateway.check_clock(server_ms - 10 * gateway.policy.max_clock_skew_ms)
        assert offset is not None
        assert gateway.clock_fault  # 10 bounds behind the server's clock: out of contract
    finally:
        store.close()


def test_a_table_dropped_behind_its_version_row_is_created_afresh(postgres_store_url: str) -> None:
    base, table = without_query(postgres_store_url), postgres_table(postgres_store_url)
    open_store(postgres_store_url, timeout_s=TIMEOUT_S).close()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
    store = open_store(postgres_store_url, timeout_s=TIMEOUT_S)
    assert isinstance(store, PostgresStore)
    try:
        assert store.schema_migrated_from is None
        assert store.create(b"\x08" * 16, 0, b"x")
    finally:
        store.close()
    assert _schema_row(base, table) == SCHEMA_VERSION
    assert _has_index(base, table)


def test_a_version_row_below_1_is_refused(postgres_store_url: str) -> None:
    base, table = without_query(postgres_store_url), postgres_table(postgres_store_url)
    open_store(postgres_store_url, timeout_s=TIMEOUT_S).close()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("UPDATE {} SET version = 0 WHERE store_table = %s").format(
            sql.Identifier(SCHEMA_TABLE)), (table,))
    with pytest.raises(StoreSchemaError, match="invalid schema version"):
        open_store(postgres_store_url, timeout_s=TIMEOUT_S)


def test_a_role_trusted_with_its_table_only_opens_a_current_table(
    postgres_store_url: str,
) -> None:
    base, table = without_query(postgres_store_url), postgres_table(postgres_store_url)
    role = f"jumpvpn_test_role_{table[-12:]}"
    open_store(postgres_store_url, timeout_s=TIMEOUT_S).close()  # migrated by the owner
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        admin.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(
            sql.Identifier(role)))
        admin.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(
            sql.Identifier(table), sql.Identifier(role)))
        admin.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(
            sql.Identifier(SCHEMA_TABLE), sql.Identifier(role)))
    try:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            created = conn.execute("SELECT has_schema_privilege('public', 'CREATE')").fetchone()
            assert created == (False,)
            store = PostgresStore(connection=conn, table=table)
            assert store.schema_migrated_from is None
            assert store.create(b"\x09" * 16, 0, b"x")
            store.close()
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
