"""The reference wire format: strict, versioned, fixed big-endian layout.

Specified byte by byte in `specs/wire-format.md` (wire version 3). Every datagram is

    u8 version (1) | u8 type | body

and each type has exactly one body layout. Decoding either returns one typed message or
raises `WireError` with a `WireErrorReason`; it never raises anything else, never reads past
the end, and rejects trailing bytes. A decoded message always satisfies the validators of
the core event it feeds, so a datagram can never make event construction raise.
"""

from __future__ import annotations

import enum
import struct
from typing import Any, overload

import attrs

from jumpvpn_core.effects import SendPathChallenge, SendReattachAccept, SendReattachRequest
from jumpvpn_core.errors import InvalidTransportError, JumpVpnError
from jumpvpn_core.proof import PROOF_SIZE, SESSION_ID_SIZE
from jumpvpn_core.transport import TransportDescriptor, TransportKind

__all__ = [
    "COOKIE_SIZE",
    "KEY_SHARE_SIZE",
    "MAX_CHALLENGE_SIZE",
    "MAX_HOST_SIZE",
    "MAX_PAYLOAD_SIZE",
    "NO_COOKIE",
    "TAG_SIZE",
    "WIRE_VERSION",
    "CookieReply",
    "DataMessage",
    "HandshakeInit",
    "HandshakeResponse",
    "HeartbeatMessage",
    "Message",
    "MessageKind",
    "PathChallengeMessage",
    "ReattachAcceptMessage",
    "ReattachRequestMessage",
    "WireError",
    "WireErrorReason",
    "carried_effect",
    "decode",
    "encode",
    "message_for",
]

#: Version byte of every datagram. Bumped on any layout change.
WIRE_VERSION = 3
KEY_SHARE_SIZE = 32
#: Size of a handshake cookie (`specs/wire-format.md`, "Handshake cookies").
COOKIE_SIZE = 16
#: The cookie field of an initiation that carries no cookie.
NO_COOKIE = bytes(COOKIE_SIZE)
TAG_SIZE = 16
MAX_CHALLENGE_SIZE = 255
MAX_HOST_SIZE = 253
MAX_PAYLOAD_SIZE = 1200
_U64_MAX = (1 << 64) - 1
_U64 = struct.Struct(">Q")
_U16 = struct.Struct(">H")


class MessageKind(enum.IntEnum):
    """The type byte. Values are part of the wire contract."""

    HANDSHAKE_INIT = 0x01
    HANDSHAKE_RESPONSE = 0x02
    REATTACH_REQUEST = 0x03
    PATH_CHALLENGE = 0x04
    REATTACH_ACCEPT = 0x05
    DATA = 0x06
    HEARTBEAT = 0x07
    COOKIE_REPLY = 0x08


class WireErrorReason(enum.StrEnum):
    """Why a datagram was refused. Drivers count drops by these values."""

    EMPTY = "empty"
    UNKNOWN_VERSION = "unknown_version"
    UNKNOWN_TYPE = "unknown_type"
    TRUNCATED = "truncated"
    TRAILING_BYTES = "trailing_bytes"
    BAD_VALUE = "bad_value"
    BAD_TRANSPORT = "bad_transport"


class WireError(JumpVpnError, ValueError):
    """A datagram (or a message to encode) does not follow the wire format."""

    def __init__(self, reason: WireErrorReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}")


_KIND_CODES: dict[TransportKind, int] = {
    TransportKind.UDP: 1,
    TransportKind.TCP: 2,
    TransportKind.QUIC: 3,
}
_CODE_KINDS: dict[int, TransportKind] = {code: kind for kind, code in _KIND_CODES.items()}


# --- field validators (construction = decoding's last line of defence) -----------------------


def _bad(detail: str) -> WireError:
    return WireError(WireErrorReason.BAD_VALUE, detail)


def _fixed(size: int) -> Any:
    def check(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
        if type(value) is not bytes or len(value) != size:
            raise _bad(f"{attr.name} must be {size} bytes")

    return check


def _uint(low: int) -> Any:
    what = "an unsigned 64-bit integer" if low == 0 else f"in {low}..2**64-1"

    def check(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
        if type(value) is not int or not low <= value <= _U64_MAX:
            raise _bad(f"{attr.name} must be {what}")

    return check


def _bytes_up_to(limit: int, *, nonempty: bool = False) -> Any:
    def check(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
        if type(value) is not bytes or len(value) > limit:
            raise _bad(f"{attr.name} must be at most {limit} bytes")
        if nonempty and not value:
            raise _bad(f"{attr.name} must not be empty")

    return check


_u64 = _uint(0)
_nonce = _uint(1)
_challenge = _bytes_up_to(MAX_CHALLENGE_SIZE)
_nonempty_challenge = _bytes_up_to(MAX_CHALLENGE_SIZE, nonempty=True)
_payload = _bytes_up_to(MAX_PAYLOAD_SIZE)


def _transport(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, TransportDescriptor):
        raise _bad(f"{attr.name} must be a TransportDescriptor")
    if len(value.host.encode("ascii")) > MAX_HOST_SIZE:
        raise WireError(WireErrorReason.BAD_TRANSPORT, f"{attr.name} host too long")


# --- messages ------------------------------------------------------------------------------


@attrs.frozen
class HandshakeInit:
    """Client -> server: the client's X25519 public key (reference handshake only), and
    the cookie of the server's last `CookieReply` to it (`NO_COOKIE`: none yet)."""

    client_public: bytes = attrs.field(validator=_fixed(KEY_SHARE_SIZE))
    cookie: bytes = attrs.field(default=NO_COOKIE, validator=_fixed(COOKIE_SIZE))


@attrs.frozen
class CookieReply:
    """Server -> client, under load, instead of a key exchange: the cookie to repeat in
    the initiation of `client_public` from the same address. The same size as the
    initiation it answers (no amplification)."""

    client_public: bytes = attrs.field(validator=_fixed(KEY_SHARE_SIZE))
    cookie: bytes = attrs.field(validator=_fixed(COOKIE_SIZE))


@attrs.frozen
class HandshakeResponse:
    """Server -> client: the server's X25519 public key and the derived session id."""

    server_public: bytes = attrs.field(validator=_fixed(KEY_SHARE_SIZE))
    session_id: bytes = attrs.field(validator=_fixed(SESSION_ID_SIZE))


@attrs.frozen
class _Signed:
    """The fields a reattach request and accept share, in wire order (a proof covers them)."""

    session_id: bytes = attrs.field(validator=_fixed(SESSION_ID_SIZE))
    nonce: int = attrs.field(validator=_nonce)
    state_version: int = attrs.field(validator=_u64)
    timestamp_ms: int = attrs.field(validator=_u64)


@attrs.frozen
class ReattachRequestMessage(_Signed):
    """Client -> server: carries a `SendReattachRequest` effect."""

    candidate: TransportDescriptor = attrs.field(validator=_transport)
    challenge: bytes = attrs.field(validator=_challenge)
    proof: bytes = attrs.field(validator=_fixed(PROOF_SIZE))


@attrs.frozen
class PathChallengeMessage:
    """Server -> client: carries a `SendPathChallenge`; `observed` is where it was sent.

    `mac` authenticates the challenge under the control key (see `proof.challenge_mac`);
    the client's core refuses a challenge whose MAC does not verify."""

    session_id: bytes = attrs.field(validator=_fixed(SESSION_ID_SIZE))
    nonce: int = attrs.field(validator=_u64)
    state_version: int = attrs.field(validator=_u64)
    timestamp_ms: int = attrs.field(validator=_u64)
    challenge: bytes = attrs.field(validator=_nonempty_challenge)
    observed: TransportDescriptor = attrs.field(validator=_transport)
    mac: bytes = attrs.field(validator=_fixed(PROOF_SIZE))


@attrs.frozen
class ReattachAcceptMessage(_Signed):
    """Server -> client: carries a `SendReattachAccept`; `bound` is the address bound."""

    bound: TransportDescriptor = attrs.field(validator=_transport)
    proof: bytes = attrs.field(validator=_fixed(PROOF_SIZE))


@attrs.frozen
class DataMessage:
    """Client -> server: payload number `seq`, authenticated by `tag` (see `tag_input`).

    `counter` is the sender's data-plane counter (1, 2, ... over every DATA and HEARTBEAT
    it seals for the session); the receiver's replay window drops a repeated one."""

    session_id: bytes = attrs.field(validator=_fixed(SESSION_ID_SIZE))
    counter: int = attrs.field(validator=_nonce)
    seq: int = attrs.field(validator=_u64)
    payload: bytes = attrs.field(validator=_payload)
    tag: bytes = attrs.field(validator=_fixed(TAG_SIZE))

    def tag_input(self) -> bytes:
        """The bytes the tag covers: the whole datagram except the tag itself."""
        return encode(self)[:-TAG_SIZE]


@attrs.frozen
class HeartbeatMessage:
    """Either direction: keepalive (`seq` 0) or acknowledgement of payload `seq`; `counter`
    as for `DataMessage`."""

    session_id: bytes = attrs.field(validator=_fixed(SESSION_ID_SIZE))
    counter: int = attrs.field(validator=_nonce)
    seq: int = attrs.field(validator=_u64)
    tag: bytes = attrs.field(validator=_fixed(TAG_SIZE))

    def tag_input(self) -> bytes:
        """The bytes the tag covers: the whole datagram except the tag itself."""
        return encode(self)[:-TAG_SIZE]


Message = (
    HandshakeInit
    | HandshakeResponse
    | CookieReply
    | ReattachRequestMessage
    | PathChallengeMessage
    | ReattachAcceptMessage
    | DataMessage
    | HeartbeatMessage
)


# --- encoding ------------------------------------------------------------------------------


def _enc_transport(t: TransportDescriptor) -> bytes:
    host = t.host.encode("ascii")
    return bytes((_KIND_CODES[t.kind], len(host))) + host + _U16.pack(t.port)


def _header(kind: MessageKind) -> bytes:
    return bytes((WIRE_VERSION, int(kind)))


def _signed_head(kind: MessageKind, m: _Signed) -> bytes:
    return b"".join((_header(kind), m.session_id, _U64.pack(m.nonce),
                     _U64.pack(m.state_version), _U64.pack(m.timestamp_ms)))


def encode(message: Message) -> bytes:
    """The datagram for `message`. Raises `WireError` for an object that is not a message."""
    m = message
    if isinstance(m, HandshakeInit):
        return _header(MessageKind.HANDSHAKE_INIT) + m.client_public + m.cookie
    if isinstance(m, CookieReply):
        return _header(MessageKind.COOKIE_REPLY) + m.client_public + m.cookie
    if isinstance(m, HandshakeResponse):
        return _header(MessageKind.HANDSHAKE_RESPONSE) + m.server_public + m.session_id
    if isinstance(m, ReattachRequestMessage):
        return b"".join((
            _signed_head(MessageKind.REATTACH_REQUEST, m), _enc_transport(m.candidate),
            bytes((len(m.challenge),)), m.challenge, m.proof,
        ))
    if isinstance(m, PathChallengeMessage):
        return b"".join((
            _header(MessageKind.PATH_CHALLENGE), m.session_id, _U64.pack(m.nonce),
            _U64.pack(m.state_version), _U64.pack(m.timestamp_ms), bytes((len(m.challenge),)),
            m.challenge, _enc_transport(m.observed), m.mac,
        ))
    if isinstance(m, ReattachAcceptMessage):
        return b"".join((
            _signed_head(MessageKind.REATTACH_ACCEPT, m), _enc_transport(m.bound), m.proof,
        ))
    if isinstance(m, DataMessage):
        return b"".join((
            _header(MessageKind.DATA), m.session_id, _U64.pack(m.counter), _U64.pack(m.seq),
            _U16.pack(len(m.payload)), m.payload, m.tag,
        ))
    if isinstance(m, HeartbeatMessage):
        return (_header(MessageKind.HEARTBEAT) + m.session_id + _U64.pack(m.counter)
                + _U64.pack(m.seq) + m.tag)
    raise _bad(f"not a wire message: {type(message).__name__}")


# --- decoding ------------------------------------------------------------------------------


class _Reader:
    """Bounds-checked cursor over one datagram."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise WireError(WireErrorReason.TRUNCATED, f"datagram ends inside {what}")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        value: int = _U16.unpack(self.take(2, what))[0]
        return value

    def u64(self, what: str) -> int:
        value: int = _U64.unpack(self.take(8, what))[0]
        return value

    def transport(self, what: str) -> TransportDescriptor:
        code = self.u8(f"{what} kind")
        kind = _CODE_KINDS.get(code)
        if kind is None:
            raise WireError(WireErrorReason.BAD_TRANSPORT, f"{what}: unknown kind {code}")
        size = self.u8(f"{what} host length")
        if not 1 <= size <= MAX_HOST_SIZE:
            raise WireError(WireErrorReason.BAD_TRANSPORT, f"{what}: host length {size}")
        raw = self.take(size, f"{what} host")
        port = self.u16(f"{what} port")
        try:
            host = raw.decode("ascii")
            return TransportDescriptor(kind, host, port)
        except (UnicodeDecodeError, InvalidTransportError):
            raise WireError(WireErrorReason.BAD_TRANSPORT, f"{what} is malformed") from None

    def signed_head(self) -> tuple[bytes, int, int, int]:
        return (self.take(SESSION_ID_SIZE, "session id"), self.u64("nonce"),
                self.u64("state version"), self.u64("timestamp"))

    def end(self) -> None:
        extra = len(self.data) - self.pos
        if extra:
            raise WireError(WireErrorReason.TRAILING_BYTES, f"{extra} bytes after the message")


def _decode_body(kind: MessageKind, r: _Reader) -> Message:
    sid = SESSION_ID_SIZE
    if kind is MessageKind.HANDSHAKE_INIT:
        return HandshakeInit(r.take(KEY_SHARE_SIZE, "client public key"),
                             r.take(COOKIE_SIZE, "cookie"))
    if kind is MessageKind.COOKIE_REPLY:
        return CookieReply(r.take(KEY_SHARE_SIZE, "client public key"),
                           r.take(COOKIE_SIZE, "cookie"))
    if kind is MessageKind.HANDSHAKE_RESPONSE:
        return HandshakeResponse(r.take(KEY_SHARE_SIZE, "server public key"),
                                 r.take(sid, "session id"))
    if kind is MessageKind.REATTACH_REQUEST:
        head = r.signed_head()
        candidate = r.transport("candidate")
        challenge = r.take(r.u8("challenge length"), "challenge")
        return ReattachRequestMessage(*head, candidate, challenge, r.take(PROOF_SIZE, "proof"))
    if kind is MessageKind.PATH_CHALLENGE:
        session_id = r.take(sid, "session id")
        nonce, version, ts = r.u64("nonce"), r.u64("state version"), r.u64("timestamp")
        challenge = r.take(r.u8("challenge length"), "challenge")
        observed = r.transport("observed")
        return PathChallengeMessage(session_id, nonce, version, ts, challenge, observed,
                                    r.take(PROOF_SIZE, "challenge mac"))
    if kind is MessageKind.REATTACH_ACCEPT:
        head = r.signed_head()
        return ReattachAcceptMessage(*head, r.transport("bound"), r.take(PROOF_SIZE, "proof"))
    if kind is MessageKind.DATA:
        session_id = r.take(sid, "session id")
        counter = r.u64("counter")
        seq = r.u64("sequence number")
        size = r.u16("payload length")
        if size > MAX_PAYLOAD_SIZE:
            raise _bad(f"payload length {size} exceeds {MAX_PAYLOAD_SIZE}")
        payload = r.take(size, "payload")
        return DataMessage(session_id, counter, seq, payload, r.take(TAG_SIZE, "tag"))
    # HEARTBEAT: the only kind left (MessageKind is closed).
    session_id = r.take(sid, "session id")
    counter = r.u64("counter")
    return HeartbeatMessage(session_id, counter, r.u64("sequence number"),
                            r.take(TAG_SIZE, "tag"))


def decode(datagram: bytes) -> Message:
    """Decode one datagram. Raises `WireError` (and nothing else) if it is malformed."""
    if not isinstance(datagram, (bytes, bytearray, memoryview)):
        raise _bad(f"datagram must be bytes, got {type(datagram).__name__}")
    data = bytes(datagram)
    if not data:
        raise WireError(WireErrorReason.EMPTY, "empty datagram")
    r = _Reader(data)
    version = r.u8("version")
    if version != WIRE_VERSION:
        raise WireError(WireErrorReason.UNKNOWN_VERSION, f"version {version}")
    code = r.u8("type")
    try:
        kind = MessageKind(code)
    except ValueError:
        raise WireError(WireErrorReason.UNKNOWN_TYPE, f"type {code}") from None
    message = _decode_body(kind, r)
    r.end()
    return message


# --- the effects the control messages carry -------------------------------------------------

#: The core effects a control message carries, field for field.
CarriedEffect = SendReattachRequest | SendPathChallenge | SendReattachAccept
ControlMessage = ReattachRequestMessage | PathChallengeMessage | ReattachAcceptMessage


def message_for(effect: CarriedEffect) -> ControlMessage:
    """The message that carries a core send effect (its `via`/`to` is not on the wire:
    a challenge's `observed` and an accept's `bound` are its target address)."""
    e = effect
    if isinstance(e, SendReattachRequest):
        return ReattachRequestMessage(e.session_id, e.nonce, e.state_version, e.timestamp_ms,
                                      e.candidate, e.challenge, e.proof)
    if isinstance(e, SendPathChallenge):
        return PathChallengeMessage(e.session_id, e.nonce, e.state_version, e.timestamp_ms,
                                    e.challenge, e.to, e.mac)
    return ReattachAcceptMessage(e.session_id, e.nonce, e.state_version, e.timestamp_ms,
                                 e.to, e.proof)


@overload
def carried_effect(message: ReattachRequestMessage,
                   sender: TransportDescriptor) -> SendReattachRequest: ...
@overload
def carried_effect(message: PathChallengeMessage,
                   sender: TransportDescriptor) -> SendPathChallenge: ...
@overload
def carried_effect(message: ReattachAcceptMessage,
                   sender: TransportDescriptor) -> SendReattachAccept: ...
@overload
def carried_effect(message: ControlMessage, sender: TransportDescriptor) -> CarriedEffect: ...


def carried_effect(message: ControlMessage, sender: TransportDescriptor) -> CarriedEffect:
    """The effect the sender's core emitted for a control message, as far as the wire says.

    A request's `via` (the client's own socket) is not on the wire; `sender`, the address
    the datagram came from, stands in for it. Hand the result to `jumpvpn_core.peer` to
    get the event this side's core receives.
    """
    m = message
    if isinstance(m, ReattachRequestMessage):
        return SendReattachRequest(sender, m.session_id, m.nonce, m.state_version,
                                   m.timestamp_ms, m.candidate, m.challenge, m.proof)
    if isinstance(m, PathChallengeMessage):
        return SendPathChallenge(m.observed, m.session_id, m.challenge, m.nonce, m.state_version,
                                 m.timestamp_ms, m.mac)
    return SendReattachAccept(m.bound, m.session_id, m.nonce, m.state_version, m.timestamp_ms,
                              m.proof)
