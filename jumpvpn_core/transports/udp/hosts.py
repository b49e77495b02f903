"""Where the server's sessions live: the `SessionHost` protocol and its two implementations.

The UDP server talks to its sessions only through `SessionHost`. Every effect carries its
session id, so the driver executes effects without looking at any state.

* `LocalSessionHost`: a dict of sessions in this process, no store.
* `GatewaySessionHost`: a `jumpvpn_core.gateway.Gateway` (capacity, idle eviction, flood
  limits, a shared store with compare-and-set) behind the same calls.

Both keep a `DeadlineHeap`, so `tick(now)` steps only the sessions whose deadline is due
and `next_deadline()` is the heap's top: the driver arms one timer there, whatever the
number of sessions.
"""

from __future__ import annotations

import collections
import heapq
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from jumpvpn_core.effects import Effect
from jumpvpn_core.errors import JumpVpnError
from jumpvpn_core.events import Attach, Event, Tick
from jumpvpn_core.machine import next_deadline, step
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.state import SessionState, new_session
from jumpvpn_core.transport import TransportDescriptor

if TYPE_CHECKING:  # the adapter only calls the gateway; it needs no import at run time
    from jumpvpn_core.gateway import Gateway, GatewayResult

__all__ = [
    "DeadlineHeap",
    "GatewaySessionHost",
    "LocalSessionHost",
    "SessionHost",
    "SessionTableError",
]


class SessionTableError(JumpVpnError):
    """The session table refused to open a session (full, or the id already exists).

    `full` is True when the refusal is for want of room (the server's admission rule may
    then end a half-open session for a client that proved its address)."""

    def __init__(self, message: str, *, full: bool = False) -> None:
        super().__init__(message)
        self.full = full


class SessionHost(Protocol):
    """Where the server's sessions live. The UDP driver only ever talks to this."""

    @property
    def policy(self) -> Policy:
        """The core policy of the sessions this host opens. The driver checks that every
        path challenge it sends fits the size the core charged for it
        (`path_challenge_size_bytes`)."""
        ...

    def open(self, session_id: bytes, secret: bytes, transport: TransportDescriptor,
             now_ms: int) -> Sequence[Effect]:
        """Create a session whose handshake finished on `transport`; return its effects.

        Raises `SessionTableError` when the session cannot be created.
        """
        ...

    def handle(self, session_id: bytes, event: Event) -> Sequence[Effect] | None:
        """Step one session; None when no live session has that id."""
        ...

    def tick(self, now_ms: int) -> Sequence[Effect]:
        """Fire every deadline due at `now_ms`, across all sessions."""
        ...

    def next_deadline(self) -> int | None:
        """When `tick` next has work (never later than the true earliest deadline; it may
        be earlier, then `tick` finds nothing due and this moves on), or None."""
        ...


class DeadlineHeap:
    """The earliest deadline over many sessions: O(log n) per change, O(1) to read.

    `schedule(sid, t)` records a session's deadline. A later deadline than the one already
    queued is not queued: the earlier entry fires first and its session is re-read then
    (`due` hands it back, the host reschedules). Entries made stale by an earlier deadline
    are skipped when they surface; the heap is rebuilt once stale entries outnumber live
    ones, so memory stays proportional to the sessions.
    """

    __slots__ = ("_at", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[int, bytes]] = []
        self._at: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._at)

    def schedule(self, session_id: bytes, deadline: int | None) -> None:
        """`session_id` must be looked at by `deadline` (None: never, forget it)."""
        if deadline is None:
            self._at.pop(session_id, None)
            return
        queued = self._at.get(session_id)
        if queued is not None and queued <= deadline:
            return
        self._at[session_id] = deadline
        heapq.heappush(self._heap, (deadline, session_id))
        if len(self._heap) > 2 * len(self._at) + 64:
            self._heap = [(at, sid) for sid, at in self._at.items()]
            heapq.heapify(self._heap)

    def due(self, now_ms: int) -> list[bytes]:
        """Remove and return the sessions whose queued deadline is at or before `now_ms`."""
        heap, at = self._heap, self._at
        out: list[bytes] = []
        while heap and heap[0][0] <= now_ms:
            deadline, sid = heapq.heappop(heap)
            if at.get(sid) == deadline:
                del at[sid]
                out.append(sid)
        return out

    def earliest(self) -> int | None:
        """The earliest queued deadline, or None."""
        heap, at = self._heap, self._at
        while heap and at.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None


class LocalSessionHost:
    """`SessionHost` in a dict: sessions of one process, no store. Ended sessions are kept
    (at most `keep_ended`) so callers can inspect how they ended."""

    def __init__(self, policy: Policy | None = None, max_sessions: int = 1_024,
                 keep_ended: int = 1_024) -> None:
        self.policy = policy if policy is not None else Policy()
        self.max_sessions = max_sessions
        self._live: dict[bytes, SessionState] = {}
        self._ended: collections.OrderedDict[bytes, SessionState] = collections.OrderedDict()
        self._keep_ended = keep_ended
        self._deadlines = DeadlineHeap()

    def __len__(self) -> int:
        return len(self._live)

    def get(self, session_id: bytes) -> SessionState | None:
        """The live or recently ended state of a session."""
        return self._live.get(session_id) or self._ended.get(session_id)

    def open(self, session_id: bytes, secret: bytes, transport: TransportDescriptor,
             now_ms: int) -> Sequence[Effect]:
        """See `SessionHost.open`."""
        if session_id in self._live:
            raise SessionTableError("a live session already has this id")
        if len(self._live) >= self.max_sessions:
            raise SessionTableError(f"session table full ({self.max_sessions} sessions)",
                                    full=True)
        state = new_session(Role.SERVER, session_id, secret, now_ms, self.policy)
        self._live[session_id] = state
        effects = self.handle(session_id, Attach(now_ms, transport))
        return effects if effects is not None else ()

    def handle(self, session_id: bytes, event: Event) -> Sequence[Effect] | None:
        """See `SessionHost.handle`."""
        state = self._live.get(session_id)
        if state is None:
            return None
        new, effects = step(state, event)
        if new.phase is Phase.TERMINATED:
            del self._live[session_id]
            self._deadlines.schedule(session_id, None)
            self._ended[session_id] = new
            while len(self._ended) > self._keep_ended:
                self._ended.popitem(last=False)
        else:
            self._live[session_id] = new
            self._deadlines.schedule(session_id, next_deadline(new))
        return effects

    def tick(self, now_ms: int) -> Sequence[Effect]:
        """See `SessionHost.tick`: only the sessions whose deadline is due are stepped."""
        out: list[Effect] = []
        for session_id in self._deadlines.due(now_ms):
            state = self._live.get(session_id)
            if state is None:
                continue
            deadline = next_deadline(state)
            if deadline is not None and deadline <= now_ms:
                out.extend(self.handle(session_id, Tick(now_ms)) or ())
            else:  # queued early (its deadline moved later since): queue the real one
                self._deadlines.schedule(session_id, deadline)
        return out

    def next_deadline(self) -> int | None:
        """See `SessionHost.next_deadline`."""
        return self._deadlines.earliest()


class GatewaySessionHost:
    """`SessionHost` over a `Gateway`: `UdpServer.bind(..., sessions=GatewaySessionHost(gw))`.

    `open` is `Gateway.open_session` (a refusal raises `SessionTableError` naming the
    gateway's reason); `handle` is `Gateway.handle`, so reattach requests pass the gateway's
    flood limits and every change is committed before its effects are returned; only
    UNKNOWN_SESSION reads as "no such session" (None). Deadlines are the core's plus the
    gateway's idle eviction (`session_idle_ttl_ms`), kept in a `DeadlineHeap` over the
    sessions this host has seen: `tick` steps the due ones with `Gateway.handle(sid, Tick)`
    instead of `Gateway.tick`, which visits every session. The gateway's rejection
    summaries are written on its next input, as with any other caller.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._deadlines = DeadlineHeap()

    def __len__(self) -> int:
        return len(self.gateway)

    @property
    def policy(self) -> Policy:
        """The gateway's session policy."""
        return self.gateway.session_policy

    def get(self, session_id: bytes) -> SessionState | None:
        """This node's copy of a session (`Gateway.local_state`)."""
        return self.gateway.local_state(session_id)

    def open(self, session_id: bytes, secret: bytes, transport: TransportDescriptor,
             now_ms: int) -> Sequence[Effect]:
        """See `SessionHost.open`."""
        result = self.gateway.open_session(session_id, secret, transport, now_ms)
        if not result.accepted:
            reason = result.reason.value if result.reason is not None else "refused"
            raise SessionTableError(f"the gateway refused the session: {reason}",
                                    full=result.reason is ReasonCode.SESSION_TABLE_FULL)
        return self._result(result)

    def handle(self, session_id: bytes, event: Event) -> Sequence[Effect] | None:
        """See `SessionHost.handle`."""
        result = self.gateway.handle(session_id, event)
        if result.reason is ReasonCode.UNKNOWN_SESSION and not result.effects:
            self._deadlines.schedule(session_id, None)
            return None
        return self._result(result)

    def tick(self, now_ms: int) -> Sequence[Effect]:
        """See `SessionHost.tick`: only the sessions whose deadline is due are stepped."""
        out: list[Effect] = []
        for session_id in self._deadlines.due(now_ms):
            deadline = self._deadline(session_id)
            if deadline is not None and deadline <= now_ms:
                out.extend(self._result(self.gateway.handle(session_id, Tick(now_ms))))
            else:
                self._deadlines.schedule(session_id, deadline)
        return out

    def next_deadline(self) -> int | None:
        """See `SessionHost.next_deadline`."""
        return self._deadlines.earliest()

    def _result(self, result: GatewayResult) -> Sequence[Effect]:
        """Every gateway result this host passes on goes through here (a subclass may
        count or watch them); returns the effects for the driver."""
        self._track(result.session_id)
        return result.effects

    def _deadline(self, session_id: bytes) -> int | None:
        state = self.gateway.local_state(session_id)
        if state is None:  # gone from this node's table (ended, evicted, not ours)
            return None
        deadline = next_deadline(state)
        if deadline is None:
            return None
        idle = state.link.clock_ms + self.gateway.policy.session_idle_ttl_ms
        return idle if idle < deadline else deadline

    def _track(self, session_id: bytes) -> None:
        self._deadlines.schedule(session_id, self._deadline(session_id))
