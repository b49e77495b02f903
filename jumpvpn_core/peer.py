"""The other end of the link: the one module that plays the peer.

Every driver, the simulator, the scenario runner, the explorer, the stateful tests and the
vector generator meet the same two questions, and this module is the only place that
answers them:

1. **Delivery.** When the world carries one of our effects to the other side, which event
   does the other side's core receive? `request_received`, `challenge_received`,
   `accept_received` (or `received`, which dispatches on the effect) turn a
   `SendReattachRequest`, `SendPathChallenge` or `SendReattachAccept` into the peer's
   `ReattachRequest`, `PathChallengeReceived` or `ReattachAccepted`, given only the facts
   the world adds: the time of arrival, where the datagram was seen, its size.

2. **Messages the other side sends.** `Peer` holds a session's id and control key and builds
   honest requests, path challenges and accepts, or forged ones (any proof or MAC the
   caller chooses, `FORGED_PROOF` by default). The `next_request`, `answer_challenge`,
   `challenge_pending` and `accept_pending` helpers build
   "what an honest peer would send next" from the receiving side's own state, as tests,
   the explorer and the vector generator need.

Nothing outside the core (`machine`) and this module computes a proof for the other side.

The module is pure: it reads no clock, randomness, files or network (it sits inside the
core's import contract). The control key is never shown in a repr.
"""

from __future__ import annotations

import attrs

from jumpvpn_core.effects import (
    Effect,
    SendPathChallenge,
    SendReattachAccept,
    SendReattachRequest,
)
from jumpvpn_core.events import (
    PathChallengeReceived,
    ReattachAccepted,
    ReattachRequest,
)
from jumpvpn_core.proof import (
    PROOF_SIZE,
    MessageType,
    challenge_mac,
    compute_proof,
    derive_control_key,
)
from jumpvpn_core.state import ClientSide, ServerSide, SessionState
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "FORGED_PROOF",
    "Peer",
    "accept_pending",
    "accept_received",
    "answer_challenge",
    "challenge_pending",
    "challenge_received",
    "next_request",
    "received",
    "request_received",
]

FORGED_PROOF = bytes(PROOF_SIZE)
"""The proof (or challenge MAC) a forger without the key sends by default: 32 zero bytes."""


# --- 1. delivery: the event the peer receives for one of our effects ----------------------------


def request_received(sent: SendReattachRequest, now_ms: int,
                     source: TransportDescriptor | None = None,
                     size: int = 0) -> ReattachRequest:
    """The server's view of a client's `SendReattachRequest`.

    `source` is the address the server saw the datagram come from (after any NAT); by
    default the client's own `via`. `size` is the datagram's size in bytes.
    """
    return ReattachRequest(now_ms, sent.via if source is None else source, sent.session_id,
                           sent.nonce, sent.state_version, sent.timestamp_ms, sent.candidate,
                           sent.proof, sent.challenge, size)


def challenge_received(sent: SendPathChallenge, now_ms: int,
                       via: TransportDescriptor) -> PathChallengeReceived:
    """The client's view of a server's `SendPathChallenge`, arriving on local transport
    `via`; the server's target address is what the client learns it is seen as. The MAC
    and the fields it covers travel unchanged."""
    return PathChallengeReceived(now_ms, via, sent.challenge, sent.to, sent.nonce,
                                 sent.state_version, sent.timestamp_ms, sent.mac)


def accept_received(sent: SendReattachAccept, now_ms: int,
                    via: TransportDescriptor) -> ReattachAccepted:
    """The client's view of a server's `SendReattachAccept`, arriving on local transport
    `via`; the bound address is the server's target address."""
    return ReattachAccepted(now_ms, via, sent.session_id, sent.nonce, sent.state_version,
                            sent.timestamp_ms, sent.to, sent.proof)


def received(effect: Effect, now_ms: int, at: TransportDescriptor | None = None,
             size: int = 0) -> ReattachRequest | PathChallengeReceived | ReattachAccepted:
    """The event the other side receives for a message effect.

    `at` is where the datagram was seen: the server's observed source for a request (the
    client's `via` when omitted), the client's local transport for a challenge or accept
    (the effect's target address when omitted). Raises `TypeError` for an effect that is
    not a message to the peer (audit records, binds, session ends).
    """
    if isinstance(effect, SendReattachRequest):
        return request_received(effect, now_ms, at, size)
    if isinstance(effect, SendPathChallenge):
        return challenge_received(effect, now_ms, effect.to if at is None else at)
    if isinstance(effect, SendReattachAccept):
        return accept_received(effect, now_ms, effect.to if at is None else at)
    raise TypeError(f"{type(effect).__name__} is not a message to the peer")


# --- 2. messages the other side sends ----------------------------------------------------------


@attrs.frozen
class Peer:
    """The other side of one session: its id and control key, and the messages it sends.

    Build one with `Peer.from_secret(secret, session_id)` (what the peer itself knows) or
    `Peer.of(state)` (the peer of a session state, for tests and tools).
    """

    session_id: bytes
    control_key: bytes = attrs.field(repr=False)

    @classmethod
    def from_secret(cls, secret: bytes, session_id: bytes) -> Peer:
        """The peer that shares `secret` for `session_id` (the control key is derived)."""
        return cls(session_id, derive_control_key(secret, session_id))

    @classmethod
    def of(cls, state: SessionState) -> Peer:
        """The peer of `state`: same session id and control key."""
        return cls(state.ident.session_id, state.ident.control_key)

    def request_proof(self, nonce: int, state_version: int, timestamp_ms: int,
                      candidate: TransportDescriptor, challenge: bytes = b"",
                      session_id: bytes | None = None) -> bytes:
        """The honest proof of a reattach request."""
        return compute_proof(self.control_key, MessageType.REATTACH_REQUEST,
                             self.session_id if session_id is None else session_id,
                             nonce, state_version, timestamp_ms, candidate, challenge)

    def accept_proof(self, nonce: int, state_version: int, timestamp_ms: int,
                     bound: TransportDescriptor, session_id: bytes | None = None) -> bytes:
        """The honest proof of a reattach accept."""
        return compute_proof(self.control_key, MessageType.REATTACH_ACCEPT,
                             self.session_id if session_id is None else session_id,
                             nonce, state_version, timestamp_ms, bound)

    def challenge_mac(self, challenge: bytes, observed: TransportDescriptor, nonce: int,
                      state_version: int, timestamp_ms: int) -> bytes:
        """The honest MAC of a path challenge (see `proof.challenge_mac`)."""
        return challenge_mac(self.control_key, self.session_id, nonce, state_version,
                             timestamp_ms, observed, challenge)

    def challenge(self, now_ms: int, via: TransportDescriptor, *, challenge: bytes,
                  observed: TransportDescriptor, nonce: int = 0, state_version: int,
                  timestamp_ms: int | None = None,
                  forged_mac: bytes | None = None) -> PathChallengeReceived:
        """A path challenge as it arrives at the client on local transport `via`.

        Authenticated honestly unless `forged_mac` is given (then that MAC is sent as is:
        what anyone without the key can send). `nonce` is the client request the challenge
        answers (0: a validation the server opened on traffic alone); `timestamp_ms`
        defaults to `now_ms`.
        """
        ts = now_ms if timestamp_ms is None else timestamp_ms
        mac = (self.challenge_mac(challenge, observed, nonce, state_version, ts)
               if forged_mac is None else forged_mac)
        return PathChallengeReceived(now_ms, via, challenge, observed, nonce, state_version,
                                     ts, mac)

    def request(self, now_ms: int, source: TransportDescriptor, *, nonce: int,
                state_version: int, timestamp_ms: int | None = None,
                candidate: TransportDescriptor | None = None, challenge: bytes = b"",
                size: int = 0, session_id: bytes | None = None,
                forged_proof: bytes | None = None) -> ReattachRequest:
        """A reattach request as it arrives at the server from `source`.

        Signed honestly unless `forged_proof` is given (then that proof is sent as is).
        `timestamp_ms` defaults to `now_ms`, `candidate` to `source`, `session_id` to the
        peer's own.
        """
        ts = now_ms if timestamp_ms is None else timestamp_ms
        bound = source if candidate is None else candidate
        sid = self.session_id if session_id is None else session_id
        proof = (self.request_proof(nonce, state_version, ts, bound, challenge, sid)
                 if forged_proof is None else forged_proof)
        return ReattachRequest(now_ms, source, sid, nonce, state_version, ts, bound, proof,
                               challenge, size)

    def accept(self, now_ms: int, via: TransportDescriptor, *, nonce: int, state_version: int,
               bound: TransportDescriptor, timestamp_ms: int | None = None,
               session_id: bytes | None = None,
               forged_proof: bytes | None = None) -> ReattachAccepted:
        """A reattach accept as it arrives at the client on local transport `via`.

        Signed honestly unless `forged_proof` is given. `timestamp_ms` defaults to `now_ms`.
        """
        ts = now_ms if timestamp_ms is None else timestamp_ms
        sid = self.session_id if session_id is None else session_id
        proof = (self.accept_proof(nonce, state_version, ts, bound, sid)
                 if forged_proof is None else forged_proof)
        return ReattachAccepted(now_ms, via, sid, nonce, state_version, ts, bound, proof)


# --- what an honest peer sends next, read from the receiving side's state ---------------------


def _server_side(state: SessionState) -> ServerSide:
    side = state.side
    if not isinstance(side, ServerSide):
        raise TypeError("expected a server session state")
    return side


def _client_side(state: SessionState) -> ClientSide:
    side = state.side
    if not isinstance(side, ClientSide):
        raise TypeError("expected a client session state")
    return side


def next_request(server: SessionState, now_ms: int, source: TransportDescriptor, *,
                 nonce: int | None = None, state_version: int | None = None,
                 timestamp_ms: int | None = None, candidate: TransportDescriptor | None = None,
                 challenge: bytes = b"", size: int = 0, session_id: bytes | None = None,
                 forged_proof: bytes | None = None) -> ReattachRequest:
    """The request an honest client sends next to `server`: the next nonce above the
    server's replay window top, at the server's binding version (each overridable, to
    build stale, replayed or forged variants)."""
    side = _server_side(server)
    return Peer.of(server).request(
        now_ms, source,
        nonce=side.replay_top + 1 if nonce is None else nonce,
        state_version=side.binding_version if state_version is None else state_version,
        timestamp_ms=timestamp_ms, candidate=candidate, challenge=challenge, size=size,
        session_id=session_id, forged_proof=forged_proof)


def answer_challenge(server: SessionState, now_ms: int,
                     source: TransportDescriptor | None = None, size: int = 0,
                     forged_proof: bytes | None = None) -> ReattachRequest:
    """The honest answer to `server`'s pending path challenge: a request for the address
    under validation, echoing the challenge (from that address unless `source` is given).
    Raises `ValueError` when no path challenge is pending."""
    pending = _server_side(server).pending
    if pending is None:
        raise ValueError("no path challenge is pending")
    return next_request(server, now_ms, pending.address if source is None else source,
                        candidate=pending.address, challenge=pending.challenge, size=size,
                        forged_proof=forged_proof)


def challenge_pending(client: SessionState, now_ms: int, challenge: bytes, *,
                      observed: TransportDescriptor, via: TransportDescriptor | None = None,
                      nonce: int | None = None, state_version: int | None = None,
                      timestamp_ms: int | None = None,
                      forged_mac: bytes | None = None) -> PathChallengeReceived:
    """The path challenge an honest server sends `client` about its pending request: bound
    to that request's nonce, at the client's known binding version, arriving on the
    request's `via`. Without a pending request it is a challenge the server opened on
    traffic alone (nonce 0) arriving on the active transport. Every field can be
    overridden; `forged_mac` makes it a spoofed one. Raises `ValueError` when no transport
    can be inferred."""
    side = _client_side(client)
    pending = side.pending
    if pending is not None:
        default_via, default_nonce = pending.via, pending.nonce
    else:
        fallback = client.link.active if via is None else via
        if fallback is None:
            raise ValueError("no pending request and no active transport to challenge on")
        default_via, default_nonce = fallback, 0
    return Peer.of(client).challenge(
        now_ms, default_via if via is None else via, challenge=challenge, observed=observed,
        nonce=default_nonce if nonce is None else nonce,
        state_version=side.known_version if state_version is None else state_version,
        timestamp_ms=timestamp_ms, forged_mac=forged_mac)


def accept_pending(client: SessionState, now_ms: int, *, via: TransportDescriptor | None = None,
                   nonce: int | None = None, state_version: int | None = None,
                   bound: TransportDescriptor | None = None, session_id: bytes | None = None,
                   forged_proof: bytes | None = None) -> ReattachAccepted:
    """The server's honest accept of `client`'s pending reattach request: same nonce, the
    next binding version, bound to the requested candidate, arriving on the request's `via`.

    Without a pending request, the fields fall back to the client's next nonce and its
    active transport (a stray accept, for tests); every field can be overridden.
    Raises `ValueError` when no transport can be inferred.
    """
    side = _client_side(client)
    pending = side.pending
    if pending is not None:
        default_via, default_bound, default_nonce = pending.via, pending.candidate, pending.nonce
    else:
        fallback = client.link.active if via is None else via
        if fallback is None:
            raise ValueError("no pending request and no active transport to answer on")
        default_via, default_bound, default_nonce = fallback, fallback, side.next_nonce
    return Peer.of(client).accept(
        now_ms, default_via if via is None else via,
        nonce=default_nonce if nonce is None else nonce,
        state_version=side.known_version + 1 if state_version is None else state_version,
        bound=default_bound if bound is None else bound, session_id=session_id,
        forged_proof=forged_proof)
