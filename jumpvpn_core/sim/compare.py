"""The path-quality comparison of a run: a client fed samples against the first-available
baseline, on the same sessions, seeds and path histories.

`behaviour_figures` sums one run's per-session figures (`bestpath.SessionPathFigures`):
the share of the eligible time spent on the best path, switches and proactive migrations
per session against the hysteresis bound `ceil(T / migration_dwell_ms)` of each session's
span `T`, and the recovery episodes. `comparison` puts the two runs side by side with the
settings that produced them. Standard library only; every figure is the same for a seed
whatever the number of workers (sums of integers, then one division).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jumpvpn_core.policy import SWITCH_WINDOW_MS
from jumpvpn_core.sim.bestpath import SessionPathFigures
from jumpvpn_core.sim.plots import SimTally
from jumpvpn_core.sim.world import SimConfig

__all__ = ["behaviour_figures", "comparison", "hysteresis_bound"]


def hysteresis_bound(span_ms: int, dwell_ms: int) -> int:
    """The most proactive switches a session may make over `span_ms`: ceil(T / dwell)."""
    return -(-span_ms // dwell_ms) if dwell_ms > 0 else span_ms


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _per_session(values: Sequence[int]) -> dict[str, Any]:
    return {"mean": round(sum(values) / len(values), 2) if values else 0.0,
            "max": max(values, default=0)}


def behaviour_figures(figures: Sequence[SessionPathFigures], tally: SimTally,
                      surviving: int, dwell_ms: int) -> dict[str, Any]:
    """One behaviour's figures (see the module)."""
    eligible = sum(f.eligible_ms for f in figures)
    on_best = sum(f.on_best_ms for f in figures)
    shares = sorted(f.on_best_ms / f.eligible_ms for f in figures if f.eligible_ms)
    return {
        "time_on_best": _share(on_best, eligible),
        "eligible_ms": eligible,
        "on_best_ms": on_best,
        "eligible_share_of_time": _share(eligible, sum(f.span_ms for f in figures)),
        "session_time_on_best_min": round(shares[0], 4) if shares else None,
        "switches_per_session": _per_session([f.switches for f in figures]),
        "migrations_per_session": _per_session([f.migrations for f in figures]),
        "sessions_over_hysteresis_bound": sum(
            1 for f in figures if f.switches > hysteresis_bound(f.span_ms, dwell_ms)),
        "recovery_episodes": tally.episodes,
        "recovered": sum(tally.recovered.values()),
        "recovery_p50_ms": tally.recovered_percentile_ms(0.5),
        "recovery_p95_ms": tally.recovered_percentile_ms(0.95),
        "surviving": surviving,
    }


def comparison(config: SimConfig, quality: dict[str, Any],
               baseline: dict[str, Any] | None) -> dict[str, Any]:
    """The two behaviours' figures with the settings that produced them."""
    policy = config.policy
    minutes = -(-config.duration_ms // SWITCH_WINDOW_MS)
    return {
        "probe_interval_ms": config.probe_interval_ms,
        "migration_margin_ms": policy.migration_margin_ms,
        "migration_dwell_ms": policy.migration_dwell_ms,
        "quality_max_age_ms": policy.quality_max_age_ms,
        "quality_loss_penalty_ms": policy.quality_loss_penalty_ms,
        "hysteresis_bound": hysteresis_bound(config.duration_ms, policy.migration_dwell_ms),
        "anti_flap_bound": policy.max_switches_per_minute * minutes,
        "quality": quality,
        "baseline": baseline,
    }
