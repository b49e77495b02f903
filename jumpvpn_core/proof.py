"""Reattach proofs: HKDF-derived control key, canonical encoding, HMAC-SHA256.

The byte encoding is a public contract, specified in `specs/proof-encoding.md`:

    "JVPN" | u8 encoding version (1) | u8 message type | session id (16 bytes)
    | u64 nonce | u64 state_version | u64 timestamp_ms
    | u8 len(kind) | kind | u16 len(host) | host | u16 port
    | u8 len(challenge) | challenge

All integers are big-endian and unsigned. The proof is HMAC-SHA256 over that encoding
with the control key, verified in constant time.

Secrets (the session secret and the control key) are only ever passed in, never returned
in repr, effects or exception messages.
"""

from __future__ import annotations

import enum
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "CHALLENGE_SIZE",
    "CONTROL_KEY_SIZE",
    "PROOF_ENCODING_VERSION",
    "PROOF_SIZE",
    "SESSION_ID_SIZE",
    "U64_MAX",
    "MessageType",
    "challenge_mac",
    "compute_proof",
    "derive_challenge",
    "derive_control_key",
    "encode_proof_input",
    "keyed_mac",
    "verify_challenge_mac",
    "verify_proof",
]

PROOF_ENCODING_VERSION = 1
SESSION_ID_SIZE = 16
CONTROL_KEY_SIZE = 32
PROOF_SIZE = 32
CHALLENGE_SIZE = 16
_MAGIC = b"JVPN"
_HKDF_SALT = b"jumpvpn-core/v1 hkdf salt"
_HKDF_INFO = b"jumpvpn-core/v1 control key"
U64_MAX = (1 << 64) - 1
"""The largest unsigned 64-bit integer: the bound of every nonce, version and time."""
# Performance: the fixed-size head of the proof input (magic, encoding version, message
# type, session id, nonce, state_version, timestamp_ms) packed by one precompiled struct.
_HEADER = struct.Struct(">4sBB16sQQQ")
_CHALLENGE_LENGTH = tuple(bytes((length,)) for length in range(256))
# One algorithm object for every HMAC: it is an immutable descriptor of SHA-256.
_SHA256 = hashes.SHA256()


class MessageType(enum.IntEnum):
    """What a proof vouches for. Part of the encoding, so a proof cannot be re-purposed."""

    REATTACH_REQUEST = 1
    REATTACH_ACCEPT = 2
    PATH_CHALLENGE = 3  # the challenge derivation and the challenge's MAC


def derive_control_key(session_secret: bytes, session_id: bytes) -> bytes:
    """Derive the 32-byte control key bound to `session_id` from the session secret.

    HKDF-SHA256 with a fixed salt and the session id in `info`, so one secret shared by two
    sessions still yields unrelated keys.
    """
    if len(session_secret) < 16:
        raise ValueError("session secret must be at least 16 bytes")
    if len(session_id) != SESSION_ID_SIZE:
        raise ValueError(f"session id must be {SESSION_ID_SIZE} bytes")
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=CONTROL_KEY_SIZE,
        salt=_HKDF_SALT,
        info=_HKDF_INFO + session_id,
    )
    return hkdf.derive(session_secret)


def encode_proof_input(
    message_type: MessageType,
    session_id: bytes,
    nonce: int,
    state_version: int,
    timestamp_ms: int,
    transport: TransportDescriptor,
    challenge: bytes = b"",
) -> bytes:
    """The canonical bytes a proof covers (see the module docstring)."""
    if len(session_id) != SESSION_ID_SIZE:
        raise ValueError(f"session id must be {SESSION_ID_SIZE} bytes")
    if len(challenge) > 255:
        raise ValueError("challenge longer than 255 bytes")
    try:
        header = _HEADER.pack(_MAGIC, PROOF_ENCODING_VERSION, message_type, session_id, nonce,
                              state_version, timestamp_ms)
    except struct.error:
        # Same error, same message as before the header was packed in one call.
        for name, value in (("nonce", nonce), ("state_version", state_version),
                            ("timestamp_ms", timestamp_ms)):
            if not 0 <= value <= U64_MAX:
                raise ValueError(f"{name} does not fit in an unsigned 64-bit integer") from None
        raise
    return header + transport.encode() + _CHALLENGE_LENGTH[len(challenge)] + challenge


def _mac(key: bytes, data: bytes, keyed: HMAC | None = None) -> HMAC:
    mac = HMAC(key, _SHA256) if keyed is None else keyed.copy()
    mac.update(data)
    return mac


def keyed_mac(control_key: bytes) -> HMAC:
    """An HMAC-SHA256 context keyed with `control_key`, to be `.copy()`-ed per proof.

    Performance: keying a context costs about twice what a `.copy()` of a keyed one does, so
    a step that computes or verifies several proofs with one key keys it once. The context
    lives only for that step; it is never stored in a state (it is neither comparable nor
    picklable, and keeping one per session would cost about 690 B of RSS each).
    """
    return HMAC(control_key, _SHA256)


def compute_proof(
    control_key: bytes,
    message_type: MessageType,
    session_id: bytes,
    nonce: int,
    state_version: int,
    timestamp_ms: int,
    transport: TransportDescriptor,
    challenge: bytes = b"",
    keyed: HMAC | None = None,
) -> bytes:
    """HMAC-SHA256 over the canonical encoding.

    `keyed` (from `keyed_mac(control_key)`, optional) is copied instead of keying a new
    context; it is left unused, so it can serve further proofs.
    """
    data = encode_proof_input(
        message_type, session_id, nonce, state_version, timestamp_ms, transport, challenge
    )
    return _mac(control_key, data, keyed).finalize()


def verify_proof(
    control_key: bytes,
    proof: bytes,
    message_type: MessageType,
    session_id: bytes,
    nonce: int,
    state_version: int,
    timestamp_ms: int,
    transport: TransportDescriptor,
    challenge: bytes = b"",
    keyed: HMAC | None = None,
) -> bool:
    """True iff `proof` is the HMAC of the encoding. Constant time in the proof bytes.

    `keyed` is as in `compute_proof`.
    """
    try:
        data = encode_proof_input(
            message_type, session_id, nonce, state_version, timestamp_ms, transport, challenge
        )
    except ValueError:
        return False
    try:
        _mac(control_key, data, keyed).verify(proof)
    except InvalidSignature:
        return False
    return True


def derive_challenge(control_key: bytes, session_id: bytes, counter: int,
                     keyed: HMAC | None = None) -> bytes:
    """A path challenge: unpredictable without the key, unique per counter, no entropy read.

    Using the control key as the source keeps `step()` pure: the randomness behind a
    challenge is the session secret, which arrived from the driver at session creation.
    """
    data = _MAGIC + bytes((PROOF_ENCODING_VERSION, int(MessageType.PATH_CHALLENGE)))
    data += session_id + counter.to_bytes(8, "big")
    return _mac(control_key, data, keyed).finalize()[:CHALLENGE_SIZE]


def challenge_mac(control_key: bytes, session_id: bytes, nonce: int, state_version: int,
                  timestamp_ms: int, observed: TransportDescriptor, challenge: bytes,
                  keyed: HMAC | None = None) -> bytes:
    """The MAC that lets a client tell its server's path challenge from any other.

    HMAC-SHA256 under the control key over the canonical encoding with message type
    `PATH_CHALLENGE`: `nonce` is the nonce of the verified request the validation answers
    (0 when the server opened it on unproven traffic), `state_version` the server's binding
    version, `timestamp_ms` the server's clock when it sent the challenge, the transport
    field the observed address the challenge was sent to, and the challenge itself.
    """
    return compute_proof(control_key, MessageType.PATH_CHALLENGE, session_id, nonce,
                         state_version, timestamp_ms, observed, challenge, keyed)


def verify_challenge_mac(control_key: bytes, mac: bytes, session_id: bytes, nonce: int,
                         state_version: int, timestamp_ms: int,
                         observed: TransportDescriptor, challenge: bytes) -> bool:
    """True iff `mac` is `challenge_mac(...)` of these fields. Constant time in `mac`."""
    return verify_proof(control_key, mac, MessageType.PATH_CHALLENGE, session_id, nonce,
                        state_version, timestamp_ms, observed, challenge)
