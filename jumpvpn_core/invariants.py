"""Invariant checkers: the risk model's invariants as code.

Each checker is a function over one step, `(before, event, after, effects)`, returning the
violations it found (an empty list when the step is sound). Tests, fuzzers, the
conformance kit and embedders in debug mode all call the same functions:

    for violation in check_step(before, event, after, effects):
        log.error("%s", violation)

Checkers only read; they never change anything and never raise on a bad step.

Every harness (scenario runner, simulator, explorer, stateful tests) steps through
`checked_step(state, event)`, which runs `step()` and both kinds of checker in one call.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from jumpvpn_core.effects import Effect, Rejected, SendReattachRequest, StateChanged
from jumpvpn_core.events import Attach, ReattachAccepted, ReattachRequest
from jumpvpn_core.machine import advance_time, step
from jumpvpn_core.phases import TRANSITION_TABLE, Phase, Role
from jumpvpn_core.policy import SWITCH_WINDOW_MS
from jumpvpn_core.proof import MessageType, verify_proof
from jumpvpn_core.quality import LOSS_ONE_Q16, migration_due, upgrade_target
from jumpvpn_core.reasons import ReasonClass, ReasonCode
from jumpvpn_core.state import ClientSide, ServerSide, SessionState

__all__ = [
    "STEP_CHECKERS",
    "Violation",
    "check_state",
    "check_step",
    "checked_step",
]


@attrs.frozen(slots=True)
class Violation:
    """One broken invariant: which one, and what was seen."""

    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"{self.invariant}: {self.detail}"


Checker = Callable[[SessionState, Any, SessionState, Sequence[Effect]], list[Violation]]

_ENTER_ATTACHED = frozenset(
    {ReasonCode.ATTACH_COMPLETED, ReasonCode.REATTACHED, ReasonCode.PATH_REVERTED,
     ReasonCode.MIGRATED_TO_BETTER_PATH}
)


def _changes(effects: Sequence[Effect]) -> list[StateChanged]:
    return [e for e in effects if type(e) is StateChanged]


def _rejects(effects: Sequence[Effect]) -> list[Rejected]:
    return [e for e in effects if type(e) is Rejected]


def identity_unchanged(before: SessionState, event: Any, after: SessionState,
                       effects: Sequence[Effect]) -> list[Violation]:
    """§2.2: the session id (and role and key) never change, whatever the transport does."""
    if after.ident is before.ident:
        return []
    a, b = after.ident, before.ident
    if (a.session_id, a.role, a.control_key, a.created_ms) != (
        b.session_id, b.role, b.control_key, b.created_ms
    ):
        return [Violation("identity_unchanged", "session identity changed")]
    return []


def version_monotonic(before: SessionState, event: Any, after: SessionState,
                      effects: Sequence[Effect]) -> list[Violation]:
    """§3.3: state_version grows by exactly one per transition, and never otherwise."""
    changes = _changes(effects)
    expected = before.state_version + len(changes)
    out = []
    if after.state_version != expected:
        out.append(Violation(
            "version_monotonic",
            f"version {before.state_version} -> {after.state_version} "
            f"with {len(changes)} transition(s)",
        ))
    for offset, change in enumerate(changes, start=1):
        if change.state_version != before.state_version + offset:
            out.append(Violation("version_monotonic",
                                 f"record carries version {change.state_version}, "
                                 f"expected {before.state_version + offset}"))
    return out


def terminated_absorbing(before: SessionState, event: Any, after: SessionState,
                         effects: Sequence[Effect]) -> list[Violation]:
    """§8: TERMINATED is never left, and a terminated state is never changed."""
    if before.phase is Phase.TERMINATED and after is not before:
        return [Violation("terminated_absorbing", f"TERMINATED state changed to {after.phase}")]
    return []


def transitions_allowed(before: SessionState, event: Any, after: SessionState,
                        effects: Sequence[Effect]) -> list[Violation]:
    """Every transition is a row of the table, and the records chain from before to after."""
    out = []
    phase = before.phase
    for change in _changes(effects):
        if change.from_phase is not phase:
            out.append(Violation("transitions_allowed",
                                 f"record starts at {change.from_phase}, state was {phase}"))
        if TRANSITION_TABLE.get((change.from_phase, change.reason)) is not change.to_phase:
            out.append(Violation(
                "transitions_allowed",
                f"{change.from_phase} -{change.reason}-> {change.to_phase} is not in the table",
            ))
        phase = change.to_phase
    if phase is not after.phase:
        out.append(Violation("transitions_allowed",
                             f"records end at {phase}, state is {after.phase}"))
    return out


def one_active_transport(before: SessionState, event: Any, after: SessionState,
                         effects: Sequence[Effect]) -> list[Violation]:
    """At most one active transport always (by construction); exactly one when ATTACHED."""
    return [Violation("one_active_transport", f"{p} with no active transport")
            for p in (after.phase,)
            if p in (Phase.ATTACHED, Phase.DEGRADED) and after.link.active is None]


def no_bind_without_proof(before: SessionState, event: Any, after: SessionState,
                          effects: Sequence[Effect]) -> list[Violation]:
    """§2.3: the binding changes only at attach or on a request/accept whose proof verifies."""
    if after.link.active == before.link.active:
        return []
    ident = after.ident
    if type(event) is Attach and before.phase is Phase.BIRTH:
        return []
    if type(event) is ReattachRequest and ident.role is Role.SERVER:
        ok = verify_proof(ident.control_key, event.proof, MessageType.REATTACH_REQUEST,
                          ident.session_id, event.nonce, event.state_version,
                          event.timestamp_ms, event.candidate, event.challenge)
        if ok and event.challenge and after.link.active == event.source:
            return []
        return [Violation("no_bind_without_proof",
                          f"server bound {after.link.active} without proof and validated path")]
    if type(event) is ReattachAccepted and ident.role is Role.CLIENT:
        ok = verify_proof(ident.control_key, event.proof, MessageType.REATTACH_ACCEPT,
                          ident.session_id, event.nonce, event.state_version,
                          event.timestamp_ms, event.bound)
        if ok and after.link.active == event.via:
            return []
    return [Violation("no_bind_without_proof",
                      f"binding moved {before.link.active} -> {after.link.active} "
                      f"on {type(event).__name__}")]


def rejection_mutates_nothing(before: SessionState, event: Any, after: SessionState,
                              effects: Sequence[Effect]) -> list[Violation]:
    """§3.1-§3.3: a refused input leaves the state object untouched and says why, once."""
    rejects = _rejects(effects)
    if not rejects:
        return []
    out = []
    if len(rejects) > 1:
        out.append(Violation("rejection_mutates_nothing", f"{len(rejects)} reject records"))
    if before.phase is Phase.TERMINATED:
        baseline = before
    else:
        baseline, _ = advance_time(before, event.now_ms) if event.now_ms >= \
            before.link.clock_ms else (before, ())
    # With no deadline due the baseline is `before` itself and the very object must come
    # back; when deadlines fired first, both paths rebuilt the state, so compare by value.
    if after is not baseline and (baseline is before or after != baseline):
        out.append(Violation("rejection_mutates_nothing",
                             f"{rejects[0].reason} rejection changed the state"))
    # Transitions recorded before the refusal are deadlines that fired first; only what
    # follows the refusal can be caused by the refused input.
    after_reject = list(effects)[list(effects).index(rejects[0]) + 1:]
    if rejects[0].reason_class is ReasonClass.SECURITY_EVENT and any(
        c.to_phase is Phase.ATTACHED for c in _changes(after_reject)
    ):
        out.append(Violation("rejection_mutates_nothing", "security rejection led to ATTACHED"))
    return out


def fail_closed(before: SessionState, event: Any, after: SessionState,
                effects: Sequence[Effect]) -> list[Violation]:
    """§8: ATTACHED is entered only by attach, a proven reattach, or reverting to the
    already-validated path; never through a rejected or ambiguous input."""
    return [Violation("fail_closed", f"entered ATTACHED by {c.reason}")
            for c in _changes(effects)
            if c.to_phase is Phase.ATTACHED and c.reason not in _ENTER_ATTACHED]


def bounded_recovery(before: SessionState, event: Any, after: SessionState,
                     effects: Sequence[Effect]) -> list[Violation]:
    """§7, §9: no infinite recovery: time in RECOVERING/DEGRADED and rounds are bounded."""
    policy = after.ident.policy
    now = event.now_ms
    out = []
    if after.phase is Phase.RECOVERING and now - after.phase_since_ms > \
            policy.max_recovery_window_ms:
        out.append(Violation("bounded_recovery", "RECOVERING past max_recovery_window_ms"))
    if after.phase is Phase.DEGRADED and now - after.phase_since_ms > policy.max_degraded_ms:
        out.append(Violation("bounded_recovery", "DEGRADED past max_degraded_ms"))
    if after.roaming.recovery_rounds > policy.max_recovery_rounds:
        out.append(Violation("bounded_recovery",
                             f"{after.roaming.recovery_rounds} recovery rounds"))
    return out


def bounded_switch_rate(before: SessionState, event: Any, after: SessionState,
                        effects: Sequence[Effect]) -> list[Violation]:
    """Anti-flap: switch cooldown and max switches in any 60 s window hold."""
    policy = after.ident.policy
    times = after.roaming.switch_times
    out = []
    if len(times) > policy.max_switches_per_minute:
        out.append(Violation("bounded_switch_rate", f"{len(times)} switch times kept"))
    for earlier, later in itertools.pairwise(times):
        if later - earlier < policy.switch_cooldown_ms:
            out.append(Violation("bounded_switch_rate", f"switches {earlier} and {later} "
                                 "closer than switch_cooldown_ms"))
    if list(times) != sorted(times):
        out.append(Violation("bounded_switch_rate", "switch times out of order"))
    changed = after.link.active != before.link.active and before.link.active is not None
    if changed and (not times or times[-1] != event.now_ms):
        out.append(Violation("bounded_switch_rate", "switch not recorded"))
    if changed and len(before.roaming.switch_times) >= policy.max_switches_per_minute and \
            event.now_ms - before.roaming.switch_times[-policy.max_switches_per_minute] < \
            SWITCH_WINDOW_MS:
        out.append(Violation("bounded_switch_rate", "switch beyond max_switches_per_minute"))
    return out


def bounded_memory(before: SessionState, event: Any, after: SessionState,
                   effects: Sequence[Effect]) -> list[Violation]:
    """§5.1, §5.2: candidate set and replay structure stay within their policy bounds."""
    return check_state(after)


def amplification_capped(before: SessionState, event: Any, after: SessionState,
                         effects: Sequence[Effect]) -> list[Violation]:
    """§2.3: to an unvalidated address the server sends at most factor x what it received."""
    side = after.side
    if isinstance(side, ServerSide) and side.pending is not None:
        p = side.pending
        if p.bytes_sent > after.ident.policy.amplification_factor * p.bytes_received:
            return [Violation("amplification_capped",
                              f"sent {p.bytes_sent} to {p.address}, received {p.bytes_received}")]
    return []


def one_audit_record_per_transition(before: SessionState, event: Any, after: SessionState,
                                    effects: Sequence[Effect]) -> list[Violation]:
    """Every transition has one record; every rejection one record; no step is silent
    about a phase change."""
    out = []
    changes = _changes(effects)
    rejects = _rejects(effects)
    if after.phase is not before.phase and not changes:
        out.append(Violation("one_audit_record_per_transition", "phase changed without record"))
    if changes and rejects:
        # Deadlines may fire before a rejected event; nothing may change after the reject.
        kinds = [type(e) for e in effects]
        first_reject = kinds.index(Rejected)
        if StateChanged in kinds[first_reject:]:
            out.append(Violation("one_audit_record_per_transition",
                                 "transition recorded after a rejection"))
    return out


def secrets_never_exposed(before: SessionState, event: Any, after: SessionState,
                          effects: Sequence[Effect]) -> list[Violation]:
    """The control key never appears in effects or in repr of the state."""
    key = after.ident.control_key
    text = repr(effects) + repr(after)
    if key.hex() in text or repr(key) in text:
        return [Violation("secrets_never_exposed", "control key visible in effects or repr")]
    return []


def controlled_migration(before: SessionState, event: Any, after: SessionState,
                         effects: Sequence[Effect]) -> list[Violation]:
    """§3.1 never uncontrolled switching: a client in ATTACHED asks for a new path on its
    own (a new request without a challenge, no transition in the step) only for the
    candidate its hysteresis tracks, once the dwell time has passed, where neither anti-flap
    bound would refuse the switch, and only while that candidate still beats the active
    path by the margin (`specs/path-quality.md`)."""
    side = after.side
    if not isinstance(side, ClientSide) or after.phase is not Phase.ATTACHED or \
            before.phase is not Phase.ATTACHED or _changes(effects):
        return []
    before_side = before.side
    assert isinstance(before_side, ClientSide)
    out: list[Violation] = []
    for effect in effects:
        if type(effect) is not SendReattachRequest or effect.challenge or \
                effect.nonce < before_side.next_nonce:
            continue  # a re-send, or an answer to the server's challenge
        policy = after.ident.policy
        now = event.now_ms
        if side.better != effect.candidate or effect.via != effect.candidate:
            out.append(Violation("controlled_migration",
                                 f"request for {effect.candidate} that the hysteresis does "
                                 f"not track"))
        elif now < migration_due(side, before.roaming, policy):
            out.append(Violation("controlled_migration", "migration before its dwell time "
                                                         "or an anti-flap bound allowed it"))
        elif effect.candidate not in (
                upgrade_target(before.link, before.roaming, before_side.quality, policy, now),
                upgrade_target(before.link, before.roaming, side.quality, policy, now)):
            # Decided before the event (a due deadline) or after it (a sample): the
            # candidate must beat the active path under the scores of one or the other.
            out.append(Violation("controlled_migration",
                                 "migration to a path that does not beat the active one"))
    return out


STEP_CHECKERS: tuple[Checker, ...] = (
    identity_unchanged,
    version_monotonic,
    terminated_absorbing,
    transitions_allowed,
    one_active_transport,
    no_bind_without_proof,
    rejection_mutates_nothing,
    fail_closed,
    bounded_recovery,
    bounded_switch_rate,
    controlled_migration,
    bounded_memory,
    amplification_capped,
    one_audit_record_per_transition,
    secrets_never_exposed,
)


def check_state(state: SessionState) -> list[Violation]:
    """Invariants of one state on its own (bounded memory, role-consistent layout)."""
    policy = state.ident.policy
    out = []
    if len(state.roaming.candidates) > policy.max_candidates:
        out.append(Violation("bounded_memory", f"{len(state.roaming.candidates)} candidates"))
    if len(set(state.roaming.candidates)) != len(state.roaming.candidates):
        out.append(Violation("bounded_memory", "duplicate candidates"))
    side = state.side
    if isinstance(side, ServerSide):
        if state.ident.role is not Role.SERVER:
            out.append(Violation("role_layout", "server side in a client state"))
        if side.replay_bits.bit_length() > policy.replay_window_bits:
            out.append(Violation("bounded_memory", "replay bitmap wider than the window"))
        if len(side.verified_times) > policy.reattach_rate_limit:
            out.append(Violation("bounded_memory", "verified request history unbounded"))
    elif isinstance(side, ClientSide):
        if state.ident.role is not Role.CLIENT:
            out.append(Violation("role_layout", "client side in a server state"))
        if len(side.quality) > policy.max_candidates + 1:
            out.append(Violation("bounded_memory", f"{len(side.quality)} path scores"))
        if len({score.transport for score in side.quality}) != len(side.quality):
            out.append(Violation("bounded_memory", "a path scored twice"))
        if any(score.loss_q16 > LOSS_ONE_Q16 or score.updated_ms > state.link.clock_ms
               for score in side.quality):
            out.append(Violation("path_quality", "a score beyond 100 % loss or from the "
                                                 "future"))
        if side.better is None and side.better_since_ms:
            out.append(Violation("path_quality", "a dwell time with no tracked candidate"))
    if state.phase is Phase.TERMINATED and state.side.pending is not None:
        out.append(Violation("terminated_absorbing", "TERMINATED state keeps a pending exchange"))
    return out


def check_step(before: SessionState, event: Any, after: SessionState,
               effects: Sequence[Effect]) -> list[Violation]:
    """Run every step checker; return all violations found."""
    out: list[Violation] = []
    for checker in STEP_CHECKERS:
        out.extend(checker(before, event, after, effects))
    return out


def checked_step(state: SessionState, event: Any
                 ) -> tuple[SessionState, tuple[Effect, ...], list[Violation]]:
    """`step(state, event)` with every invariant checked: the new state, its effects, and
    the violations of the step (`check_step`) and of the new state (`check_state`)."""
    after, effects = step(state, event)
    return after, effects, [*check_step(state, event, after, effects), *check_state(after)]
