"""Data-plane replay protection: a per-session counter window, as WireGuard keeps.

Every DATA and HEARTBEAT datagram carries `counter`, a per-sender, per-session number that
starts at 1 and grows by one for every such datagram sealed (`specs/wire-format.md`). The
tag covers it, so it cannot be changed. The receiver checks it against an RFC 6479 sliding
window (the core's `jumpvpn_core.replay` window, reused) after the tag verifies and
*before* the datagram counts as traffic from any address: a captured datagram replayed
from anywhere is dropped without reaching the core, so it can neither open a path
validation nor refresh liveness. Memory is O(1) per session (seed §5.1): a top counter and
a bitmap of `DATA_REPLAY_WINDOW_BITS` bits.

Sans-IO: no clock, no socket. Not thread-safe (one driver owns it).
"""

from __future__ import annotations

from jumpvpn_core.replay import ReplayVerdict, check_nonce, mark_nonce

__all__ = ["DATA_REPLAY_WINDOW_BITS", "CounterWindow"]

#: How far behind the newest counter a datagram may arrive (reordering tolerance).
DATA_REPLAY_WINDOW_BITS = 2048

_FRESH = ReplayVerdict.FRESH


class CounterWindow:
    """The receive window of one session's data plane, and its send counter."""

    __slots__ = ("_bits", "_floor", "_next_tx", "_size", "_top")

    def __init__(self, size: int = DATA_REPLAY_WINDOW_BITS, floor: int = 0) -> None:
        self._size = size
        self._top = 0
        self._bits = 0
        self._next_tx = 1
        self._floor = floor

    @property
    def top(self) -> int:
        """The highest counter accepted so far, or the floor if higher (0: none): what a
        node handing the session over passes as the new node's floor."""
        return max(self._top, self._floor)

    def raise_floor(self, floor: int) -> None:
        """Refuse every counter at or below `floor` from now on (never lowers it)."""
        self._floor = max(self._floor, floor)

    def fresh(self, counter: int) -> bool:
        """What `accept` would answer, without marking anything: a receiver may drop a
        counter that is not fresh before spending a MAC on its tag (nothing changes
        either way)."""
        return counter > self._floor and check_nonce(
            self._top, self._bits, self._size, counter) is _FRESH

    def accept(self, counter: int) -> bool:
        """Check and mark `counter`: True the first time it is seen inside the window; False
        for a replay, a counter too old for the window, a counter at or below the floor,
        or 0 (never sent)."""
        if counter <= self._floor:
            return False
        if check_nonce(self._top, self._bits, self._size, counter) is not _FRESH:
            return False
        self._top, self._bits = mark_nonce(self._top, self._bits, self._size, counter)
        return True

    def next_counter(self) -> int:
        """The counter for the next datagram this side seals (1, 2, 3, ...)."""
        counter = self._next_tx
        self._next_tx += 1
        return counter
