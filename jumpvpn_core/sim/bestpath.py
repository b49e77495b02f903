"""Time on the best available path: what a run's sessions would ideally have used, and how
long they did.

A path's *true cost* at a time is what the client's own score would converge to if it
measured the path without noise: the mean probe round trip (twice the one-way delay, plus
half the jitter) and the round-trip loss (both directions, the path's stationary burst
loss and its drifting loss combined), put through the core's own formula
(`jumpvpn_core.quality.path_cost`: rank class, then cost). The *best* path is the one of
least (class, cost, position). Blackouts, flapping and session-wide collapses are not
taken out of the comparison: the figure is about delay and loss.

`BestPathTracker` follows one session: the client is *on* a path while it is ATTACHED to
it (the active path, not failed). Time counts as *eligible* once the current best path
has been the best for `migration_dwell_ms` (the time a client must wait before it may
move, by the hysteresis of `specs/path-quality.md`), measured from when it became best or
from the session's start. The best path is evaluated on a grid of `GRID_MS` of virtual
time; the client's position is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from jumpvpn_core.policy import Policy
from jumpvpn_core.quality import LOSS_ONE_Q16, path_cost
from jumpvpn_core.sim.network import DriftProfile, LinkSpec
from jumpvpn_core.state import PathScore
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "GRID_MS",
    "BestPathTracker",
    "PathTrace",
    "SessionPathFigures",
    "best_path",
    "cost_series",
    "stationary_loss",
    "true_cost",
]

#: Resolution (ms of virtual time) at which the best path is evaluated.
GRID_MS = 100


def stationary_loss(spec: LinkSpec) -> tuple[float, float]:
    """The long-run per-packet loss of `spec`'s burst-loss model, (up, down): a
    Gilbert-Elliott chain spends `p_gb / (p_gb + p_bg)` of its packets in the Bad state.
    `return_loss`, when set, replaces the down direction (as `LinkSpec.build` does)."""
    up = 0.0
    if spec.p_good_to_bad > 0.0 or spec.loss_good > 0.0:
        moves = spec.p_good_to_bad + spec.p_bad_to_good
        bad = spec.p_good_to_bad / moves if moves else 0.0
        up = bad * spec.loss_bad + (1.0 - bad) * spec.loss_good
    down = spec.return_loss if spec.return_loss > 0.0 else up
    return up, down


def true_cost(spec: LinkSpec, profile: DriftProfile | None, static: tuple[float, float],
              local: TransportDescriptor, policy: Policy, profile_ms: int,
              now: int) -> tuple[int, int]:
    """(rank class, cost) of one path at `now` (`profile_ms`: the time in its drift
    profile), by the core's formula applied to the path's true mean RTT and loss."""
    if profile is None:
        delay, drift = spec.one_way_delay_ms, 0.0
    else:
        delay, drift = profile.delay_at(profile_ms), profile.loss_at(profile_ms)
    up, down = static
    kept = (1.0 - up) * (1.0 - drift) * (1.0 - down) * (1.0 - drift)
    loss_q16 = min(LOSS_ONE_Q16, round((1.0 - kept) * LOSS_ONE_Q16))
    rtt = 2 * delay + spec.jitter_ms // 2
    return path_cost((PathScore(local, rtt, loss_q16, now),), local, policy, now)


def best_path(costs: Sequence[tuple[int, int]]) -> int:
    """The number of the best path: least (class, cost), the first on a tie."""
    best = 0
    for number in range(1, len(costs)):
        if costs[number] < costs[best]:
            best = number
    return best


def cost_series(specs: Sequence[LinkSpec], policy: Policy, offset_ms: int,
                times: Sequence[int]) -> list[list[tuple[int, int]]]:
    """The (rank class, cost) of every path of `specs` at each of `times`, for a session
    whose drift offset is `offset_ms` (what the world's accounting uses; for plots)."""
    series = []
    for number, spec in enumerate(specs):
        profile = spec.profile()
        static = stationary_loss(spec)
        local = TransportDescriptor.udp(f"192.168.{number}.2", 40_000 + number)
        series.append([true_cost(spec, profile, static, local, policy, t + offset_ms, t)
                       for t in times])
    return series


@attrs.frozen
class SessionPathFigures:
    """One session's figures on path choice (see the module): `span_ms` of life in the
    run, `eligible_ms` of it counted, `on_best_ms` of those on the best path; its switches
    (every rebind to another local transport), proactive migrations
    (MIGRATED_TO_BETTER_PATH) and recoveries."""

    index: int
    span_ms: int
    eligible_ms: int
    on_best_ms: int
    switches: int
    migrations: int
    recoveries: int


@attrs.define
class PathTrace:
    """What the plots show of one sample session: its drift offset and start, the path its
    client was on over time (`positions`: (time, path number or -1 when on none)) and, for
    a client fed samples, its own cost estimate of a path after each sample (`estimates`:
    (time, path number, cost)). The world keeps at most 50,000 entries of each list (the
    start of a very long run)."""

    offset_ms: int
    start_ms: int
    positions: list[tuple[int, int]] = attrs.field(factory=list)
    estimates: list[tuple[int, int, int]] = attrs.field(factory=list)


class BestPathTracker:
    """Accounts one session's time on the best path (see the module).

    `best_at(t)` gives the best path's number at time `t`; `move(now, position)` is called
    whenever the client's position (a path number, or None) changes, `advance(now)` before
    the figures are read. Time before `start_ms` is not counted.
    """

    __slots__ = ("_best_at", "best", "best_since", "dwell_ms", "eligible_ms", "on_best_ms",
                 "position", "start_ms", "time_ms")

    def __init__(self, best_at: Callable[[int], int], start_ms: int, dwell_ms: int) -> None:
        self._best_at = best_at
        self.start_ms = start_ms
        self.dwell_ms = dwell_ms
        self.time_ms = start_ms
        self.position: int | None = None
        self.best = best_at(start_ms)
        self.best_since = start_ms
        self.eligible_ms = 0
        self.on_best_ms = 0

    def advance(self, now: int) -> None:
        """Account the time from the last call to `now` (never backwards)."""
        t = self.time_ms
        while t < now:
            cell_end = (t // GRID_MS + 1) * GRID_MS
            end = min(cell_end, now)
            counted = end - max(t, self.best_since + self.dwell_ms)
            if counted > 0:
                self.eligible_ms += counted
                if self.position == self.best:
                    self.on_best_ms += counted
            t = end
            if t == cell_end:
                best = self._best_at(t)
                if best != self.best:
                    self.best = best
                    self.best_since = t
        self.time_ms = max(self.time_ms, t)

    def move(self, now: int, position: int | None) -> None:
        """The client is on `position` (a path number, None: on none) from `now`."""
        self.advance(now)
        self.position = position
