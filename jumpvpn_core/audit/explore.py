"""Exhaustive bounded exploration of the real core, one role at a time.

Breadth-first search over every sequence of environment actions up to a depth, starting
from a fresh session of one role (client alone, or server alone: the other side of the
session is played by the environment, which knows the session key and so can answer
honestly, through `jumpvpn_core.peer`). Every edge is a real `step()` call made through
`checked_step`, so every step and every state it reaches is checked.

The abstract domain (small on purpose, so that depth 8 runs in seconds):

* two transports per side: the first binding and one candidate / new address;
* time advances only by coarse waits: +reattach_timeout (= path validation timeout =
  switch cooldown = half the loss window) and +recovery window (= degraded bound = birth
  timeout) of `EXPLORE_POLICY`; every other action happens at the environment's time;
* nonces: whatever the honest peer uses next (replay top + 1, or the client's counter);
* one attacker who replays the last honest request/accept it saw, or forges one.

A node is `(state, environment time, captured message)`, deduplicated by a canonical hash
of `state_to_data` plus the other two. From the explored graph two liveness checks that
example-based testing cannot state are made:

* from every reachable live state (not ATTACHED, not TERMINATED), ATTACHED or TERMINATED
  is reachable by letting time pass (delivering `Tick` at each `next_deadline`; the
  real core is stepped, and those steps are checked too);
* no cycle of live states (avoiding ATTACHED and TERMINATED) made of state-changing,
  zero-time edges emits anything: such a cycle would let the environment make the core
  act (send, audit, transition) without bound and without time passing. Cycles whose
  edges emit nothing at all are *silent*: they only mirror the environment's own input
  (a candidate reported found, then lost, then found) and are counted separately, with
  the actions that form them, instead of being violations.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

from jumpvpn_core import events as ev
from jumpvpn_core.codec import state_to_data
from jumpvpn_core.effects import Rejected
from jumpvpn_core.forms import event_to_data
from jumpvpn_core.invariants import check_state, checked_step
from jumpvpn_core.machine import next_deadline
from jumpvpn_core.peer import (
    FORGED_PROOF,
    accept_pending,
    answer_challenge,
    challenge_pending,
    next_request,
)
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.state import ClientSide, ServerSide, SessionState, new_session
from jumpvpn_core.transport import TransportDescriptor

__all__ = ["EXPLORE_POLICY", "ExplorationResult", "explore"]

#: Small bounds so that coarse waits cross every deadline within a few steps.
EXPLORE_POLICY = Policy(
    loss_threshold=2,
    loss_window_ms=2_000,
    reattach_timeout_ms=1_000,
    max_recovery_window_ms=3_000,
    max_recovery_rounds=2,
    max_degraded_ms=3_000,
    birth_timeout_ms=3_000,
    transport_lost_ttl_ms=20_000,
    switch_cooldown_ms=1_000,
    max_switches_per_minute=2,
    max_candidates=1,
    path_validation_timeout_ms=1_000,
    reattach_rate_limit=2,
    reattach_rate_window_ms=1_000,
)
_SID = bytes(range(16))
_SECRET = b"exploration secret, public by design"
_T0 = 0
_LIVE_CHAIN_LIMIT = 32
_REQUEST_BYTES = 200

_udp = TransportDescriptor.udp
C1, C2 = _udp("10.0.0.1", 4000), _udp("10.0.0.2", 4000)
OBSERVED = _udp("203.0.113.7", 41000)
A1, A2 = _udp("198.51.100.1", 5000), _udp("198.51.100.2", 5000)


@attrs.frozen
class _Node:
    state: SessionState
    now: int
    captured: Any  # last honest request/accept seen on the wire, or None


# An action maps a node to (event, captured after) or None when it does not apply.
_Action = Callable[[_Node], tuple[Any, Any] | None]


@attrs.frozen
class ExplorationResult:
    """Figures of one exploration, and every violation found (empty when sound)."""

    role: Role
    depth: int
    states: int
    edges: int
    max_depth: int
    live_states: int
    reach_checked: int
    zero_time_cycles: int
    silent_cycles: int
    silent_cycle_actions: tuple[str, ...]
    violations: tuple[str, ...]
    seconds: float

    def summary(self) -> str:
        """One line of figures."""
        return (f"{self.role.value}: depth {self.depth}: {self.states} states, "
                f"{self.edges} edges, max depth {self.max_depth}, "
                f"{self.live_states} live states all reach ATTACHED/TERMINATED "
                f"({self.reach_checked} checked), {self.zero_time_cycles} acting zero-time "
                f"cycles, {self.silent_cycles} silent ones {list(self.silent_cycle_actions)}, "
                f"{len(self.violations)} violations, {self.seconds:.1f} s")


def _key(node: _Node) -> bytes:
    data = [state_to_data(node.state), node.now,
            None if node.captured is None else event_to_data(node.captured)]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).digest()


def _plain(make: Callable[[int], Any]) -> _Action:
    return lambda n: (make(n.now), n.captured)


def _wait(delta: int) -> _Action:
    return lambda n: (ev.Tick(n.now + delta), n.captured)


def _replay(n: _Node) -> tuple[Any, Any] | None:
    """The attacker re-sends the last honest message it captured, now."""
    if n.captured is None:
        return None
    return attrs.evolve(n.captured, now_ms=n.now), n.captured


def _honest(event: Any, n: _Node, forged: bool) -> tuple[Any, Any]:
    """An honest message is captured by the attacker; a forged one is not."""
    return event, (n.captured if forged else event)


def _client_actions(policy: Policy) -> list[tuple[str, _Action]]:
    def challenge(n: _Node) -> tuple[Any, Any] | None:
        side = n.state.side
        assert isinstance(side, ClientSide)
        via = side.pending.via if side.pending is not None else C1
        return (challenge_pending(n.state, n.now, b"\x05" * 16, observed=OBSERVED, via=via),
                n.captured)

    def accept(n: _Node, forged: bool = False) -> tuple[Any, Any] | None:
        side = n.state.side
        assert isinstance(side, ClientSide)
        if side.pending is None:
            return None
        event = accept_pending(n.state, n.now, forged_proof=FORGED_PROOF if forged else None)
        return _honest(event, n, forged)

    return [
        ("attach", _plain(lambda t: ev.Attach(t, C1))),
        ("traffic on C1", _plain(lambda t: ev.InboundTraffic(t, C1, 100))),
        ("packet lost", _plain(lambda t: ev.PacketLoss(t, 1))),
        ("C1 failed", _plain(lambda t: ev.TransportFailed(t, C1))),
        ("all transports failed", _plain(ev.AllTransportsFailed)),
        ("C2 discovered", _plain(lambda t: ev.CandidateDiscovered(t, C2))),
        ("C2 lost", _plain(lambda t: ev.CandidateLost(t, C2))),
        ("path challenge", challenge),
        ("honest accept", accept),
        ("forged accept", lambda n: accept(n, forged=True)),
        ("replayed accept", _replay),
        ("close", _plain(ev.Close)),
        ("wait reattach_timeout", _wait(policy.reattach_timeout_ms)),
        ("wait recovery window", _wait(policy.max_recovery_window_ms)),
    ]


def _server_actions(policy: Policy) -> list[tuple[str, _Action]]:
    def request(n: _Node, source: TransportDescriptor | None,
                forged: bool = False) -> tuple[Any, Any] | None:
        source = n.state.link.active if source is None else source
        if source is None:
            return None
        event = next_request(n.state, n.now, source, size=_REQUEST_BYTES,
                             forged_proof=FORGED_PROOF if forged else None)
        return _honest(event, n, forged)

    def answer(n: _Node) -> tuple[Any, Any] | None:
        side = n.state.side
        assert isinstance(side, ServerSide)
        if side.pending is None:
            return None
        return _honest(answer_challenge(n.state, n.now, size=_REQUEST_BYTES), n, False)

    return [
        ("attach", _plain(lambda t: ev.Attach(t, A1))),
        ("traffic from A1", _plain(lambda t: ev.InboundTraffic(t, A1, 100))),
        ("traffic from A2", _plain(lambda t: ev.InboundTraffic(t, A2, 200))),
        ("honest request on the bound path", lambda n: request(n, None)),
        ("honest challenge answer", answer),
        ("forged request from A2", lambda n: request(n, A2, forged=True)),
        ("replayed request", _replay),
        ("close", _plain(ev.Close)),
        ("wait reattach_timeout", _wait(policy.reattach_timeout_ms)),
        ("wait recovery window", _wait(policy.max_recovery_window_ms)),
    ]


def _settles(state: SessionState, violations: list[str]) -> bool:
    """Let time pass deadline by deadline; True when ATTACHED or TERMINATED is reached."""
    for _ in range(_LIVE_CHAIN_LIMIT):
        if state.phase in (Phase.ATTACHED, Phase.TERMINATED):
            return True
        deadline = next_deadline(state)
        if deadline is None:
            return False
        new, _effects, found = checked_step(state, ev.Tick(max(deadline, state.link.clock_ms)))
        violations.extend(f"time-only continuation: {violation}" for violation in found)
        if new is state:
            return False
        state = new
    return False


def _zero_time_cycles(nodes: dict[bytes, _Node],
                      zero_edges: dict[bytes, list[bytes]]) -> list[list[bytes]]:
    """Strongly connected components (size > 1) of live nodes over zero-time edges."""
    live = {k for k, n in nodes.items()
            if n.state.phase not in (Phase.ATTACHED, Phase.TERMINATED)}
    index: dict[bytes, int] = {}
    low: dict[bytes, int] = {}
    on_stack: set[bytes] = set()
    stack: list[bytes] = []
    out: list[list[bytes]] = []
    counter = 0
    for root in live:
        if root in index:
            continue
        work: list[tuple[bytes, int]] = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            succ = [s for s in zero_edges.get(node, ()) if s in live]
            if child < len(succ):
                work.append((node, child + 1))
                nxt = succ[child]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


def explore(role: Role, depth: int, policy: Policy = EXPLORE_POLICY) -> ExplorationResult:
    """Explore every action sequence of length <= `depth` for `role`; see the module doc.

    Raises `ValueError` for a negative `depth`.
    """
    if depth < 0:
        raise ValueError(f"depth must be 0 or more, got {depth}")
    started = time.perf_counter()
    actions = _client_actions(policy) if role is Role.CLIENT else _server_actions(policy)
    root = _Node(new_session(role, _SID, _SECRET, _T0, policy), _T0, None)
    root_key = _key(root)
    nodes: dict[bytes, _Node] = {root_key: root}
    level: dict[bytes, int] = {root_key: 0}
    zero_edges: dict[bytes, list[bytes]] = {}
    edge_info: dict[tuple[bytes, bytes], tuple[str, tuple[str, ...]]] = {}
    violations: list[str] = [f"root: {v}" for v in check_state(root.state)]
    queue: deque[bytes] = deque([root_key])
    edges = 0
    while queue:
        key = queue.popleft()
        node = nodes[key]
        if level[key] >= depth:
            continue
        for label, action in actions:
            made = action(node)
            if made is None:
                continue
            event, captured = made
            new_state, effects, found = checked_step(node.state, event)
            if any(type(e) is Rejected for e in effects):
                captured = node.captured  # the attacker keeps messages that did something
            edges += 1
            violations.extend(f"depth {level[key] + 1}, {label}: {v}" for v in found)
            child = _Node(new_state, max(node.now, event.now_ms), captured)
            if new_state.phase is Phase.TERMINATED:
                # Nothing changes a TERMINATED state (checked on the edges into it and on
                # its own edges); env time and captures stop mattering, so fold them.
                child = _Node(new_state, new_state.link.clock_ms, None)
            child_key = key if (new_state is node.state and child.now == node.now
                                and captured is node.captured) else _key(child)
            if child_key == key:
                continue
            if child.now == node.now and new_state is not node.state:
                zero_edges.setdefault(key, []).append(child_key)
                edge_info[(key, child_key)] = (label, tuple(type(e).__name__ for e in effects))
            if child_key not in nodes:
                nodes[child_key] = child
                level[child_key] = level[key] + 1
                queue.append(child_key)
    live = [n for n in nodes.values()
            if n.state.phase not in (Phase.ATTACHED, Phase.TERMINATED)]
    checked = 0
    for node in live:
        checked += 1
        if not _settles(node.state, violations):
            violations.append(f"live state never reaches ATTACHED/TERMINATED by time: "
                              f"{node.state.phase.value} v{node.state.state_version}")
    noisy = 0
    silent_labels: set[str] = set()
    silent = 0
    for component in _zero_time_cycles(nodes, zero_edges):
        members = set(component)
        inner = {edge_info[(a, b)] for a in component for b in zero_edges.get(a, ())
                 if b in members}
        if any(kinds for _label, kinds in inner):
            noisy += 1
            if noisy <= 5:
                phases = sorted({nodes[k].state.phase.value for k in component})
                violations.append(f"zero-time cycle of {len(component)} live states "
                                  f"({phases}) that acts: {sorted(inner)}")
        else:
            silent += 1
            silent_labels.update(label for label, _kinds in inner)
    return ExplorationResult(role, depth, len(nodes), edges, max(level.values()), len(live),
                             checked, noisy, silent, tuple(sorted(silent_labels)),
                             tuple(violations), time.perf_counter() - started)
