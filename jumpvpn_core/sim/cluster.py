"""The simulator's server side in cluster mode: gateway nodes over one shared store.

With `SimConfig.cluster` set, each session's server is not a bare `SessionState` but a set
of real `Gateway` nodes in shared-store mode over one in-process `MemoryStore`. `Cluster`
routes a server input to a node, cuts a node off the store during its partitions (or every
node during a store outage, §4.2) and can deliver one request to two nodes at once, both
loading the same record before either commits (split-brain, §4.1), counting any dual
binding. Each node reaches the store through its own `FaultyStore` (`_node_store`), where
those faults are injected.

The world (`jumpvpn_core.sim.world`) hands inputs to `Cluster.deliver` and reads back the
state the cluster committed with `Cluster.committed_since`; it executes the effects itself.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jumpvpn_core.effects import BindTransport, SendReattachAccept
from jumpvpn_core.events import ReattachRequest
from jumpvpn_core.gateway import Gateway, GatewayPolicy, GatewayResult, OwnershipMode
from jumpvpn_core.gateway.gateway import decode_record
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.state import SessionState
from jumpvpn_core.stores.base import StoredSession
from jumpvpn_core.stores.faulty import FaultyStore
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.transport import TransportDescriptor

if TYPE_CHECKING:
    from jumpvpn_core.sim.world import SimConfig

__all__ = ["GATEWAY_REASONS", "Cluster"]

#: Reasons a gateway node gives before (or instead of) stepping the core.
GATEWAY_REASONS = frozenset({
    ReasonCode.FLOOD_LIMITED, ReasonCode.SOURCE_FLOOD_LIMITED, ReasonCode.NOT_OWNER,
    ReasonCode.UNKNOWN_SESSION, ReasonCode.STORE_UNAVAILABLE, ReasonCode.COMMIT_CONFLICT,
    ReasonCode.STORE_RECORD_INVALID,
})

#: One node's answer to a server input, in the order the world delivers them.
Delivery = tuple[Gateway, GatewayResult]


class Cluster:
    """Gateway nodes in shared-store mode over one in-process store.

    `counts` is the world's `WorldStats.cluster` counter; `clock` returns the world's time
    (partitions and outages are windows of it); `rng` is the world's PRNG (random routing,
    split-brain draws).
    """

    def __init__(self, config: SimConfig, counts: Counter[str], clock: Callable[[], int],
                 rng: random.Random) -> None:
        spec = config.cluster
        if spec is None:
            raise ValueError("the world's config has no cluster")
        self.spec = spec
        self.counts = counts
        self._clock = clock
        self._rng = rng
        self.store = MemoryStore()
        #: The last commit of each session: (version, data, node).
        self.committed: dict[bytes, tuple[int, bytes, int]] = {}
        #: A pending split-brain race: (session id, node, rival, request).
        self.race: tuple[bytes, int, int, ReattachRequest] | None = None
        self._rival_result: GatewayResult | None = None
        names = tuple(f"node-{n}" for n in range(spec.nodes))
        gateway_policy = GatewayPolicy(
            max_sessions=max(100_000, 2 * config.sessions),
            session_idle_ttl_ms=max(600_000, 2 * config.duration_ms),
            global_flood_limit=100_000_000, source_flood_limit=100_000_000,
            ownership=OwnershipMode.SHARED, node_ids=names)
        self.nodes = [Gateway(self._node_store(n), gateway_policy,
                              node_id=names[n], session_policy=config.policy)
                      for n in range(spec.nodes)]

    def _node_store(self, node: int) -> FaultyStore:
        """One node's view of the shared store: unreachable during its partitions and during
        store outages; the place where a split-brain race is interleaved."""

        def unreachable() -> str | None:
            if not self.store_down(node):
                return None
            self.counts["store_unavailable"] += 1
            return "partitioned from the store (simulated)"

        def after_read(session_id: bytes) -> None:
            race = self.race
            if race is not None and race[0] == session_id and race[1] == node:
                # Split-brain: this node has loaded the record; the rival now handles the
                # same request to the end before this node goes on with what it loaded.
                self.race = None
                self.run_rival(race[2], race[3])

        def after_commit(session_id: bytes, version: int, data: bytes, created: bool) -> None:
            if not created:
                self.counts["commits"] += 1
            self.committed[session_id] = (version, data, node)

        return FaultyStore(self.store, unreachable=unreachable, after_read=after_read,
                           after_commit=after_commit)

    def route(self, index: int) -> int:
        """The node a server input of session `index` reaches."""
        if self.spec.routing == "sticky":
            return index % self.spec.nodes
        return self._rng.randrange(self.spec.nodes)

    def store_down(self, node: int) -> bool:
        """True while `node` cannot reach the store (its partition, or a store outage)."""
        now = self._clock()
        for start, end in self.spec.store_outages:
            if start <= now < end:
                return True
        for partitioned, start, end in self.spec.partitions:
            if partitioned == node and start <= now < end:
                return True
        return False

    def run_rival(self, rival: int, request: ReattachRequest) -> None:
        """The rival node of a split-brain race handles the request to the end."""
        self._rival_result = self.nodes[rival].handle_reattach(request)

    def open_session(self, index: int, session_id: bytes, secret: bytes,
                     public: TransportDescriptor, now_ms: int) -> Delivery:
        """Open a session on the node its first input is routed to."""
        node = self.nodes[self.route(index)]
        return node, node.open_session(session_id, secret, public, now_ms)

    def deliver(self, index: int, session_id: bytes, event: Any) -> list[Delivery]:
        """Hand a server input to a node (a reattach request maybe to two, racing); the
        results in the order the world delivers them (a rival that committed first, first)."""
        number = self.route(index)
        node = self.nodes[number]
        if not isinstance(event, ReattachRequest):
            return [(node, node.handle(session_id, event))]
        spec = self.spec
        if not (spec.split_brain_probability
                and self._rng.random() < spec.split_brain_probability):
            return [(node, node.handle_reattach(event))]
        rival = (number + 1 + self._rng.randrange(spec.nodes - 1)) % spec.nodes
        self.race = (session_id, number, rival, event)
        self._rival_result = None
        result = node.handle_reattach(event)
        self.race = None  # never reached the store (flood-limited or unreachable)
        rival_result, self._rival_result = self._rival_result, None
        if rival_result is None:
            return [(node, result)]
        counts = self.counts
        counts["races"] += 1
        both = (result, rival_result)
        committed = sum(1 for r in both if r.store_version is not None and r.effects)
        bound = sum(1 for r in both
                    if any(isinstance(e, SendReattachAccept | BindTransport) for e in r.effects))
        if bound > 1:
            counts["dual_bindings"] += 1
        if committed > 1:
            counts["dual_commits"] += 1
        counts["race_single_winner" if committed == 1 else "race_no_winner"] += 1
        return [(self.nodes[rival], rival_result), (node, result)]

    def committed_since(self, session_id: bytes, known_version: int, decode: bool
                        ) -> tuple[int, SessionState, str | None] | None:
        """The state the cluster last committed for a session, when its store version is not
        `known_version`: (version, state, stale cache).

        The committing node's cached state is used; with `decode` (check mode), or when the
        node holds none, the record is decoded instead, and `stale cache` names the node if
        its cache differs from what it committed (None when it matches).
        """
        committed = self.committed.get(session_id)
        if committed is None or committed[0] == known_version:
            return None
        version, data, committer = committed
        node = self.nodes[committer]
        state = node.local_state(session_id)
        stale = None
        if state is None or decode:
            decoded = decode_record(StoredSession(session_id, version, data))
            if state is not None and state != decoded:
                stale = node.node_id
            state = decoded
        return version, state, stale
