"""The SessionStore contract, proved identically for memory, sqlite, redis and postgres.

RM-4.1 (split-brain): a record changes only by an atomic compare-and-set on its version,
so two writers racing on one session never both win (no fork). RM-4.2 (partial cluster
failure): a store that cannot be reached raises `StoreUnavailableError` -- promptly, and
never as a raw driver exception -- so the gateway rejects instead of guessing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from jumpvpn_core.stores import (
    SessionStore,
    StoreConfigError,
    StoreUnavailableError,
    open_store,
)
from jumpvpn_core.stores._url import check_timeout, query_options, url_port
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.stores.postgres import PostgresStore
from jumpvpn_core.stores.redis import RedisStore
from jumpvpn_core.stores.sqlite import SqliteStore, parse_sqlite_url
from tests.stores.conftest import TIMEOUT_S
from tests.stores.proxy import CuttingRelay

ALL_BYTES = bytes(range(256))


def sid(n: int = 0) -> bytes:
    """A 16-byte session id, distinct per `n` (and containing NUL and high bytes)."""
    return bytes([0, 255, n % 256, n // 256]) + os.urandom(12)


# --- basic contract -------------------------------------------------------------------


def test_open_store_gives_a_session_store(store: SessionStore) -> None:
    assert isinstance(store, SessionStore)


def test_get_of_missing_session_is_none(store: SessionStore) -> None:
    assert store.get(sid()) is None


def test_create_inserts_once_and_second_create_changes_nothing(store: SessionStore) -> None:
    session = sid()
    assert store.create(session, 0, b"first") is True
    assert store.create(session, 7, b"second") is False
    record = store.get(session)
    assert record is not None
    assert (record.session_id, record.version, record.data) == (session, 0, b"first")


@pytest.mark.requirement("RM-4.1")
def test_compare_and_set_with_current_version_replaces_the_record(store: SessionStore) -> None:
    session = sid()
    store.create(session, 0, b"v0")
    assert store.compare_and_set(session, 0, 1, b"v1") is True
    record = store.get(session)
    assert record is not None
    assert (record.version, record.data) == (1, b"v1")


@pytest.mark.requirement("RM-4.1", "RM-3.3")
def test_compare_and_set_with_stale_version_fails_and_changes_nothing(
    store: SessionStore,
) -> None:
    session = sid()
    store.create(session, 0, b"v0")
    assert store.compare_and_set(session, 0, 1, b"v1") is True
    assert store.compare_and_set(session, 0, 2, b"stale writer") is False
    assert store.compare_and_set(session, 5, 6, b"future writer") is False
    record = store.get(session)
    assert record is not None
    assert (record.version, record.data) == (1, b"v1")


@pytest.mark.requirement("RM-4.1")
def test_compare_and_set_on_missing_record_fails_and_creates_nothing(
    store: SessionStore,
) -> None:
    session = sid()
    assert store.compare_and_set(session, 0, 1, b"ghost") is False
    assert store.get(session) is None


def test_delete_needs_the_current_version(store: SessionStore) -> None:
    session = sid()
    store.create(session, 3, b"x")
    assert store.delete(session, 2) is False
    assert store.get(session) is not None
    assert store.delete(session, 3) is True
    assert store.get(session) is None
    assert store.delete(session, 3) is False


def test_records_are_independent_per_session(store: SessionStore) -> None:
    a, b = sid(1), sid(2)
    store.create(a, 0, b"a")
    store.create(b, 0, b"b")
    assert store.compare_and_set(a, 0, 1, b"a1") is True
    record_b = store.get(b)
    assert record_b is not None
    assert (record_b.version, record_b.data) == (0, b"b")


def test_scan_returns_every_record_exactly_once(store: SessionStore) -> None:
    sessions = {sid(n): n for n in range(1203)}  # more than one scan batch
    for session, n in sessions.items():
        assert store.create(session, n, n.to_bytes(2, "big"))
    victim = next(iter(sessions))
    assert store.delete(victim, sessions.pop(victim))
    seen = [(r.session_id, r.version, r.data) for r in store.scan()]
    assert len(seen) == len(sessions)
    assert {s: (v, d) for s, v, d in seen} == {
        s: (n, n.to_bytes(2, "big")) for s, n in sessions.items()
    }


def test_scan_of_empty_store_is_empty(store: SessionStore) -> None:
    assert list(store.scan()) == []


def test_binary_data_with_every_byte_value_round_trips(store: SessionStore) -> None:
    session = bytes(range(16))
    payload = ALL_BYTES * 3 + b"\x00"
    assert store.create(session, 0, payload)
    record = store.get(session)
    assert record is not None
    assert record.data == payload
    assert store.compare_and_set(session, 0, 1, ALL_BYTES[::-1])
    (scanned,) = list(store.scan())
    assert (scanned.session_id, scanned.data) == (session, ALL_BYTES[::-1])


def test_large_versions_compare_exactly(store: SessionStore) -> None:
    session = sid()
    big = 2**62 + 1  # beyond float precision: a float comparison would confuse +1 and +0
    store.create(session, big, b"x")
    assert store.compare_and_set(session, big - 1, big + 1, b"no") is False
    assert store.compare_and_set(session, big, big + 1, b"yes") is True
    record = store.get(session)
    assert record is not None
    assert record.version == big + 1


def test_empty_data_is_a_record_not_a_missing_one(store: SessionStore) -> None:
    session = sid()
    store.create(session, 0, b"")
    record = store.get(session)
    assert record is not None
    assert record.data == b""


def test_close_is_idempotent(store_url: str) -> None:
    opened = open_store(store_url, timeout_s=TIMEOUT_S)
    opened.close()
    opened.close()


def test_second_handle_on_the_same_url_sees_the_same_records(store_url: str) -> None:
    if store_url.startswith("memory"):
        pytest.skip("memory:// opens a private store per call by design")
    first = open_store(store_url, timeout_s=TIMEOUT_S)
    second = open_store(store_url, timeout_s=TIMEOUT_S)
    try:
        session = sid()
        assert first.create(session, 0, b"from first")
        assert second.create(session, 0, b"from second") is False
        assert second.compare_and_set(session, 0, 1, b"second wins")
        assert first.compare_and_set(session, 0, 1, b"first is stale") is False
        record = first.get(session)
        assert record is not None
        assert (record.version, record.data) == (1, b"second wins")
    finally:
        first.close()
        second.close()


# --- concurrency: no fork ---------------------------------------------------------------

RACERS = 8
ROUNDS = 200


@pytest.mark.requirement("RM-4.1")
def test_racing_compare_and_set_has_exactly_one_winner_per_version(store: SessionStore) -> None:
    """8 threads read the same version, then all try to commit the next one, 200 times."""
    session = sid()
    store.create(session, 0, b"start")
    barrier = threading.Barrier(RACERS, timeout=30)
    wins: list[list[int]] = [[] for _ in range(ROUNDS)]
    seen_versions: list[list[int]] = [[] for _ in range(ROUNDS)]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def racer(me: int) -> None:
        try:
            for round_no in range(ROUNDS):
                barrier.wait()
                record = store.get(session)
                assert record is not None
                barrier.wait()  # everyone has read before anyone writes
                won = store.compare_and_set(
                    session, record.version, record.version + 1, f"{me}:{round_no}".encode()
                )
                with lock:
                    seen_versions[round_no].append(record.version)
                    if won:
                        wins[round_no].append(me)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "racers did not finish"
    assert errors == []
    for round_no in range(ROUNDS):
        assert seen_versions[round_no] == [round_no] * RACERS
        assert len(wins[round_no]) == 1, f"round {round_no}: winners {wins[round_no]}"
    final = store.get(session)
    assert final is not None
    total_wins = sum(len(w) for w in wins)
    assert final.version == total_wins == ROUNDS
    assert final.data == f"{wins[-1][0]}:{ROUNDS - 1}".encode()


# --- sqlite specifics --------------------------------------------------------------------


def test_sqlite_record_survives_close_and_reopen(sqlite_store_url: str) -> None:
    session = sid()
    first = open_store(sqlite_store_url)
    assert first.create(session, 0, ALL_BYTES)
    assert first.compare_and_set(session, 0, 1, ALL_BYTES[::-1])
    first.close()
    reopened = open_store(sqlite_store_url)
    try:
        record = reopened.get(session)
        assert record is not None
        assert (record.version, record.data) == (1, ALL_BYTES[::-1])
    finally:
        reopened.close()


def test_sqlite_file_is_in_wal_mode(sqlite_store_url: str) -> None:
    store = open_store(sqlite_store_url)
    store.close()
    path = urlsplit(sqlite_store_url).path[1:]
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_sqlite_relative_and_memory_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///relative.db")
    try:
        assert isinstance(relative, SqliteStore)
        assert relative.path == "relative.db"
        assert relative.create(sid(), 0, b"x")
    finally:
        relative.close()
    assert (tmp_path / "relative.db").exists()
    memory = open_store("sqlite://:memory:")
    try:
        assert isinstance(memory, SqliteStore)
        assert memory.path == ":memory:"
    finally:
        memory.close()


def test_sqlite_call_after_close_is_unavailable(sqlite_store_url: str) -> None:
    store = open_store(sqlite_store_url)
    store.close()
    store.close()  # idempotent
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: store.get(sid()),
        "create": lambda: store.create(sid(), 0, b"x"),
        "compare_and_set": lambda: store.compare_and_set(sid(), 0, 1, b"x"),
        "delete": lambda: store.delete(sid(), 0),
        "scan": lambda: list(store.scan()),
    }
    for call in calls.values():
        with pytest.raises(StoreUnavailableError, match=r"^sqlite store is closed$"):
            call()


def test_sqlite_errors_name_the_operation_that_failed(sqlite_store_url: str) -> None:
    import sqlite3

    store = open_store(sqlite_store_url)
    wiper = sqlite3.connect(urlsplit(sqlite_store_url).path[1:], isolation_level=None)
    try:
        wiper.execute("DROP TABLE sessions")  # the file was wiped under a running store
        calls: dict[str, Callable[[], object]] = {
            "get": lambda: store.get(sid()),
            "create": lambda: store.create(sid(), 0, b"x"),
            "compare_and_set": lambda: store.compare_and_set(sid(), 0, 1, b"x"),
            "delete": lambda: store.delete(sid(), 0),
            "scan": lambda: list(store.scan()),
        }
        for name, call in calls.items():
            with pytest.raises(StoreUnavailableError,
                               match=rf"^sqlite {name} failed: no such table: sessions$"):
                call()
    finally:
        wiper.close()
        store.close()


def test_sqlite_store_that_cannot_be_opened_says_so(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError, match=r"^cannot open sqlite store: "):
        SqliteStore(str(tmp_path))  # a directory, not a database file


def test_sqlite_scan_pages_through_every_record_once(sqlite_store_url: str) -> None:
    import itertools

    store = open_store(sqlite_store_url)
    try:
        ids = {bytes([n // 256, n % 256]) * 8 for n in range(1_203)}  # > two batches
        for session in ids:
            assert store.create(session, 7, b"d")
        seen = [r.session_id for r in itertools.islice(store.scan(), 2 * len(ids))]
        assert len(seen) == len(ids)
        assert set(seen) == ids
    finally:
        store.close()


def test_sqlite_busy_timeout_is_the_store_timeout(sqlite_store_url: str) -> None:
    store = SqliteStore(urlsplit(sqlite_store_url).path[1:], timeout_s=2.5)
    try:
        # `timeout_s` bounds every call: SQLite waits that long for another writer's lock.
        conn = store._conn  # the store's own connection: the setting is per connection
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2_500
    finally:
        store.close()


@pytest.mark.requirement("RM-4.2")
def test_sqlite_writer_blocked_past_busy_timeout_is_unavailable(sqlite_store_url: str) -> None:
    import sqlite3

    store = open_store(sqlite_store_url, timeout_s=0.2)
    blocker = sqlite3.connect(urlsplit(sqlite_store_url).path[1:], isolation_level=None)
    try:
        session = sid()
        assert store.create(session, 0, b"x")
        blocker.execute("BEGIN IMMEDIATE")  # hold the write lock
        with pytest.raises(StoreUnavailableError) as info:
            store.compare_and_set(session, 0, 1, b"y")
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        blocker.execute("ROLLBACK")
        assert store.compare_and_set(session, 0, 1, b"y") is True
    finally:
        blocker.close()
        store.close()


# --- configuration errors ----------------------------------------------------------------

BAD_URLS = [
    ("memory", "scheme://"),
    ("nosuch://host/x", "unknown store scheme"),
    ("sqlite://", "names no database"),
    ("sqlite:///", "names no database"),
    ("sqlite://somehost/x.db", "host part"),
    ("sqlite:///x.db?mode=ro", "unknown query key 'mode'"),
    ("sqlite:////no/such/dir/x.db", "directory does not exist"),
    ("redis://127.0.0.1:notaport/0", "bad port"),
    ("redis://127.0.0.1:99999/0", "bad port"),
    ("redis://127.0.0.1:6379/0?prefx=a", "unknown query key 'prefx'"),
    ("redis://127.0.0.1:6379/zero", "database must be a number"),
    ("redis://127.0.0.1:6379/0?prefix=", "prefix must not be empty"),
    ("redis:///0", "no host"),
    ("postgresql://postgres@127.0.0.1:5432/test?table=bad-name", "invalid table name"),
    ("postgresql://postgres@127.0.0.1:5432/test?table=1abc", "invalid table name"),
    ("postgresql://postgres@127.0.0.1:5432/test?table=x%3Bdrop", "invalid table name"),
    ("postgresql://postgres@127.0.0.1:5432/test?tabel=x", "unknown query key 'tabel'"),
    ("postgresql://postgres@127.0.0.1:port/test", "bad port"),
    ("postgresql://postgres@127.0.0.1:5432/", "names no database"),
    ("postgres://postgres@/test", "no host"),
]


@pytest.mark.parametrize(("url", "complaint"), BAD_URLS)
def test_bad_url_is_a_config_error_naming_the_problem(url: str, complaint: str) -> None:
    with pytest.raises(StoreConfigError, match=complaint.replace("?", r"\?")):
        open_store(url)


@pytest.mark.parametrize("timeout", [0, -1.0, float("inf"), float("nan")])
def test_bad_timeout_is_a_config_error(timeout: float, tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError, match="timeout_s"):
        open_store(f"sqlite:///{tmp_path / 'x.db'}", timeout_s=timeout)


def test_memory_url_gives_memory_store() -> None:
    assert isinstance(open_store("memory://"), MemoryStore)


# --- unreachable and silent servers -------------------------------------------------------


@pytest.mark.requirement("RM-4.2")
@pytest.mark.parametrize(
    ("url", "driver_error"),
    [
        ("redis://127.0.0.1:1/0", redis.RedisError),
        ("postgresql://postgres@127.0.0.1:1/test", psycopg.Error),
    ],
)
def test_unreachable_server_is_unavailable_not_a_driver_error(
    url: str, driver_error: type[Exception]
) -> None:
    with pytest.raises(StoreUnavailableError) as info:
        open_store(url, timeout_s=1.0)
    assert isinstance(info.value.__cause__, driver_error)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()
    thread.join(timeout=2)
    for conn in accepted:
        conn.close()


def _open_in_thread(url: str, timeout_s: float) -> BaseException | None:
    """Open `url` in a thread, joined with a generous bound: a hang fails the test."""
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            open_store(url, timeout_s=timeout_s).close()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), f"open_store({url!r}) hung"
    return outcome[0]


@pytest.mark.requirement("RM-4.2")
@pytest.mark.parametrize("scheme", ["redis", "postgresql"])
def test_server_that_never_answers_is_unavailable_not_a_hang(
    silent_server: int, scheme: str
) -> None:
    url = {
        "redis": f"redis://127.0.0.1:{silent_server}/0",
        "postgresql": f"postgresql://postgres@127.0.0.1:{silent_server}/test",
    }[scheme]
    error = _open_in_thread(url, timeout_s=0.5)
    assert isinstance(error, StoreUnavailableError)


# --- connections lost mid-run ---------------------------------------------------------------


@pytest.mark.services
@pytest.mark.requirement("RM-4.2")
def test_redis_connection_killed_by_server_then_next_call_works(redis_store_url: str) -> None:
    store = open_store(redis_store_url, timeout_s=TIMEOUT_S)
    assert isinstance(store, RedisStore)
    admin = redis.Redis.from_url(redis_store_url.split("?")[0], socket_timeout=5)
    try:
        session = sid()
        assert store.create(session, 0, b"x")
        own_id = store.client.client_id()
        assert admin.client_kill_filter(_id=str(own_id)) == 1
        # The pool may notice the dead socket before sending; either way no raw error.
        with contextlib.suppress(StoreUnavailableError):
            store.compare_and_set(session, 0, 1, b"y")
        record = store.get(session)  # the store works again
        assert record is not None
        assert record.version in (0, 1)
        assert store.compare_and_set(session, record.version, 7, b"z") is True
        assert str(own_id) not in {str(c["id"]) for c in admin.client_list()}
    finally:
        admin.close()
        store.close()


@pytest.mark.services
@pytest.mark.requirement("RM-4.2")
def test_postgres_backend_terminated_fails_the_call_then_next_call_works(
    postgres_store_url: str,
) -> None:
    store = open_store(postgres_store_url, timeout_s=TIMEOUT_S)
    assert isinstance(store, PostgresStore)
    session = sid()
    assert store.create(session, 0, b"x")
    pid = store.backend_pid()
    assert pid is not None
    with psycopg.connect(postgres_store_url.split("?")[0], autocommit=True) as admin:
        row = admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
        assert row == (True,)
    try:
        with pytest.raises(StoreUnavailableError) as info:
            store.compare_and_set(session, 0, 1, b"y")
        assert isinstance(info.value.__cause__, psycopg.OperationalError)
        assert store.compare_and_set(session, 0, 1, b"y") is True  # reconnected
        assert store.backend_pid() not in (None, pid)
    finally:
        store.close()


def _relayed(url: str, relay_port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{relay_port}"
    return parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host).geturl()


@pytest.mark.services
@pytest.mark.requirement("RM-4.1", "RM-4.2")
@pytest.mark.parametrize("kind", ["redis", "postgres"])
def test_reply_lost_mid_call_is_unavailable_never_a_false_loss(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """The server commits the CAS but the reply never arrives: the store must say
    'unknown' (StoreUnavailableError), not 'you lost'; the next call works again."""
    url = request.getfixturevalue(f"{kind}_store_url")
    parts = urlsplit(url)
    relay = CuttingRelay(parts.hostname or "127.0.0.1", parts.port or 0)
    direct = open_store(url, timeout_s=TIMEOUT_S)
    relayed = open_store(_relayed(url, relay.port), timeout_s=TIMEOUT_S)
    try:
        session = sid()
        assert relayed.create(session, 0, b"v0")
        relay.drop_next_reply()
        with pytest.raises(StoreUnavailableError):
            relayed.compare_and_set(session, 0, 1, b"v1")
        assert relay.replies_dropped == 1
        committed = direct.get(session)
        assert committed is not None
        assert (committed.version, committed.data) == (1, b"v1")  # it did happen
        assert relayed.compare_and_set(session, 1, 2, b"v2") is True
        again = direct.get(session)
        assert again is not None
        assert again.version == 2
    finally:
        relayed.close()
        direct.close()
        relay.close()


# --- sqlite shared by several processes ----------------------------------------------------

PROCESSES = 3
WINS_PER_PROCESS = 25


def _increment_in_process(url: str, session: bytes, wins_wanted: int) -> list[int]:
    """Child process: commit `wins_wanted` increments by get + CAS; the versions it won."""
    store = open_store(url, timeout_s=TIMEOUT_S)
    won: list[int] = []
    try:
        for _ in range(wins_wanted * 200):  # bounded: gives up rather than spins forever
            if len(won) == wins_wanted:
                break
            record = store.get(session)
            assert record is not None
            if store.compare_and_set(session, record.version, record.version + 1, b"p"):
                won.append(record.version + 1)
    finally:
        store.close()
    return won


@pytest.mark.requirement("RM-4.1")
def test_sqlite_processes_sharing_a_file_never_fork_a_version(sqlite_store_url: str) -> None:
    import multiprocessing

    session = sid()
    setup = open_store(sqlite_store_url)
    setup.create(session, 0, b"start")
    setup.close()
    context = multiprocessing.get_context("spawn")
    with context.Pool(PROCESSES) as pool:
        pending = pool.starmap_async(
            _increment_in_process, [(sqlite_store_url, session, WINS_PER_PROCESS)] * PROCESSES
        )
        results = pending.get(timeout=120)
    all_wins = sorted(v for wins in results for v in wins)
    assert all_wins == list(range(1, PROCESSES * WINS_PER_PROCESS + 1))
    final = open_store(sqlite_store_url)
    try:
        record = final.get(session)
        assert record is not None
        assert record.version == PROCESSES * WINS_PER_PROCESS
    finally:
        final.close()


def test_sqlite_urls_are_parsed_exactly(tmp_path: Path) -> None:
    assert parse_sqlite_url("sqlite://:memory:/") == ":memory:"
    assert parse_sqlite_url(f"sqlite:///{tmp_path}/a%20b.db") == f"{tmp_path}/a b.db"
    refused = [
        ("redis://host/x.db", r"^not a sqlite URL: scheme 'redis'$"),
        (f"sqlite:///{tmp_path}/x.db#frag", r"^sqlite store URL must not have a #fragment$"),
        ("sqlite:x.db", r"^sqlite store URL names no database file: use sqlite:///file\.db$"),
        (f"sqlite:///{tmp_path}/", r"^sqlite store URL names no database file"),
        (f"sqlite:///{tmp_path}/x%00y.db", r"^sqlite store URL path contains a NUL byte$"),
        (f"sqlite:///{tmp_path}/no/x.db",
         rf"^sqlite store directory does not exist: '{tmp_path}/no'$"),
    ]
    for url, message in refused:
        with pytest.raises(StoreConfigError, match=message):
            parse_sqlite_url(url)


def test_a_file_that_is_no_database_cannot_be_initialised(tmp_path: Path) -> None:
    path = tmp_path / "not-a-db"
    path.write_bytes(b"this is not an SQLite file " * 100)
    with pytest.raises(StoreUnavailableError,
                       match=r"^cannot initialise sqlite store: file is not a database$"):
        SqliteStore(str(path))


def test_url_helpers_say_exactly_what_is_wrong() -> None:
    parts = urlsplit("redis://h:1/0?a=1&b=2")
    assert query_options(parts, allowed=("a", "b")) == {"a": "1", "b": "2"}
    assert query_options(urlsplit("redis://h/0"), allowed=()) == {}
    refused = [
        ("redis://h/0?a=1&a=2", ("a",), r"^query key 'a' given twice in store URL$"),
        ("redis://h/0?c=1", ("b", "a"), r"^unknown query key 'c' in redis store URL "
                                        r"\(known: a, b\)$"),
        ("sqlite:///x?c=1", (), r"^unknown query key 'c' in sqlite store URL \(known: none\)$"),
        ("redis://h/0?novalue", ("novalue",), r"^malformed query string in redis store URL$"),
    ]
    for url, allowed, message in refused:
        with pytest.raises(StoreConfigError, match=message):
            query_options(urlsplit(url), allowed)
    assert query_options(urlsplit("redis://h/0?a="), ("a",)) == {"a": ""}
    assert url_port(urlsplit("redis://h:6380/0")) == 6380
    assert url_port(urlsplit("redis://h/0")) is None
    with pytest.raises(StoreConfigError, match=r"^bad port in redis store URL: "):
        url_port(urlsplit("redis://h:70000/0"))


def test_timeouts_are_checked_exactly() -> None:
    assert check_timeout(1) == 1.0
    assert isinstance(check_timeout(1), float)
    assert check_timeout(0.001) == 0.001
    for wrong in (True, "1", None):
        with pytest.raises(StoreConfigError,
                           match=rf"^timeout_s must be a number of seconds, got {wrong!r}$"):
            check_timeout(wrong)  # type: ignore[arg-type]  # wrong types on purpose
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(StoreConfigError,
                           match=rf"^timeout_s must be positive and finite, got {bad!r}$"):
            check_timeout(bad)


def test_open_store_names_every_scheme_it_knows(tmp_path: Path) -> None:
    with pytest.raises(StoreConfigError,
                       match=r"^unknown store scheme 'nosuch': use memory, sqlite, redis, "
                             r"postgresql or etcd$"):
        open_store("nosuch://x")
    for url in ("", "memory", 7):
        with pytest.raises(StoreConfigError,
                           match=r"^store URL must look like scheme://\.\.\. \(a string\)$"):
            open_store(url)  # type: ignore[arg-type]  # wrong types on purpose
    # Every alias reaches its adapter (whose own URL check answers, not the factory's).
    for scheme in ("redis", "rediss", "postgresql", "postgres", "etcd", "etcds"):
        with pytest.raises(StoreConfigError) as info:
            open_store(f"{scheme}://127.0.0.1:99999/x")
        assert "unknown store scheme" not in str(info.value), scheme
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}", timeout_s=1.5)
    try:
        assert isinstance(store, SqliteStore)
    finally:
        store.close()


@pytest.mark.parametrize(("scheme", "extra"), [("redis", "redis"), ("rediss", "redis"),
                                               ("postgresql", "postgres"),
                                               ("postgres", "postgres"),
                                               ("etcd", "etcd"), ("etcds", "etcd")])
def test_a_missing_optional_dependency_is_named_for_its_scheme(
    scheme: str, extra: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    # A module set to None in sys.modules fails to import, as an uninstalled extra does.
    monkeypatch.setitem(sys.modules, f"jumpvpn_core.stores.{extra}", None)
    with pytest.raises(StoreConfigError,
                       match=rf"^{extra} store needs the '{extra}' extra installed$"):
        open_store(f"{scheme}://127.0.0.1:1/x")
