"""A deterministic discrete-event world: many client/server session pairs, virtual time,
seeded failures and attackers, all driven through the real `step()`.

No global state: every `World` owns its clock, its event queue, its sessions and their
PRNGs, so many worlds can run in one process. Each session draws from its own
`random.Random` seeded from (seed, session index), each attacker from (seed, attack
index), the cluster from (seed, "cluster") (`derived_seed`): a session's run does not
depend on the others. So the sessions of a world without cluster or attackers can be split
into shards (`World(config, shard=(k, n))` holds the sessions whose index is k modulo n)
run apart and merged (`jumpvpn_core.sim.shards`). Embedders step a world themselves:

    world = World(config)
    while world.step_once():          # or world.run_until(t)
        ...

Audit records go to `on_record` (a callable) as they happen; the world keeps only
counters, a bounded histogram and a few sample timelines, so its memory grows with the
number of sessions, not with the number of events.

Two server sides: by default each session's server is a bare `SessionState` stepped by the
world. With `SimConfig.cluster` set, the server side is a cluster of real `Gateway` nodes in
shared-store mode over one in-process `MemoryStore` (`jumpvpn_core.sim.cluster`); the
world routes each server input to a node, can cut a node off the store (a partition) or the
whole store (an outage), and can deliver one request to two nodes at once (split-brain),
counting any dual binding.

The path-quality driver (`SimConfig.probe_interval_ms`): every interval the client's
driver announces again each uplink its client has forgotten (`CandidateDiscovered`) and,
when `SimConfig.feed_samples`, probes every path the client knows: an answered probe is an
`RttSample` (twice the path's current one-way delay plus jitter) when its answer arrives, a
lost one (either direction, by the path's current loss) a `ProbeLost` once
`PROBE_TIMEOUT_MS` has passed. With `feed_samples` false the same world runs a client fed
no samples: it keeps the first path until it fails and recovers in discovery order (the
first-available baseline). Either way each session's time on the best path is accounted
(`bestpath`).

The modules of the simulator: this one (configuration, the event loop, the one place where
the world calls the core: `World._feed`), `session` (what is kept per session pair, the
figures of a run), `bestpath` (time on the best path), `cluster` (the gateway nodes over
one store), `attackers` (what an attack attempt sends), `network` (link models, drifting
paths). Whatever one side sends the other is turned into the event the other side
receives by `jumpvpn_core.peer`.

`World(config, check=True)` steps through `invariants.checked_step` (and runs the checkers
on every step a cluster node makes) and raises `SimInvariantError` on the first violation:
a debugging and test aid, several times slower.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from typing import Any

import attrs

from jumpvpn_core import effects as fx
from jumpvpn_core import events as ev
from jumpvpn_core import peer
from jumpvpn_core.gateway import Gateway, GatewayResult
from jumpvpn_core.invariants import Violation, check_state, check_step, checked_step
from jumpvpn_core.machine import next_deadline, step
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.quality import path_cost
from jumpvpn_core.reasons import ReasonClass, ReasonCode, reason_class
from jumpvpn_core.sim.attackers import REQUEST_BYTES, attack_request
from jumpvpn_core.sim.bestpath import (
    BestPathTracker,
    PathTrace,
    SessionPathFigures,
    best_path,
    stationary_loss,
    true_cost,
)
from jumpvpn_core.sim.cluster import GATEWAY_REASONS, Cluster
from jumpvpn_core.sim.network import Drifting, LinkSpec
from jumpvpn_core.sim.session import (
    SessionOutcome,
    SimPath,
    SimSession,
    WorldStats,
    count_change,
)
from jumpvpn_core.sim.validation import check_attack, check_cluster, check_sim_config
from jumpvpn_core.state import ClientSide, SessionState, new_session
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "PROBE_TIMEOUT_MS",
    "AttackSpec",
    "ClusterSpec",
    "SessionOutcome",
    "SimConfig",
    "SimInvariantError",
    "World",
    "WorldStats",
    "config_shardable",
    "derived_seed",
]

#: Receives (virtual time, session index, audit record) for each record a session writes.
SessionRecordSink = Callable[[int, int, dict[str, Any]], None]

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
_PROBE = 9
_PROBE_RESULT = 10

_HEARTBEAT_BYTES = 120
_SAMPLE_TIMELINES = 8
#: The session whose path history the plots show (`WorldStats.path_traces`), and how many
#: entries of each kind it keeps at most (memory stays bounded on the longest runs).
_SAMPLE_PATH_SESSION = 0
_SAMPLE_PATH_ENTRIES = 50_000
#: A probe unanswered this long is reported lost (`ProbeLost`); so is one whose round trip
#: would take longer.
PROBE_TIMEOUT_MS = 2_000


def derived_seed(seed: int, stream: str, number: int = 0) -> int:
    """The seed of one independent PRNG stream of a world: `stream` is `session` (number:
    the session index), `probe` (number: the session index; the path-quality driver's
    probes), `attack` (number: the attack's position in `SimConfig.attacks`) or
    `cluster`. SHA-256 of the three, so that streams never overlap by construction and
    the same (seed, stream, number) gives the same draws on every platform."""
    digest = hashlib.sha256(f"jumpvpn-sim/{seed}/{stream}/{number}".encode()).digest()
    return int.from_bytes(digest[:16], "big")


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
        check_attack(self)
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
        check_cluster(self)
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
    #: The path-quality driver's period (0: none; see the module).
    probe_interval_ms: int = 0
    #: Whether the driver feeds its probes' results to the client (false: the
    #: first-available baseline, same world otherwise).
    feed_samples: bool = True
    #: Each session draws one offset in this window: where its paths' drift profiles
    #: stand at time 0 (sessions then see the same drift at different times).
    drift_offset_ms: tuple[int, int] = (0, 0)

    def __attrs_post_init__(self) -> None:
        check_sim_config(self, AttackSpec, ClusterSpec)
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


def config_shardable(config: SimConfig) -> bool:
    """True when the sessions of `config` are independent of one another, so that a world
    can be split into shards (`World(shard=...)`) run apart and merged: no cluster (its
    nodes share one store) and no attacker (each picks its targets among all sessions)."""
    return config.cluster is None and not config.attacks


def _exp(mean_ms: int, rng: random.Random) -> int:
    return 1 + int(rng.expovariate(1.0 / mean_ms))


class World:
    """Many session pairs in one virtual-time world.

    `on_record` receives every audit record as it happens. `check=True` runs the
    invariant checkers after every step and raises `SimInvariantError` on a violation.
    """

    def __init__(self, config: SimConfig,
                 on_record: Callable[[dict[str, Any]], None] | None = None,
                 *, check: bool = False, shard: tuple[int, int] = (0, 1),
                 on_session_record: SessionRecordSink | None = None) -> None:
        number, of = shard
        if not 0 <= number < of:
            raise ValueError(f"shard {shard} must be (number, count) with 0 <= number < count")
        if of > 1 and not config_shardable(config):
            raise ValueError("a world with a cluster or attackers runs whole: its sessions "
                             "share a store or an attacker, so it cannot be sharded")
        self.config = config
        self.shard = shard
        self.now_ms = 0
        #: The world's own PRNG: cluster routing and split-brain draws only. Each session
        #: and each attacker draws from its own (`derived_seed`).
        self.rng = random.Random(derived_seed(config.seed, "cluster"))
        self._attack_rngs = [random.Random(derived_seed(config.seed, "attack", number))
                             for number in range(len(config.attacks))]
        self._on_session_record = on_session_record
        self.stats = WorldStats(
            recovery_histogram=[0] * (config.policy.max_recovery_window_ms + 1)
        )
        self._on_record = on_record
        self._check = check
        self._queue: list[tuple[int, int, int, int, Any]] = []
        self._seq = 0
        self._started = False
        #: Cluster mode: the gateway nodes that play every session's server side.
        self.cluster = (None if config.cluster is None
                        else Cluster(config, self.stats.cluster, self._clock, self.rng))
        self._profiles = [spec.profile() for spec in config.paths]
        self._static_loss = [stationary_loss(spec) for spec in config.paths]
        #: This world's sessions (all of them, or those of its shard), by index order.
        self.sessions: list[SimSession] = []
        for index in range(number, config.sessions, of):
            self.sessions.append(self._make_session(index))
        self._by_index: list[SimSession] | dict[int, SimSession] = (
            self.sessions if of == 1 else {s.index: s for s in self.sessions})
        for attack_number, attack in enumerate(config.attacks):
            self._push(attack.start_ms, _ATTACK, -1, (attack_number, attack))

    # -- construction ----------------------------------------------------------------------

    def _make_session(self, index: int) -> SimSession:
        cfg = self.config
        rng = random.Random(derived_seed(cfg.seed, "session", index))
        session_id = rng.randbytes(16)
        secret = rng.randbytes(32)
        start = rng.randrange(max(1, cfg.start_spread_ms))
        client = new_session(Role.CLIENT, session_id, secret, start, cfg.policy)
        server = new_session(Role.SERVER, session_id, secret, start, cfg.policy)
        drifting = any(profile is not None for profile in self._profiles)
        offset = rng.randint(*cfg.drift_offset_ms) if drifting else 0
        paths = []
        for number, spec in enumerate(cfg.paths):
            up, down, _window = spec.build(rng)
            profile = self._profiles[number]
            if profile is not None:
                up = Drifting(profile, offset, up)
                down = Drifting(profile, offset, down)
            local = TransportDescriptor.udp(f"192.168.{number}.2", 40_000 + number)
            public = TransportDescriptor.udp(f"203.0.113.{number + 1}",
                                             10_000 + rng.randrange(50_000))
            paths.append(SimPath(local, public, up, down, spec.one_way_delay_ms,
                                 spec.nat_rebind_mean_ms, profile, offset, spec.jitter_ms))
        session = SimSession(index, session_id, client, server, paths,
                             {p.local: i for i, p in enumerate(paths)}, rng)
        session.last_client_rx_ms = start
        if cfg.probe_interval_ms:
            session.probe_rng = random.Random(derived_seed(cfg.seed, "probe", index))
            session.tracker = BestPathTracker(self._best_at(session), start,
                                              cfg.policy.migration_dwell_ms)
            if index == _SAMPLE_PATH_SESSION:
                session.path_trace = self.stats.path_traces[index] = PathTrace(offset, start)
        if index < _SAMPLE_TIMELINES:
            self.stats.timelines[index] = [(start, Phase.BIRTH.value)]
        self._feed(session, Role.CLIENT, ev.Attach(start, paths[0].local))
        if self.cluster is not None:
            node, opened = self.cluster.open_session(index, session_id, secret,
                                                     paths[0].public, start)
            self._gateway_result(session, node, ev.Attach(start, paths[0].public), opened)
        else:
            self._feed(session, Role.SERVER, ev.Attach(start, paths[0].public))
        for path in paths[1:]:
            self._feed(session, Role.CLIENT, ev.CandidateDiscovered(start, path.local))
        self._push(start + cfg.heartbeat_ms, _HEARTBEAT, index, None)
        for number, path in enumerate(paths):
            if path.rebind_mean_ms:
                self._push(start + _exp(path.rebind_mean_ms, rng), _NAT_REBIND, index,
                           number)
        if cfg.collapse_probability and rng.random() < cfg.collapse_probability:
            begin = rng.randint(*cfg.collapse_start_ms)
            end = begin + rng.randint(*cfg.collapse_length_ms)
            self._push(begin, _COLLAPSE_START, index, end)
        if cfg.probe_interval_ms:
            # The driver's probe timer runs on its own phase, not in step with the traffic.
            assert session.probe_rng is not None
            phase = 1 + session.probe_rng.randrange(cfg.probe_interval_ms)
            self._push(start + phase, _PROBE, index, None)
        return session

    def _best_at(self, session: SimSession) -> Callable[[int], int]:
        """The number of `session`'s best path at a time (`bestpath.true_cost`)."""
        specs = self.config.paths
        policy = self.config.policy
        profiles = self._profiles
        static = self._static_loss
        paths = session.paths

        def best_at(now: int) -> int:
            return best_path([true_cost(specs[n], profiles[n], static[n], path.local, policy,
                                        now + path.offset_ms, now)
                              for n, path in enumerate(paths)])

        return best_at

    def _clock(self) -> int:
        return self.now_ms

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
        session = self._by_index[index] if index >= 0 else None
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
        sessions = self._by_index
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

    def _dispatch(self, session: SimSession, kind: int, payload: Any) -> None:
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
                self._feed(session, Role.CLIENT, ev.Tick(now))
            # The deadline this tick was queued for may have moved later: queue the current
            # one, or the session would overstay its bound until some other input arrives.
            self._schedule_tick(session, Role.CLIENT, session.client)
        elif kind == _TICK_SERVER:
            session.scheduled_server_tick = None
            deadline = next_deadline(session.server)
            if deadline is not None and deadline <= now:
                self._server(session, ev.Tick(now))
            # A tick the store refused has queued its own retry (`_server`); queueing the
            # still-due deadline again would step the same instant forever.
            if session.scheduled_server_tick is None:
                self._schedule_tick(session, Role.SERVER, session.server)
        elif kind == _NAT_REBIND:
            path = session.paths[payload]
            rng = session.rng
            path.public = TransportDescriptor.udp(path.public.host,
                                                  10_000 + rng.randrange(50_000))
            if session.server.phase is not Phase.TERMINATED:
                self._push(now + _exp(path.rebind_mean_ms, rng), _NAT_REBIND, session.index,
                           payload)
        elif kind == _COLLAPSE_START:
            session.collapsed = True
            self._feed(session, Role.CLIENT, ev.AllTransportsFailed(now))
            self._push(payload, _COLLAPSE_END, session.index, None)
        elif kind == _COLLAPSE_END:
            session.collapsed = False
            for path in session.paths:
                self._feed(session, Role.CLIENT, ev.CandidateDiscovered(now, path.local))
        elif kind == _PROBE:
            self._probe(session, now)
        elif kind == _PROBE_RESULT:
            self._probe_result(session, now, payload)

    # -- the path-quality driver ------------------------------------------------------------

    def _probe(self, session: SimSession, now: int) -> None:
        """One round of the driver: announce forgotten uplinks again, probe the known ones."""
        client = session.client
        if client.phase is Phase.TERMINATED:
            return
        self._push(now + self.config.probe_interval_ms, _PROBE, session.index, None)
        if not session.collapsed:
            limit = client.ident.policy.max_candidates
            for path in session.paths:
                client = session.client
                local = path.local
                if (local != client.link.active and local not in client.roaming.candidates
                        and len(client.roaming.candidates) < limit
                        and client.phase is not Phase.TERMINATED):
                    self._feed(session, Role.CLIENT, ev.CandidateDiscovered(now, local))
        if not self.config.feed_samples:
            return
        client = session.client
        rng = session.probe_rng
        assert rng is not None
        for number, path in enumerate(session.paths):
            local = path.local
            if local != client.link.active and local not in client.roaming.candidates:
                continue
            rtt: int | None = None
            if (not session.collapsed and path.up.delivers(now, rng)
                    and path.down.delivers(now, rng)):
                rtt = 2 * path.delay_at(now)
                if path.jitter_ms:
                    rtt += rng.randint(0, path.jitter_ms)
                rtt = max(1, rtt)
                if rtt >= PROBE_TIMEOUT_MS:
                    rtt = None
            self._push(now + (PROBE_TIMEOUT_MS if rtt is None else rtt), _PROBE_RESULT,
                       session.index, (number, rtt))

    def _probe_result(self, session: SimSession, now: int,
                      payload: tuple[int, int | None]) -> None:
        """A probe's answer arrived (`rtt`) or it is overdue (None): tell the client, if
        it still knows the path."""
        number, rtt = payload
        client = session.client
        local = session.paths[number].local
        if client.phase is Phase.TERMINATED or (
                local != client.link.active and local not in client.roaming.candidates):
            return
        self._feed(session, Role.CLIENT, ev.ProbeLost(now, local) if rtt is None
                   else ev.RttSample(now, local, rtt))
        trace = session.path_trace
        side = session.client.side
        if (trace is not None and isinstance(side, ClientSide)
                and len(trace.estimates) < _SAMPLE_PATH_ENTRIES):
            _kind, cost = path_cost(side.quality, local, self.config.policy, now)
            trace.estimates.append((now, number, cost))

    def _track(self, session: SimSession, now: int) -> None:
        """Follow the client's position (the path it is ATTACHED on) for the figures."""
        tracker = session.tracker
        if tracker is None:
            return
        client = session.client
        link = client.link
        position = (session.by_local.get(link.active) if client.phase is Phase.ATTACHED
                    and link.active is not None and not link.active_failed else None)
        if position != tracker.position:
            tracker.move(now, position)
            trace = session.path_trace
            if trace is not None and len(trace.positions) < _SAMPLE_PATH_ENTRIES:
                trace.positions.append((now, -1 if position is None else position))

    def _heartbeat(self, session: SimSession, now: int) -> None:
        client = session.client
        if client.phase is Phase.TERMINATED and session.server.phase is Phase.TERMINATED:
            return
        self._push(now + self.config.heartbeat_ms, _HEARTBEAT, session.index, None)
        if client.phase is Phase.TERMINATED:
            return
        active = client.link.active
        if active is not None and not client.link.active_failed and not session.collapsed:
            path = session.paths[session.by_local[active]]
            rng = session.rng
            delivered_up = path.up.delivers(now, rng)
            if delivered_up:
                self._server(session, ev.InboundTraffic(now, path.public, _HEARTBEAT_BYTES))
            # The server answers only through its own binding: after a NAT rebinding it has
            # not validated yet, or once it has ended the session, the answer goes nowhere.
            server = session.server
            if (delivered_up and server.phase is not Phase.TERMINATED
                    and server.link.active == path.public and path.down.delivers(now, rng)):
                session.last_client_rx_ms = now
                self._feed(session, Role.CLIENT, ev.InboundTraffic(now, active, _HEARTBEAT_BYTES))
                return
            self._feed(session, Role.CLIENT, ev.PacketLoss(now))
        if (session.client.phase is Phase.ATTACHED
                and now - session.last_client_rx_ms >= self.config.delivery_timeout_ms):
            session.last_client_rx_ms = now  # one timeout report per silent period
            self._feed(session, Role.CLIENT, ev.DeliveryTimeout(now))

    def _deliver_to_server(self, session: SimSession, now: int, payload: Any) -> None:
        request, path_number = payload
        session.captured = request
        self._server(session, peer.request_received(request, now,
                                                    session.paths[path_number].public,
                                                    REQUEST_BYTES))

    def _deliver_to_client(self, session: SimSession, now: int,
                           message: fx.SendPathChallenge | fx.SendReattachAccept) -> None:
        target = message.to
        for path in session.paths:
            if path.public == target:
                break
        else:
            return  # the NAT mapping moved on: the datagram reaches nobody
        via = path.local
        if isinstance(message, fx.SendReattachAccept):
            # The answer reaches the client on the transport its request went out on.
            side = session.client.side
            if isinstance(side, ClientSide) and side.pending:
                via = side.pending.via
        self._feed(session, Role.CLIENT, peer.received(message, now, via))

    def _attack(self, payload: tuple[int, AttackSpec]) -> None:
        number, attack = payload
        now = self.now_ms
        rng = self._attack_rngs[number]
        session = self.sessions[rng.randrange(len(self.sessions))]
        self.stats.attacks_sent += 1
        self._server(session, attack_request(attack.kind, number, session, now, rng))
        interval = max(1, 1_000 // attack.rate_per_s)
        self._push(now + interval, _ATTACK, -1, payload)

    # -- the one place where the world calls the core ---------------------------------------

    def _feed(self, session: SimSession, role: Role, event: Any) -> None:
        state = session.client if role is Role.CLIENT else session.server
        if self._check:
            new, effects, violations = checked_step(state, event)
            if violations:
                raise self._violation(state, event, violations)
        else:
            new, effects = step(state, event)
        self.stats.events += 1
        if role is Role.CLIENT:
            session.client = new
            if session.tracker is not None and new is not state:
                self._track(session, event.now_ms)
        else:
            session.server = new
        if effects:
            self._execute(session, role, effects)
        if new is not state:
            self._schedule_tick(session, role, new)

    def _violation(self, before: SessionState, event: Any,
                   violations: list[Violation]) -> SimInvariantError:
        return SimInvariantError(
            f"t={self.now_ms} ms session {before.ident.session_id.hex()} "
            f"{before.ident.role.value} {type(event).__name__}: "
            + "; ".join(map(str, violations)))

    # -- cluster mode: the server side is a set of gateway nodes over one store -------------

    def _server(self, session: SimSession, event: Any) -> None:
        """Deliver a server-side input: to the session's own state, or to a cluster node."""
        if self.cluster is None:
            self._feed(session, Role.SERVER, event)
            return
        for node, result in self.cluster.deliver(session.index, session.session_id, event):
            self._gateway_result(session, node, event, result)

    def _gateway_result(self, session: SimSession, node: Gateway, event: Any,
                        result: GatewayResult) -> None:
        self.stats.events += 1
        sid = session.session_id
        before = session.server
        assert self.cluster is not None
        committed = self.cluster.committed_since(sid, session.store_version, self._check)
        if committed is not None:
            version, state, stale = committed
            if stale is not None:
                raise SimInvariantError(f"{stale} caches a state of session {sid.hex()} "
                                        "other than the one it committed")
            session.server = state
            session.store_version = version
        effects = result.effects
        reason = result.reason
        if reason is not None and not any(isinstance(e, fx.Rejected) for e in effects):
            # Refused before or by the core without a commit: the gateway keeps no effect,
            # so the world writes the audit record the core would have written.
            server = session.server
            effects = (*effects, fx.Rejected(sid, Role.SERVER, reason, reason_class(reason),
                                             server.phase, server.state_version,
                                             type(event).__name__, event.now_ms,
                                             getattr(event, "nonce", None),
                                             getattr(event, "state_version", None)))
        if self._check:
            # The node stepped the core itself: its step is checked here. A refusal before
            # `step()` ran (no deadline fired) leaves only the state to check.
            after = session.server
            violations = check_state(after)
            if not (reason in GATEWAY_REASONS and after is before):
                violations = [*check_step(before, event, after, effects), *violations]
            if violations:
                raise self._violation(before, event, violations)
        if effects:
            self._execute(session, Role.SERVER, effects)
        if session.server is not before:
            self._schedule_tick(session, Role.SERVER, session.server)
        if isinstance(event, ev.Tick) and reason is ReasonCode.STORE_UNAVAILABLE:
            retry = self.now_ms + self.config.heartbeat_ms
            session.scheduled_server_tick = retry
            self._push(retry, _TICK_SERVER, session.index, None)

    def _schedule_tick(self, session: SimSession, role: Role, state: SessionState) -> None:
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

    def _execute(self, session: SimSession, role: Role, effects: tuple[fx.Effect, ...]) -> None:
        now = self.now_ms
        rng = session.rng
        stats = self.stats
        for effect in effects:
            if isinstance(effect, fx.StateChanged):
                self._audit(session, effect)
            elif isinstance(effect, fx.Rejected):
                session.rejections += 1
                stats.rejections[effect.reason.value] += 1
                if effect.reason_class is ReasonClass.SECURITY_EVENT:
                    stats.security_events += 1
                self._emit(session, effect.to_record())
            elif isinstance(effect, fx.SendReattachRequest):
                number = session.by_local.get(effect.via)
                if number is None or session.collapsed:
                    continue
                path = session.paths[number]
                if path.up.delivers(now, rng):
                    self._push(now + path.delay_at(now), _TO_SERVER, session.index,
                               (effect, number))
            elif isinstance(effect, fx.SendPathChallenge | fx.SendReattachAccept):
                target = effect.to
                for path in session.paths:
                    if path.public == target:
                        if not session.collapsed and path.down.delivers(now, rng):
                            self._push(now + path.delay_at(now), _TO_CLIENT, session.index,
                                       effect)
                        break
            elif (isinstance(effect, fx.BindTransport) and role is Role.CLIENT
                  and effect.previous is not None):
                session.switches += 1
                stats.switches += 1

    def _audit(self, session: SimSession, change: fx.StateChanged) -> None:
        count_change(self.stats, session, change)
        self._emit(session, change.to_record())

    def _emit(self, session: SimSession, record: dict[str, Any]) -> None:
        if self._on_record is not None:
            self._on_record(record)
        if self._on_session_record is not None:
            self._on_session_record(self.now_ms, session.index, record)

    # -- results ---------------------------------------------------------------------------

    def outcomes(self) -> list[SessionOutcome]:
        """One row per session of this world (of its shard), in index order."""
        return [s.outcome() for s in self.sessions]

    def path_figures(self) -> list[SessionPathFigures]:
        """Each session's time-on-best-path figures as of now, in index order (empty
        without the path-quality driver)."""
        now = min(self.now_ms, self.config.duration_ms)
        figures = (s.path_figures(now) for s in self.sessions)
        return [f for f in figures if f is not None]

    def surviving(self) -> int:
        """Sessions whose client is not TERMINATED."""
        return sum(1 for s in self.sessions if s.client.phase is not Phase.TERMINATED)

