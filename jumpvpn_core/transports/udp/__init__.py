"""asyncio UDP drivers for both roles of the sans-IO core.

The drivers are thin: they turn datagrams and timers into core events, call `step()`, and
execute the effects it returns, in order. They own all I/O and the clock; the core owns
every decision. One job per module:

* `endpoint`  sockets, the clock (`loop.time()` as integer ms, here and only here), the one
              receive path (decode, drop and count by reason; a bad datagram never stops
              the loop) and the deadline timer (`loop.call_at`; nothing polls).
* `client`    `UdpClient`: one session, its sockets, the sequenced test payload stream;
              loss detection is the sans-IO `jumpvpn_core.transports.loss.LossDetector`.
* `server`    `UdpServer`: one socket, many sessions behind a `SessionHost`; payload
              traffic (acknowledgements) goes only to validated bindings; the core is the
              one amplification accountant, fed real datagram sizes.
* `hosts`     `SessionHost` and its implementations: `LocalSessionHost` (a dict) and
              `GatewaySessionHost` (a `jumpvpn_core.gateway.Gateway`), each with a
              deadline heap so the server's timer is armed at the earliest deadline.

Received control messages become events through `jumpvpn_core.peer`, the one module that
plays the other end of the link. The off-path attacker used by tests and the demo is
`jumpvpn_core.testing.attacker.RawUdpPeer`.

Reference quality: one process, one clock. Proof freshness compares client and server
timestamps, so across hosts an embedder must use a shared time base.
"""

from __future__ import annotations

import importlib
from typing import Any

from jumpvpn_core.transports.udp.client import ClientConfig, UdpClient
from jumpvpn_core.transports.udp.endpoint import Observer, Tap
from jumpvpn_core.transports.udp.hosts import (
    GatewaySessionHost,
    LocalSessionHost,
    SessionHost,
    SessionTableError,
)
from jumpvpn_core.transports.udp.server import ServerConfig, UdpServer

__all__ = [
    "ClientConfig",
    "GatewaySessionHost",
    "LocalSessionHost",
    "Observer",
    "ServerConfig",
    "SessionHost",
    "SessionTableError",
    "Tap",
    "UdpClient",
    "UdpServer",
]


def __getattr__(name: str) -> Any:
    # Deprecated spelling: `RawUdpPeer` moved to `jumpvpn_core.testing.attacker`. Resolved
    # on first use only, so that this package never imports the testing kit.
    if name == "RawUdpPeer":
        return importlib.import_module("jumpvpn_core.testing.attacker").RawUdpPeer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
