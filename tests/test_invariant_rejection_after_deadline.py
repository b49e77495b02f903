"""RM-3.1 / RM-8: `rejection_mutates_nothing` accepts a rejection that follows a due deadline.

When a deadline is due as an event arrives, `step()` fires it first and then rejects the
event. The state returned is the deadline's result, which the checker can only recompute as
an equal (not identical) object.
"""

from __future__ import annotations

import pytest

from jumpvpn_core import (
    Attach,
    InboundTraffic,
    Policy,
    ReattachRequest,
    Role,
    TransportDescriptor,
    check_step,
    new_session,
    step,
)
from jumpvpn_core.invariants import rejection_mutates_nothing

SID = bytes(range(16))
SECRET = b"s" * 32
A = TransportDescriptor.udp("10.0.0.1", 4000)




@pytest.mark.requirement("RM-8")
def test_rejection_after_ttl_expiry_is_not_a_violation() -> None:
    server = new_session(Role.SERVER, SID, SECRET, 0, Policy(transport_lost_ttl_ms=20_000))
    server, _ = step(server, Attach(0, A))
    request = ReattachRequest(20_000, A, SID, 1, 1, 20_000, A, bytes(32), b"", 128)
    after, effects = step(server, request)
    assert after.phase.value == "TERMINATED"
    assert [type(e).__name__ for e in effects] == ["StateChanged", "SessionEnded", "Rejected"]
    assert check_step(server, request, after, effects) == []


@pytest.mark.requirement("RM-3.1")
def test_rejection_after_silent_deadline_is_not_a_violation() -> None:
    server = new_session(Role.SERVER, SID, SECRET, 0, Policy())
    server, _ = step(server, Attach(0, A))
    stranger = TransportDescriptor.udp("203.0.113.50", 9000)
    server, _ = step(server, InboundTraffic(1000, stranger, 10))
    assert server.side.pending is not None
    other = TransportDescriptor.udp("203.0.113.77", 9000)
    request = ReattachRequest(3000, other, SID, 1, 2, 3000, other, bytes(32), b"", 20)
    after, effects = step(server, request)
    assert after.side.pending is None  # the validation deadline fired first
    assert check_step(server, request, after, effects) == []


@pytest.mark.requirement("RM-3.1")
def test_rejection_that_changes_state_is_still_a_violation() -> None:
    server = new_session(Role.SERVER, SID, SECRET, 0, Policy())
    server, _ = step(server, Attach(0, A))
    request = ReattachRequest(100, A, SID, 1, 1, 100, A, bytes(32), b"", 128)
    after, effects = step(server, request)
    assert after is server
    tampered = new_session(Role.SERVER, SID, SECRET, 0, Policy())
    violations = rejection_mutates_nothing(server, request, tampered, effects)
    assert [v.invariant for v in violations] == ["rejection_mutates_nothing"]
