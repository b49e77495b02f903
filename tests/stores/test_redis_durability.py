"""Redis durability made explicit: refuse an unsafe server, lose nothing acknowledged on a
restart, refuse a server that went backwards, and what a replica failover keeps
(RM-3.2, RM-4.1, RM-4.2).

Each test runs a private `redis-server` on a free loopback port (never the shared one),
kills it with SIGKILL and starts it again on the same directory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jumpvpn_core.gateway import Gateway, OwnershipMode
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.stores import (
    StoreConfigError,
    StoreRolledBackError,
    StoreUnavailableError,
    open_store,
)
from jumpvpn_core.stores.redis import RedisStore
from tests.gateway.support import CLIENT, T0, make_gateway, reattach, secret_for, sid
from tests.stores.redis_server import RedisServer

pytestmark = pytest.mark.services

_FSYNC = ("--appendonly", "yes", "--appendfsync", "always")
_NO_LOG = ("--appendonly", "no")
_SESSIONS = 40


@pytest.fixture
def servers() -> Iterator[list[RedisServer]]:
    started: list[RedisServer] = []
    yield started
    for server in started:
        server.kill()


def _server(servers: list[RedisServer], directory: Path, *args: str) -> RedisServer:
    server = RedisServer(directory, *args)
    servers.append(server)
    server.start()
    return server


def _serve(gateway: Gateway) -> dict[bytes, int]:
    """Open sessions and accept one reattach each; the acknowledged store version of each."""
    acknowledged: dict[bytes, int] = {}
    for i in range(_SESSIONS):
        opened = gateway.open_session(sid(i), secret_for(sid(i)), CLIENT, T0)
        assert opened.accepted, opened
        accepted = gateway.handle_reattach(reattach(sid(i), nonce=1, version=1, now=T0 + 10))
        assert accepted.accepted, accepted
        assert accepted.store_version is not None
        acknowledged[sid(i)] = accepted.store_version
    return acknowledged


@pytest.mark.requirement("RM-4.2")
def test_a_redis_that_does_not_log_writes_is_refused_unless_the_url_opts_out(
    servers: list[RedisServer], tmp_path: Path,
) -> None:
    server = _server(servers, tmp_path / "r", *_NO_LOG)
    with pytest.raises(StoreConfigError, match="appendfsync"):
        open_store(server.url)
    with pytest.raises(StoreConfigError, match="replicas"):
        open_store(server.url + "?durability=replicas&replicas=1")
    with pytest.raises(StoreConfigError, match="durability"):
        open_store(server.url + "?durability=maybe")
    opted_out = open_store(server.url + "?durability=none")
    opted_out.close()


@pytest.mark.requirement("RM-4.2")
@pytest.mark.requirement("RM-3.2")
def test_redis_restart_after_kill_9_loses_no_acknowledged_commit(
    servers: list[RedisServer], tmp_path: Path,
) -> None:
    server = _server(servers, tmp_path / "r", *_FSYNC)
    store = open_store(server.url)  # the default, safe settings
    acknowledged = _serve(make_gateway(store, mode=OwnershipMode.SHARED))
    server.kill()
    with pytest.raises(StoreUnavailableError):
        store.get(sid(0))
    server.start()
    lost = 0
    for session, version in acknowledged.items():
        record = store.get(session)
        lost += record is None or record.version < version
    print(f"\nredis kill -9 restart (appendfsync always): {len(acknowledged)} acknowledged "
          f"commits, {lost} lost")
    assert lost == 0
    # The same node, and a fresh one, still refuse every nonce accepted before the crash.
    for node in (make_gateway(store), make_gateway(open_store(server.url))):
        for i in range(_SESSIONS):
            replay = node.handle_reattach(reattach(sid(i), nonce=1, version=1, now=T0 + 20))
            assert replay.reason is ReasonCode.REPLAY_DETECTED
    store.close()


@pytest.mark.requirement("RM-3.2")
@pytest.mark.requirement("RM-4.1")
def test_a_node_facing_a_store_that_went_backwards_refuses(
    servers: list[RedisServer], tmp_path: Path,
) -> None:
    server = _server(servers, tmp_path / "r", *_NO_LOG)
    store = open_store(server.url + "?durability=none")
    assert isinstance(store, RedisStore)
    gateway = make_gateway(store, mode=OwnershipMode.SHARED)
    acknowledged = _serve(gateway)
    assert store.revision >= 2 * _SESSIONS
    server.kill()
    server.start()  # nothing was logged: the data set is empty, the revision back to 0
    accepted_again = 0
    for i in range(_SESSIONS):
        # The captured request, replayed: it must never be accepted again.
        replay = gateway.handle_reattach(reattach(sid(i), nonce=1, version=1, now=T0 + 20))
        accepted_again += replay.accepted
        assert replay.reason is ReasonCode.STORE_UNAVAILABLE
        reopen = gateway.open_session(sid(i), secret_for(sid(i)), CLIENT, T0 + 20)
        assert not reopen.accepted  # no version 1 issued twice
    assert store.rolled_back
    with pytest.raises(StoreRolledBackError):
        store.get(sid(0))
    print(f"\nredis restarted empty under a running node: {len(acknowledged)} sessions, "
          f"{accepted_again} replays accepted, store refused from then on")
    assert accepted_again == 0
    store.close()


@pytest.mark.requirement("RM-4.2")
def test_redis_failover_keeps_writes_that_wait_acknowledged(
    servers: list[RedisServer], tmp_path: Path,
) -> None:
    primary = _server(servers, tmp_path / "p", *_NO_LOG)
    replica = _server(servers, tmp_path / "s", *_NO_LOG, "--replicaof", "127.0.0.1",
                      str(primary.port))
    admin = primary.client()
    try:
        for _ in range(100):
            info = admin.info("replication")
            if info.get("slave0", {}).get("state") == "online":
                break
            time.sleep(0.05)
        store = open_store(primary.url + "?durability=replicas&replicas=1")
        acknowledged = _serve(make_gateway(store, mode=OwnershipMode.SHARED))
    finally:
        admin.close()
    primary.kill()
    promoted = replica.client()
    try:
        promoted.replicaof("NO", "ONE")
    finally:
        promoted.close()
    after = open_store(replica.url + "?durability=none")
    lost = sum(1 for session, version in acknowledged.items()
               if (record := after.get(session)) is None or record.version < version)
    print(f"\nredis failover (WAIT 1, replica promoted): {len(acknowledged)} acknowledged "
          f"commits, {lost} lost")
    assert lost == 0
    after.close()
