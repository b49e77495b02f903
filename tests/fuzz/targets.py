"""Fuzz targets: one per decoder that reads bytes or JSON from outside the process.

Each target takes arbitrary bytes and feeds them to one decoder. The decoder's own typed
error (its family, `specs/bad-input.md`) is the expected answer to bad input and is
swallowed; anything else escaping a target is a finding: an untyped exception (ValueError,
RecursionError, UnicodeEncodeError, KeyError, ...), or an `AssertionError` from a check a
target makes on what the decoder accepted (it round-trips, it can be stepped, it encodes).

Targets are plain functions so that the same code serves the coverage-guided long run
(`python -m tests.fuzz.run TARGET`, atheris) and the CI smoke test (corpus replay plus a
short budget, `tests/fuzz/test_fuzz_smoke.py`).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable

from jumpvpn_core import jsonsafe
from jumpvpn_core.audit.trace import TraceReport, verify_lines
from jumpvpn_core.codec import state_from_data, state_to_data
from jumpvpn_core.errors import (
    InvalidTransportError,
    JsonDecodeError,
    PolicyError,
    StateDecodeError,
)
from jumpvpn_core.events import DeliveryTimeout, InboundTraffic, ReattachRequest, Tick
from jumpvpn_core.forms import FormError, effect_from_data, event_from_data, record_from_data
from jumpvpn_core.gateway.gateway import RecordInvalidError, decode_record
from jumpvpn_core.machine import next_deadline, step
from jumpvpn_core.phases import Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.proof import MessageType, compute_proof
from jumpvpn_core.state import SessionState
from jumpvpn_core.stores.base import StoredSession
from jumpvpn_core.testing.implementation import ReferenceImplementation
from jumpvpn_core.testing.lockstep import parse_counterexample
from jumpvpn_core.testing.stdio_reference import serve
from jumpvpn_core.transport import TransportDescriptor
from jumpvpn_core.transports import wire as udp_wire

__all__ = ["FUZZ_SESSION_ID", "TARGETS", "Target", "all_targets"]

Target = Callable[[bytes], None]

#: The session id store-record seeds are written for (`decode_record` checks it).
FUZZ_SESSION_ID = bytes.fromhex("f0221e55f0221e55f0221e55f0221e55")
_U64_MAX = (1 << 64) - 1
_PEER = TransportDescriptor.udp("203.0.113.9", 4000)


def _text(data: bytes) -> str:
    # surrogateescape: every byte string maps to a str, lone surrogates included.
    return data.decode("utf-8", "surrogateescape")


def _exercise(state: SessionState) -> None:
    """What a driver does next with a decoded state: encode it, step it. Must not raise."""
    assert state_from_data(state_to_data(state, include_secrets=True)) == state
    json.dumps(state_to_data(state)).encode("utf-8")
    now = min(max(state.link.clock_ms, next_deadline(state) or 0), _U64_MAX)
    stepped, _ = step(state, Tick(now))
    ident = stepped.ident
    if ident.role is Role.SERVER:
        nonce = 1 + (stepped.side.replay_top if hasattr(stepped.side, "replay_top") else 0)
        nonce = min(nonce, _U64_MAX)
        version = getattr(stepped.side, "binding_version", 0)
        candidate = stepped.link.active or _PEER
        proof = compute_proof(ident.control_key, MessageType.REATTACH_REQUEST,
                              ident.session_id, nonce, version, now, candidate)
        step(stepped, ReattachRequest(now, _PEER, ident.session_id, nonce, version, now,
                                      candidate, proof))
        step(stepped, InboundTraffic(now, _PEER, 100))
    else:
        step(stepped, DeliveryTimeout(now))


def transport_text(data: bytes) -> None:
    """`TransportDescriptor.parse`: InvalidTransportError, or a descriptor that round-trips."""
    text = _text(data)
    try:
        parsed = TransportDescriptor.parse(text)
    except InvalidTransportError:
        return
    assert str(parsed) == text  # canonical text only
    parsed.encode()


def json_text(data: bytes) -> None:
    """`jsonsafe.loads`: JsonDecodeError, or a value that re-encodes as UTF-8 JSON."""
    try:
        value = jsonsafe.loads(data)
    except JsonDecodeError:
        return
    json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")


def state(data: bytes) -> None:
    """`state_from_data` on JSON: one of its two families, or a state that can be stepped."""
    try:
        decoded = state_from_data(jsonsafe.loads(data))
    except (JsonDecodeError, StateDecodeError):
        return
    _exercise(decoded)


def store_record(data: bytes) -> None:
    """The gateway's `decode_record`: RecordInvalidError, or a server state to step."""
    try:
        decoded = decode_record(StoredSession(FUZZ_SESSION_ID, 1, data))
    except RecordInvalidError:
        return
    _exercise(decoded)


def policy(data: bytes) -> None:
    """`Policy.from_data` on JSON (records and partial configuration files)."""
    for partial in (False, True):
        with contextlib.suppress(JsonDecodeError, PolicyError):
            Policy.from_data(jsonsafe.loads(data), partial=partial)


def conformance_request(data: bytes) -> None:
    """The conformance program (`stdio_reference.serve`): one response per request line."""
    lines = [line for line in _text(data).splitlines() if line.strip()]
    out = io.StringIO()
    assert serve(ReferenceImplementation(), lines, out) == 0
    for line in out.getvalue().splitlines():
        response = json.loads(line)
        assert response["ok"] in (True, False)


def counterexample(data: bytes) -> None:
    """`parse_counterexample` (a saved failure read back): WireError or parsed events."""
    try:
        parse_counterexample(_text(data))
    except FormError:  # WireError is FormError
        return


def form_event(data: bytes) -> None:
    """The JSON form of an event (`forms.event_from_data`: vectors, conformance, scenarios)."""
    try:
        event_from_data(jsonsafe.loads(data))
    except (JsonDecodeError, FormError):
        return


def form_effect(data: bytes) -> None:
    """The JSON form of an effect (`forms.effect_from_data`)."""
    try:
        effect_from_data(jsonsafe.loads(data))
    except (JsonDecodeError, FormError):
        return


def audit_record(data: bytes) -> None:
    """An audit record read back into its effect (`forms.record_from_data`)."""
    try:
        record = jsonsafe.loads(data)
    except JsonDecodeError:
        return
    if not isinstance(record, dict):
        return
    try:
        effect = record_from_data(record)
    except FormError:
        return
    assert record_from_data(effect.to_record()) == effect


def trace(data: bytes) -> None:
    """The trace verifier: always a report (a violation for bad lines), never an exception."""
    report = verify_lines(data.split(b"\n"))
    assert isinstance(report, TraceReport)
    if report.violation is not None:
        str(report.violation)


def udp_datagram(data: bytes) -> None:
    """The reference UDP wire format (`transports.wire.decode`): its WireError or a message."""
    try:
        message = udp_wire.decode(data)
    except udp_wire.WireError:
        return
    udp_wire.encode(message)


TARGETS: dict[str, Target] = {
    "transport_text": transport_text,
    "json": json_text,
    "state": state,
    "store_record": store_record,
    "policy": policy,
    "conformance_request": conformance_request,
    "counterexample": counterexample,
    "form_event": form_event,
    "form_effect": form_effect,
    "audit_record": audit_record,
    "trace": trace,
    "udp_datagram": udp_datagram,
}


_ORDER = tuple(TARGETS.values())


def all_targets(data: bytes) -> None:
    """Every target at once: the first byte picks the target, the rest is its input."""
    if data:
        _ORDER[data[0] % len(_ORDER)](data[1:])
