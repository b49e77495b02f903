"""Each invariant checker reports the broken step it exists for, and only that.

The golden vectors and the exploration show that real steps break nothing; these tests
show the checkers are not vacuous: a step corrupted in one way is reported by the right
checker, and the boundary value of each bound is still accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from jumpvpn_core.audit.vectors import SECRET, SESSION_ID, T0
from jumpvpn_core.effects import (
    Effect,
    Rejected,
    SendPathChallenge,
    SendReattachRequest,
    StateChanged,
)
from jumpvpn_core.events import Attach, Close, InboundTraffic, Tick
from jumpvpn_core.invariants import (
    bounded_recovery,
    bounded_switch_rate,
    check_state,
    check_step,
)
from jumpvpn_core.machine import step
from jumpvpn_core.peer import FORGED_PROOF, next_request
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.reasons import ReasonClass, ReasonCode
from jumpvpn_core.state import (
    ClientSide,
    PendingPath,
    PendingReattach,
    ServerSide,
    SessionState,
    new_session,
)
from jumpvpn_core.transport import TransportDescriptor

A1, A2 = (TransportDescriptor.udp("198.51.100.1", 5000),
          TransportDescriptor.udp("198.51.100.2", 5000))
POLICY = Policy()


def _server() -> SessionState:
    state, _ = step(new_session(Role.SERVER, SESSION_ID, SECRET, T0, POLICY), Attach(T0, A1))
    return state


def _names(before: SessionState, event: Any, after: SessionState,
           effects: Sequence[Effect]) -> set[str]:
    return {v.invariant for v in check_step(before, event, after, effects)}


def _change(state: SessionState, src: Phase, dst: Phase, reason: ReasonCode,
            version: int) -> StateChanged:
    return StateChanged(SESSION_ID, state.role, src, dst, reason, version, state.link.clock_ms)


def _reject(state: SessionState, reason: ReasonCode, klass: ReasonClass) -> Rejected:
    return Rejected(SESSION_ID, state.role, reason, klass, state.phase, state.state_version,
                    "ReattachRequest", state.link.clock_ms, 1, state.state_version)


def test_a_real_step_is_clean() -> None:
    before = _server()
    event = InboundTraffic(T0 + 5, A2, 1_200)
    after, effects = step(before, event)
    assert _names(before, event, after, effects) == set()


def test_version_jump_and_wrong_record_version_are_reported() -> None:
    before = _server()
    event = InboundTraffic(T0 + 5, A2, 1_200)
    after, effects = step(before, event)
    jumped = attrs.evolve(after, state_version=after.state_version + 1)
    assert "version_monotonic" in _names(before, event, jumped, effects)
    record = effects[0]
    assert isinstance(record, StateChanged)
    wrong = (attrs.evolve(record, state_version=record.state_version + 1), *effects[1:])
    assert "version_monotonic" in _names(before, event, after, wrong)


def test_identity_change_is_reported() -> None:
    before = _server()
    event = Tick(T0 + 1)
    for change in ({"session_id": bytes(16)}, {"role": Role.CLIENT}, {"created_ms": 1},
                   {"control_key": bytes(32)}):
        after = attrs.evolve(before, ident=attrs.evolve(before.ident, **change))
        assert "identity_unchanged" in _names(before, event, after, ()), change
    same = attrs.evolve(before, ident=attrs.evolve(before.ident))
    assert "identity_unchanged" not in _names(before, event, same, ())


def test_leaving_terminated_is_reported() -> None:
    ended, _ = step(_server(), Close(T0 + 1))
    event = Tick(T0 + 2)
    assert "terminated_absorbing" not in _names(ended, event, ended, ())
    revived = attrs.evolve(ended, phase=Phase.ATTACHED)
    assert "terminated_absorbing" in _names(ended, event, revived, ())


def test_transitions_outside_the_table_or_not_chained_are_reported() -> None:
    before = _server()
    event = Tick(T0 + 1)
    after = attrs.evolve(before, phase=Phase.DEGRADED, state_version=before.state_version + 1)
    bad_row = [_change(before, Phase.ATTACHED, Phase.DEGRADED, ReasonCode.RECOVERY_PARTIAL,
                       after.state_version)]
    assert "transitions_allowed" in _names(before, event, after, bad_row)
    unchained = [_change(before, Phase.RECOVERING, Phase.DEGRADED,
                         ReasonCode.RECOVERY_PARTIAL, after.state_version)]
    assert "transitions_allowed" in _names(before, event, after, unchained)
    wrong_end = attrs.evolve(after, phase=Phase.RECOVERING)
    good_row = [_change(before, Phase.ATTACHED, Phase.TERMINATED, ReasonCode.CLOSED,
                        after.state_version)]
    assert "transitions_allowed" in _names(before, event, wrong_end, good_row)


def test_attached_without_a_transport_is_reported() -> None:
    before = _server()
    after = attrs.evolve(before, link=attrs.evolve(before.link, active=None))
    assert "one_active_transport" in _names(before, Tick(T0), after, ())
    assert "one_active_transport" not in _names(before, Tick(T0), before, ())


def test_binding_moved_without_proof_is_reported() -> None:
    before = _server()
    moved = attrs.evolve(before, link=attrs.evolve(before.link, active=A2))
    assert "no_bind_without_proof" in _names(before, InboundTraffic(T0 + 1, A2), moved, ())
    forged = next_request(before, T0 + 1, A2, forged_proof=FORGED_PROOF)
    assert "no_bind_without_proof" in _names(before, forged, moved, ())
    valid_unvalidated = next_request(before, T0 + 1, A2)
    assert "no_bind_without_proof" in _names(before, valid_unvalidated, moved, ())


def test_a_rejection_that_changes_anything_is_reported() -> None:
    before = _server()
    event = next_request(before, T0 + 1, A1, forged_proof=FORGED_PROOF)
    after, effects = step(before, event)
    assert after is before
    assert _names(before, event, after, effects) == set()
    changed = attrs.evolve(before)
    assert "rejection_mutates_nothing" in _names(before, event, changed, effects)
    twice = (*effects, *effects)
    assert "rejection_mutates_nothing" in _names(before, event, before, twice)
    # A transition recorded after a security rejection is caused by the rejected input;
    # one recorded before it is a deadline that fired first and is not blamed on it.
    to_attached: list[Effect] = [
        _reject(before, ReasonCode.PROOF_INVALID, ReasonClass.SECURITY_EVENT),
        _change(before, Phase.RECOVERING, Phase.ATTACHED, ReasonCode.REATTACHED,
                before.state_version + 1),
    ]
    assert "rejection_mutates_nothing" in _names(before, event, before, to_attached)


def test_entering_attached_by_another_reason_is_reported() -> None:
    before = attrs.evolve(_server(), phase=Phase.RECOVERING)
    after = attrs.evolve(before, phase=Phase.ATTACHED, state_version=before.state_version + 1)
    for reason, flagged in ((ReasonCode.RECOVERY_PARTIAL, True),
                            (ReasonCode.REATTACHED, False), (ReasonCode.PATH_REVERTED, False)):
        effects = [_change(before, Phase.RECOVERING, Phase.ATTACHED, reason,
                           after.state_version)]
        assert ("fail_closed" in _names(before, Tick(T0), after, effects)) is flagged


@pytest.mark.parametrize(("phase", "bound"), [
    (Phase.RECOVERING, POLICY.max_recovery_window_ms),
    (Phase.DEGRADED, POLICY.max_degraded_ms),
])
def test_recovery_bounds_are_reported_one_past_the_bound(phase: Phase, bound: int) -> None:
    state = attrs.evolve(_server(), phase=phase, phase_since_ms=T0)
    assert "bounded_recovery" not in _names(state, Tick(T0 + bound), state, ())
    assert "bounded_recovery" in _names(state, Tick(T0 + bound + 1), state, ())
    other = Phase.DEGRADED if phase is Phase.RECOVERING else Phase.RECOVERING
    small = min(POLICY.max_recovery_window_ms, POLICY.max_degraded_ms)
    elsewhere = attrs.evolve(state, phase=other)
    assert "bounded_recovery" not in _names(elsewhere, Tick(T0 + small), elsewhere, ())


def test_too_many_recovery_rounds_are_reported() -> None:
    state = _server()
    at_bound = attrs.evolve(state, roaming=attrs.evolve(
        state.roaming, recovery_rounds=POLICY.max_recovery_rounds))
    over = attrs.evolve(state, roaming=attrs.evolve(
        state.roaming, recovery_rounds=POLICY.max_recovery_rounds + 1))
    assert "bounded_recovery" not in _names(state, Tick(T0), at_bound, ())
    assert "bounded_recovery" in _names(state, Tick(T0), over, ())


def _with_switches(state: SessionState, times: tuple[int, ...],
                   active: TransportDescriptor | None = None) -> SessionState:
    return attrs.evolve(state, roaming=attrs.evolve(state.roaming, switch_times=times),
                        link=attrs.evolve(state.link, active=active or state.link.active))


def test_switch_history_violations_are_reported() -> None:
    state = _server()
    cooldown = POLICY.switch_cooldown_ms
    limit = POLICY.max_switches_per_minute
    spaced = tuple(T0 + i * cooldown for i in range(limit))
    ok = _with_switches(state, spaced)
    assert "bounded_switch_rate" not in _names(state, Tick(T0), ok, ())
    for times in ((*spaced, T0 + limit * cooldown),  # more than the bound kept
                  (T0, T0 + cooldown - 1),  # closer than the cooldown
                  (T0 + 2 * cooldown, T0)):  # out of order
        bad = _with_switches(state, times)
        assert "bounded_switch_rate" in _names(state, Tick(T0), bad, ()), times


def test_an_unrecorded_or_excess_switch_is_reported() -> None:
    state = _server()
    now = T0 + 100_000
    unrecorded = _with_switches(state, (), active=A2)
    assert "bounded_switch_rate" in _names(state, Tick(now), unrecorded, ())
    recorded = _with_switches(state, (now,), active=A2)
    assert "bounded_switch_rate" not in _names(state, Tick(now), recorded, ())
    limit = POLICY.max_switches_per_minute
    full = _with_switches(state, tuple(now - 60_000 + 1 + i * 1_000 for i in range(limit)))
    excess = _with_switches(full, (*full.roaming.switch_times[1:], now), active=A2)
    assert "bounded_switch_rate" in _names(full, Tick(now), excess, ())
    old = _with_switches(state, tuple(now - 60_000 + i * 1_000 for i in range(limit)))
    fine = _with_switches(old, (*old.roaming.switch_times[1:], now), active=A2)
    assert "bounded_switch_rate" not in _names(old, Tick(now), fine, ())


def test_state_bounds_are_reported() -> None:
    state = _server()
    assert check_state(state) == []
    max_c = POLICY.max_candidates
    many = attrs.evolve(state, roaming=attrs.evolve(state.roaming, candidates=tuple(
        TransportDescriptor.udp("10.0.0.1", 4000 + i) for i in range(max_c + 1))))
    full = attrs.evolve(state, roaming=attrs.evolve(state.roaming, candidates=tuple(
        TransportDescriptor.udp("10.0.0.1", 4000 + i) for i in range(max_c))))
    dup = attrs.evolve(state, roaming=attrs.evolve(state.roaming, candidates=(A2, A2)))
    side = state.side
    assert isinstance(side, ServerSide)
    wide = attrs.evolve(state, side=attrs.evolve(side, replay_bits=1 << POLICY.replay_window_bits))
    edge = attrs.evolve(state, side=attrs.evolve(
        side, replay_bits=1 << (POLICY.replay_window_bits - 1)))
    times = attrs.evolve(state, side=attrs.evolve(
        side, verified_times=tuple(range(POLICY.reattach_rate_limit + 1))))
    client_side = attrs.evolve(state, side=ClientSide(0, 1, None, 0, (), None, 0))
    ended, _ = step(state, Close(T0 + 1))
    pending = attrs.evolve(ended, side=attrs.evolve(side, pending=PendingPath(
        A2, b"c" * 16, T0, 0, 0, False, 0)))
    assert [v.invariant for v in check_state(full)] == []
    assert [v.invariant for v in check_state(edge)] == []
    for bad, text in ((many, f"bounded_memory: {max_c + 1} candidates"),
                      (dup, "bounded_memory: duplicate candidates"),
                      (wide, "bounded_memory: replay bitmap wider than the window"),
                      (times, "bounded_memory: verified request history unbounded"),
                      (client_side, "role_layout: client side in a server state"),
                      (pending, "terminated_absorbing: TERMINATED state keeps a pending "
                                "exchange")):
        assert [str(v) for v in check_state(bad)] == [text]
    client = new_session(Role.CLIENT, SESSION_ID, SECRET, T0)
    assert [str(v) for v in check_state(attrs.evolve(client, side=side))] == [
        "role_layout: server side in a client state"]
    client_pending = attrs.evolve(client, phase=Phase.TERMINATED, side=ClientSide(
        0, 2, PendingReattach(SendReattachRequest(A1, SESSION_ID, 1, 0, T0, A1, b"",
                                                  bytes(32)), T0, 1), 0, (), None, 0))
    assert "terminated_absorbing" in [v.invariant for v in check_state(client_pending)]


def test_amplification_beyond_the_factor_is_reported() -> None:
    state = _server()
    side = state.side
    assert isinstance(side, ServerSide)
    factor = POLICY.amplification_factor

    def pending(sent: int) -> SessionState:
        return attrs.evolve(state, side=attrs.evolve(side, pending=PendingPath(
            A2, b"c" * 16, T0 + 1_000, 100, sent, True, 0)))

    assert "amplification_capped" not in _names(state, Tick(T0), pending(factor * 100), ())
    assert "amplification_capped" in _names(state, Tick(T0), pending(factor * 100 + 1), ())


def test_silent_phase_change_and_transition_after_reject_are_reported() -> None:
    before = _server()
    event = Tick(T0 + 1)
    silent = attrs.evolve(before, phase=Phase.RECOVERING)
    assert "one_audit_record_per_transition" in _names(before, event, silent, ())
    reject = _reject(before, ReasonCode.RATE_LIMITED, ReasonClass.OPERATIONAL_REJECT)
    change = _change(before, Phase.ATTACHED, Phase.TERMINATED, ReasonCode.CLOSED,
                     before.state_version + 1)
    after = attrs.evolve(before, phase=Phase.TERMINATED,
                         state_version=before.state_version + 1)
    assert "one_audit_record_per_transition" in _names(before, event, after, [reject, change])
    assert "one_audit_record_per_transition" not in _names(before, event, after,
                                                           [change, reject])


def test_a_control_key_in_an_effect_is_reported() -> None:
    before = _server()
    leak = attrs.evolve(_reject(before, ReasonCode.RATE_LIMITED,
                                ReasonClass.OPERATIONAL_REJECT),
                        event=before.ident.control_key.hex())
    assert "secrets_never_exposed" in _names(before, Tick(T0), before, [leak])
    raw = SendPathChallenge(A2, SESSION_ID, before.ident.control_key, 0, 1, T0, bytes(32))
    assert "secrets_never_exposed" in _names(before, Tick(T0), before, [raw])
    harmless = SendPathChallenge(A2, SESSION_ID, b"\x01" * 16, 0, 1, T0, bytes(32))
    assert "secrets_never_exposed" not in _names(before, Tick(T0), before, [harmless])


def test_recovery_and_switch_checkers_say_exactly_what_they_found() -> None:
    """The wording of each finding (a log line or a conformance verdict quotes it)."""
    state = _server()
    recovering = attrs.evolve(state, phase=Phase.RECOVERING, phase_since_ms=T0)
    late = Tick(T0 + POLICY.max_recovery_window_ms + 1)
    assert [str(v) for v in bounded_recovery(recovering, late, recovering, ())] == [
        "bounded_recovery: RECOVERING past max_recovery_window_ms"]
    degraded = attrs.evolve(state, phase=Phase.DEGRADED, phase_since_ms=T0)
    late = Tick(T0 + POLICY.max_degraded_ms + 1)
    assert [str(v) for v in bounded_recovery(degraded, late, degraded, ())] == [
        "bounded_recovery: DEGRADED past max_degraded_ms"]
    rounds = POLICY.max_recovery_rounds + 1
    over = attrs.evolve(state, roaming=attrs.evolve(state.roaming, recovery_rounds=rounds))
    assert [str(v) for v in bounded_recovery(state, Tick(T0), over, ())] == [
        f"bounded_recovery: {rounds} recovery rounds"]
    cooldown = POLICY.switch_cooldown_ms
    limit = POLICY.max_switches_per_minute
    spaced = tuple(T0 + i * cooldown for i in range(limit + 1))
    for times, text in ((spaced, f"{limit + 1} switch times kept"),
                        ((T0, T0 + cooldown - 1),
                         f"switches {T0} and {T0 + cooldown - 1} closer than "
                         "switch_cooldown_ms"),
                        ((T0 + 2 * cooldown, T0), "switch times out of order")):
        found = bounded_switch_rate(state, Tick(T0), _with_switches(state, times), ())
        assert f"bounded_switch_rate: {text}" in [str(v) for v in found], times
    now = T0 + 100_000
    unrecorded = _with_switches(state, (), active=A2)
    assert [str(v) for v in bounded_switch_rate(state, Tick(now), unrecorded, ())] == [
        "bounded_switch_rate: switch not recorded"]
    full = _with_switches(state, tuple(now - 60_000 + 1 + i * 1_000 for i in range(limit)))
    excess = _with_switches(full, (*full.roaming.switch_times[1:], now), active=A2)
    assert [str(v) for v in bounded_switch_rate(full, Tick(now), excess, ())] == [
        "bounded_switch_rate: switch beyond max_switches_per_minute"]
