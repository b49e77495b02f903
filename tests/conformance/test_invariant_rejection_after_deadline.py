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
