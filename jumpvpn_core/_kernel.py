"""What every handler of the core shares: the one transition, rejections, record builders.

`transition` is the single place that raises `state_version` and emits `StateChanged`
(the target phase always comes from `jumpvpn_core.phases`); `reject` builds the one
`Rejected` effect of a refused input; `same_phase` is every change that is not a
transition. The handlers of each role live in `_client` and `_server`; `machine` holds
the dispatch tables and `step()`. Private: nothing here is public API.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from jumpvpn_core.effects import (
    BindTransport,
    Effect,
    Rejected,
    SessionEnded,
    StateChanged,
)
from jumpvpn_core.events import (
    Attach,
    ReattachAccepted,
    ReattachRequest,
    Tick,
)
from jumpvpn_core.phases import Phase, Role, transition_target
from jumpvpn_core.policy import SWITCH_WINDOW_MS, Policy
from jumpvpn_core.proof import (
    MessageType,
)
from jumpvpn_core.reasons import ReasonClass, ReasonCode, reason_class
from jumpvpn_core.replay import ReplayVerdict
from jumpvpn_core.state import (
    ClientSide,
    Link,
    Roaming,
    ServerSide,
    SessionState,
)
from jumpvpn_core.transport import TransportDescriptor

# What a handler returns. Paths that grow their effects use a list; rejections and no-ops
# return a tuple, which step() hands back without copying.
Out = tuple[SessionState, list[Effect] | tuple[Effect, ...]]
# What `transition` and the helpers that extend its effects return.
ListOut = tuple[SessionState, list[Effect]]
NO_EFFECTS: tuple[Effect, ...] = ()

B, A, R, D, T = (
    Phase.BIRTH,
    Phase.ATTACHED,
    Phase.RECOVERING,
    Phase.DEGRADED,
    Phase.TERMINATED,
)
# Performance: on CPython 3.11, reading a member off an Enum class (`ReasonCode.CLOSED`)
# costs over 100 ns, more than a whole attrs field store. The hot paths therefore read
# members from module constants, or from `RC`, a plain namespace holding every
# `ReasonCode` member (mypy checks `RC.X` against `ReasonCode` itself).
if TYPE_CHECKING:
    RC = ReasonCode
else:
    RC = SimpleNamespace(**ReasonCode.__members__)
CLIENT = Role.CLIENT
SEEN, TOO_OLD = ReplayVerdict.SEEN, ReplayVerdict.TOO_OLD
REQUEST, ACCEPT = MessageType.REATTACH_REQUEST, MessageType.REATTACH_ACCEPT



# --- small builders ---------------------------------------------------------------------------


# Performance: a rejection must be cheap (it is what an attacker can make us do at line
# rate), so the reason -> class lookup is a precomputed table instead of two set lookups
# per refused input.
REASON_CLASS: dict[ReasonCode, ReasonClass] = {code: reason_class(code) for code in ReasonCode}


def rejected(state: SessionState, event: Any, reason: ReasonCode) -> Rejected:
    ident = state.ident
    kind = type(event)
    if kind is ReattachRequest or kind is ReattachAccepted:
        return Rejected(ident.session_id, ident.role, reason, REASON_CLASS[reason],
                        state.phase, state.state_version, kind.__name__, event.now_ms,
                        event.nonce, event.state_version)
    return Rejected(ident.session_id, ident.role, reason, REASON_CLASS[reason], state.phase,
                    state.state_version, kind.__name__, event.now_ms, None, None)


def reject(state: SessionState, event: Any, reason: ReasonCode) -> Out:
    # Performance: `rejected` written out (one Python call less per refused input), and a
    # one-element tuple that step() passes on as is (no list, no copy). The refused
    # request's nonce and version ride along by two identity tests of its type: no getattr
    # with a default (an exception inside) on the rejection path.
    ident = state.ident
    kind = type(event)
    if kind is ReattachRequest or kind is ReattachAccepted:
        return state, (Rejected(ident.session_id, ident.role, reason, REASON_CLASS[reason],
                                state.phase, state.state_version, kind.__name__,
                                event.now_ms, event.nonce, event.state_version),)
    return state, (Rejected(ident.session_id, ident.role, reason, REASON_CLASS[reason],
                            state.phase, state.state_version, kind.__name__,
                            event.now_ms, None, None),)


# --- named record builders: a Link is rebuilt in a handful of ways, each named here -----------


def link_heard(active: TransportDescriptor | None, active_failed: bool, now: int) -> Link:
    """Traffic (or an accepted binding) was just heard on `active`: no loss streak, heard in
    this phase, `last_rx_ms` and the clock at `now`."""
    return Link(active, active_failed, now, 0, now, True, now)


def link_attached(transport: TransportDescriptor, now: int) -> Link:
    """The first binding, made by the handshake: nothing heard on it in this phase yet."""
    return Link(transport, False, now, 0, now, False, now)


def link_with_loss(link: Link, streak: int, start: int, heard_in_phase: bool,
                   now: int) -> Link:
    """`link` with its consecutive-loss streak (started at `start`) replaced."""
    return Link(link.active, link.active_failed, link.last_rx_ms, streak, start,
                heard_in_phase, now)


def link_with_failed(link: Link, active_failed: bool, now: int) -> Link:
    """`link` with the active path marked failed (or revived)."""
    return Link(link.active, active_failed, link.last_rx_ms, link.loss_streak,
                link.loss_start_ms, link.heard_in_phase, now)


def link_new_phase(link: Link, now: int) -> Link:
    """`link` as a transition leaves it: nothing heard in the new phase yet."""
    return Link(link.active, link.active_failed, link.last_rx_ms, link.loss_streak,
                link.loss_start_ms, False, now)


def with_clock(link: Link, now: int) -> Link:
    """`link` with its clock at `now` (the same object when it already is)."""
    if link.clock_ms == now:
        return link
    return Link(link.active, link.active_failed, link.last_rx_ms, link.loss_streak,
                link.loss_start_ms, link.heard_in_phase, now)


def same_phase(
    state: SessionState,
    now: int,
    link: Link | None = None,
    roaming: Roaming | None = None,
    side: ServerSide | ClientSide | None = None,
) -> SessionState:
    """A state change that is not a transition: version and phase stay."""
    return SessionState(
        state.ident,
        state.phase,
        state.state_version,
        state.phase_since_ms,
        with_clock(link if link is not None else state.link, now),
        roaming if roaming is not None else state.roaming,
        side if side is not None else state.side,
        state.end_reason,
    )


def transition(
    state: SessionState,
    reason: ReasonCode,
    now: int,
    link: Link | None = None,
    roaming: Roaming | None = None,
    side: ServerSide | ClientSide | None = None,
) -> ListOut:
    """Move to the phase the table gives for `reason`: version + 1, one audit record."""
    to = transition_target(state.phase, reason)
    version = state.state_version + 1
    link = link if link is not None else state.link
    roaming = roaming if roaming is not None else state.roaming
    side = side if side is not None else state.side
    link = link_new_phase(link, now)
    if to is R and state.phase is not R:
        roaming = Roaming(roaming.candidates, roaming.switch_times, roaming.recovery_rounds + 1)
    elif to is A and roaming.recovery_rounds:
        roaming = Roaming.of(roaming.candidates, roaming.switch_times, 0)
    if to is T:
        side = drop_pending(side)
    ident = state.ident
    new = SessionState(ident, to, version, now, link, roaming, side, reason if to is T else None)
    effects: list[Effect] = [
        StateChanged(ident.session_id, ident.role, state.phase, to, reason, version, now)
    ]
    if to is T:
        effects.append(SessionEnded(ident.session_id, reason))
    return new, effects


def drop_pending(side: ServerSide | ClientSide) -> ServerSide | ClientSide:
    if side.pending is None:
        return side
    if isinstance(side, ServerSide):
        return ServerSide(
            side.binding_version,
            side.replay_top,
            side.replay_bits,
            side.verified_times,
            None,
            side.challenge_counter,
            side.last_accept,
        )
    return ClientSide(side.known_version, side.next_nonce, None, side.attempt, side.quality,
                      side.better, side.better_since_ms)


def switch_refusal(roaming: Roaming, policy: Policy, now: int) -> ReasonCode | None:
    """Anti-flap: cooldown since the last switch, and a sliding per-minute bound."""
    times = roaming.switch_times
    if times and now - times[-1] < policy.switch_cooldown_ms:
        return RC.SWITCH_COOLDOWN
    limit = policy.max_switches_per_minute
    if len(times) >= limit and now - times[-limit] < SWITCH_WINDOW_MS:
        return RC.SWITCH_RATE_EXCEEDED
    return None


def record_switch(roaming: Roaming, policy: Policy, now: int,
                   candidates: tuple[TransportDescriptor, ...] | None = None) -> Roaming:
    # Only the newest `max_switches_per_minute` times matter: fixed-size history.
    times = (*roaming.switch_times, now)[-policy.max_switches_per_minute:]
    return Roaming.of(
        roaming.candidates if candidates is None else candidates, times, roaming.recovery_rounds
    )


# --- handlers common to both roles --------------------------------------------------------------


def on_tick(state: SessionState, event: Tick) -> Out:
    # Due deadlines already fired in step(); a Tick carries nothing else.
    return state, NO_EFFECTS


def terminate_with(reason: ReasonCode) -> Callable[[SessionState, Any], Out]:
    def handle(state: SessionState, event: Any) -> Out:
        return transition(state, reason, event.now_ms)

    handle.__name__ = f"_on_{reason.value.lower()}"
    return handle


def on_attach(state: SessionState, event: Attach) -> Out:
    if state.phase is not B:
        return reject(state, event, RC.EVENT_NOT_APPLICABLE)
    now = event.now_ms
    transport = event.transport
    version = state.state_version + 1
    side = state.side
    new_side: ServerSide | ClientSide
    if isinstance(side, ServerSide):
        new_side = ServerSide(version, side.replay_top, side.replay_bits, side.verified_times,
                              None, side.challenge_counter, None)
    else:
        new_side = ClientSide(version, side.next_nonce, None, side.attempt, side.quality,
                              None, 0)
    roaming = state.roaming
    if transport in roaming.candidates:
        roaming = Roaming.of(tuple(c for c in roaming.candidates if c != transport),
                          roaming.switch_times, roaming.recovery_rounds)
    link = link_attached(transport, now)
    new, effects = transition(state, RC.ATTACH_COMPLETED, now, link, roaming, new_side)
    effects.append(BindTransport(state.ident.session_id, transport, None))
    return new, effects


def heard_on_active(state: SessionState, now: int) -> Link:
    link = state.link
    if link.last_rx_ms == now and link.clock_ms == now and link.heard_in_phase and \
            not link.loss_streak:
        return link
    return link_heard(link.active, link.active_failed, now)


def steady_traffic(state: SessionState, now: int) -> SessionState:
    """Traffic on the active path with nothing else to do: the commonest step of all.

    Performance: builds the new `Link` (as `link_heard` would) and `SessionState` directly
    (what `heard_on_active` plus `same_phase` would build, without their intermediate calls
    and checks).
    """
    link = state.link
    if link.last_rx_ms == now and link.clock_ms == now and link.heard_in_phase and \
            not link.loss_streak:
        return state
    return SessionState(state.ident, state.phase, state.state_version, state.phase_since_ms,
                        Link(link.active, link.active_failed, now, 0, now, True, now),
                        state.roaming, state.side, state.end_reason)

