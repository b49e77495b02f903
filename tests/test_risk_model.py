"""One example test per risk-model clause, each named after what it proves.

Every step goes through `tests.harness.checked_step`, so each example also runs every
invariant checker. Times are virtual integer milliseconds.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import pytest

import jumpvpn_core._server
import jumpvpn_core.proof as proof_module
from jumpvpn_core import (
    AllTransportsFailed,
    Attach,
    BindTransport,
    CandidateDiscovered,
    CandidateLost,
    Close,
    DeliveryTimeout,
    Effect,
    Evict,
    InboundTraffic,
    OwnershipAmbiguous,
    PacketLoss,
    Phase,
    Policy,
    ReasonClass,
    ReasonCode,
    ReattachRequest,
    Rejected,
    Role,
    SendPathChallenge,
    SendReattachAccept,
    SendReattachRequest,
    SessionEnded,
    SessionState,
    StateChanged,
    StoreRecordInvalid,
    Tick,
    TransportDescriptor,
    TransportFailed,
    new_session,
    next_deadline,
)
from jumpvpn_core.machine import step
from jumpvpn_core.peer import Peer
from jumpvpn_core.replay import ReplayVerdict, check_nonce, mark_nonce
from jumpvpn_core.state import PendingReattach, ServerSide
from tests.harness import LOCALS, SECRET, SESSION_ID, Simulation, checked_step, rejections

PEER = Peer.from_secret(SECRET, SESSION_ID)
HOME = TransportDescriptor.udp("192.0.2.1", 4000)
NEW = TransportDescriptor.udp("192.0.2.50", 5000)
OTHER = TransportDescriptor.udp("192.0.2.77", 7000)
L0, L1, L2, L3, L4, L5 = LOCALS
RC = ReasonCode


# --- helpers ------------------------------------------------------------------------------


def attached(role: Role, policy: Policy, transport: TransportDescriptor = HOME,
             now: int = 0) -> SessionState:
    state, _ = checked_step(new_session(role, SESSION_ID, SECRET, now, policy),
                            Attach(now, transport))
    assert state.phase is Phase.ATTACHED
    return state


def run(state: SessionState, events: Iterable[Any]) -> tuple[SessionState, list[Effect]]:
    """Apply events in order through the checked step; return the state and all effects."""
    out: list[Effect] = []
    for event in events:
        state, effects = checked_step(state, event)
        out.extend(effects)
    return state, out


def binding_version(server: SessionState) -> int:
    assert isinstance(server.side, ServerSide)
    return server.side.binding_version


def request(server: SessionState, now: int, nonce: int, source: TransportDescriptor,
            candidate: TransportDescriptor | None = None, challenge: bytes = b"",
            version: int | None = None, proof: bytes | None = None,
            session_id: bytes = SESSION_ID, size: int = 128) -> ReattachRequest:
    """A reattach request as the real client would sign it (unless `proof` is given)."""
    candidate = candidate if candidate is not None else source
    version = binding_version(server) if version is None else version
    return PEER.request(now, source, nonce=nonce, state_version=version, candidate=candidate,
                        challenge=challenge, size=size, session_id=session_id,
                        forged_proof=proof)


def only(effects: Iterable[Effect], kind: type) -> list[Any]:
    return [e for e in effects if isinstance(e, kind)]


def reasons(effects: Iterable[Effect]) -> list[ReasonCode]:
    return [e.reason for e in effects if isinstance(e, StateChanged | Rejected)]


def challenge_for(server: SessionState, address: TransportDescriptor, now: int,
                  nonce: int) -> tuple[SessionState, bytes]:
    """Ask the server to move to `address`; return the state and the challenge it sent."""
    server, effects = checked_step(server, request(server, now, nonce, address))
    [challenge] = only(effects, SendPathChallenge)
    assert challenge.to == address
    return server, challenge.challenge


def migrate(server: SessionState, address: TransportDescriptor, now: int,
            nonce: int) -> tuple[SessionState, tuple[Effect, ...]]:
    """Full §2.3 migration attempt: request, challenge, answer from `address`."""
    server, challenge = challenge_for(server, address, now, nonce)
    return checked_step(server, request(server, now, nonce + 1, address, challenge=challenge))


# --- §2.1 packet loss spikes ----------------------------------------------------------------

LOSS = Policy(loss_threshold=3, loss_window_ms=500, max_recovery_window_ms=3_000,
              reattach_timeout_ms=400)


@pytest.mark.requirement("RM-2.1")
def test_consecutive_losses_reaching_threshold_within_window_enter_recovering() -> None:
    client = attached(Role.CLIENT, LOSS, L0)
    client, loss_effects = run(client, [PacketLoss(100), PacketLoss(200)])
    assert client.phase is Phase.ATTACHED
    assert loss_effects == []
    client, effects = checked_step(client, PacketLoss(600))  # 500 ms after the first loss
    assert client.phase is Phase.RECOVERING
    assert reasons(effects) == [RC.LOSS_THRESHOLD_EXCEEDED]
    [sent] = only(effects, SendReattachRequest)
    assert sent.via == L0  # the active path is still the first one to try


@pytest.mark.requirement("RM-2.1")
def test_losses_outside_the_window_restart_the_count() -> None:
    client = attached(Role.CLIENT, LOSS, L0)
    client, _ = run(client, [PacketLoss(100), PacketLoss(200)])
    client, _ = run(client, [PacketLoss(601), PacketLoss(700)])  # 501 ms after the first
    assert client.phase is Phase.ATTACHED
    assert client.link.loss_streak == 2
    client, effects = checked_step(client, PacketLoss(1_101))
    assert reasons(effects) == [RC.LOSS_THRESHOLD_EXCEEDED]


@pytest.mark.requirement("RM-2.1")
def test_loss_spike_with_a_candidate_reattaches_through_the_candidate() -> None:
    sim = Simulation.create(LOSS, now=0)
    sim.to_client(CandidateDiscovered(sim.now, L1))
    sim.to_client(PacketLoss(sim.now, 3))
    phase_after_loss = sim.client.phase
    assert phase_after_loss is Phase.RECOVERING
    sim.drop(0)  # the active path is dead: its request is lost
    for _ in range(LOSS.reattach_retransmits):  # re-sent unchanged first, lost again
        sim.now = next_deadline(sim.client) or 0
        effects = sim.to_client(Tick(sim.now))
        assert [s.via for s in only(effects, SendReattachRequest)] == [L0]
        sim.drop(0)
    sim.now = next_deadline(sim.client) or 0  # then the next transport: the candidate
    effects = sim.to_client(Tick(sim.now))
    assert [s.via for s in only(effects, SendReattachRequest)] == [L1]
    sim.run_until_quiet()
    assert sim.client.phase is Phase.ATTACHED
    assert sim.client.active == L1
    assert sim.server.phase is Phase.ATTACHED
    assert sim.server.active == sim.nat[L1]
    assert sim.client.session_id == sim.server.session_id == SESSION_ID


@pytest.mark.requirement("RM-2.1")
def test_loss_spike_without_candidate_terminates_at_window_end_with_no_viable_candidate(
) -> None:
    client = attached(Role.CLIENT, LOSS, L0)
    client, _ = run(client, [PacketLoss(10, 3), TransportFailed(20, L0)])
    assert client.phase is Phase.RECOVERING
    end = client.phase_since_ms + LOSS.max_recovery_window_ms
    client, effects = checked_step(client, Tick(end - 1))
    assert client.phase is Phase.RECOVERING
    assert effects == ()
    client, effects = checked_step(client, Tick(end))
    assert client.phase is Phase.TERMINATED
    assert client.end_reason is RC.NO_VIABLE_CANDIDATE
    assert only(effects, SessionEnded) == [SessionEnded(SESSION_ID, RC.NO_VIABLE_CANDIDATE)]


# --- §2.2 NAT churn ---------------------------------------------------------------------------


@pytest.mark.requirement("RM-2.2")
def test_session_id_unchanged_across_nat_churn_on_both_roles() -> None:
    sim = Simulation.create(Policy(), now=0)
    for round_ in range(4):
        sim.advance(5_000)
        observed = sim.rebind_nat(L0)
        if round_ % 2:
            sim.traffic(200)  # server notices the unexpected source (§2.2, server role)
            assert sim.server.phase is Phase.RECOVERING
        else:
            sim.to_client(DeliveryTimeout(sim.now))  # client notices (§2.2, client role)
            assert sim.client.phase is Phase.RECOVERING
        sim.run_until_quiet()
        assert sim.server.active == observed
        assert sim.client.active == L0
        assert sim.client.phase is sim.server.phase is Phase.ATTACHED
        assert sim.client.session_id == sim.server.session_id == SESSION_ID


# --- §2.3 asymmetric routing ------------------------------------------------------------------


@pytest.mark.requirement("RM-2.3")
def test_binding_moves_only_after_challenge_answered_with_valid_proof() -> None:
    server = attached(Role.SERVER, Policy())
    server, challenge = challenge_for(server, NEW, 100, 1)
    assert server.active == HOME  # a valid proof alone does not move the binding
    forged = request(server, 100, 2, NEW, challenge=challenge, proof=bytes(32))
    server, effects = checked_step(server, forged)
    assert reasons(effects) == [RC.PROOF_INVALID]
    assert server.active == HOME
    server, effects = checked_step(server, request(server, 100, 3, NEW, challenge=challenge))
    assert server.active == NEW
    assert reasons(effects) == [RC.REATTACHED]
    assert only(effects, BindTransport) == [BindTransport(SESSION_ID, NEW, HOME)]
    assert [a.to for a in only(effects, SendReattachAccept)] == [NEW]


@pytest.mark.requirement("RM-2.3")
def test_challenge_answer_from_another_source_is_an_ambiguous_path() -> None:
    server = attached(Role.SERVER, Policy())
    server, challenge = challenge_for(server, NEW, 100, 1)
    answer = request(server, 100, 2, OTHER, candidate=NEW, challenge=challenge)
    after, effects = checked_step(server, answer)
    assert after is server
    [refusal] = rejections(effects)
    assert refusal.reason is RC.AMBIGUOUS_PATH
    assert refusal.security_event


@pytest.mark.requirement("RM-2.3")
def test_second_new_address_during_validation_is_refused() -> None:
    """One validation at a time: traffic from a second address, and a signed request from
    it while a signed request's validation is open, are refused without a change."""
    server = attached(Role.SERVER, Policy())
    server, _ = checked_step(server, InboundTraffic(100, NEW, 500))
    assert server.phase is Phase.RECOVERING
    after, effects = checked_step(server, InboundTraffic(110, OTHER, 500))
    assert after is server
    assert reasons(effects) == [RC.PATH_VALIDATION_IN_PROGRESS]
    proven, _ = checked_step(server, request(server, 120, 1, NEW))
    for event in (InboundTraffic(130, OTHER, 500), request(proven, 140, 2, OTHER)):
        after, effects = checked_step(proven, event)
        assert after is proven
        assert reasons(effects) == [RC.PATH_VALIDATION_IN_PROGRESS]


@pytest.mark.requirement("RM-2.3")
def test_amplification_cap_in_exact_bytes() -> None:
    policy = Policy(amplification_factor=3, path_challenge_size_bytes=64)
    server = attached(Role.SERVER, policy)
    # 21 bytes received allow 63 bytes: less than one 64-byte challenge.
    server, effects = checked_step(server, InboundTraffic(100, NEW, 21))
    assert server.phase is Phase.RECOVERING
    assert only(effects, SendPathChallenge) == []
    assert isinstance(server.side, ServerSide)
    assert server.side.pending is not None
    assert (server.side.pending.bytes_received, server.side.pending.bytes_sent) == (21, 0)
    # One more byte: 22 x 3 = 66 >= 64, the challenge goes out, charged in full.
    server, effects = checked_step(server, InboundTraffic(101, NEW, 1))
    assert len(only(effects, SendPathChallenge)) == 1
    assert isinstance(server.side, ServerSide)
    assert server.side.pending is not None
    assert (server.side.pending.bytes_received, server.side.pending.bytes_sent) == (22, 64)
    server, effects = checked_step(server, InboundTraffic(102, NEW, 1_000))
    assert only(effects, SendPathChallenge) == []  # one challenge per validation
    # A request is charged the same way: 21 bytes cannot buy a challenge, 22 can.
    fresh = attached(Role.SERVER, policy)
    after, effects = checked_step(fresh, request(fresh, 100, 1, NEW, size=21))
    assert after is fresh
    assert reasons(effects) == [RC.AMPLIFICATION_LIMITED]
    after, effects = checked_step(fresh, request(fresh, 100, 1, NEW, size=22))
    assert len(only(effects, SendPathChallenge)) == 1


@pytest.mark.requirement("RM-2.3")
def test_unverified_source_never_replaces_the_binding() -> None:
    server = attached(Role.SERVER, Policy())
    rng = random.Random(23)
    now = 0
    for nonce in range(1, 300):
        now += rng.randrange(0, 50)
        source = TransportDescriptor.udp(f"198.18.{nonce % 7}.{nonce % 200 + 1}", 9000)
        if nonce % 3:
            event: Any = InboundTraffic(now, source, rng.randrange(0, 1_500))
        else:
            event = request(server, now, nonce, source, proof=rng.randbytes(32),
                            challenge=rng.randbytes(16) if nonce % 2 else b"")
        server, _ = checked_step(server, event)
        assert server.active == HOME
    assert server.phase is not Phase.TERMINATED or server.end_reason is not None


# --- §3 control-plane abuse -------------------------------------------------------------------


@pytest.mark.requirement("RM-3.1")
def test_flood_of_forged_replayed_and_stale_requests_is_refused_without_mutation() -> None:
    server = attached(Role.SERVER, Policy())
    server, _ = checked_step(server, request(server, 100, 1, HOME))  # one real reattach
    assert server.phase is Phase.ATTACHED
    assert binding_version(server) == 2
    rng = random.Random(31)
    kinds = ("forged", "replayed", "stale", "wrong_session", "ahead")
    for i in range(1_000):
        kind = kinds[i % len(kinds)]
        nonce = 1 if kind == "replayed" else 10 + i
        # Stale means older than the version the accepted request itself carried (1).
        version = {"stale": 0, "ahead": 3}.get(kind)
        event = request(
            server, 200 + i // 10, nonce, rng.choice((HOME, NEW, OTHER)), version=version,
            proof=rng.randbytes(32) if kind == "forged" else None,
            session_id=rng.randbytes(16) if kind == "wrong_session" else SESSION_ID,
        )
        after, effects = checked_step(server, event)
        assert after is server, kind
        assert len(effects) == 1, (kind, effects)
        assert isinstance(effects[0], Rejected), (kind, effects)
    assert server.active == HOME
    assert server.state_version == 2


@pytest.mark.requirement("RM-3.1")
def test_cheap_checks_run_before_the_hmac(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = proof_module.verify_proof

    def counting(*args: Any, **kwargs: Any) -> bool:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(jumpvpn_core._server, "verify_proof", counting)
    policy = Policy(reattach_rate_limit=2, reattach_rate_window_ms=1_000)
    server = attached(Role.SERVER, policy)
    server, _ = run(server, [request(server, 100, 1, HOME)])
    server, _ = run(server, [request(server, 100, 2, HOME)])
    assert len(calls) == 2
    assert binding_version(server) == 3
    calls.clear()
    cheap = {
        RC.RATE_LIMITED: request(server, 900, 52, HOME),  # two verified within 1,000 ms
        RC.REPLAY_DETECTED: request(server, 1_200, 2, HOME),
        RC.STALE_STATE_VERSION: request(server, 1_200, 50, HOME, version=1),
        RC.SESSION_MISMATCH: request(server, 1_200, 51, HOME, session_id=bytes(16)),
    }
    for reason, event in cheap.items():
        after, effects = checked_step(server, event)
        assert after is server
        assert reasons(effects) == [reason]
    assert calls == []
    # Control: once the window has passed, the same kind of request does reach the HMAC.
    _, effects = checked_step(server, request(server, 1_200, 53, HOME))
    assert reasons(effects) == [RC.REATTACHED]
    assert calls == [1]


@pytest.mark.requirement("RM-3.2")
@pytest.mark.parametrize(("nonce", "reason"), [(100, RC.REPLAY_DETECTED),
                                               (100 - 64, RC.NONCE_TOO_OLD)])
def test_replayed_or_too_old_nonce_is_a_security_event_without_state_change(
        nonce: int, reason: ReasonCode) -> None:
    server = attached(Role.SERVER, Policy(replay_window_bits=64))
    server, _ = checked_step(server, request(server, 100, 100, HOME))
    after, effects = checked_step(server, request(server, 150, nonce, HOME))
    assert after is server
    [refusal] = effects
    assert isinstance(refusal, Rejected)
    assert refusal.reason is reason
    assert refusal.reason_class is ReasonClass.SECURITY_EVENT
    assert refusal.security_event
    assert refusal.to_record()["class"] == "SECURITY_EVENT"


@pytest.mark.requirement("RM-3.3")
@pytest.mark.parametrize(("delta", "reason"), [(-1, RC.STALE_STATE_VERSION),
                                               (+1, RC.VERSION_AHEAD)])
def test_stale_and_ahead_versions_are_refused_without_mutation(delta: int,
                                                               reason: ReasonCode) -> None:
    server = attached(Role.SERVER, Policy())
    server, _ = checked_step(server, request(server, 100, 1, HOME))
    assert binding_version(server) == 2
    # Behind the binding is fine for a client that missed the accept (it still speaks the
    # version its accepted request carried, 1); older than that is a rollback.
    version = binding_version(server) + 1 if delta > 0 else 1 + delta
    after, effects = checked_step(server, request(server, 200, 2, HOME, version=version))
    assert after is server
    assert reasons(effects) == [reason]
    assert rejections(effects)[0].security_event


@pytest.mark.requirement("RM-3.3")
def test_client_refuses_an_accept_that_does_not_advance_the_version() -> None:
    client = attached(Role.CLIENT, Policy(), L0)
    client, effects = checked_step(client, DeliveryTimeout(100))
    [sent] = only(effects, SendReattachRequest)
    stale = client.side.known_version  # type: ignore[union-attr]  # client side
    after, effects = checked_step(client, PEER.accept(150, L0, nonce=sent.nonce,
                                                      state_version=stale, bound=HOME,
                                                      timestamp_ms=100))
    assert after is client
    assert reasons(effects) == [RC.STALE_STATE_VERSION]


# --- §5 resource exhaustion -------------------------------------------------------------------


@pytest.mark.requirement("RM-5.1")
def test_replay_bitmap_stays_within_the_window_after_100000_nonces() -> None:
    """100,000 nonces through the window functions `step()` uses, 3,000 through `step()`."""
    policy = Policy(replay_window_bits=128, reattach_rate_limit=1, reattach_rate_window_ms=1)
    size = policy.replay_window_bits
    rng = random.Random(51)
    jumps = (1, 1, 1, 2, 7, 127, 128, 129, 5_000)
    top, bits, nonce = 0, 0, 0
    for i in range(100_000):
        nonce += rng.choice(jumps) if i % 97 else 1 << 20
        late = nonce - rng.randrange(0, size + 2)  # out-of-order arrivals too
        for candidate in (nonce, late):
            if check_nonce(top, bits, size, candidate) is ReplayVerdict.FRESH:
                top, bits = mark_nonce(top, bits, size, candidate)
        assert bits.bit_length() <= size
    assert top == nonce

    server = attached(Role.SERVER, policy)
    nonce = 0
    for now in range(1, 3_001):
        nonce += rng.choice(jumps) if now % 97 else 1 << 20
        server, _ = step(server, request(server, now, nonce, HOME))
        assert isinstance(server.side, ServerSide)
        assert server.side.replay_bits.bit_length() <= size
    assert isinstance(server.side, ServerSide)
    assert server.side.replay_top == nonce


@pytest.mark.requirement("RM-5.2")
def test_candidate_set_is_bounded_and_keeps_first_come_order() -> None:
    def play() -> tuple[SessionState, list[ReasonCode]]:
        client = attached(Role.CLIENT, Policy(max_candidates=3), L0)
        events: list[Any] = [CandidateDiscovered(10 + i, c) for i, c in
                             enumerate((L1, L2, L3, L4, L5))]
        events += [CandidateLost(20, L2), CandidateDiscovered(21, L5),
                   CandidateDiscovered(22, L4)]
        client, effects = run(client, events)
        return client, [r.reason for r in rejections(effects)]

    client, refused = play()
    assert client.roaming.candidates == (L1, L3, L5)
    assert refused == [RC.CANDIDATE_LIMIT_REACHED] * 3
    assert play() == (client, refused)  # deterministic: the same inputs, the same state


# --- §7 catastrophic collapse, §9 escalation ladder ------------------------------------------

LADDER = Policy(max_recovery_window_ms=2_000, reattach_timeout_ms=500, max_recovery_rounds=2,
                max_degraded_ms=4_000)


@pytest.mark.requirement("RM-7")
def test_total_collapse_recovers_then_terminates_at_window_end() -> None:
    client = attached(Role.CLIENT, LADDER, L0)
    client, _ = run(client, [CandidateDiscovered(5, L1)])
    client, effects = checked_step(client, AllTransportsFailed(100))
    assert reasons(effects) == [RC.TRANSPORT_COLLAPSE]
    assert client.phase is Phase.RECOVERING
    assert client.roaming.candidates == ()
    assert only(effects, SendReattachRequest) == []  # nothing left to try on
    client, effects = checked_step(client, Tick(100 + LADDER.max_recovery_window_ms))
    assert client.phase is Phase.TERMINATED
    assert reasons(effects) == [RC.NO_VIABLE_CANDIDATE]


@pytest.mark.requirement("RM-7")
@pytest.mark.requirement("RM-9")
def test_degraded_recovering_loop_is_bounded_by_max_recovery_rounds() -> None:
    client = attached(Role.CLIENT, LADDER, L0)
    now = 0
    seen: list[ReasonCode] = []
    for candidate in (L1, L2, L3, L4):
        if client.phase is Phase.ATTACHED:
            client, effects = checked_step(client, DeliveryTimeout(now))
        else:
            client, effects = checked_step(client, CandidateDiscovered(now, candidate))
        seen += reasons(effects)
        if client.phase is Phase.TERMINATED:
            break
        client, _ = checked_step(client, InboundTraffic(now + 1, L0, 100))  # partial viability
        now = client.phase_since_ms + LADDER.max_recovery_window_ms
        client, effects = checked_step(client, Tick(now))
        seen += reasons(effects)
        assert client.phase is Phase.DEGRADED
        assert client.roaming.recovery_rounds <= LADDER.max_recovery_rounds
    assert seen == [RC.DELIVERY_TIMEOUT, RC.RECOVERY_PARTIAL, RC.CANDIDATE_AVAILABLE,
                    RC.RECOVERY_PARTIAL, RC.RECOVERY_ROUNDS_EXCEEDED]
    assert client.phase is Phase.TERMINATED


@pytest.mark.requirement("RM-9")
def test_partial_viability_degrades_then_terminates_after_max_degraded() -> None:
    client = attached(Role.CLIENT, LADDER, L0)
    client, _ = run(client, [DeliveryTimeout(100), InboundTraffic(200, L0, 100)])
    client, effects = checked_step(client, Tick(100 + LADDER.max_recovery_window_ms))
    assert reasons(effects) == [RC.RECOVERY_PARTIAL]
    assert client.phase is Phase.DEGRADED
    since = client.phase_since_ms
    client, effects = checked_step(client, Tick(since + LADDER.max_degraded_ms - 1))
    assert client.phase is Phase.DEGRADED
    client, effects = checked_step(client, Tick(since + LADDER.max_degraded_ms))
    assert reasons(effects) == [RC.DEGRADED_TIMEOUT]
    assert client.phase is Phase.TERMINATED


@pytest.mark.requirement("RM-9")
def test_recovery_without_partial_viability_never_degrades() -> None:
    client = attached(Role.CLIENT, LADDER, L0)
    client, _ = checked_step(client, DeliveryTimeout(100))
    client, effects = checked_step(client, Tick(100 + LADDER.max_recovery_window_ms))
    assert reasons(effects) == [RC.RECOVERY_WINDOW_EXCEEDED]


# --- §8 safety priority -----------------------------------------------------------------------


def _server_recovering() -> SessionState:
    server = attached(Role.SERVER, Policy())
    server, _ = checked_step(server, InboundTraffic(100, NEW, 500))
    assert server.phase is Phase.RECOVERING
    return server


@pytest.mark.requirement("RM-8")
def test_fail_closed_triggers_never_reach_attached() -> None:
    base = _server_recovering()
    assert isinstance(base.side, ServerSide)
    assert base.side.pending is not None
    challenge = base.side.pending.challenge
    answered, _ = checked_step(base, request(base, 150, 7, NEW, challenge=challenge))
    triggers: dict[str, tuple[SessionState, Any]] = {
        "ownership ambiguous": (base, OwnershipAmbiguous(150)),
        "proof invalid": (base, request(base, 150, 1, NEW, challenge=challenge,
                                        proof=bytes(32))),
        "version inconsistent": (base, request(base, 150, 2, NEW, challenge=challenge,
                                               version=0)),
        "TTL expired": (base, request(base, Policy().transport_lost_ttl_ms, 3, NEW,
                                      challenge=challenge)),
        "replay": (answered, request(answered, 160, 7, NEW)),
    }
    for name, (state, event) in triggers.items():
        after, effects = checked_step(state, event)
        entered = [c for c in only(effects, StateChanged) if c.to_phase is Phase.ATTACHED]
        if state is base:
            assert after.phase is not Phase.ATTACHED, name
        assert entered == [], name


@pytest.mark.requirement("RM-8")
@pytest.mark.parametrize(("reason", "setup"), [
    (RC.SESSION_LIFETIME_EXCEEDED, "lifetime"),
    (RC.TRANSPORT_LOST_TTL_EXPIRED, "ttl"),
    (RC.BIRTH_TIMEOUT, "birth"),
    (RC.OWNERSHIP_AMBIGUOUS, "ownership"),
])
def test_expiry_terminates_with_its_own_reason(reason: ReasonCode, setup: str) -> None:
    policy = Policy(session_max_lifetime_ms=50_000, transport_lost_ttl_ms=20_000,
                    birth_timeout_ms=3_000)
    state = new_session(Role.CLIENT, SESSION_ID, SECRET, 0, policy)
    if setup == "birth":
        event: Any = Tick(3_000)
    else:
        state = attached(Role.CLIENT, policy, L0)
        if setup == "lifetime":
            for now in range(10_000, 50_000, 10_000):  # traffic keeps the TTL away
                state, _ = checked_step(state, InboundTraffic(now, L0, 10))
            event = Tick(50_000)
        elif setup == "ttl":
            event = Tick(20_000)
        else:
            event = OwnershipAmbiguous(10)
    after, effects = checked_step(state, event)
    assert after.phase is Phase.TERMINATED
    assert after.end_reason is reason
    assert only(effects, SessionEnded) == [SessionEnded(SESSION_ID, reason)]


# --- anti-flap --------------------------------------------------------------------------------


@pytest.mark.requirement("RM-10")
def test_server_switch_cooldown_and_per_minute_bound() -> None:
    policy = Policy(switch_cooldown_ms=2_000, max_switches_per_minute=2)
    server = attached(Role.SERVER, policy)
    server, _ = migrate(server, NEW, 100, 1)
    assert server.active == NEW
    after, effects = migrate(server, OTHER, 1_000, 10)  # inside the cooldown
    assert after.active == NEW
    assert reasons(effects)[-1] is RC.SWITCH_COOLDOWN
    server, _ = migrate(server, OTHER, 2_100, 20)
    assert server.active == OTHER
    after, effects = migrate(server, HOME, 4_200, 30)  # 3rd switch within 60 s
    assert after.active == OTHER
    assert reasons(effects)[-1] is RC.SWITCH_RATE_EXCEEDED
    server, _ = migrate(server, HOME, 60_100, 40)  # the first switch left the window
    assert server.active == HOME


def _client_switch(client: SessionState, now: int, to: TransportDescriptor,
                   version: int) -> tuple[SessionState, tuple[Effect, ...]]:
    """Drive the client from ATTACHED through a reattach answered on candidate `to`."""
    now = max(now, client.link.clock_ms)
    client, _ = checked_step(client, CandidateDiscovered(now, to))
    client, _ = checked_step(client, DeliveryTimeout(now))
    while True:  # round robin until the request goes out on `to` (bounded by candidates)
        pending = client.side.pending
        assert isinstance(pending, PendingReattach)
        if pending.via == to:
            break
        client, _ = checked_step(client, Tick(pending.deadline_ms))
    return checked_step(client, PEER.accept(client.link.clock_ms, to, nonce=pending.nonce,
                                            state_version=version, bound=HOME))


@pytest.mark.requirement("RM-10")
def test_client_switch_cooldown_and_per_minute_bound() -> None:
    cool = Policy(switch_cooldown_ms=5_000, reattach_timeout_ms=400)
    client = attached(Role.CLIENT, cool, L0)
    client, effects = _client_switch(client, 100, L1, 2)
    assert client.active == L1
    assert reasons(effects) == [RC.REATTACHED]
    after, effects = _client_switch(client, 200, L2, 3)
    assert after.active != L2
    assert reasons(effects)[-1] is RC.SWITCH_COOLDOWN

    rate = Policy(switch_cooldown_ms=0, max_switches_per_minute=1, reattach_timeout_ms=400,
                  transport_lost_ttl_ms=600_000)
    client = attached(Role.CLIENT, rate, L0)
    client, _ = _client_switch(client, 100, L1, 2)
    after, effects = _client_switch(client, 10_000, L2, 3)
    assert after.active != L2
    assert reasons(effects)[-1] is RC.SWITCH_RATE_EXCEEDED
    after, effects = _client_switch(client, 70_000, L2, 3)
    assert after.active == L2


# --- TERMINATED, versions ---------------------------------------------------------------------


@pytest.mark.requirement("RM-8")
def test_terminated_is_absorbing_for_every_event() -> None:
    client = attached(Role.CLIENT, Policy(), L0)
    client, _ = checked_step(client, Close(10))
    assert next_deadline(client) is None
    later = 10**9
    for event in (Tick(later), Attach(later, L0), InboundTraffic(later, L0, 1),
                  PacketLoss(later, 100), DeliveryTimeout(later), AllTransportsFailed(later),
                  CandidateDiscovered(later, L1), Evict(later), StoreRecordInvalid(later),
                  OwnershipAmbiguous(later), Close(later)):
        after, effects = checked_step(client, event)
        assert after is client
        assert reasons(effects) == [RC.SESSION_TERMINATED]


@pytest.mark.requirement("RM-3.3")
@pytest.mark.requirement("RM-10")
def test_version_grows_by_one_per_transition_and_never_otherwise() -> None:
    sim = Simulation.create(LADDER, now=0)
    rng = random.Random(7)
    for _ in range(400):
        before = (sim.client, sim.server)
        choice = rng.randrange(8)
        sim.advance(rng.randrange(0, 700))
        if choice == 0:
            effects = sim.to_client(PacketLoss(sim.now, rng.randrange(1, 6)))
        elif choice == 1:
            sim.traffic(rng.randrange(0, 300))
            effects = ()
        elif choice == 2:
            sim.rebind_nat(L0)
            effects = ()
        elif choice == 3 and sim.flight:
            effects = sim.deliver(0)
        elif choice == 4:
            effects = sim.to_client(CandidateDiscovered(sim.now, rng.choice(LOCALS)))
        else:
            effects = sim.to_server(Tick(sim.now))
        for old, new in zip(before, (sim.client, sim.server), strict=True):
            assert new.state_version >= old.state_version
        changes = only(effects, StateChanged)
        assert [c.state_version for c in changes] == sorted(c.state_version for c in changes)
        if sim.client.phase is sim.server.phase is Phase.TERMINATED:
            sim = Simulation.create(LADDER, now=sim.now)
