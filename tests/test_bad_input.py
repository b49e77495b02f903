"""Bad input: each kind is either a typed error at construction or an explicit `Rejected`.

Programming errors (wrong types, negative time, non-events) raise typed errors before
`step()` is reached; what a network or an attacker can cause comes back as exactly one
`Rejected` with the same state object. Codec and secrets hygiene are checked here too.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jumpvpn_core import (
    AllTransportsFailed,
    Attach,
    CandidateDiscovered,
    DeliveryTimeout,
    InboundTraffic,
    InvalidEventError,
    InvalidTransportError,
    PacketLoss,
    Phase,
    Policy,
    PolicyError,
    ReasonCode,
    Role,
    SessionState,
    StateDecodeError,
    Tick,
    TransportDescriptor,
    TransportFailed,
    new_session,
    state_from_data,
    state_to_data,
    step,
)
from jumpvpn_core.errors import JumpVpnError
from tests.harness import LOCALS, SECRET, SESSION_ID, Simulation, checked_step, rejections

HOME = LOCALS[0]
RC = ReasonCode


def attached(role: Role) -> SessionState:
    state, _ = checked_step(new_session(role, SESSION_ID, SECRET, 1_000, Policy()),
                            Attach(1_000, HOME))
    return state


# --- events: construction errors vs explicit rejections -------------------------------------


@pytest.mark.parametrize("bad", [-1, 1.5, "10", None, True, 1 << 64])
def test_bad_time_is_an_invalid_event_error_at_construction(bad: Any) -> None:
    with pytest.raises(InvalidEventError, match="now_ms"):
        Tick(bad)
    with pytest.raises(InvalidEventError):
        InboundTraffic(bad, HOME, 1)


@pytest.mark.parametrize("build", [
    lambda: InboundTraffic(1, "udp:10.0.0.1:4000", 1),  # type: ignore[arg-type]  # on purpose
    lambda: InboundTraffic(1, HOME, -1),
    lambda: PacketLoss(1, 0),
    lambda: TransportFailed(1, None),  # type: ignore[arg-type]  # on purpose
])
def test_wrong_field_types_are_invalid_event_errors(build: Any) -> None:
    with pytest.raises(InvalidEventError):
        build()


@pytest.mark.requirement("RM-10")
def test_time_going_backwards_is_an_explicit_rejection_with_the_same_state() -> None:
    state, _ = checked_step(attached(Role.CLIENT), InboundTraffic(5_000, HOME, 10))
    after, effects = checked_step(state, Tick(4_999))
    assert after is state
    assert [r.reason for r in rejections(effects)] == [RC.TIME_WENT_BACKWARDS]
    assert len(effects) == 1


@pytest.mark.requirement("RM-3.1")
def test_wrong_session_id_on_an_accept_is_refused() -> None:
    from jumpvpn_core import ReattachAccepted

    client, _ = checked_step(attached(Role.CLIENT), DeliveryTimeout(2_000))
    event = ReattachAccepted(2_100, HOME, bytes(16), 1, 2, 2_100, HOME, bytes(32))
    after, effects = checked_step(client, event)
    assert after is client
    assert [r.reason for r in rejections(effects)] == [RC.SESSION_MISMATCH]


@pytest.mark.parametrize("event", [PacketLoss(2_000), DeliveryTimeout(2_000),
                                   AllTransportsFailed(2_000),
                                   CandidateDiscovered(2_000, LOCALS[1])])
def test_client_events_sent_to_a_server_are_not_applicable(event: Any) -> None:
    server = attached(Role.SERVER)
    after, effects = checked_step(server, event)
    assert after is server
    assert [r.reason for r in rejections(effects)] == [RC.EVENT_NOT_APPLICABLE]


def test_reattach_request_sent_to_a_client_is_not_applicable() -> None:
    from jumpvpn_core import ReattachRequest

    client = attached(Role.CLIENT)
    event = ReattachRequest(2_000, HOME, SESSION_ID, 1, 1, 2_000, HOME, bytes(32))
    after, effects = checked_step(client, event)
    assert after is client
    assert [r.reason for r in rejections(effects)] == [RC.EVENT_NOT_APPLICABLE]


@pytest.mark.parametrize("event", [Attach(2_000, HOME), PacketLoss(2_000),
                                   InboundTraffic(2_000, HOME, 1)])
def test_events_that_make_no_sense_in_the_phase_are_refused(event: Any) -> None:
    # Attach after ATTACHED, and traffic or loss before the handshake finished.
    state = attached(Role.CLIENT) if type(event) is Attach else new_session(
        Role.CLIENT, SESSION_ID, SECRET, 1_000, Policy())
    after, effects = checked_step(state, event)
    assert after is state
    assert [r.reason for r in rejections(effects)] == [RC.EVENT_NOT_APPLICABLE]


@pytest.mark.parametrize("thing", [None, "Tick", 42, object(), {"now_ms": 1}])
def test_non_event_objects_raise_invalid_event_error(thing: Any) -> None:
    with pytest.raises(InvalidEventError):
        step(attached(Role.CLIENT), thing)


@pytest.mark.parametrize("thing", [None, {}, "state", 42])
def test_non_state_objects_raise_invalid_event_error(thing: Any) -> None:
    with pytest.raises(InvalidEventError):
        step(thing, Tick(1))


def test_policy_with_several_bad_values_lists_every_one() -> None:
    with pytest.raises(PolicyError) as caught:
        Policy(loss_threshold=0, replay_window_bits=10, max_candidates="4",  # type: ignore[arg-type]  # on purpose
               switch_cooldown_ms=-5)
    problems = caught.value.problems
    assert len(problems) == 4
    for name in ("loss_threshold", "replay_window_bits", "max_candidates",
                 "switch_cooldown_ms"):
        assert any(p.startswith(name) for p in problems), name


# --- transport descriptors ------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "udp", "udp:10.0.0.1", "udp:10.0.0.1:0",
                                  "udp:10.0.0.1:65536", "sctp:10.0.0.1:1", "udp::4000",
                                  "udp:bad host:1", "udp:10.0.0.1:-1", "udp:10.0.0.1:1e3",
                                  "udp:" + "a" * 300 + ":1", "udp:h\u00e9:1",
                                  "udp:10.0.0.1:\u00b2", "udp:10.0.0.1:\u0661\u0662"])
def test_malformed_transport_text_is_an_invalid_transport_error(text: str) -> None:
    with pytest.raises(InvalidTransportError):
        TransportDescriptor.parse(text)


@given(st.text(max_size=80)
       | st.from_regex(r"(udp|tcp|quic):[^:]{0,20}:[0-9]{0,7}", fullmatch=True)
       | st.from_regex(r"(udp|tcp|quic):10\.0\.0\.1:\d{1,6}", fullmatch=True))
def test_transport_parse_only_ever_raises_invalid_transport_error(text: str) -> None:
    try:
        parsed = TransportDescriptor.parse(text)
    except InvalidTransportError:
        return
    assert TransportDescriptor.parse(str(parsed)) == parsed


# --- codec ------------------------------------------------------------------------------------

OPS = st.lists(st.tuples(st.integers(0, 9), st.integers(0, 3_000)), max_size=14)


def _reachable_states(ops: list[tuple[int, int]]) -> list[SessionState]:
    """Drive a client/server pair with `ops`; return every state they passed through."""
    sim = Simulation.create(Policy(max_recovery_window_ms=3_000, reattach_timeout_ms=500),
                            now=0)
    seen = [sim.client, sim.server]
    for op, arg in ops:
        sim.advance(arg)
        local = LOCALS[arg % len(LOCALS)]
        if op == 0:
            sim.to_client(PacketLoss(sim.now, 5))
        elif op == 1:
            sim.traffic(arg % 400)
        elif op == 2:
            sim.rebind_nat(LOCALS[0])
        elif op == 3 and sim.flight:
            sim.deliver(arg % len(sim.flight))
        elif op == 4:
            sim.to_client(CandidateDiscovered(sim.now, local))
        elif op == 5:
            sim.to_client(TransportFailed(sim.now, local))
        elif op == 6:
            sim.to_client(DeliveryTimeout(sim.now))
        elif op == 7:
            sim.to_server(InboundTraffic(sim.now, TransportDescriptor.udp("203.0.113.5", 9),
                                         arg % 200))
        else:
            sim.tick_both()
        seen += [sim.client, sim.server]
    return seen


@given(OPS)
def test_every_reachable_state_round_trips_through_json(ops: list[tuple[int, int]]) -> None:
    for state in _reachable_states(ops):
        with_key = json.loads(json.dumps(state_to_data(state, include_secrets=True)))
        assert state_from_data(with_key) == state
        without = json.loads(json.dumps(state_to_data(state)))
        assert "control_key" not in without
        assert state_from_data(without, control_key=state.ident.control_key) == state
        with pytest.raises(StateDecodeError):
            state_from_data(without)


def _mutations() -> st.SearchStrategy[tuple[list[str], Any]]:
    junk = st.none() | st.booleans() | st.integers(-5, 1 << 70) | st.text(max_size=8) | \
        st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=3),
                                                              st.integers(), max_size=2)
    return st.tuples(st.lists(st.text(min_size=1, max_size=16), min_size=1, max_size=3), junk)


_SAMPLES = [state_to_data(s, include_secrets=True) for s in _reachable_states(
    [(6, 10), (3, 10), (4, 10), (7, 10), (1, 50)])]


@given(st.sampled_from(_SAMPLES), st.lists(_mutations(), min_size=1, max_size=4),
       st.booleans())
def test_malformed_codec_input_only_raises_state_decode_error(
        sample: dict[str, Any], mutations: list[tuple[list[str], Any]], delete: bool) -> None:
    data = json.loads(json.dumps(sample))
    for path, value in mutations:
        node: Any = data
        for key in path[:-1]:
            if isinstance(node, dict) and node:
                node = node.get(key, node[sorted(node)[len(key) % len(node)]])
        if isinstance(node, dict):
            keys = sorted(node)
            target = path[-1] if not keys else keys[len(path[-1]) % len(keys)]
            if delete:
                node.pop(target, None)
            else:
                node[target] = value
    try:
        decoded = state_from_data(data)
    except StateDecodeError:
        return
    assert isinstance(decoded, SessionState)


# --- secrets ----------------------------------------------------------------------------------


def _secret_forms(state: SessionState) -> list[str]:
    key = state.ident.control_key
    return [key.hex(), repr(key), SECRET.hex(), repr(SECRET), SECRET.decode()]


@pytest.mark.requirement("RM-10")
def test_secrets_never_appear_in_repr_of_states_effects_or_errors() -> None:
    sim = Simulation.create(Policy(), now=0)
    texts: list[str] = []
    sim.to_client(DeliveryTimeout(10))
    sim.rebind_nat(LOCALS[0])
    sim.to_client(Tick(11))
    for _ in range(6):
        if sim.flight:
            effects = sim.deliver(0)
            texts += [repr(effects), str(effects)]
    sim.traffic(300)
    texts += [repr(sim.client), str(sim.client), repr(sim.server), str(sim.server),
              repr(state_to_data(sim.server))]
    errors: list[JumpVpnError] = []
    for bad in ({"format": 1}, {**state_to_data(sim.server, include_secrets=True),
                                "control_key": "zz"}):
        try:
            state_from_data(bad)
        except StateDecodeError as exc:
            errors.append(exc)
    for build in (lambda: new_session(Role.CLIENT, SESSION_ID, SECRET[:5], 0),
                  lambda: Tick(-1)):
        try:
            build()
        except JumpVpnError as exc:
            errors.append(exc)
    assert len(errors) == 4
    texts += [repr(e) for e in errors] + [str(e) for e in errors]
    joined = "\n".join(texts)
    assert sim.server.phase is not Phase.TERMINATED  # the run exercised live states
    for form in _secret_forms(sim.client):
        assert form not in joined
