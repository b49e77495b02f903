"""Typed errors. Each says what was wrong and never carries secret material."""

from __future__ import annotations

__all__ = [
    "InvalidEventError",
    "InvalidTransportError",
    "JumpVpnError",
    "PolicyError",
    "StateDecodeError",
]


class JumpVpnError(Exception):
    """Base class for every error the library raises on purpose."""


class PolicyError(JumpVpnError, ValueError):
    """A `Policy` was built with invalid values. `problems` lists every one of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("invalid policy: " + "; ".join(problems))


class InvalidTransportError(JumpVpnError, ValueError):
    """A transport descriptor is malformed (unknown kind, bad host, port out of range)."""


class InvalidEventError(JumpVpnError, ValueError):
    """An event was built with values no driver may send (negative time, wrong types)."""


class StateDecodeError(JumpVpnError, ValueError):
    """Plain data could not be turned back into a session state (missing or bad field)."""
