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


# --- total decoders (issue: every decoder raises one typed error per family) ------------------

_HUGE_PORT = "udp:10.0.0.1:" + "9" * 5_000
_DEEP = "[" * 100_000 + "]" * 100_000


def _server_data(**changes: Any) -> dict[str, Any]:
    data = state_to_data(attached(Role.SERVER), include_secrets=True)
    data.update(changes)
    return data


def _client_data(**changes: Any) -> dict[str, Any]:
    state, _ = checked_step(attached(Role.CLIENT), DeliveryTimeout(2_000))
    data = state_to_data(state, include_secrets=True)
    data.update(changes)
    return data


def _record(data: dict[str, Any] | str) -> Any:
    from jumpvpn_core.stores.base import StoredSession

    text = data if isinstance(data, str) else json.dumps(data)
    return StoredSession(SESSION_ID, 1, text.encode())


@pytest.mark.requirement("RM-10")
def test_a_port_of_thousands_of_digits_is_a_typed_error_in_every_decoder() -> None:
    from jumpvpn_core.forms import FormError, event_from_data
    from jumpvpn_core.gateway.gateway import RecordInvalidError, decode_record

    with pytest.raises(InvalidTransportError, match="canonical"):
        TransportDescriptor.parse(_HUGE_PORT)
    link = {**_server_data()["link"], "active": _HUGE_PORT}
    with pytest.raises(StateDecodeError, match=r"^link\.active is not a transport"):
        state_from_data(_server_data(link=link))
    with pytest.raises(RecordInvalidError, match=r"link\.active"):
        decode_record(_record(_server_data(link=link)))
    event = {"type": "Attach", "now_ms": 1, "transport": _HUGE_PORT}
    with pytest.raises(FormError):
        event_from_data(event)


@pytest.mark.requirement("RM-10")
def test_deeply_nested_json_is_a_typed_error_or_an_answer_everywhere() -> None:
    import io

    from jumpvpn_core.audit.trace import verify_lines
    from jumpvpn_core.errors import JsonDecodeError
    from jumpvpn_core.gateway.gateway import RecordInvalidError, decode_record
    from jumpvpn_core.jsonsafe import loads
    from jumpvpn_core.testing.implementation import ReferenceImplementation
    from jumpvpn_core.testing.lockstep import PROTOCOL_VERSION, WireError, parse_counterexample
    from jumpvpn_core.testing.stdio_reference import serve

    with pytest.raises(JsonDecodeError, match="nested deeper than 64"):
        loads(_DEEP)
    with pytest.raises(RecordInvalidError, match="JsonDecodeError"):
        decode_record(_record(_DEEP))
    report = verify_lines([_DEEP])
    assert report.violation is not None
    assert "malformed JSON" in str(report.violation)
    out = io.StringIO()
    hello = json.dumps({"v": PROTOCOL_VERSION, "seq": 2, "op": "hello"})
    assert serve(ReferenceImplementation(), [_DEEP, hello], out) == 0
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [a["ok"] for a in answers] == [False, True]
    with pytest.raises(WireError):
        parse_counterexample(_DEEP)


@pytest.mark.requirement("RM-10")
@pytest.mark.parametrize("text", ["1" * 4_301, "-" + "1" * 5_000, '{"a": ' + "9" * 41 + "}",
                                  "NaN", "[Infinity]", "1e400", '{"a": 1, "a": 2}',
                                  '"\\ud800"', b"\xff\xfe", "\ufeff{}"])
def test_json_the_loader_refuses_is_a_json_decode_error(text: str | bytes) -> None:
    from jumpvpn_core.errors import JsonDecodeError
    from jumpvpn_core.jsonsafe import loads

    with pytest.raises(JsonDecodeError):
        loads(text)


def test_json_loader_accepts_what_the_library_writes() -> None:
    from jumpvpn_core.jsonsafe import loads

    data = _server_data()
    assert loads(json.dumps(data)) == data
    assert loads(json.dumps(data).encode()) == data
    assert loads('["\\ud83d\\ude00", "\\u00e9", 18446744073709551615, -1.5]') == \
        ["\U0001f600", "\u00e9", (1 << 64) - 1, -1.5]


@pytest.mark.requirement("RM-10")
@pytest.mark.parametrize("host", ["fe80::1%eth\u00e9", "fe80::1%\u0661", "fe80::1%a b",
                                  "fe80::1%", "10.0.0.1%eth0", "fe80::1%a]b"])
def test_an_ipv6_zone_id_must_be_ascii_unreserved_characters(host: str) -> None:
    with pytest.raises(InvalidTransportError):
        TransportDescriptor.udp(host, 1)
    with pytest.raises(InvalidTransportError):
        TransportDescriptor.parse(f"udp:[{host}]:1")


def test_a_zone_id_of_unreserved_characters_parses_and_encodes() -> None:
    parsed = TransportDescriptor.parse("udp:[fe80::1%eth0.1_a~-]:1")
    assert parsed.host == "fe80::1%eth0.1_a~-"
    assert parsed.encode().endswith(b"\x00\x01")


@pytest.mark.parametrize("text", ["udp:10.0.0.1:04000", "udp:[10.0.0.1]:4000", "udp:::1:4000",
                                  "UDP:10.0.0.1:4000", "udp:10.0.0.1:+4000",
                                  "udp:10.0.0.1: 4000", "udp:[example.org]:1"])
def test_non_canonical_transport_text_is_refused(text: str) -> None:
    with pytest.raises(InvalidTransportError):
        TransportDescriptor.parse(text)


@pytest.mark.requirement("RM-3.3")
@pytest.mark.parametrize(("field", "value"), [
    ("state_version", 1 << 64), ("state_version", (1 << 64) - 1), ("state_version", 1 << 63),
    ("created_ms", 1 << 64), ("phase_since_ms", 1 << 70),
])
def test_integers_beyond_their_range_are_refused_naming_the_field(field: str, value: int) -> None:
    with pytest.raises(StateDecodeError, match=f"^{field} must be an int in 0..") as caught:
        state_from_data(_server_data(**{field: value}))
    assert str(value) not in str(caught.value) or value < 1 << 64


@pytest.mark.requirement("RM-3.3")
def test_a_state_at_the_largest_decodable_version_steps_without_raising() -> None:
    from jumpvpn_core import ReattachRequest
    from jumpvpn_core.codec import COUNTER_MAX
    from jumpvpn_core.proof import MessageType, compute_proof

    data = _server_data(state_version=COUNTER_MAX)
    data["side"] = {**data["side"], "binding_version": COUNTER_MAX}
    server = state_from_data(data)
    proof = compute_proof(server.ident.control_key, MessageType.REATTACH_REQUEST, SESSION_ID,
                          1, COUNTER_MAX, 2_000, HOME)
    after, effects = checked_step(server, ReattachRequest(2_000, HOME, SESSION_ID, 1,
                                                          COUNTER_MAX, 2_000, HOME, proof))
    assert after.state_version == COUNTER_MAX + 1 <= (1 << 64) - 1
    assert state_from_data(state_to_data(server, include_secrets=True)) == server
    del effects


@pytest.mark.requirement("RM-10")
def test_a_policy_record_missing_a_field_is_refused_never_repaired() -> None:
    policy = Policy().to_data()
    del policy["loss_threshold"]
    with pytest.raises(StateDecodeError, match="missing policy field 'loss_threshold'"):
        state_from_data(_server_data(policy=policy))
    with pytest.raises(PolicyError, match="missing policy field 'loss_threshold'"):
        Policy.from_data(policy)
    assert Policy.from_data({"loss_threshold": 3}, partial=True) == Policy(loss_threshold=3)


@pytest.mark.parametrize("data", [{1: 1}, {None: 1}, {("a",): 1}, {"Loss": 1},
                                  {"loss_threshold": 1 << 20_000}, [], "policy"])
def test_policy_data_of_any_shape_is_a_policy_error(data: Any) -> None:
    with pytest.raises(PolicyError):
        Policy.from_data(data, partial=True)


@pytest.mark.requirement("RM-10")
@pytest.mark.parametrize(("where", "value"), [
    (("side", "replay_bits"), "0x10"), (("side", "replay_bits"), " 1_0 "),
    (("side", "replay_bits"), "FF"), (("side", "replay_bits"), "0f"),
    (("session_id",), SESSION_ID.hex().upper()), (("session_id",), " " + SESSION_ID.hex()),
    (("control_key",), "AB" * 32), (("state_version",), "1"), (("state_version",), 1.0),
    (("state_version",), True), (("link", "active"), "udp:10.0.0.1:04000"),
])
def test_non_canonical_forms_in_a_state_record_are_refused(where: tuple[str, ...],
                                                           value: Any) -> None:
    data = _server_data()
    node = data
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    with pytest.raises(StateDecodeError, match=where[-1]):
        state_from_data(data)


@pytest.mark.requirement("RM-10")
@pytest.mark.parametrize(("data", "field"), [
    (lambda: _server_data(phase="TERMINATED"), "end_reason"),
    (lambda: _server_data(end_reason="CLOSED"), "end_reason"),
    (lambda: _server_data(phase="TERMINATED", end_reason="REPLAY_DETECTED"), "end_reason"),
    (lambda: _server_data(phase="TERMINATED", end_reason="REATTACHED"), "end_reason"),
    (lambda: _client_data(side={**_client_data()["side"], "next_nonce": 0}), "next_nonce"),
    (lambda: _client_data(side={**_client_data()["side"], "next_nonce": 1}), "nonce"),
    (lambda: _server_data(phase="BIRTH"), "state_version must be 0 in BIRTH"),
    (lambda: _server_data(phase="BIRTH", state_version=0), "active"),
    (lambda: _server_data(link={**_server_data()["link"], "active": None}), "active"),
    (lambda: _client_data(phase="TERMINATED", end_reason="CLOSED"), "pending"),
    (lambda: _server_data(side={**_server_data()["side"], "binding_version": 2}),
     "binding_version"),
    (lambda: _server_data(roaming={"candidates": ["udp:10.0.0.9:1"] * 2, "switch_times": [],
                                   "recovery_rounds": 0}), "candidates"),
])
def test_inconsistent_state_records_are_refused_naming_the_field(data: Any, field: str) -> None:
    with pytest.raises(StateDecodeError, match=field):
        state_from_data(data())


@pytest.mark.parametrize("field", ["role", "phase", "end_reason"])
def test_a_bad_enum_value_names_its_field(field: str) -> None:
    with pytest.raises(StateDecodeError, match=f"^{field} must be a "):
        state_from_data(_server_data(**{field: "NOT_A_VALUE"}))


@pytest.mark.requirement("RM-10")
def test_a_control_key_must_be_32_bytes_at_construction_and_decoding() -> None:
    from jumpvpn_core.state import Identity

    server = attached(Role.SERVER)
    ident = server.ident
    with pytest.raises(InvalidEventError, match="control_key must be 32 bytes"):
        Identity(ident.role, ident.session_id, "k" * 32,  # type: ignore[arg-type]  # on purpose
                 ident.policy, ident.created_ms)
    data = state_to_data(server)
    with pytest.raises(StateDecodeError, match=r"control_key= must be 32 bytes, got a string"):
        state_from_data(data, control_key="k" * 32)  # type: ignore[arg-type]  # on purpose
    with pytest.raises(StateDecodeError, match=r"control_key= must be 32 bytes, got bytes of "
                                               r"length 31"):
        state_from_data(data, control_key=bytes(31))
    with pytest.raises(StateDecodeError, match="no control key"):
        state_from_data(data)
