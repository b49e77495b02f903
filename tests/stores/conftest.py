"""Fixtures giving every store kind behind one URL, each isolated and cleaned up.

Redis gets a random key prefix whose keys are deleted afterwards; PostgreSQL a random
table that is dropped afterwards. The shared servers are never flushed or restarted.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import psycopg
import pytest
import redis
from psycopg import sql

from jumpvpn_core.stores import SessionStore, open_store
from tests.services import postgres_url_or_skip, redis_url_or_skip
from tests.stores.etcd_server import ETCD_ENV, EtcdCluster

STORE_KINDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.services),
    pytest.param("postgres", id="postgres", marks=pytest.mark.services),
    pytest.param("etcd", id="etcd", marks=pytest.mark.services),
]
#: Timeout given to stores under test: generous for a loaded machine, still bounded.
TIMEOUT_S = 5.0


def with_query(url: str, **query: str) -> str:
    """`url` with its query replaced by `query`."""
    return urlsplit(url)._replace(query=urlencode(query)).geturl()


def without_query(url: str) -> str:
    """`url` with no query."""
    return url.split("?")[0]


def postgres_table(url: str) -> str:
    """The `table` of a PostgreSQL store URL's query."""
    return dict(parse_qsl(urlsplit(url).query))["table"]


def plus_query(url: str, **extra: str) -> str:
    """`url` with `extra` added to (or replacing keys of) its query."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(extra)
    return parts._replace(query=urlencode(query)).geturl()


def delete_redis_prefix(base_url: str, prefix: str) -> None:
    """Delete every key under `prefix` (and only those)."""
    client = redis.Redis.from_url(base_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=prefix.replace("*", r"\*") + "*", count=500))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


def drop_postgres_table(base_url: str, table: str) -> None:
    """Drop `table` if it exists, and its row in the store's schema-version table."""
    with psycopg.connect(base_url, connect_timeout=2, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
        if conn.execute("SELECT to_regclass('jumpvpn_schema')").fetchone() != (None,):
            conn.execute("DELETE FROM jumpvpn_schema WHERE store_table = %s", (table,))


@pytest.fixture
def redis_store_url() -> Iterator[str]:
    """A Redis store URL with a unique prefix; its keys are deleted afterwards."""
    base = redis_url_or_skip()
    prefix = f"jumpvpn-test:{uuid.uuid4().hex}:"
    # The shared test server keeps no log (no persistence): say so, or the store refuses.
    yield with_query(base, prefix=prefix, durability="none")
    delete_redis_prefix(base, prefix)


@pytest.fixture
def postgres_store_url() -> Iterator[str]:
    """A PostgreSQL store URL with a unique table; the table is dropped afterwards."""
    base = postgres_url_or_skip()
    table = f"jumpvpn_test_{uuid.uuid4().hex}"
    yield with_query(base, table=table)
    drop_postgres_table(base, table)


@pytest.fixture(scope="session")
def etcd_endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`host:port,...` of an etcd for the contract suite: `JUMPVPN_ETCD_URL`'s, or one
    private member started for the session (skips, or fails if required, without etcd)."""
    external = os.environ.get(ETCD_ENV)
    if external:
        yield urlsplit(external).netloc
        return
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), size=1)
    cluster.start()
    try:
        yield ",".join(cluster.endpoints)
    finally:
        cluster.stop()


@pytest.fixture
def etcd_store_url(etcd_endpoints: str) -> str:
    """An etcd store URL with a unique key prefix (the member is private to the run)."""
    return f"etcd://{etcd_endpoints}/?prefix=/jumpvpn-test/{uuid.uuid4().hex}/"


@pytest.fixture
def sqlite_store_url(tmp_path: Path) -> str:
    """A SQLite store URL for a fresh file under tmp_path."""
    return f"sqlite:///{tmp_path / 'sessions.db'}"


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh, isolated store URL of each kind in turn."""
    fixture = {
        "memory": None,
        "sqlite": "sqlite_store_url",
        "redis": "redis_store_url",
        "postgres": "postgres_store_url",
        "etcd": "etcd_store_url",
    }[request.param]
    if fixture is None:
        return "memory://"
    url = request.getfixturevalue(fixture)
    assert isinstance(url, str)
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[SessionStore]:
    """An open store of each kind in turn, closed afterwards."""
    opened = open_store(store_url, timeout_s=TIMEOUT_S)
    yield opened
    opened.close()
