"""One focused proof per risk-model clause, on the reference core (seed §1-§10), then
edge cases found by mutation testing (docs/mutation.md): boundaries and rarely taken
branches that the golden vectors visit once or not at all."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from jumpvpn_core import _server
from jumpvpn_core.audit.vectors import (
    SECRET,
    SESSION_ID,
    T0,
    base_states,
)
from jumpvpn_core.effects import (
    Rejected,
    SendPathChallenge,
    SendReattachAccept,
    SendReattachRequest,
    SessionEnded,
    StateChanged,
)
from jumpvpn_core.errors import InvalidEventError
from jumpvpn_core.events import (
    AllTransportsFailed,
    Attach,
    CandidateDiscovered,
    CandidateLost,
    DeliveryTimeout,
    Evict,
    InboundTraffic,
    OwnershipAmbiguous,
    PacketLoss,
    StoreRecordInvalid,
    Tick,
    TransportFailed,
)
from jumpvpn_core.machine import next_deadline, step
from jumpvpn_core.peer import (
    FORGED_PROOF,
    accept_pending,
    answer_challenge,
    challenge_pending,
    next_request,
)
from jumpvpn_core.phases import TRANSITION_TABLE, Phase, Role, allowed_reasons, transition_target
from jumpvpn_core.policy import Policy
from jumpvpn_core.proof import verify_proof
from jumpvpn_core.reasons import ReasonClass, ReasonCode, reason_class
from jumpvpn_core.state import ClientSide, ServerSide, SessionState, new_session
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.transport import TransportDescriptor

C1, C2 = TransportDescriptor.udp("10.0.0.1", 4000), TransportDescriptor.udp("10.0.0.2", 4000)
A1, A2 = (TransportDescriptor.udp("198.51.100.1", 5000),
          TransportDescriptor.udp("198.51.100.2", 5000))


def _attached(role: Role, policy: Policy | None = None) -> SessionState:
    state = new_session(role, SESSION_ID, SECRET, T0, policy)
    state, _ = step(state, Attach(T0, C1 if role is Role.CLIENT else A1))
    assert state.phase is Phase.ATTACHED
    return state


def _reasons(effects: tuple[Any, ...]) -> list[ReasonCode]:
    return [e.reason for e in effects if isinstance(e, StateChanged | Rejected)]


@pytest.mark.requirement("RM-1")
def test_every_live_state_has_a_deadline_and_every_live_phase_a_way_to_terminated() -> None:
    for role in Role:
        for state in base_states(role):
            if state.phase is not Phase.TERMINATED:
                assert next_deadline(state) is not None
    for phase in (Phase.BIRTH, Phase.ATTACHED, Phase.RECOVERING, Phase.DEGRADED):
        assert any(src is phase and dst is Phase.TERMINATED
                   for (src, _reason), dst in TRANSITION_TABLE.items())
    for (_src, reason) in TRANSITION_TABLE:
        assert reason_class(reason) is ReasonClass.TRANSITION


@pytest.mark.requirement("RM-2.1")
def test_consecutive_losses_within_the_window_start_recovery_and_a_reattach() -> None:
    policy = Policy()
    state = _attached(Role.CLIENT, policy)
    spread, _ = step(state, PacketLoss(T0 + 10, policy.loss_threshold - 1))
    spread, effects = step(spread, PacketLoss(T0 + 20 + policy.loss_window_ms, 1))
    assert spread.phase is Phase.ATTACHED
    assert not effects
    burst, effects = step(state, PacketLoss(T0 + 10, policy.loss_threshold))
    assert burst.phase is Phase.RECOVERING
    assert _reasons(effects) == [ReasonCode.LOSS_THRESHOLD_EXCEEDED]
    assert any(isinstance(e, SendReattachRequest) and e.via == C1 for e in effects)
    ended, _ = step(burst, Tick(T0 + 10 + policy.max_recovery_window_ms))
    assert ended.phase is Phase.TERMINATED


@pytest.mark.requirement("RM-2.2")
def test_nat_churn_moves_to_recovering_and_keeps_the_session_id() -> None:
    server, effects = step(_attached(Role.SERVER), InboundTraffic(T0 + 5, A2, 1200))
    assert server.phase is Phase.RECOVERING
    assert _reasons(effects) == [ReasonCode.UNEXPECTED_SOURCE_ADDRESS]
    assert any(isinstance(e, SendPathChallenge) and e.to == A2 for e in effects)
    client, effects = step(_attached(Role.CLIENT), DeliveryTimeout(T0 + 5))
    assert client.phase is Phase.RECOVERING
    assert any(isinstance(e, SendReattachRequest) for e in effects)
    assert server.session_id == client.session_id == SESSION_ID


@pytest.mark.requirement("RM-2.3")
def test_new_address_binds_only_after_a_proven_answer_from_that_address() -> None:
    state = _attached(Role.SERVER)
    _starved, effects = step(state, next_request(state, T0 + 5, A2))
    assert _reasons(effects) == [ReasonCode.AMPLIFICATION_LIMITED]
    opened, effects = step(state, next_request(state, T0 + 5, A2, size=1200))
    assert opened.active == A1
    assert [type(e) for e in effects] == [SendPathChallenge]
    forged, effects = step(opened, answer_challenge(opened, T0 + 6, A1))
    assert forged is opened
    assert _reasons(effects) == [ReasonCode.AMBIGUOUS_PATH]
    bound, effects = step(opened, answer_challenge(opened, T0 + 6))
    assert bound.active == A2
    assert _reasons(effects) == [ReasonCode.REATTACHED]


@pytest.mark.requirement("RM-3.1")
def test_cheap_checks_refuse_a_flood_before_any_proof_is_verified(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    def counting(*args: Any, **kwargs: Any) -> bool:
        calls.append(args)
        return verify_proof(*args, **kwargs)

    monkeypatch.setattr(_server, "verify_proof", counting)
    state = _attached(Role.SERVER)
    accepted, _ = step(state, next_request(state, T0 + 1, A1))
    calls.clear()
    hostile = [
        next_request(accepted, T0 + 2, A1, nonce=1),  # replay
        # Stale: older than the version (1) the accepted request carried.
        next_request(accepted, T0 + 2, A1, state_version=0),
        next_request(accepted, T0 + 2, A1, session_id=bytes(16)),
        next_request(accepted, T0 + 2, A1, timestamp_ms=0),  # expired
    ]
    for event in hostile:
        after, effects = step(accepted, event)
        assert after is accepted
        assert len(effects) == 1
        assert isinstance(effects[0], Rejected)
    assert calls == []


@pytest.mark.requirement("RM-3.3")
def test_stale_version_is_refused_and_versions_grow_by_one_per_transition() -> None:
    state = _attached(Role.SERVER)
    first, effects = step(state, next_request(state, T0 + 1, A1))
    assert first.state_version == state.state_version + 1
    assert [e.state_version for e in effects if isinstance(e, StateChanged)] == [2]
    # Older than the version the accepted request carried (1): a rollback, not a lag.
    stale = next_request(first, T0 + 2, A1, state_version=state.state_version - 1)
    again, effects = step(first, stale)
    assert again is first
    assert _reasons(effects) == [ReasonCode.STALE_STATE_VERSION]


@pytest.mark.requirement("RM-4.1")
def test_two_writers_with_the_same_version_never_both_commit() -> None:
    store = MemoryStore()
    assert store.create(SESSION_ID, 1, b"v1")
    assert store.compare_and_set(SESSION_ID, 1, 2, b"node-a") is True
    assert store.compare_and_set(SESSION_ID, 1, 2, b"node-b") is False
    stored = store.get(SESSION_ID)
    assert stored is not None
    assert stored.data == b"node-a"
    ended, effects = step(_attached(Role.SERVER), OwnershipAmbiguous(T0 + 1))
    assert ended.phase is Phase.TERMINATED
    assert _reasons(effects) == [ReasonCode.OWNERSHIP_AMBIGUOUS]


@pytest.mark.requirement("RM-4.2")
def test_an_unreadable_store_record_fails_closed() -> None:
    for role in Role:
        ended, effects = step(_attached(role), StoreRecordInvalid(T0 + 1))
        assert ended.phase is Phase.TERMINATED
        assert any(isinstance(e, SessionEnded) for e in effects)


@pytest.mark.requirement("RM-5.2")
def test_candidates_beyond_the_bound_are_refused_and_never_stored() -> None:
    policy = Policy(max_candidates=2)
    state = _attached(Role.CLIENT, policy)
    for n in range(2, 4):
        state, _ = step(state, CandidateDiscovered(T0 + n, TransportDescriptor.udp(
            f"10.0.0.{n}", 4000)))
    extra = CandidateDiscovered(T0 + 9, TransportDescriptor.udp("10.0.0.9", 4000))
    after, effects = step(state, extra)
    assert after is state
    assert len(after.roaming.candidates) == 2
    assert _reasons(effects) == [ReasonCode.CANDIDATE_LIMIT_REACHED]


@pytest.mark.requirement("RM-5.3")
def test_eviction_and_ttl_end_sessions_explicitly_with_a_record() -> None:
    evicted, effects = step(_attached(Role.SERVER), Evict(T0 + 1))
    assert evicted.end_reason is ReasonCode.SESSION_EVICTED
    assert [type(e) for e in effects] == [StateChanged, SessionEnded]
    idle = _attached(Role.CLIENT)
    expired, effects = step(idle, Tick(T0 + idle.policy.transport_lost_ttl_ms))
    assert expired.end_reason is ReasonCode.TRANSPORT_LOST_TTL_EXPIRED
    assert _reasons(effects) == [ReasonCode.TRANSPORT_LOST_TTL_EXPIRED]


@pytest.mark.requirement("RM-6.1")
@pytest.mark.requirement("RM-6.2")
def test_states_do_not_depend_on_what_happens_to_audit_records() -> None:
    events = [Attach(T0, A1), InboundTraffic(T0 + 5, A2, 1200), Tick(T0 + 2_000),
              InboundTraffic(T0 + 2_100, A1, 10), Evict(T0 + 3_000)]

    def run(sink_fails: bool) -> list[SessionState]:
        delivered: list[dict[str, Any]] = []
        state = new_session(Role.SERVER, SESSION_ID, SECRET, T0)
        states = []
        for event in events:
            state, effects = step(state, event)
            for effect in effects:
                if isinstance(effect, StateChanged | Rejected):
                    try:
                        if sink_fails:
                            raise ConnectionError("audit sink down")
                        delivered.append(effect.to_record())
                    except ConnectionError:
                        pass
            states.append(state)
        return states

    assert run(sink_fails=False) == run(sink_fails=True)


@pytest.mark.requirement("RM-8")
def test_hostile_requests_never_attach_and_expiry_wins_over_a_valid_request() -> None:
    state = _attached(Role.SERVER)
    recovering, _ = step(state, InboundTraffic(T0 + 5, A2, 1200))
    honest = next_request(recovering, T0 + 6, A1)
    accepted, _ = step(recovering, honest)
    assert accepted.phase is Phase.ATTACHED
    replayed, _ = step(accepted, InboundTraffic(T0 + 7, A2, 1200))
    assert replayed.phase is Phase.RECOVERING
    hostile = [
        next_request(recovering, T0 + 7, A1, forged_proof=FORGED_PROOF),
        next_request(recovering, T0 + 7, A1, state_version=9),
        next_request(recovering, T0 + 7, A1, state_version=0),
    ]
    for event in hostile:
        after, effects = step(recovering, event)
        assert after is recovering
        assert [e.reason_class for e in effects if isinstance(e, Rejected)] == [
            ReasonClass.SECURITY_EVENT]
        assert len(effects) == 1
    # The captured request replayed later (same bytes, arriving at T0 + 8).
    again, effects = step(replayed, attrs.evolve(honest, now_ms=T0 + 8))
    assert again is replayed
    assert _reasons(effects) == [ReasonCode.REPLAY_DETECTED]
    late = recovering.ident.created_ms + recovering.policy.session_max_lifetime_ms
    ended, effects = step(recovering, next_request(recovering, late, A1))
    assert ended.phase is Phase.TERMINATED
    assert ReasonCode.SESSION_LIFETIME_EXCEEDED in _reasons(effects)


# --- edges found by mutation testing ------------------------------------------------------

OBSERVED = TransportDescriptor.udp("203.0.113.7", 41000)


def _reason_names(effects: tuple[Any, ...]) -> list[str]:
    return [r.value for r in _reasons(effects)]


@pytest.mark.requirement("RM-2.1")
def test_single_losses_accumulate_within_the_window_up_to_the_threshold() -> None:
    policy = Policy(loss_threshold=3, loss_window_ms=2_000)
    state = _attached(Role.CLIENT, policy)
    state, _ = step(state, PacketLoss(T0 + 100, 1))
    state, _ = step(state, PacketLoss(T0 + 600, 1))
    assert (state.phase, state.link.loss_streak, state.link.loss_start_ms) == (
        Phase.ATTACHED, 2, T0 + 100)
    assert state.link.clock_ms == T0 + 600
    # Exactly loss_window_ms after the first loss still counts as the same streak.
    state, effects = step(state, PacketLoss(T0 + 100 + 2_000, 1))
    assert state.phase is Phase.RECOVERING
    assert _reason_names(effects) == ["LOSS_THRESHOLD_EXCEEDED"]


@pytest.mark.requirement("RM-2.1")
def test_a_loss_just_outside_the_window_starts_a_new_streak() -> None:
    policy = Policy(loss_threshold=3, loss_window_ms=2_000)
    state = _attached(Role.CLIENT, policy)
    state, _ = step(state, PacketLoss(T0 + 100, 2))
    state, effects = step(state, PacketLoss(T0 + 100 + 2_001, 1))
    assert effects == ()
    assert (state.phase, state.link.loss_streak, state.link.loss_start_ms) == (
        Phase.ATTACHED, 1, T0 + 2_101)


def test_a_reattach_answering_a_challenge_while_attached_just_expires() -> None:
    policy = Policy(reattach_retransmits=0)  # no unchanged re-send: the deadline just expires
    state = _attached(Role.CLIENT, policy)
    state, effects = step(state, challenge_pending(state, T0 + 10, b"\x07" * 16, observed=OBSERVED))
    assert [type(e) for e in effects] == [SendReattachRequest]
    side = state.side
    assert isinstance(side, ClientSide)
    assert side.pending is not None
    expired, effects = step(state, Tick(side.pending.deadline_ms))
    assert effects == ()
    assert expired.phase is Phase.ATTACHED
    assert expired.state_version == state.state_version
    assert isinstance(expired.side, ClientSide)
    assert expired.side.pending is None
    assert expired.side.next_nonce == side.next_nonce
    assert expired.link == attrs.evolve(state.link, clock_ms=side.pending.deadline_ms)


def _server_switch(state: SessionState, to: TransportDescriptor, now: int
                   ) -> tuple[SessionState, tuple[Any, ...]]:
    state, _ = step(state, InboundTraffic(now, to, 1_200))
    return step(state, answer_challenge(state, now))


def test_switch_rate_window_is_exactly_sixty_seconds() -> None:
    policy = Policy(max_switches_per_minute=1, switch_cooldown_ms=0,
                    transport_lost_ttl_ms=120_000)
    state = _attached(Role.SERVER, policy)
    state, effects = _server_switch(state, A2, T0 + 10)
    assert state.active == A2
    too_soon, effects = _server_switch(state, A1, T0 + 10 + 59_999)
    assert _reason_names(effects) == ["SWITCH_RATE_EXCEEDED"]
    assert too_soon.active == A2
    later, effects = _server_switch(state, A1, T0 + 10 + 60_000)
    assert later.active == A1
    assert _reason_names(effects) == ["REATTACHED"]


@pytest.mark.requirement("RM-7")
def test_total_collapse_forgets_candidates_and_the_pending_reattach() -> None:
    state = _attached(Role.CLIENT)
    state, _ = step(state, CandidateDiscovered(T0 + 1, C2))
    state, _ = step(state, challenge_pending(state, T0 + 2, b"\x07" * 16, observed=OBSERVED))
    collapsed, effects = step(state, AllTransportsFailed(T0 + 3))
    assert _reason_names(effects) == ["TRANSPORT_COLLAPSE"]
    assert collapsed.roaming.candidates == ()
    assert isinstance(collapsed.side, ClientSide)
    assert collapsed.side.pending is None
    assert collapsed.link.active_failed is True


def _degraded_client(candidate: TransportDescriptor | None = None) -> SessionState:
    policy = Policy()
    state = _attached(Role.CLIENT, policy)
    if candidate is not None:
        state, _ = step(state, CandidateDiscovered(T0 + 5, candidate))
    state, _ = step(state, PacketLoss(T0 + 10, policy.loss_threshold))
    state, _ = step(state, InboundTraffic(T0 + 20, C1, 100))
    state, _ = step(state, Tick(state.phase_since_ms + policy.max_recovery_window_ms))
    assert state.phase is Phase.DEGRADED
    return state


def test_collapse_while_degraded_terminates_without_candidates() -> None:
    state = _degraded_client(C2)
    assert state.roaming.candidates == (C2,)
    ended, effects = step(state, AllTransportsFailed(state.link.clock_ms + 1))
    assert _reason_names(effects) == ["TRANSPORT_COLLAPSE"]
    assert ended.phase is Phase.TERMINATED
    assert ended.roaming.candidates == ()


def test_rediscovering_the_failed_active_transport_revives_it() -> None:
    state = _attached(Role.CLIENT)
    state, _ = step(state, PacketLoss(T0 + 5, 1))
    state, _ = step(state, TransportFailed(T0 + 10, C1))
    assert state.phase is Phase.RECOVERING
    assert isinstance(state.side, ClientSide)
    assert state.side.pending is None  # nothing viable to try
    now = state.link.clock_ms + 7
    revived, effects = step(state, CandidateDiscovered(now, C1))
    assert revived.phase is Phase.RECOVERING
    assert revived.link == attrs.evolve(state.link, active_failed=False, clock_ms=now)
    assert [type(e) for e in effects] == [SendReattachRequest]
    assert isinstance(effects[0], SendReattachRequest)
    assert effects[0].via == C1


def test_rediscovering_the_failed_active_with_a_reattach_in_flight_keeps_it() -> None:
    state = _attached(Role.CLIENT)
    state, _ = step(state, CandidateDiscovered(T0 + 1, C2))
    state, _ = step(state, TransportFailed(T0 + 10, C1))
    assert isinstance(state.side, ClientSide)
    assert state.side.pending is not None
    now = state.link.clock_ms + 7
    revived, effects = step(state, CandidateDiscovered(now, C1))
    assert effects == ()
    assert revived.link == attrs.evolve(state.link, active_failed=False, clock_ms=now)
    assert revived.side == state.side


def test_accept_for_the_pending_nonce_on_another_transport_is_refused() -> None:
    state = _attached(Role.CLIENT)
    state, _ = step(state, CandidateDiscovered(T0 + 1, C2))
    state, _ = step(state, DeliveryTimeout(T0 + 2))
    side = state.side
    assert isinstance(side, ClientSide)
    assert side.pending is not None
    assert side.pending.via == C1
    accept = accept_pending(state, T0 + 3)
    wrong_via = attrs.evolve(accept, via=C2)
    after, effects = step(state, wrong_via)
    assert after is state
    assert _reason_names(effects) == ["ACCEPT_INVALID"]


@pytest.mark.requirement("RM-2.3")
def test_challenge_is_sent_when_it_exactly_fills_the_amplification_budget() -> None:
    policy = Policy(amplification_factor=2, path_challenge_size_bytes=64)
    state = _attached(Role.SERVER, policy)
    exact, effects = step(state, InboundTraffic(T0 + 1, A2, 32))
    assert [type(e) for e in effects] == [StateChanged, SendPathChallenge]
    short, effects = step(state, InboundTraffic(T0 + 1, A2, 31))
    assert [type(e) for e in effects] == [StateChanged]
    assert exact.side != short.side


@pytest.mark.requirement("RM-2.3")
def test_reverting_after_an_unanswered_challenge_closes_the_validation() -> None:
    policy = Policy()
    state = _attached(Role.SERVER, policy)
    state, _ = step(state, InboundTraffic(T0 + 1, A2, 1_200))
    state, _ = step(state, InboundTraffic(T0 + 2, A1, 100))
    assert state.phase is Phase.RECOVERING
    reverted, effects = step(state, Tick(T0 + 1 + policy.path_validation_timeout_ms))
    assert _reason_names(effects) == ["PATH_REVERTED"]
    assert reverted.phase is Phase.ATTACHED
    assert reverted.active == A1
    assert reverted.side.pending is None


@pytest.mark.requirement("RM-3.1")
def test_rate_limit_window_boundary_is_exclusive() -> None:
    policy = Policy(reattach_rate_limit=2, reattach_rate_window_ms=1_000)
    state = _attached(Role.SERVER, policy)
    for now in (T0 + 10, T0 + 10):
        state, _ = step(state, next_request(state, now, A1))
    _limited, effects = step(state, next_request(state, T0 + 1_009, A1))
    assert _reason_names(effects) == ["RATE_LIMITED"]
    _allowed, effects = step(state, next_request(state, T0 + 1_010, A1))
    assert _reason_names(effects) == ["REATTACHED"]


@pytest.mark.requirement("RM-2.3")
def test_proof_freshness_bounds_are_inclusive() -> None:
    policy = Policy()
    state = _attached(Role.SERVER, policy)
    now = T0 + 20_000
    state, _ = step(state, InboundTraffic(now - 1, A1, 10))
    oldest = now - policy.proof_max_age_ms
    newest = now + policy.max_clock_skew_ms
    for ts, expected in ((oldest, "REATTACHED"), (oldest - 1, "PROOF_EXPIRED"),
                         (newest, "REATTACHED"), (newest + 1, "PROOF_FROM_FUTURE")):
        _after, effects = step(state, next_request(state, now, A1, timestamp_ms=ts))
        assert _reason_names(effects) == [expected], ts


@pytest.mark.requirement("RM-2.3")
def test_request_from_a_new_address_fits_the_amplification_budget_exactly() -> None:
    policy = Policy(amplification_factor=2, path_challenge_size_bytes=64)
    state = _attached(Role.SERVER, policy)
    _opened, effects = step(state, next_request(state, T0 + 1, A2, size=32))
    assert [type(e) for e in effects] == [SendPathChallenge]
    _refused, effects = step(state, next_request(state, T0 + 1, A2, size=31))
    assert _reason_names(effects) == ["AMPLIFICATION_LIMITED"]


@pytest.mark.requirement("RM-2.3")
def test_challenge_to_a_pending_address_waits_until_the_budget_allows_it() -> None:
    policy = Policy(amplification_factor=2, path_challenge_size_bytes=64)
    state = _attached(Role.SERVER, policy)
    sizes_and_sends = [(0, False, 0), (31, False, 0), (1, True, 64), (500, False, 64)]
    for offset, (size, sends, sent) in enumerate(sizes_and_sends, start=1):
        state, effects = step(state, InboundTraffic(T0 + offset, A2, size))
        assert any(isinstance(e, SendPathChallenge) for e in effects) is sends, size
        side = state.side
        assert isinstance(side, ServerSide)
        assert side.pending is not None
        assert side.pending.bytes_sent == sent
        assert side.pending.challenge_sent is (sent > 0)


def test_attach_on_a_known_candidate_removes_it_from_the_candidates() -> None:
    state = new_session(Role.CLIENT, SESSION_ID, SECRET, T0)
    for transport in (C1, C2):
        state, _ = step(state, CandidateDiscovered(T0, transport))
    assert state.roaming.candidates == (C1, C2)
    attached, _ = step(state, Attach(T0 + 1, C1))
    assert attached.roaming == attrs.evolve(state.roaming, candidates=(C2,))
    assert attached.active == C1


def test_traffic_on_the_active_path_resets_the_loss_streak_even_in_the_same_ms() -> None:
    state = _attached(Role.CLIENT)
    lossy, _ = step(state, PacketLoss(T0, 1))
    assert lossy.link.loss_streak == 1
    heard, _ = step(lossy, InboundTraffic(T0, C1, 100))
    assert heard.link.loss_streak == 0
    assert heard.link.heard_in_phase is True
    again, effects = step(heard, InboundTraffic(T0, C1, 100))
    assert again is heard
    assert effects == ()


def test_a_pending_deadline_long_after_the_phase_began_only_drops_the_pending() -> None:
    policy = Policy(reattach_retransmits=0)  # no unchanged re-send: the deadline just expires
    state = _attached(Role.CLIENT, policy)
    late = T0 + policy.max_degraded_ms + 5_000
    state, _ = step(state, InboundTraffic(late - 10, C1, 100))
    state, _ = step(state, challenge_pending(state, late, b"\x07" * 16, observed=OBSERVED))
    expired, effects = step(state, Tick(late + policy.reattach_timeout_ms))
    assert effects == ()
    assert expired.phase is Phase.ATTACHED
    degraded = _degraded_client()
    degraded, _ = step(degraded, challenge_pending(degraded, degraded.link.clock_ms,
                                                   b"\x07" * 16, observed=OBSERVED))
    answered = degraded.side
    assert isinstance(answered, ClientSide)
    assert answered.pending is not None
    deadline = answered.pending.deadline_ms
    # A DEGRADED client keeps trying (specs/events.md): after the unchanged re-sends, the
    # expired exchange makes way for a new attempt with a new nonce; the phase stays.
    for _ in range(degraded.policy.reattach_retransmits + 1):
        degraded, effects = step(degraded, Tick(deadline))
        side = degraded.side
        assert isinstance(side, ClientSide)
        assert side.pending is not None
        deadline = side.pending.deadline_ms
    [attempt] = [e for e in effects if isinstance(e, SendReattachRequest)]
    assert attempt.nonce == answered.next_nonce
    assert degraded.phase is Phase.DEGRADED


def test_an_event_arriving_after_the_lifetime_ends_the_session_then_is_refused() -> None:
    state = _attached(Role.CLIENT)
    late = state.ident.created_ms + state.policy.session_max_lifetime_ms
    ended, effects = step(state, InboundTraffic(late, C1, 100))
    assert [type(e) for e in effects] == [StateChanged, SessionEnded, Rejected]
    assert _reason_names(effects) == ["SESSION_LIFETIME_EXCEEDED", "SESSION_TERMINATED"]
    assert ended.phase is Phase.TERMINATED


def test_step_refuses_what_is_not_a_state_or_not_an_event() -> None:
    with pytest.raises(InvalidEventError, match=r"step\(\) needs a SessionState, got object"):
        step(object(), Tick(T0))  # type: ignore[arg-type]  # the wrong type is the point
    with pytest.raises(InvalidEventError, match=r"step\(\) needs an event, got object"):
        step(_attached(Role.SERVER), object())


@pytest.mark.requirement("RM-10")
def test_allowed_reasons_are_exactly_the_table_rows_leaving_a_phase() -> None:
    assert allowed_reasons(Phase.TERMINATED) == frozenset()
    assert allowed_reasons(Phase.BIRTH) == {
        ReasonCode.ATTACH_COMPLETED, ReasonCode.BIRTH_TIMEOUT,
        ReasonCode.SESSION_LIFETIME_EXCEEDED, ReasonCode.OWNERSHIP_AMBIGUOUS,
        ReasonCode.SESSION_EVICTED, ReasonCode.STORE_RECORD_INVALID, ReasonCode.CLOSED}
    for phase in Phase:
        for reason in allowed_reasons(phase):
            assert transition_target(phase, reason) is TRANSITION_TABLE[(phase, reason)]
    with pytest.raises(KeyError):
        transition_target(Phase.TERMINATED, ReasonCode.REATTACHED)


# --- edges found by the re-run after the lost-accept refinement (docs/mutation.md) ----------

def _server_bound_again(policy: Policy | None = None) -> tuple[SessionState, Any]:
    """A server that accepted one request on its active path, and that request."""
    server = _attached(Role.SERVER, policy)
    request = next_request(server, T0 + 100, A1)
    server, effects = step(server, request)
    assert _reason_names(effects) == ["REATTACHED"]
    return server, request


@pytest.mark.requirement("RM-3.2")
def test_exact_retransmission_of_the_bound_request_gets_the_stored_accept_again() -> None:
    server, request = _server_bound_again()
    side = server.side
    assert isinstance(side, ServerSide)
    stored = side.last_accept
    assert stored is not None
    again = attrs.evolve(request, now_ms=T0 + 200)
    new, effects = step(server, again)
    assert new is server
    assert _reason_names(effects) == ["REPLAY_DETECTED"]
    assert effects[1:] == (stored.accept,)
    assert isinstance(effects[1], SendReattachAccept)
    assert effects[1].to == A1


@pytest.mark.requirement("RM-3.2")
def test_replayed_older_nonce_with_the_bound_proof_gets_no_accept() -> None:
    server, first = _server_bound_again()
    second = next_request(server, T0 + 150, A1)
    server, effects = step(server, second)
    assert _reason_names(effects) == ["REATTACHED"]
    # The first request (seen, but no longer behind the binding) is only a replay.
    new, effects = step(server, attrs.evolve(first, now_ms=T0 + 200))
    assert new is server
    assert _reason_names(effects) == ["REPLAY_DETECTED"]
    assert len(effects) == 1


@pytest.mark.requirement("RM-3.2")
def test_traffic_from_a_pending_address_keeps_the_stored_accept() -> None:
    server, request = _server_bound_again()
    server, _ = step(server, InboundTraffic(T0 + 150, A2, 1_000))
    side = server.side
    assert isinstance(side, ServerSide)
    assert side.pending is not None
    server, _ = step(server, InboundTraffic(T0 + 160, A2, 1_000))
    side = server.side
    assert isinstance(side, ServerSide)
    assert side.last_accept is not None
    _, effects = step(server, attrs.evolve(request, now_ms=T0 + 200))
    assert [type(e) for e in effects] == [Rejected, SendReattachAccept]


def _client_waiting(policy: Policy) -> tuple[SessionState, SendReattachRequest]:
    client = _attached(Role.CLIENT, policy)
    client, effects = step(client, DeliveryTimeout(T0 + 10))
    sends = [e for e in effects if isinstance(e, SendReattachRequest)]
    assert len(sends) == 1
    return client, sends[0]


@pytest.mark.requirement("RM-2.1")
def test_client_resends_the_same_request_exactly_reattach_retransmits_times() -> None:
    policy = Policy(reattach_retransmits=2, reattach_timeout_ms=200, proof_max_age_ms=60_000)
    client, request = _client_waiting(policy)
    now = T0 + 10
    for _ in range(2):
        now += 200
        client, effects = step(client, Tick(now))
        assert effects == (request,)
    now += 200
    client, effects = step(client, Tick(now))
    sends = [e for e in effects if isinstance(e, SendReattachRequest)]
    assert len(sends) == 1
    assert sends[0].nonce == request.nonce + 1


@pytest.mark.requirement("RM-2.1")
def test_client_stops_resending_a_request_whose_proof_age_is_reached() -> None:
    policy = Policy(reattach_retransmits=5, reattach_timeout_ms=200, proof_max_age_ms=400)
    client, request = _client_waiting(policy)
    client, effects = step(client, Tick(T0 + 210))
    assert effects == (request,)
    # At exactly timestamp + proof_max_age_ms the request is no longer re-sent unchanged.
    client, effects = step(client, Tick(T0 + 410))
    sends = [e for e in effects if isinstance(e, SendReattachRequest)]
    assert len(sends) == 1
    assert sends[0].nonce == request.nonce + 1


def _client_second_request_via_candidate() -> tuple[SessionState, SendReattachRequest]:
    """Recovering client whose re-sends on the active path ran out: a new request via C2."""
    policy = Policy(reattach_retransmits=1, reattach_timeout_ms=200, proof_max_age_ms=60_000)
    client = _attached(Role.CLIENT, policy)
    client, _ = step(client, CandidateDiscovered(T0 + 5, C2))
    client, _ = step(client, DeliveryTimeout(T0 + 10))
    client, _ = step(client, Tick(T0 + 210))  # the one unchanged re-send on C1
    client, effects = step(client, Tick(T0 + 410))
    sends = [e for e in effects if isinstance(e, SendReattachRequest)]
    assert len(sends) == 1
    assert sends[0].via == C2
    return client, sends[0]


@pytest.mark.requirement("RM-2.1")
def test_request_via_a_live_candidate_is_resent_unchanged() -> None:
    client, request = _client_second_request_via_candidate()
    _, effects = step(client, Tick(T0 + 610))
    assert effects == (request,)


@pytest.mark.requirement("RM-2.1")
def test_request_via_a_lost_candidate_is_replaced_by_one_on_the_active_path() -> None:
    client, request = _client_second_request_via_candidate()
    client, _ = step(client, CandidateLost(T0 + 500, C2))
    assert client.link.clock_ms == T0 + 500
    client, effects = step(client, Tick(T0 + 610))
    sends = [e for e in effects if isinstance(e, SendReattachRequest)]
    assert len(sends) == 1
    assert sends[0].via == C1
    assert sends[0].nonce == request.nonce + 1
    assert client.link.clock_ms == T0 + 610  # the new attempt moved the clock


def test_event_without_a_handler_after_a_due_deadline_is_refused_against_the_new_state() -> None:
    server = _attached(Role.SERVER)
    server, _ = step(server, InboundTraffic(T0 + 10, A2, 1_000))
    side = server.side
    assert isinstance(side, ServerSide)
    assert side.pending is not None
    due = side.pending.deadline_ms
    new, effects = step(server, PacketLoss(due, 1))  # a client-only event, at the deadline
    assert new is not server
    refusal = effects[-1]
    assert isinstance(refusal, Rejected)
    assert (refusal.reason, refusal.event, refusal.ts_ms) == (
        ReasonCode.EVENT_NOT_APPLICABLE, "PacketLoss", due)
    assert (refusal.phase, refusal.state_version) == (new.phase, new.state_version)
    assert refusal.reason_class is ReasonClass.OPERATIONAL_REJECT


def test_event_arriving_at_a_due_deadline_is_handled_after_the_deadline_fires() -> None:
    policy = Policy(reattach_retransmits=1, reattach_timeout_ms=200, proof_max_age_ms=60_000)
    client, request = _client_waiting(policy)
    new, effects = step(client, InboundTraffic(T0 + 210, C1, 100))
    assert effects == (request,)  # the re-send fired first
    assert new.link.last_rx_ms == T0 + 210  # then the traffic was handled
