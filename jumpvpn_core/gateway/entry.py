"""`Entry`: a session as one gateway node knows it (its table or, in shared mode, cache)."""

from __future__ import annotations

import attrs

from jumpvpn_core.state import SessionState

__all__ = ["Entry"]


@attrs.define
class Entry:
    """A session as this node knows it. In shared mode only a cache, never trusted."""

    state: SessionState
    version: int
    # Sticky mode: a commit whose outcome is unknown (the store timed out).
    in_doubt: tuple[int, bytes, SessionState] | None = None
    # Sticky mode: ownership found ambiguous but the session could not be terminated yet.
    ambiguous: bool = False
