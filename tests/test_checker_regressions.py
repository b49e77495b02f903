"""The invariant checkers judge the event, not the deadlines that fired before it.

`step()` fires due deadlines first and only then handles (or refuses) the event. A refusal
that follows a fired deadline is still a clean refusal; these tests pin that the checkers
agree, so `check_step` reports real violations only.
"""

from __future__ import annotations

import pytest

from jumpvpn_core import (
    Attach,
    InboundTraffic,
    Phase,
    Policy,
    ReasonCode,
    Rejected,
    Role,
    TransportDescriptor,
    TransportFailed,
    check_step,
    new_session,
    step,
)
from jumpvpn_core.peer import Peer

SID = bytes(range(16))
SECRET = b"checker-regression-secret"
HOME = TransportDescriptor.udp("192.0.2.1", 4000)
STRANGER = TransportDescriptor.udp("203.0.113.9", 6666)


@pytest.mark.requirement("RM-3.1")
def test_refusal_after_a_fired_deadline_is_not_reported_as_a_mutation() -> None:
    policy = Policy()
    client, _ = step(new_session(Role.CLIENT, SID, SECRET, 0, policy), Attach(0, HOME))
    later = policy.transport_lost_ttl_ms  # the TTL fires, then the event is refused
    event = TransportFailed(later, STRANGER)
    after, effects = step(client, event)
    assert after.phase is Phase.TERMINATED
    assert [type(e) for e in effects][-1] is Rejected
    assert check_step(client, event, after, effects) == []


@pytest.mark.requirement("RM-8")
def test_security_refusal_after_a_path_revert_is_not_reported_as_entering_attached() -> None:
    policy = Policy()
    server, _ = step(new_session(Role.SERVER, SID, SECRET, 0, policy), Attach(0, HOME))
    server, _ = step(server, InboundTraffic(0, STRANGER, 0))  # ATTACHED -> RECOVERING
    server, _ = step(server, InboundTraffic(0, HOME, 0))  # the old path still works
    assert server.phase is Phase.RECOVERING
    now = policy.path_validation_timeout_ms  # validation expires: PATH_REVERTED first
    stale = 0
    event = Peer.from_secret(SECRET, SID).request(now, HOME, nonce=1, state_version=stale,
                                                  size=128)
    after, effects = step(server, event)
    assert after.phase is Phase.ATTACHED
    rejected = [e for e in effects if isinstance(e, Rejected)]
    assert [r.reason for r in rejected] == [ReasonCode.STALE_STATE_VERSION]
    assert check_step(server, event, after, effects) == []
