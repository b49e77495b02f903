"""Sessions and events the benchmarks share, all reached through the public API.

Every state used by a benchmark is produced by `step()` from `new_session()`, so it is a
state the core can really be in. Addresses are documentation ranges (RFC 5737); nothing
here touches a network.
"""

from __future__ import annotations

from jumpvpn_core import (
    Attach,
    InboundTraffic,
    PacketLoss,
    Phase,
    Policy,
    ReattachRequest,
    Role,
    SessionState,
    TransportDescriptor,
    new_session,
    step,
)
from jumpvpn_core.peer import next_request
from jumpvpn_core.state import ServerSide

__all__ = [
    "CLIENT_LOCAL",
    "POLICY",
    "SECRET",
    "SERVER_SEEN",
    "SESSION_ID",
    "T0",
    "attached_client",
    "attached_server",
    "client_at_loss_edge",
    "full_window_server",
    "reattach_request",
]

T0 = 1_000_000
SESSION_ID = bytes(range(16))
SECRET = b"benchmark-session-secret-32bytes"
#: The client's local transport and the address the server sees it as.
CLIENT_LOCAL = TransportDescriptor.udp("192.0.2.10", 5000)
SERVER_SEEN = TransportDescriptor.udp("198.51.100.7", 40000)
#: One Policy object shared by every session (as a server would do).
POLICY = Policy()
#: Spacing of the reattaches that fill the replay window: just over the rate limit.
_FILL_SPACING_MS = POLICY.reattach_rate_window_ms // POLICY.reattach_rate_limit + 10


def attached_client(session_id: bytes = SESSION_ID, now: int = T0,
                    local: TransportDescriptor = CLIENT_LOCAL) -> SessionState:
    """A client session, ATTACHED on `local` at `now`."""
    state = new_session(Role.CLIENT, session_id, SECRET, now, POLICY)
    state, _ = step(state, Attach(now, local))
    assert state.phase is Phase.ATTACHED
    return state


def attached_server(session_id: bytes = SESSION_ID, now: int = T0,
                    seen: TransportDescriptor = SERVER_SEEN) -> SessionState:
    """A server session, ATTACHED to the client address `seen` at `now`."""
    state = new_session(Role.SERVER, session_id, SECRET, now, POLICY)
    state, _ = step(state, Attach(now, seen))
    assert state.phase is Phase.ATTACHED
    return state


def reattach_request(state: SessionState, now: int, nonce: int, *,
                     version: int | None = None, session_id: bytes | None = None,
                     source: TransportDescriptor | None = None) -> ReattachRequest:
    """A reattach request for server `state`, valid unless a keyword says otherwise.

    The proof is computed with the session's control key exactly as the client would.
    """
    source = state.link.active if source is None else source
    assert source is not None
    return next_request(state, now, source, nonce=nonce, state_version=version,
                        session_id=session_id)


def full_window_server(session_id: bytes = SESSION_ID,
                       seen: TransportDescriptor = SERVER_SEEN,
                       window: int = POLICY.replay_window_bits) -> tuple[SessionState, int]:
    """A server that accepted nonces 1..`window` (every bitmap bit set), and its clock.

    Each nonce is a real accepted reattach through `step()` (HMAC verified), spaced just
    over the rate limit, with traffic on the active path in between.
    """
    state = attached_server(session_id, T0, seen)
    now = T0
    for nonce in range(1, window + 1):
        now += _FILL_SPACING_MS
        state, _ = step(state, InboundTraffic(now, seen, 100))
        state, effects = step(state, reattach_request(state, now, nonce))
        assert state.phase is Phase.ATTACHED, effects
        assert len(effects) == 2, effects
    side = state.side
    assert isinstance(side, ServerSide)
    assert side.replay_top == window
    assert side.replay_bits == (1 << window) - 1
    return state, now


def client_at_loss_edge(now: int = T0) -> tuple[SessionState, int]:
    """A client ATTACHED with `loss_threshold - 1` consecutive losses: one more recovers."""
    state = attached_client(now=now)
    for _ in range(POLICY.loss_threshold - 1):
        now += 1
        state, _ = step(state, PacketLoss(now))
    assert state.phase is Phase.ATTACHED
    assert state.link.loss_streak == POLICY.loss_threshold - 1
    return state, now
