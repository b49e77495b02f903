"""A hand-built state at `state_version` 2^64-1 never makes `step()` raise.

The state decoder bounds versions well below (`codec.COUNTER_MAX`), but `step()` takes any
`SessionState`, and the server signs an accept with the *next* version, which would not fit
the proof's u64 field. Such a request is refused with a typed reject (the same state
object, one `Rejected` effect with `EVENT_NOT_APPLICABLE`); every other event steps as usual.
"""

from __future__ import annotations

import attrs

from jumpvpn_core import ReasonCode, Rejected, peer, step
from jumpvpn_core.events import (
    Attach,
    CandidateDiscovered,
    Close,
    DeliveryTimeout,
    InboundTraffic,
    PacketLoss,
    Tick,
    TransportFailed,
)
from jumpvpn_core.phases import Role
from jumpvpn_core.state import SessionState, new_session
from jumpvpn_core.transport import TransportDescriptor

U64_MAX = (1 << 64) - 1
HOME = TransportDescriptor.udp("127.0.0.1", 4000)
AWAY = TransportDescriptor.udp("127.0.0.1", 4002)
SID = bytes(range(16))
SECRET = bytes(range(32))


def _at_max(role: Role) -> SessionState:
    state, _ = step(new_session(role, SID, SECRET, 0, None), Attach(1, HOME))
    return attrs.evolve(state, state_version=U64_MAX)


def test_an_honest_request_at_the_last_version_is_a_typed_reject() -> None:
    server = _at_max(Role.SERVER)
    request = peer.next_request(server, 10, HOME)
    new, effects = step(server, request)
    assert new is server
    assert len(effects) == 1
    assert isinstance(effects[0], Rejected)
    assert effects[0].reason is ReasonCode.EVENT_NOT_APPLICABLE


def test_one_below_the_last_version_still_binds() -> None:
    server = attrs.evolve(_at_max(Role.SERVER), state_version=U64_MAX - 1)
    new, effects = step(server, peer.next_request(server, 10, HOME))
    assert new is not server
    assert new.state_version == U64_MAX
    assert any(getattr(e, "reason", None) is ReasonCode.REATTACHED for e in effects)


def test_no_event_raises_at_the_last_version() -> None:
    for role in (Role.SERVER, Role.CLIENT):
        state = _at_max(role)
        events: list[object] = [
            Tick(10), Tick(10**7), Close(10), PacketLoss(10, 5), DeliveryTimeout(10),
            InboundTraffic(10, HOME, 100), InboundTraffic(10, AWAY, 500),
            CandidateDiscovered(10, AWAY), TransportFailed(10, HOME),
        ]
        if role is Role.SERVER:
            events += [peer.next_request(state, 10, HOME),
                       peer.next_request(state, 10, AWAY, candidate=AWAY, size=500)]
        else:
            events += [peer.challenge_pending(state, 10, b"\x01" * 16, observed=HOME),
                       peer.accept_pending(state, 10)]
        for event in events:
            new, effects = step(state, event)  # must not raise
            assert isinstance(new, SessionState)
            if new is state:  # refused (one Rejected) or a no-op (nothing)
                assert len(effects) <= 1
                assert all(isinstance(effect, Rejected) for effect in effects)
