"""Four gateway nodes race over a 3-member etcd cluster while a member, then the leader,
is killed (RM-4.1, RM-4.2): 0 dual bindings, 0 lost acknowledged commits, 0
accepted-but-uncommitted.

The members run on 127.0.0.1 only, with their own data directories. Nodes are threads of
this process, each with its own store object holding all three endpoints. Mid-race a
follower is killed with SIGKILL and started again, then the leader is killed (a new one is
elected from the two left) and started again. Requests that meet an election are refused
(STORE_UNAVAILABLE or COMMIT_CONFLICT), never accepted without their commit; at the end
every acknowledged commit is in the cluster (`_check` in test_cluster_race).
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from jumpvpn_core.stores import open_store
from tests.figures import report_figures
from tests.gateway.test_cluster_race import NODES, RUN_TIMEOUT_S, Entry, _check, _node, _seed
from tests.stores.etcd_server import EtcdCluster

_SESSIONS = 300


class _MemberKiller(threading.Thread):
    """Kills a follower, restarts it, then kills the leader and restarts it."""

    def __init__(self, cluster: EtcdCluster, started: threading.Event) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.started = started
        self.log: list[str] = []

    def run(self) -> None:
        self.started.wait(60)
        time.sleep(0.5)
        leader = self.cluster.leader()
        follower = next(i for i in range(3) if i != leader)
        self.cluster.kill(follower)
        self.log.append(f"killed follower m{follower}")
        time.sleep(1.5)
        self.cluster.start(follower)
        self.log.append(f"restarted m{follower}")
        leader = self.cluster.leader()
        if leader is not None:
            self.cluster.kill(leader)
            self.log.append(f"killed leader m{leader}")
            time.sleep(1.5)
            self.cluster.start(leader)
            self.log.append(f"restarted m{leader}")


class _Go:
    """A barrier whose first pass tells the killer the race has begun."""

    def __init__(self, parties: int, started: threading.Event) -> None:
        self.barrier = threading.Barrier(parties)
        self.started = started

    def wait(self, timeout: float | None = None) -> int:
        index = self.barrier.wait(timeout)
        self.started.set()
        return index


@pytest.mark.services
@pytest.mark.requirement("RM-4.1")
@pytest.mark.requirement("RM-4.2")
def test_three_member_etcd_race_with_member_and_leader_killed(tmp_path: Path) -> None:
    cluster = EtcdCluster(tmp_path, size=3)
    cluster.start()
    try:
        url = cluster.url(prefix="/jumpvpn-race/")
        _seed(url, _SESSIONS)
        started = threading.Event()
        killer = _MemberKiller(cluster, started)
        killer.start()
        barrier = _Go(len(NODES), started)
        out: queue.Queue[tuple[str, list[Entry]]] = queue.Queue()
        threads = [threading.Thread(target=_node, daemon=True,
                                    args=(i, "etcd", url, f"etcd-node-{i}", barrier, out,
                                          _SESSIONS))
                   for i in range(len(NODES))]
        for thread in threads:
            thread.start()
        histories: dict[str, list[Entry]] = {}
        deadline = time.monotonic() + 4 * RUN_TIMEOUT_S
        while len(histories) < len(NODES) and time.monotonic() < deadline:
            try:
                node, history = out.get(timeout=1.0)
            except queue.Empty:
                continue
            histories[node] = history
        killer.join(60)
        assert len(histories) == len(NODES), "a node did not report within the time bound"
        cluster.wait_ready()
        store = open_store(url, timeout_s=5.0)
        try:
            final: dict[bytes, Any] = {r.session_id: r for r in store.scan()}
        finally:
            store.close()
        stats = _check(histories, final, faults=True, kills=len(killer.log),
                       sessions=_SESSIONS)
        stats["faults"] = "; ".join(killer.log)
        report_figures("etcd 3-member race, member and leader killed", str(stats))
        print(f"\n{stats}")
        assert any(line.startswith("killed leader") for line in killer.log), killer.log
        assert stats["winners"] > 0
    finally:
        cluster.stop()
