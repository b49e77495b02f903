"""The simulator world: deterministic, free of global state, invariant-clean, bounded."""

from __future__ import annotations

import gc
import json
import tracemalloc
from typing import Any

import attrs
import pytest

from jumpvpn_core.sim import (
    SCENARIOS,
    ClusterSpec,
    ScenarioError,
    SimConfig,
    SimInvariantError,
    World,
    build_scenario,
)
from jumpvpn_core.sim.network import LinkSpec


def _trace(name: str, seed: int, sessions: int = 20, duration_ms: int = 25_000,
           ) -> tuple[bytes, World]:
    lines: list[str] = []
    world = World(build_scenario(name, sessions, duration_ms, seed),
                  on_record=lambda r: lines.append(json.dumps(r, sort_keys=True)))
    world.run()
    return "\n".join(lines).encode(), world


def _summary(world: World) -> tuple[Any, ...]:
    s = world.stats
    return (s.events, dict(s.transitions), dict(s.rejections), s.security_events,
            dict(s.end_reasons), s.switches, list(s.recovery_histogram), dict(s.timelines),
            dict(s.cluster), world.outcomes())


@pytest.mark.parametrize("name", ["nat-churn", "reattach-flood", "split-brain"])
def test_same_seed_gives_the_same_trace_bytes_and_stats(name: str) -> None:
    first, world_a = _trace(name, 7)
    second, world_b = _trace(name, 7)
    assert first
    assert first == second
    assert _summary(world_a) == _summary(world_b)


def test_different_seeds_give_different_traces() -> None:
    first, _ = _trace("loss-spike", 1)
    second, _ = _trace("loss-spike", 2)
    assert first != second


def test_two_worlds_stepped_interleaved_match_the_same_worlds_run_alone() -> None:
    configs = [build_scenario("loss-spike", 15, 40_000, 3),
               build_scenario("partial-cluster", 15, 40_000, 4)]
    alone = []
    for config in configs:
        world = World(config)
        world.run()
        alone.append(_summary(world))
    a, b = World(configs[0]), World(configs[1])
    busy = [True, True]
    steps = 0
    while any(busy):
        busy = [a.step_once(), b.step_once()]
        steps += 1
        assert steps < 1_000_000
    assert [_summary(a), _summary(b)] == alone


@pytest.mark.requirement("RM-4.2")
def test_a_server_tick_the_store_refused_is_retried_later_not_spun_on() -> None:
    # Seed 4 puts a server deadline inside a store outage: the refused tick must queue a
    # later retry instead of stepping the same instant again.
    world = World(build_scenario("partial-cluster", 15, 40_000, 4))
    steps = 0
    while world.step_once():
        steps += 1
        assert steps < 100_000


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_runs_with_step_invariants_checked(name: str) -> None:
    world = World(build_scenario(name, 10, 45_000, 11), check=True)
    stats = world.run()
    assert stats.events > 10 * 40  # about one heartbeat a second per session, both sides
    assert world.now_ms == 45_000
    assert len(world.outcomes()) == 10


def _plant_a_violation(monkeypatch: pytest.MonkeyPatch) -> None:
    from jumpvpn_core import invariants
    from jumpvpn_core.invariants import Violation

    def planted(before: Any, event: Any, after: Any, effects: Any) -> list[Violation]:
        return [Violation("planted", "a violation the checker must surface")]

    monkeypatch.setattr(invariants, "STEP_CHECKERS", (*invariants.STEP_CHECKERS, planted))


@pytest.mark.parametrize("name", ["steady", "partial-cluster"])
def test_check_mode_raises_on_a_violation(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    _plant_a_violation(monkeypatch)
    with pytest.raises(SimInvariantError, match="planted"):
        World(build_scenario(name, 2, 5_000, 1), check=True).run()


def test_without_check_mode_the_checkers_do_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    _plant_a_violation(monkeypatch)
    assert World(build_scenario("steady", 2, 5_000, 1)).run().events > 0


@pytest.mark.requirement("RM-4.1")
def test_split_brain_never_binds_one_session_on_two_nodes() -> None:
    world = World(build_scenario("split-brain", 20, 90_000, 5), check=True)
    stats = world.run()
    cluster = stats.cluster
    assert cluster["races"] > 10  # the scenario really raced requests
    assert cluster["race_single_winner"] > 0
    assert cluster["dual_bindings"] == 0
    assert cluster["dual_commits"] == 0
    assert stats.rejections["COMMIT_CONFLICT"] >= cluster["race_single_winner"]


@pytest.mark.requirement("RM-4.2")
def test_partial_cluster_rejects_on_an_unreachable_store_and_recovers_after() -> None:
    world = World(build_scenario("partial-cluster", 20, 80_000, 5), check=True)
    stats = world.run()
    assert stats.rejections["STORE_UNAVAILABLE"] > 0
    assert stats.cluster["store_unavailable"] > 0
    # Sessions keep going through the nodes that still reach the store.
    assert world.surviving() > 10
    assert sum(stats.recovery_histogram) > 0


@pytest.mark.requirement("RM-7")
def test_collapse_ends_long_outages_terminated_not_recovering_forever() -> None:
    world = World(build_scenario("collapse", 40, 120_000, 2), check=True)
    stats = world.run()
    assert stats.end_reasons["NO_VIABLE_CANDIDATE"] > 0
    assert sum(stats.recovery_histogram) > 0


@pytest.mark.requirement("RM-3.2")
def test_replayed_requests_are_rejected_as_security_events() -> None:
    world = World(build_scenario("replay", 20, 60_000, 3))
    stats = world.run()
    assert stats.attacks_sent > 0
    assert stats.security_events > 0
    assert stats.rejections["REPLAY_DETECTED"] + stats.rejections["NONCE_TOO_OLD"] > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"collapse_probability": 1.5}, "collapse_probability"),
        ({"paths": (LinkSpec("x", loss_good=-0.1),)}, "loss_good"),
        ({"paths": (LinkSpec("x", blackout_probability=2.0),)}, "blackout_probability"),
        ({"sessions": 0}, "sessions"),
        ({"cluster": None, "duration_ms": 0}, "duration"),
    ],
)
def test_bad_configs_are_refused_with_the_field_named(change: dict[str, Any],
                                                      message: str) -> None:
    config = build_scenario("steady", 5, 5_000, 1)
    with pytest.raises(ValueError, match=message):
        attrs.evolve(config, **change)


def test_bad_cluster_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="split_brain_probability"):
        ClusterSpec(split_brain_probability=-0.5)
    with pytest.raises(ValueError, match="routing"):
        ClusterSpec(routing="round-robin")
    with pytest.raises(ValueError, match="split-brain needs"):
        ClusterSpec(nodes=1, split_brain_probability=0.5)


def test_unknown_scenario_lists_the_valid_choices() -> None:
    with pytest.raises(ScenarioError, match="split-brain") as caught:
        build_scenario("nope", 1, 5_000, 1)
    for name in SCENARIOS:
        assert name in str(caught.value)


def _retained(config: SimConfig) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        world = World(config)
        world.run()
        gc.collect()
        size, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert world.stats.events > 0
    return size


@pytest.mark.requirement("RM-5.1")
def test_memory_grows_with_sessions_not_with_events() -> None:
    base = _retained(build_scenario("loss-spike", 40, 30_000, 1))
    longer = _retained(build_scenario("loss-spike", 40, 60_000, 1))
    wider = _retained(build_scenario("loss-spike", 80, 30_000, 1))
    # Twice the events in the same world: retained memory about the same.
    assert longer < base * 1.25
    # Twice the sessions: clearly more.
    assert wider > base * 1.6
