"""Porters' mistakes: the reference with one rule gotten subtly wrong, as a port would.

Each class below is what an implementer reading `specs/` might write: a `<` for a `<=` at a
window edge, a check done in the wrong order, a side effect of a transition forgotten, a
reason code wrong in a rare branch, an IPv6 zone dropped, a nonce held in a double. They
are the bar for the conformance fuzzer: `jumpvpn conformance --catalogue` runs each one
over many seeds and prints how often it is caught (`docs/conformance.md`).

Two ways to plant a mistake, both through the reference's one `alter` hook:

* an off-by-one on a bound is the reference stepped with that policy field moved by one
  millisecond (`now - t < c` written `<=` is `now - t < c + 1`), the policy restored after;
* anything else rewrites the step's input or output where the port would differ.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from jumpvpn_core.effects import (
    BindTransport,
    Effect,
    Rejected,
    SendReattachAccept,
    SessionEnded,
    StateChanged,
)
from jumpvpn_core.errors import PolicyError
from jumpvpn_core.events import (
    InboundTraffic,
    ProbeLost,
    ReattachAccepted,
    ReattachRequest,
    RttSample,
    Tick,
)
from jumpvpn_core.machine import step
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.quality import LOSS_ONE_Q16, migration_due, upgrade_target
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.replay import ReplayVerdict, check_nonce
from jumpvpn_core.state import ClientSide, PathScore, Roaming, ServerSide, SessionState
from jumpvpn_core.subject import ReferenceImplementation
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "PORTING_MISTAKES",
    "AcceptBeforeBind",
    "AttemptNotReset",
    "ClockSkewExclusive",
    "EwmaRoundsDown",
    "FailedPathStaysFailed",
    "KeepsSwitchedCandidate",
    "LossWindowInclusive",
    "MigrationDwellExclusive",
    "MigrationMarginStrict",
    "NoViableReportedAsExceeded",
    "NoncesAsDoubles",
    "ProofAgeInclusive",
    "QualityAgeInclusive",
    "RateLimitAfterReplayCheck",
    "RateWindowInclusive",
    "RecoveryDeadlineLate",
    "ReplayWindowOffByOne",
    "SwitchCooldownInclusive",
    "UnmeasuredAsCheapest",
    "ZoneBlindAddresses",
]

_Step = tuple[SessionState, tuple[Effect, ...]]


def _with_policy(state: SessionState, **changes: int) -> SessionState | None:
    """`state` under a policy with `changes`, or None when that policy is invalid."""
    try:
        policy = attrs.evolve(state.ident.policy, **changes)
    except PolicyError:
        return None
    return attrs.evolve(state, ident=attrs.evolve(state.ident, policy=policy))


def _settled(before: SessionState, now: int) -> SessionState:
    """`before` with every deadline due at `now` fired (what a handler sees)."""
    if now < before.link.clock_ms:
        return before
    return step(before, Tick(now))[0]


class _PolicyOffByOne(ReferenceImplementation):
    """The reference stepped as if `field` were `delta` ms off (for `role`, or both)."""

    field: ClassVar[str]
    delta: ClassVar[int]
    role: ClassVar[Role | None] = None

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        if self.role is not None and before.ident.role is not self.role:
            return after, effects
        shifted = _with_policy(before, **{
            self.field: getattr(before.ident.policy, self.field) + self.delta})
        if shifted is None:
            return after, effects
        new, out = step(shifted, event)
        if new is shifted:
            return before, out
        return attrs.evolve(new, ident=before.ident), out


class SwitchCooldownInclusive(_PolicyOffByOne):
    """Anti-flap cooldown tested with `<=`: a switch exactly `switch_cooldown_ms` after the
    last one is refused (SWITCH_COOLDOWN); the spec allows it."""

    name = "switch-cooldown-inclusive"
    field, delta = "switch_cooldown_ms", 1


class RateWindowInclusive(_PolicyOffByOne):
    """Server: the reattach rate window tested with `<=`: a request exactly
    `reattach_rate_window_ms` after the oldest counted one is RATE_LIMITED."""

    name = "rate-window-inclusive"
    field, delta, role = "reattach_rate_window_ms", 1, Role.SERVER


class LossWindowInclusive(_PolicyOffByOne):
    """Client: a loss exactly `loss_window_ms` after the streak began starts a new streak
    (`>=` where the spec says `>`), so the threshold is reached one report later."""

    name = "loss-window-inclusive"
    field, delta, role = "loss_window_ms", -1, Role.CLIENT


class RecoveryDeadlineLate(_PolicyOffByOne):
    """The recovery window ends on `now > since + max_recovery_window_ms`: a Tick exactly
    at the deadline leaves the session RECOVERING for one more millisecond."""

    name = "recovery-deadline-late"
    field, delta = "max_recovery_window_ms", 1


class ProofAgeInclusive(_PolicyOffByOne):
    """Server: proof freshness tested with `<=`: a request whose timestamp is exactly
    `proof_max_age_ms` old is PROOF_EXPIRED; the spec still accepts it."""

    name = "proof-age-inclusive"
    field, delta, role = "proof_max_age_ms", -1, Role.SERVER


class ClockSkewExclusive(_PolicyOffByOne):
    """Server: a timestamp exactly `max_clock_skew_ms` ahead is PROOF_FROM_FUTURE (`>=`
    where the spec says `>`)."""

    name = "clock-skew-exclusive"
    field, delta, role = "max_clock_skew_ms", -1, Role.SERVER


class ReplayWindowOffByOne(ReferenceImplementation):
    """Server: the replay window is one nonce too wide (`age > size` where the spec says
    `age >= size`): the nonce exactly `replay_window_bits` behind the newest is taken for
    fresh instead of NONCE_TOO_OLD."""

    name = "replay-window-off-by-one"

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        side = before.side
        if type(event) is not ReattachRequest or not isinstance(side, ServerSide) or \
                side.replay_top - event.nonce != before.ident.policy.replay_window_bits:
            return after, effects
        # One nonce lower, the same nonce is the oldest in the window (its bit is clear):
        # the port's verdict. Marking it changes nothing the window keeps.
        lowered = attrs.evolve(before, side=attrs.evolve(
            side, replay_top=side.replay_top - 1, replay_bits=side.replay_bits >> 1))
        new, out = step(lowered, event)
        if new is lowered:
            return before, out
        new_side = new.side
        assert isinstance(new_side, ServerSide)
        top = side.replay_top if new_side.replay_top == side.replay_top - 1 \
            else new_side.replay_top
        bits = side.replay_bits if top == side.replay_top else new_side.replay_bits
        return attrs.evolve(new, side=attrs.evolve(new_side, replay_top=top,
                                                   replay_bits=bits)), out


class RateLimitAfterReplayCheck(ReferenceImplementation):
    """Server: the replay window is checked before the rate limit (the spec says rate
    limit first): a replayed or too-old request at the limit is refused as
    REPLAY_DETECTED / NONCE_TOO_OLD instead of RATE_LIMITED."""

    name = "rate-limit-after-replay-check"

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        if type(event) is not ReattachRequest or not effects or \
                type(effects[-1]) is not Rejected or \
                effects[-1].reason is not ReasonCode.RATE_LIMITED:
            return after, effects
        side = after.side
        assert isinstance(side, ServerSide)
        verdict = check_nonce(side.replay_top, side.replay_bits,
                              after.ident.policy.replay_window_bits, event.nonce)
        if verdict is ReplayVerdict.FRESH:
            return after, effects
        reason = (ReasonCode.REPLAY_DETECTED if verdict is ReplayVerdict.SEEN
                  else ReasonCode.NONCE_TOO_OLD)
        return after, (*effects[:-1], attrs.evolve(effects[-1], reason=reason))


class NoViableReportedAsExceeded(ReferenceImplementation):
    """When the recovery window ends with no viable path left, the session ends with
    RECOVERY_WINDOW_EXCEEDED instead of NO_VIABLE_CANDIDATE (a rare branch's reason)."""

    name = "no-viable-reported-as-exceeded"

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        wrong = ReasonCode.RECOVERY_WINDOW_EXCEEDED
        if after.end_reason is not ReasonCode.NO_VIABLE_CANDIDATE:
            return after, effects
        renamed = tuple(attrs.evolve(e, reason=wrong)
                        if isinstance(e, (StateChanged, SessionEnded))
                        and e.reason is ReasonCode.NO_VIABLE_CANDIDATE else e
                        for e in effects)
        return attrs.evolve(after, end_reason=wrong), renamed


class AcceptBeforeBind(ReferenceImplementation):
    """Server: on a reattach that switches paths, the accept is emitted before the
    BindTransport (the spec orders the route first, then the accept)."""

    name = "accept-before-bind"

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        kinds = [type(e) for e in effects]
        if kinds[-2:] != [BindTransport, SendReattachAccept]:
            return after, effects
        return after, (*effects[:-2], effects[-1], effects[-2])


class KeepsSwitchedCandidate(ReferenceImplementation):
    """Client: a reattach that switches to a candidate leaves it in the candidate set (the
    spec removes the newly bound transport from the candidates)."""

    name = "keeps-switched-candidate"

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        if type(event) is not ReattachAccepted or \
                event.via not in before.roaming.candidates or \
                not any(type(e) is BindTransport for e in effects):
            return after, effects
        roaming = after.roaming
        kept = Roaming(before.roaming.candidates, roaming.switch_times, roaming.recovery_rounds)
        return attrs.evolve(after, roaming=kept), effects


class FailedPathStaysFailed(ReferenceImplementation):
    """Client: a valid accept on the failed active path rebinds it but leaves it marked
    failed (the spec revives it)."""

    name = "failed-path-stays-failed"

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        if type(event) is not ReattachAccepted or not before.link.active_failed or \
                event.via != before.link.active or \
                not any(type(e) is StateChanged and e.reason is ReasonCode.REATTACHED
                        for e in effects):
            return after, effects
        return attrs.evolve(after, link=attrs.evolve(after.link, active_failed=True)), effects


class AttemptNotReset(ReferenceImplementation):
    """Client: back in ATTACHED after a reattach, the round-robin attempt counter is not
    reset, so the next recovery starts on another transport than the spec's first."""

    name = "attempt-not-reset"

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        side, old = after.side, before.side
        if type(event) is not ReattachAccepted or not isinstance(side, ClientSide) or \
                not isinstance(old, ClientSide) or side.attempt or not old.attempt:
            return after, effects
        return attrs.evolve(after, side=attrs.evolve(side, attempt=old.attempt)), effects


class MigrationMarginStrict(_PolicyOffByOne):
    """Client: the migration margin tested with `<`: a candidate whose cost undercuts the
    active path's by exactly `migration_margin_ms` is no upgrade target (the spec's test
    is `cost + margin <= cost(active)`), so that migration never starts."""

    name = "migration-margin-strict"
    field, delta, role = "migration_margin_ms", 1, Role.CLIENT


class MigrationDwellExclusive(_PolicyOffByOne):
    """Client: the dwell tested with `>`: a migration starts only once the better path has
    been tracked for more than `migration_dwell_ms` (the spec: at least that long), one
    millisecond after the due time."""

    name = "migration-dwell-exclusive"
    field, delta, role = "migration_dwell_ms", 1, Role.CLIENT


class QualityAgeInclusive(_PolicyOffByOne):
    """Client: a measurement exactly `quality_max_age_ms` old already counts as none
    (`>=` where the spec says `>`), so at that millisecond the path is unmeasured: no
    migration from or to it, and recovery ranks it among the unmeasured paths."""

    name = "quality-age-inclusive"
    field, delta, role = "quality_max_age_ms", -1, Role.CLIENT


def _rounded_down(old: int, sample: int) -> int:
    return (7 * old + sample) >> 3


class EwmaRoundsDown(ReferenceImplementation):
    """Client: the path scores' EWMA rounds down, `(7 * old + x) // 8`, where the spec
    rounds half up, `(7 * old + x + 4) // 8`: a smoothed RTT or loss one unit low, enough
    to move a cost across the migration margin or break a tie in the ranking."""

    name = "ewma-rounds-down"

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        side = after.side
        if type(event) not in (RttSample, ProbeLost) or not isinstance(side, ClientSide) \
                or any(type(e) is Rejected for e in effects):
            return after, effects
        old_side = before.side
        assert isinstance(old_side, ClientSide)
        old = next((s for s in old_side.quality if s.transport == event.transport), None)
        if old is None:
            return after, effects  # a first sample is taken as it is: nothing to round
        if type(event) is RttSample:
            srtt = event.rtt_ms if old.srtt_ms == 0 else _rounded_down(old.srtt_ms,
                                                                        event.rtt_ms)
            loss = _rounded_down(old.loss_q16, 0)
        else:
            srtt, loss = old.srtt_ms, _rounded_down(old.loss_q16, LOSS_ONE_Q16)
        now = event.now_ms
        quality = tuple(PathScore(s.transport, srtt, loss, now)
                        if s.transport == event.transport else s for s in side.quality)
        if quality == side.quality:
            return after, effects
        # What the handler saw (deadlines due first), then the port's scores in its place.
        settled, prefix = step(before, Tick(now))
        seen = settled.side
        assert isinstance(seen, ClientSide)
        if settled.phase is not Phase.ATTACHED or seen.pending is not None:
            return attrs.evolve(after, side=attrs.evolve(side, quality=quality)), effects
        # The evaluation of the hysteresis (specs/path-quality.md), on the port's scores.
        policy = settled.ident.policy
        target = upgrade_target(settled.link, settled.roaming, quality, policy, now)
        better, since = (None, 0) if target is None else \
            (seen.better, seen.better_since_ms) if target == seen.better else (target, now)
        primed = attrs.evolve(
            settled, link=attrs.evolve(settled.link, clock_ms=now),
            side=attrs.evolve(seen, quality=quality, better=better, better_since_ms=since))
        primed_side = primed.side
        assert isinstance(primed_side, ClientSide)
        if better is not None and now >= migration_due(primed_side, settled.roaming, policy):
            # Due: the reference's own deadline starts the migration (same evaluation).
            started, sent = step(primed, Tick(now))
            return started, (*prefix, *sent)
        return primed, prefix


class UnmeasuredAsCheapest(ReferenceImplementation):
    """Client: a path with no measurement (or only a stale one) is ranked like a good path
    of cost 0 (the spec ranks it after every good measured path), so recovery tries it
    first and a proactive migration may pick it."""

    name = "unmeasured-as-cheapest"

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        side = before.side
        if not isinstance(side, ClientSide) or before.phase is Phase.TERMINATED:
            return after, effects
        now = event.now_ms
        policy = before.ident.policy
        known = [before.link.active, *before.roaming.candidates]
        fresh = {s.transport for s in side.quality
                 if now - s.updated_ms <= policy.quality_max_age_ms}
        # The port's view: every known path without a measurement that counts looks
        # measured just now, no RTT, no loss: a good path of cost 0. A sample's own path is
        # left alone: the sample measures it, and its score is the spec's either way.
        sampled = event.transport if type(event) in (RttSample, ProbeLost) else None
        unmeasured = [p for p in known if p is not None and p not in fresh and p != sampled]
        if not unmeasured:
            return after, effects
        kept = tuple(s for s in side.quality if s.transport not in unmeasured)
        faked = attrs.evolve(before, side=attrs.evolve(side, quality=(
            *kept, *(PathScore(p, 0, 0, now) for p in unmeasured))))
        new, out = step(faked, event)
        if new is faked:
            return before, out
        new_side, spec_side = new.side, after.side
        if not isinstance(new_side, ClientSide) or not isinstance(spec_side, ClientSide):
            return new, out
        # The scores themselves are the spec's: only the ranking read them wrong.
        return attrs.evolve(new, side=attrs.evolve(new_side, quality=spec_side.quality)), out


def _without_zone(transport: TransportDescriptor) -> TransportDescriptor:
    return attrs.evolve(transport, host=transport.host.partition("%")[0])


class ZoneBlindAddresses(ReferenceImplementation):
    """Addresses compared without their IPv6 zone id: traffic from `fe80::1%eth1` counts as
    traffic on the bound `fe80::1%eth0` (two different links to the spec)."""

    name = "zone-blind-addresses"

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        active = before.link.active
        if type(event) is not InboundTraffic or active is None or event.transport == active \
                or _without_zone(event.transport) != _without_zone(active):
            return after, effects
        return step(before, attrs.evolve(event, transport=active))


_DOUBLE_MAX = 2**64 - 1


class NoncesAsDoubles(ReferenceImplementation):
    """Server: nonces held in an IEEE double (a JavaScript port): a nonce past 2^53 is
    rounded before it is checked, marked and verified."""

    name = "nonces-as-doubles"

    def alter(self, before: SessionState, event: Any, after: SessionState,
              effects: tuple[Effect, ...]) -> _Step:
        if type(event) is not ReattachRequest:
            return after, effects
        rounded = min(int(float(event.nonce)), _DOUBLE_MAX)
        if rounded == event.nonce:
            return after, effects
        return step(before, attrs.evolve(event, nonce=rounded))


#: The porters' mistakes, by factory name (`jumpvpn_core.testing.broken:<name>`).
PORTING_MISTAKES: dict[str, type[ReferenceImplementation]] = {
    "switch_cooldown_inclusive": SwitchCooldownInclusive,
    "rate_window_inclusive": RateWindowInclusive,
    "loss_window_inclusive": LossWindowInclusive,
    "recovery_deadline_late": RecoveryDeadlineLate,
    "proof_age_inclusive": ProofAgeInclusive,
    "clock_skew_exclusive": ClockSkewExclusive,
    "replay_window_off_by_one": ReplayWindowOffByOne,
    "rate_limit_after_replay_check": RateLimitAfterReplayCheck,
    "no_viable_reported_as_exceeded": NoViableReportedAsExceeded,
    "accept_before_bind": AcceptBeforeBind,
    "keeps_switched_candidate": KeepsSwitchedCandidate,
    "failed_path_stays_failed": FailedPathStaysFailed,
    "attempt_not_reset": AttemptNotReset,
    "zone_blind_addresses": ZoneBlindAddresses,
    "nonces_as_doubles": NoncesAsDoubles,
    "migration_margin_strict": MigrationMarginStrict,
    "migration_dwell_exclusive": MigrationDwellExclusive,
    "quality_age_inclusive": QualityAgeInclusive,
    "ewma_rounds_down": EwmaRoundsDown,
    "unmeasured_as_cheapest": UnmeasuredAsCheapest,
}
