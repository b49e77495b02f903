"""Exhaustive bounded exploration of the real core, one role at a time.

Breadth-first search over every sequence of environment actions up to a depth, starting
from a fresh session of one role (client alone, or server alone: the other side of the
session is played by the environment, which knows the session key and so can answer
honestly, through `jumpvpn_core.peer`). Every edge is a real `step()` call made through
`checked_step`, so every step and every state it reaches is checked.

The abstract domain (small on purpose, so that depth 8 runs in seconds):

* two transports per side: the first binding and one candidate / new address;
* time advances only by coarse waits: +reattach_timeout (= path validation timeout =
  switch cooldown = migration dwell time = half the loss window) and +recovery window
  (= degraded bound = birth timeout = measurement age limit) of `EXPLORE_POLICY`; every
  other action happens at the environment's time;
* nonces: whatever the honest peer uses next (replay top + 1, or the client's counter);
* one attacker who replays the last honest request/accept it saw, or forges one;
* path quality (client), a coarse alphabet: a lost probe on the active path and a fast
  RTT sample on the candidate, each only while the client knows both (with one path, a
  score decides nothing yet). Between them they reach every rank class (good, unmeasured,
  bad) and the migration's upgrade target; each sample action added multiplies the states
  at depth 8 by 1.5 to 1.7. A proactive migration (two samples, a wait, the honest accept
  or challenge) fits in the depth.

`explore_migrations` explores the client once more in a small migration domain: from a
client attached on C1 with C2 its candidate, both measured alike, the environment loses
probes on either path, waits one dwell time or half of one, and answers a pending request
with a path challenge, an accept or a forged accept, under `MIGRATION_POLICY` (no switch
cooldown, so the dwell time alone spaces proactive switches). At depth 8 a path there
makes up to two proactive switches, and the lead changes hands faster and slower than
the dwell time.

A node is `(state, environment time, captured message, proactive switch times)`, compared
by value (every part is a frozen, hashable value). The times of the proactive switches
(`MIGRATED_TO_BETTER_PATH`) made along the path to a node are part of it, so a check on
them holds for every explored path (`switch_bound_violations`): in any window of length T
within the path's time span (from the session's start to the switch), at most ceil(T /
migration_dwell_ms) proactive switches, and never more than `max_switches_per_minute` in
60 s (`controlled_migration` checks each migration request against the exact
`migration_due` on every edge besides). From the explored graph two liveness checks that
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

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

from jumpvpn_core import events as ev
from jumpvpn_core.effects import Rejected, StateChanged
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
from jumpvpn_core.policy import SWITCH_WINDOW_MS, Policy
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.state import ClientSide, ServerSide, SessionState, new_session
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "EXPLORE_POLICY",
    "MIGRATION_POLICY",
    "ExplorationResult",
    "explore",
    "explore_migrations",
    "switch_bound_violations",
]

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
    quality_max_age_ms=3_000,
    migration_dwell_ms=1_000,
)
#: The migration domain's policy: without a switch cooldown, only the dwell time spaces
#: proactive switches, which is what the per-path bound checks.
MIGRATION_POLICY = attrs.evolve(EXPLORE_POLICY, switch_cooldown_ms=0)
_SID = bytes(range(16))
_SECRET = b"exploration secret, public by design"
_T0 = 0
_LIVE_CHAIN_LIMIT = 32
_REQUEST_BYTES = 200
#: The RTT sample of the client's alphabet (a lost probe costs the default 1000 ms / 8).
FAST_RTT_MS = 10

_udp = TransportDescriptor.udp
C1, C2 = _udp("10.0.0.1", 4000), _udp("10.0.0.2", 4000)
OBSERVED = _udp("203.0.113.7", 41000)
A1, A2 = _udp("198.51.100.1", 5000), _udp("198.51.100.2", 5000)


@attrs.frozen(cache_hash=True)
class _Node:
    """One explored node; nodes are deduplicated by value (the hash is computed once)."""

    state: SessionState
    now: int
    captured: Any  # last honest request/accept seen on the wire, or None
    proactive: tuple[int, ...] = ()  # times of the proactive switches on the path here


# An action maps a node to (event, captured after) or None when it does not apply.
_Action = Callable[[_Node], tuple[Any, Any] | None]


@attrs.frozen
class ExplorationResult:
    """Figures of one exploration, and every violation found (empty when sound).

    `domain` is "session" (from a fresh session, `explore`) or "migrations"
    (`explore_migrations`); `proactive_switch_edges` counts the edges that made a
    proactive switch, `max_proactive_switches` the most made along one path."""

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
    proactive_switch_edges: int = 0
    max_proactive_switches: int = 0
    domain: str = "session"

    def summary(self) -> str:
        """One line of figures."""
        name = self.role.value if self.domain == "session" else \
            f"{self.role.value} {self.domain}"
        return (f"{name}: depth {self.depth}: {self.states} states, "
                f"{self.edges} edges, max depth {self.max_depth}, "
                f"{self.live_states} live states all reach ATTACHED/TERMINATED "
                f"({self.reach_checked} checked), {self.zero_time_cycles} acting zero-time "
                f"cycles, {self.silent_cycles} silent ones {list(self.silent_cycle_actions)}, "
                f"{self.proactive_switch_edges} proactive switch edges (at most "
                f"{self.max_proactive_switches} on a path), "
                f"{len(self.violations)} violations, {self.seconds:.1f} s")


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


def _sample_on(candidate: bool, rtt_ms: int | None) -> _Action:
    """An RTT sample (a lost probe when `rtt_ms` is None) on the client's active path, or
    on its candidate; applies only while the client knows an active path and a candidate."""
    def action(n: _Node) -> tuple[Any, Any] | None:
        active, candidates = n.state.link.active, n.state.roaming.candidates
        if active is None or not candidates:
            return None
        path = candidates[0] if candidate else active
        if rtt_ms is None:
            return ev.ProbeLost(n.now, path), n.captured
        return ev.RttSample(n.now, path, rtt_ms), n.captured
    return action


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
        ("probe lost on the active path", _sample_on(False, None)),
        ("fast sample on the candidate", _sample_on(True, FAST_RTT_MS)),
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


def _migration_actions(policy: Policy) -> list[tuple[str, _Action]]:
    def accept(n: _Node, forged: bool = False) -> tuple[Any, Any] | None:
        side = n.state.side
        assert isinstance(side, ClientSide)
        if side.pending is None:
            return None
        return accept_pending(n.state, n.now,
                              forged_proof=FORGED_PROOF if forged else None), n.captured

    def challenge(n: _Node) -> tuple[Any, Any] | None:
        side = n.state.side
        assert isinstance(side, ClientSide)
        if side.pending is None:
            return None
        return challenge_pending(n.state, n.now, b"\x05" * 16, observed=OBSERVED), n.captured

    return [
        ("probe lost on the active path", _sample_on(False, None)),
        ("probe lost on the candidate", _sample_on(True, None)),
        ("path challenge", challenge),
        ("honest accept", accept),
        ("forged accept", lambda n: accept(n, forged=True)),
        ("wait migration_dwell", _wait(policy.migration_dwell_ms)),
        ("wait half migration_dwell", _wait(max(1, policy.migration_dwell_ms // 2))),
    ]


def _migration_root(policy: Policy, violations: list[str]) -> SessionState:
    """A client attached on C1 at the start, C2 its candidate, both measured alike (10 ms,
    no loss): neither is better until the environment says otherwise."""
    state = new_session(Role.CLIENT, _SID, _SECRET, _T0, policy)
    for event in (ev.Attach(_T0, C1), ev.CandidateDiscovered(_T0, C2),
                  ev.RttSample(_T0, C1, FAST_RTT_MS), ev.RttSample(_T0, C2, FAST_RTT_MS)):
        state, _effects, found = checked_step(state, event)
        violations.extend(f"root: {v}" for v in found)
    return state


def switch_bound_violations(times: tuple[int, ...], start: int, now: int,
                            policy: Policy) -> list[str]:
    """How proactive switches made at `times` (sorted) over the span `start`..`now` break
    the hysteresis bounds of `specs/path-quality.md`: more than ceil(T /
    migration_dwell_ms) in a window of length T (the span itself, or one that starts at a
    switch and ends just after a later one; dwell > 0 only), or more than
    `max_switches_per_minute` within 60 s. Empty when they hold."""
    out = []
    dwell = policy.migration_dwell_ms
    if dwell > 0 and len(times) > math.ceil((now - start) / dwell):
        out.append(f"{len(times)} proactive switches in {now - start} ms "
                   f"(dwell {dwell} ms)")
    for i, first in enumerate(times):
        for j in range(i + 1, len(times)):
            count, span = j - i + 1, times[j] - first
            if dwell > 0 and count > math.ceil((span + 1) / dwell):
                out.append(f"{count} proactive switches within {span + 1} ms "
                           f"(dwell {dwell} ms): {list(times)}")
            if span < SWITCH_WINDOW_MS and count > policy.max_switches_per_minute:
                out.append(f"{count} proactive switches within {span} ms "
                           f"(max {policy.max_switches_per_minute} a minute)")
    return out


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


def _zero_time_cycles(nodes: dict[_Node, int],
                      zero_edges: dict[_Node, list[_Node]]) -> list[list[_Node]]:
    """Strongly connected components (size > 1) of live nodes over zero-time edges."""
    live = {n for n in nodes if n.state.phase not in (Phase.ATTACHED, Phase.TERMINATED)}
    index: dict[_Node, int] = {}
    low: dict[_Node, int] = {}
    on_stack: set[_Node] = set()
    stack: list[_Node] = []
    out: list[list[_Node]] = []
    counter = 0
    for root in live:
        if root in index:
            continue
        work: list[tuple[_Node, int]] = [(root, 0)]
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
    """Explore every action sequence of length <= `depth` for `role` from a fresh session;
    see the module doc.

    Raises `ValueError` for a negative `depth`.
    """
    if depth < 0:
        raise ValueError(f"depth must be 0 or more, got {depth}")
    actions = _client_actions(policy) if role is Role.CLIENT else _server_actions(policy)
    root = new_session(role, _SID, _SECRET, _T0, policy)
    return _explore(role, "session", depth, policy, root, actions,
                    [f"root: {v}" for v in check_state(root)])


def explore_migrations(depth: int, policy: Policy = MIGRATION_POLICY) -> ExplorationResult:
    """Explore every action sequence of length <= `depth` of the migration domain: a client
    attached with two paths measured alike, lost probes on either, the dwell-time wait,
    and the server's challenge, accept or a forged accept; see the module doc.

    Raises `ValueError` for a negative `depth`.
    """
    if depth < 0:
        raise ValueError(f"depth must be 0 or more, got {depth}")
    violations: list[str] = []
    root = _migration_root(policy, violations)
    return _explore(Role.CLIENT, "migrations", depth, policy, root,
                    _migration_actions(policy), violations)


def _explore(role: Role, domain: str, depth: int, policy: Policy, root_state: SessionState,
             actions: list[tuple[str, _Action]], violations: list[str]) -> ExplorationResult:
    """The search itself, from `root_state` at time `_T0`, with `actions` as the alphabet
    (`violations` holds what building the root found)."""
    started = time.perf_counter()
    root = _Node(root_state, _T0, None)
    level: dict[_Node, int] = {root: 0}  # every node found, with its depth
    zero_edges: dict[_Node, list[_Node]] = {}
    edge_info: dict[tuple[_Node, _Node], tuple[str, tuple[str, ...]]] = {}
    queue: deque[_Node] = deque([root])
    edges = 0
    migrations = 0
    most = 0
    while queue:
        node = queue.popleft()
        if level[node] >= depth:
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
            violations.extend(f"depth {level[node] + 1}, {label}: {v}" for v in found)
            if new_state is node.state and event.now_ms <= node.now and \
                    captured is node.captured:
                continue  # nothing changed: the edge leads back to this node
            proactive = node.proactive
            if any(type(e) is StateChanged and e.reason is ReasonCode.MIGRATED_TO_BETTER_PATH
                   for e in effects):
                migrations += 1
                proactive = (*proactive, event.now_ms)
                most = max(most, len(proactive))
                violations.extend(f"depth {level[node] + 1}, {label}: switch bound: {v}"
                                  for v in switch_bound_violations(proactive, _T0,
                                                                   event.now_ms, policy))
            child = _Node(new_state, max(node.now, event.now_ms), captured, proactive)
            if new_state.phase is Phase.TERMINATED:
                # Nothing changes a TERMINATED state (checked on the edges into it and on
                # its own edges); env time, captures and switch history stop mattering,
                # so fold them.
                child = _Node(new_state, new_state.link.clock_ms, None)
            if child == node:
                continue
            if child.now == node.now and new_state is not node.state:
                zero_edges.setdefault(node, []).append(child)
                edge_info[(node, child)] = (label, tuple(type(e).__name__ for e in effects))
            if child not in level:
                level[child] = level[node] + 1
                queue.append(child)
    live = [n for n in level if n.state.phase not in (Phase.ATTACHED, Phase.TERMINATED)]
    checked = 0
    for node in live:
        checked += 1
        if not _settles(node.state, violations):
            violations.append(f"live state never reaches ATTACHED/TERMINATED by time: "
                              f"{node.state.phase.value} v{node.state.state_version}")
    noisy = 0
    silent_labels: set[str] = set()
    silent = 0
    for component in _zero_time_cycles(level, zero_edges):
        members = set(component)
        inner = {edge_info[(a, b)] for a in component for b in zero_edges.get(a, ())
                 if b in members}
        if any(kinds for _label, kinds in inner):
            noisy += 1
            if noisy <= 5:
                phases = sorted({k.state.phase.value for k in component})
                violations.append(f"zero-time cycle of {len(component)} live states "
                                  f"({phases}) that acts: {sorted(inner)}")
        else:
            silent += 1
            silent_labels.update(label for label, _kinds in inner)
    return ExplorationResult(role, depth, len(level), edges, max(level.values()), len(live),
                             checked, noisy, silent, tuple(sorted(silent_labels)),
                             tuple(violations), time.perf_counter() - started, migrations,
                             most, domain)
