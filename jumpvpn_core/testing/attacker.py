"""An off-path attacker on real UDP: a bare socket that sends arbitrary bytes.

`RawUdpPeer` replays captured datagrams from an address of its own, sends garbage, and
counts what comes back, so tests and `jumpvpn demo` can measure what the reference server
sends to an address it never validated. It builds no proofs (only the core and
`jumpvpn_core.peer` do); it only repeats bytes it was given.

Needs nothing beyond the base install (no Hypothesis), so the demo can use it.
"""

from __future__ import annotations

from jumpvpn_core.transport import TransportDescriptor
from jumpvpn_core.transports.udp.endpoint import AUDIT_KEEP, Endpoint, open_endpoint

__all__ = ["RawUdpPeer"]


class RawUdpPeer:
    """A bare UDP socket that sends arbitrary bytes and counts what it receives.

    Used to play an off-path attacker: replay a captured datagram from another port, and
    measure how many bytes the server sends back to an address it never validated.
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self.bytes_sent = 0
        self.bytes_received = 0
        #: The first datagrams received (at most 10,000).
        self.received: list[bytes] = []

    @classmethod
    async def open(cls, host: str = "127.0.0.1", port: int = 0) -> RawUdpPeer:
        """Bind the socket (`AddressInUseError` if taken)."""
        opened: list[RawUdpPeer] = []
        endpoint = await open_endpoint(host, port, lambda data, _a, _e: opened[0]._count(data))
        opened.append(cls(endpoint))
        return opened[0]

    def _count(self, data: bytes) -> None:
        self.bytes_received += len(data)
        if len(self.received) < AUDIT_KEEP:
            self.received.append(data)

    @property
    def address(self) -> TransportDescriptor:
        """The address the peer sends from."""
        return self._endpoint.descriptor

    def send(self, datagram: bytes, to: TransportDescriptor) -> None:
        """Send `datagram` to `to` and count its bytes."""
        if self._endpoint.send(datagram, to):
            self.bytes_sent += len(datagram)

    def close(self) -> None:
        """Close the socket."""
        self._endpoint.close()
