"""No simulator configuration can stall the world, and no bad one gets in.

Every field is driven to both ends of its range and the world must run to its end within a
fixed number of happenings (a deterministic bound, not a timer: a world that stalls keeps
producing happenings at one instant and blows the bound). Every field just beyond its range
is refused at construction with a `ValueError` that names it. Only `sessions` and
`duration_ms` scale the work (linearly), so they stay small here.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from jumpvpn_core.sim import AttackSpec, ClusterSpec, LinkSpec, SimConfig, World, build_scenario
from jumpvpn_core.sim.validation import (
    MAX_ATTACK_RATE_PER_S,
    MAX_DELAY_MS,
    MAX_NODES,
    MAX_TIME_MS,
    MIN_HEARTBEAT_MS,
    MIN_NAT_REBIND_MEAN_MS,
)

SESSIONS = 3
DURATION_MS = 20_000
# Happenings a 3-session, 20 s world may take at the most demanding extremes (attacks at
# 1,000/s are the largest share: 20,000); a stalled world exceeds it within a second.
HAPPENINGS_BOUND = 400_000
BIG = MAX_TIME_MS


def _base() -> SimConfig:
    return build_scenario("steady", SESSIONS, DURATION_MS, 7)


def _link(**fields: Any) -> dict[str, Any]:
    return {"paths": (LinkSpec("wifi", **fields), LinkSpec("lte", one_way_delay_ms=40))}


EXTREMES: list[tuple[str, dict[str, Any]]] = [
    ("delay 0", _link(one_way_delay_ms=0)),
    ("delay max", _link(one_way_delay_ms=MAX_DELAY_MS)),
    ("always bad, all lost", _link(p_good_to_bad=1.0, p_bad_to_good=0.0, loss_good=1.0,
                                   loss_bad=1.0)),
    ("bursts flip every packet", _link(p_good_to_bad=1.0, p_bad_to_good=1.0, loss_bad=1.0)),
    ("return path lost", _link(return_loss=1.0)),
    ("blackout always, from 0 for ever", _link(blackout_probability=1.0,
                                               blackout_start_ms=(0, 0),
                                               blackout_length_ms=(BIG, BIG))),
    ("blackout at the far end", _link(blackout_probability=1.0, blackout_start_ms=(BIG, BIG),
                                      blackout_length_ms=(0, BIG))),
    ("flap shortest", _link(flap_period_ms=2, flap_down_ms=1)),
    ("flap longest", _link(flap_period_ms=BIG, flap_down_ms=BIG - 1)),
    ("rebind fastest", _link(nat_rebind_mean_ms=MIN_NAT_REBIND_MEAN_MS)),
    ("rebind slowest", _link(nat_rebind_mean_ms=BIG)),
    ("every path rebinds fastest", {"paths": tuple(
        LinkSpec(f"p{n}", nat_rebind_mean_ms=MIN_NAT_REBIND_MEAN_MS, one_way_delay_ms=0)
        for n in range(16))}),
    ("one session", {"sessions": 1}),
    ("1 ms of virtual time", {"duration_ms": 1}),
    ("heartbeat fastest", {"heartbeat_ms": MIN_HEARTBEAT_MS}),
    ("heartbeat slowest", {"heartbeat_ms": BIG}),
    ("delivery timeout 1 ms", {"delivery_timeout_ms": 1}),
    ("delivery timeout max", {"delivery_timeout_ms": BIG}),
    ("no start spread", {"start_spread_ms": 0}),
    ("start spread beyond the run", {"start_spread_ms": BIG}),
    ("everyone collapses at once for ever", {"collapse_probability": 1.0,
                                            "collapse_start_ms": (0, 0),
                                            "collapse_length_ms": (BIG, BIG)}),
    ("collapse of zero length", {"collapse_probability": 1.0,
                                 "collapse_start_ms": (0, BIG), "collapse_length_ms": (0, 0)}),
    ("attacks at the highest rate", {"attacks": tuple(
        AttackSpec(kind, MAX_ATTACK_RATE_PER_S) for kind in ("replay", "forge", "flood"))}),
    ("attacks at the lowest rate, late", {"attacks": (AttackSpec("flood", 1, start_ms=BIG),)}),
    ("biggest cluster, split brain always", {"cluster": ClusterSpec(
        nodes=MAX_NODES, routing="random", split_brain_probability=1.0)}),
    ("one node, store never reachable", {"cluster": ClusterSpec(
        nodes=1, partitions=((0, 0, BIG),), store_outages=((0, BIG),))}),
]


@pytest.mark.requirement("RM-1", "RM-7")
@pytest.mark.parametrize(("name", "change"), EXTREMES, ids=[e[0] for e in EXTREMES])
def test_each_field_at_its_extremes_runs_to_the_end(name: str, change: dict[str, Any]) -> None:
    config = attrs.evolve(_base(), **change)
    world = World(config)
    happenings = 0
    while world.step_once():
        happenings += 1
        assert happenings <= HAPPENINGS_BOUND, f"{name}: the world stalled at {world.now_ms} ms"
    assert world.now_ms <= config.duration_ms


BEYOND: list[tuple[dict[str, Any], str]] = [
    (_link(one_way_delay_ms=-1), "one_way_delay_ms"),
    (_link(one_way_delay_ms=MAX_DELAY_MS + 1), "one_way_delay_ms"),
    (_link(one_way_delay_ms=2.5), "one_way_delay_ms must be an integer"),
    (_link(p_good_to_bad=-0.01), "p_good_to_bad"),
    (_link(p_bad_to_good="1"), "p_bad_to_good must be a number"),
    (_link(loss_good=float("nan")), "loss_good"),
    (_link(loss_bad=1.01), "loss_bad"),
    (_link(return_loss=True), "return_loss"),
    (_link(blackout_probability=2), "blackout_probability"),
    (_link(blackout_start_ms=(5, 1)), "blackout_start_ms"),
    (_link(blackout_length_ms=(0,)), "blackout_length_ms"),
    (_link(flap_period_ms=-5), "flap_period_ms"),
    (_link(flap_period_ms=10, flap_down_ms=10), "flap_down_ms"),
    (_link(flap_down_ms=3), "flap_down_ms needs flap_period_ms"),
    (_link(nat_rebind_mean_ms=-3), "nat_rebind_mean_ms"),
    (_link(nat_rebind_mean_ms=MIN_NAT_REBIND_MEAN_MS - 1), "nat_rebind_mean_ms"),
    (_link(nat_rebind_mean_ms=BIG + 1), "nat_rebind_mean_ms"),
    ({"paths": (LinkSpec(""),)}, "name must be a non-empty string"),
    ({"paths": ()}, "paths must be a non-empty list"),
    ({"sessions": 0}, "sessions"),
    ({"sessions": 2.0}, "sessions must be an integer"),
    ({"duration_ms": 0}, "duration_ms"),
    ({"seed": -1}, "seed"),
    ({"heartbeat_ms": MIN_HEARTBEAT_MS - 1}, "heartbeat_ms"),
    ({"heartbeat_ms": "1s"}, "heartbeat_ms must be an integer"),
    ({"delivery_timeout_ms": 0}, "delivery_timeout_ms"),
    ({"start_spread_ms": -1}, "start_spread_ms"),
    ({"collapse_probability": -0.5}, "collapse_probability"),
    ({"collapse_start_ms": (-1, 5)}, "collapse_start_ms"),
    ({"collapse_length_ms": (0, BIG + 1)}, "collapse_length_ms"),
    ({"policy": "default"}, "policy must be a Policy"),
]


@pytest.mark.requirement("RM-1")
@pytest.mark.parametrize(("change", "field"), BEYOND, ids=[b[1] for b in BEYOND])
def test_each_field_beyond_its_range_is_refused_by_name(change: dict[str, Any],
                                                        field: str) -> None:
    with pytest.raises(ValueError, match=field):
        attrs.evolve(_base(), **change)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: AttackSpec("flood", MAX_ATTACK_RATE_PER_S + 1), "rate_per_s"),
        (lambda: AttackSpec("flood", 10, start_ms=-1), "start_ms"),
        (lambda: AttackSpec("nuke", 10), "attack kind"),
        (lambda: ClusterSpec(nodes=MAX_NODES + 1), "cluster nodes"),
        (lambda: ClusterSpec(nodes=2, partitions=((2, 0, 5),)), "partition node"),
        (lambda: ClusterSpec(store_outages=((5, 1),)), "store outage"),
    ],
)
def test_attack_and_cluster_fields_are_refused_by_name(build: Any, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        build()
