"""Redis store details: glob characters in the key prefix, scans that page and skip foreign
keys, errors and log lines that say what happened, the server clock, and persistence
settings read from clients whose replies are not the usual strings.

Tests use the shared server under a unique key prefix (deleted afterwards), or a private
`redis-server` where a server setting must differ.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from jumpvpn_core.stores import StoreConfigError, StoreUnavailableError, open_store
from jumpvpn_core.stores.base import StoredSession, StoreError, StoreRolledBackError
from jumpvpn_core.stores.redis import RedisStore, open_redis_store
from tests.services import redis_url_or_skip
from tests.stores.conftest import TIMEOUT_S, delete_redis_prefix, with_query
from tests.stores.proxy import CuttingRelay
from tests.stores.redis_server import RedisServer

pytestmark = pytest.mark.services

_LOGGER = "jumpvpn_core.stores.redis"


def sid(n: int) -> bytes:
    """A 16-byte session id, distinct per `n` (the key prefix keeps tests apart)."""
    return bytes([0, 255, n % 256, n // 256]) + b"\x5a" * 12


@pytest.fixture
def base_prefix() -> Iterator[str]:
    """A unique key prefix on the shared server; every key under it is deleted afterwards."""
    base = redis_url_or_skip()
    prefix = f"jumpvpn-test:{uuid.uuid4().hex}:"
    yield prefix
    delete_redis_prefix(base, prefix)


@pytest.fixture
def admin() -> Iterator[redis.Redis]:
    """A plain client on the shared server (bytes replies)."""
    client = redis.Redis.from_url(redis_url_or_skip(), socket_timeout=TIMEOUT_S)
    yield client
    client.close()


def _store(prefix: str) -> RedisStore:
    store = open_store(with_query(redis_url_or_skip(), prefix=prefix, durability="none"),
                       timeout_s=TIMEOUT_S)
    assert isinstance(store, RedisStore)
    return store


def _by_id(records: list[StoredSession]) -> dict[bytes, tuple[int, bytes]]:
    out = {r.session_id: (r.version, r.data) for r in records}
    assert len(out) == len(records), "a record came back twice"
    return out


# --- key prefixes with glob characters --------------------------------------------------------


@pytest.mark.parametrize(("own", "other"), [
    ("a*:", "ab:"),          # '*' would match any text
    ("a?:", "ab:"),          # '?' would match any one character
    ("[ab]:", "b:xyz"),      # '[ab]' would match 'b'
    ("a\\b:", "ab:x"),       # a lone backslash would escape the next character
])
def test_scan_sees_only_its_own_prefix_even_with_glob_characters(
    base_prefix: str, own: str, other: str
) -> None:
    mine = _store(base_prefix + own)
    theirs = _store(base_prefix + other)
    try:
        # Same length, so a foreign key the pattern matched would parse as a session id.
        assert len(own) == len(other)
        own_ids = {sid(i) for i in range(5)}
        for i, session in enumerate(sorted(own_ids)):
            assert mine.create(session, i, b"mine")
        for i in range(5):
            assert theirs.create(sid(100 + i), 7, b"theirs")
        assert _by_id(list(mine.scan())) == {
            s: (i, b"mine") for i, s in enumerate(sorted(own_ids))}
        assert len(list(theirs.scan())) == 5
    finally:
        mine.close()
        theirs.close()


# --- scan -------------------------------------------------------------------------------------


def test_scan_asks_for_pages_of_500_keys_and_returns_each_record_once_when_scan_repeats(
    base_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(base_prefix)
    try:
        expected = {}
        for i in range(30):
            session = sid(i)
            assert store.create(session, i, bytes([i]))
            expected[session] = (i, bytes([i]))
        calls: list[dict[str, Any]] = []
        returned: list[Any] = []
        real_scan = store.client.scan

        def repeating_scan(cursor: int = 0, **kwargs: Any) -> tuple[int, list[Any]]:
            # SCAN may return a key more than once (documented): replay earlier keys.
            calls.append(dict(kwargs))
            next_cursor, keys = real_scan(cursor, **kwargs)
            page = [*keys, *returned]
            returned.extend(keys)
            return next_cursor, page

        monkeypatch.setattr(store.client, "scan", repeating_scan)
        assert _by_id(list(store.scan())) == expected
        assert calls
        assert all(call == {"match": base_prefix + "*", "count": 500} for call in calls)
    finally:
        store.close()


def test_scan_skips_and_logs_keys_that_are_no_session_id(
    base_prefix: str, admin: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(base_prefix)
    try:
        expected = {}
        for i in range(40):
            session = sid(i)
            assert store.create(session, i, b"ok")
            expected[session] = (i, b"ok")
        strays = [f"{base_prefix}stray-{i}".encode() for i in range(4)]
        long_stray = (base_prefix + "z" * 150).encode()
        for key in [*strays, long_stray]:
            admin.hset(key, mapping={"v": b"1", "d": b"x"})
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=_LOGGER):
            records = list(store.scan())
        assert _by_id(records) == expected  # every record, not only those before a stray
        messages = sorted(r.getMessage() for r in caplog.records if r.name == _LOGGER)
        assert messages == sorted(
            "skipping a redis key under the store prefix that is not a session id: "
            f"{key[:80]!r}" for key in [*strays, long_stray])
        assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == _LOGGER)
    finally:
        store.close()


def test_scan_skips_and_logs_keys_of_another_type_instead_of_failing(
    base_prefix: str, admin: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A string SET under the prefix, named like a session or not, fails its own read with
    WRONGTYPE: the scan skips it with a warning and returns every record (one such key used
    to fail the whole scan, and with it a gateway's resume)."""
    prefix = base_prefix + "long-" * 4  # a key name past the 80 characters a log line shows
    store = _store(prefix)
    try:
        expected = {}
        for i in range(10):
            assert store.create(sid(i), i, b"ok")
            expected[sid(i)] = (i, b"ok")
        named = f"{prefix}{sid(99).hex()}".encode()
        assert len(named) > 80
        admin.set(named, b"a string")
        admin.set(f"{prefix}plain".encode(), b"a string")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=_LOGGER):
            records = list(store.scan())
        assert _by_id(records) == expected
        messages = sorted(r.getMessage() for r in caplog.records if r.name == _LOGGER)
        assert messages == sorted([
            "skipping a redis key under the store prefix that is not a session id: "
            f"{f'{prefix}plain'.encode()!r}",
            "skipping a redis key under the store prefix that is not a session record "
            f"(ResponseError): {named[:80]!r}",
        ])
    finally:
        store.close()


# --- failures name the call -----------------------------------------------------------------


def test_calls_on_an_unreachable_server_fail_naming_the_call(redis_store_url: str) -> None:
    parts = urlsplit(redis_store_url)
    relay = CuttingRelay(parts.hostname or "127.0.0.1", parts.port or 6379)
    relayed = parts._replace(netloc=f"127.0.0.1:{relay.port}").geturl()
    store = open_store(relayed, timeout_s=TIMEOUT_S)
    try:
        session = sid(1)
        assert store.create(session, 3, b"x")
        relay.close()
        with pytest.raises(StoreUnavailableError, match=r"^redis get failed: \w+"):
            store.get(session)
        with pytest.raises(StoreUnavailableError, match=r"^redis create failed: \w+"):
            store.create(sid(2), 0, b"x")
        with pytest.raises(StoreUnavailableError, match=r"^redis compare_and_set failed: \w+"):
            store.compare_and_set(session, 3, 4, b"y")
        with pytest.raises(StoreUnavailableError, match=r"^redis delete failed: \w+"):
            store.delete(session, 3)
        with pytest.raises(StoreUnavailableError, match=r"^redis scan failed: \w+"):
            list(store.scan())
        assert isinstance(store, RedisStore)
        with pytest.raises(StoreUnavailableError, match=r"^redis time failed: \w+"):
            store.time_ms()
    finally:
        store.close()
        relay.close()


def test_delete_failure_logs_the_call_once(
    redis_store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    parts = urlsplit(redis_store_url)
    relay = CuttingRelay(parts.hostname or "127.0.0.1", parts.port or 6379)
    relayed = parts._replace(netloc=f"127.0.0.1:{relay.port}").geturl()
    store = open_store(relayed, timeout_s=TIMEOUT_S)
    try:
        assert store.create(sid(2), 0, b"x")
        relay.close()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=_LOGGER), \
                pytest.raises(StoreUnavailableError):
            store.delete(sid(2), 0)
        lines = [r.getMessage() for r in caplog.records if r.name == _LOGGER]
        assert len(lines) == 1
        assert lines[0].startswith("redis store delete failed (")
    finally:
        store.close()
        relay.close()


# --- the server clock -----------------------------------------------------------------------


def _server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_time_ms_is_the_server_clock_in_milliseconds(redis_store_url: str) -> None:
    store = open_store(redis_store_url, timeout_s=TIMEOUT_S)
    assert isinstance(store, RedisStore)
    try:
        before = _server_ms(store.client)
        now = store.time_ms()
        after = _server_ms(store.client)
        assert type(now) is int
        assert before <= now <= after
    finally:
        store.close()


def test_time_ms_converts_seconds_and_microseconds_exactly(
    redis_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(redis_store_url, timeout_s=TIMEOUT_S)
    assert isinstance(store, RedisStore)
    try:
        monkeypatch.setattr(store.client, "time", lambda: (1_700_000_000, 999_000))
        assert store.time_ms() == 1_700_000_000_999
        monkeypatch.setattr(store.client, "time", lambda: (b"1700000001", b"1999"))
        assert store.time_ms() == 1_700_000_001_001
    finally:
        store.close()


# --- persistence settings read through a client passed in -------------------------------------


def _raw_config_replies(client: redis.Redis) -> None:
    """CONFIG GET answered as the server's raw pairs (bytes), as a custom callback may."""
    def raw(reply: Any, **_: Any) -> dict[Any, Any]:
        if isinstance(reply, dict):  # RESP3: a map
            return dict(reply)
        return dict(zip(reply[::2], reply[1::2], strict=True))  # RESP2: flat pairs

    client.set_response_callback("CONFIG GET", raw)


def test_persistence_settings_given_as_bytes_are_read(tmp_path: Path) -> None:
    # A directory name that is not UTF-8 must not break the check (it is only shown).
    odd_dir = os.fsdecode(b"aof-\xff")
    server = RedisServer(tmp_path / "r", "--appendonly", "yes", "--appendfsync", "always",
                         "--appenddirname", odd_dir)
    server.start()
    try:
        client = server.client()
        _raw_config_replies(client)
        assert any(isinstance(k, bytes) for k in client.config_get("append*"))
        store = RedisStore(client, prefix="p:")
        assert store.create(sid(0), 1, b"x")
        store.close()
        client.config_set("appendfsync", "everysec")
        with pytest.raises(StoreConfigError,
                           match=r"\(appendonly=yes, appendfsync=everysec\)"):
            RedisStore(client, prefix="p:")
        client.close()
    finally:
        server.kill()


def test_a_persistence_setting_reported_without_value_is_shown_empty(admin: redis.Redis) -> None:
    admin.set_response_callback(
        "CONFIG GET", lambda reply, **_: {"appendonly": None, "appendfsync": b"no"})
    with pytest.raises(StoreConfigError, match=r"\(appendonly=, appendfsync=no\)"):
        RedisStore(admin, prefix=f"jumpvpn-test:{uuid.uuid4().hex}:")


@pytest.mark.parametrize(("reply", "shown"), [
    ({"appendonly": None}, "(appendonly=, appendfsync=)"),
    ({"appendfsync": None}, "(appendonly=, appendfsync=)"),
    ({}, "(appendonly=, appendfsync=)"),
])
def test_persistence_settings_the_server_does_not_report_are_shown_empty(
    admin: redis.Redis, reply: dict[str, None], shown: str
) -> None:
    admin.set_response_callback("CONFIG GET", lambda _reply, **_: dict(reply))
    with pytest.raises(StoreConfigError) as info:
        RedisStore(admin, prefix=f"jumpvpn-test:{uuid.uuid4().hex}:")
    assert shown in str(info.value)


# --- durability settings of real servers ------------------------------------------------------


def test_a_server_that_does_not_log_every_write_is_refused_with_the_whole_story(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path / "r", "--appendonly", "yes", "--appendfsync", "everysec")
    server.start()
    try:
        with pytest.raises(StoreConfigError) as info:
            open_store(server.url, timeout_s=TIMEOUT_S)
        assert str(info.value) == (
            "redis server does not log every write before answering (appendonly=yes, "
            "appendfsync=everysec): a restart would lose acknowledged commits. Set appendonly "
            "yes and appendfsync always, or choose durability=replicas&replicas=N or "
            "durability=none in the store URL")
    finally:
        server.kill()


def test_a_server_that_refuses_config_get_is_refused_saying_what_to_do(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r", "--rename-command", "CONFIG", "")
    server.start()
    try:
        with pytest.raises(StoreConfigError) as info:
            open_store(server.url, timeout_s=TIMEOUT_S)
        assert str(info.value) == (
            "cannot check redis persistence (CONFIG GET refused): enable appendonly with "
            "appendfsync always and allow CONFIG GET, or choose durability=replicas or "
            "durability=none in the store URL")
        assert isinstance(info.value.__cause__, redis.ResponseError)
        opted_out = open_store(server.url + "?durability=none", timeout_s=TIMEOUT_S)
        opted_out.close()
    finally:
        server.kill()


def test_opening_with_durability_none_warns_that_commits_can_be_lost(
    redis_store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=_LOGGER):
        store = open_store(redis_store_url, timeout_s=TIMEOUT_S)
    store.close()
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == _LOGGER] == [
        (logging.WARNING, "redis store opened with durability=none: a restart of the server "
                          "can lose acknowledged commits")]


def test_replica_is_refused_and_a_write_no_replica_acknowledged_is_unknown(
    tmp_path: Path,
) -> None:
    primary = RedisServer(tmp_path / "p", "--appendonly", "no")
    primary.start()
    replica = RedisServer(tmp_path / "s", "--appendonly", "yes", "--appendfsync", "always",
                          "--replicaof", "127.0.0.1", str(primary.port))
    try:
        replica.start()
        admin = primary.client()
        for _ in range(200):
            slave = admin.info("replication").get("slave0", {})
            if isinstance(slave, dict) and slave.get("state") == "online":
                break
            time.sleep(0.05)
        admin.close()
        for query in ("", "?durability=replicas&replicas=1"):
            with pytest.raises(StoreConfigError,
                               match=r"^redis server is a replica: point the store at the "
                                     r"primary$"):
                open_store(replica.url + query, timeout_s=TIMEOUT_S)
        client = primary.client()
        store = RedisStore(client, prefix="p:", durability="replicas", replicas=1,
                           wait_timeout_s=1.0)
        assert store.create(sid(0), 1, b"x")
        # A user that may not run WAIT: the write's fate is unknown, and the error says why.
        secret = uuid.uuid4().hex
        client.acl_setuser("nowait", enabled=True, passwords=[f"+{secret}"], keys=["*"],
                           channels=["*"], commands=["+@all", "-wait"])
        limited = redis.Redis(host="127.0.0.1", port=primary.port, username="nowait",
                              password=secret, socket_timeout=TIMEOUT_S)
        unwaited = RedisStore(limited, prefix="p:", durability="replicas", replicas=1)
        with pytest.raises(StoreUnavailableError, match=r"^redis wait failed: \w+"):
            unwaited.create(sid(2), 1, b"x")
        limited.close()
        replica.kill()
        assert store.create(sid(0), 1, b"again") is False  # refused: nothing to wait for
        assert store.compare_and_set(sid(0), 9, 10, b"y") is False
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError,
                           match=r"^redis create reached 0 of 1 replicas in time; its outcome "
                                 r"after a failover is unknown$"):
            store.create(sid(1), 1, b"x")
        assert time.monotonic() - started >= 0.9  # it waited for the replica, 1 s
        with pytest.raises(StoreUnavailableError, match=r"^redis delete reached 0 of 1 "):
            store.delete(sid(0), 1)
        store.close()
        client.close()
    finally:
        replica.kill()
        primary.kill()


# --- damaged data on the server -------------------------------------------------------------


def test_damaged_records_come_back_as_records_that_will_not_decode(
    base_prefix: str, admin: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(base_prefix)
    try:
        cases: dict[bytes, tuple[dict[str, bytes], tuple[int, bytes]]] = {
            sid(1): ({"v": b"12345678901234567890", "d": b"ok"}, (12345678901234567890, b"ok")),
            sid(2): ({"v": b"123456789012345678901", "d": b"x"}, (0, b"x")),
            sid(3): ({"v": b"abc", "d": b"x"}, (0, b"x")),
            sid(4): ({"d": b"x"}, (0, b"x")),
            sid(5): ({"v": b"7"}, (7, b"")),
            sid(6): ({"v": b"-1", "d": b"x"}, (0, b"x")),
        }
        for session, (fields, _) in cases.items():
            for field, value in fields.items():
                admin.hset(store.key(session), field, value)
        damaged = sorted(s.hex() for s in cases if s != sid(1))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=_LOGGER):
            for session, (_, expected) in cases.items():
                record = store.get(session)
                assert record is not None
                assert (record.session_id, record.version, record.data) == (session, *expected)
        assert sorted(r.getMessage() for r in caplog.records if r.name == _LOGGER) == [
            f"redis record of session {h} is damaged" for h in damaged]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=_LOGGER):
            scanned = _by_id(list(store.scan()))
        assert scanned == {s: expected for s, (_, expected) in cases.items()}
        assert len([r for r in caplog.records if r.name == _LOGGER]) == len(damaged)
    finally:
        store.close()


def test_a_damaged_revision_counter_is_an_error_not_a_guess(
    base_prefix: str, admin: redis.Redis
) -> None:
    store = _store(base_prefix)
    try:
        assert store.create(sid(0), 1, b"x")
        admin.set(base_prefix + "@revision", b"not a number")
        with pytest.raises(StoreError, match=r"^redis get script returned an unexpected reply$"):
            store.get(sid(0))
        with pytest.raises(StoreError,
                           match=r"^redis script returned \[0\], expected \[0\|1, revision\]$"):
            store.create(sid(0), 1, b"x")  # refused, and no revision to show
    finally:
        store.close()


def test_a_reply_without_a_usable_revision_is_an_error(
    base_prefix: str, admin: redis.Redis
) -> None:
    store = RedisStore(admin, prefix=base_prefix, durability="none")
    assert store.create(sid(0), 1, b"x")
    admin.set_response_callback("EVALSHA", lambda reply, **_: [*reply[:-1], b"?"])
    with pytest.raises(StoreError, match=r"^redis reply carried no revision$"):
        store.get(sid(0))
    assert store.rolled_back is False


def test_a_data_set_that_went_backwards_is_refused_from_then_on(
    base_prefix: str, admin: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(base_prefix)
    try:
        for i in range(3):
            assert store.create(sid(i), 1, b"x")
        assert store.revision == 3
        assert store.get(sid(0)) is not None  # same revision again: fine
        assert store.revision == 3
        admin.delete(base_prefix + "@revision")  # as after a restart without persistence
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger=_LOGGER), \
                pytest.raises(StoreRolledBackError) as info:
            store.create(sid(9), 1, b"x")
        assert str(info.value) == (
            "redis data set went backwards (revision 1 < 3 already seen): restarted without "
            "persistence, restored, or failed over to a lagging replica")
        assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == _LOGGER] == [
            (logging.ERROR, "redis store went backwards: revision 1 after 3 was seen")]
        assert store.rolled_back
        assert store.revision == 3
        for call in (lambda: store.get(sid(0)), lambda: list(store.scan())):
            with pytest.raises(StoreRolledBackError,
                               match=r"^redis store went backwards earlier; refusing until "
                                     r"reopened by an operator$"):
                call()
    finally:
        store.close()


# --- options and their checks ---------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"prefix": ""}, "redis key prefix must not be empty"),
    ({"durability": "maybe"},
     "redis durability must be one of fsync, replicas, none, got 'maybe'"),
    ({"durability": "none", "replicas": -1}, "redis replicas must be a count >= 0, got -1"),
    ({"durability": "none", "replicas": True}, "redis replicas must be a count >= 0, got True"),
    ({"durability": "replicas"}, "redis durability=replicas needs replicas=N (N >= 1)"),
])
def test_bad_store_options_are_refused_saying_exactly_why(
    admin: redis.Redis, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(StoreConfigError) as info:
        RedisStore(admin, **{"prefix": "jumpvpn-test:never-written:", **kwargs})
    assert str(info.value) == message


def test_a_passed_client_is_not_closed_by_default(
    base_prefix: str, admin: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[bool] = []
    monkeypatch.setattr(admin, "close", lambda: closed.append(True))
    store = RedisStore(admin, prefix=base_prefix, durability="none")
    store.close()
    assert closed == []


def test_durability_none_never_waits_for_replicas(base_prefix: str, admin: redis.Redis) -> None:
    store = RedisStore(admin, prefix=base_prefix, durability="none", replicas=2,
                       wait_timeout_s=0.05)
    assert store.create(sid(0), 1, b"x") is True
    assert store.delete(sid(0), 1) is True


def test_a_server_returning_another_script_digest_is_refused(
    base_prefix: str, admin: redis.Redis
) -> None:
    admin.set_response_callback("SCRIPT LOAD", lambda reply, **_: "0" * 40)
    with pytest.raises(StoreError, match=r"^redis returned an unexpected script SHA1$"):
        RedisStore(admin, prefix=base_prefix, durability="none")


def test_an_unreachable_server_fails_the_open_naming_the_connect() -> None:
    with pytest.raises(StoreUnavailableError, match=r"^redis connect failed: ConnectionError: "):
        open_store("redis://127.0.0.1:1/0?durability=none", timeout_s=TIMEOUT_S)


def _shared(path: str = "/0", **query: str) -> str:
    parts = urlsplit(redis_url_or_skip())
    return with_query(parts._replace(path=path).geturl(), **query)


@pytest.mark.parametrize(("url", "message"), [
    ("redis://127.0.0.1:1/0#frag", "redis store URL must not have a #fragment"),
    ("redis://:1/0", "redis store URL has no host: use redis://host:port/db"),
    ("redis://127.0.0.1:1/123456", "redis database must be a number, got '123456'"),
    ("redis://127.0.0.1:1/" + "x" * 30, "redis database must be a number, got '" + "x" * 20 + "'"),
    ("redis://127.0.0.1:1/0?replicas=1000", "redis replicas must be a count, got '1000'"),
    ("redis://127.0.0.1:1/0?replicas=" + "y" * 30,
     "redis replicas must be a count, got '" + "y" * 20 + "'"),
    ("http://127.0.0.1:1/0", "not a redis URL: scheme 'http'"),
    ("rediss://127.0.0.1:1/0?ssl_cert_reqs=maybe",
     "ssl_cert_reqs must be required, optional or none"),
    ("rediss://127.0.0.1:1/0?ssl_check_hostname=yes", "ssl_check_hostname must be true or false"),
])
def test_bad_redis_urls_are_refused_saying_exactly_why(url: str, message: str) -> None:
    with pytest.raises(StoreConfigError) as info:
        open_redis_store(url, timeout_s=TIMEOUT_S)
    assert str(info.value) == message


def test_url_options_reach_the_store(base_prefix: str) -> None:
    store = open_store(_shared(prefix=base_prefix, durability="none", replicas="100"),
                       timeout_s=TIMEOUT_S)
    assert isinstance(store, RedisStore)
    try:
        assert store.prefix == base_prefix
        assert store.key(b"\x01\xab") == base_prefix + "01ab"
        assert store.create(sid(0), 1, b"x") is True  # durability=none: replicas unused
    finally:
        store.close()
    with pytest.raises(StoreConfigError) as info:
        open_store(_shared(prefix=base_prefix, durability="replicas", replicas="2"),
                   timeout_s=TIMEOUT_S)
    assert str(info.value).startswith("redis durability=replicas needs 2 connected replicas, "
                                      "the server has ")


def test_url_defaults_are_db_0_and_the_default_prefix() -> None:
    parts = urlsplit(redis_url_or_skip())
    if parts.port not in (None, 6379):
        pytest.skip("the shared server is not on the default port")
    for url in ("redis://127.0.0.1?durability=none", "redis://127.0.0.1/?durability=none"):
        store = open_store(url, timeout_s=TIMEOUT_S)
        assert isinstance(store, RedisStore)
        try:
            assert store.prefix == "jumpvpn:"
            assert store.client.connection_pool.connection_kwargs["db"] == 0
        finally:
            store.close()
        store = open_redis_store(url)  # the documented default timeout: 2 s
        try:
            kwargs = store.client.connection_pool.connection_kwargs
            assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (2.0, 2.0)
            assert store.time_ms() > 0
        finally:
            store.close()


def test_the_database_of_the_url_is_used(base_prefix: str) -> None:
    store = open_store(_shared("/3", prefix=base_prefix, durability="none"), timeout_s=TIMEOUT_S)
    other = redis.Redis.from_url(_shared("/3").split("?")[0], socket_timeout=TIMEOUT_S)
    try:
        assert store.create(sid(0), 1, b"x")
        assert other.exists(base_prefix + sid(0).hex()) == 1
    finally:
        store.close()
        for key in other.scan_iter(match=base_prefix + "*"):
            other.delete(key)
        other.close()
    with pytest.raises(StoreUnavailableError, match=r"^redis connect failed: "):
        open_store(_shared("/12345", durability="none"), timeout_s=TIMEOUT_S)


def test_user_and_password_of_the_url_are_used(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r")
    server.start()
    try:
        admin = server.client()
        admin.acl_setuser("ops", enabled=True, passwords=["+p@ss:w/rd"], keys=["*"],
                          channels=["*"], commands=["+@all"])
        admin.acl_setuser("default", enabled=False)
        admin.close()
        url = f"redis://ops:p%40ss%3Aw%2Frd@127.0.0.1:{server.port}/0?durability=none"
        store = open_store(url, timeout_s=TIMEOUT_S)
        assert store.create(sid(0), 1, b"x")
        store.close()
        bad = f"redis://ops:wrong@127.0.0.1:{server.port}/0?durability=none"
        with pytest.raises(StoreUnavailableError, match=r"^redis connect failed: "):
            open_store(bad, timeout_s=TIMEOUT_S)
        anonymous = f"redis://127.0.0.1:{server.port}/0?durability=none"
        with pytest.raises(StoreUnavailableError, match=r"^redis connect failed: "):
            open_store(anonymous, timeout_s=TIMEOUT_S)
    finally:
        server.kill()


def test_calls_work_after_the_server_lost_its_scripts(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r")
    server.start()
    try:
        store = open_store(server.url + "?prefix=p:&durability=none", timeout_s=TIMEOUT_S)
        assert isinstance(store, RedisStore)
        admin = server.client()
        admin.script_flush()  # as after a restart or a failover
        assert store.create(sid(0), 1, b"a") is True
        admin.script_flush()
        assert store.compare_and_set(sid(0), 1, 2, b"b") is True
        admin.script_flush()
        record = store.get(sid(0))
        assert record is not None
        assert (record.version, record.data) == (2, b"b")
        admin.script_flush()
        assert store.delete(sid(0), 2) is True
        assert store.get(sid(0)) is None
        assert admin.get("p:@revision") == b"3"
        admin.close()
        store.close()
    finally:
        server.kill()


def test_a_failing_close_names_the_call(
    redis_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(redis_store_url, timeout_s=TIMEOUT_S)
    assert isinstance(store, RedisStore)
    real_close = store.client.close

    def failing_close() -> None:
        real_close()
        raise OSError("socket already gone")

    monkeypatch.setattr(store.client, "close", failing_close)
    with pytest.raises(StoreUnavailableError,
                       match=r"^redis close failed: OSError: socket already gone$"):
        store.close()


class _CapturedError(Exception):
    """Raised by the client stand-in once it has seen the options."""


@pytest.mark.parametrize(("query", "expected"), [
    ("ssl_cert_reqs=none&ssl_check_hostname=false",
     {"ssl": True, "ssl_cert_reqs": "none", "ssl_check_hostname": False}),
    ("ssl_cert_reqs=optional&ssl_check_hostname=true",
     {"ssl": True, "ssl_cert_reqs": "optional", "ssl_check_hostname": True}),
    ("ssl_cert_reqs=required&ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem",
     {"ssl": True, "ssl_cert_reqs": "required", "ssl_ca_certs": "/ca.pem",
      "ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem"}),
])
def test_tls_options_of_the_url_reach_the_client(
    monkeypatch: pytest.MonkeyPatch, query: str, expected: dict[str, Any]
) -> None:
    seen: dict[str, Any] = {}

    def client(**kwargs: Any) -> redis.Redis:
        seen.update(kwargs)
        raise _CapturedError

    monkeypatch.setattr(redis, "Redis", client)
    with pytest.raises(_CapturedError):
        open_redis_store(f"rediss://u:p%40w@127.0.0.1:1/2?{query}", timeout_s=1.5)
    assert {k: v for k, v in seen.items() if k.startswith("ssl")} == expected
    assert (seen["host"], seen["port"], seen["db"]) == ("127.0.0.1", 1, 2)
    assert (seen["username"], seen["password"]) == ("u", "p@w")
    assert (seen["socket_timeout"], seen["socket_connect_timeout"]) == (1.5, 1.5)
    assert seen["decode_responses"] is False
    assert seen["retry"].get_retries() == 0  # a lost reply is never sent again


def test_the_wait_for_replicas_uses_the_store_timeout_in_milliseconds(
    base_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WAIT gets `wait_timeout_s` in whole milliseconds (at least 1): 2 s by default, and the
    URL's `timeout_s` when the store is opened from a URL."""
    waits: list[tuple[int, int]] = []

    def wait(_client: redis.Redis, replicas: int, timeout_ms: int) -> int:
        waits.append((replicas, timeout_ms))
        return replicas

    # A primary that reports one connected replica and acknowledges every WAIT.
    monkeypatch.setattr(redis.Redis, "info",
                        lambda _client, *_a, **_k: {"role": "master", "connected_slaves": 1})
    monkeypatch.setattr(redis.Redis, "wait", wait)
    client = redis.Redis.from_url(redis_url_or_skip(), socket_timeout=TIMEOUT_S)
    try:
        for timeout, expected in ((None, 2_000), (1.5, 1_500), (0.0004, 1)):
            waits.clear()
            options: dict[str, Any] = {} if timeout is None else {"wait_timeout_s": timeout}
            store = RedisStore(client, prefix=base_prefix, durability="replicas", replicas=1,
                               **options)
            assert store.create(sid(0), 1, b"x") is True
            assert store.delete(sid(0), 1) is True
            assert waits == [(1, expected), (1, expected)], timeout
    finally:
        client.close()
    waits.clear()
    opened = open_store(_shared(prefix=base_prefix, durability="replicas", replicas="1"),
                        timeout_s=0.75)
    assert isinstance(opened, RedisStore)
    store = opened
    try:
        assert store.create(sid(1), 1, b"x") is True
        assert waits == [(1, 750)]
    finally:
        store.delete(sid(1), 1)
        store.close()
