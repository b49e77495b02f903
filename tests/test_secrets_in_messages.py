"""No error message, repr or args ever holds a value that could be secret (RM-10, §8).

A recognisable secret is passed, in every form a log reader could recognise (raw bytes,
hex, base64, text), into every argument of every public constructor and decoder: each
attrs record exported by the package (events, effects, states, policy, transports, store
records), each public function of `jumpvpn_core.__all__`, the state codec (the secret in
every field of a valid record, in turn), the gateway's store-record decoder, the JSON
loader and both JSON forms of events and effects. Whatever is raised must not contain the
secret in any of those forms, nor in its cause.
"""

from __future__ import annotations

import base64
import inspect
import json
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import attrs
import pytest

import jumpvpn_core
from jumpvpn_core import (
    Attach,
    DeliveryTimeout,
    InboundTraffic,
    Peer,
    Policy,
    ReasonCode,
    Rejected,
    ReplayWindow,
    Role,
    SessionState,
    StateChanged,
    TransportDescriptor,
    Violation,
    forms,
    jsonsafe,
    new_session,
    state_from_data,
    state_to_data,
)
from jumpvpn_core import effects as effects_module
from jumpvpn_core import events as events_module
from jumpvpn_core.gateway.gateway import decode_record, encode_state
from jumpvpn_core.stores.base import StoredSession
from jumpvpn_core.testing.lockstep import create_params, create_request
from jumpvpn_core.transports import wire as udp_wire
from tests.harness import LOCALS, SECRET, SESSION_ID, checked_step

pytestmark = pytest.mark.requirement("RM-10")

#: 32 bytes, so it also has the size of a control key, a proof and a challenge.
KEY = b"TOPSECRET-k3y-0f-32-bytes-exactly"[:32]
assert len(KEY) == 32
FORMS_IN: tuple[object, ...] = (
    KEY, bytearray(KEY), KEY.hex(), KEY.hex().upper(), base64.b64encode(KEY).decode(),
    KEY.decode(), KEY[:16], KEY[:16].hex(), [KEY.hex()], {"k": KEY.hex()},
)
#: What must never appear in any text an error carries.
FORMS_OUT: tuple[str, ...] = (
    KEY.hex(), KEY.hex().upper(), base64.b64encode(KEY).decode(), KEY.decode(),
    KEY[:16].hex(), KEY[:16].decode(), "TOPSECRET", repr(KEY)[2:-1],
)
HOME = LOCALS[0]


def _texts(exc: BaseException) -> Iterator[str]:
    seen: BaseException | None = exc
    while seen is not None:
        yield str(seen)
        yield repr(seen)
        yield repr(seen.args)
        yield repr(getattr(seen, "problems", ""))
        seen = seen.__cause__


def _error_of(call: Callable[[], object]) -> Exception | None:
    try:
        call()
    except Exception as exc:  # every error is inspected, whatever its type
        return exc
    return None


def _assert_silent(call: Callable[[], object], where: str) -> bool:
    """Run `call`; if it raises, its text must not hold the secret. True if it raised."""
    exc = _error_of(call)
    if exc is None:
        return False
    for text in _texts(exc):
        for form in FORMS_OUT:
            assert form not in text, f"{where}: {type(exc).__name__} quotes the secret"
    return True


def _server() -> SessionState:
    state = new_session(Role.SERVER, SESSION_ID, SECRET, 1_000, Policy())
    return checked_step(state, Attach(1_000, HOME))[0]


def _samples() -> dict[type, Any]:
    """One valid instance of every attrs record a caller may build."""
    state = _server()
    client = checked_step(new_session(Role.CLIENT, SESSION_ID, SECRET, 1_000, Policy()),
                          Attach(1_000, HOME))[0]
    client2, effects = checked_step(client, DeliveryTimeout(2_000))
    server2, effects2 = checked_step(state, InboundTraffic(2_000, LOCALS[1], 100))
    out: dict[type, Any] = {}
    for obj in (*effects, *effects2, state, client2, server2, state.ident, state.link,
                state.side, client2.side, client2.side.pending, server2.side.pending,
                Policy(), HOME, StoredSession(SESSION_ID, 1, b"{}"), ReplayWindow(),
                Violation("bounded_memory", "detail"), Peer.of(state),
                *checked_step(state, events_module.Tick(500))[1]):
        if obj is not None:
            out.setdefault(type(obj), obj)
    peer = TransportDescriptor.udp("198.51.100.9", 7)
    proof, challenge = bytes(32), b"c" * 16
    for event in (
        events_module.Tick(1), events_module.Attach(1, HOME), events_module.Close(1),
        events_module.OwnershipAmbiguous(1), events_module.Evict(1),
        events_module.StoreRecordInvalid(1), events_module.InboundTraffic(1, HOME, 3),
        events_module.PacketLoss(1, 2), events_module.DeliveryTimeout(1),
        events_module.TransportFailed(1, HOME), events_module.AllTransportsFailed(1),
        events_module.CandidateDiscovered(1, HOME), events_module.CandidateLost(1, HOME),
        events_module.RttSample(1, HOME, 30), events_module.ProbeLost(1, HOME),
        events_module.PathChallengeReceived(1, HOME, challenge, peer, 0, 1, 1, proof),
        events_module.ReattachAccepted(1, HOME, SESSION_ID, 1, 2, 1, peer, proof),
        events_module.ReattachRequest(1, peer, SESSION_ID, 1, 2, 1, HOME, proof, b"", 9),
        effects_module.SendPathChallenge(peer, SESSION_ID, challenge, 0, 1, 1, proof),
        effects_module.SendReattachAccept(peer, SESSION_ID, 1, 2, 1, proof),
        effects_module.BindTransport(SESSION_ID, HOME, None),
        effects_module.SessionEnded(SESSION_ID, ReasonCode.CLOSED),
        udp_wire.ReattachRequestMessage(SESSION_ID, 1, 2, 3, peer, b"", proof),
        udp_wire.PathChallengeMessage(SESSION_ID, 0, 1, 1, challenge, peer, proof),
        udp_wire.ReattachAcceptMessage(SESSION_ID, 1, 2, 3, peer, proof),
        udp_wire.DataMessage(SESSION_ID, 1, 7, b"p", bytes(udp_wire.TAG_SIZE)),
        udp_wire.HeartbeatMessage(SESSION_ID, 2, 0, bytes(udp_wire.TAG_SIZE)),
        udp_wire.HandshakeInit(bytes(32)), udp_wire.HandshakeResponse(bytes(32), SESSION_ID),
        udp_wire.CookieReply(bytes(32), bytes(udp_wire.COOKIE_SIZE)),
    ):
        out.setdefault(type(event), event)
    return out


def _exported_records() -> list[type]:
    names = [getattr(jumpvpn_core, n) for n in jumpvpn_core.__all__]
    return [obj for obj in names if isinstance(obj, type) and attrs.has(obj)]


def test_every_exported_record_has_a_sample_and_is_covered() -> None:
    samples = _samples()
    missing = [cls.__name__ for cls in (*_exported_records(), *events_module.EVENT_TYPES)
               if cls not in samples]
    assert missing == []


def test_no_record_constructor_quotes_a_secret_passed_into_any_field() -> None:
    raised = 0
    for cls, sample in _samples().items():
        for field in attrs.fields(cls):
            for value in FORMS_IN:
                raised += _assert_silent(partial(attrs.evolve, sample, **{field.name: value}),
                                         f"{cls.__name__}.{field.name}")
    assert raised > 200  # the validators did refuse most of these


def _function_calls() -> dict[str, list[Callable[[], object]]]:
    """Every public function of the package, with the secret in each argument in turn."""
    state = _server()
    event = events_module.Tick(2_000)
    valid: dict[str, tuple[Any, ...]] = {
        "step": (state, event),
        "advance_time": (state, 2_000),
        "next_deadline": (state,),
        "check_state": (state,),
        "check_step": (state, event, state, ()),
        "checked_step": (state, event),
        "new_session": (Role.SERVER, SESSION_ID, SECRET, 1_000, Policy()),
        "state_from_data": (state_to_data(state), KEY),
        "state_to_data": (state,),
        "reason_class": (ReasonCode.CLOSED,),
    }
    calls: dict[str, list[Callable[[], object]]] = {}
    for name, args in valid.items():
        function = getattr(jumpvpn_core, name)
        calls[name] = [partial(function, *args[:i], v, *args[i + 1:])
                       for i in range(len(args)) for v in FORMS_IN]
    return calls


def test_no_public_function_quotes_a_secret_passed_into_any_argument() -> None:
    calls = _function_calls()
    exported = {n for n in jumpvpn_core.__all__ if inspect.isfunction(getattr(jumpvpn_core, n))}
    assert exported <= set(calls), f"not covered: {sorted(exported - set(calls))}"
    raised = sum(_assert_silent(call, name) for name, group in calls.items() for call in group)
    assert raised > 50


def _decode_record(data: Any) -> SessionState:
    return decode_record(StoredSession(SESSION_ID, 1, json.dumps(data).encode()))


def _leaves(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths to every value in a JSON document, containers included."""
    yield path
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _leaves(value, (*path, index))


def _with(data: Any, path: tuple[Any, ...], value: object) -> Any:
    copy = json.loads(json.dumps(data))
    if not path:
        return value
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


def _json_forms() -> Iterator[object]:
    for value in FORMS_IN:
        if isinstance(value, bytes | bytearray):
            continue
        yield value


def test_no_decoder_quotes_a_secret_found_in_any_field_of_its_input() -> None:
    client = checked_step(new_session(Role.CLIENT, SESSION_ID, SECRET, 1_000, Policy()),
                          Attach(1_000, HOME))[0]
    client = checked_step(client, DeliveryTimeout(2_000))[0]
    server = _server()
    documents: list[tuple[str, Any, Callable[[Any], object]]] = [
        ("state", state_to_data(client, include_secrets=True), state_from_data),
        ("state", state_to_data(server, include_secrets=True), state_from_data),
        ("record", json.loads(encode_state(server)), _decode_record),
        ("policy", Policy().to_data(), Policy.from_data),
        ("create", create_request(Role.SERVER, SESSION_ID, SECRET, 0, Policy()),
         create_params),
    ]
    for event in (events_module.ReattachRequest(1, HOME, SESSION_ID, 1, 2, 1, HOME,
                                                bytes(32), b"c", 9),
                  events_module.PathChallengeReceived(1, HOME, b"c", HOME, 0, 1, 1, bytes(32))):
        documents += [("form event", forms.event_to_data(event), forms.event_from_data)]
    for effect in _samples().values():
        if type(effect) in forms.EFFECT_CLASSES.values():
            documents += [("form effect", forms.effect_to_data(effect), forms.effect_from_data)]
    for effect in _samples().values():
        if isinstance(effect, StateChanged | Rejected):
            documents += [("audit record", effect.to_record(), forms.record_from_data)]
    raised = 0
    for what, data, decode in documents:
        for path in _leaves(data):
            for value in _json_forms():
                bad = _with(data, path, value)
                raised += _assert_silent(partial(decode, bad), f"{what} at {path}")
        for key in (KEY.hex(), base64.b64encode(KEY).decode(), KEY.decode()):
            raised += _assert_silent(partial(decode, {**data, key: 1}),
                                     f"{what} with the secret as a key")
    assert raised > 500


def test_the_json_loader_and_transport_parser_never_quote_their_input() -> None:
    texts = [f'"{KEY.hex()}', f'{{"{KEY.hex()}": 1, "{KEY.hex()}": 2}}',
             f'[{KEY.hex()}]', f'{{"a": {"[" * 100}"{KEY.hex()}"}}', KEY.hex() + "1" * 50]
    for text in texts:
        assert _assert_silent(partial(jsonsafe.loads, text), "jsonsafe.loads")
        assert _assert_silent(partial(jsonsafe.loads, text.encode()), "jsonsafe.loads")
    for value in (*FORMS_IN, f"udp:{KEY.hex()}:1", f"{KEY.hex()}:h:1",
                  f"udp:h:{KEY.hex()}", f"udp:[fe80::1%{KEY.hex()}\u00e9]:1"):
        assert _assert_silent(partial(TransportDescriptor.parse, value),  # type: ignore[arg-type]  # non-str on purpose
                              "TransportDescriptor.parse")
    assert _assert_silent(lambda: udp_wire.decode(b"\x01\x03" + KEY), "udp wire decode")
