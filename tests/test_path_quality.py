"""Path quality (specs/path-quality.md): integer scores, ranking, best-first recovery,
proactive migration under hysteresis, and the bounds that keep it from flapping."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jumpvpn_core import events as ev
from jumpvpn_core.codec import state_from_data, state_to_data
from jumpvpn_core.effects import SendReattachRequest, StateChanged
from jumpvpn_core.errors import InvalidEventError, StateDecodeError
from jumpvpn_core.invariants import check_state, check_step, controlled_migration
from jumpvpn_core.invariants import checked_step as invariant_checked_step
from jumpvpn_core.machine import next_deadline, step
from jumpvpn_core.peer import accept_pending, challenge_pending
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.quality import (
    GOOD_LOSS_LIMIT_Q16,
    LOSS_ONE_Q16,
    migration_due,
    path_cost,
    ranked,
    sampled,
    upgrade_target,
)
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.state import ClientSide, PathScore, SessionState, new_session
from jumpvpn_core.transport import TransportDescriptor
from tests.harness import LOCALS, SECRET, SESSION_ID, checked_step, rejections

C1, C2, C3, C4 = LOCALS[:4]
POLICY = Policy(migration_margin_ms=20, migration_dwell_ms=1_000, switch_cooldown_ms=500,
                quality_max_age_ms=5_000)


def _side(state: SessionState) -> ClientSide:
    side = state.side
    assert isinstance(side, ClientSide)
    return side


def _attached(policy: Policy = POLICY, *candidates: TransportDescriptor) -> SessionState:
    state, _ = checked_step(new_session(Role.CLIENT, SESSION_ID, SECRET, 0, policy),
                            ev.Attach(0, C1))
    for n, candidate in enumerate(candidates or (C2,)):
        state, _ = checked_step(state, ev.CandidateDiscovered(10 + n, candidate))
    return state


def _requests(effects: tuple[object, ...]) -> list[SendReattachRequest]:
    return [e for e in effects if isinstance(e, SendReattachRequest)]


# --- the arithmetic ---------------------------------------------------------------------------


def test_first_samples_set_the_score_and_later_ones_smooth_it_rounding_half_up() -> None:
    known = (C1,)
    quality = sampled((), C1, 100, 5, known)
    assert quality == (PathScore(C1, 100, 0, 5),)
    quality = sampled(quality, C1, 60, 6, known)
    assert quality == (PathScore(C1, 95, 0, 6),)  # (700 + 60 + 4) // 8
    quality = sampled(quality, C1, None, 7, known)
    assert quality == (PathScore(C1, 95, 8_192, 7),)  # (0 + 65536 + 4) // 8
    quality = sampled(quality, C1, 95, 8, known)
    assert quality[0].loss_q16 == (7 * 8_192 + 4) // 8
    lost_first = sampled((), C2, None, 9, (C2,))
    assert lost_first == (PathScore(C2, 0, LOSS_ONE_Q16, 9),)
    # The first RTT after only losses sets the RTT, it is not smoothed from 0.
    assert sampled(lost_first, C2, 40, 10, (C2,))[0].srtt_ms == 40


def test_a_sample_keeps_order_appends_new_paths_and_drops_forgotten_ones() -> None:
    quality = sampled(sampled((), C1, 10, 1, (C1, C2)), C2, 20, 2, (C1, C2))
    assert [s.transport for s in quality] == [C1, C2]
    again = sampled(quality, C1, 10, 3, (C1, C2))
    assert [s.transport for s in again] == [C1, C2]
    # C1 is no longer known: its entry goes at the next sample of any path.
    pruned = sampled(quality, C3, 30, 4, (C2, C3))
    assert [s.transport for s in pruned] == [C2, C3]


def test_cost_class_and_age_boundaries() -> None:
    policy = Policy(quality_loss_penalty_ms=1_000, quality_max_age_ms=100)
    good = (PathScore(C1, 50, GOOD_LOSS_LIMIT_Q16 - 1, 0),)
    assert path_cost(good, C1, policy, 100) == (0, 50 + ((GOOD_LOSS_LIMIT_Q16 - 1) * 1_000 >> 16))
    assert path_cost(good, C1, policy, 101) == (1, 0)  # stale one ms after the age limit
    bad = (PathScore(C1, 50, GOOD_LOSS_LIMIT_Q16, 0),)
    assert path_cost(bad, C1, policy, 0) == (2, 550)
    assert path_cost(good, C2, policy, 0) == (1, 0)


def test_ranking_good_then_unmeasured_then_bad_ties_in_given_order() -> None:
    quality = (PathScore(C1, 10, LOSS_ONE_Q16, 0), PathScore(C3, 40, 0, 0),
               PathScore(C4, 40, 0, 0))
    assert ranked((C1, C2, C3, C4), quality, POLICY, 0) == (C3, C4, C2, C1)
    assert ranked((C1, C2, C4, C3), quality, POLICY, 0) == (C4, C3, C2, C1)
    assert ranked((C1, C2), (), POLICY, 0) == (C1, C2)


@given(st.lists(st.tuples(st.sampled_from(LOCALS[:4]),
                          st.one_of(st.none(), st.integers(1, 600_000))), max_size=40))
@settings(max_examples=200)
def test_scores_stay_within_their_ranges(samples: list[tuple[object, int | None]]) -> None:
    quality: tuple[PathScore, ...] = ()
    for now, (transport, rtt) in enumerate(samples):
        assert isinstance(transport, TransportDescriptor)
        quality = sampled(quality, transport, rtt, now, LOCALS[:4])
        assert len({s.transport for s in quality}) == len(quality) <= 4
        for score in quality:
            assert 0 <= score.loss_q16 <= LOSS_ONE_Q16
            assert 0 <= score.srtt_ms <= 600_000


def test_an_unmeasured_path_never_outranks_a_measured_good_one() -> None:
    quality = (PathScore(C2, 600_000, GOOD_LOSS_LIMIT_Q16 - 1, 0),)
    assert ranked((C1, C2), quality, POLICY, 0) == (C2, C1)


# --- events -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, 600_001, 1.5, True, "10"])
def test_rtt_samples_out_of_range_are_typed_errors(bad: object) -> None:
    with pytest.raises(InvalidEventError, match="rtt_ms must be an int of milliseconds"):
        ev.RttSample(0, C1, bad)  # type: ignore[arg-type]  # bad input on purpose


def test_samples_of_unknown_paths_are_refused_and_servers_do_not_take_them() -> None:
    state = _attached()
    for event in (ev.RttSample(20, C4, 10), ev.ProbeLost(20, C4)):
        after, effects = checked_step(state, event)
        assert after is state
        assert [r.reason for r in rejections(effects)] == [ReasonCode.UNKNOWN_TRANSPORT]
    server, _ = step(new_session(Role.SERVER, SESSION_ID, SECRET, 0), ev.Attach(0, C1))
    after, effects = step(server, ev.RttSample(5, C1, 10))
    assert after is server
    assert [r.reason for r in rejections(effects)] == [ReasonCode.EVENT_NOT_APPLICABLE]


def test_samples_are_state_changes_in_birth_and_do_not_touch_the_loss_streak() -> None:
    birth = new_session(Role.CLIENT, SESSION_ID, SECRET, 0, POLICY)
    birth, _ = checked_step(birth, ev.CandidateDiscovered(1, C2))
    after, effects = checked_step(birth, ev.ProbeLost(7, C2))
    assert effects == ()
    assert after.link.clock_ms == 7
    assert _side(after).quality == (PathScore(C2, 0, LOSS_ONE_Q16, 7),)
    attached = _attached()
    attached, _ = checked_step(attached, ev.PacketLoss(20, 1))
    after, _ = checked_step(attached, ev.ProbeLost(30, C1))
    assert after.link.loss_streak == 1
    assert after.phase is Phase.ATTACHED


# --- best-first recovery ----------------------------------------------------------------------


@pytest.mark.requirement("RM-2.1")
def test_recovery_tries_the_best_measured_path_first_then_down_the_ranking() -> None:
    policy = attrs.evolve(POLICY, loss_threshold=1, reattach_retransmits=0,
                          reattach_timeout_ms=100)
    state = _attached(policy, C2, C3)
    state, _ = checked_step(state, ev.RttSample(20, C2, 90))
    state, _ = checked_step(state, ev.RttSample(21, C3, 30))
    state, _ = checked_step(state, ev.ProbeLost(22, C1))
    state, effects = checked_step(state, ev.PacketLoss(30, 1))
    assert state.phase is Phase.RECOVERING
    vias = [_requests(effects)[0].via]
    for now in (130, 230):
        state, effects = checked_step(state, ev.Tick(now))
        vias.append(_requests(effects)[0].via)
    assert vias == [C3, C2, C1]


def test_without_measurements_recovery_keeps_the_discovery_order() -> None:
    state = _attached(attrs.evolve(POLICY, loss_threshold=1), C2, C3)
    _, effects = checked_step(state, ev.PacketLoss(30, 1))
    assert _requests(effects)[0].via == C1


# --- proactive migration ----------------------------------------------------------------------


def _measured(policy: Policy = POLICY, active: int = 100, candidate: int = 30,
              now: int = 100) -> SessionState:
    state = _attached(policy)
    state, _ = checked_step(state, ev.RttSample(now, C1, active))
    state, _ = checked_step(state, ev.RttSample(now, C2, candidate))
    return state


def test_a_candidate_better_by_exactly_the_margin_is_tracked_one_ms_less_is_not() -> None:
    exact = _measured(candidate=80)
    assert _side(exact).better == C2
    assert _side(exact).better_since_ms == 100
    short = _measured(candidate=81)
    assert _side(short).better is None
    assert _side(short).better_since_ms == 0
    assert next_deadline(exact) == 1_100
    assert next_deadline(short) == 60_000  # only the transport-lost TTL (from attach at 0)


@pytest.mark.requirement("RM-3.1")
def test_migration_waits_the_whole_dwell_then_requests_the_candidate_with_proof() -> None:
    state = _measured()
    before, effects = checked_step(state, ev.Tick(1_099))
    assert before is state
    assert effects == ()
    after, effects = checked_step(state, ev.Tick(1_100))
    [request] = _requests(effects)
    assert (request.via, request.candidate, request.challenge) == (C2, C2, b"")
    assert request.nonce == _side(state).next_nonce
    assert after.phase is Phase.ATTACHED
    assert after.link.active == C1
    # A sample at the due time starts it too, without waiting for the Tick.
    _, effects = checked_step(state, ev.RttSample(1_100, C1, 100))
    assert _requests(effects)[0].candidate == C2


def test_a_candidate_that_stops_beating_the_active_path_restarts_the_dwell() -> None:
    state = _measured()
    # A lost probe costs the candidate 8192/65536 of the 1000 ms penalty: 30 + 125 > 100.
    state, _ = checked_step(state, ev.ProbeLost(600, C2))
    assert _side(state).better is None
    # Then the active path loses one too (100 + 125); the candidate (30 + 109) beats it again.
    state, _ = checked_step(state, ev.ProbeLost(700, C1))
    assert _side(state).better == C2
    assert _side(state).better_since_ms == 700
    _, effects = checked_step(state, ev.Tick(1_100))
    assert _requests(effects) == []


def test_a_stale_measurement_never_migrates() -> None:
    state = _measured()
    after, effects = checked_step(state, ev.Tick(5_101))  # both samples now older than 5000
    assert _requests(effects) == []
    assert _side(after).better is None


def test_an_unmeasured_active_path_is_never_migrated_away_from() -> None:
    state = _attached()
    state, _ = checked_step(state, ev.RttSample(100, C2, 1))
    assert _side(state).better is None
    assert upgrade_target(state.link, state.roaming, _side(state).quality, POLICY, 100) is None


@pytest.mark.requirement("RM-10")
def test_the_accepted_migration_is_its_own_reason_and_keeps_the_old_path() -> None:
    state, effects = checked_step(_measured(), ev.Tick(1_100))
    state, effects = checked_step(state, challenge_pending(state, 1_110, b"\x07" * 16,
                                                           observed=C2))
    [answer] = _requests(effects)
    assert _side(state).better == C2
    assert answer.via == C2
    state, effects = checked_step(state, accept_pending(state, 1_120))
    [change] = [e for e in effects if isinstance(e, StateChanged)]
    assert change.reason is ReasonCode.MIGRATED_TO_BETTER_PATH
    assert (change.from_phase, change.to_phase) == (Phase.ATTACHED, Phase.ATTACHED)
    assert state.link.active == C2
    assert state.roaming.candidates == (C1,)
    assert _side(state).better is None
    assert state.roaming.switch_times == (1_120,)


def test_an_accept_for_another_path_than_the_tracked_one_is_an_ordinary_reattach() -> None:
    state, _ = checked_step(_measured(), ev.Tick(1_100))
    side = _side(state)
    state = attrs.evolve(state, side=attrs.evolve(side, better=C3))
    state, effects = checked_step(state, accept_pending(state, 1_120))
    [change] = [e for e in effects if isinstance(e, StateChanged)]
    assert change.reason is ReasonCode.REATTACHED
    assert C1 not in state.roaming.candidates


def test_an_unanswered_migration_is_forgotten_with_its_hysteresis() -> None:
    policy = attrs.evolve(POLICY, reattach_retransmits=1, reattach_timeout_ms=200)
    state, _ = checked_step(_measured(policy), ev.Tick(1_100))
    state, effects = checked_step(state, ev.Tick(1_300))
    assert len(_requests(effects)) == 1  # the one re-send
    state, effects = checked_step(state, ev.Tick(1_500))
    assert _requests(effects) == []
    assert _side(state).pending is None
    assert _side(state).better is None
    assert _side(state).better_since_ms == 0
    assert state.phase is Phase.ATTACHED
    assert state.link.active == C1


def test_migration_waits_for_the_cooldown_and_the_switch_rate() -> None:
    policy = attrs.evolve(POLICY, switch_cooldown_ms=3_000, max_switches_per_minute=2)
    side = ClientSide(1, 1, None, 0, (), C2, 100)
    assert migration_due(side, _attached(policy).roaming, policy) == 1_100
    roaming = attrs.evolve(_attached(policy).roaming, switch_times=(50,))
    assert migration_due(side, roaming, policy) == 3_050
    roaming = attrs.evolve(roaming, switch_times=(40, 50))
    assert migration_due(side, roaming, policy) == 60_040


@pytest.mark.requirement("RM-3.1")
def test_oscillating_quality_never_asks_to_move_faster_than_the_dwell_allows() -> None:
    """Quality swapping every second for `T` ms, nothing answered: new migration requests
    stay within ceil(T / dwell) and no two start closer than the dwell time."""
    policy = attrs.evolve(POLICY, migration_dwell_ms=700, switch_cooldown_ms=0,
                          migration_margin_ms=5)
    state = _attached(policy)
    starts: list[int] = []
    total = 20_000
    for now in range(100, total, 250):
        good, bad = (C1, C2) if (now // 1_000) % 2 else (C2, C1)
        for transport, rtt in ((good, 10), (bad, 90)):
            nonce = _side(state).next_nonce
            state, effects = checked_step(state, ev.RttSample(now, transport, rtt))
            starts += [now for r in _requests(effects) if r.nonce >= nonce]
        state, _ = checked_step(state, ev.Tick(now + 1))
    assert starts, "the scenario must try at least once to mean anything"
    assert len(starts) <= math.ceil(total / policy.migration_dwell_ms)
    assert all(b - a >= policy.migration_dwell_ms for a, b in itertools.pairwise(starts))
    assert state.link.active == C1  # nothing answered: the binding never moved


@pytest.mark.requirement("RM-3.1")
def test_attempted_migrations_respect_the_dwell_even_when_all_are_accepted() -> None:
    """Every migration request is answered at once: the switches that result stay within
    ceil(T / dwell) and no two are closer than the dwell time."""
    policy = attrs.evolve(POLICY, migration_dwell_ms=700, switch_cooldown_ms=0,
                          migration_margin_ms=5, max_switches_per_minute=1_000)
    state = _attached(policy)
    switch_times: list[int] = []
    total = 20_000
    for now in range(100, total, 50):
        good, bad = (C1, C2) if (now // 1_000) % 2 else (C2, C1)
        for transport, rtt in ((good, 10), (bad, 90)):
            state, effects = checked_step(state, ev.RttSample(now, transport, rtt))
            if _requests(effects):
                pending = _side(state).pending
                assert pending is not None
                state, _ = checked_step(state, challenge_pending(state, now, b"\x05" * 16,
                                                                 observed=pending.candidate))
                state, effects = checked_step(state, accept_pending(state, now))
                assert any(isinstance(e, StateChanged) and
                           e.reason is ReasonCode.MIGRATED_TO_BETTER_PATH for e in effects)
                switch_times.append(now)
    assert switch_times, "the scenario must switch at least once to mean anything"
    assert len(switch_times) <= math.ceil(total / policy.migration_dwell_ms)
    assert all(b - a >= policy.migration_dwell_ms for a, b in itertools.pairwise(switch_times))


def test_a_stable_better_path_is_reached_within_dwell_plus_one_exchange() -> None:
    state = _measured()
    now = 100
    while state.link.active != C2:
        now += 100
        state, effects = checked_step(state, ev.RttSample(now, C2, 30))
        state, _ = checked_step(state, ev.RttSample(now, C1, 100))
        if _requests(effects) or _side(state).pending is not None:
            state, _ = checked_step(state, challenge_pending(state, now, b"\x06" * 16, observed=C2))
            state, _ = checked_step(state, accept_pending(state, now))
    assert now - 100 <= POLICY.migration_dwell_ms


# --- invariants and the state format ------------------------------------------------------------


@pytest.mark.requirement("RM-10")
def test_the_migration_checker_catches_an_early_or_untracked_request() -> None:
    state = _measured()
    after, effects = step(state, ev.Tick(1_100))
    assert check_step(state, ev.Tick(1_100), after, effects) == []
    early = attrs.evolve(_side(state), better_since_ms=500)
    forged_before = attrs.evolve(state, side=early)
    forged_after = attrs.evolve(after, side=attrs.evolve(_side(after), better_since_ms=500))
    names = [v.invariant for v in check_step(forged_before, ev.Tick(1_100), forged_after,
                                             effects)]
    assert names == ["controlled_migration"]
    other = attrs.evolve(after, side=attrs.evolve(_side(after), better=C3))
    assert [v.detail for v in check_step(state, ev.Tick(1_100), other, effects)] == [
        f"request for {C2} that the hysteresis does not track"]


def test_check_state_bounds_the_scores() -> None:
    state = _measured()
    side = _side(state)
    too_many = attrs.evolve(state, side=attrs.evolve(side, quality=tuple(
        PathScore(t, 1, 0, 0) for t in LOCALS)))
    assert "bounded_memory" in [v.invariant for v in check_state(too_many)]
    twice = attrs.evolve(state, side=attrs.evolve(side, quality=side.quality * 2))
    assert "bounded_memory" in [v.invariant for v in check_state(twice)]
    future = attrs.evolve(state, side=attrs.evolve(side, quality=(PathScore(C1, 1, 0, 10**6),)))
    assert [v.invariant for v in check_state(future)] == ["path_quality"]
    orphan = attrs.evolve(state, side=attrs.evolve(side, better=None, better_since_ms=5))
    assert [v.invariant for v in check_state(orphan)] == ["path_quality"]


def test_the_state_format_round_trips_and_refuses_bad_scores() -> None:
    state = _measured()
    data = state_to_data(state, include_secrets=True)
    assert data["format"] == 3
    assert state_from_data(data) == state
    def too_lossy(d: dict[str, Any]) -> None:
        d["side"]["quality"][0]["loss_q16"] = LOSS_ONE_Q16 + 1

    def twice(d: dict[str, Any]) -> None:
        d["side"]["quality"].append(dict(d["side"]["quality"][0]))

    def orphan_dwell(d: dict[str, Any]) -> None:
        d["side"]["better"] = None

    def too_many(d: dict[str, Any]) -> None:
        d["side"]["quality"] = [d["side"]["quality"][0]] * 6

    def no_rtt(d: dict[str, Any]) -> None:
        del d["side"]["quality"][0]["srtt_ms"]

    cases: list[tuple[Callable[[dict[str, Any]], None], str]] = [
        (too_lossy, "side.quality[0].loss_q16 must be an int in 0..65536"),
        (twice, "side.quality must not score a transport twice"),
        (orphan_dwell, "side.better_since_ms must be 0 while no candidate is tracked"),
        (too_many, "side.quality must be a list of at most 5 path scores"),
        (no_rtt, "missing field side.quality[0].srtt_ms"),
    ]
    for change, message in cases:
        bad = state_to_data(state, include_secrets=True)
        change(bad)
        with pytest.raises(StateDecodeError) as caught:
            state_from_data(bad)
        assert str(caught.value).startswith(message)


def test_a_format_2_record_reads_as_measuring_nothing_and_refuses_newer_fields() -> None:
    state = _attached()
    data = state_to_data(state, include_secrets=True)
    data["format"] = 2
    for key in ("quality", "better", "better_since_ms"):
        del data["side"][key]
    with pytest.raises(StateDecodeError, match="policy: field 'quality_max_age_ms' is not in "
                                                "format 2"):
        state_from_data(data)
    for name in ("quality_max_age_ms", "quality_loss_penalty_ms", "migration_margin_ms",
                 "migration_dwell_ms"):
        del data["policy"][name]
    old = state_from_data(data)
    assert _side(old).quality == ()
    assert _side(old).better is None
    assert old.ident.policy.migration_dwell_ms == Policy().migration_dwell_ms


@pytest.mark.requirement("RM-3.1")
def test_after_a_migration_a_challenge_for_the_path_left_behind_is_not_answered() -> None:
    """A packet still in flight on the old path makes the server challenge that address on
    traffic alone (nonce 0). The ATTACHED client does not answer: answering would ask to
    move back to the path it just left. On the active path the same challenge is answered
    (a NAT rebinding)."""
    state, _ = checked_step(_measured(), ev.Tick(1_100))
    state, _ = checked_step(state, challenge_pending(state, 1_110, b"\x07" * 16,
                                                     observed=C2))
    state, _ = checked_step(state, accept_pending(state, 1_120))
    assert state.link.active == C2
    assert C1 in state.roaming.candidates
    stray = challenge_pending(state, 1_200, b"\x08" * 16, observed=C1, via=C1, nonce=0)
    after, effects = checked_step(state, stray)
    assert after is state
    assert [r.reason for r in rejections(effects)] == [ReasonCode.CHALLENGE_STALE]
    rebinding = challenge_pending(state, 1_200, b"\x08" * 16, observed=C3, via=C2, nonce=0)
    after, effects = checked_step(state, rebinding)
    [answer] = _requests(effects)
    assert (answer.via, answer.candidate) == (C2, C3)


def test_the_quality_checkers_name_each_fault_exactly() -> None:
    """Every violation the path-quality checks report, with its wording, and the cases
    the migration checker must leave alone (a transition, another phase, a re-send)."""
    state = _measured()
    side = _side(state)
    bound = POLICY.max_candidates + 1
    at_bound = attrs.evolve(state, side=attrs.evolve(side, quality=tuple(
        PathScore(t, 1, 0, 0) for t in LOCALS[:bound])))
    assert check_state(at_bound) == []  # max_candidates + 1 scores are allowed
    over = attrs.evolve(state, side=attrs.evolve(side, quality=tuple(
        PathScore(t, 1, 0, 0) for t in LOCALS[:bound + 1])))
    assert [str(v) for v in check_state(over)] == [f"bounded_memory: {bound + 1} path scores"]
    twice = attrs.evolve(state, side=attrs.evolve(side, quality=side.quality * 2))
    assert [str(v) for v in check_state(twice)] == ["bounded_memory: a path scored twice"]
    lossy = attrs.evolve(state, side=attrs.evolve(side, quality=(
        PathScore(C1, 1, LOSS_ONE_Q16 + 1, 0),)))
    assert [str(v) for v in check_state(lossy)] == [
        "path_quality: a score beyond 100 % loss or from the future"]
    orphan = attrs.evolve(state, side=attrs.evolve(side, better=None, better_since_ms=5))
    assert [str(v) for v in check_state(orphan)] == [
        "path_quality: a dwell time with no tracked candidate"]

    tick = ev.Tick(1_100)
    after, effects = step(state, tick)
    [request] = _requests(effects)
    early_before = attrs.evolve(state, side=attrs.evolve(side, better_since_ms=500))
    early_after = attrs.evolve(after, side=attrs.evolve(_side(after), better_since_ms=500))
    assert [str(v) for v in check_step(early_before, tick, early_after, effects)] == [
        "controlled_migration: migration before its dwell time or an anti-flap bound "
        "allowed it"]
    # The active path measured better than the candidate: nothing to migrate to.
    worse = attrs.evolve(_side(after), quality=(PathScore(C1, 10, 0, 100),
                                                PathScore(C2, 30, 0, 100)))
    worse_before = attrs.evolve(state, side=attrs.evolve(side, quality=worse.quality))
    assert [str(v) for v in check_step(worse_before, tick, attrs.evolve(after, side=worse),
                                       effects)] == [
        "controlled_migration: migration to a path that does not beat the active one"]
    untracked = attrs.evolve(after, side=attrs.evolve(_side(after), better=C3))
    # Not checked: a step with a transition, a step into or out of another phase.
    change = StateChanged(SESSION_ID, Role.CLIENT, Phase.ATTACHED, Phase.ATTACHED,
                          ReasonCode.REATTACHED, 2, 1_100)
    assert controlled_migration(state, tick, untracked, (change, request)) == []
    assert controlled_migration(state, tick, attrs.evolve(untracked, phase=Phase.RECOVERING),
                                (request,)) == []
    assert controlled_migration(attrs.evolve(state, phase=Phase.RECOVERING), tick, untracked,
                                (request,)) == []
    assert [v.invariant for v in controlled_migration(state, tick, untracked, (request,))] == [
        "controlled_migration"]
    # A re-send (a nonce older than next_nonce) before a new request does not stop the check.
    older = attrs.evolve(state, side=attrs.evolve(side, next_nonce=side.next_nonce + 1))
    fresh = attrs.evolve(request, nonce=side.next_nonce + 1)
    assert [v.invariant for v in controlled_migration(older, tick, untracked,
                                                      (request, fresh))] == [
        "controlled_migration"]


def test_checked_step_returns_the_step_and_every_violation_of_step_and_state() -> None:
    state = _measured()
    tick = ev.Tick(1_100)
    after, effects, violations = invariant_checked_step(state, tick)
    assert (after, effects) == step(state, tick)
    assert violations == []
    side = _side(state)
    # A state that scores a path twice, stepped: the step's checkers (`bounded_memory`
    # checks the new state) and the new state's own check both report it.
    broken = attrs.evolve(state, side=attrs.evolve(side, quality=(*side.quality,
                                                                  side.quality[0])))
    _after, _effects, found = invariant_checked_step(broken, ev.RttSample(1_100, C2, 30))
    assert [str(v) for v in found] == ["bounded_memory: a path scored twice"] * 2


def test_rounding_half_up_and_the_earliest_of_equal_candidates() -> None:
    known = (C1,)
    # (7 * 10 + 13 + 4) // 8 = 10 (87 / 8); one more in the sum would make it 11.
    assert sampled((PathScore(C1, 10, 0, 0),), C1, 13, 1, known)[0].srtt_ms == 10
    # (7 * 10 + 14 + 4) // 8 = 11: half up.
    assert sampled((PathScore(C1, 10, 0, 0),), C1, 14, 1, known)[0].srtt_ms == 11
    # Loss toward 0: (7 * 5 + 0 + 4) // 8 = 4.
    assert sampled((PathScore(C1, 10, 5, 0),), C1, 10, 1, known)[0].loss_q16 == 4
    # Two candidates of the same cost: the earliest discovered is the target.
    state = _attached(POLICY, C2, C3)
    quality = (PathScore(C1, 100, 0, 0), PathScore(C3, 30, 0, 0), PathScore(C2, 30, 0, 0))
    assert upgrade_target(state.link, state.roaming, quality, POLICY, 0) == C2
    # A failed active path is never migrated away from (recovery handles it).
    failed = attrs.evolve(state.link, active_failed=True)
    assert upgrade_target(failed, state.roaming, quality, POLICY, 0) is None


def test_format_2_records_decode_to_the_same_state_and_score_bounds_are_exact() -> None:
    policy = attrs.evolve(POLICY, loss_threshold=1)
    state, _ = checked_step(_attached(policy, C2), ev.PacketLoss(50, 1))
    side = _side(state)
    assert side.pending is not None
    assert side.attempt == 1
    data = state_to_data(state, include_secrets=True)
    data["format"] = 2
    for key in ("quality", "better", "better_since_ms"):
        del data["side"][key]
    for name in ("quality_max_age_ms", "quality_loss_penalty_ms", "migration_margin_ms",
                 "migration_dwell_ms"):
        del data["policy"][name]
    assert state_from_data(data) == attrs.evolve(state, ident=attrs.evolve(
        state.ident, policy=attrs.evolve(policy, **{
            name: getattr(Policy(), name) for name in (
                "quality_max_age_ms", "quality_loss_penalty_ms", "migration_margin_ms",
                "migration_dwell_ms")})))
    measured = _measured()
    bound = POLICY.max_candidates + 1
    full = state_to_data(measured, include_secrets=True)
    full["side"]["quality"] = [{"transport": str(t), "srtt_ms": 1, "loss_q16": 0,
                                "updated_ms": 0} for t in LOCALS[:bound]]
    assert len(_side(state_from_data(full)).quality) == bound  # exactly the bound decodes
    full["side"]["quality"].append(dict(full["side"]["quality"][0]))
    with pytest.raises(StateDecodeError) as caught:
        state_from_data(full)
    assert str(caught.value) == (f"side.quality must be a list of at most {bound} path "
                                 f"scores, got a list of {bound + 1} items")
    slow = state_to_data(measured, include_secrets=True)
    slow["side"]["quality"][0]["srtt_ms"] = 600_001
    with pytest.raises(StateDecodeError, match=r"^side\.quality\[0\]\.srtt_ms must be an int "
                                               r"in 0\.\.600000"):
        state_from_data(slow)
