"""The simulator's session model: what the world keeps for each client/server pair, and the
figures a run reports.

`SimSession` holds one pair's two states (or, in cluster mode, the server state the
cluster last committed), its network paths and the counters of the per-session CSV;
`WorldStats` the world's bounded counters; `count_change` is the one place a `StateChanged`
record turns into those counters. Nothing here steps the core or schedules anything.
"""

from __future__ import annotations

import random
from collections import Counter

import attrs

from jumpvpn_core.effects import SendReattachRequest, StateChanged
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.sim.bestpath import BestPathTracker, PathTrace, SessionPathFigures
from jumpvpn_core.sim.network import DriftProfile, LinkModel
from jumpvpn_core.state import SessionState
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "SessionOutcome",
    "SimPath",
    "SimSession",
    "WorldStats",
    "count_change",
]


@attrs.define
class SimPath:
    """One network path of a session: the client's local transport, the address the server
    sees it as (moved by NAT rebinding), its two directions and its delay (fixed, or from
    its drift `profile` at `now + offset_ms`)."""

    local: TransportDescriptor
    public: TransportDescriptor
    up: LinkModel
    down: LinkModel
    delay_ms: int
    rebind_mean_ms: int
    profile: DriftProfile | None = None
    offset_ms: int = 0
    jitter_ms: int = 0

    def delay_at(self, now_ms: int) -> int:
        """The one-way delay of a packet sent at `now_ms`."""
        profile = self.profile
        return self.delay_ms if profile is None else profile.delay_at(now_ms + self.offset_ms)


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
class SimSession:
    """One client/server pair as the world runs it.

    `rng` is this session's own PRNG (seeded from the world's seed and `index`): every
    draw the session's own network makes comes from it, so a session's run does not depend
    on the other sessions of its world.
    """

    index: int
    session_id: bytes
    client: SessionState
    server: SessionState
    paths: list[SimPath]
    by_local: dict[TransportDescriptor, int]
    rng: random.Random = attrs.field(eq=False, repr=False)
    collapsed: bool = False
    last_client_rx_ms: int = 0
    #: The last reattach request seen on the wire (what a replaying attacker re-sends).
    captured: SendReattachRequest | None = None
    recovering_since: int | None = None
    scheduled_client_tick: int | None = None
    scheduled_server_tick: int | None = None
    recoveries: int = 0
    switches: int = 0
    rejections: int = 0
    #: Cluster mode: the store version of `server`.
    store_version: int = 0
    #: Proactive migrations of the client (MIGRATED_TO_BETTER_PATH).
    migrations: int = 0
    #: With the path-quality driver (`SimConfig.probe_interval_ms`): the PRNG of its probes
    #: (its own stream, so that probing leaves the session's other draws as they were),
    #: the time-on-best-path accounting, and for the sample session what the plots show.
    probe_rng: random.Random | None = attrs.field(default=None, eq=False, repr=False)
    tracker: BestPathTracker | None = attrs.field(default=None, eq=False, repr=False)
    path_trace: PathTrace | None = attrs.field(default=None, eq=False, repr=False)

    def outcome(self) -> SessionOutcome:
        """This session's row of the per-session CSV."""
        client, server = self.client, self.server
        return SessionOutcome(
            self.session_id.hex(),
            client.phase.value,
            server.phase.value,
            client.end_reason.value if client.end_reason else "",
            server.end_reason.value if server.end_reason else "",
            client.state_version,
            server.state_version,
            self.recoveries,
            self.switches,
            self.rejections,
        )

    def path_figures(self, now_ms: int) -> SessionPathFigures | None:
        """This session's time-on-best-path figures as of `now_ms` (None without the
        path-quality driver)."""
        tracker = self.tracker
        if tracker is None:
            return None
        tracker.advance(now_ms)
        return SessionPathFigures(self.index, max(0, now_ms - tracker.start_ms),
                                  tracker.eligible_ms, tracker.on_best_ms, self.switches,
                                  self.migrations, self.recoveries)


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
    #: With the path-quality driver: the sample session's path history (session 0).
    path_traces: dict[int, PathTrace] = attrs.field(factory=dict)

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


def count_change(stats: WorldStats, session: SimSession, change: StateChanged) -> None:
    """Count one phase change: transitions, and for the client its recoveries (with their
    duration in the histogram), its end reason and its sample timeline."""
    stats.transitions[change.reason.value] += 1
    if change.role is not Role.CLIENT:
        return
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
    if change.reason is ReasonCode.MIGRATED_TO_BETTER_PATH:
        session.migrations += 1
    if change.to_phase is Phase.TERMINATED:
        stats.end_reasons[change.reason.value] += 1
    timeline = stats.timelines.get(session.index)
    if timeline is not None:
        timeline.append((change.ts_ms, change.to_phase.value))
