"""`step(state, event) -> (state, effects)` and `next_deadline(state)`: the sans-IO core.

Shape (after etcd raft's `Step`): `step` runs the checks common to every role and event
(terminated? time backwards? deadlines due?), then hands the event to the handler for the
state's role. Handlers only ever ask `jumpvpn_core.phases` for a transition; they never
pick a target phase themselves.

Where things are: the dispatch tables right below the imports name every event's handler
for each role. The client's handlers live in `_client`, the server's in `_server`; what they
share (the one `transition`, `reject`, the record builders, the handlers common to both
roles) in `_kernel`. This module keeps the tables, `step()` and the deadlines.

Contract, for drivers:

* The core never reads a clock, randomness, files, env or the network. Same inputs, same
  outputs, bit for bit.
* Deadlines due at `event.now_ms` fire *before* the event is handled (an expired session
  never accepts a reattach). Deliver `Tick(now)` when `now >= next_deadline(state)`.
* A refused input returns the very same state object (after any due deadline fired) and
  exactly one `Rejected` effect saying why.
* Execute effects in order. A step's output is one part per deadline fired, then the
  event's part; audit records come first within each part (specs/field-rules.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jumpvpn_core import events as ev
from jumpvpn_core._client import (
    client_accepted,
    client_attempt,
    client_candidate_discovered,
    client_candidate_lost,
    client_challenge,
    client_collapse,
    client_delivery_timeout,
    client_inbound,
    client_loss,
    client_sample,
    client_transport_failed,
    reattach_timed_out,
    reconsider,
    viable_paths,
)
from jumpvpn_core._kernel import (
    CLIENT,
    RC,
    A,
    B,
    D,
    ListOut,
    Out,
    R,
    T,
    drop_pending,
    on_attach,
    on_tick,
    rejected,
    terminate_with,
    transition,
)
from jumpvpn_core._server import (
    server_inbound,
    server_request,
    validation_timed_out,
)
from jumpvpn_core.effects import Effect
from jumpvpn_core.errors import InvalidEventError
from jumpvpn_core.quality import migration_due
from jumpvpn_core.state import (
    ClientSide,
    SessionState,
)

__all__ = ["StepResult", "advance_time", "next_deadline", "step"]

StepResult = tuple[SessionState, tuple[Effect, ...]]
# Each due deadline moves a deadline forward or ends the session, so a handful of passes
# always drains them; the bound only guards against a bug turning into a hang.
_MAX_TIMER_PASSES = 8
# Performance: step() reads these on every call; module constants, not module attributes.
_TICK = ev.Tick
_EVENT_TYPES = ev.EVENT_TYPES

# --- dispatch tables: every event's handler, per role ---------------------------------------

_Handler = Callable[[SessionState, Any], Out]

_COMMON: dict[type, _Handler] = {
    ev.Tick: on_tick,
    ev.Attach: on_attach,
    ev.Close: terminate_with(RC.CLOSED),
    ev.OwnershipAmbiguous: terminate_with(RC.OWNERSHIP_AMBIGUOUS),
    ev.Evict: terminate_with(RC.SESSION_EVICTED),
    ev.StoreRecordInvalid: terminate_with(RC.STORE_RECORD_INVALID),
}

_CLIENT_HANDLERS: dict[type, _Handler] = {
    **_COMMON,
    ev.InboundTraffic: client_inbound,
    ev.PacketLoss: client_loss,
    ev.DeliveryTimeout: client_delivery_timeout,
    ev.TransportFailed: client_transport_failed,
    ev.AllTransportsFailed: client_collapse,
    ev.CandidateDiscovered: client_candidate_discovered,
    ev.CandidateLost: client_candidate_lost,
    ev.PathChallengeReceived: client_challenge,
    ev.ReattachAccepted: client_accepted,
    ev.RttSample: client_sample,
    ev.ProbeLost: client_sample,
}

_SERVER_HANDLERS: dict[type, _Handler] = {
    **_COMMON,
    ev.InboundTraffic: server_inbound,
    ev.ReattachRequest: server_request,
}


# --- the step ---------------------------------------------------------------------------------


def step(state: SessionState, event: Any) -> StepResult:
    """Apply one event. Returns the new state and the effects the driver must execute.

    Raises `InvalidEventError` only for programming errors (an object that is not an event,
    or a state that is not a `SessionState`). Everything an attacker or a network can cause
    comes back as an explicit `Rejected` effect instead.
    """
    # Performance: one dict per role keyed by the event's type. A (role, type) tuple key
    # would be built and hashed on every call, and hashing an enum member runs Python code.
    event_type = type(event)
    if type(state) is not SessionState and not isinstance(state, SessionState):
        raise InvalidEventError(f"step() needs a SessionState, got {type(state).__name__}")
    handlers = _CLIENT_HANDLERS if state.ident.role is CLIENT else _SERVER_HANDLERS
    handler = handlers.get(event_type)
    if handler is None and event_type not in _EVENT_TYPES:
        raise InvalidEventError(f"step() needs an event, got {event_type.__name__}")
    if state.phase is T:
        return state, (rejected(state, event, RC.SESSION_TERMINATED),)
    now = event.now_ms
    if now < state.link.clock_ms:
        return state, (rejected(state, event, RC.TIME_WENT_BACKWARDS),)
    deadline = next_deadline(state)
    if deadline is not None and now >= deadline:
        state, prefix = _fire_due(state, now)
        if state.phase is T and event_type is not _TICK:
            prefix.append(rejected(state, event, RC.SESSION_TERMINATED))
            return state, tuple(prefix)
        if handler is None:
            return state, (*prefix, rejected(state, event, RC.EVENT_NOT_APPLICABLE))
        new, effects = handler(state, event)
        return new, (*prefix, *effects)
    if handler is None:
        return state, (rejected(state, event, RC.EVENT_NOT_APPLICABLE),)
    new, effects = handler(state, event)
    # tuple() of a tuple is the tuple itself: rejections and no-ops are not copied.
    return new, tuple(effects)


# --- deadlines --------------------------------------------------------------------------------


def next_deadline(state: SessionState) -> int | None:
    """The earliest time at which `Tick` must be delivered, or None once TERMINATED."""
    # Performance: runs on every step, so plain comparisons instead of min() calls.
    phase = state.phase
    if phase is T:
        return None
    ident = state.ident
    policy = ident.policy
    deadline = ident.created_ms + policy.session_max_lifetime_ms
    if phase is B:
        bound = state.phase_since_ms + policy.birth_timeout_ms
        if bound < deadline:
            deadline = bound
    else:
        bound = state.link.last_rx_ms + policy.transport_lost_ttl_ms
        if bound < deadline:
            deadline = bound
        if phase is R:
            bound = state.phase_since_ms + policy.max_recovery_window_ms
            if bound < deadline:
                deadline = bound
        elif phase is D:
            bound = state.phase_since_ms + policy.max_degraded_ms
            if bound < deadline:
                deadline = bound
    side = state.side
    pending = side.pending
    if pending is not None:
        if pending.deadline_ms < deadline:
            deadline = pending.deadline_ms
    elif ident.role is CLIENT and phase is A:
        # The hysteresis of a proactive migration (specs/path-quality.md). Performance: the
        # role first (a server stops at one test), and `side` narrowed for the type checker
        # only (an isinstance() call would cost about 1 % of the steady step).
        if TYPE_CHECKING:
            assert isinstance(side, ClientSide)
        if side.better is not None:
            bound = migration_due(side, state.roaming, policy)
            if bound < deadline:
                deadline = bound
    return deadline


def _fire_one(state: SessionState, now: int) -> Out:
    """Fire the most important due deadline. Termination bounds come first (§8)."""
    ident = state.ident
    policy = ident.policy
    phase = state.phase
    if now >= ident.created_ms + policy.session_max_lifetime_ms:
        return transition(state, RC.SESSION_LIFETIME_EXCEEDED, now)
    if phase is B:
        if now >= state.phase_since_ms + policy.birth_timeout_ms:
            return transition(state, RC.BIRTH_TIMEOUT, now)
    elif now >= state.link.last_rx_ms + policy.transport_lost_ttl_ms:
        return transition(state, RC.TRANSPORT_LOST_TTL_EXPIRED, now)
    if phase is R and now >= state.phase_since_ms + policy.max_recovery_window_ms:
        return _recovery_window_ended(state, now)
    if phase is D and now >= state.phase_since_ms + policy.max_degraded_ms:
        return transition(state, RC.DEGRADED_TIMEOUT, now)
    side = state.side
    if side.pending is not None:
        if now >= side.pending.deadline_ms:
            if isinstance(side, ClientSide):
                return reattach_timed_out(state, side, now)
            return validation_timed_out(state, side, now)
    elif phase is A and isinstance(side, ClientSide) and side.better is not None and \
            now >= migration_due(side, state.roaming, policy):
        return reconsider(state, side, now)
    return state, []


def _recovery_window_ended(state: SessionState, now: int) -> ListOut:
    link = state.link
    side = drop_pending(state.side)
    if link.heard_in_phase and link.active is not None and not link.active_failed:
        # §9: a usable but impaired path remains. A client keeps making proof-backed
        # reattach attempts from DEGRADED; only an accepted one leads back to ATTACHED.
        sends: list[Effect] = []
        if isinstance(side, ClientSide):
            side, sends = client_attempt(state, side, link, state.roaming, now)
        new, effects = transition(state, RC.RECOVERY_PARTIAL, now, side=side)
        effects.extend(sends)
        return new, effects
    if not viable_paths(link, state.roaming):
        return transition(state, RC.NO_VIABLE_CANDIDATE, now, side=side)
    return transition(state, RC.RECOVERY_WINDOW_EXCEEDED, now, side=side)


def _fire_due(state: SessionState, now: int) -> ListOut:
    effects: list[Effect] = []
    for _ in range(_MAX_TIMER_PASSES):
        deadline = next_deadline(state)
        if deadline is None or now < deadline:
            break
        new, fired = _fire_one(state, now)
        if new is state:
            break
        state = new
        effects.extend(fired)
    return state, effects


def advance_time(state: SessionState, now_ms: int) -> StepResult:
    """Fire every deadline due at `now_ms`. Equivalent to `step(state, Tick(now_ms))`."""
    return step(state, _TICK(now_ms))

