"""A rejection that follows a due deadline is not a state mutation (checker regression)."""

from __future__ import annotations

import pytest

from jumpvpn_core import DeliveryTimeout, Phase, Policy, Role, check_step, new_session, step


@pytest.mark.requirement("RM-3.1")
def test_rejection_after_deadline_fired_is_not_reported_as_mutation() -> None:
    before = new_session(Role.CLIENT, bytes(16), bytes(16), 0, Policy(birth_timeout_ms=100))
    event = DeliveryTimeout(100)
    after, effects = step(before, event)
    assert after.phase is Phase.TERMINATED
    assert check_step(before, event, after, effects) == []


@pytest.mark.requirement("RM-3.3")
def test_security_rejection_after_timer_revert_is_not_blamed_for_attached() -> None:
    from jumpvpn_core import Attach, InboundTraffic, ReattachRequest, TransportDescriptor

    home = TransportDescriptor.udp("10.0.0.1", 4000)
    other = TransportDescriptor.udp("10.0.0.9", 4000)
    state = new_session(Role.SERVER, bytes(16), bytes(16), 0, Policy())
    state, _ = step(state, Attach(0, home))
    state, _ = step(state, InboundTraffic(10, other, 1000))  # opens a path validation
    state, _ = step(state, InboundTraffic(20, home, 100))  # old path still carries traffic
    # Validation expired (PATH_REVERTED fires first), then a stale request is refused.
    event = ReattachRequest(2000, home, bytes(16), 1, 0, 2000, home, bytes(32))
    after, effects = step(state, event)
    assert after.phase is Phase.ATTACHED
    assert check_step(state, event, after, effects) == []
