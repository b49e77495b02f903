"""Transport descriptors: how the core names a path without ever touching one."""

from __future__ import annotations

import enum
import ipaddress
from typing import Any

import attrs

from jumpvpn_core.errors import InvalidTransportError

__all__ = ["TransportDescriptor", "TransportKind"]

_MAX_HOST_LEN = 253


class TransportKind(enum.StrEnum):
    """The transport families a descriptor may name. Values are a public contract."""

    UDP = "udp"
    TCP = "tcp"
    QUIC = "quic"


# Performance: the length-prefixed kind, as it appears in every proof encoding, looked up
# instead of rebuilt (the enum's `.value` alone costs about 200 ns per access).
_KIND_ENCODING: dict[TransportKind, bytes] = {
    kind: len(kind.value).to_bytes(1, "big") + kind.value.encode("ascii") for kind in TransportKind
}


def _check_kind(_inst: object, _attr: object, value: Any) -> None:
    if not isinstance(value, TransportKind):
        raise InvalidTransportError(
            f"transport kind must be one of {[k.value for k in TransportKind]}, got {value!r}"
        )


def _check_host(_inst: object, _attr: object, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidTransportError(f"transport host must be a non-empty string, got {value!r}")
    if len(value) > _MAX_HOST_LEN:
        raise InvalidTransportError(f"transport host longer than {_MAX_HOST_LEN} characters")
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    for label in labels:
        if not label or len(label) > 63 or not all(c.isalnum() or c == "-" for c in label):
            raise InvalidTransportError(
                f"transport host {value!r} is neither an IP address nor a DNS name"
            )
        if not label.isascii():
            raise InvalidTransportError(f"transport host {value!r} is not ASCII")


def _check_port(_inst: object, _attr: object, value: Any) -> None:
    if type(value) is not int or not 1 <= value <= 65535:
        raise InvalidTransportError(f"transport port must be an int in 1..65535, got {value!r}")


@attrs.frozen(slots=True, cache_hash=True)
class TransportDescriptor:
    """One path: a kind, a host and a port, as a driver sees it.

    Descriptors compare by value; the core keeps them in its state and in effects so the
    driver knows which socket to use. Construction validates, so a malformed descriptor
    can never reach `step()`.
    """

    kind: TransportKind = attrs.field(validator=_check_kind)
    host: str = attrs.field(validator=_check_host)
    port: int = attrs.field(validator=_check_port)

    @classmethod
    def udp(cls, host: str, port: int) -> TransportDescriptor:
        """Shorthand for a UDP path."""
        return cls(TransportKind.UDP, host, port)

    @classmethod
    def parse(cls, text: str) -> TransportDescriptor:
        """Parse `kind:host:port` (IPv6 hosts in brackets: `udp:[::1]:4000`)."""
        if not isinstance(text, str):
            raise InvalidTransportError(f"transport text must be a string, got {text!r}")
        kind_text, sep, rest = text.partition(":")
        if not sep:
            raise InvalidTransportError(f"transport {text!r} is not of the form kind:host:port")
        host, sep, port_text = rest.rpartition(":")
        # ASCII digits only: str.isdigit() also accepts "²" (which int() refuses) and other
        # scripts' digits (which would make the text form non-canonical).
        if not sep or not port_text.isascii() or not port_text.isdigit():
            raise InvalidTransportError(f"transport {text!r} is not of the form kind:host:port")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            kind = TransportKind(kind_text)
        except ValueError:
            raise InvalidTransportError(f"unknown transport kind {kind_text!r}") from None
        return cls(kind, host, int(port_text))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.kind.value}:{host}:{self.port}"

    def encode(self) -> bytes:
        """Canonical bytes used inside proofs: `kind`, `host`, `port` length-prefixed."""
        host = self.host.encode("ascii")
        return (
            _KIND_ENCODING[self.kind]
            + len(host).to_bytes(2, "big")
            + host
            + self.port.to_bytes(2, "big")
        )

    def to_data(self) -> str:
        """Plain-data form (the `kind:host:port` text)."""
        return str(self)

    @classmethod
    def from_data(cls, data: Any) -> TransportDescriptor:
        """Inverse of `to_data`; raises `InvalidTransportError` on anything malformed."""
        return cls.parse(data)
