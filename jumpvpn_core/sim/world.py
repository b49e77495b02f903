"""A deterministic discrete-event world: many client/server session pairs, virtual time,
seeded failures and attackers, all driven through the real `step()`.

No global state: every `World` owns its clock, its event queue, its `random.Random` and
its sessions, so many worlds can run in one process. Embedders step a world themselves:

    world = World(config)
    while world.step_once():          # or world.run_until(t)
        ...

Audit records go to `on_record` (a callable) as they happen; the world keeps only
counters, a bounded histogram and a few sample timelines, so its memory grows with the
number of sessions, not with the number of events.

Two server sides: by default each session's server is a bare `SessionState` stepped by the
world. With `SimConfig.cluster` set, the server side is a cluster of real `Gateway` nodes in
shared-store mode over one in-process `MemoryStore`; the world routes each server input to
a node, can cut a node off the store (a partition) or the whole store (an outage), and can
deliver one request to two nodes at once (split-brain), counting any dual binding.

`World(config, check=True)` runs `check_step` after every step the world makes (and
`check_state` on every state a cluster commits) and raises `SimInvariantError` on the
first violation: a debugging and test aid, several times slower.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs

from jumpvpn_core.effects import (
    BindTransport,
    Effect,
    Rejected,
    SendPathChallenge,
    SendReattachAccept,
    SendReattachRequest,
    StateChanged,
)
from jumpvpn_core.events import (
    AllTransportsFailed,
    Attach,
    CandidateDiscovered,
    DeliveryTimeout,
    InboundTraffic,
    PacketLoss,
    ReattachAccepted,
    ReattachRequest,
    Tick,
)
from jumpvpn_core.gateway import Gateway, GatewayPolicy, GatewayResult, OwnershipMode
from jumpvpn_core.gateway.gateway import decode_record
from jumpvpn_core.invariants import check_state, check_step
from jumpvpn_core.machine import next_deadline, step
from jumpvpn_core.peer import challenge_received
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.reasons import ReasonClass, ReasonCode, reason_class
from jumpvpn_core.sim.network import LinkModel, LinkSpec
from jumpvpn_core.state import ClientSide, ServerSide, SessionState, new_session
from jumpvpn_core.stores.base import StoredSession
from jumpvpn_core.stores.faulty import FaultyStore
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "AttackSpec",
    "ClusterSpec",
    "SessionOutcome",
    "SimConfig",
    "SimInvariantError",
    "World",
    "WorldStats",
]

# Queue item kinds. Ints keep heap tuples cheap to compare.
_HEARTBEAT = 0
_TO_SERVER = 1
_TO_CLIENT = 2
_TICK_CLIENT = 3
_TICK_SERVER = 4
_NAT_REBIND = 5
_COLLAPSE_START = 6
_COLLAPSE_END = 7
_ATTACK = 8

# Reasons a gateway node gives before (or instead of) stepping the core.
_GATEWAY_REASONS = frozenset({
    ReasonCode.FLOOD_LIMITED, ReasonCode.SOURCE_FLOOD_LIMITED, ReasonCode.NOT_OWNER,
    ReasonCode.UNKNOWN_SESSION, ReasonCode.STORE_UNAVAILABLE, ReasonCode.COMMIT_CONFLICT,
    ReasonCode.STORE_RECORD_INVALID,
})

_HEARTBEAT_BYTES = 120
_REQUEST_BYTES = 160
_SAMPLE_TIMELINES = 8


@attrs.frozen
class AttackSpec:
    """An attacker aimed at the servers.

    `kind`: `replay` (re-sends a captured valid request from a spoofed address), `forge`
    (fresh nonce, right version, random proof), `flood` (forged requests at a high rate).
    `rate_per_s`: attempts per second across all targeted sessions.
    """

    kind: str
    rate_per_s: int
    start_ms: int = 0

    def __attrs_post_init__(self) -> None:
        if self.kind not in ("replay", "forge", "flood"):
            raise ValueError(f"unknown attack kind {self.kind!r}: replay, forge or flood")
        if self.rate_per_s < 1:
            raise ValueError("attack rate_per_s must be >= 1")


class SimInvariantError(AssertionError):
    """A step broke an invariant while the world ran with `check=True`."""


@attrs.frozen
class ClusterSpec:
    """A cluster of gateway nodes in shared-store mode over one in-process store.

    `routing`: `sticky` (a session's requests always reach the same node) or `random`
    (each server input reaches a node drawn from the world's PRNG).
    `partitions`: `(node, start_ms, end_ms)` windows in which that node cannot reach the
    store (§4.2); `store_outages`: `(start_ms, end_ms)` windows in which no node can.
    `split_brain_probability`: the chance that a reattach request reaches two nodes at
    once, both loading the same record before either commits (§4.1).
    """

    nodes: int = 3
    routing: str = "sticky"
    partitions: tuple[tuple[int, int, int], ...] = ()
    store_outages: tuple[tuple[int, int], ...] = ()
    split_brain_probability: float = 0.0

    def __attrs_post_init__(self) -> None:
        problems = []
        if self.nodes < 1:
            problems.append(f"cluster nodes must be >= 1, got {self.nodes}")
        if self.routing not in ("sticky", "random"):
            problems.append(f"cluster routing must be sticky or random, got {self.routing!r}")
        for node, start, end in self.partitions:
            if not 0 <= node < self.nodes or not 0 <= start <= end:
                problems.append(f"partition {(node, start, end)} needs a valid node and "
                                "0 <= start <= end")
        for start, end in self.store_outages:
            if not 0 <= start <= end:
                problems.append(f"store outage {(start, end)} needs 0 <= start <= end")
        if not 0.0 <= self.split_brain_probability <= 1.0:
            problems.append("split_brain_probability must be in [0, 1], got "
                            f"{self.split_brain_probability}")
        if self.split_brain_probability and self.nodes < 2:
            problems.append("split-brain needs at least 2 nodes")
        if problems:
            raise ValueError("; ".join(problems))


@attrs.frozen
class SimConfig:
    """Everything a world needs. Validated on construction."""

    sessions: int
    duration_ms: int
    seed: int
    paths: tuple[LinkSpec, ...]
    policy: Policy = attrs.field(factory=Policy)
    heartbeat_ms: int = 1_000
    delivery_timeout_ms: int = 3_000
    start_spread_ms: int = 1_000
    collapse_probability: float = 0.0
    collapse_start_ms: tuple[int, int] = (0, 0)
    collapse_length_ms: tuple[int, int] = (0, 0)
    attacks: tuple[AttackSpec, ...] = ()
    cluster: ClusterSpec | None = None

    def __attrs_post_init__(self) -> None:
        problems = []
        if self.sessions < 1:
            problems.append(f"sessions must be >= 1, got {self.sessions}")
        if self.duration_ms < 1:
            problems.append(f"duration must be >= 1 ms, got {self.duration_ms}")
        if not self.paths:
            problems.append("at least one path is needed")
        if self.heartbeat_ms < 1 or self.delivery_timeout_ms < 1:
            problems.append("heartbeat_ms and delivery_timeout_ms must be >= 1")
        if not 0.0 <= self.collapse_probability <= 1.0:
            problems.append(f"collapse probability must be in [0, 1], got "
                            f"{self.collapse_probability}")
        for spec in self.paths:
            for name in ("p_good_to_bad", "p_bad_to_good", "loss_good", "loss_bad",
                         "return_loss", "blackout_probability"):
                value = getattr(spec, name)
                if not 0.0 <= value <= 1.0:
                    problems.append(f"path {spec.name}: {name} must be in [0, 1], got {value}")
        if problems:
            raise ValueError("; ".join(problems))


@attrs.define
class _Path:
    local: TransportDescriptor
    public: TransportDescriptor
    up: LinkModel
    down: LinkModel
    delay_ms: int
    rebind_mean_ms: int


@attrs.define
class _Session:
    index: int
    session_id: bytes
    client: SessionState
    server: SessionState
    paths: list[_Path]
    by_local: dict[TransportDescriptor, int]
    collapsed: bool = False
    last_client_rx_ms: int = 0
    captured: SendReattachRequest | None = None
    recovering_since: int | None = None
    scheduled_client_tick: int | None = None
    scheduled_server_tick: int | None = None
    recoveries: int = 0
    switches: int = 0
    rejections: int = 0
    store_version: int = 0


@attrs.frozen
class SessionOutcome:
    """One row of the per-session CSV."""

    session_id: str
    client_phase: str
    server_phase: str
    client_end_reason: str
    server_end_reason: str
    client_version: int
    server_version: int
    recoveries: int
    switches: int
    rejections: int


@attrs.define
class WorldStats:
    """Counters the world keeps while it runs (bounded memory)."""

    events: int = 0
    transitions: Counter[str] = attrs.field(factory=Counter)
    rejections: Counter[str] = attrs.field(factory=Counter)
    security_events: int = 0
    end_reasons: Counter[str] = attrs.field(factory=Counter)
    switches: int = 0
    attacks_sent: int = 0
    recovery_histogram: list[int] = attrs.field(factory=list)
    timelines: dict[int, list[tuple[int, str]]] = attrs.field(factory=dict)
    #: Cluster mode only: `races` (split-brain deliveries), `race_single_winner`,
    #: `race_no_winner`, `dual_bindings` (two nodes accepting from one store version:
    #: must stay 0), `commits`, `store_unavailable`.
    cluster: Counter[str] = attrs.field(factory=Counter)

    def recovery_percentile(self, fraction: float) -> int | None:
        """Recovery time (ms) at `fraction` (0..1) of completed recoveries, or None."""
        total = sum(self.recovery_histogram)
        if total == 0:
            return None
        rank = max(1, int(fraction * total + 0.999999))
        seen = 0
        for millis, count in enumerate(self.recovery_histogram):
            seen += count
            if seen >= rank:
                return millis
        return len(self.recovery_histogram) - 1


class World:
    """Many session pairs in one virtual-time world.

    `on_record` receives every audit record as it happens. `check=True` runs the
    invariant checkers after every step and raises `SimInvariantError` on a violation.
    """

    def __init__(self, config: SimConfig,
                 on_record: Callable[[dict[str, Any]], None] | None = None,
                 *, check: bool = False) -> None:
        self.config = config
        self.now_ms = 0
        self.rng = random.Random(config.seed)
        self.stats = WorldStats(
            recovery_histogram=[0] * (config.policy.max_recovery_window_ms + 1)
        )
        self._on_record = on_record
        self._check = check
        self._queue: list[tuple[int, int, int, int, Any]] = []
        self._seq = 0
        self._started = False
        # Cluster mode: the shared store, the nodes, the last commit of each session
        # (version, data, node), and a pending split-brain race.
        self.store: MemoryStore | None = None
        self.nodes: list[Gateway] = []
        self._committed: dict[bytes, tuple[int, bytes, int]] = {}
        self._race: tuple[bytes, int, int, ReattachRequest] | None = None
        self._rival_result: GatewayResult | None = None
        cluster = config.cluster
        if cluster is not None:
            self.store = MemoryStore()
            names = tuple(f"node-{n}" for n in range(cluster.nodes))
            gateway_policy = GatewayPolicy(
                max_sessions=max(100_000, 2 * config.sessions),
                session_idle_ttl_ms=max(600_000, 2 * config.duration_ms),
                global_flood_limit=100_000_000, source_flood_limit=100_000_000,
                ownership=OwnershipMode.SHARED, node_ids=names)
            self.nodes = [Gateway(self._node_store(n, self.store), gateway_policy,
                                  node_id=names[n], session_policy=config.policy)
                          for n in range(cluster.nodes)]
        self.sessions: list[_Session] = []
        for index in range(config.sessions):
            self.sessions.append(self._make_session(index))
        for attack_number, attack in enumerate(config.attacks):
            self._push(attack.start_ms, _ATTACK, -1, (attack_number, attack))

    # -- construction ----------------------------------------------------------------------

    def _make_session(self, index: int) -> _Session:
        cfg = self.config
        rng = self.rng
        session_id = rng.randbytes(16)
        secret = rng.randbytes(32)
        start = rng.randrange(max(1, cfg.start_spread_ms))
        client = new_session(Role.CLIENT, session_id, secret, start, cfg.policy)
        server = new_session(Role.SERVER, session_id, secret, start, cfg.policy)
        paths = []
        for number, spec in enumerate(cfg.paths):
            up, down, _window = spec.build(rng)
            local = TransportDescriptor.udp(f"192.168.{number}.2", 40_000 + number)
            public = TransportDescriptor.udp(f"203.0.113.{number + 1}",
                                             10_000 + rng.randrange(50_000))
            paths.append(_Path(local, public, up, down, spec.one_way_delay_ms,
                               spec.nat_rebind_mean_ms))
        session = _Session(index, session_id, client, server, paths,
                           {p.local: i for i, p in enumerate(paths)})
        session.last_client_rx_ms = start
        if index < _SAMPLE_TIMELINES:
            self.stats.timelines[index] = [(start, Phase.BIRTH.value)]
        self._feed(session, Role.CLIENT, Attach(start, paths[0].local))
        if self.nodes:
            node = self.nodes[self._route(session)]
            self._gateway_result(session, node, Attach(start, paths[0].public),
                                 node.open_session(session_id, secret, paths[0].public, start))
        else:
            self._feed(session, Role.SERVER, Attach(start, paths[0].public))
        for path in paths[1:]:
            self._feed(session, Role.CLIENT, CandidateDiscovered(start, path.local))
        self._push(start + cfg.heartbeat_ms, _HEARTBEAT, index, None)
        for number, path in enumerate(paths):
            if path.rebind_mean_ms:
                self._push(start + self._exp(path.rebind_mean_ms), _NAT_REBIND, index, number)
        if cfg.collapse_probability and rng.random() < cfg.collapse_probability:
            begin = rng.randint(*cfg.collapse_start_ms)
            end = begin + rng.randint(*cfg.collapse_length_ms)
            self._push(begin, _COLLAPSE_START, index, end)
        return session

    def _exp(self, mean_ms: int) -> int:
        return 1 + int(self.rng.expovariate(1.0 / mean_ms))

    def _push(self, time_ms: int, kind: int, index: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (time_ms, self._seq, kind, index, payload))

    # -- running ---------------------------------------------------------------------------

    def step_once(self) -> bool:
        """Process the next queued happening, if it is within the duration. False when done."""
        if not self._queue or self._queue[0][0] > self.config.duration_ms:
            return False
        time_ms, _seq, kind, index, payload = heapq.heappop(self._queue)
        self.now_ms = time_ms
        session = self.sessions[index] if index >= 0 else None
        if session is None:
            self._attack(payload)
        else:
            self._dispatch(session, kind, payload)
        return True

    def run_until(self, time_ms: int) -> None:
        """Process everything up to `time_ms` (capped at the configured duration)."""
        limit = min(time_ms, self.config.duration_ms)
        queue = self._queue
        pop = heapq.heappop
        sessions = self.sessions
        dispatch = self._dispatch
        # The hot loop: `step_once` inlined (one pop and one dispatch per happening).
        while queue and queue[0][0] <= limit:
            time_ms, _seq, kind, index, payload = pop(queue)
            self.now_ms = time_ms
            if index >= 0:
                dispatch(sessions[index], kind, payload)
            else:
                self._attack(payload)
        self.now_ms = max(self.now_ms, limit)

    def run(self, progress: Callable[[int], None] | None = None,
            progress_every_ms: int = 10_000) -> WorldStats:
        """Run to the end of the configured duration; `progress(now_ms)` is called
        every `progress_every_ms` of virtual time."""
        mark = 0
        while mark < self.config.duration_ms:
            mark = min(mark + progress_every_ms, self.config.duration_ms)
            self.run_until(mark)
            if progress is not None:
                progress(mark)
        return self.stats

    # -- dispatch --------------------------------------------------------------------------

    def _dispatch(self, session: _Session, kind: int, payload: Any) -> None:
        now = self.now_ms
        if kind == _HEARTBEAT:
            self._heartbeat(session, now)
        elif kind == _TO_SERVER:
            self._deliver_to_server(session, now, payload)
        elif kind == _TO_CLIENT:
            self._deliver_to_client(session, now, payload)
        elif kind == _TICK_CLIENT:
            session.scheduled_client_tick = None
            deadline = next_deadline(session.client)
            if deadline is not None and deadline <= now:
                self._feed(session, Role.CLIENT, Tick(now))
            # The deadline this tick was queued for may have moved later: queue the current
            # one, or the session would overstay its bound until some other input arrives.
            self._schedule_tick(session, Role.CLIENT, session.client)
        elif kind == _TICK_SERVER:
            session.scheduled_server_tick = None
            deadline = next_deadline(session.server)
            if deadline is not None and deadline <= now:
                self._server(session, Tick(now))
            self._schedule_tick(session, Role.SERVER, session.server)
        elif kind == _NAT_REBIND:
            path = session.paths[payload]
            path.public = TransportDescriptor.udp(path.public.host,
                                                  10_000 + self.rng.randrange(50_000))
            if session.server.phase is not Phase.TERMINATED:
                self._push(now + self._exp(path.rebind_mean_ms), _NAT_REBIND, session.index,
                           payload)
        elif kind == _COLLAPSE_START:
            session.collapsed = True
            self._feed(session, Role.CLIENT, AllTransportsFailed(now))
            self._push(payload, _COLLAPSE_END, session.index, None)
        elif kind == _COLLAPSE_END:
            session.collapsed = False
            for path in session.paths:
                self._feed(session, Role.CLIENT, CandidateDiscovered(now, path.local))

    def _heartbeat(self, session: _Session, now: int) -> None:
        client = session.client
        if client.phase is Phase.TERMINATED and session.server.phase is Phase.TERMINATED:
            return
        self._push(now + self.config.heartbeat_ms, _HEARTBEAT, session.index, None)
        if client.phase is Phase.TERMINATED:
            return
        active = client.link.active
        if active is not None and not client.link.active_failed and not session.collapsed:
            path = session.paths[session.by_local[active]]
            rng = self.rng
            delivered_up = path.up.delivers(now, rng)
            if delivered_up:
                self._server(session, InboundTraffic(now, path.public, _HEARTBEAT_BYTES))
            # The server answers only through its own binding: after a NAT rebinding it has
            # not validated yet, or once it has ended the session, the answer goes nowhere.
            server = session.server
            if (delivered_up and server.phase is not Phase.TERMINATED
                    and server.link.active == path.public and path.down.delivers(now, rng)):
                session.last_client_rx_ms = now
                self._feed(session, Role.CLIENT, InboundTraffic(now, active, _HEARTBEAT_BYTES))
                return
            self._feed(session, Role.CLIENT, PacketLoss(now))
        if (session.client.phase is Phase.ATTACHED
                and now - session.last_client_rx_ms >= self.config.delivery_timeout_ms):
            session.last_client_rx_ms = now  # one timeout report per silent period
            self._feed(session, Role.CLIENT, DeliveryTimeout(now))

    def _deliver_to_server(self, session: _Session, now: int, payload: Any) -> None:
        request, path_number = payload
        path = session.paths[path_number]
        event = ReattachRequest(now, path.public, request.session_id, request.nonce,
                                request.state_version, request.timestamp_ms, request.candidate,
                                request.proof, request.challenge, _REQUEST_BYTES)
        session.captured = request
        self._server(session, event)

    def _deliver_to_client(self, session: _Session, now: int,
                           message: SendPathChallenge | SendReattachAccept) -> None:
        target = message.to
        for path in session.paths:
            if path.public == target:
                break
        else:
            return  # the NAT mapping moved on: the datagram reaches nobody
        if isinstance(message, SendPathChallenge):
            self._feed(session, Role.CLIENT, challenge_received(message, now, path.local))
        elif isinstance(message, SendReattachAccept):
            side = session.client.side
            via = side.pending.via if isinstance(side, ClientSide) and side.pending else path.local
            self._feed(session, Role.CLIENT,
                       ReattachAccepted(now, via, message.session_id, message.nonce,
                                        message.state_version, message.timestamp_ms, target,
                                        message.proof))

    def _attack(self, payload: tuple[int, AttackSpec]) -> None:
        number, attack = payload
        now = self.now_ms
        session = self.sessions[self.rng.randrange(len(self.sessions))]
        spoofed = TransportDescriptor.udp("198.51.100.66", 6_000 + number)
        self.stats.attacks_sent += 1
        if attack.kind == "replay" and session.captured is not None:
            req = session.captured
            self._server(session, ReattachRequest(
                now, spoofed, req.session_id, req.nonce, req.state_version, req.timestamp_ms,
                req.candidate, req.proof, req.challenge, _REQUEST_BYTES))
        else:
            side = session.server.side
            # A forger who guessed the version right still lacks the key.
            version = side.binding_version if isinstance(side, ServerSide) else 0
            self._server(session, ReattachRequest(
                now, spoofed, session.session_id, 1 + self.rng.randrange(1 << 40), version,
                now, spoofed, self.rng.randbytes(32), b"", _REQUEST_BYTES))
        interval = max(1, 1_000 // attack.rate_per_s)
        self._push(now + interval, _ATTACK, -1, payload)

    # -- the one place where the world calls the core ---------------------------------------

    def _feed(self, session: _Session, role: Role, event: Any) -> None:
        state = session.client if role is Role.CLIENT else session.server
        new, effects = step(state, event)
        self.stats.events += 1
        if self._check:
            self._verify(state, event, new, effects)
        if role is Role.CLIENT:
            session.client = new
        else:
            session.server = new
        if effects:
            self._execute(session, role, effects)
        if new is not state:
            self._schedule_tick(session, role, new)

    def _verify_state(self, state: SessionState) -> None:
        violations = check_state(state)
        if violations:
            raise SimInvariantError(f"t={self.now_ms} ms session "
                                    f"{state.ident.session_id.hex()}: "
                                    + "; ".join(map(str, violations)))

    def _verify(self, before: SessionState, event: Any, after: SessionState,
                effects: tuple[Effect, ...]) -> None:
        violations = [*check_step(before, event, after, effects), *check_state(after)]
        if violations:
            raise SimInvariantError(
                f"t={self.now_ms} ms session {before.ident.session_id.hex()} "
                f"{before.ident.role.value} {type(event).__name__}: "
                + "; ".join(map(str, violations)))

    # -- cluster mode: the server side is a set of gateway nodes over one store -------------

    def _route(self, session: _Session) -> int:
        cluster = self.config.cluster
        assert cluster is not None
        if cluster.routing == "sticky":
            return session.index % cluster.nodes
        return self.rng.randrange(cluster.nodes)

    def _store_down(self, node: int) -> bool:
        cluster = self.config.cluster
        assert cluster is not None
        now = self.now_ms
        for start, end in cluster.store_outages:
            if start <= now < end:
                return True
        for partitioned, start, end in cluster.partitions:
            if partitioned == node and start <= now < end:
                return True
        return False

    def _node_store(self, node: int, store: MemoryStore) -> FaultyStore:
        """One node's view of the shared store: unreachable during its partitions and during
        store outages; the place where a split-brain race is interleaved."""

        def unreachable() -> str | None:
            if not self._store_down(node):
                return None
            self.stats.cluster["store_unavailable"] += 1
            return "partitioned from the store (simulated)"

        def after_read(session_id: bytes) -> None:
            race = self._race
            if race is not None and race[0] == session_id and race[1] == node:
                # Split-brain: this node has loaded the record; the rival now handles the
                # same request to the end before this node goes on with what it loaded.
                self._race = None
                self._run_rival(race[2], race[3])

        def after_commit(session_id: bytes, version: int, data: bytes, created: bool) -> None:
            if not created:
                self.stats.cluster["commits"] += 1
            self._committed[session_id] = (version, data, node)

        return FaultyStore(store, unreachable=unreachable, after_read=after_read,
                           after_commit=after_commit)

    def _run_rival(self, rival: int, request: ReattachRequest) -> None:
        self._rival_result = self.nodes[rival].handle_reattach(request)

    def _server(self, session: _Session, event: Any) -> None:
        """Deliver a server-side input: to the session's own state, or to a cluster node."""
        if not self.nodes:
            self._feed(session, Role.SERVER, event)
            return
        cluster = self.config.cluster
        assert cluster is not None
        number = self._route(session)
        node = self.nodes[number]
        if not isinstance(event, ReattachRequest):
            self._gateway_result(session, node, event, node.handle(session.session_id, event))
            return
        if not (cluster.split_brain_probability
                and self.rng.random() < cluster.split_brain_probability):
            self._gateway_result(session, node, event, node.handle_reattach(event))
            return
        rival = (number + 1 + self.rng.randrange(cluster.nodes - 1)) % cluster.nodes
        self._race = (session.session_id, number, rival, event)
        self._rival_result = None
        result = node.handle_reattach(event)
        self._race = None  # never reached the store (flood-limited or unreachable)
        rival_result, self._rival_result = self._rival_result, None
        if rival_result is not None:
            counts = self.stats.cluster
            counts["races"] += 1
            both = (result, rival_result)
            committed = sum(1 for r in both if r.store_version is not None and r.effects)
            bound = sum(1 for r in both
                        if any(isinstance(e, SendReattachAccept | BindTransport)
                               for e in r.effects))
            if bound > 1:
                counts["dual_bindings"] += 1
            if committed > 1:
                counts["dual_commits"] += 1
            counts["race_single_winner" if committed == 1 else "race_no_winner"] += 1
            # The rival committed first: its outcome is delivered first.
            self._gateway_result(session, self.nodes[rival], event, rival_result)
        self._gateway_result(session, node, event, result)

    def _gateway_result(self, session: _Session, node: Gateway, event: Any,
                        result: GatewayResult) -> None:
        self.stats.events += 1
        sid = session.session_id
        before = session.server
        committed = self._committed.get(sid)
        if committed is not None and committed[0] != session.store_version:
            version, data, committer = committed
            state = self.nodes[committer].local_state(sid)
            if state is None or self._check:
                decoded = decode_record(StoredSession(sid, version, data))
                if state is not None and state != decoded:
                    raise SimInvariantError(f"node-{committer} caches a state of session "
                                            f"{sid.hex()} other than the one it committed")
                state = decoded
            session.server = state
            session.store_version = version
        effects = result.effects
        reason = result.reason
        if reason is not None and not any(isinstance(e, Rejected) for e in effects):
            # Refused before or by the core without a commit: the gateway keeps no effect,
            # so the world writes the audit record the core would have written.
            server = session.server
            effects = (*effects, Rejected(sid, Role.SERVER, reason, reason_class(reason),
                                          server.phase, server.state_version,
                                          type(event).__name__, event.now_ms))
        if self._check:
            if reason in _GATEWAY_REASONS and session.server is before:
                # Refused before `step()` ran (no deadline fired): only the state is checked.
                self._verify_state(before)
            else:
                self._verify(before, event, session.server, effects)
        if effects:
            self._execute(session, Role.SERVER, effects)
        if session.server is not before:
            self._schedule_tick(session, Role.SERVER, session.server)
        if isinstance(event, Tick) and reason is ReasonCode.STORE_UNAVAILABLE:
            retry = self.now_ms + self.config.heartbeat_ms
            session.scheduled_server_tick = retry
            self._push(retry, _TICK_SERVER, session.index, None)

    def _schedule_tick(self, session: _Session, role: Role, state: SessionState) -> None:
        deadline = next_deadline(state)
        if deadline is None:
            return
        if role is Role.CLIENT:
            scheduled = session.scheduled_client_tick
            if scheduled is None or deadline < scheduled:
                session.scheduled_client_tick = deadline
                self._push(deadline, _TICK_CLIENT, session.index, None)
        else:
            scheduled = session.scheduled_server_tick
            if scheduled is None or deadline < scheduled:
                session.scheduled_server_tick = deadline
                self._push(deadline, _TICK_SERVER, session.index, None)

    def _execute(self, session: _Session, role: Role, effects: tuple[Effect, ...]) -> None:
        now = self.now_ms
        rng = self.rng
        stats = self.stats
        for effect in effects:
            if isinstance(effect, StateChanged):
                self._audit(session, effect)
            elif isinstance(effect, Rejected):
                session.rejections += 1
                stats.rejections[effect.reason.value] += 1
                if effect.reason_class is ReasonClass.SECURITY_EVENT:
                    stats.security_events += 1
                if self._on_record is not None:
                    self._on_record(effect.to_record())
            elif isinstance(effect, SendReattachRequest):
                number = session.by_local.get(effect.via)
                if number is None or session.collapsed:
                    continue
                path = session.paths[number]
                if path.up.delivers(now, rng):
                    self._push(now + path.delay_ms, _TO_SERVER, session.index, (effect, number))
            elif isinstance(effect, SendPathChallenge | SendReattachAccept):
                target = effect.to
                for path in session.paths:
                    if path.public == target:
                        if not session.collapsed and path.down.delivers(now, rng):
                            self._push(now + path.delay_ms, _TO_CLIENT, session.index, effect)
                        break
            elif (isinstance(effect, BindTransport) and role is Role.CLIENT
                  and effect.previous is not None):
                session.switches += 1
                stats.switches += 1

    def _audit(self, session: _Session, change: StateChanged) -> None:
        stats = self.stats
        stats.transitions[change.reason.value] += 1
        if change.role is Role.CLIENT:
            if change.to_phase is Phase.RECOVERING and change.from_phase is not Phase.RECOVERING:
                session.recoveries += 1
                session.recovering_since = change.ts_ms
            elif change.to_phase is Phase.ATTACHED and session.recovering_since is not None:
                took = change.ts_ms - session.recovering_since
                histogram = stats.recovery_histogram
                histogram[min(took, len(histogram) - 1)] += 1
                session.recovering_since = None
            elif change.to_phase is not Phase.RECOVERING:
                session.recovering_since = None
            if change.to_phase is Phase.TERMINATED:
                stats.end_reasons[change.reason.value] += 1
            timeline = stats.timelines.get(session.index)
            if timeline is not None:
                timeline.append((change.ts_ms, change.to_phase.value))
        if self._on_record is not None:
            self._on_record(change.to_record())

    # -- results ---------------------------------------------------------------------------

    def outcomes(self) -> list[SessionOutcome]:
        """One row per session, in creation order."""
        rows = []
        for s in self.sessions:
            rows.append(SessionOutcome(
                s.session_id.hex(),
                s.client.phase.value,
                s.server.phase.value,
                s.client.end_reason.value if s.client.end_reason else "",
                s.server.end_reason.value if s.server.end_reason else "",
                s.client.state_version,
                s.server.state_version,
                s.recoveries,
                s.switches,
                s.rejections,
            ))
        return rows

    def surviving(self) -> int:
        """Sessions whose client is not TERMINATED."""
        return sum(1 for s in self.sessions if s.client.phase is not Phase.TERMINATED)

