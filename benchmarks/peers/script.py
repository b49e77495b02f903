"""The lifecycle every implementation runs, and the values they share.

Client and server each start in BIRTH. Then:

1. attach: client binds its local transport, server binds the address it sees.
2. loss -> recovering: the client counts `LOSS_BURST` losses in one report, crosses the
   threshold, enters RECOVERING and emits a reattach request (computes one HMAC).
3. reattach accepted: the server checks session id, rate limit, replay window, version and
   freshness, verifies the HMAC, marks the nonce, bumps its version and computes the accept
   proof (one HMAC); the client checks session id, pending nonce, version and verifies the
   accept proof (one HMAC), then is ATTACHED again.
4. loss again: the client enters RECOVERING again (one more request HMAC).
5. degrade: traffic is still heard on the active path, and when the recovery window ends
   the client is DEGRADED (partial viability).
6. terminate: both sides close.

Five HMAC operations per lifecycle on every implementation.
"""

from __future__ import annotations

from jumpvpn_core import Policy, TransportDescriptor

__all__ = [
    "CLIENT_LOCAL",
    "LOSS_BURST",
    "POLICY",
    "SECRET",
    "SERVER_SEEN",
    "SESSION_ID",
    "T_ACCEPT",
    "T_ATTACH",
    "T_CLOSE",
    "T_DEGRADE",
    "T_LOSS_1",
    "T_LOSS_2",
    "T_TRAFFIC",
]

POLICY = Policy()
SESSION_ID = bytes(range(16, 32))
SECRET = b"lifecycle-session-secret-32bytes"
CLIENT_LOCAL = TransportDescriptor.udp("192.0.2.20", 5000)
SERVER_SEEN = TransportDescriptor.udp("198.51.100.20", 41000)
LOSS_BURST = POLICY.loss_threshold

T_ATTACH = 2_000_000
T_LOSS_1 = T_ATTACH + 10
T_ACCEPT = T_LOSS_1 + 5
T_LOSS_2 = T_ACCEPT + 10
T_TRAFFIC = T_LOSS_2 + 10
T_DEGRADE = T_LOSS_2 + POLICY.max_recovery_window_ms
T_CLOSE = T_DEGRADE + 1
