"""RFC 6479-style sliding replay window over nonces, immutable and of fixed size.

The window is a pair `(top, bits)`: `top` is the highest nonce accepted so far and bit `i`
of `bits` says whether nonce `top - i` was accepted. Only `size` bits are kept, so memory
per session is constant however many nonces are seen (seed §5.1). Nonces start at 1; a
fresh window has `top = 0`.

Check and mark are separate so a request can be checked cheaply before any cryptography
and marked only once its proof verifies: a forged request must not burn a real nonce.
"""

from __future__ import annotations

import enum
import functools

import attrs

__all__ = ["ReplayVerdict", "ReplayWindow", "check_nonce", "mark_nonce"]


class ReplayVerdict(enum.Enum):
    """Outcome of checking a nonce against the window."""

    FRESH = "fresh"
    SEEN = "seen"
    TOO_OLD = "too_old"


# Performance: module constants, because reading a member off the Enum class costs over
# 100 ns on CPython 3.11, more than the rest of a check.
_FRESH, _SEEN, _TOO_OLD = ReplayVerdict.FRESH, ReplayVerdict.SEEN, ReplayVerdict.TOO_OLD


def check_nonce(top: int, bits: int, size: int, nonce: int) -> ReplayVerdict:
    """Classify `nonce` without changing anything. O(1) for windows of a few thousand bits."""
    if nonce > top:
        return _FRESH
    age = top - nonce
    if age >= size or nonce < 1:
        return _TOO_OLD
    if (bits >> age) & 1:
        return _SEEN
    return _FRESH


@functools.lru_cache(maxsize=8)
def _mask(size: int) -> int:
    # Performance: `(1 << size) - 1` builds two size-bit ints on every accepted nonce;
    # policies use one or two window sizes, so the masks are computed once each.
    return (1 << size) - 1


def mark_nonce(top: int, bits: int, size: int, nonce: int) -> tuple[int, int]:
    """Return the window with `nonce` accepted. Call only after `check_nonce` said FRESH."""
    if nonce > top:
        shift = nonce - top
        # Bits that slide past the window edge are dropped by the mask: bounded memory.
        bits = ((bits << shift) | 1) & _mask(size) if shift < size else 1
        return nonce, bits
    return top, bits | (1 << (top - nonce))


@attrs.frozen(slots=True)
class ReplayWindow:
    """Object form of the window for embedders who want one outside a session state."""

    size: int = 1024
    top: int = 0
    bits: int = 0

    def check(self, nonce: int) -> ReplayVerdict:
        """Classify `nonce`: FRESH, SEEN or TOO_OLD."""
        return check_nonce(self.top, self.bits, self.size, nonce)

    def accept(self, nonce: int) -> ReplayWindow | None:
        """Return the window with `nonce` marked, or None if the nonce must be rejected."""
        if check_nonce(self.top, self.bits, self.size, nonce) is not ReplayVerdict.FRESH:
            return None
        top, bits = mark_nonce(self.top, self.bits, self.size, nonce)
        return ReplayWindow(self.size, top, bits)
