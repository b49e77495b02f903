"""Deliberately broken implementations: proof that the conformance kit bites.

Each is the reference with exactly one behaviour altered (one `alter` hook). They ship in
the package, not in `tests/`, so that anyone can check their installed kit catches them,
in-process or over stdio:

    jumpvpn conformance --cmd "python -m jumpvpn_core.testing.stdio_reference \\
        --impl jumpvpn_core.testing.broken:accepts_replayed_nonce"

The porters' mistakes (`porting.py`: subtle boundary, order and side-effect bugs) are
here too; `jumpvpn conformance --catalogue` runs every one over many seeds and prints how
often each is caught (`jumpvpn_core.testing.broken.catalogue`, `docs/conformance.md`).

Never use any of these for anything but testing the kit.
"""

from __future__ import annotations

from typing import Any

import attrs

from jumpvpn_core.effects import BindTransport, Effect, Rejected, StateChanged
from jumpvpn_core.events import CandidateDiscovered, ReattachRequest
from jumpvpn_core.machine import step
from jumpvpn_core.peer import Peer
from jumpvpn_core.phases import Phase
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.state import Roaming, ServerSide, SessionState
from jumpvpn_core.subject import ReferenceImplementation
from jumpvpn_core.testing.broken.porting import (
    PORTING_MISTAKES,
    AcceptBeforeBind,
    AttemptNotReset,
    ClockSkewExclusive,
    EwmaRoundsDown,
    FailedPathStaysFailed,
    KeepsSwitchedCandidate,
    LossWindowInclusive,
    MigrationDwellExclusive,
    MigrationMarginStrict,
    NoncesAsDoubles,
    NoViableReportedAsExceeded,
    ProofAgeInclusive,
    QualityAgeInclusive,
    RateLimitAfterReplayCheck,
    RateWindowInclusive,
    RecoveryDeadlineLate,
    ReplayWindowOffByOne,
    SwitchCooldownInclusive,
    UnmeasuredAsCheapest,
    ZoneBlindAddresses,
)

__all__ = [
    "BROKEN",
    "CATALOGUE",
    "PORTING_MISTAKES",
    "AcceptBeforeBind",
    "AcceptsReplayedNonce",
    "AttemptNotReset",
    "BindsBeforePathValidation",
    "ClockSkewExclusive",
    "EwmaRoundsDown",
    "FailedPathStaysFailed",
    "ForgetsVersionBump",
    "KeepsSwitchedCandidate",
    "LossWindowInclusive",
    "MigrationDwellExclusive",
    "MigrationMarginStrict",
    "NeverLeavesRecovering",
    "NoViableReportedAsExceeded",
    "NoncesAsDoubles",
    "ProofAgeInclusive",
    "QualityAgeInclusive",
    "RateLimitAfterReplayCheck",
    "RateWindowInclusive",
    "RecoveryDeadlineLate",
    "ReplayWindowOffByOne",
    "SkipsProofCheck",
    "SwitchCooldownInclusive",
    "UnboundedCandidates",
    "UnmeasuredAsCheapest",
    "ZoneBlindAddresses",
    "accept_before_bind",
    "accepts_replayed_nonce",
    "attempt_not_reset",
    "binds_before_path_validation",
    "clock_skew_exclusive",
    "ewma_rounds_down",
    "failed_path_stays_failed",
    "forgets_version_bump",
    "keeps_switched_candidate",
    "loss_window_inclusive",
    "migration_dwell_exclusive",
    "migration_margin_strict",
    "never_leaves_recovering",
    "no_viable_reported_as_exceeded",
    "nonces_as_doubles",
    "proof_age_inclusive",
    "quality_age_inclusive",
    "rate_limit_after_replay_check",
    "rate_window_inclusive",
    "recovery_deadline_late",
    "replay_window_off_by_one",
    "skips_proof_check",
    "switch_cooldown_inclusive",
    "unbounded_candidates",
    "unmeasured_as_cheapest",
    "zone_blind_addresses",
]

_Step = tuple[SessionState, tuple[Effect, ...]]


def _rejected_with(effects: tuple[Effect, ...], *reasons: ReasonCode) -> bool:
    return any(type(e) is Rejected and e.reason in reasons for e in effects)


class AcceptsReplayedNonce(ReferenceImplementation):
    """Server: a request whose nonce was already seen is processed as if it were fresh."""

    name = "accepts-replayed-nonce"

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        if type(event) is ReattachRequest and _rejected_with(effects,
                                                             ReasonCode.REPLAY_DETECTED):
            side = before.side
            assert isinstance(side, ServerSide)
            forgetful = attrs.evolve(before, side=attrs.evolve(side, replay_top=0,
                                                               replay_bits=0))
            return step(forgetful, event)
        return after, effects


class ForgetsVersionBump(ReferenceImplementation):
    """Entering RECOVERING does not increment state_version."""

    name = "forgets-version-bump"

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        if after.phase is Phase.RECOVERING and before.phase is not Phase.RECOVERING and \
                after.state_version == before.state_version + 1:
            kept = attrs.evolve(after, state_version=before.state_version)
            fixed = tuple(attrs.evolve(e, state_version=before.state_version)
                          if type(e) is StateChanged else e for e in effects)
            return kept, fixed
        return after, effects


class BindsBeforePathValidation(ReferenceImplementation):
    """Server: a verified request from a new address is bound at once, without the path
    challenge (no proof that the address is reachable)."""

    name = "binds-before-path-validation"

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        side = after.side
        opened = (type(event) is ReattachRequest and not event.challenge
                  and isinstance(side, ServerSide) and side.pending is not None
                  and side.pending.address == event.source
                  and after.phase is before.phase
                  and not any(type(e) is Rejected for e in effects))
        if not opened:
            return after, effects
        old = before.link.active
        # Pretend the new source were the bound path, then report the switch.
        moved = attrs.evolve(before, link=attrs.evolve(before.link, active=event.source))
        bound, bound_effects = step(moved, event)
        return bound, (*bound_effects, BindTransport(before.session_id, event.source, old))


class NeverLeavesRecovering(ReferenceImplementation):
    """RECOVERING never ends on its window: the step that would end it is ignored."""

    name = "never-leaves-recovering"

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        leaving = {ReasonCode.RECOVERY_WINDOW_EXCEEDED, ReasonCode.NO_VIABLE_CANDIDATE,
                   ReasonCode.RECOVERY_PARTIAL}
        if before.phase is Phase.RECOVERING and any(
                type(e) is StateChanged and e.reason in leaving for e in effects):
            return before, ()
        return after, effects


class UnboundedCandidates(ReferenceImplementation):
    """Client: a discovered candidate beyond `max_candidates` is stored anyway."""

    name = "unbounded-candidates"

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        if type(event) is CandidateDiscovered and _rejected_with(
                effects, ReasonCode.CANDIDATE_LIMIT_REACHED):
            roaming = after.roaming
            grown = Roaming((*roaming.candidates, event.transport), roaming.switch_times,
                            roaming.recovery_rounds)
            return attrs.evolve(after, roaming=grown), ()
        return after, effects


class SkipsProofCheck(ReferenceImplementation):
    """Server: a reattach request with an invalid proof is treated as if it verified."""

    name = "skips-proof-check"

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        if type(event) is ReattachRequest and _rejected_with(effects, ReasonCode.PROOF_INVALID):
            # The server cannot sign a request (only a client does), so the request it
            # pretends to have verified is the one the honest peer would have signed with
            # the same fields: the peer's proof, not the core's.
            proof = Peer.of(before).request_proof(event.nonce, event.state_version,
                                                  event.timestamp_ms, event.candidate,
                                                  event.challenge)
            return step(before, attrs.evolve(event, proof=proof))
        return after, effects


# Factories for `--jumpvpn-impl` / `--impl` (a class is a factory: called with no
# arguments, it returns the implementation).
accepts_replayed_nonce = AcceptsReplayedNonce
forgets_version_bump = ForgetsVersionBump
binds_before_path_validation = BindsBeforePathValidation
never_leaves_recovering = NeverLeavesRecovering
unbounded_candidates = UnboundedCandidates
skips_proof_check = SkipsProofCheck
switch_cooldown_inclusive = SwitchCooldownInclusive
rate_window_inclusive = RateWindowInclusive
loss_window_inclusive = LossWindowInclusive
recovery_deadline_late = RecoveryDeadlineLate
proof_age_inclusive = ProofAgeInclusive
clock_skew_exclusive = ClockSkewExclusive
replay_window_off_by_one = ReplayWindowOffByOne
rate_limit_after_replay_check = RateLimitAfterReplayCheck
no_viable_reported_as_exceeded = NoViableReportedAsExceeded
accept_before_bind = AcceptBeforeBind
keeps_switched_candidate = KeepsSwitchedCandidate
failed_path_stays_failed = FailedPathStaysFailed
attempt_not_reset = AttemptNotReset
zone_blind_addresses = ZoneBlindAddresses
nonces_as_doubles = NoncesAsDoubles
migration_margin_strict = MigrationMarginStrict
migration_dwell_exclusive = MigrationDwellExclusive
quality_age_inclusive = QualityAgeInclusive
ewma_rounds_down = EwmaRoundsDown
unmeasured_as_cheapest = UnmeasuredAsCheapest


#: The gross breakages (each caught by the kit's own tests), by factory name.
BROKEN: dict[str, type[ReferenceImplementation]] = {
    "accepts_replayed_nonce": AcceptsReplayedNonce,
    "forgets_version_bump": ForgetsVersionBump,
    "binds_before_path_validation": BindsBeforePathValidation,
    "never_leaves_recovering": NeverLeavesRecovering,
    "unbounded_candidates": UnboundedCandidates,
    "skips_proof_check": SkipsProofCheck,
}

#: The whole catalogue: the gross breakages above and the porters' mistakes.
CATALOGUE: dict[str, type[ReferenceImplementation]] = {**BROKEN, **PORTING_MISTAKES}
