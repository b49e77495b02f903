"""The wire codec is strict: round trips, typed errors only, truncation and trailing bytes."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jumpvpn_core.transport import TransportDescriptor, TransportKind
from jumpvpn_core.transports.wire import (
    WIRE_VERSION,
    CookieReply,
    DataMessage,
    HandshakeInit,
    HandshakeResponse,
    HeartbeatMessage,
    Message,
    MessageKind,
    PathChallengeMessage,
    ReattachAcceptMessage,
    ReattachRequestMessage,
    WireError,
    WireErrorReason,
    decode,
    encode,
)

SPEC = Path(__file__).resolve().parents[2] / "specs" / "wire-format.md"

u64 = st.integers(0, 2**64 - 1)
nonces = st.integers(1, 2**64 - 1)
sids = st.binary(min_size=16, max_size=16)
hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.sampled_from(["localhost", "gw.example.net", "a-b.c"]),
)
transports = st.builds(TransportDescriptor, st.sampled_from(list(TransportKind)), hosts,
                       st.integers(1, 65535))
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(HandshakeInit, st.binary(min_size=32, max_size=32),
              st.binary(min_size=16, max_size=16)),
    st.builds(CookieReply, st.binary(min_size=32, max_size=32),
              st.binary(min_size=16, max_size=16)),
    st.builds(HandshakeResponse, st.binary(min_size=32, max_size=32), sids),
    st.builds(ReattachRequestMessage, sids, nonces, u64, u64, transports,
              st.binary(max_size=255), st.binary(min_size=32, max_size=32)),
    st.builds(PathChallengeMessage, sids, u64, u64, u64, st.binary(min_size=1, max_size=255),
              transports, st.binary(min_size=32, max_size=32)),
    st.builds(ReattachAcceptMessage, sids, nonces, u64, u64, transports,
              st.binary(min_size=32, max_size=32)),
    st.builds(DataMessage, sids, nonces, u64, st.binary(max_size=1200),
              st.binary(min_size=16, max_size=16)),
    st.builds(HeartbeatMessage, sids, nonces, u64, st.binary(min_size=16, max_size=16)),
)


@given(messages)
def test_every_message_round_trips_bit_for_bit(message: Message) -> None:
    data = encode(message)
    assert data[0] == WIRE_VERSION
    assert decode(data) == message
    assert encode(decode(data)) == data


@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_wire_error(data: bytes) -> None:
    reason: object = None
    try:
        decode(data)
    except WireError as exc:
        reason = exc.reason
    assert reason is None or isinstance(reason, WireErrorReason)


@given(st.sampled_from(list(MessageKind)), st.binary(max_size=400))
def test_bytes_behind_a_valid_header_raise_only_wire_error(kind: MessageKind,
                                                           body: bytes) -> None:
    try:
        message = decode(bytes((WIRE_VERSION, int(kind))) + body)
    except WireError:
        return
    assert encode(message) == bytes((WIRE_VERSION, int(kind))) + body


@given(messages, st.data())
def test_a_flipped_byte_never_raises_anything_but_wire_error(message: Message,
                                                            data: st.DataObject) -> None:
    raw = bytearray(encode(message))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    with contextlib.suppress(WireError):
        decode(bytes(raw))


@given(messages)
def test_every_truncation_is_rejected(message: Message) -> None:
    data = encode(message)
    for size in range(len(data)):
        with pytest.raises(WireError) as info:
            decode(data[:size])
        expected = WireErrorReason.EMPTY if size == 0 else WireErrorReason.TRUNCATED
        assert info.value.reason is expected


@given(messages, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_rejected(message: Message, extra: bytes) -> None:
    with pytest.raises(WireError) as info:
        decode(encode(message) + extra)
    assert info.value.reason is WireErrorReason.TRAILING_BYTES


def test_unknown_version_and_type_are_named() -> None:
    good = encode(HandshakeInit(bytes(32)))
    with pytest.raises(WireError) as info:
        decode(bytes((WIRE_VERSION + 1,)) + good[1:])
    assert info.value.reason is WireErrorReason.UNKNOWN_VERSION
    with pytest.raises(WireError) as info:
        decode(bytes((WIRE_VERSION, 0xEE)) + good[2:])
    assert info.value.reason is WireErrorReason.UNKNOWN_TYPE


def test_values_the_core_would_refuse_are_refused_on_the_wire() -> None:
    sid = bytes(16)
    with pytest.raises(WireError):
        ReattachRequestMessage(sid, 0, 0, 0, TransportDescriptor.udp("127.0.0.1", 1), b"",
                               bytes(32))
    with pytest.raises(WireError):
        PathChallengeMessage(sid, 0, 0, 0, b"", TransportDescriptor.udp("127.0.0.1", 1),
                             bytes(32))
    # A zero nonce on the wire is a typed error, not an event-construction crash.
    raw = bytearray(encode(ReattachRequestMessage(
        sid, 1, 0, 0, TransportDescriptor.udp("127.0.0.1", 1), b"", bytes(32))))
    raw[2 + 16 + 7] = 0
    with pytest.raises(WireError) as info:
        decode(bytes(raw))
    assert info.value.reason is WireErrorReason.BAD_VALUE


def test_malformed_transport_host_is_bad_transport() -> None:
    raw = bytearray(encode(PathChallengeMessage(bytes(16), 0, 1, 0, b"c",
                                                TransportDescriptor.udp("10.0.0.1", 9),
                                                bytes(32))))
    host_at = raw.index(b"10.0.0.1")
    raw[host_at] = ord("!")
    with pytest.raises(WireError) as info:
        decode(bytes(raw))
    assert info.value.reason is WireErrorReason.BAD_TRANSPORT


def test_encode_refuses_what_is_not_a_message() -> None:
    with pytest.raises(WireError):
        encode("hello")  # type: ignore[arg-type]  # deliberately the wrong type


def test_spec_lists_exactly_the_message_types_of_the_code() -> None:
    rows = re.findall(r"^\| `0x([0-9a-f]{2})` \| `([A-Z_]+)` \|", SPEC.read_text(),
                      flags=re.MULTILINE)
    assert {int(code, 16): name for code, name in rows} == {k.value: k.name
                                                             for k in MessageKind}
    assert f"Wire version: {WIRE_VERSION}" in SPEC.read_text()
