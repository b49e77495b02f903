"""`transitions` as an independent oracle: every transition the core takes is allowed by a
Machine built only from specs/transition-table.md (not from the code's table)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from transitions import MachineError

from jumpvpn_core import (
    AllTransportsFailed,
    Attach,
    CandidateDiscovered,
    CandidateLost,
    Close,
    DeliveryTimeout,
    Effect,
    InboundTraffic,
    PacketLoss,
    Phase,
    Policy,
    ReattachAccepted,
    ReattachRequest,
    Role,
    SendPathChallenge,
    SendReattachAccept,
    SendReattachRequest,
    SessionState,
    StateChanged,
    Tick,
    TransportDescriptor,
    TransportFailed,
    new_session,
    next_deadline,
    step,
)
from jumpvpn_core.peer import challenge_received
from jumpvpn_core.state import ClientSide
from tools.spec_tables import build_oracle_machine, transition_rows

SPEC = Path(__file__).resolve().parent.parent / "specs" / "transition-table.md"
SID = bytes(range(16))
SECRET = bytes(range(100, 132))
PATHS = [TransportDescriptor.udp(f"10.0.0.{i}", 4000 + i) for i in range(1, 5)]
POLICY = Policy(loss_threshold=3, max_recovery_window_ms=3_000, reattach_timeout_ms=500,
                max_degraded_ms=4_000, transport_lost_ttl_ms=20_000, max_candidates=2,
                switch_cooldown_ms=100, path_validation_timeout_ms=400)


class OracleRecorder:
    """Feeds every StateChanged record through the spec-built Machine."""

    def __init__(self) -> None:
        self.machine = build_oracle_machine(transition_rows(SPEC))
        self.checked: set[tuple[str, str, str]] = set()

    def check(self, effects: tuple[Effect, ...]) -> None:
        for effect in effects:
            if type(effect) is not StateChanged:
                continue
            try:
                landed = self.machine.fire(effect.from_phase.value, effect.reason.value)
            except MachineError as exc:
                pytest.fail(f"spec Machine refuses {effect.from_phase} -{effect.reason}->: {exc}")
            assert landed == effect.to_phase.value, effect
            self.checked.add((effect.from_phase.value, effect.reason.value,
                              effect.to_phase.value))


def _random_run(rng: random.Random, oracle: OracleRecorder, steps: int) -> None:
    now = 0
    client = new_session(Role.CLIENT, SID, SECRET, now, POLICY)
    server = new_session(Role.SERVER, SID, SECRET, now, POLICY)
    to_server: list[SendReattachRequest] = []
    to_client: list[SendPathChallenge | SendReattachAccept] = []
    nat = PATHS[0]  # the client's address as the server sees it

    def feed(role: Role, event: Any) -> None:
        nonlocal client, server
        state: SessionState = client if role is Role.CLIENT else server
        new, effects = step(state, event)
        oracle.check(effects)
        for effect in effects:
            if isinstance(effect, SendReattachRequest):
                to_server.append(effect)
            elif isinstance(effect, SendPathChallenge | SendReattachAccept):
                to_client.append(effect)
        if role is Role.CLIENT:
            client = new
        else:
            server = new

    feed(Role.CLIENT, Attach(now, PATHS[0]))
    feed(Role.SERVER, Attach(now, nat))
    for _ in range(steps):
        now += rng.choice((0, 1, 10, 100, 450, 1_000, 3_100, 4_100))
        action = rng.randrange(14)
        if action == 0:
            feed(Role.CLIENT, PacketLoss(now, rng.randint(1, 3)))
        elif action == 1:
            feed(Role.CLIENT, DeliveryTimeout(now))
        elif action == 2 and client.link.active is not None:
            feed(Role.CLIENT, InboundTraffic(now, client.link.active, 100))
            feed(Role.SERVER, InboundTraffic(now, nat, 100))
        elif action == 3:
            feed(Role.CLIENT, CandidateDiscovered(now, rng.choice(PATHS)))
        elif action == 4:
            feed(Role.CLIENT, CandidateLost(now, rng.choice(PATHS)))
        elif action == 5:
            feed(Role.CLIENT, TransportFailed(now, rng.choice(PATHS)))
        elif action == 6 and rng.random() < 0.2:
            feed(Role.CLIENT, AllTransportsFailed(now))
        elif action == 7:
            nat = rng.choice(PATHS)  # NAT rebinding: the server now sees another address
            feed(Role.SERVER, InboundTraffic(now, nat, 80))
        elif action in (8, 9) and to_server:
            req = to_server.pop(0)
            nat = req.via if rng.random() < 0.7 else nat
            feed(Role.SERVER, ReattachRequest(now, nat, req.session_id, req.nonce,
                                              req.state_version, req.timestamp_ms,
                                              req.candidate, req.proof, req.challenge, 200))
        elif action in (10, 11) and to_client:
            msg = to_client.pop(0)
            via = client.link.active or PATHS[0]
            if isinstance(msg, SendPathChallenge):
                feed(Role.CLIENT, challenge_received(msg, now, via))
            else:
                side = client.side
                if isinstance(side, ClientSide) and side.pending is not None:
                    via = side.pending.via
                feed(Role.CLIENT, ReattachAccepted(now, via, msg.session_id, msg.nonce,
                                                   msg.state_version, msg.timestamp_ms,
                                                   msg.to, msg.proof))
        elif action == 12:
            for role, state in ((Role.CLIENT, client), (Role.SERVER, server)):
                deadline = next_deadline(state)
                if deadline is not None:
                    now = max(now, deadline)
                    feed(role, Tick(now))
        elif action == 13 and rng.random() < 0.05:
            feed(rng.choice((Role.CLIENT, Role.SERVER)), Close(now))
        if client.phase is Phase.TERMINATED and server.phase is Phase.TERMINATED:
            break


@pytest.mark.requirement("RM-10")
def test_every_transition_the_core_takes_is_allowed_by_the_spec_machine() -> None:
    oracle = OracleRecorder()
    for seed in range(300):
        _random_run(random.Random(seed), oracle, steps=80)
    # The oracle must actually have been exercised across the table, not on two rows.
    phases_left = {src for src, _reason, _dst in oracle.checked}
    assert phases_left >= {"BIRTH", "ATTACHED", "RECOVERING", "DEGRADED"}
    assert len(oracle.checked) >= 15, sorted(oracle.checked)


def test_the_spec_machine_refuses_a_transition_the_table_lacks() -> None:
    oracle = OracleRecorder()
    with pytest.raises(MachineError):
        oracle.machine.fire("TERMINATED", "REATTACHED")
    with pytest.raises(MachineError):
        oracle.machine.fire("BIRTH", "REATTACHED")
    assert oracle.machine.fire("ATTACHED", "LOSS_THRESHOLD_EXCEEDED") == "RECOVERING"

