"""Seeded random runs of the reference core, for trace and property tooling.

A run starts a session of one role and applies events drawn from
`jumpvpn_core.audit.vectors.event_variants` (every event kind, honest and hostile), with
the session-ending ones made rare so runs live long enough to be interesting. The
randomness comes from a caller-supplied `random.Random`, so a seed replays a run exactly.
"""

from __future__ import annotations

import random
from typing import Any

from jumpvpn_core.audit.vectors import SECRET, T0, event_variants
from jumpvpn_core.effects import Rejected, StateChanged
from jumpvpn_core.machine import step
from jumpvpn_core.phases import Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.state import new_session

__all__ = ["random_trace"]

_ENDINGS = frozenset({"close", "ownership ambiguous", "evict", "store record invalid",
                      "tick at end of lifetime"})


def random_trace(rng: random.Random, role: Role, steps: int, *,
                 session_id: bytes | None = None, policy: Policy | None = None
                 ) -> list[dict[str, Any]]:
    """Audit records of one random run of `steps` events (the reference's own trace)."""
    sid = session_id if session_id is not None else rng.randbytes(16)
    state = new_session(role, sid, SECRET, T0, policy)
    records: list[dict[str, Any]] = []
    for _ in range(steps):
        variants = event_variants(state)
        usual = [v for v in variants if v[0] not in _ENDINGS]
        pool = variants if rng.random() < 0.02 else usual
        _label, event = rng.choice(pool)
        if type(event).__name__ == "Attach" and rng.random() < 0.5:
            event = rng.choice(usual)[1]
        state, effects = step(state, event)
        records += [e.to_record() for e in effects if isinstance(e, StateChanged | Rejected)]
    return records

