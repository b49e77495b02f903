"""Golden vectors: (state, event) -> (new state, effects) examples taken from the reference.

Generation is deterministic: fixed session id, secret, clock and transports; a fixed list
of scripted runs per role gives the *base states*; every base state is crossed with every
*event variant* (each event kind, well-formed and malformed, honest and hostile); one
vector is kept per distinct behaviour, keyed by (role, phase, event kind, outcome), so
the files stay small while covering every (phase x event kind) pair and every reason code
the core can produce.

`write_vectors(out_dir)` writes `client.jsonl`, `server.jsonl` and `README.md`;
`replay_vector(vector)` runs one vector through `step()` and reports any difference.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs

from jumpvpn_core import events as ev
from jumpvpn_core.codec import state_from_data, state_to_data
from jumpvpn_core.errors import (
    FormDecodeError,
    JumpVpnError,
    StateDecodeError,
    describe,
    field_name,
)
from jumpvpn_core.events import EVENT_TYPES
from jumpvpn_core.forms import effect_to_data, event_from_data, event_to_data, parse_json
from jumpvpn_core.machine import next_deadline, step
from jumpvpn_core.peer import (
    FORGED_PROOF,
    Peer,
    accept_pending,
    answer_challenge,
    challenge_pending,
    next_request,
)
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.quality import path_cost
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.state import ClientSide, ServerSide, SessionState, new_session
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "SECRET",
    "SESSION_ID",
    "UNREACHABLE_REASONS",
    "VECTOR_FORMAT_VERSION",
    "Vector",
    "VectorError",
    "base_states",
    "build_vectors",
    "dumps_vector",
    "event_variants",
    "load_vectors",
    "replay_vector",
    "write_vectors",
]

#: Version of the vector line format described in `specs/vectors/README.md`.
VECTOR_FORMAT_VERSION = 2

SESSION_ID = bytes(range(16))
#: Test-only secret, public on purpose: vectors must carry the control key to be replayable.
SECRET = b"jumpvpn golden vector secret, public by design"
T0 = 1_000_000

_udp = TransportDescriptor.udp
# Client: local transports. C1 is the first binding, C2..C6 candidates, C9 never known.
C1, C2, C3, C4, C5, C6, C9 = (_udp(f"10.0.0.{n}", 4000) for n in (1, 2, 3, 4, 5, 6, 9))
OBSERVED = _udp("203.0.113.7", 41000)
# Server: client addresses as the server sees them. A1 first binding, A9 never used.
A1, A2, A3, A9 = (_udp(f"198.51.100.{n}", 5000) for n in (1, 2, 3, 9))

#: Reason codes the reference core can never emit, with why. Each is listed in the README.
#: Empty today: every code of the vocabulary is reachable through `step()`.
# Codes that only the gateway emits (it refuses before, or instead of, calling step()).
_GATEWAY_ONLY = "emitted by jumpvpn_core.gateway around step(), never by step() itself"
UNREACHABLE_REASONS: dict[ReasonCode, str] = {
    ReasonCode.FLOOD_LIMITED: _GATEWAY_ONLY,
    ReasonCode.SOURCE_FLOOD_LIMITED: _GATEWAY_ONLY,
    ReasonCode.UNKNOWN_SESSION: _GATEWAY_ONLY,
    ReasonCode.SESSION_TABLE_FULL: _GATEWAY_ONLY,
    ReasonCode.STORE_UNAVAILABLE: _GATEWAY_ONLY,
    ReasonCode.COMMIT_CONFLICT: _GATEWAY_ONLY,
    ReasonCode.NOT_OWNER: _GATEWAY_ONLY,
}


@attrs.frozen
class Vector:
    """One golden vector, before serialisation."""

    role: Role
    label: str
    state: SessionState
    event: Any
    new_state: SessionState
    effects: tuple[Any, ...]

    def to_data(self, ident: str) -> dict[str, Any]:
        """The JSON line form (see `specs/vectors/README.md`)."""
        return {
            "format": VECTOR_FORMAT_VERSION,
            "id": ident,
            "role": self.role.value,
            "phase": self.state.phase.value,
            "event_kind": type(self.event).__name__,
            "label": self.label,
            "state": state_to_data(self.state, include_secrets=True),
            "event": event_to_data(self.event),
            "expected": {
                "unchanged": self.new_state is self.state,
                "state": state_to_data(self.new_state, include_secrets=True),
                "effects": [effect_to_data(e) for e in self.effects],
            },
        }


# --- scripted runs: the base states -----------------------------------------------------------

Step = Callable[[SessionState], Any]


def _run(state: SessionState, steps: Iterable[Step]) -> Iterator[SessionState]:
    yield state
    for make in steps:
        state, _ = step(state, make(state))
        yield state


def _accept(state: SessionState, now: int, *, nonce_delta: int = 0, version_delta: int = 1,
            **overrides: Any) -> ev.ReattachAccepted:
    """The server's accept of the client's pending reattach, with its nonce or version
    shifted (a stray accept arrives on the active transport, or C1 before any binding)."""
    side = state.side
    assert isinstance(side, ClientSide)
    pending = side.pending
    if pending is None and state.link.active is None:
        overrides.setdefault("via", C1)
    nonce = (pending.nonce if pending is not None else side.next_nonce) + nonce_delta
    return accept_pending(state, now, nonce=nonce,
                          state_version=side.known_version + version_delta, **overrides)


def _other(state: SessionState) -> bytes:
    """A session id that is not this state's."""
    return bytes(b ^ 0xFF for b in state.session_id)


def _deadline(s: SessionState) -> int:
    deadline = next_deadline(s)
    return s.link.clock_ms if deadline is None else deadline


def _client_scripts(policy: Policy) -> list[list[Step]]:
    attach: Step = lambda s: ev.Attach(T0, C1)  # noqa: E731 - tiny script steps read best inline
    heard: Step = lambda s: ev.InboundTraffic(s.link.clock_ms + 100, C1, 1200)  # noqa: E731
    tick_deadline: Step = lambda s: ev.Tick(_deadline(s))  # noqa: E731
    loss: Step = lambda s: ev.PacketLoss(s.link.clock_ms + 10, policy.loss_threshold)  # noqa: E731
    window_end: Step = lambda s: ev.Tick(  # noqa: E731
        s.phase_since_ms + policy.max_recovery_window_ms)

    def discover(t: TransportDescriptor) -> Step:
        return lambda s: ev.CandidateDiscovered(s.link.clock_ms + 5, t)

    def rtt(t: TransportDescriptor, rtt_ms: int) -> Step:
        return lambda s: ev.RttSample(s.link.clock_ms + 5, t, rtt_ms)

    return [
        # Loss spike, reattach on the same path, then a delivery timeout.
        [attach, heard, discover(C2), loss, lambda s: _accept(s, s.link.clock_ms + 20),
         lambda s: ev.DeliveryTimeout(s.link.clock_ms + 30)],
        # Active transport fails; reattach through the candidate after a path challenge.
        [attach, discover(C2), lambda s: ev.TransportFailed(s.link.clock_ms + 10, C1),
         lambda s: challenge_pending(s, s.link.clock_ms + 10, b"\x01" * 16, observed=OBSERVED),
         lambda s: _accept(s, s.link.clock_ms + 10)],
        # Escalation ladder: RECOVERING -> DEGRADED -> RECOVERING ... rounds exhausted.
        [attach, loss, heard, window_end, discover(C2), heard, window_end,
         discover(C3), heard, window_end, discover(C4)],
        # Degraded, then the active transport fails.
        [attach, loss, heard, window_end, lambda s: ev.TransportFailed(s.link.clock_ms + 1, C1)],
        # Total collapse and no candidate within the recovery window.
        [attach, lambda s: ev.AllTransportsFailed(s.link.clock_ms + 10), tick_deadline],
        # Recovering without hearing the active path: the window runs out.
        [attach, discover(C2), lambda s: ev.DeliveryTimeout(s.link.clock_ms + 10), tick_deadline,
         window_end],
        # Candidate set filled to the bound.
        [attach, discover(C2), discover(C3), discover(C4), discover(C5)],
        # Switch twice in quick succession (cooldown), then again later.
        [attach, discover(C2), discover(C3), lambda s: ev.TransportFailed(s.link.clock_ms, C1),
         lambda s: _accept(s, s.link.clock_ms + 10),
         lambda s: ev.TransportFailed(s.link.clock_ms + 10, C2)],
        # Path quality: a candidate beats the active path by the margin; after the dwell
        # time the client migrates proactively (the deadline fires the request), answers
        # the server's challenge and is accepted: MIGRATED_TO_BETTER_PATH.
        [attach, discover(C2), rtt(C1, 120), rtt(C2, 30), tick_deadline,
         lambda s: challenge_pending(s, s.link.clock_ms + 10, b"\x03" * 16, observed=OBSERVED),
         lambda s: _accept(s, s.link.clock_ms + 10), rtt(C2, 200), rtt(C1, 40)],
        # A migration that is never answered: the request times out and the dwell restarts.
        [attach, discover(C2), rtt(C1, 120), rtt(C2, 30), tick_deadline, tick_deadline,
         tick_deadline, tick_deadline, lambda s: ev.ProbeLost(s.link.clock_ms + 5, C2)],
        # Birth only, then end by lifetime/birth timeout.
        [tick_deadline],
        [attach, lambda s: ev.Tick(s.ident.created_ms + policy.session_max_lifetime_ms)],
        [attach, lambda s: ev.Close(s.link.clock_ms + 1)],
    ]


def _server_scripts(policy: Policy) -> list[list[Step]]:
    attach: Step = lambda s: ev.Attach(T0, A1)  # noqa: E731
    heard_old: Step = lambda s: ev.InboundTraffic(s.link.clock_ms + 50, A1, 1200)  # noqa: E731
    tick_deadline: Step = lambda s: ev.Tick(_deadline(s))  # noqa: E731

    def probe(t: TransportDescriptor, size: int = 1200, dt: int = 10) -> Step:
        return lambda s: ev.InboundTraffic(s.link.clock_ms + dt, t, size)

    def answer(dt: int = 5) -> Step:
        return lambda s: answer_challenge(s, s.link.clock_ms + dt)

    def active_request(dt: int = 0) -> Step:
        return lambda s: next_request(s, s.link.clock_ms + dt, A1)

    switch_steps: list[Step] = []
    for n in range(policy.max_switches_per_minute):
        target = A2 if n % 2 == 0 else A3
        switch_steps += [probe(target, dt=policy.switch_cooldown_ms), answer(0)]
    return [
        # Same-path reattach, then NAT churn to A2 validated by a path challenge.
        [attach, heard_old, active_request(10), probe(A2), answer()],
        # New address never answers; the old path still works: revert.
        [attach, probe(A2), heard_old, tick_deadline],
        # Probe without bytes (no challenge may be sent), window runs out.
        [attach, probe(A2, size=0), tick_deadline, tick_deadline],
        # Partial viability: DEGRADED, then DEGRADED times out.
        # (the old path is heard while a late validation is still open when the window ends)
        [attach, probe(A2), lambda s: ev.Tick(s.link.clock_ms + policy.path_validation_timeout_ms),
         lambda s: ev.InboundTraffic(s.phase_since_ms + policy.max_recovery_window_ms
                                  - policy.path_validation_timeout_ms // 2, A3, 1200),
         heard_old, lambda s: ev.Tick(s.phase_since_ms + policy.max_recovery_window_ms),
         tick_deadline],
        # Reattach requests from a new address (validation opened by a request).
        [attach, lambda s: next_request(s, s.link.clock_ms + 10, A2, size=1200),
         answer(), lambda s: answer_challenge(s, s.link.clock_ms + 10) if s.side.pending else
         probe(A3)(s)],
        # Per-session rate limit: many verified requests at once.
        [attach, *[active_request(1)] * policy.reattach_rate_limit],
        # Far nonce accepted; older nonces drop out of the window.
        [attach, lambda s: next_request(s, s.link.clock_ms + 1, A1,
                                    nonce=policy.replay_window_bits + 500)],
        # Switch limit: one switch per cooldown until the per-minute bound.
        [attach, *switch_steps, probe(A2, dt=policy.switch_cooldown_ms)],
        [tick_deadline],
        [attach, lambda s: ev.Tick(_deadline(s))],
        [attach, lambda s: ev.Evict(s.link.clock_ms + 1)],
    ]


def base_states(role: Role, policy: Policy | None = None) -> list[SessionState]:
    """Every state visited by the scripted runs of `role`, first occurrence first."""
    policy = Policy() if policy is None else policy
    scripts = _client_scripts(policy) if role is Role.CLIENT else _server_scripts(policy)
    seen: set[str] = set()
    out: list[SessionState] = []
    for script in scripts:
        for state in _run(new_session(role, SESSION_ID, SECRET, T0, policy), script):
            key = json.dumps(state_to_data(state), sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(state)
    return out


# --- event variants -----------------------------------------------------------------------------


def event_variants(state: SessionState) -> list[tuple[str, Any]]:
    """Labelled events to try on `state`: every event kind, honest and hostile forms."""
    policy = state.ident.policy
    clock = state.link.clock_ms
    now = clock + 10
    out: list[tuple[str, Any]] = [("tick now", ev.Tick(clock))]
    deadline = next_deadline(state)
    if deadline is not None:
        out.append(("tick at next deadline", ev.Tick(deadline)))
    if state.phase is Phase.RECOVERING:
        out.append(("tick at end of the recovery window",
                    ev.Tick(state.phase_since_ms + policy.max_recovery_window_ms)))
    out.append(("tick at end of lifetime",
                ev.Tick(state.ident.created_ms + policy.session_max_lifetime_ms)))
    if clock > 0:
        out.append(("close with time going backwards", ev.Close(clock - 1)))
    out += [
        ("attach", ev.Attach(now, C1 if state.role is Role.CLIENT else A1)),
        ("close", ev.Close(now)),
        ("ownership ambiguous", ev.OwnershipAmbiguous(now)),
        ("evict", ev.Evict(now)),
        ("store record invalid", ev.StoreRecordInvalid(now)),
    ]
    if state.role is Role.CLIENT:
        out += _client_variants(state, now)
        out.append(("reattach request at a client",
                    ev.ReattachRequest(now, A1, state.session_id, 1, 0, now, A1, FORGED_PROOF)))
    else:
        out += _server_variants(state, now)
        out += [
            ("packet loss at a server", ev.PacketLoss(now, 1)),
            ("delivery timeout at a server", ev.DeliveryTimeout(now)),
            ("transport failed at a server", ev.TransportFailed(now, A1)),
            ("all transports failed at a server", ev.AllTransportsFailed(now)),
            ("candidate discovered at a server", ev.CandidateDiscovered(now, A2)),
            ("candidate lost at a server", ev.CandidateLost(now, A2)),
            ("rtt sample at a server", ev.RttSample(now, A1, 30)),
            ("lost probe at a server", ev.ProbeLost(now, A1)),
            ("path challenge at a server",
             Peer.of(state).challenge(now, A1, challenge=b"\x01" * 16, observed=OBSERVED,
                                      state_version=state.state_version)),
            ("reattach accepted at a server",
             ev.ReattachAccepted(now, A1, state.session_id, 1, 1, now, A1, FORGED_PROOF)),
        ]
    return out


def _active_cost(state: SessionState, now: int) -> int:
    """The active path's cost at `now` (0 when it is unmeasured or unset)."""
    side = state.side
    assert isinstance(side, ClientSide)
    if state.link.active is None:
        return 0
    return path_cost(side.quality, state.link.active, state.ident.policy, now)[1]


def _client_variants(state: SessionState, now: int) -> list[tuple[str, Any]]:
    policy = state.ident.policy
    active = state.link.active or C1
    candidate = state.roaming.candidates[0] if state.roaming.candidates else C2
    fresh = next(t for t in (C2, C3, C4, C5, C6) if t != active and t not in
                 state.roaming.candidates)
    return [
        ("traffic on the active transport", ev.InboundTraffic(now, active, 1200)),
        ("traffic on a candidate", ev.InboundTraffic(now, candidate, 1200)),
        ("traffic on an unknown transport", ev.InboundTraffic(now, C9, 1200)),
        ("one lost packet", ev.PacketLoss(now, 1)),
        ("loss reaching the threshold", ev.PacketLoss(now, policy.loss_threshold)),
        ("delivery timeout", ev.DeliveryTimeout(now)),
        ("active transport failed", ev.TransportFailed(now, active)),
        ("candidate failed", ev.TransportFailed(now, candidate)),
        ("unknown transport failed", ev.TransportFailed(now, C9)),
        ("all transports failed", ev.AllTransportsFailed(now)),
        ("new candidate", ev.CandidateDiscovered(now, fresh)),
        ("active rediscovered", ev.CandidateDiscovered(now, active)),
        ("known candidate rediscovered", ev.CandidateDiscovered(now, candidate)),
        ("candidate lost", ev.CandidateLost(now, candidate)),
        ("unknown candidate lost", ev.CandidateLost(now, C9)),
        ("rtt sample on the active transport", ev.RttSample(now, active, 100)),
        ("rtt sample on a candidate, far better", ev.RttSample(now, candidate, 10)),
        ("rtt sample on a candidate, exactly the margin better",
         ev.RttSample(now, candidate, max(1, _active_cost(state, now) -
                                          policy.migration_margin_ms))),
        ("rtt sample on an unknown transport", ev.RttSample(now, C9, 10)),
        ("lost probe on the active transport", ev.ProbeLost(now, active)),
        ("lost probe on a candidate", ev.ProbeLost(now, candidate)),
        ("lost probe on an unknown transport", ev.ProbeLost(now, C9)),
        ("path challenge on the active transport",
         challenge_pending(state, now, b"\x02" * 16, observed=OBSERVED, via=active)),
        ("traffic-opened path challenge on a candidate",
         challenge_pending(state, now, b"\x02" * 16, observed=OBSERVED, via=candidate,
                           nonce=0)),
        ("path challenge on an unknown transport",
         challenge_pending(state, now, b"\x02" * 16, observed=OBSERVED, via=C9)),
        ("spoofed path challenge",
         challenge_pending(state, now, b"\x02" * 16, observed=OBSERVED, via=active,
                           forged_mac=FORGED_PROOF)),
        ("path challenge for another request",
         challenge_pending(state, now, b"\x02" * 16, observed=OBSERVED, via=active,
                           nonce=1_000_000)),
        ("valid accept", _accept(state, now)),
        ("accept with a forged proof", _accept(state, now, forged_proof=FORGED_PROOF)),
        ("accept for another nonce", _accept(state, now, nonce_delta=1)),
        ("accept for another session", _accept(state, now, session_id=_other(state))),
        ("accept with a stale version", _accept(state, now, version_delta=0)),
    ]


def _server_variants(state: SessionState, now: int) -> list[tuple[str, Any]]:
    policy = state.ident.policy
    side = state.side
    assert isinstance(side, ServerSide)
    active = state.link.active or A1
    out: list[tuple[str, Any]] = [
        ("traffic on the bound path", ev.InboundTraffic(now, active, 1200)),
        ("traffic from a new address", ev.InboundTraffic(now, A2, 1200)),
        ("empty datagram from a new address", ev.InboundTraffic(now, A2, 0)),
        ("traffic from a third address", ev.InboundTraffic(now, A3, 1200)),
        ("valid request from the bound path", next_request(state, now, active)),
        ("valid request from a new address",
         next_request(state, now, A2, size=1200)),
        ("request from a new address without bytes", next_request(state, now, A2)),
        ("request with a forged proof",
         next_request(state, now, active, forged_proof=FORGED_PROOF)),
        ("request for another session",
         next_request(state, now, active, session_id=_other(state))),
        ("request with a version ahead",
         next_request(state, now, active, state_version=side.binding_version + 1)),
        ("request with an expired proof",
         next_request(state, now, active, timestamp_ms=now - policy.proof_max_age_ms - 1)),
        ("request from the future",
         next_request(state, now, active, timestamp_ms=now + policy.max_clock_skew_ms + 1)),
        ("request echoing a wrong challenge",
         next_request(state, now, A2, challenge=b"\x03" * 16)),
    ]
    if side.replay_top:
        out.append(("replayed nonce",
                    next_request(state, now, active, nonce=side.replay_top)))
    if side.replay_top > policy.replay_window_bits:
        out.append(("nonce below the replay window", next_request(state, now, active,
                                                              nonce=1)))
    if side.binding_version:
        out.append(("request with a stale version",
                    next_request(state, now, active, state_version=side.binding_version - 1)))
    if side.pending is not None:
        out += [
            ("answer to the path challenge", answer_challenge(state, now)),
            ("answer from another address", answer_challenge(state, now, A9)),
            ("request from an address other than the one being validated",
             next_request(state, now, A9, size=1200)),
        ]
    return out


# --- building, writing, replaying ------------------------------------------------------------


def _outcome(vector: Vector) -> tuple[Any, ...]:
    return (
        vector.role,
        vector.state.phase,
        type(vector.event).__name__,
        vector.new_state is vector.state,
        vector.new_state.phase,
        tuple((type(e).__name__, getattr(e, "reason", None)) for e in vector.effects),
    )


def build_vectors(role: Role, policy: Policy | None = None) -> list[Vector]:
    """One vector per distinct (phase, event kind, outcome) over base states x variants."""
    kept: dict[tuple[Any, ...], Vector] = {}
    for state in base_states(role, policy):
        for label, event in event_variants(state):
            new, effects = step(state, event)
            vector = Vector(role, label, state, event, new, effects)
            kept.setdefault(_outcome(vector), vector)
    return list(kept.values())


def dumps_vector(data: dict[str, Any]) -> str:
    """Canonical JSON line: sorted keys, no spaces, so regeneration is byte-identical."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _reasons(vectors: Iterable[Vector]) -> set[ReasonCode]:
    return {e.reason for v in vectors for e in v.effects if hasattr(e, "reason")}


def write_vectors(out_dir: Path) -> dict[str, int]:
    """Write `client.jsonl`, `server.jsonl` and `README.md` into `out_dir`.

    Returns the number of vectors per file. Raises `RuntimeError` if a reason code the
    core should reach is not covered, or a (phase, event kind) pair is missing.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    by_role = {role: build_vectors(role) for role in Role}
    counts: dict[str, int] = {}
    for role, vectors in by_role.items():
        pairs = {(v.state.phase, type(v.event)) for v in vectors}
        missing_pairs = [(p.value, t.__name__) for p in Phase for t in EVENT_TYPES
                         if (p, t) not in pairs]
        if missing_pairs:
            raise RuntimeError(f"{role.value}: (phase, event kind) pairs not covered: "
                               f"{missing_pairs}")
        name = f"{role.value}.jsonl"
        lines = [dumps_vector(v.to_data(f"{role.value}-{i:04d}")) for i, v in
                 enumerate(vectors, start=1)]
        (out_dir / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        counts[name] = len(lines)
    covered = _reasons(v for vs in by_role.values() for v in vs)
    missing = set(ReasonCode) - covered - set(UNREACHABLE_REASONS)
    if missing:
        raise RuntimeError(f"reason codes not covered: {sorted(r.value for r in missing)}")
    (out_dir / "README.md").write_text(_readme(by_role, counts), encoding="utf-8")
    return counts


def load_vectors(path: Path) -> list[dict[str, Any]]:
    """Read one `.jsonl` vector file."""
    return [parse_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


class VectorError(JumpVpnError, ValueError):
    """A golden vector that is not one (missing or mistyped part, undecodable state or
    event). The message names the part and never quotes a value from the vector."""


def _part(data: Any, key: str, kind: type, where: str) -> Any:
    value = data.get(key, _MISSING)
    if value is _MISSING:
        raise VectorError(f"{where} has no {key!r}")
    if type(value) is not kind:
        raise VectorError(f"{where}.{key} must be a {kind.__name__}, got {describe(value)}")
    return value


_MISSING = object()


def replay_vector(data: Any) -> list[str]:
    """Run one vector through `step()`; return the differences (empty when it matches).

    Total: a vector that is not one raises `VectorError` (and nothing else)."""
    if type(data) is not dict:
        raise VectorError(f"a vector must be an object, got {describe(data)}")
    expected = _part(data, "expected", dict, "vector")
    unchanged = _part(expected, "unchanged", bool, "expected")
    expected_state = _part(expected, "state", dict, "expected")
    expected_effects = _part(expected, "effects", list, "expected")
    try:
        state = state_from_data(_part(data, "state", dict, "vector"))
    except StateDecodeError as exc:
        raise VectorError(f"vector state: {exc}") from None
    try:
        event = event_from_data(_part(data, "event", dict, "vector"))
    except FormDecodeError as exc:
        raise VectorError(f"vector event: {exc}") from None
    new, effects = step(state, event)
    problems = []
    if (new is state) != unchanged:
        problems.append(f"unchanged is {new is state}, expected {unchanged}")
    got_state = state_to_data(new, include_secrets=True)
    if got_state != expected_state:
        keys = sorted(field_name(k) for k in set(got_state) | set(expected_state)
                      if got_state.get(k) != expected_state.get(k))
        problems.append(f"state differs in {keys}")
    got_effects = [effect_to_data(e) for e in effects]
    if got_effects != expected_effects:
        problems.append(f"effects differ: got {got_effects}, expected {expected_effects}")
    return problems


def _readme(by_role: dict[Role, list[Vector]], counts: dict[str, int]) -> str:
    rows = []
    for reason in ReasonCode:
        roles = [r.value for r, vs in by_role.items() if reason in _reasons(vs)]
        where = ", ".join(roles) if roles else f"unreachable: {UNREACHABLE_REASONS[reason]}"
        rows.append(f"| `{reason.value}` | {where} |")
    unreachable = (
        "\n".join(f"- `{r.value}`: {why}" for r, why in UNREACHABLE_REASONS.items())
        if UNREACHABLE_REASONS else
        "None: every reason code of the vocabulary (version of `reasons.py`) is reachable "
        "through `step()` and covered below. A code added later that only a driver or a "
        "gateway emits must be listed in `UNREACHABLE_REASONS` "
        "(`jumpvpn_core/audit/vectors.py`) with why, or generation fails."
    )
    files = "\n".join(f"| `{name}` | {n} |" for name, n in counts.items())
    return _README_TEMPLATE.format(files=files, rows="\n".join(rows), unreachable=unreachable,
                                   version=VECTOR_FORMAT_VERSION)


_README_TEMPLATE = """\
# Golden vectors

Each line of `client.jsonl` and `server.jsonl` is one example of `step()`: an initial
state, one event, and the exact new state and effects the reference core produces. Any
implementation that loads the state, applies the event and serialises the result must
produce the same `expected` object. This file and the vectors are generated; do not edit
them by hand:

    jumpvpn vectors generate --out specs/vectors

Regeneration is byte-identical (a test generates twice into a temporary directory and
compares with the committed files), and a test replays every vector through `step()`.

| file | vectors |
|---|---|
{files}

## Line format (version {version})

A JSON object, keys sorted, no insignificant whitespace:

| key | meaning |
|---|---|
| `format` | vector format version ({version}) |
| `id` | stable within one generation, e.g. `server-0042` |
| `role` | `client` or `server` |
| `phase` | phase of the initial state |
| `event_kind` | class name of the event |
| `label` | what the event variant is (human-readable; not part of the contract) |
| `state` | initial state, `state_to_data(state, include_secrets=True)` (1) |
| `event` | the event, in the JSON form below |
| `expected.unchanged` | true when `step()` returned the very same state object (2) |
| `expected.state` | `state_to_data(new_state, include_secrets=True)` |
| `expected.effects` | the effects, in order, each in the JSON form below |

(1) The state format is `specs/state-format.md`. It carries the control key, derived from
a test secret that is public on purpose (`SECRET` in `jumpvpn_core/audit/vectors.py`).
(2) A refused input, or an event with nothing to do.

### JSON form of events and effects

`{{"type": <class name>, <field>: <value>, ...}}` with every attrs field of the class
(`jumpvpn_core/events.py`, `jumpvpn_core/effects.py`), defaulted fields included.
Values are encoded by field name:

- transports (`transport`, `via`, `observed`, `bound`, `source`, `candidate`, `to`,
  `previous`): the `kind:host:port` text, e.g. `udp:10.0.0.1:4000` (`previous` may be
  `null`);
- byte strings (`session_id`, `proof`, `challenge`): lowercase hex;
- enums (`role`, `phase`, `from_phase`, `to_phase`, `reason`, `reason_class`): their string
  value;
- integers (`now_ms`, `nonce`, `state_version`, `timestamp_ms`, `size`, `count`, `ts_ms`)
  and the `event` name of a `Rejected`: as is.

Example: `{{"type":"Tick","now_ms":1000000}}`.

## Coverage

Vectors come from scripted runs of both roles (every state they visit is a base state)
crossed with event variants of every kind, honest and hostile; one vector is kept per
distinct behaviour `(role, phase, event kind, state replaced or not, new phase, effect
types and reasons)`. Generation fails unless, for each role, every (phase x event kind)
pair appears, and every reason code is covered or listed as unreachable.

### Reason codes unreachable by the core

{unreachable}

### Reason codes by role

| reason | produced by (role) |
|---|---|
{rows}
"""
