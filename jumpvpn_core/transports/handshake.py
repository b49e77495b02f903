"""Reference key agreement: X25519 + HKDF-SHA256 -> (session secret, session id).

For the reference UDP driver and `jumpvpn demo` only. It is *unauthenticated*: neither side
proves who it is, so an active attacker on the path can sit in the middle. Production
embedders run their own authenticated handshake (Noise IK, TLS 1.3, IKEv2), export a
secret of at least 16 bytes from it, choose a 16-byte session id, and hand both to
`jumpvpn_core.new_session(...)`. See `docs/transports.md`.

Derivation (both sides compute the same):

    shared  = X25519(own private, peer public)           (all-zero result refused)
    okm     = HKDF-SHA256(ikm=shared, salt=client_pub || server_pub,
                          info="jumpvpn-core/v1 reference handshake", length=48)
    secret  = okm[0:32]      session_id = okm[32:48]

The data key that authenticates DATA and HEARTBEAT datagrams is derived from the core's
control key with its own HKDF label: a different key, yet one that any gateway node holding
the session's committed record (which carries the control key) can derive, so a node that
takes a session over from a shared store serves its data plane too (`UdpServer.adopt`).

Under load the server answers an initiation with a stateless cookie instead of a key
exchange (`CookieJar`, `HandshakeLoad`; WireGuard's cookie reply, QUIC's Retry):

    cookie = u8 generation || BLAKE2s(key=cookie secret, digest_size=15,
                                      person="jvpn-ck3", address || client_public)

where `address` is the initiation's source as `u8 len | host | u16 port`
(`cookie_address`) and `generation` names the secret (1 to 255, then 1 again). The label
is BLAKE2s's personalisation parameter, not a message prefix, so the message of an IPv4
source fits one 64-byte block. The cookie secret is 32 random bytes, replaced every
`rotation_ms`; a cookie made under the current or the previous secret is accepted, and
its first byte says which, so every initiation under load costs exactly one MAC. Keyed
BLAKE2s is the MAC WireGuard's cookies use; here it is also the cheapest MAC of the
standard library. So a forged initiation costs the server one short MAC, and only a
client that receives datagrams at its source address gets a key exchange.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Any

import attrs
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from jumpvpn_core.proof import SESSION_ID_SIZE
from jumpvpn_core.transports.errors import HandshakeError
from jumpvpn_core.transports.wire import (
    COOKIE_SIZE,
    KEY_SHARE_SIZE,
    NO_COOKIE,
    TAG_SIZE,
    DataMessage,
    HeartbeatMessage,
    encode,
)

__all__ = [
    "COOKIE_SECRET_SIZE",
    "DATA_KEY_SIZE",
    "SECRET_SIZE",
    "CookieJar",
    "HandshakeKeys",
    "HandshakeLoad",
    "Initiator",
    "authentic",
    "cookie_address",
    "data_tag",
    "derive_data_key",
    "respond",
    "seal",
]

SECRET_SIZE = 32
DATA_KEY_SIZE = 32
_INFO = b"jumpvpn-core/v1 reference handshake"
_DATA_SALT = b"jumpvpn-core/v1 reference data"
_DATA_INFO = b"jumpvpn-core/v1 data key"
#: BLAKE2s personalisation (8 bytes): the domain separation of cookie MACs.
_COOKIE_PERSON = b"jvpn-ck3"
COOKIE_SECRET_SIZE = 32


@attrs.frozen
class HandshakeKeys:
    """What the handshake produced. The secret never appears in repr."""

    session_id: bytes
    secret: bytes = attrs.field(repr=False)


def _public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _derive(private: X25519PrivateKey, peer_public: bytes, client_public: bytes,
            server_public: bytes) -> HandshakeKeys:
    if len(peer_public) != KEY_SHARE_SIZE:
        raise HandshakeError(f"key share must be {KEY_SHARE_SIZE} bytes")
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError:
        # cryptography refuses low-order points (an all-zero shared secret).
        raise HandshakeError("peer key share is a low-order point") from None
    okm = HKDF(algorithm=hashes.SHA256(), length=SECRET_SIZE + SESSION_ID_SIZE,
               salt=client_public + server_public, info=_INFO).derive(shared)
    return HandshakeKeys(session_id=okm[SECRET_SIZE:], secret=okm[:SECRET_SIZE])


class Initiator:
    """The client half: make a key share, then finish with the server's."""

    __slots__ = ("_private", "public")

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public: bytes = _public_bytes(self._private)

    def __repr__(self) -> str:
        return f"Initiator(public={self.public.hex()})"

    def finish(self, server_public: bytes, session_id: bytes) -> HandshakeKeys:
        """Derive the keys; raise `HandshakeError` if the server's session id disagrees."""
        keys = _derive(self._private, server_public, self.public, server_public)
        if keys.session_id != session_id:
            raise HandshakeError("server announced a different session id")
        return keys


def respond(client_public: bytes) -> tuple[bytes, HandshakeKeys]:
    """The server half: returns its public key share and the derived keys."""
    private = X25519PrivateKey.generate()
    server_public = _public_bytes(private)
    return server_public, _derive(private, client_public, client_public, server_public)


def derive_data_key(control_key: bytes, session_id: bytes) -> bytes:
    """The key that authenticates DATA and HEARTBEAT datagrams of one session, derived
    from the session's control key (`SessionState.ident.control_key`)."""
    return HKDF(algorithm=hashes.SHA256(), length=DATA_KEY_SIZE, salt=_DATA_SALT,
                info=_DATA_INFO + session_id).derive(control_key)


def data_tag(data_key: bytes, tag_input: bytes) -> bytes:
    """HMAC-SHA256 truncated to the wire's tag size."""
    mac = HMAC(data_key, hashes.SHA256())
    mac.update(tag_input)
    return mac.finalize()[:TAG_SIZE]


def seal(data_key: bytes, message: DataMessage | HeartbeatMessage) -> bytes:
    """The datagram of `message` with its tag computed under `data_key` (whatever tag
    `message` held is replaced)."""
    return encode(attrs.evolve(message, tag=data_tag(data_key, message.tag_input())))


def authentic(data_key: bytes, message: DataMessage | HeartbeatMessage) -> bool:
    """Whether `message`'s tag is right under `data_key` (constant-time comparison)."""
    return hmac.compare_digest(data_tag(data_key, message.tag_input()), message.tag)


def cookie_address(host: str, port: int) -> bytes:
    """The address a cookie covers: `u8 len | host | u16 port`, `host` the textual address
    the socket reported (ASCII; anything else is replaced, never raised on)."""
    raw = host.encode("ascii", "replace")[:255]
    return b"%c%b%b" % (len(raw), raw, _PORTS[port & 0xFFFF])


#: Every u16 port as its 2 big-endian bytes (the cookie is made per flooded datagram).
_PORTS = tuple(port.to_bytes(2, "big") for port in range(1 << 16))


class CookieJar:
    """Makes and checks handshake cookies under a rotating secret (stateless per client).

    `random(n)` supplies the secrets (default `os.urandom`); `rotation_ms` is how long one
    secret makes cookies. A cookie verifies under the current secret or the one before it,
    so a cookie stays good for at least `rotation_ms` and at most twice that. Addresses are
    `cookie_address(...)` bytes.

    A cookie is `u8 tag || MAC[15]`: the tag is the generation of the secret that made it
    (1 to 255, then 1 again; never 0, so `NO_COOKIE` names no secret) and the MAC keyed
    BLAKE2s with a 15-byte output, keyed once per secret (each cookie copies the keyed
    state). The tag names the one secret a cookie is checked under, so every initiation
    costs exactly one MAC, whatever its cookie says, and that MAC is also the reply when the
    cookie is wrong.
    """

    __slots__ = ("_current", "_current_tag", "_previous", "_previous_tag", "_random",
                 "_rotated_at", "rotation_ms")

    def __init__(self, rotation_ms: int,
                 random: Callable[[int], bytes] = os.urandom) -> None:
        if type(rotation_ms) is not int or rotation_ms < 1:
            raise ValueError("rotation_ms must be a positive int")
        self.rotation_ms = rotation_ms
        self._random = random
        self._current = self._keyed()
        self._current_tag = _TAGS[1]
        self._previous: Any = None
        self._previous_tag: bytes | None = None  # no previous secret: matches no cookie
        self._rotated_at: int | None = None

    def __repr__(self) -> str:
        return f"CookieJar(rotation_ms={self.rotation_ms})"

    def _keyed(self) -> Any:
        return hashlib.blake2s(key=self._random(COOKIE_SECRET_SIZE),
                               digest_size=COOKIE_SIZE - 1, person=_COOKIE_PERSON)

    def _next(self, keep_previous: bool) -> None:
        tag = self._current_tag
        if keep_previous:
            self._previous, self._previous_tag = self._current, tag
        else:
            self._previous, self._previous_tag = None, None
        self._current = self._keyed()
        self._current_tag = _TAGS[tag[0] % 255 + 1]

    def _rotate(self, now_ms: int) -> None:
        if self._rotated_at is None:
            self._rotated_at = now_ms
        elif now_ms - self._rotated_at >= 2 * self.rotation_ms:  # both secrets too old
            self._next(keep_previous=False)
            self._rotated_at = now_ms
        elif now_ms - self._rotated_at >= self.rotation_ms:
            self._next(keep_previous=True)
            self._rotated_at = now_ms

    def make(self, address: bytes, client_public: bytes, now_ms: int) -> bytes:
        """The cookie for an initiation of `client_public` from `address`."""
        self._rotate(now_ms)
        return self._current_tag + _mac(self._current, address, client_public)

    def screen(self, address: bytes, client_public: bytes, cookie: bytes,
               now_ms: int) -> bytes | None:
        """One call per initiation under load, one MAC: None if `cookie` verifies (as
        `check`), else the cookie to send back. That is the cookie under the secret the
        wrong one named when it names the previous secret (good until the next rotation:
        a client that retries later is answered under the current one), else `make`'s."""
        rotated_at = self._rotated_at
        if rotated_at is None or now_ms - rotated_at >= self.rotation_ms:
            self._rotate(now_ms)
        previous_tag = self._previous_tag
        if previous_tag is not None and cookie[:1] == previous_tag:
            expected = previous_tag + _mac(self._previous, address, client_public)
        else:
            expected = self._current_tag + _mac(self._current, address, client_public)
        if cookie != NO_COOKIE and hmac.compare_digest(expected, cookie):
            return None
        return expected

    def check(self, address: bytes, client_public: bytes, cookie: bytes, now_ms: int) -> bool:
        """Whether `cookie` was made here for `client_public` at `address` under the current
        or the previous secret (constant-time comparison). `NO_COOKIE` never verifies."""
        return self.screen(address, client_public, cookie, now_ms) is None


#: The one-byte generation tags (index 0 unused: no secret's tag is 0).
_TAGS = tuple(bytes((tag,)) for tag in range(256))


def _mac(keyed: Any, address: bytes, client_public: bytes) -> bytes:
    mac = keyed.copy()
    mac.update(address + client_public)
    digest: bytes = mac.digest()
    return digest


class HandshakeLoad:
    """How many handshake initiations arrived in the last second (sans-IO: told the time).

    Two one-second buckets; the estimate is the current bucket plus the previous one
    weighted by the part of it still inside the last second. `over(now_ms)` is whether it
    exceeds `per_second` (0: always).
    """

    __slots__ = ("_bucket", "_count", "_previous", "per_second")

    def __init__(self, per_second: int) -> None:
        if type(per_second) is not int or per_second < 0:
            raise ValueError("per_second must be a non-negative int")
        self.per_second = per_second
        self._bucket = 0
        self._count = 0
        self._previous = 0

    def _advance(self, now_ms: int) -> None:
        bucket = now_ms // 1000
        if bucket != self._bucket:
            self._previous = self._count if bucket == self._bucket + 1 else 0
            self._count = 0
            self._bucket = bucket

    def note(self, now_ms: int) -> None:
        """One initiation arrived at `now_ms`."""
        self._advance(now_ms)
        self._count += 1

    def arrive(self, now_ms: int) -> bool:
        """`note(now_ms)`, then `over(now_ms)`: the server's one call per initiation."""
        if now_ms // 1000 != self._bucket:
            self._advance(now_ms)
        self._count += 1
        if self.per_second == 0 or self._count > self.per_second:
            return True
        return self._count + self._previous * (1 - (now_ms % 1000) / 1000) > self.per_second

    def rate(self, now_ms: int) -> float:
        """Initiations in the last second (estimate)."""
        self._advance(now_ms)
        return self._count + self._previous * (1 - (now_ms % 1000) / 1000)

    def over(self, now_ms: int) -> bool:
        """Whether the server is under load at `now_ms`."""
        return self.per_second == 0 or self.rate(now_ms) > self.per_second
