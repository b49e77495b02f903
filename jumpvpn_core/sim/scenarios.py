"""Named simulation scenarios, after the risk model's sections.

Each builder returns a `SimConfig`; `SCENARIOS` maps the CLI name to its builder and a
one-line description. Timings are chosen so that each scenario exercises its clause
within a few simulated minutes. `SUITES` names groups of scenarios run together.

The `drifting-*` scenarios (path quality, `specs/path-quality.md`) give their paths delay
and loss that drift over virtual time, each session at its own point of the schedule
(`SimConfig.drift_offset_ms`), and run the path-quality driver (probes every
`DRIFT_PROBE_INTERVAL_MS`). `jumpvpn simulate` runs each of them twice, with samples fed
and without (the first-available baseline), and compares the time on the best path.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from jumpvpn_core.policy import Policy
from jumpvpn_core.sim.network import LinkSpec
from jumpvpn_core.sim.world import AttackSpec, ClusterSpec, SimConfig

__all__ = ["DRIFT_POLICY", "DRIFT_PROBE_INTERVAL_MS", "SCENARIOS", "SUITES", "ScenarioError",
           "build_scenario"]


class ScenarioError(ValueError):
    """Unknown scenario name or impossible parameters; the message lists valid choices."""


# Heartbeats every second: a loss threshold of 3 within 4 s means "three beats in a row".
SIM_POLICY = Policy(loss_threshold=3, loss_window_ms=4_000, max_recovery_window_ms=10_000,
                    reattach_timeout_ms=1_000, max_degraded_ms=60_000,
                    transport_lost_ttl_ms=60_000, switch_cooldown_ms=2_000)

_CLEAN = LinkSpec("wifi")
_SPARE = LinkSpec("lte", one_way_delay_ms=40)

Builder = Callable[[int, int, int], SimConfig]

# -- drifting paths (path quality) -----------------------------------------------------------

#: The simulated driver probes every path the client knows this often: with the EWMA's
#: gain of 1/8 a score follows a change within about eight probes (1.6 s).
DRIFT_PROBE_INTERVAL_MS = 200
#: `SIM_POLICY` with a migration margin of 10 ms (default 20): the uplinks here differ by
#: 40 ms RTT or more once they have drifted apart, and the dwell (5 s, the default) is
#: what holds back a move on noise. The other path-quality fields keep their defaults.
DRIFT_POLICY = attrs.evolve(SIM_POLICY, migration_margin_ms=10)
# Every probe's round trip: twice the one-way delay plus up to this much jitter.
_JITTER_MS = 10


def _drifting(n: int, d: int, seed: int, paths: tuple[LinkSpec, ...],
              period_ms: int) -> SimConfig:
    # Each session stands at its own point of the (periodic) schedule.
    return SimConfig(n, d, seed, paths, DRIFT_POLICY, probe_interval_ms=DRIFT_PROBE_INTERVAL_MS,
                     drift_offset_ms=(0, period_ms - 1))


def _drifting_degrading(n: int, d: int, seed: int) -> SimConfig:
    # Every 240 s the wifi uplink degrades over 30 s from 30 ms RTT to 180 ms with 2 %
    # loss each way, stays so for 110 s, then comes back over 15 s; LTE stays at 70 ms.
    period = 240_000
    wifi = LinkSpec("wifi", jitter_ms=_JITTER_MS, drift_period_ms=period,
                    drift=((0, 15, 0.0), (60_000, 15, 0.0), (90_000, 90, 0.02),
                           (200_000, 90, 0.02), (215_000, 15, 0.0)))
    lte = LinkSpec("lte", one_way_delay_ms=35, jitter_ms=_JITTER_MS)
    return _drifting(n, d, seed, (wifi, lte), period)


def _swapping(half_ms: int, ramp_ms: int) -> tuple[LinkSpec, LinkSpec]:
    """Two similar uplinks (40 ms and 90 ms RTT) that trade places every `half_ms`, each
    move taking `ramp_ms`."""
    period = 2 * half_ms
    fast, slow = 20, 45
    wifi = LinkSpec("wifi", jitter_ms=_JITTER_MS, drift_period_ms=period,
                    drift=((0, fast, 0.0), (half_ms - ramp_ms, fast, 0.0),
                           (half_ms, slow, 0.0), (period - ramp_ms, slow, 0.0)))
    lte = LinkSpec("lte", jitter_ms=_JITTER_MS, drift_period_ms=period,
                   drift=((0, slow, 0.0), (half_ms - ramp_ms, slow, 0.0),
                          (half_ms, fast, 0.0), (period - ramp_ms, fast, 0.0)))
    return wifi, lte


def _drifting_swap(n: int, d: int, seed: int) -> SimConfig:
    # The better of two similar uplinks changes every 60 s: much slower than the dwell.
    return _drifting(n, d, seed, _swapping(60_000, 5_000), 120_000)


def _drifting_swap_fast(n: int, d: int, seed: int) -> SimConfig:
    # ... every 4 s: faster than the 5 s dwell, so no move would pay off.
    return _drifting(n, d, seed, _swapping(4_000, 1_000), 8_000)


def _drifting_bufferbloat(n: int, d: int, seed: int) -> SimConfig:
    # Every 180 s the wifi uplink (30 ms RTT, the best, where sessions start) fills its
    # buffer within 2 s: 400 ms RTT and 1 % loss each way for 38 s, then drains in 3 s.
    period = 180_000
    wifi = LinkSpec("wifi", jitter_ms=_JITTER_MS, drift_period_ms=period,
                    drift=((0, 15, 0.0), (60_000, 15, 0.0), (62_000, 200, 0.01),
                           (100_000, 200, 0.01), (103_000, 15, 0.0)))
    lte = LinkSpec("lte", one_way_delay_ms=35, jitter_ms=_JITTER_MS)
    return _drifting(n, d, seed, (wifi, lte), period)



def _steady(n: int, d: int, seed: int) -> SimConfig:
    return SimConfig(n, d, seed, (_CLEAN, _SPARE), SIM_POLICY)


def _loss_spike(n: int, d: int, seed: int) -> SimConfig:
    bursty = LinkSpec("wifi", p_good_to_bad=0.01, p_bad_to_good=0.2, loss_good=0.01,
                      loss_bad=0.95)
    return SimConfig(n, d, seed, (bursty, _SPARE), SIM_POLICY)


def _nat_churn(n: int, d: int, seed: int) -> SimConfig:
    churny = LinkSpec("wifi", nat_rebind_mean_ms=30_000)
    return SimConfig(n, d, seed, (churny, _SPARE), SIM_POLICY)


def _asymmetric(n: int, d: int, seed: int) -> SimConfig:
    lopsided = LinkSpec("wifi", return_loss=0.4, nat_rebind_mean_ms=60_000)
    return SimConfig(n, d, seed, (lopsided, _SPARE), SIM_POLICY)


def _reattach_flood(n: int, d: int, seed: int) -> SimConfig:
    bursty = LinkSpec("wifi", p_good_to_bad=0.005, p_bad_to_good=0.2, loss_bad=0.95)
    return SimConfig(n, d, seed, (bursty, _SPARE), SIM_POLICY,
                     attacks=(AttackSpec("flood", 500), AttackSpec("forge", 50)))


def _replay(n: int, d: int, seed: int) -> SimConfig:
    # Rebinding now and then gives the attacker fresh requests to capture; rarely enough
    # that the anti-flap bound (6 switches a minute) is never what ends a session here.
    churny = LinkSpec("wifi", nat_rebind_mean_ms=90_000)
    return SimConfig(n, d, seed, (churny, _SPARE), SIM_POLICY,
                     attacks=(AttackSpec("replay", 100, start_ms=5_000),))


def _flapping(n: int, d: int, seed: int) -> SimConfig:
    flappy = LinkSpec("wifi", flap_period_ms=20_000, flap_down_ms=5_000)
    return SimConfig(n, d, seed, (flappy, _SPARE), SIM_POLICY)


def _degraded(n: int, d: int, seed: int) -> SimConfig:
    # One impaired path and nothing else: recovery finds no better path (§9 ladder).
    impaired = LinkSpec("wifi", p_good_to_bad=0.02, p_bad_to_good=0.05, loss_good=0.05,
                        loss_bad=0.8)
    return SimConfig(n, d, seed, (impaired,), SIM_POLICY)


def _collapse(n: int, d: int, seed: int) -> SimConfig:
    # Half the sessions lose every transport at once, for 2 s to 20 s: the short outages
    # recover, the long ones outlive the 10 s recovery window and end TERMINATED (§7).
    return SimConfig(n, d, seed, (_CLEAN, _SPARE), SIM_POLICY, collapse_probability=0.5,
                     collapse_start_ms=(5_000, max(5_000, min(d // 2, 120_000))),
                     collapse_length_ms=(2_000, 20_000))


def _split_brain(n: int, d: int, seed: int) -> SimConfig:
    # Three shared-store nodes; NAT churn makes clients reattach, and every reattach
    # request reaches two nodes that both load the record before either commits. The
    # compare-and-set lets one win; the other answers COMMIT_CONFLICT (§4.1).
    churny = LinkSpec("wifi", nat_rebind_mean_ms=30_000)
    return SimConfig(n, d, seed, (churny, _SPARE), SIM_POLICY,
                     cluster=ClusterSpec(nodes=3, routing="random",
                                         split_brain_probability=1.0))


def _partial_cluster(n: int, d: int, seed: int) -> SimConfig:
    # Three nodes, random routing. Node 1 loses the store for a quarter of the run, then
    # every node loses it for 15 s: requests that reach a node without the store are
    # refused (STORE_UNAVAILABLE), never accepted without their commit (§4.2).
    churny = LinkSpec("wifi", nat_rebind_mean_ms=30_000, p_good_to_bad=0.005,
                      p_bad_to_good=0.2, loss_bad=0.95)
    quarter = max(1_000, d // 4)
    outage = (d // 2 + 5_000, d // 2 + 20_000)
    return SimConfig(n, d, seed, (churny, _SPARE), SIM_POLICY,
                     cluster=ClusterSpec(nodes=3, routing="random",
                                         partitions=((1, quarter, 2 * quarter),),
                                         store_outages=(outage,)))


SCENARIOS: dict[str, tuple[Builder, str]] = {
    "steady": (_steady, "clean paths: the baseline"),
    "loss-spike": (_loss_spike, "§2.1 Gilbert-Elliott burst loss on the primary path"),
    "nat-churn": (_nat_churn, "§2.2 NAT rebinding of the primary path every ~30 s"),
    "asymmetric": (_asymmetric, "§2.3 lossy return path plus occasional rebinding"),
    "reattach-flood": (_reattach_flood, "§3.1 forged-request flood against the servers"),
    "replay": (_replay, "§3.2 captured requests replayed from a spoofed address"),
    "flapping": (_flapping, "anti-flap: the primary path goes down 5 s in every 20 s"),
    "degraded": (_degraded, "§9 one impaired path and no candidate"),
    "collapse": (_collapse, "§7 every transport of half the sessions fails at once"),
    "split-brain": (_split_brain, "§4.1 every reattach reaches two gateway nodes at once"),
    "partial-cluster": (_partial_cluster,
                        "§4.2 a gateway node, then the whole store, is unreachable"),
    "drifting-degrading": (_drifting_degrading,
                           "path quality: the wifi uplink degrades beside a steady LTE one"),
    "drifting-swap": (_drifting_swap,
                      "path quality: two similar uplinks swap places every 60 s"),
    "drifting-swap-fast": (_drifting_swap_fast,
                           "path quality: ... every 4 s, faster than the dwell time"),
    "drifting-bufferbloat": (_drifting_bufferbloat,
                             "path quality: a bufferbloat episode on the active uplink"),
}

#: Names that run several scenarios one after the other (`jumpvpn simulate --scenario`).
SUITES: dict[str, tuple[str, ...]] = {
    "drifting": ("drifting-degrading", "drifting-swap", "drifting-swap-fast",
                 "drifting-bufferbloat"),
}


def build_scenario(name: str, sessions: int, duration_ms: int, seed: int) -> SimConfig:
    """The config of scenario `name`; `ScenarioError` lists the valid choices."""
    if name not in SCENARIOS:
        raise ScenarioError(
            f"unknown scenario {name!r}; choose one of: {', '.join(sorted(SCENARIOS))}"
        )
    if sessions < 1:
        raise ScenarioError(f"--sessions must be at least 1, got {sessions}")
    if duration_ms < 1_000:
        raise ScenarioError(f"--duration must be at least 1s, got {duration_ms} ms")
    if seed < 0:
        raise ScenarioError(f"--seed must be non-negative, got {seed}")
    builder, _description = SCENARIOS[name]
    try:
        return builder(sessions, duration_ms, seed)
    except ValueError as exc:
        raise ScenarioError(str(exc)) from None
