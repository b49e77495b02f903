"""Sticky ownership (risk model §4.1): rendezvous (highest-random-weight) hashing.

Every node computes the same owner for a session from the same configured node list, with
no coordination: the owner is the node whose `sha256(node_id || 0x00 || session_id)` is
largest. Removing a node moves only that node's sessions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["owner_of"]


def owner_of(session_id: bytes, node_ids: Sequence[str]) -> str:
    """The node that owns `session_id` among `node_ids` (non-empty, distinct)."""
    if not node_ids:
        raise ValueError("node_ids must not be empty")
    best = max(
        node_ids,
        key=lambda node: (hashlib.sha256(node.encode() + b"\x00" + session_id).digest(), node),
    )
    return best
