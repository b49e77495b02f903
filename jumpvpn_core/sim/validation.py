"""Validation of the simulator's configuration records, called from their constructors.

Every field is checked for its type (an `int` field takes no bool, float or string; a
probability takes an int or a finite float), its sign and its range, and the first problem
is raised as one `ValueError` naming the field, e.g. `nat_rebind_mean_ms must be 0 (never)
or at least 1000 ms, got -3`.

The ranges are what keeps a world from stalling: every field that schedules happenings
(heartbeats, NAT rebindings, attacks) has a floor, so the number of happenings per session
and virtual second is bounded, and every time field has a ceiling, so no arithmetic on it
overflows. Only `sessions` and `duration_ms` scale the work, linearly.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "MAX_ATTACK_RATE_PER_S",
    "MAX_DELAY_MS",
    "MAX_DRIFT_POINTS",
    "MAX_DURATION_MS",
    "MAX_NODES",
    "MAX_PATHS",
    "MAX_SESSIONS",
    "MAX_TIME_MS",
    "MIN_HEARTBEAT_MS",
    "MIN_NAT_REBIND_MEAN_MS",
    "MIN_PROBE_INTERVAL_MS",
    "check_attack",
    "check_cluster",
    "check_link",
    "check_sim_config",
]

#: Ceiling of every time field (about 31 years): far beyond any run, far below overflow.
MAX_TIME_MS = 10**12
#: Longest run: 30 days of virtual time.
MAX_DURATION_MS = 30 * 24 * 3_600_000
MAX_SESSIONS = 10_000_000
#: Longest one-way delay of a path.
MAX_DELAY_MS = 60_000
#: Heartbeats at most ten times a second per session.
MIN_HEARTBEAT_MS = 100
#: A path rebinds at most about once a second on average.
MIN_NAT_REBIND_MEAN_MS = 1_000
#: The attacker's schedule has a 1 ms resolution.
MAX_ATTACK_RATE_PER_S = 1_000
MAX_PATHS = 16
MAX_NODES = 64
#: Points of one path's drift schedule.
MAX_DRIFT_POINTS = 64
#: The path-quality driver probes each path at most ten times a second.
MIN_PROBE_INTERVAL_MS = 100


def _int(name: str, value: Any, low: int, high: int, unit: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer{_unit(unit)}, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low:_}, {high:_}]{_unit(unit)}, got {value}")


def _unit(unit: str) -> str:
    return f" ({unit})" if unit else ""


def _probability(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _window(name: str, value: Any, high: int = MAX_TIME_MS) -> None:
    if (not isinstance(value, tuple) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)):
        raise ValueError(f"{name} must be a pair of integers [low, high] (ms), got {value!r}")
    low, top = value
    if not 0 <= low <= top <= high:
        raise ValueError(f"{name} must satisfy 0 <= low <= high <= {high:_} (ms), got {value!r}")


def check_link(spec: Any) -> None:
    """Check a `LinkSpec`; `ValueError` names the first bad field."""
    if not isinstance(spec.name, str) or not spec.name:
        raise ValueError(f"name must be a non-empty string, got {spec.name!r}")
    _int("one_way_delay_ms", spec.one_way_delay_ms, 0, MAX_DELAY_MS, "ms")
    for name in ("p_good_to_bad", "p_bad_to_good", "loss_good", "loss_bad", "return_loss",
                 "blackout_probability"):
        _probability(name, getattr(spec, name))
    _window("blackout_start_ms", spec.blackout_start_ms)
    _window("blackout_length_ms", spec.blackout_length_ms)
    _int("flap_period_ms", spec.flap_period_ms, 0, MAX_TIME_MS, "ms, 0: no flapping")
    _int("flap_down_ms", spec.flap_down_ms, 0, MAX_TIME_MS, "ms")
    if spec.flap_period_ms and not 0 < spec.flap_down_ms < spec.flap_period_ms:
        raise ValueError(f"flap_down_ms must be in (0, flap_period_ms = {spec.flap_period_ms}) "
                         f"when flapping, got {spec.flap_down_ms}")
    if not spec.flap_period_ms and spec.flap_down_ms:
        raise ValueError(f"flap_down_ms needs flap_period_ms > 0, got flap_down_ms "
                         f"{spec.flap_down_ms} with no period")
    rebind = spec.nat_rebind_mean_ms
    if isinstance(rebind, bool) or not isinstance(rebind, int):
        raise ValueError(f"nat_rebind_mean_ms must be an integer (ms), got {rebind!r}")
    if rebind != 0 and not MIN_NAT_REBIND_MEAN_MS <= rebind <= MAX_TIME_MS:
        raise ValueError(f"nat_rebind_mean_ms must be 0 (never) or in "
                         f"[{MIN_NAT_REBIND_MEAN_MS:_}, {MAX_TIME_MS:_}] ms, got {rebind}")
    _int("jitter_ms", spec.jitter_ms, 0, MAX_DELAY_MS, "ms")
    _int("drift_period_ms", spec.drift_period_ms, 0, MAX_TIME_MS, "ms, 0: not periodic")
    _drift(spec.drift, spec.drift_period_ms)


def _drift(points: Any, period: int) -> None:
    if not isinstance(points, tuple) or len(points) > MAX_DRIFT_POINTS:
        raise ValueError(f"drift must be a list of at most {MAX_DRIFT_POINTS} points "
                         f"[time_ms, one_way_delay_ms, loss], got {points!r}")
    if period and not points:
        raise ValueError(f"drift_period_ms needs drift points, got drift_period_ms {period} "
                         "with none")
    previous = -1
    for point in points:
        if not isinstance(point, tuple) or len(point) != 3:
            raise ValueError(f"drift point must be [time_ms, one_way_delay_ms, loss], "
                             f"got {point!r}")
        at, delay, loss = point
        _int("drift point time_ms", at, 0, (period - 1) if period else MAX_TIME_MS, "ms")
        if at <= previous:
            raise ValueError(f"drift point times must be strictly increasing, got {at} "
                             f"after {previous}")
        previous = at
        _int("drift point one_way_delay_ms", delay, 0, MAX_DELAY_MS, "ms")
        _probability("drift point loss", loss)


def check_attack(spec: Any) -> None:
    """Check an `AttackSpec`."""
    if spec.kind not in ("replay", "forge", "flood"):
        raise ValueError(f"attack kind must be replay, forge or flood, got {spec.kind!r}")
    _int("attack rate_per_s", spec.rate_per_s, 1, MAX_ATTACK_RATE_PER_S, "per second")
    _int("attack start_ms", spec.start_ms, 0, MAX_TIME_MS, "ms")


def check_cluster(spec: Any) -> None:
    """Check a `ClusterSpec`."""
    _int("cluster nodes", spec.nodes, 1, MAX_NODES)
    if spec.routing not in ("sticky", "random"):
        raise ValueError(f"cluster routing must be sticky or random, got {spec.routing!r}")
    if not isinstance(spec.partitions, tuple):
        raise ValueError(f"cluster partitions must be a list, got {spec.partitions!r}")
    for item in spec.partitions:
        if (not isinstance(item, tuple) or len(item) != 3
                or any(isinstance(v, bool) or not isinstance(v, int) for v in item)):
            raise ValueError(f"cluster partition must be [node, start_ms, end_ms], got {item!r}")
        _int("cluster partition node", item[0], 0, spec.nodes - 1)
        _window("cluster partition window", item[1:])
    if not isinstance(spec.store_outages, tuple):
        raise ValueError(f"cluster store_outages must be a list, got {spec.store_outages!r}")
    for item in spec.store_outages:
        _window("cluster store outage", item)
    _probability("split_brain_probability", spec.split_brain_probability)


def check_sim_config(config: Any, attack_type: type, cluster_type: type) -> None:
    """Check a `SimConfig` and each of its paths (attacks and the cluster are checked by
    their own constructors; here only that they are instances of `attack_type` and
    `cluster_type`, which the caller passes so this module imports nothing of the world)."""
    from jumpvpn_core.policy import Policy
    from jumpvpn_core.sim.network import LinkSpec

    _int("sessions", config.sessions, 1, MAX_SESSIONS)
    _int("duration_ms", config.duration_ms, 1, MAX_DURATION_MS, "ms")
    _int("seed", config.seed, 0, 2**64 - 1)
    if not isinstance(config.paths, tuple) or not config.paths:
        raise ValueError("paths must be a non-empty list of links")
    if len(config.paths) > MAX_PATHS:
        raise ValueError(f"paths must hold at most {MAX_PATHS} links, got {len(config.paths)}")
    for number, path in enumerate(config.paths):
        if not isinstance(path, LinkSpec):
            raise ValueError(f"paths[{number}] must be a LinkSpec, got {type(path).__name__}")
        try:
            check_link(path)
        except ValueError as exc:
            raise ValueError(f"paths[{number}] {path.name!r}: {exc}") from None
    if not isinstance(config.policy, Policy):
        raise ValueError(f"policy must be a Policy, got {type(config.policy).__name__}")
    _int("heartbeat_ms", config.heartbeat_ms, MIN_HEARTBEAT_MS, MAX_TIME_MS, "ms")
    _int("delivery_timeout_ms", config.delivery_timeout_ms, 1, MAX_TIME_MS, "ms")
    _int("start_spread_ms", config.start_spread_ms, 0, MAX_TIME_MS, "ms")
    _probability("collapse_probability", config.collapse_probability)
    _window("collapse_start_ms", config.collapse_start_ms)
    _window("collapse_length_ms", config.collapse_length_ms)
    probe = config.probe_interval_ms
    if isinstance(probe, bool) or not isinstance(probe, int):
        raise ValueError(f"probe_interval_ms must be an integer (ms), got {probe!r}")
    if probe != 0 and not MIN_PROBE_INTERVAL_MS <= probe <= MAX_TIME_MS:
        raise ValueError(f"probe_interval_ms must be 0 (no probes) or in "
                         f"[{MIN_PROBE_INTERVAL_MS:_}, {MAX_TIME_MS:_}] ms, got {probe}")
    if not isinstance(config.feed_samples, bool):
        raise ValueError(f"feed_samples must be true or false, got {config.feed_samples!r}")
    _window("drift_offset_ms", config.drift_offset_ms)
    if not isinstance(config.attacks, tuple) or len(config.attacks) > 16:
        raise ValueError("attacks must be a list of at most 16 attack records")
    if not all(isinstance(a, attack_type) for a in config.attacks):
        raise ValueError("attacks must hold AttackSpec records")
    if config.cluster is not None and not isinstance(config.cluster, cluster_type):
        raise ValueError(f"cluster must be a ClusterSpec, got {type(config.cluster).__name__}")
