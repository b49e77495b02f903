"""Split-brain and partial failure on real servers (RM-4.1, RM-4.2).

Four OS processes (spawn), each a gateway node in shared-store mode, race for 1,000
sessions: in every round every node sends a valid reattach request for every session, so
every session is contended by every node at once. Each node records a history (one entry
per request: invoked, then ok with the committed version or fail with a reason). The
checker then proves, per session, against the store's final record:

* the accepted commits form one chain with no fork (no two accepts of one version),
* every acknowledged accept is in that chain (its nonce is marked in the committed replay
  window and its version is not beyond the committed one),
* zero dual bindings (no binding version handed out twice),
* every request was answered.

The fault variant cuts the test's own store connections during the race (Redis
`CLIENT KILL` by this run's client name, PostgreSQL `pg_terminate_backend` of this run's
`application_name`); the shared servers are never restarted or flushed. Each run uses its
own Redis key prefix or PostgreSQL table, removed afterwards.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import psycopg
import pytest
import redis
from psycopg import sql
from redis.backoff import NoBackoff
from redis.retry import Retry

from jumpvpn_core.effects import SendReattachAccept
from jumpvpn_core.gateway import Gateway, GatewayPolicy, OwnershipMode, decode_record, encode_state
from jumpvpn_core.phases import Role
from jumpvpn_core.replay import ReplayVerdict, check_nonce
from jumpvpn_core.state import ServerSide, new_session
from jumpvpn_core.stores import open_store
from jumpvpn_core.stores.base import SessionStore, StoreUnavailableError
from jumpvpn_core.stores.redis import RedisStore
from tests.figures import report_figures
from tests.gateway.support import CLIENT, T0, reattach, secret_for, sid
from tests.services import postgres_url_or_skip, redis_url_or_skip

NODES = ("n0", "n1", "n2", "n3")
SESSIONS = 1_000
ROUNDS = 2
STORE_TIMEOUT_S = 5.0
RUN_TIMEOUT_S = 90.0

# One history entry: (node, session index, round, nonce, outcome, reason, store version,
# accepted binding version).
Entry = tuple[str, int, int, int, str, str | None, int | None, int | None]


def _open(kind: str, url: str, name: str) -> SessionStore:
    """The store as seen by one process, its connections labelled with `name`."""
    if kind == "etcd":
        return open_store(url, timeout_s=STORE_TIMEOUT_S)
    if kind == "postgres":
        os.environ["PGAPPNAME"] = name  # libpq labels every connection of this process
        return open_store(url, timeout_s=STORE_TIMEOUT_S)
    parts = urlsplit(url)
    prefix = parse_qs(parts.query)["prefix"][0]
    client = redis.Redis(
        host=parts.hostname or "127.0.0.1", port=parts.port or 6379,
        db=int(parts.path.lstrip("/") or 0), client_name=name,
        socket_connect_timeout=STORE_TIMEOUT_S, socket_timeout=STORE_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    return RedisStore(client, prefix=prefix, durability="none",  # no persistence here
                      owns_client=True)


def _node(index: int, kind: str, url: str, name: str, barrier: Any, out: Any,
          sessions: int = SESSIONS) -> None:
    """One gateway node: race through every session, every round; report the history."""
    node = NODES[index]
    # In the fault run the killer is already cutting this run's connections while the
    # nodes connect; a connection cut during its handshake is retried, not fatal.
    for _attempt in range(100):
        try:
            store = _open(kind, url, name)
            break
        except StoreUnavailableError:
            time.sleep(0.05)
    else:
        raise StoreUnavailableError(f"node {node} could not connect to the store")
    policy = GatewayPolicy(ownership=OwnershipMode.SHARED, node_ids=NODES,
                           global_flood_limit=10_000_000, source_flood_limit=10_000_000,
                           max_sessions=sessions)
    gateway = Gateway(store, policy, node_id=node)
    history: list[Entry] = []
    try:
        for rnd in range(ROUNDS):
            barrier.wait(timeout=RUN_TIMEOUT_S)
            now = T0 + 100 * (rnd + 1)
            for s in range(sessions):
                nonce = rnd * len(NODES) + index + 1
                request = reattach(sid(s), nonce=nonce, version=rnd + 1, now=now)
                try:
                    result = gateway.handle_reattach(request)
                except Exception as exc:  # recorded, and the checker fails the test on it
                    history.append((node, s, rnd, nonce, "error", repr(exc), None, None))
                    continue
                accepts = [e for e in result.effects if isinstance(e, SendReattachAccept)]
                if result.accepted:
                    history.append((node, s, rnd, nonce, "ok", None, result.store_version,
                                    accepts[0].state_version if accepts else None))
                else:
                    reason = None if result.reason is None else result.reason.value
                    history.append((node, s, rnd, nonce, "fail", reason, None, None))
    finally:
        out.put((node, history))
        store.close()


class _Killer(threading.Thread):
    """Cuts this run's own store connections every `period_s` until stopped."""

    def __init__(self, kind: str, base_url: str, name: str, period_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.kind, self.base_url, self.name, self.period_s = kind, base_url, name, period_s
        self.stop = threading.Event()
        self.kills = 0

    def run(self) -> None:
        if self.kind == "postgres":
            with psycopg.connect(self.base_url, autocommit=True, connect_timeout=2) as conn:
                while not self.stop.wait(self.period_s):
                    rows = conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = %s AND pid <> pg_backend_pid()",
                        (self.name,),
                    ).fetchall()
                    self.kills += sum(1 for (ok,) in rows if ok)
            return
        client = redis.Redis.from_url(self.base_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            while not self.stop.wait(self.period_s):
                for info in client.client_list():
                    if info.get("name") == self.name:
                        self.kills += int(client.client_kill_filter(_id=info["id"]))
        finally:
            client.close()


@pytest.fixture(params=["redis", "postgres"])
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """(kind, base URL, store URL) with a unique prefix or table, removed afterwards."""
    kind: str = request.param
    run = uuid.uuid4().hex[:12]
    if kind == "redis":
        base = redis_url_or_skip()
        prefix = f"jvtest:race:{run}:"
        # The shared test server keeps no log: the URL says so (durability=none).
        query = urlencode({"prefix": prefix, "durability": "none"})
        yield kind, base, urlsplit(base)._replace(query=query).geturl()
        client = redis.Redis.from_url(base, socket_timeout=5)
        try:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1_000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start:start + 500])
        finally:
            client.close()
        return
    base = postgres_url_or_skip()
    table = f"jvtest_race_{run}"
    yield kind, base, urlsplit(base)._replace(query=urlencode({"table": table})).geturl()
    with psycopg.connect(base, autocommit=True, connect_timeout=2) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


def _seed(url: str, sessions: int = SESSIONS) -> None:
    store = open_store(url, timeout_s=STORE_TIMEOUT_S)
    try:
        from jumpvpn_core.events import Attach
        from jumpvpn_core.machine import step

        for s in range(sessions):
            born = new_session(Role.SERVER, sid(s), secret_for(sid(s)), T0)
            state, _ = step(born, Attach(T0, CLIENT))
            assert store.create(sid(s), 1, encode_state(state))
    finally:
        store.close()


def _race(kind: str, base: str, url: str, *, faults: bool) -> dict[str, Any]:
    _seed(url)
    name = f"jvrace-{uuid.uuid4().hex[:10]}"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(NODES))
    out = ctx.Queue()
    procs = [ctx.Process(target=_node, args=(i, kind, url, name, barrier, out))
             for i in range(len(NODES))]
    killer = _Killer(kind, base, name) if faults else None
    for proc in procs:
        proc.start()
    if killer is not None:
        killer.start()
    histories: dict[str, list[Entry]] = {}
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while len(histories) < len(NODES) and time.monotonic() < deadline:
            try:
                node, history = out.get(timeout=1.0)
            except queue.Empty:
                continue
            histories[node] = history
    finally:
        if killer is not None:
            killer.stop.set()
            killer.join(10)
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    assert len(histories) == len(NODES), "a node did not report within the time bound"
    store = open_store(url, timeout_s=STORE_TIMEOUT_S)
    try:
        final = {r.session_id: r for r in store.scan()}
    finally:
        store.close()
    stats = _check(histories, final, faults=faults, kills=killer.kills if killer else 0)
    report_figures(f"cluster race, {kind}, faults={faults}", str(stats))
    return stats


def _check(histories: dict[str, list[Entry]], final: dict[bytes, Any], *, faults: bool,
           kills: int, sessions: int = SESSIONS) -> dict[str, Any]:
    entries = [e for h in histories.values() for e in h]
    assert len(entries) == len(NODES) * sessions * ROUNDS  # every request answered
    assert [e for e in entries if e[4] == "error"] == []
    oks: dict[int, list[Entry]] = {}
    for e in entries:
        if e[4] == "ok":
            oks.setdefault(e[1], []).append(e)
    dual_bindings = 0
    forks = 0
    missing = 0
    lost = 0
    broken_chains: list[Any] = []
    for s in range(sessions):
        record = final[sid(s)]
        state = decode_record(record)
        side = state.side
        assert isinstance(side, ServerSide)
        accepted = oks.get(s, [])
        versions = [e[6] for e in accepted]
        bindings = [e[7] for e in accepted]
        forks += len(versions) - len(set(versions))
        dual_bindings += len(bindings) - len(set(bindings))
        for e in accepted:
            assert e[6] is not None
            lost += e[6] > record.version
            assert e[7] is not None
            assert e[7] <= side.binding_version
            verdict = check_nonce(side.replay_top, side.replay_bits,
                                  state.policy.replay_window_bits, e[3])
            if verdict is not ReplayVerdict.SEEN:
                missing += 1
        chain = sorted(b for b in bindings if b is not None)
        if not faults and (
            chain != list(range(2, 2 + len(chain)))
            or side.binding_version != 1 + len(chain)
            or len(chain) < ROUNDS
        ):
            # Without faults the acknowledged accepts are the whole chain 1 -> 2 -> ... with
            # no gap, ending at the committed binding; every round has at least one winner
            # (several when later nonces arrive after the first commit: a client that
            # missed an accept may lag one binding behind, see specs/events.md).
            broken_chains.append((s, record.version, sorted(e[4:] for e in
                                  (x for x in entries if x[1] == s))))
    reasons = Counter(e[5] for e in entries if e[4] == "fail")
    stats = {
        "requests": len(entries),
        "winners": sum(len(v) for v in oks.values()),
        "rejections": dict(sorted(reasons.items(), key=lambda kv: str(kv[0]))),
        "forks": forks,
        "dual_bindings": dual_bindings,
        "accepted_but_uncommitted": missing,
        "lost_acknowledged_commits": lost,
        "connections_killed": kills,
        "broken_chains": len(broken_chains),
    }
    assert forks == 0
    assert dual_bindings == 0
    assert missing == 0
    assert lost == 0
    assert broken_chains == []
    return stats


@pytest.mark.services
@pytest.mark.requirement("RM-4.1")
def test_four_nodes_racing_on_every_session_never_fork_or_double_bind(
    backend: tuple[str, str, str],
) -> None:
    kind, base, url = backend
    stats = _race(kind, base, url, faults=False)
    # At least one winner per session and round; later nonces of the same round may win
    # too, each on its own version of the one chain (checked in _race).
    assert stats["winners"] >= SESSIONS * ROUNDS
    assert set(stats["rejections"]) <= {"COMMIT_CONFLICT", "STALE_STATE_VERSION",
                                        "REPLAY_DETECTED", "VERSION_AHEAD", "RATE_LIMITED"}


@pytest.mark.services
@pytest.mark.requirement("RM-4.2")
@pytest.mark.requirement("RM-4.1")
def test_cutting_store_connections_mid_race_never_accepts_without_commit(
    backend: tuple[str, str, str],
) -> None:
    kind, base, url = backend
    stats = _race(kind, base, url, faults=True)
    assert stats["connections_killed"] > 0
    assert stats["rejections"].get("STORE_UNAVAILABLE", 0) > 0
