"""Path quality: integer EWMAs per path, a stable ranking, and the migration hysteresis.

Everything here is arithmetic on integers, so every implementation ranks paths the same
way, bit for bit (`specs/path-quality.md` states the same rules). Pure, like the rest of
the core: the client's handlers (`_client`) and the deadlines (`machine`) decide with it,
and embedders may call it to show how a client ranks its paths (`path_cost`, `ranked`).
"""

from __future__ import annotations

from jumpvpn_core.policy import SWITCH_WINDOW_MS, Policy
from jumpvpn_core.state import ClientSide, Link, PathScore, Roaming
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "GOOD_LOSS_LIMIT_Q16",
    "LOSS_ONE_Q16",
    "migration_due",
    "path_cost",
    "ranked",
    "sampled",
    "upgrade_target",
]

#: Smoothed loss of a path whose every probe was lost (fixed point, 1/65536).
LOSS_ONE_Q16 = 65_536
#: A measured path is "good" while its smoothed loss is below one half.
GOOD_LOSS_LIMIT_Q16 = 32_768

# Rank classes: measured and good, then unmeasured (or stale), then measured and bad.
_GOOD, _UNMEASURED, _BAD = 0, 1, 2


def _smoothed(old: int, sample: int) -> int:
    """One EWMA step with gain 1/8, rounded half up: (7 * old + sample + 4) // 8."""
    return (7 * old + sample + 4) >> 3


def sampled(quality: tuple[PathScore, ...], transport: TransportDescriptor,
            rtt_ms: int | None, now: int,
            known: tuple[TransportDescriptor, ...]) -> tuple[PathScore, ...]:
    """`quality` after one sample of `transport`: an RTT (`rtt_ms`) or a lost probe (None).

    Entries of paths no longer in `known` are dropped; the sampled path's entry keeps its
    place, a new one goes last.
    """
    out: list[PathScore] = []
    found = False
    for score in quality:
        if score.transport == transport:
            found = True
            if rtt_ms is None:
                out.append(PathScore(transport, score.srtt_ms,
                                     _smoothed(score.loss_q16, LOSS_ONE_Q16), now))
            else:
                srtt = rtt_ms if score.srtt_ms == 0 else _smoothed(score.srtt_ms, rtt_ms)
                out.append(PathScore(transport, srtt, _smoothed(score.loss_q16, 0), now))
        elif score.transport in known:
            out.append(score)
    if not found:
        out.append(PathScore(transport, 0, LOSS_ONE_Q16, now) if rtt_ms is None
                   else PathScore(transport, rtt_ms, 0, now))
    return tuple(out)


def path_cost(quality: tuple[PathScore, ...], transport: TransportDescriptor,
              policy: Policy, now: int) -> tuple[int, int]:
    """(rank class, cost in ms) of `transport`: lower is better in both.

    Cost is `srtt_ms + loss_q16 * quality_loss_penalty_ms // 65536`. A path without a
    measurement, or whose latest one is older than `quality_max_age_ms`, is unmeasured
    (cost 0): it ranks after every good measured path and before every bad one.
    """
    for score in quality:
        if score.transport == transport:
            if now - score.updated_ms > policy.quality_max_age_ms:
                return _UNMEASURED, 0
            cost = score.srtt_ms + (score.loss_q16 * policy.quality_loss_penalty_ms >> 16)
            return (_GOOD if score.loss_q16 < GOOD_LOSS_LIMIT_Q16 else _BAD), cost
    return _UNMEASURED, 0


def ranked(paths: tuple[TransportDescriptor, ...], quality: tuple[PathScore, ...],
           policy: Policy, now: int) -> tuple[TransportDescriptor, ...]:
    """`paths` best first: by rank class, then cost, then their given order (stable)."""
    if not quality or len(paths) < 2:
        return paths
    keys = {path: path_cost(quality, path, policy, now) for path in paths}
    return tuple(sorted(paths, key=keys.__getitem__))


def upgrade_target(link: Link, roaming: Roaming, quality: tuple[PathScore, ...],
                   policy: Policy, now: int) -> TransportDescriptor | None:
    """The candidate a proactive migration would move to now, if any.

    It must be measured and good, and its cost plus `migration_margin_ms` must not exceed
    the cost of the active path, which must itself be measured (good or bad) and not
    failed. Among several, the cheapest; on a tie, the earliest discovered.
    """
    active = link.active
    if active is None or link.active_failed or not roaming.candidates:
        return None
    active_class, active_cost = path_cost(quality, active, policy, now)
    if active_class == _UNMEASURED:
        return None
    best: TransportDescriptor | None = None
    best_cost = 0
    for candidate in roaming.candidates:
        kind, cost = path_cost(quality, candidate, policy, now)
        if kind == _GOOD and cost + policy.migration_margin_ms <= active_cost and (
                best is None or cost < best_cost):
            best, best_cost = candidate, cost
    return best


def migration_due(side: ClientSide, roaming: Roaming, policy: Policy) -> int:
    """When the tracked `better` candidate may be migrated to: its dwell time passed and
    neither anti-flap bound (cooldown, switches per minute) would refuse the switch."""
    due = side.better_since_ms + policy.migration_dwell_ms
    times = roaming.switch_times
    if times:
        cooldown_end = times[-1] + policy.switch_cooldown_ms
        if cooldown_end > due:
            due = cooldown_end
        limit = policy.max_switches_per_minute
        if len(times) >= limit:
            window_end = times[-limit] + SWITCH_WINDOW_MS
            if window_end > due:
                due = window_end
    return due
