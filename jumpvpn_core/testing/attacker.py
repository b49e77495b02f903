"""An off-path attacker on real UDP: a bare socket that sends arbitrary bytes.

`RawUdpPeer` replays captured datagrams from an address of its own, sends garbage, and
counts what comes back, so tests and `jumpvpn demo` can measure what the reference server
sends to an address it never validated. It builds no proofs (only the core and
`jumpvpn_core.peer` do); it only repeats bytes it was given.

Needs nothing beyond the base install (no Hypothesis), so the demo can use it.
"""

from __future__ import annotations

from typing import Any

from jumpvpn_core.transport import TransportDescriptor
from jumpvpn_core.transports.errors import TransportError
from jumpvpn_core.transports.udp.endpoint import AUDIT_KEEP, Endpoint, open_endpoint

__all__ = ["RawUdpPeer"]


class RawUdpPeer:
    """A bare UDP socket that sends arbitrary bytes and counts what it receives.

    Used to play an off-path attacker: replay a captured datagram from another port, and
    measure how many bytes the server sends back to an address it never validated.
    """

    def __init__(self) -> None:
        self._endpoint: Endpoint | None = None
        self.bytes_sent = 0
        self.bytes_received = 0
        #: The first datagrams received (at most 10,000).
        self.received: list[bytes] = []

    @classmethod
    async def open(cls, host: str = "127.0.0.1", port: int = 0) -> RawUdpPeer:
        """Bind the socket (`AddressInUseError` if taken)."""
        peer = cls()
        peer._endpoint = await open_endpoint(host, port, peer._receive)
        return peer

    def _receive(self, data: bytes, _addr: tuple[Any, ...], _endpoint: Endpoint) -> None:
        self.bytes_received += len(data)
        if len(self.received) < AUDIT_KEEP:
            self.received.append(data)

    @property
    def _socket(self) -> Endpoint:
        if self._endpoint is None:
            raise TransportError("the peer has no socket: create it with RawUdpPeer.open()")
        return self._endpoint

    @property
    def address(self) -> TransportDescriptor:
        """The address the peer sends from."""
        return self._socket.descriptor

    def send(self, datagram: bytes, to: TransportDescriptor) -> None:
        """Send `datagram` to `to` and count its bytes."""
        if self._socket.send(datagram, to):
            self.bytes_sent += len(datagram)

    def close(self) -> None:
        """Close the socket."""
        self._socket.close()
