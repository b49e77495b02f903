"""The simulator's attackers: what one attempt aimed at a session's server looks like.

An attacker sits off-path at a spoofed address. A *replay* re-sends the last valid request
the session's client put on the wire; a *forge* (or a *flood*, the same at a high rate)
sends a fresh nonce at the server's current version with a random proof: whoever guessed
the version still lacks the key. The messages are built by `jumpvpn_core.peer`, the one
module that plays the other end of the link.
"""

from __future__ import annotations

import random

from jumpvpn_core.events import ReattachRequest
from jumpvpn_core.peer import Peer, request_received
from jumpvpn_core.proof import PROOF_SIZE
from jumpvpn_core.sim.session import SimSession
from jumpvpn_core.state import ServerSide
from jumpvpn_core.transport import TransportDescriptor

__all__ = ["REQUEST_BYTES", "attack_request"]

#: The size the simulator gives every reattach request datagram.
REQUEST_BYTES = 160


def attack_request(kind: str, number: int, session: SimSession, now_ms: int,
                   rng: random.Random) -> ReattachRequest:
    """The request attacker `number` of `kind` sends to `session`'s server at `now_ms`.

    A replay with nothing captured yet is sent as a forgery.
    """
    spoofed = TransportDescriptor.udp("198.51.100.66", 6_000 + number)
    captured = session.captured
    if kind == "replay" and captured is not None:
        return request_received(captured, now_ms, spoofed, REQUEST_BYTES)
    side = session.server.side
    version = side.binding_version if isinstance(side, ServerSide) else 0
    nonce = 1 + rng.randrange(1 << 40)
    # The forger knows the session id, not the key.
    forger = Peer(session.session_id, b"")
    return forger.request(now_ms, spoofed, nonce=nonce, state_version=version, size=REQUEST_BYTES,
                          forged_proof=rng.randbytes(PROOF_SIZE))
