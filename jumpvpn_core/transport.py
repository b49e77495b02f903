"""Transport descriptors: how the core names a path without ever touching one."""

from __future__ import annotations

import enum
import ipaddress
import re
from typing import Any

import attrs

from jumpvpn_core.errors import InvalidTransportError, describe

__all__ = ["TransportDescriptor", "TransportKind"]

_MAX_HOST_LEN = 253
# RFC 6874 zone ids: unreserved characters only (they appear unescaped in the text form).
_ZONE = re.compile(r"[A-Za-z0-9._~-]{1,64}")
# The canonical port text: 1 to 5 ASCII digits, no leading zero.
_PORT_TEXT = re.compile(r"[1-9][0-9]{0,4}")


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


_KINDS_BY_TEXT: dict[str, TransportKind] = {kind.value: kind for kind in TransportKind}
_KIND_NAMES = ", ".join(kind.value for kind in TransportKind)


def _check_kind(_inst: object, _attr: object, value: Any) -> None:
    if not isinstance(value, TransportKind):
        raise InvalidTransportError(
            f"transport kind must be one of {_KIND_NAMES}, got {describe(value)}"
        )


def _check_host(_inst: object, _attr: object, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidTransportError(
            f"transport host must be a non-empty string, got {describe(value)}")
    if len(value) > _MAX_HOST_LEN:
        raise InvalidTransportError(f"transport host longer than {_MAX_HOST_LEN} characters")
    # ASCII first: the host is encoded as ASCII inside every proof, so anything else would
    # be accepted here and fail later (an IPv6 zone id may otherwise hold any character).
    if not value.isascii():
        raise InvalidTransportError("transport host is not ASCII")
    _address, percent, zone = value.partition("%")
    if percent and not _ZONE.fullmatch(zone):
        raise InvalidTransportError(
            "transport host's zone id must be letters, digits, '.', '_', '~' or '-'")
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        if percent:
            raise InvalidTransportError("transport host with a zone id is not an IPv6 address"
                                        ) from None
    labels = value.rstrip(".").split(".")
    for label in labels:
        if not label or len(label) > 63 or not all(c.isalnum() or c == "-" for c in label):
            raise InvalidTransportError(
                "transport host is neither an IP address nor a DNS name"
            )


def _check_port(_inst: object, _attr: object, value: Any) -> None:
    if type(value) is not int or not 1 <= value <= 65535:
        raise InvalidTransportError(
            f"transport port must be an int in 1..65535, got {describe(value)}")


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
        """Parse the canonical `kind:host:port` text (IPv6 hosts in brackets: `udp:[::1]:4000`).

        Only the form `str()` produces is accepted: lower-case kind, brackets exactly around
        an IPv6 host, the port in decimal without sign, spaces or leading zeros. Anything
        else raises `InvalidTransportError`, whose message never quotes the text.
        """
        if not isinstance(text, str):
            raise InvalidTransportError(f"transport text must be a string, got {describe(text)}")
        kind_text, sep, rest = text.partition(":")
        host, sep2, port_text = rest.rpartition(":")
        # The port is checked as text before int() sees it: ASCII digits only (str.isdigit()
        # also accepts "²" and other scripts' digits) and at most five of them (int() of a
        # few thousand digits raises ValueError, and of more is slow).
        if not sep or not sep2 or not _PORT_TEXT.fullmatch(port_text):
            raise InvalidTransportError(
                "transport text is not of the canonical form kind:host:port")
        bracketed = host.startswith("[") and host.endswith("]")
        if bracketed:
            host = host[1:-1]
        if bracketed != (":" in host):
            raise InvalidTransportError(
                "transport text must put brackets around an IPv6 host and only around one")
        kind = _KINDS_BY_TEXT.get(kind_text)
        if kind is None:
            raise InvalidTransportError(f"unknown transport kind (expected one of {_KIND_NAMES})")
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
