"""Stateful exploration: a client, a server, a lossy NATed network and an attacker.

Hypothesis interleaves clock jumps, loss, failures, NAT rebinding, candidate churn,
network misbehaviour (drop, duplicate, reorder, delay) and attacks (replays, forged
proofs, stale and future versions, wrong session ids, spoofed sources, floods). Every
`step()` goes through `tests.harness.checked_step`, so every invariant checker runs after
every single step; the `@invariant`s below add the properties that span both roles.

Run deeper with `HYPOTHESIS_PROFILE=deep`.
"""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from jumpvpn_core import (
    AllTransportsFailed,
    CandidateDiscovered,
    CandidateLost,
    DeliveryTimeout,
    Event,
    InboundTraffic,
    PacketLoss,
    Phase,
    Policy,
    ReattachRequest,
    Role,
    SendReattachRequest,
    SessionState,
    StepResult,
    Tick,
    TransportDescriptor,
    TransportFailed,
    check_state,
    next_deadline,
    step,
)
from jumpvpn_core.peer import Peer
from tests import harness
from tests.harness import (
    ATTACKERS,
    LOCALS,
    SESSION_ID,
    InvariantBrokenError,
    Simulation,
    checked_step,
    rejections,
)

# Small bounds so that every interesting edge is a few rules away.
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
    ),
)

#: What the attacker captured off the wire: a request and the source it came from.
Captured = tuple[SendReattachRequest, TransportDescriptor]

small_ms = st.integers(min_value=1, max_value=250)
large_ms = st.integers(min_value=250, max_value=12_000)
locals_ = st.sampled_from(LOCALS)
attackers = st.sampled_from(ATTACKERS)
anywhere = st.integers(min_value=0, max_value=1_000)


class CoreMachine(RuleBasedStateMachine):
    """One session, both ends, driven through every kind of trouble the model names."""

    captured = Bundle("captured")

    def __init__(self) -> None:
        super().__init__()
        self.sim = Simulation.create(POLICIES[0], attach=False)
        self.attacker_nonce = 1 << 40

    @initialize(policy=st.sampled_from(POLICIES), start=st.integers(0, 10_000))
    def attach(self, policy: Policy, start: int) -> None:
        self.sim = Simulation.create(policy, now=start)

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
    def clock_jumps_forward(self, ms: int) -> None:
        self.sim.advance(ms)

    @rule(extra=st.integers(0, 2_000))
    def clock_jumps_past_next_deadline(self, extra: int) -> None:
        deadlines = [d for d in (next_deadline(self.sim.client), next_deadline(self.sim.server))
                     if d is not None and d > self.sim.now]
        if deadlines:
            self.sim.now = min(deadlines) + extra

    @rule(role=st.sampled_from(Role))
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
    def event_from_the_past_is_refused_or_harmless(self, role: Role, back: int) -> None:
        state = self.sim.client if role is Role.CLIENT else self.sim.server
        when = max(0, self.sim.now - back)
        after, effects = checked_step(state, Tick(when))
        if when < state.link.clock_ms and state.phase is not Phase.TERMINATED:
            assert after is state
            assert [r.reason for r in rejections(effects)] == ["TIME_WENT_BACKWARDS"]

    # --- the client's transports ------------------------------------------------------------

    @rule(count=st.integers(1, 4))
    def packet_loss_burst(self, count: int) -> None:
        self.sim.to_client(PacketLoss(self.sim.now, count))

    @rule()
    def delivery_timeout(self) -> None:
        self.sim.to_client(DeliveryTimeout(self.sim.now))

    @rule(size=st.integers(0, 1_500), who=st.sampled_from(("both", "client", "server")))
    def traffic_on_active_path(self, size: int, who: str) -> None:
        self.sim.traffic(size, client=who != "server", server=who != "client")

    @rule(size=st.integers(0, 1_500))
    def traffic_on_a_candidate(self, size: int) -> None:
        if self.sim.client.roaming.candidates:
            local = self.sim.client.roaming.candidates[0]
            self.sim.to_client(InboundTraffic(self.sim.now, local, size))

    @rule(local=locals_)
    def nat_rebinds(self, local: TransportDescriptor) -> None:
        self.sim.rebind_nat(local)

    @rule()
    def nat_rebinds_active_path(self) -> None:
        active = self.sim.client.link.active
        if active is not None:
            self.sim.rebind_nat(active)

    @rule(local=locals_)
    def transport_fails(self, local: TransportDescriptor) -> None:
        self.sim.to_client(TransportFailed(self.sim.now, local))

    @rule()
    def active_transport_fails(self) -> None:
        active = self.sim.client.link.active
        if active is not None:
            self.sim.to_client(TransportFailed(self.sim.now, active))

    @rule()
    def total_collapse(self) -> None:
        self.sim.to_client(AllTransportsFailed(self.sim.now))

    @rule(local=locals_)
    def candidate_appears(self, local: TransportDescriptor) -> None:
        before = self.sim.client.roaming.candidates
        self.sim.to_client(CandidateDiscovered(self.sim.now, local))
        after = self.sim.client.roaming.candidates
        # §5.2: first come, first kept; discovery never evicts or reorders a kept one.
        assert after[: len(before)] == before or set(after) <= set(before)

    @rule(local=locals_)
    def candidate_vanishes(self, local: TransportDescriptor) -> None:
        self.sim.to_client(CandidateLost(self.sim.now, local))

    # --- the network ------------------------------------------------------------------------

    @precondition(lambda self: bool(self.sim.flight))
    @rule(index=anywhere)
    def deliver_message(self, index: int) -> None:
        self.sim.deliver(index % len(self.sim.flight))

    @precondition(lambda self: bool(self.sim.flight))
    @rule(index=anywhere, delay=small_ms)
    def deliver_message_late(self, index: int, delay: int) -> None:
        self.sim.advance(delay)
        self.sim.deliver(index % len(self.sim.flight))

    @precondition(lambda self: bool(self.sim.flight))
    @rule(index=anywhere)
    def drop_message(self, index: int) -> None:
        self.sim.drop(index % len(self.sim.flight))

    @precondition(lambda self: bool(self.sim.flight))
    @rule(index=anywhere)
    def duplicate_message(self, index: int) -> None:
        self.sim.duplicate(index % len(self.sim.flight))

    @precondition(lambda self: len(self.sim.flight) > 1)
    @rule(index=anywhere)
    def reorder_messages(self, index: int) -> None:
        self.sim.reorder(index % len(self.sim.flight))

    @rule()
    def network_settles(self) -> None:
        self.sim.run_until_quiet()

    @precondition(lambda self: len(self.sim.terminated) == 2)
    @rule(policy=st.sampled_from(POLICIES))
    def a_new_session_starts(self, policy: Policy) -> None:
        """Both ends are over: keep exploring with a fresh pair (clock keeps running)."""
        self.sim = Simulation.create(policy, now=self.sim.now)

    # --- the attacker -----------------------------------------------------------------------

    @rule(target=captured, index=anywhere)
    def attacker_captures_a_request(self, index: int) -> object:
        requests = [(m.message, m.source) for m in self.sim.flight
                    if isinstance(m.message, SendReattachRequest) and m.source is not None]
        if not requests:
            return multiple()
        return requests[index % len(requests)]

    @rule(captured=captured, spoof=st.none() | attackers)
    def attacker_replays_a_captured_request(self, captured: Captured,
                                            spoof: TransportDescriptor | None) -> None:
        message, source = captured
        sender = spoof if spoof is not None else source
        event = self.sim.request_event(message, sender)
        if message.nonce in self.sim.accepted_nonces:
            self._attack(event)
        else:
            # Never accepted yet: indistinguishable from a late delivery. It may bind only
            # a proven path (the invariant below), never the attacker's own address.
            self.sim.to_server(event)

    @rule(captured=captured, how=st.sampled_from(("proof", "candidate", "challenge", "nonce")),
          junk=st.binary(min_size=32, max_size=32))
    def attacker_forges_a_proof(self, captured: Captured, how: str,
                                junk: bytes) -> None:
        message, source = captured
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
            return
        version = current + delta if ahead else floor - delta
        local = self.sim.client.link.active or LOCALS[0]
        nonce = self._fresh_nonce()
        now = self.sim.now
        source = spoof if spoof is not None else self.sim.nat[local]
        peer = Peer(SESSION_ID, self.sim.control_key)
        self._attack(peer.request(now, source, nonce=nonce, state_version=version,
                                  candidate=local, size=128))

    @rule(captured=captured, other=st.binary(min_size=16, max_size=16))
    def attacker_uses_wrong_session_id(self, captured: Captured,
                                       other: bytes) -> None:
        if other == SESSION_ID:
            return
        message, source = captured
        self._attack(self.sim.request_event(message, source, session_id=other,
                                            nonce=self._fresh_nonce()))

    @rule(count=st.integers(1, 12), spoof=attackers, size=st.integers(0, 1_500),
          junk=st.binary(min_size=32, max_size=32))
    def attacker_floods(self, count: int, spoof: TransportDescriptor, size: int,
                        junk: bytes) -> None:
        server = self.sim.server
        version = getattr(server.side, "binding_version", 0)
        for _ in range(count):
            self._attack(ReattachRequest(self.sim.now, spoof, SESSION_ID, self._fresh_nonce(),
                                         version, self.sim.now, ATTACKERS[0], junk, size=size))

    @rule(spoof=attackers, size=st.integers(0, 1_500))
    def spoofed_traffic_reaches_server(self, spoof: TransportDescriptor, size: int) -> None:
        bound_before = self.sim.server.link.active
        self.sim.to_server(InboundTraffic(self.sim.now, spoof, size))
        assert self.sim.server.link.active == bound_before

    # --- cross-role invariants --------------------------------------------------------------

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
    def both_states_are_well_formed(self) -> None:
        assert check_state(self.sim.client) == []
        assert check_state(self.sim.server) == []


TestCoreStateMachine = CoreMachine.TestCase


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
