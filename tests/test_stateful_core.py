"""Stateful exploration: a client, a server, a lossy NATed network and an attacker.

Hypothesis interleaves clock jumps, loss, failures, NAT rebinding, candidate churn,
network misbehaviour (drop, duplicate, reorder, delay) and attacks (replays, forged
proofs, stale and future versions, wrong session ids, spoofed sources, floods). Every
`step()` goes through `tests.harness.checked_step`, so every invariant checker runs after
every single step; the `@invariant`s below add the properties that span both roles.

Run deeper with `HYPOTHESIS_PROFILE=deep`.

Every rule reports itself through Hypothesis's `event()` (`pytest
--hypothesis-show-statistics` prints them) and into `COVERAGE`;
`test_every_rule_and_phase_is_exercised` fails when a rule ran fewer than
`MIN_RULE_RUNS` times or a phase of either role was reached in fewer than
`MIN_PHASE_SHARE` of the examples, or when a proactive migration (`MIGRATED_TO_BETTER_PATH`)
happened in fewer than `MIN_MIGRATION_SHARE` of them. Every attacker rule asserts that its
request is refused and binds nothing.

Path quality (`specs/path-quality.md`): rules feed RTT samples and lost probes to the
client for its active path and its candidates, one at a time or as two paths swapping
which is better faster or slower than `migration_dwell_ms`, and the honest network
carries the migration requests, challenges and accepts as it does for any reattach. Over
the whole run of a session the machine checks that proactive switches stay within
ceil(T / migration_dwell_ms) in any window of length T, are never closer than the dwell
time, and that no more switches than `max_switches_per_minute` fall in any 60 s; that
the client's path changes only on an accept the server issued, onto a path the server
validated; that an unmeasured path is never ranked before a measured good one; and that
a recovery tries the best-ranked path first.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from jumpvpn_core import (
    AllTransportsFailed,
    CandidateDiscovered,
    CandidateLost,
    DeliveryTimeout,
    Effect,
    Event,
    InboundTraffic,
    PacketLoss,
    Phase,
    Policy,
    ProbeLost,
    ReasonCode,
    ReattachAccepted,
    ReattachRequest,
    Role,
    RttSample,
    SendReattachAccept,
    SendReattachRequest,
    SessionState,
    StateChanged,
    StepResult,
    Tick,
    TransportDescriptor,
    TransportFailed,
    check_state,
    next_deadline,
    step,
)
from jumpvpn_core.peer import Peer
from jumpvpn_core.policy import SWITCH_WINDOW_MS
from jumpvpn_core.quality import GOOD_LOSS_LIMIT_Q16, migration_due, ranked, upgrade_target
from jumpvpn_core.state import ClientSide, PathScore
from tests import harness
from tests.figures import report_figures
from tests.harness import (
    ATTACKERS,
    LOCALS,
    SESSION_ID,
    InvariantBrokenError,
    Simulation,
    checked_step,
    rejections,
)

# Small bounds so that every interesting edge is a few rules away (the dwell times too: a
# proactive migration must fit in a run of 40 rules).
POLICIES = (
    Policy(
        loss_threshold=3,
        loss_window_ms=500,
        max_recovery_window_ms=3_000,
        reattach_timeout_ms=400,
        max_recovery_rounds=2,
        max_degraded_ms=4_000,
        session_max_lifetime_ms=600_000,
        transport_lost_ttl_ms=30_000,
        switch_cooldown_ms=300,
        max_switches_per_minute=3,
        max_candidates=3,
        replay_window_bits=64,
        proof_max_age_ms=2_000,
        max_clock_skew_ms=200,
        path_validation_timeout_ms=600,
        reattach_rate_limit=3,
        reattach_rate_window_ms=1_000,
        quality_max_age_ms=3_000,
        migration_dwell_ms=700,
    ),
    Policy(
        loss_threshold=1,
        max_recovery_window_ms=1_500,
        reattach_timeout_ms=1_500,
        max_recovery_rounds=1,
        max_degraded_ms=1_000,
        session_max_lifetime_ms=40_000,
        transport_lost_ttl_ms=8_000,
        switch_cooldown_ms=0,
        max_switches_per_minute=1,
        max_candidates=1,
        replay_window_bits=128,
        amplification_factor=1,
        path_challenge_size_bytes=200,
        reattach_rate_limit=1,
        migration_margin_ms=1,
        migration_dwell_ms=1_000,
    ),
    # A path validation that outlasts the recovery window: a server that still hears the
    # old path when the window ends degrades instead of reverting (§9).
    Policy(
        loss_threshold=2,
        max_recovery_window_ms=800,
        reattach_timeout_ms=300,
        max_recovery_rounds=2,
        max_degraded_ms=3_000,
        path_validation_timeout_ms=2_000,
        reattach_rate_limit=2,
        quality_loss_penalty_ms=400,
        migration_dwell_ms=2_000,
    ),
)

#: What the attacker captured off the wire: a request and the source it came from.
Captured = tuple[SendReattachRequest, TransportDescriptor]

#: The CI check's bounds (`test_every_rule_and_phase_is_exercised`).
MIN_RULE_RUNS = 100
MIN_PHASE_SHARE = 0.05
MIN_MIGRATION_SHARE = 0.05
#: The check's own run: the `ci` profile's size, derandomized.
CHECK_EXAMPLES, CHECK_STEPS = 600, 40


@attrs.define
class Coverage:
    """What the machine exercised: runs per rule, per (role, phase) the number of
    examples in which that role was in that phase at least once, and the proactive
    migrations (`MIGRATED_TO_BETTER_PATH`): how many, and in how many examples."""

    examples: int = 0
    rules: Counter[str] = attrs.field(factory=Counter)
    reached: Counter[tuple[Role, Phase]] = attrs.field(factory=Counter)
    migrations: int = 0
    migrated_examples: int = 0

    def problems(self, rules: list[str]) -> list[str]:
        """Every bound the coverage misses (empty: all met)."""
        found = [f"rule {name} ran {self.rules[name]} times (< {MIN_RULE_RUNS})"
                 for name in rules if self.rules[name] < MIN_RULE_RUNS]
        for role in Role:
            for phase in Phase:
                share = self.reached[role, phase] / max(1, self.examples)
                if share < MIN_PHASE_SHARE:
                    found.append(f"{role.value} reached {phase.value} in "
                                 f"{self.reached[role, phase]} of {self.examples} examples "
                                 f"({share:.1%} < {MIN_PHASE_SHARE:.0%})")
        share = self.migrated_examples / max(1, self.examples)
        if share < MIN_MIGRATION_SHARE:
            found.append(f"MIGRATED_TO_BETTER_PATH in {self.migrated_examples} of "
                         f"{self.examples} examples ({share:.1%} < {MIN_MIGRATION_SHARE:.0%})")
        return found


COVERAGE = Coverage()
_F = TypeVar("_F", bound=Callable[..., Any])


def counted(function: _F) -> _F:
    """Count every run of a rule: Hypothesis's `event()` and `COVERAGE.rules`."""

    @functools.wraps(function)
    def run(self: CoreMachine, *args: Any, **kwargs: Any) -> Any:
        event(f"rule {function.__name__}")
        COVERAGE.rules[function.__name__] += 1
        return function(self, *args, **kwargs)

    return run  # type: ignore[return-value]  # functools.wraps keeps the signature


@attrs.define
class WatchedSimulation(Simulation):
    """The harness's simulation, also watching the client over the whole session: the
    time of every switch of its path (`switches`) and of every proactive one
    (`proactive`), and, on each step, that its path moved only on an accept the server
    really issued, onto a path the server validated, and that a recovery's first attempt
    goes to the best-ranked viable path."""

    switches: list[int] = attrs.field(factory=list)
    proactive: list[int] = attrs.field(factory=list)
    #: (nonce, state_version, timestamp_ms, proof) of every accept the server sent.
    server_accepts: set[tuple[int, int, int, bytes]] = attrs.field(factory=set)

    def to_client(self, event: Event) -> tuple[Effect, ...]:
        before = self.client
        effects = super().to_client(event)
        after = self.client
        if after.link.active != before.link.active:
            # Path quality never binds a path: only the handshake or a verified accept.
            if not isinstance(event, ReattachAccepted):
                assert before.phase is Phase.BIRTH, (event, effects)
            else:
                assert (event.nonce, event.state_version, event.timestamp_ms,
                        event.proof) in self.server_accepts, event
                assert after.link.active == event.via
                assert self.nat[event.via] in self.proven, (event.via, self.proven)
                self.switches.append(event.now_ms)
        self.proactive.extend(event.now_ms for e in effects if type(e) is StateChanged
                              and e.reason is ReasonCode.MIGRATED_TO_BETTER_PATH)
        _first_attempt_is_best_ranked(after, event.now_ms, effects)
        return effects

    def to_server(self, event: Event) -> tuple[Effect, ...]:
        effects = super().to_server(event)
        self.server_accepts.update((e.nonce, e.state_version, e.timestamp_ms, e.proof)
                                   for e in effects if type(e) is SendReattachAccept)
        return effects


def _session(policy: Policy, now: int = 1_000, attach: bool = True) -> WatchedSimulation:
    sim = WatchedSimulation.create(policy, now=now, attach=attach)
    assert isinstance(sim, WatchedSimulation)
    return sim


def _client_side(state: SessionState) -> ClientSide:
    side = state.side
    assert isinstance(side, ClientSide)
    return side


#: Rank classes as `specs/path-quality.md` defines them, computed here from the scores
#: alone (not through `quality`): measured good, unmeasured or stale, measured bad.
GOOD, UNMEASURED, BAD = 0, 1, 2


def _rank_class(quality: tuple[PathScore, ...], path: TransportDescriptor, policy: Policy,
                now: int) -> int:
    for score in quality:
        if score.transport == path:
            if now - score.updated_ms > policy.quality_max_age_ms:
                return UNMEASURED
            return GOOD if score.loss_q16 < GOOD_LOSS_LIMIT_Q16 else BAD
    return UNMEASURED


def _first_attempt_is_best_ranked(after: SessionState, now: int,
                                  effects: tuple[Effect, ...]) -> None:
    """Best-first recovery: the request a client sends as it enters RECOVERING from
    ATTACHED goes to the first path of `quality.ranked` over its viable paths, whose
    rank class is the best among them."""
    entered = [i for i, e in enumerate(effects) if type(e) is StateChanged
               and e.from_phase is Phase.ATTACHED and e.to_phase is Phase.RECOVERING]
    if not entered or after.phase is not Phase.RECOVERING:
        return
    sent = [e for e in effects[entered[-1]:] if type(e) is SendReattachRequest]
    if not sent:
        return
    link, side, policy = after.link, _client_side(after), after.ident.policy
    viable = after.roaming.candidates if link.active is None or link.active_failed else (
        link.active, *after.roaming.candidates)
    assert sent[0].via == ranked(viable, side.quality, policy, now)[0]
    assert _rank_class(side.quality, sent[0].via, policy, now) == min(
        _rank_class(side.quality, path, policy, now) for path in viable)


small_ms = st.integers(min_value=1, max_value=250)
large_ms = st.integers(min_value=250, max_value=12_000)
locals_ = st.sampled_from(LOCALS)
attackers = st.sampled_from(ATTACKERS)
anywhere = st.integers(min_value=0, max_value=1_000)
#: RTT samples: a fast path and a slow one, far apart compared with the migration margins.
rtts = st.one_of(st.integers(1, 40), st.integers(120, 400))
#: Samples per path at each swap of an oscillation: enough for the EWMA (gain 1/8) to put
#: the winner ahead by far more than the margin whatever the scores were before.
SWAP_SAMPLES = 8


class CoreMachine(RuleBasedStateMachine):
    """One session, both ends, driven through every kind of trouble the model names."""

    def __init__(self) -> None:
        super().__init__()
        self.sim = _session(POLICIES[0], attach=False)
        self.attacker_nonce = 1 << 40
        #: Proactive switches of the sessions this example already left behind.
        self.earlier_migrations = 0
        # Every session starts in BIRTH (the sessions are attached as they are created).
        self.reached: set[tuple[Role, Phase]] = {(role, Phase.BIRTH) for role in Role}

    @initialize(policy=st.sampled_from(POLICIES), start=st.integers(0, 10_000))
    def attach(self, policy: Policy, start: int) -> None:
        self.sim = _session(policy, now=start)

    def teardown(self) -> None:
        COVERAGE.examples += 1
        for reached in self.reached:
            COVERAGE.reached[reached] += 1
        migrations = self.earlier_migrations + len(self.sim.proactive)
        COVERAGE.migrations += migrations
        COVERAGE.migrated_examples += migrations > 0

    # --- helpers ----------------------------------------------------------------------------

    def _attack(self, event: ReattachRequest) -> None:
        """Deliver an attacker's request: it must be refused, once, and bind nothing."""
        bound_before = self.sim.server.link.active
        effects = self.sim.to_server(event)
        refused = rejections(effects)
        assert len(refused) == 1, effects
        assert self.sim.server.link.active == bound_before

    def _fresh_nonce(self) -> int:
        self.attacker_nonce += 1
        return self.attacker_nonce

    # --- time -------------------------------------------------------------------------------

    @rule(ms=st.one_of(small_ms, small_ms, small_ms, large_ms))
    @counted
    def clock_jumps_forward(self, ms: int) -> None:
        self.sim.advance(ms)

    @rule(extra=st.integers(0, 2_000))
    @counted
    def clock_jumps_past_next_deadline(self, extra: int) -> None:
        deadlines = [d for d in (next_deadline(self.sim.client), next_deadline(self.sim.server))
                     if d is not None and d > self.sim.now]
        if deadlines:
            self.sim.now = min(deadlines) + extra

    @rule(role=st.sampled_from(Role))
    @counted
    def tick_at_next_deadline(self, role: Role) -> None:
        state = self.sim.client if role is Role.CLIENT else self.sim.server
        deadline = next_deadline(state)
        if deadline is None:
            return
        self.sim.now = max(self.sim.now, deadline)
        if role is Role.CLIENT:
            self.sim.to_client(Tick(self.sim.now))
        else:
            self.sim.to_server(Tick(self.sim.now))

    @rule(role=st.sampled_from(Role), back=st.integers(1, 5_000))
    @counted
    def event_from_the_past_is_refused_or_harmless(self, role: Role, back: int) -> None:
        state = self.sim.client if role is Role.CLIENT else self.sim.server
        when = max(0, self.sim.now - back)
        after, effects = checked_step(state, Tick(when))
        if when < state.link.clock_ms and state.phase is not Phase.TERMINATED:
            assert after is state
            assert [r.reason for r in rejections(effects)] == ["TIME_WENT_BACKWARDS"]

    # --- the client's transports ------------------------------------------------------------

    @rule(count=st.integers(1, 4))
    @counted
    def packet_loss_burst(self, count: int) -> None:
        self.sim.to_client(PacketLoss(self.sim.now, count))

    @rule()
    @counted
    def delivery_timeout(self) -> None:
        self.sim.to_client(DeliveryTimeout(self.sim.now))

    @rule(size=st.integers(0, 1_500), who=st.sampled_from(("both", "client", "server")))
    @counted
    def traffic_on_active_path(self, size: int, who: str) -> None:
        self.sim.traffic(size, client=who != "server", server=who != "client")

    @rule(size=st.integers(0, 1_500))
    @counted
    def traffic_on_a_candidate(self, size: int) -> None:
        if self.sim.client.roaming.candidates:
            local = self.sim.client.roaming.candidates[0]
            self.sim.to_client(InboundTraffic(self.sim.now, local, size))

    @rule(local=locals_)
    @counted
    def nat_rebinds(self, local: TransportDescriptor) -> None:
        self.sim.rebind_nat(local)

    @rule()
    @counted
    def nat_rebinds_active_path(self) -> None:
        active = self.sim.client.link.active
        if active is not None:
            self.sim.rebind_nat(active)

    @rule(local=locals_)
    @counted
    def transport_fails(self, local: TransportDescriptor) -> None:
        self.sim.to_client(TransportFailed(self.sim.now, local))

    @rule()
    @counted
    def active_transport_fails(self) -> None:
        active = self.sim.client.link.active
        if active is not None:
            self.sim.to_client(TransportFailed(self.sim.now, active))

    @rule()
    @counted
    def total_collapse(self) -> None:
        self.sim.to_client(AllTransportsFailed(self.sim.now))

    @rule(local=locals_)
    @counted
    def candidate_appears(self, local: TransportDescriptor) -> None:
        before = self.sim.client.roaming.candidates
        self.sim.to_client(CandidateDiscovered(self.sim.now, local))
        after = self.sim.client.roaming.candidates
        # §5.2: first come, first kept; discovery never evicts or reorders a kept one.
        assert after[: len(before)] == before or set(after) <= set(before)

    @rule(local=locals_)
    @counted
    def candidate_vanishes(self, local: TransportDescriptor) -> None:
        self.sim.to_client(CandidateLost(self.sim.now, local))

    # --- the network ------------------------------------------------------------------------

    @precondition(lambda self: bool(self.sim.flight))
    @rule(action=st.sampled_from(("deliver", "deliver late", "drop", "duplicate", "reorder")),
          index=anywhere, delay=small_ms)
    @counted
    def network_acts_on_a_message(self, action: str, index: int, delay: int) -> None:
        """The network delivers an in-flight message (now or late), loses it, duplicates
        it, or lets it overtake the others."""
        event(f"network {action}")
        index %= len(self.sim.flight)
        if action == "deliver late":
            self.sim.advance(delay)
        if action in ("deliver", "deliver late"):
            self.sim.deliver(index)
        elif action == "drop":
            self.sim.drop(index)
        elif action == "duplicate":
            self.sim.duplicate(index)
        else:
            self.sim.reorder(index)

    @rule()
    @counted
    def network_settles(self) -> None:
        self.sim.run_until_quiet()

    @precondition(lambda self: bool(self.sim.terminated))
    @rule(policy=st.sampled_from(POLICIES))
    @counted
    def a_new_session_starts(self, policy: Policy) -> None:
        """One end is over (the other is abandoned): keep exploring with a fresh pair (the
        clock keeps running)."""
        self.earlier_migrations += len(self.sim.proactive)
        self.sim = _session(policy, now=self.sim.now)

    # --- the attacker -----------------------------------------------------------------------

    def _any_request(self, index: int) -> Captured:
        """A request seen on the wire, else one made up with the session's real fields
        (what an attacker knows without capturing anything) over the active path."""
        if self.sim.sent_requests:
            return self.sim.sent_requests[index % len(self.sim.sent_requests)]
        local = self.sim.client.link.active or LOCALS[0]
        side = self.sim.server.side
        version = getattr(side, "binding_version", 0)
        made_up = SendReattachRequest(via=local, session_id=SESSION_ID,
                                      nonce=self._fresh_nonce(), state_version=version,
                                      timestamp_ms=self.sim.now, candidate=local,
                                      challenge=b"", proof=bytes(32))
        return made_up, self.sim.nat[local]

    @precondition(lambda self: bool(self.sim.sent_requests))
    @rule(index=anywhere, spoof=st.none() | attackers)
    @counted
    def attacker_replays_a_captured_request(self, index: int,
                                            spoof: TransportDescriptor | None) -> None:
        """A request seen on the wire, replayed verbatim (from its source or a spoofed one).
        Once the server accepted its nonce, it is refused, every time. Before that it is
        indistinguishable from a late delivery: refused without a change, or accepted; it
        may bind only a proven path, never the spoofed address."""
        message, source = self.sim.sent_requests[index % len(self.sim.sent_requests)]
        sender = spoof if spoof is not None else source
        if message.nonce in self.sim.accepted_nonces:
            event("replay of an accepted request")
            self._attack(self.sim.request_event(message, sender))
            return
        event("replay of a request not accepted yet")
        self.sim.to_server(Tick(self.sim.now))  # deadlines due now fire first, copy or not
        before = self.sim.server
        effects = self.sim.to_server(self.sim.request_event(message, sender))
        if rejections(effects):
            assert self.sim.server.state_version == before.state_version
        active = self.sim.server.link.active
        assert active is None or active in self.sim.proven
        assert spoof is None or active != spoof

    @rule(index=anywhere, how=st.sampled_from(("proof", "candidate", "challenge", "nonce")),
          junk=st.binary(min_size=32, max_size=32))
    @counted
    def attacker_forges_a_proof(self, index: int, how: str, junk: bytes) -> None:
        message, source = self._any_request(index)
        if how == "proof":
            changes: dict[str, object] = {"proof": junk, "nonce": self._fresh_nonce()}
        elif how == "candidate":
            changes = {"candidate": ATTACKERS[0], "nonce": self._fresh_nonce()}
        elif how == "challenge":
            changes = {"challenge": junk[:16], "nonce": self._fresh_nonce()}
        else:
            changes = {"nonce": self._fresh_nonce()}
        self._attack(self.sim.request_event(message, source, timestamp_ms=self.sim.now,
                                            **changes))

    @rule(delta=st.integers(1, 5), ahead=st.booleans(), spoof=st.none() | attackers)
    @counted
    def signed_request_with_wrong_version(self, delta: int, ahead: bool,
                                          spoof: TransportDescriptor | None) -> None:
        """Even a correctly signed request is refused when its version is not the binding's."""
        side = self.sim.server.side
        current = getattr(side, "binding_version", 0)
        # Stale means older than the version the request behind the binding carried (a
        # client that only missed that accept may lag behind `current`, legitimately).
        last = getattr(side, "last_accept", None)
        floor = current if last is None else last.request_version
        if not ahead and floor - delta < 0:
            ahead = True  # nothing older exists yet: a version from the future instead
        version = current + delta if ahead else floor - delta
        local = self.sim.client.link.active or LOCALS[0]
        nonce = self._fresh_nonce()
        now = self.sim.now
        source = spoof if spoof is not None else self.sim.nat[local]
        peer = Peer(SESSION_ID, self.sim.control_key)
        self._attack(peer.request(now, source, nonce=nonce, state_version=version,
                                  candidate=local, size=128))

    @rule(index=anywhere, other=st.binary(min_size=16, max_size=16))
    @counted
    def attacker_uses_wrong_session_id(self, index: int, other: bytes) -> None:
        if other == SESSION_ID:
            other = bytes([other[0] ^ 1]) + other[1:]
        message, source = self._any_request(index)
        self._attack(self.sim.request_event(message, source, session_id=other,
                                            nonce=self._fresh_nonce()))

    @rule(count=st.integers(1, 12), spoof=attackers, size=st.integers(0, 1_500),
          junk=st.binary(min_size=32, max_size=32))
    @counted
    def attacker_floods(self, count: int, spoof: TransportDescriptor, size: int,
                        junk: bytes) -> None:
        server = self.sim.server
        version = getattr(server.side, "binding_version", 0)
        for _ in range(count):
            self._attack(ReattachRequest(self.sim.now, spoof, SESSION_ID, self._fresh_nonce(),
                                         version, self.sim.now, ATTACKERS[0], junk, size=size))

    @rule(spoof=attackers, size=st.integers(0, 1_500))
    @counted
    def spoofed_traffic_reaches_server(self, spoof: TransportDescriptor, size: int) -> None:
        bound_before = self.sim.server.link.active
        self.sim.to_server(InboundTraffic(self.sim.now, spoof, size))
        assert self.sim.server.link.active == bound_before

    # --- path quality: samples, oscillations, proactive migration ---------------------------

    def _paths(self) -> tuple[TransportDescriptor, ...]:
        """The client's known paths: the active one (if any), then the candidates."""
        client = self.sim.client
        active = () if client.link.active is None else (client.link.active,)
        return (*active, *client.roaming.candidates)

    def _sample(self, path: TransportDescriptor, rtt: int | None) -> tuple[Effect, ...]:
        """Deliver one sample of `path` (a lost probe when `rtt` is None); once accepted,
        the path's score carries the time of the step."""
        now = self.sim.now
        known = path in self._paths()
        effects = self.sim.to_client(ProbeLost(now, path) if rtt is None
                                     else RttSample(now, path, rtt))
        if not known:
            assert rejections(effects), effects
        if not rejections(effects):
            score = [s for s in _client_side(self.sim.client).quality if s.transport == path]
            assert len(score) == 1, score
            assert score[0].updated_ms == now, score
            assert rtt is None or score[0].srtt_ms > 0
        return effects

    @rule(which=st.integers(0, 5), rtt=rtts)
    @counted
    def rtt_sample(self, which: int, rtt: int) -> None:
        """A probe on the active path or a candidate answered (an unknown local path,
        which the client refuses, when it knows none)."""
        paths = self._paths()
        self._sample(paths[which % len(paths)] if paths else LOCALS[which], rtt)

    @rule(which=st.integers(0, 5))
    @counted
    def probe_lost(self, which: int) -> None:
        paths = self._paths()
        self._sample(paths[which % len(paths)] if paths else LOCALS[which], None)

    def _drive(self, until: int, prompt: bool) -> None:
        """What a driver does while time passes until `until`: each side gets a `Tick` at
        each of its deadlines and, with `prompt`, the network delivers everything in flight
        at once (the honest network, carrying migrations as any reattach)."""
        for _ in range(32):  # bounded: each tick fires at least one deadline
            if prompt:
                self.sim.run_until_quiet()
            due = [d for d in (next_deadline(self.sim.client), next_deadline(self.sim.server))
                   if d is not None and d <= until]
            if not due:
                break
            self.sim.now = max(self.sim.now, min(due))
            self.sim.tick_both()
        if prompt:
            self.sim.run_until_quiet()
        self.sim.now = max(self.sim.now, until)

    def _two_paths(self) -> tuple[TransportDescriptor, TransportDescriptor] | None:
        """The active path and a candidate (one found now if there is none and room)."""
        client = self.sim.client
        active = client.link.active
        if active is None or client.phase is Phase.TERMINATED:
            return None
        if not client.roaming.candidates:
            free = [local for local in LOCALS if local != active]
            self.sim.to_client(CandidateDiscovered(self.sim.now, free[0]))
        candidates = self.sim.client.roaming.candidates
        return (active, candidates[0]) if candidates else None

    def _swap(self, winner: TransportDescriptor, loser: TransportDescriptor, how: str,
              samples: int = SWAP_SAMPLES) -> bool:
        """`winner` answers fast, `loser` slowly (or loses its probes). True when the
        swap is decisive: the client is ATTACHED and its upgrade target is `winner`, or
        none when `winner` is the active path (no other candidate gets in the way)."""
        for _ in range(samples):
            self._sample(loser, 300 if how == "delay" else None)
            self._sample(winner, 5)
        client = self.sim.client
        side = _client_side(client)
        wanted = None if winner == client.link.active else winner
        target = upgrade_target(client.link, client.roaming, side.quality, self.sim.policy,
                                self.sim.now)
        return client.phase is Phase.ATTACHED and target == wanted

    def _moves_within_dwell(self, winner: TransportDescriptor, end: int, prompt: bool,
                            refresh: str | None = None) -> str:
        """Time passes until `end` while `winner` stays better than the active path (with
        `refresh`, both are sampled again every quarter of the dwell time). The client
        must ask for `winner` exactly at `migration_due` as it stands now (the dwell time
        from when the candidate first beat the active path, or later where an anti-flap
        bound holds it back) if that is before `end`, and not before. Returns what
        happened, for the statistics."""
        client = self.sim.client
        side = _client_side(client)
        if side.better != winner or side.pending is not None:
            self._drive(end, prompt)
            return "request already in flight"
        due = migration_due(side, client.roaming, self.sim.policy)
        sent_before = len(self.sim.sent_requests)
        loser = client.link.active
        step_ms = max(1, self.sim.policy.migration_dwell_ms // 4)
        while refresh is not None and loser is not None and self.sim.now + step_ms < end and \
                self.sim.client.link.active == loser and self.sim.client.phase is Phase.ATTACHED:
            self._drive(self.sim.now + step_ms, prompt)
            self._swap(winner, loser, refresh, samples=1)
        self._drive(end, prompt)
        asked = [m.timestamp_ms for m, _source in self.sim.sent_requests[sent_before:]
                 if m.candidate == winner and m.via == winner and not m.challenge]
        migrated = self.sim.client.link.active == winner
        if due > end:
            assert not asked, (asked, due, end)
            return "held back by an anti-flap bound"
        if not asked:
            # Leaving ATTACHED stops the request; so may the hysteresis starting over in
            # ATTACHED (an exchange of the server's own in flight at the due time, such as
            # the answer to a NAT rebinding's challenge, then a sample that retargets it).
            # The bounds themselves are asserted on every step (`controlled_migration`)
            # and by the invariants below; here the outcome is only counted.
            if self.sim.client.phase is Phase.ATTACHED:
                return "not asked: the hysteresis started over"
            return "left ATTACHED"
        assert asked[0] == due, (asked, due)
        return "migrated" if migrated else "asked, not (yet) accepted"

    @rule(pace=st.sampled_from(("faster", "slower")), percent=st.integers(20, 80),
          halves=st.integers(2, 6), how=st.sampled_from(("delay", "loss")),
          prompt=st.sampled_from((True, True, True, False)))
    @counted
    def quality_oscillates(self, pace: str, percent: int, halves: int, how: str,
                           prompt: bool) -> None:
        """Two uplinks swap places: the active path and a candidate take turns at being
        the better one (fast answers) and the worse one (slow answers, or lost probes),
        for `halves` half-periods, each shorter than `migration_dwell_ms` ("faster", 20 to
        80 % of it) or longer ("slower", 140 to 260 %). A driver ticks both sides at their
        deadlines and keeps traffic flowing on the active path; with `prompt` the network
        carries every message at once.

        The first half-period is the active path's. When nothing was in flight at the
        start and every swap is decisive (`_swap`): faster than the dwell, no proactive
        switch happens at all; slower, in each half-period that the path not in use wins,
        the client asks for it exactly when the dwell time (and the anti-flap bounds)
        allow (`_moves_within_dwell`)."""
        self.sim.traffic(100)  # a NAT rebinding seen only now would open a validation
        self._drive(self.sim.now, prompt=True)
        pair = self._two_paths()
        if pair is None:
            event("oscillation: no two paths")
            return
        policy = self.sim.policy
        dwell = policy.migration_dwell_ms
        period = max(1, dwell * percent // 100) if pace == "faster" else \
            dwell * (100 + 2 * percent) // 100 + 1
        decisive = _client_side(self.sim.client).pending is None
        switches_before = len(self.sim.proactive)
        origin = self.sim.now
        for half in range(halves):
            winner, loser = pair if half % 2 == 0 else pair[::-1]
            start = origin + half * period
            self._drive(start, prompt)
            if self.sim.client.phase is Phase.TERMINATED:
                return
            self.sim.traffic(100)
            decisive = self._swap(winner, loser, how) and decisive
            if pace == "slower" and decisive and winner != self.sim.client.link.active:
                event(f"oscillation slower: "
                      f"{self._moves_within_dwell(winner, start + period - 1, prompt)}")
        made = len(self.sim.proactive) - switches_before
        event(f"oscillation {pace}: {'decisive' if decisive else 'not decisive'}, "
              f"{'some' if made else 'no'} proactive switch")
        if pace == "faster" and decisive:
            assert made == 0, (self.sim.proactive, period, dwell)

    @rule(how=st.sampled_from(("delay", "loss")), extra=st.integers(0, 3_000),
          prompt=st.sampled_from((True, True, True, False)))
    @counted
    def a_candidate_stays_better(self, how: str, extra: int, prompt: bool) -> None:
        """A stable better path: a candidate answers fast and the active path slowly (or
        loses its probes), sampled again every quarter of the dwell time, for the dwell
        time and `extra` ms more. If the swap is decisive and nothing was in flight, the
        client asks for the candidate exactly when `migration_due` allows (the dwell
        time, or later where an anti-flap bound holds it back). Whether the exchange then
        completes (with `prompt`, in the same instant) is counted, not asserted: the
        server may refuse the new path for reasons of its own (its switch rate, the
        amplification limit)."""
        self.sim.traffic(100)  # a NAT rebinding seen only now would open a validation
        self._drive(self.sim.now, prompt=True)
        pair = self._two_paths()
        if pair is None:
            event("stays better: no two paths")
            return
        active, candidate = pair
        quiet = _client_side(self.sim.client).pending is None
        if not (self._swap(candidate, active, how) and quiet):
            event("stays better: not decisive")
            return
        end = self.sim.now + self.sim.policy.migration_dwell_ms + extra
        event(f"stays better: {self._moves_within_dwell(candidate, end, prompt, how)}")

    # --- recoveries that stall on a usable path (§9: DEGRADED) ----------------------------

    def _can_stall(self, role: Role) -> bool:
        state = self.sim.client if role is Role.CLIENT else self.sim.server
        return (state.phase in (Phase.ATTACHED, Phase.RECOVERING)
                and state.link.active is not None and not state.link.active_failed)

    @precondition(lambda self: self._can_stall(Role.CLIENT) or self._can_stall(Role.SERVER))
    @rule(role=st.sampled_from(Role), size=st.integers(1, 1_500))
    @counted
    def recovery_stalls_on_a_working_path(self, role: Role, size: int) -> None:
        """An impaired path (§9): trouble starts a recovery (the client: a loss burst; the
        server: traffic from an unproven address), traffic still flows on the active path,
        and every reattach exchange is lost until the recovery window ends, so DEGRADED
        (the server: when its path validation outlasts the window, POLICIES[2]; else it
        reverts to the path it still hears). The role drawn if it can, else the other."""
        if not self._can_stall(role):
            role = Role.SERVER if role is Role.CLIENT else Role.CLIENT
        state = self.sim.client if role is Role.CLIENT else self.sim.server
        if state.phase is Phase.ATTACHED and role is Role.CLIENT:
            self.sim.to_client(PacketLoss(self.sim.now, state.ident.policy.loss_threshold))
        elif state.phase is Phase.ATTACHED:
            self.sim.to_server(InboundTraffic(self.sim.now, ATTACKERS[-1], size))
        event(f"recovery stalls ({role.value})")
        for _ in range(8):  # bounded: each tick fires at least one deadline
            state = self.sim.client if role is Role.CLIENT else self.sim.server
            deadline = next_deadline(state)
            if state.phase is not Phase.RECOVERING or deadline is None:
                return
            self.sim.flight.clear()
            active = state.link.active
            # Traffic on the path; the server's only while a new address is being validated
            # (once no validation is pending, traffic on the old path reverts to it).
            if active is not None and role is Role.CLIENT:
                self.sim.to_client(InboundTraffic(self.sim.now, active, size))
            elif active is not None and getattr(state.side, "pending", None) is not None:
                self.sim.to_server(InboundTraffic(self.sim.now, active, size))
            state = self.sim.client if role is Role.CLIENT else self.sim.server
            deadline = next_deadline(state)
            if state.phase is not Phase.RECOVERING or deadline is None:
                return
            self.sim.now = max(self.sim.now, deadline)
            if role is Role.CLIENT:
                self.sim.to_client(Tick(self.sim.now))
            else:
                self.sim.to_server(Tick(self.sim.now))

    # --- cross-role invariants --------------------------------------------------------------

    @invariant()
    def phases_reached_are_recorded(self) -> None:
        self.reached |= self.sim.phases

    @invariant()
    def session_id_is_the_anchor(self) -> None:
        assert self.sim.client.session_id == self.sim.server.session_id == SESSION_ID

    @invariant()
    def server_binds_only_proven_addresses(self) -> None:
        active = self.sim.server.link.active
        assert active is None or active in self.sim.proven, (active, self.sim.proven)
        assert active not in ATTACKERS

    @invariant()
    def terminated_is_absorbing(self) -> None:
        for role in self.sim.terminated:
            state = self.sim.client if role is Role.CLIENT else self.sim.server
            assert state.phase is Phase.TERMINATED
            assert state.end_reason is not None

    @invariant()
    def deadlines_never_behind_the_state_clock(self) -> None:
        for state in (self.sim.client, self.sim.server):
            deadline = next_deadline(state)
            assert deadline is None or deadline > state.link.clock_ms

    @invariant()
    def client_never_knows_a_version_the_server_never_had(self) -> None:
        client_side = self.sim.client.side
        server_side = self.sim.server.side
        assert getattr(client_side, "known_version", 0) <= getattr(
            server_side, "binding_version", 0
        )
        assert getattr(client_side, "known_version", 0) <= self.sim.server.state_version

    @invariant()
    def proactive_switches_within_the_hysteresis_bound(self) -> None:
        """Over the session so far: at most ceil(T / migration_dwell_ms) proactive switches
        in any window of length T (the session's whole span, and the tightest windows,
        which start at one switch and end just after another), none closer than the dwell
        time, and no more switches of any kind than `max_switches_per_minute` in any 60 s."""
        policy = self.sim.policy
        dwell = policy.migration_dwell_ms
        times = self.sim.proactive
        span = self.sim.now - self.sim.client.ident.created_ms  # the session's own span
        assert dwell == 0 or len(times) <= math.ceil(span / dwell), (times, span, dwell)
        for i, j in itertools.combinations_with_replacement(range(len(times)), 2):
            if dwell > 0:
                window = times[j] - times[i] + 1
                assert j - i + 1 <= math.ceil(window / dwell), (times, dwell)
        for earlier, later in itertools.pairwise(times):
            assert later - earlier >= dwell, (times, dwell)
        every = self.sim.switches
        assert every == sorted(every)
        for i, j in itertools.combinations(range(len(every)), 2):
            if every[j] - every[i] < SWITCH_WINDOW_MS:
                assert j - i + 1 <= policy.max_switches_per_minute, every
        assert set(times) <= set(every)

    @invariant()
    def unmeasured_never_ranked_before_measured_good(self) -> None:
        """`quality.ranked` over the client's paths, now and at its own clock: measured good
        paths first, then unmeasured (or stale) ones, then measured bad ones."""
        client = self.sim.client
        side = _client_side(client)
        paths = self._paths()
        for now in {client.link.clock_ms, self.sim.now}:
            order = ranked(paths, side.quality, self.sim.policy, now)
            assert sorted(map(str, order)) == sorted(map(str, paths))
            classes = [_rank_class(side.quality, p, self.sim.policy, now) for p in order]
            assert classes == sorted(classes), (order, side.quality, now)

    @invariant()
    def both_states_are_well_formed(self) -> None:
        assert check_state(self.sim.client) == []
        assert check_state(self.sim.server) == []


TestCoreStateMachine = CoreMachine.TestCase

_RULES = sorted(name for name in dir(CoreMachine)
                if hasattr(getattr(CoreMachine, name), "hypothesis_stateful_rule"))


def test_every_rule_and_phase_is_exercised() -> None:
    """The CI check: every rule ran at least MIN_RULE_RUNS times, and each phase of each
    role was reached in at least MIN_PHASE_SHARE of the examples.

    Its own run, whatever the profile: 600 examples of up to 40 steps (the `ci` profile's
    500 plus a margin: with the path-quality rules each rule gets a smaller share, and the
    per-rule counts still vary by tens between processes), derandomized; the random runs
    of `TestCoreStateMachine` vary more."""
    COVERAGE.examples = 0
    COVERAGE.rules.clear()
    COVERAGE.reached.clear()
    COVERAGE.migrations = COVERAGE.migrated_examples = 0
    run_state_machine_as_test(CoreMachine, settings=settings(
        max_examples=CHECK_EXAMPLES, stateful_step_count=CHECK_STEPS, deadline=None,
        database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]))
    report_figures("stateful suite coverage", f"{COVERAGE.examples} examples, "
           f"{sum(COVERAGE.rules.values())} rule runs, fewest "
           + ", ".join(f"{name} {COVERAGE.rules[name]}"
                       for name in sorted(_RULES, key=COVERAGE.rules.__getitem__)[:3])
           + "; DEGRADED reached in "
           + ", ".join(f"{role.value} {COVERAGE.reached[role, Phase.DEGRADED]}"
                       for role in Role) + " examples; "
           + f"{COVERAGE.migrations} proactive migrations, in {COVERAGE.migrated_examples} "
           + "examples")
    assert len(_RULES) >= 25, _RULES  # the rules were found (counted reads them by name)
    problems = COVERAGE.problems(_RULES)
    assert not problems, "\n".join(problems)


def test_checked_step_raises_on_a_broken_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wrapper is not a no-op: a step that breaks an invariant makes it raise."""
    sim = Simulation.create(POLICIES[0])
    real_step = step

    def step_with_duplicate_records(state: SessionState, event: Event) -> StepResult:
        new, effects = real_step(state, event)
        return new, (*effects, *effects)

    monkeypatch.setattr(harness, "step", step_with_duplicate_records)
    with pytest.raises(InvariantBrokenError, match="version_monotonic"):
        checked_step(sim.client, DeliveryTimeout(sim.now + 1))


def test_checked_step_catches_a_path_bound_by_its_score(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`no_bind_without_proof` runs on every step of the suite: a client that makes a
    path active because a sample says it is better is stopped at that very step."""
    sim = Simulation.create(POLICIES[0])
    candidate = LOCALS[1]
    sim.to_client(CandidateDiscovered(sim.now, candidate))
    real_step = step

    def step_binding_on_score(state: SessionState, event: Event) -> StepResult:
        new, effects = real_step(state, event)
        if isinstance(event, RttSample) and event.transport == candidate:
            new = attrs.evolve(new, link=attrs.evolve(new.link, active=candidate))
        return new, effects

    monkeypatch.setattr(harness, "step", step_binding_on_score)
    with pytest.raises(InvariantBrokenError, match="no_bind_without_proof"):
        checked_step(sim.client, RttSample(sim.now + 1, candidate, 5))
