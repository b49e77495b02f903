"""Typed errors of the reference transports. None of them carries key material."""

from __future__ import annotations

from jumpvpn_core.errors import JumpVpnError

__all__ = ["AddressInUseError", "HandshakeError", "HandshakeTimeoutError", "TransportError"]


class TransportError(JumpVpnError, OSError):
    """A socket could not be opened or used."""


class AddressInUseError(TransportError):
    """The local address and port asked for are already bound by another socket."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        super().__init__(f"udp {host}:{port} is already in use; pick another port or 0")


class HandshakeError(JumpVpnError):
    """The reference key agreement failed (bad key share, mismatched session id)."""


class HandshakeTimeoutError(HandshakeError):
    """The server never answered the reference handshake within the configured bound."""
