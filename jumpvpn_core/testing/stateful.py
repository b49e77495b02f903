"""`ConformanceMachine`: a Hypothesis state machine that fuzzes an implementation against
the reference, and `run_conformance`, which runs it and returns a verdict.

The machine plays everything around one session: the driver (attach, timers), the network
(loss bursts, NAT rebinding, clock jumps, drop / duplicate / reorder of honest messages),
an honest peer (valid proofs, path-challenge answers, accepts) and an attacker (forged,
replayed, stale-version, future-version, wrong-session, flood). Some rules aim at edges
(`jumpvpn_core.testing.boundaries`): the clock jumps to a deadline or window edge (-1, 0,
+1 ms) and the honest peer speaks there; requests carry timestamps at the freshness bounds
and nonces at the replay window's edges or past 2^53; traffic comes from the bound
address under another IPv6 zone; a known candidate is attached or rediscovered. Path
quality is aimed at too (client): RTT samples put two paths' costs exactly on the migration
margin or on a tie (-1, 0, +1 ms), the clock lands on a migration's due time or on a
measurement's age limit, and the honest server answers migration requests. Every
event goes to the reference and to the implementation under test through `Lockstep`,
which compares them and runs the invariant checkers after every step.

Bind an implementation with `conformance_machine(impl)`; use the result like any
`RuleBasedStateMachine` (`TestCase`, `run_state_machine_as_test`), or call
`run_conformance(impl)` for a verdict object.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    get_state_machine_test,
    initialize,
    precondition,
    rule,
)

from jumpvpn_core import events as ev
from jumpvpn_core.effects import SendPathChallenge, SendReattachRequest
from jumpvpn_core.machine import next_deadline
from jumpvpn_core.peer import Peer
from jumpvpn_core.phases import Phase as CorePhase
from jumpvpn_core.phases import Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.proof import U64_MAX
from jumpvpn_core.quality import migration_due, path_cost
from jumpvpn_core.state import ClientSide, PathScore, ServerSide
from jumpvpn_core.testing.boundaries import (
    Edge,
    edge_nonces,
    edges,
    freshness_offsets,
    siblings,
)
from jumpvpn_core.testing.coverage import Coverage
from jumpvpn_core.testing.implementation import Implementation
from jumpvpn_core.testing.lockstep import ConformanceFailure, FailureKind, FailureReport, Lockstep
from jumpvpn_core.testing.strategies import (
    Attack,
    NetworkFault,
    attack_kinds,
    clock_jumps,
    events,
    loss_bursts,
    network_faults,
    policies,
    rebinding_sources,
    rtt_samples,
    session_ids,
    session_secrets,
    transports,
)
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "DEFAULT_EXAMPLES",
    "DEFAULT_STEPS",
    "ConformanceMachine",
    "ConformanceResult",
    "Recorder",
    "conformance_machine",
    "run_conformance",
]

_FLOOD_EXTRA = 2

#: Offsets from an edge: on it half the time, else one millisecond before or after.
_AROUND_EDGE = (-1, 0, 0, 1)
#: The same, on the edge itself two times in three (a streak of losses moves the session
#: away from ATTACHED whichever side of the edge it lands on: the rule is a scarce draw).
_ON_EDGE_MOSTLY = (-1, 0, 0, 0, 0, 1)
#: Where the honest client's request nonces start (server role): usually 1, sometimes
#: two below 2^31, 2^32 or 2^53, so a session crosses the width a port might hold its
#: nonces in (a signed or unsigned 32-bit int, a double's exact integers).
_FIRST_NONCES = (1, 1, 1, 1, 1, 2**31 - 2, 2**32 - 2, 2**53 - 2, 2**53 - 2)
_NONCE_EDGES = ("window-back", "window-back", "window-back", "window-ahead", "top",
                "double-exact", "double-exact", "u64-max")
_ENDING_EDGES = frozenset({"deadline", "birth-timeout", "transport-lost-ttl"})
#: Where two paths' costs are aimed (`costs_on_the_margin`): the incumbent's cost minus the
#: challenger's is the migration margin, or 0 (a tie), each -1, exact (drawn twice) or +1.
_AIMS = ("migration-margin-1", "migration-margin", "migration-margin", "migration-margin+1",
         "cost-tie-1", "cost-tie", "cost-tie", "cost-tie+1")
_AIM_DELTAS = {aim: -1 if aim.endswith("-1") else 1 if aim.endswith("+1") else 0
               for aim in _AIMS}

DEFAULT_EXAMPLES = 400
"""The default budget: examples per run (each of up to `DEFAULT_STEPS` steps). At it, the
broken catalogue is measured (`docs/conformance.md`)."""
DEFAULT_STEPS = 30
"""The default budget: steps per example."""
_faults = st.one_of(st.just(NetworkFault.DELIVER), network_faults())


def _on_edges(found: list[Edge]) -> list[Edge]:
    """`found` with the exact edges listed twice: on the edge half the time."""
    return found + [(label, at) for label, at in found if not label.endswith(("-1", "+1"))]


class _ShrinkBudgetSpent(BaseException):
    """Ends a run once shrinking has used its budget (BaseException: Hypothesis must not
    treat it as a test failure to shrink)."""


class Recorder:
    """Collects the failures of a run: the first protocol failure and the smallest failure
    seen (shrinking makes it the minimal counterexample).

    `shrink_budget` bounds how many examples may run after the first failure, so a run
    with a slow implementation still ends promptly with the smallest failure so far.
    """

    def __init__(self, shrink_budget: int | None = None,
                 deadline: Callable[[], bool] | None = None) -> None:
        self.first_protocol: FailureReport | None = None
        self.smallest: FailureReport | None = None
        self.examples = 0
        self.shrink_budget = shrink_budget
        self.deadline = deadline
        self.coverage = Coverage()
        self.caught_at: tuple[int, int] | None = None
        """`(examples, steps)` run when the first failure was seen (None: none yet)."""
        self._after_failure = 0

    def record(self, report: FailureReport) -> None:
        """Remember one failure."""
        if report.kind is FailureKind.PROTOCOL and self.first_protocol is None:
            self.first_protocol = report
        if self.smallest is None or report.step <= self.smallest.step:
            self.smallest = report
        if self.caught_at is None:
            self.caught_at = (self.examples, self.coverage.steps + 1)

    def example_started(self) -> None:
        """Count one example; stop the run when the shrink budget is spent."""
        if self.examples and self.smallest is None and self.deadline is not None and \
                self.deadline():
            raise _ShrinkBudgetSpent  # the time budget is spent, nothing found
        self.examples += 1
        if self.smallest is not None:
            self._after_failure += 1
            if self.shrink_budget is not None and self._after_failure > self.shrink_budget:
                raise _ShrinkBudgetSpent

    def verdict(self) -> FailureReport | None:
        """The failure to report: a protocol failure as first seen, else the smallest."""
        return self.first_protocol or self.smallest


class ConformanceMachine(RuleBasedStateMachine):
    """Fuzz `implementation` against the reference. Subclass via `conformance_machine`."""

    implementation: ClassVar[Implementation | None] = None
    recorder: ClassVar[Recorder | None] = None

    def __init__(self) -> None:
        super().__init__()
        impl = type(self).implementation
        if impl is None:
            raise RuntimeError("bind an implementation first: conformance_machine(impl)")
        self.lock = Lockstep(impl)
        self.role = Role.CLIENT
        self.now = 0
        self.peer = Peer(b"", b"")
        self.nonce = 1
        self.held: Any = None
        self.captured: list[Any] = []
        self.requests_seen: list[SendReattachRequest] = []
        self.challenges: list[SendPathChallenge] = []
        self.created = False

    # --- plumbing -------------------------------------------------------------------------

    def _run(self, action: Any, *args: Any) -> Any:
        try:
            return action(*args)
        except ConformanceFailure as failure:
            recorder = type(self).recorder
            if recorder is not None:
                recorder.record(failure.report)
            raise

    def _apply(self, event: Any) -> None:
        phase = self.lock.state.phase
        outcome = self._run(self.lock.apply, event)
        recorder = type(self).recorder
        if recorder is not None:
            recorder.coverage.step(self.role, phase, event, outcome.raw_effects or ())
        for effect in outcome.raw_effects or ():
            if isinstance(effect, SendReattachRequest):
                self.requests_seen.append(effect)
            elif isinstance(effect, SendPathChallenge):
                self.challenges.append(effect)

    def _send_honest(self, event: Any, fault: NetworkFault) -> None:
        """Put an honest message through the network: deliver, drop, duplicate, reorder."""
        self.captured.append(event)
        if fault is NetworkFault.DROP:
            return
        if fault is NetworkFault.REORDER and self.held is None:
            self.held = event
            return
        self._apply(event)
        if fault is NetworkFault.DUPLICATE:
            self._apply(event)
        if self.held is not None:
            held, self.held = self.held, None
            self._apply(held)

    def _live(self) -> bool:
        """Rules that need a live session stop once the reference has terminated (only the
        clock and timers keep running, to check that TERMINATED stays put)."""
        return self.lock.state.phase is not CorePhase.TERMINATED

    def _server(self) -> ServerSide:
        side = self.lock.state.side
        assert isinstance(side, ServerSide)
        return side

    def _client(self) -> ClientSide:
        side = self.lock.state.side
        assert isinstance(side, ClientSide)
        return side

    def _request(self, source: TransportDescriptor, version: int, *, candidate:
                 TransportDescriptor | None = None, challenge: bytes = b"", size: int = 0,
                 session_id: bytes | None = None, nonce: int | None = None,
                 forged: bytes | None = None,
                 timestamp_ms: int | None = None) -> ev.ReattachRequest:
        if nonce is None:
            nonce, self.nonce = self.nonce, self.nonce + 1
        return self.peer.request(self.now, source, nonce=nonce, state_version=version,
                                 candidate=candidate, challenge=challenge, size=size,
                                 session_id=session_id, forged_proof=forged,
                                 timestamp_ms=timestamp_ms)

    def _accept(self, request: SendReattachRequest, version: int, *,
                session_id: bytes | None = None, nonce: int | None = None,
                forged: bytes | None = None) -> ev.ReattachAccepted:
        return self.peer.accept(self.now, request.via,
                                nonce=request.nonce if nonce is None else nonce,
                                state_version=version, bound=request.candidate,
                                session_id=session_id, forged_proof=forged)

    # --- the driver ------------------------------------------------------------------------

    @initialize(role=st.sampled_from(tuple(Role)), session_id=session_ids(),
                secret=session_secrets(), start=st.integers(min_value=0, max_value=10_000),
                policy=policies(), attach=st.one_of(st.none(), transports(), transports()),
                first_nonce=st.sampled_from(_FIRST_NONCES))
    def create(self, role: Role, session_id: bytes, secret: bytes, start: int, policy: Policy,
               attach: TransportDescriptor | None, first_nonce: int) -> None:
        """Create the session on both sides (and usually attach it at once)."""
        recorder = type(self).recorder
        if recorder is not None:
            recorder.example_started()
        self.nonce = first_nonce
        self._start(role, session_id, secret, start, policy, attach)

    def _start(self, role: Role, session_id: bytes, secret: bytes, start: int,
               policy: Policy, attach: TransportDescriptor | None) -> None:
        self.role, self.now = role, start
        self.peer = Peer.from_secret(secret, session_id)
        self._run(self.lock.create, role, session_id, secret, start, policy)
        self.created = True
        if attach is not None:
            self._apply(ev.Attach(self.now, attach))

    @precondition(lambda self: self.created and not self._live())
    @rule(role=st.sampled_from(tuple(Role)), session_id=session_ids(),
          secret=session_secrets(), policy=policies(),
          attach=st.one_of(st.none(), transports(), transports(), transports()),
          first_nonce=st.sampled_from(_FIRST_NONCES))
    def next_session(self, role: Role, session_id: bytes, secret: bytes, policy: Policy,
                     attach: TransportDescriptor | None, first_nonce: int) -> None:
        """The session has ended: the rest of the example drives a new one (a fresh
        lockstep, so a failure's counterexample holds only the session that diverged)."""
        implementation = type(self).implementation
        assert implementation is not None
        self.lock = Lockstep(implementation)
        self.nonce, self.held = first_nonce, None
        self.captured, self.requests_seen, self.challenges = [], [], []
        self._start(role, session_id, secret, self.now, policy, attach)

    @rule(delta=clock_jumps())
    def jump_clock(self, delta: int) -> None:
        """Clock movement, including big jumps and steps backwards."""
        self.now = max(0, self.now + delta)

    @rule(at_deadline=st.sampled_from((False, False, True)))
    def tick(self, at_deadline: bool) -> None:
        """Deliver `Tick` now, or at the reference's next deadline."""
        deadline = next_deadline(self.lock.state)
        if at_deadline and deadline is not None:
            self.now = max(self.now, deadline)
        self._apply(ev.Tick(self.now))

    @precondition(lambda self: self._live())
    @rule(data=st.data())
    def arbitrary_event(self, data: st.DataObject) -> None:
        """Any event of the role, proofs arbitrary."""
        self._apply(data.draw(events(self.role, self.now)))

    @precondition(lambda self: self._live())
    @rule(transport=transports())
    def attach(self, transport: TransportDescriptor) -> None:
        """The handshake completes (again)."""
        self._apply(ev.Attach(self.now, transport))

    @precondition(lambda self: self._live())
    @rule(size=st.integers(min_value=0, max_value=1500))
    def traffic_on_active(self, size: int) -> None:
        """Authenticated traffic on the bound path."""
        active = self.lock.state.link.active
        if active is not None:
            self._apply(ev.InboundTraffic(self.now, active, size))

    # --- client: loss, failures, candidates, the honest server --------------------------

    @precondition(lambda self: self.role is Role.CLIENT and self._live())
    @rule(count=loss_bursts(), edge=st.sampled_from((None, None, *_ON_EDGE_MOSTLY)))
    def loss_burst(self, count: int, edge: int | None) -> None:
        """A burst of consecutive losses; with `edge`, in ATTACHED, a streak whose last
        losses arrive when the loss window is exactly that old (as `losses_at_window_edge`:
        this rule is drawn far more often, and the edge needs a streak to be running)."""
        state = self.lock.state
        if edge is None or state.phase is not CorePhase.ATTACHED or \
                state.ident.policy.loss_threshold < 2:
            self._apply(ev.PacketLoss(self.now, count))
            return
        self._streak_across_window_edge(edge)

    @precondition(lambda self: self.role is Role.CLIENT and self._live())
    @rule()
    def delivery_timeout(self) -> None:
        """Nothing was acknowledged in time."""
        self._apply(ev.DeliveryTimeout(self.now))

    @precondition(lambda self: self.role is Role.CLIENT and self._live())
    @rule(everything=st.booleans())
    def transports_fail(self, everything: bool) -> None:
        """The active transport fails, or every transport at once."""
        active = self.lock.state.link.active
        if everything or active is None:
            self._apply(ev.AllTransportsFailed(self.now))
        else:
            self._apply(ev.TransportFailed(self.now, active))

    @precondition(lambda self: self.role is Role.CLIENT and self._live())
    @rule(transport=transports())
    def discover_candidate(self, transport: TransportDescriptor) -> None:
        """A new local transport appears."""
        self._apply(ev.CandidateDiscovered(self.now, transport))

    @precondition(lambda self: self.role is Role.CLIENT and self._live())
    @rule(index=st.integers(min_value=0, max_value=7))
    def lose_candidate(self, index: int) -> None:
        """A stored candidate goes away."""
        candidates = self.lock.state.roaming.candidates
        if candidates:
            self._apply(ev.CandidateLost(self.now, candidates[index % len(candidates)]))

    @precondition(lambda self: self.role is Role.CLIENT and self._live()
                  and bool(self.requests_seen))
    @rule(fault=_faults, bump=st.integers(min_value=1, max_value=3),
          challenge_first=st.booleans(), observed=st.one_of(rebinding_sources(), transports()),
          challenge=st.binary(min_size=16, max_size=16))
    def server_answers(self, fault: NetworkFault, bump: int, challenge_first: bool,
                       observed: TransportDescriptor, challenge: bytes) -> None:
        """The honest server answers the latest request: a path challenge or an accept."""
        request = self.requests_seen[-1]
        event: Any
        if challenge_first and not request.challenge:
            event = self.peer.challenge(self.now, request.via, challenge=challenge,
                                        observed=observed, nonce=request.nonce,
                                        state_version=request.state_version)
        else:
            event = self._accept(request, request.state_version + bump)
        self._send_honest(event, fault)

    @precondition(lambda self: self.role is Role.CLIENT and self._live())
    @rule(count=st.integers(min_value=1, max_value=40),
          macs=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=4),
          observed=st.one_of(rebinding_sources(), transports()),
          challenge=st.binary(min_size=1, max_size=32), bound=st.booleans())
    def spoofed_challenges(self, count: int, macs: list[bytes],
                           observed: TransportDescriptor, challenge: bytes, bound: bool) -> None:
        """Any number of spoofed path challenges, all at once (§3.1): each is refused
        (`CHALLENGE_INVALID`) and leaves the state the very same object, so a recovery
        under way goes on as if none had arrived."""
        self._apply(ev.Tick(self.now))  # deadlines due now fire first, spoofs or not
        state = self.lock.state
        if not self._live():
            return
        side = self._client()
        via = side.pending.via if side.pending is not None else state.link.active
        if via is None:
            return
        nonce = side.pending.nonce if bound and side.pending is not None else 0
        peer = self.peer
        for index in range(count):
            self._apply(peer.challenge(self.now, via, challenge=challenge, observed=observed,
                                       nonce=nonce, state_version=side.known_version,
                                       forged_mac=macs[index % len(macs)]))
            assert self.lock.state is state, "a spoofed path challenge changed the state"

    # --- server: the honest client -------------------------------------------------------

    @precondition(lambda self: self.role is Role.SERVER and self._live())
    @rule(fault=_faults, from_active=st.booleans(), source=rebinding_sources(),
          size=st.integers(min_value=0, max_value=1500))
    def client_requests(self, fault: NetworkFault, from_active: bool,
                        source: TransportDescriptor, size: int) -> None:
        """The honest client asks to reattach, from the bound path or a new address."""
        active = self.lock.state.link.active
        if from_active and active is not None:
            source = active
        self._send_honest(self._request(source, self._server().binding_version, size=size),
                          fault)

    @precondition(lambda self: self.role is Role.SERVER and self._live()
                  and bool(self.challenges))
    @rule(fault=_faults, size=st.integers(min_value=0, max_value=1500))
    def client_answers_challenge(self, fault: NetworkFault, size: int) -> None:
        """The honest client echoes the latest path challenge from the challenged address."""
        challenge = self.challenges[-1]
        self._send_honest(self._request(challenge.to, self._server().binding_version,
                                        challenge=challenge.challenge, size=size), fault)

    @precondition(lambda self: self.role is Role.SERVER and self._live())
    @rule(source=rebinding_sources(), size=st.integers(min_value=0, max_value=1500))
    def nat_rebinding(self, source: TransportDescriptor, size: int) -> None:
        """Traffic arrives from a new address (NAT churn, or a spoofer)."""
        self._apply(ev.InboundTraffic(self.now, source, size))

    # --- edges: boundary-biased rules (jumpvpn_core.testing.boundaries) --------------------

    def _boundary(self, label: str) -> None:
        recorder = type(self).recorder
        if recorder is not None:
            recorder.coverage.boundary(label)

    @precondition(lambda self: self._live())
    @rule(data=st.data())
    def jump_to_edge(self, data: st.DataObject) -> None:
        """The clock lands on a deadline or window edge (-1, 0, +1 ms), and what that edge
        bounds happens right there: a Tick at a deadline, a switch at the cooldown's edge,
        a request at the rate window's edge, one more loss at the loss window's edge."""
        state = self.lock.state
        found = edges(state)
        # No loss streak yet: the loss window's edge is one loss away (it starts one).
        startable = (self.role is Role.CLIENT and state.phase is CorePhase.ATTACHED
                     and not state.link.loss_streak and state.ident.policy.loss_threshold >= 2)
        if not found and not startable:
            return
        # Edges that end the session when crossed are drawn a third as often as the others
        # (an ended session has nothing left to test).
        kinds = sorted({label.rstrip("+-1") for label, _ in found} |
                       ({"loss-window"} if startable else set()))
        weighted = [k for k in kinds for _ in range(1 if k in _ENDING_EDGES else 3)]
        kind = data.draw(st.sampled_from(weighted), label="edge")
        if kind == "loss-window" and startable:
            self._apply(ev.PacketLoss(self.now, 1))
            if not self._live() or not self.lock.state.link.loss_streak:
                return
            found = edges(self.lock.state)
        around = [(la, t) for la, t in found if la.rstrip("+-1") == kind]
        around += [(la, t) for la, t in around if la == kind]  # on the edge half the time
        label, at = data.draw(st.sampled_from(around), label="at")
        self.now = max(self.now, at)
        self._boundary(label)
        if kind.startswith("switch-"):
            if self.role is Role.SERVER:
                self._roam(data)
            else:
                self._peer_speaks(data)
        elif kind == "reattach-rate-window":
            self._peer_speaks(data)
        elif kind == "loss-window":
            link = self.lock.state.link
            threshold = self.lock.state.ident.policy.loss_threshold
            self._apply(ev.PacketLoss(self.now, max(1, threshold - link.loss_streak)))
        else:
            self._apply(ev.Tick(self.now))

    def _roam(self, data: st.DataObject, edge: str | None = None) -> None:
        """The honest peer moves the binding to another path. Server: traffic from a new
        address opens a validation (or a request does) and the challenge is answered at
        once. Client: a candidate is found if none is, recovery starts, timers run until
        a request leaves on a candidate, and its accept arrives. With `edge`, the clock
        first moves to that switch edge (`switch-cooldown`, `-1` / `+1`) if still ahead."""
        if self.role is Role.SERVER:
            self._to_switch_edge(edge)
            if self._server().pending is None or not self.challenges:
                source = data.draw(rebinding_sources(), label="source")
                if data.draw(st.booleans(), label="by traffic"):
                    self._apply(ev.InboundTraffic(self.now, source, 1500))
                else:
                    self._apply(self._request(source, self._server().binding_version,
                                              size=1200))
            if self._live() and self._server().pending is not None and self.challenges:
                challenge = self.challenges[-1]
                self._apply(self._request(challenge.to, self._server().binding_version,
                                          challenge=challenge.challenge, size=200))
            return
        state = self.lock.state
        if not state.roaming.candidates:
            port = data.draw(st.integers(min_value=40_000, max_value=40_003), label="port")
            self._apply(ev.CandidateDiscovered(self.now, TransportDescriptor.udp(
                "192.0.2.77", port)))
        if self._live() and self.lock.state.phase is CorePhase.ATTACHED:
            self._apply(ev.DeliveryTimeout(self.now))
        for _ in range(8):
            if not self._live():
                return
            state = self.lock.state
            pending = self._client().pending
            if pending is None:
                return
            if pending.via != state.link.active:
                self._to_switch_edge(edge)
                self._apply(self._accept(pending.request, pending.request.state_version + 1))
                return
            self.now = max(self.now, pending.deadline_ms)
            self._apply(ev.Tick(self.now))

    def _to_switch_edge(self, edge: str | None) -> None:
        times = self.lock.state.roaming.switch_times
        if edge is None or not times:
            return
        at = times[-1] + self.lock.state.ident.policy.switch_cooldown_ms + (
            -1 if edge.endswith("-1") else 1 if edge.endswith("+1") else 0)
        if at >= self.now:
            self.now = at
            self._boundary(edge)

    @precondition(lambda self: self._live())
    @rule(data=st.data(), edge=st.sampled_from(("switch-cooldown-1", "switch-cooldown",
                                                "switch-cooldown", "switch-cooldown+1")))
    def roam_twice(self, data: st.DataObject, edge: str) -> None:
        """The binding moves, then moves again at the anti-flap cooldown's edge."""
        self._roam(data)
        if self._live():
            self._roam(data, edge)

    def _peer_speaks(self, data: st.DataObject) -> None:
        """The honest peer's next message, at the current time."""
        if not self._live():
            return
        if self.role is Role.SERVER:
            source = data.draw(st.one_of(rebinding_sources(), transports()), label="source")
            active = self.lock.state.link.active
            if active is not None and data.draw(st.booleans(), label="from active"):
                source = active
            self._apply(self._request(source, self._server().binding_version, size=1200))
        elif self.requests_seen:
            request = self.requests_seen[-1]
            self._apply(self._accept(request, request.state_version + 1))

    def _past_rate_limit(self) -> None:
        """Let the server's reattach rate window pass if it would refuse a request now
        (so that what an edge request tests is not hidden behind RATE_LIMITED)."""
        policy = self.lock.state.ident.policy
        times = self._server().verified_times
        limit = policy.reattach_rate_limit
        if len(times) >= limit:
            self.now = max(self.now, times[-limit] + policy.reattach_rate_window_ms)

    @precondition(lambda self: self._live() and self.role is Role.SERVER
                  and self.lock.state.phase is not CorePhase.BIRTH)
    @rule(data=st.data(), what=st.sampled_from(("timestamp", "timestamp", "nonce",
                                                "replay-at-limit")),
          from_active=st.booleans(), source=rebinding_sources())
    def edge_request(self, data: st.DataObject, what: str, from_active: bool,
                     source: TransportDescriptor) -> None:
        """An honest request whose timestamp sits on a freshness bound, or whose nonce sits
        on an edge of the replay window (or past 2^53, or at u64 max); or requests up to
        the rate limit and a replay on top (which refusal comes first)."""
        state = self.lock.state
        side = self._server()
        active = state.link.active
        policy = state.ident.policy
        if from_active and active is not None:
            source = active
        if what != "replay-at-limit":
            self._past_rate_limit()
        if what == "timestamp":
            label, offset = data.draw(st.sampled_from(_on_edges(freshness_offsets(policy))),
                                      label="offset")
            self._boundary(label)
            self._apply(self._request(source, side.binding_version, size=1200,
                                      timestamp_ms=max(0, self.now + offset)))
        elif what == "nonce":
            self._edge_nonce(data, source)
        else:
            self._boundary("rate-limit-reached")
            sent = self._request(source, side.binding_version, size=1200)
            for _ in range(policy.reattach_rate_limit + 1):
                if not self._live():
                    return
                sent = self._request(source, self._server().binding_version, size=1200)
                self._apply(sent)
            if self._live():
                self._apply(sent)
            # Then the rate window's edge: one more request when the oldest counted
            # request is exactly (or 1 ms less or more than) a window old.
            times = self._server().verified_times if self._live() else ()
            if len(times) >= policy.reattach_rate_limit:
                delta = data.draw(st.sampled_from(_AROUND_EDGE), label="rate edge")
                at = times[-policy.reattach_rate_limit] + policy.reattach_rate_window_ms + delta
                if at >= self.now:
                    self.now = at
                    self._boundary("reattach-rate-window" + {-1: "-1", 0: "", 1: "+1"}[delta])
                    self._apply(self._request(source, self._server().binding_version,
                                              size=1200))

    @precondition(lambda self: self._live() and self.role is Role.SERVER
                  and self.lock.state.phase is not CorePhase.BIRTH)
    @rule(from_active=st.booleans(), source=rebinding_sources(),
          later=st.sampled_from((0, 0, 1, 100)), elsewhere=rebinding_sources(),
          moved=st.booleans())
    def request_then_replay(self, from_active: bool, source: TransportDescriptor, later: int,
                            elsewhere: TransportDescriptor, moved: bool) -> None:
        """An honest request past the rate window, then the same request again at once or a
        little later, verbatim or from another address: everything but the replay window
        lets the copy through."""
        self._past_rate_limit()
        active = self.lock.state.link.active
        if from_active and active is not None:
            source = active
        sent = self._request(source, self._server().binding_version, size=1200)
        self.captured.append(sent)
        self._apply(sent)
        if not self._live():
            return
        self.now += later  # the copy arrives now; what it carries is the original's
        self._apply(attrs.evolve(sent, now_ms=self.now, source=elsewhere if moved
                                 else sent.source))

    @precondition(lambda self: self._live() and self.role is Role.SERVER
                  and self.lock.state.phase is not CorePhase.BIRTH)
    @rule(data=st.data(), bound=st.sampled_from(("proof-age", "clock-skew")),
          delta=st.sampled_from(_AROUND_EDGE))
    def freshness_edge(self, data: st.DataObject, bound: str, delta: int) -> None:
        """An honest request on the bound path whose timestamp is exactly (or 1 ms less or
        more than) `proof_max_age_ms` old, or `max_clock_skew_ms` ahead."""
        self._past_rate_limit()
        policy = self.lock.state.ident.policy
        offset = (-policy.proof_max_age_ms if bound == "proof-age"
                  else policy.max_clock_skew_ms) + delta
        if self.now + offset < 0:
            return
        self._boundary(bound + {-1: "-1", 0: "", 1: "+1"}[delta])
        source = self.lock.state.link.active or data.draw(rebinding_sources(), label="src")
        self._apply(self._request(source, self._server().binding_version, size=1200,
                                  timestamp_ms=self.now + offset))

    @precondition(lambda self: self._live() and self.role is Role.SERVER
                  and self.lock.state.phase is not CorePhase.BIRTH)
    @rule(data=st.data(), source=rebinding_sources())
    def replay_window_edge(self, data: st.DataObject, source: TransportDescriptor) -> None:
        """An honest request with the nonce exactly `replay_window_bits` behind the newest
        (or one nearer, or one further): the first nonce the window forgets."""
        self._past_rate_limit()
        self._edge_nonce(data, self.lock.state.link.active or source, "window-back")

    def _edge_nonce(self, data: st.DataObject, source: TransportDescriptor,
                    kind: str | None = None) -> None:
        policy = self.lock.state.ident.policy
        size = policy.replay_window_bits
        if kind is None:
            kind = data.draw(st.sampled_from(_NONCE_EDGES), label="nonce edge")
        if kind == "window-back" and self._server().replay_top <= size + 1:
            # Move the window on, let the rate window pass, then come back to its edge.
            self._boundary("window-ahead")
            ahead = self._server().replay_top + size
            self.nonce = max(self.nonce, ahead + 1)
            source = self.lock.state.link.active or source  # no validation in the way
            self._apply(self._request(source, self._server().binding_version, size=1200,
                                      nonce=ahead))
            if not self._live():
                return
            self._past_rate_limit()
        found = [edge for edge in edge_nonces(self._server().replay_top, size)
                 if edge[0].rstrip("+-1") == kind]
        if not found:
            return
        label, nonce = data.draw(st.sampled_from(found), label="nonce")
        self._boundary(label)
        # The honest client goes on above the nonce; u64 max, which it could not go on
        # from, is sent with a bad proof (refused, so the window does not move there).
        forged = b"\x00" * 32 if nonce == U64_MAX else None
        if nonce < U64_MAX:
            self.nonce = max(self.nonce, nonce + 1)
        self._apply(self._request(source, self._server().binding_version, size=1200,
                                  nonce=nonce, forged=forged))

    @precondition(lambda self: self._live())
    @rule(delta=st.sampled_from(_AROUND_EDGE), collapse=st.booleans(),
          source=rebinding_sources())
    def window_runs_out(self, delta: int, collapse: bool,
                        source: TransportDescriptor) -> None:
        """Recovery starts (client: a delivery timeout, or every transport failing;
        server: traffic from a new address), then the clock lands on the end of the
        recovery window, or of DEGRADED, and a Tick is delivered."""
        if self.lock.state.phase is CorePhase.ATTACHED:
            if self.role is Role.SERVER:
                self._apply(ev.InboundTraffic(self.now, source, 1500))
            elif collapse:
                self._apply(ev.AllTransportsFailed(self.now))
            else:
                self._apply(ev.DeliveryTimeout(self.now))
        state = self.lock.state
        policy = state.ident.policy
        if state.phase is CorePhase.RECOVERING:
            label, window = "recovery-window", policy.max_recovery_window_ms
        elif state.phase is CorePhase.DEGRADED:
            label, window = "degraded-window", policy.max_degraded_ms
        else:
            return
        self.now = max(self.now, state.phase_since_ms + window + delta)
        self._boundary(label + {-1: "-1", 0: "", 1: "+1"}[delta])
        self._apply(ev.Tick(self.now))

    @precondition(lambda self: self._live() and self.role is Role.CLIENT
                  and self.lock.state.phase is CorePhase.ATTACHED)
    @rule(delta=st.sampled_from(_ON_EDGE_MOSTLY))
    def losses_at_window_edge(self, delta: int) -> None:
        """One loss starts a streak; the rest of the threshold arrives when the loss window
        is exactly (or 1 ms less or more than) that old."""
        if self.lock.state.ident.policy.loss_threshold >= 2:
            self._streak_across_window_edge(delta)

    def _streak_across_window_edge(self, delta: int) -> None:
        policy = self.lock.state.ident.policy
        link = self.lock.state.link
        if link.loss_streak and self.now - link.loss_start_ms <= policy.loss_window_ms:
            # A streak is running: let it lapse, so the edge is timed from this loss.
            self.now = link.loss_start_ms + policy.loss_window_ms + 1
        self._apply(ev.PacketLoss(self.now, 1))
        link = self.lock.state.link
        if not self._live() or not link.loss_streak:
            return
        self.now = max(self.now, link.loss_start_ms + policy.loss_window_ms + delta)
        self._boundary("loss-window" + {-1: "-1", 0: "", 1: "+1"}[delta])
        self._apply(ev.PacketLoss(self.now, policy.loss_threshold - link.loss_streak))

    @precondition(lambda self: self._live() and self.role is Role.CLIENT
                  and bool(self.requests_seen))
    @rule()
    def accept_on_failed_path(self) -> None:
        """The path the latest request left on fails, then the accept arrives on it."""
        request = self.requests_seen[-1]
        link = self.lock.state.link
        if request.via == link.active and not link.active_failed:
            self._apply(ev.TransportFailed(self.now, request.via))
        if self._live():
            self._boundary("accept-on-failed-path")
            self._apply(self._accept(request, request.state_version + 1))

    @precondition(lambda self: self._live() and self.role is Role.CLIENT
                  and bool(self.requests_seen))
    @rule(data=st.data(), observed=st.one_of(rebinding_sources(), transports()),
          challenge=st.binary(min_size=16, max_size=16))
    def edge_challenge(self, data: st.DataObject, observed: TransportDescriptor,
                       challenge: bytes) -> None:
        """An honest path challenge for the latest request, its timestamp on a freshness
        bound."""
        request = self.requests_seen[-1]
        label, offset = data.draw(st.sampled_from(_on_edges(freshness_offsets(
            self.lock.state.ident.policy))), label="offset")
        self._boundary(label)
        self._apply(self.peer.challenge(self.now, request.via, challenge=challenge,
                                        observed=observed, nonce=request.nonce,
                                        state_version=request.state_version,
                                        timestamp_ms=max(0, self.now + offset)))

    @precondition(lambda self: self._live() and self.lock.state.link.active is not None)
    @rule(data=st.data(), size=st.integers(min_value=0, max_value=1500))
    def zone_sibling(self, data: st.DataObject, size: int) -> None:
        """The bound IPv6 address under another zone id (or none): another path."""
        active = self.lock.state.link.active
        assert active is not None
        found = siblings(active)
        if not found:
            return
        self._boundary("ipv6-zone-sibling")
        sibling = data.draw(st.sampled_from(found), label="sibling")
        if self.role is Role.CLIENT and data.draw(st.booleans(), label="discover"):
            self._apply(ev.CandidateDiscovered(self.now, sibling))
        else:
            self._apply(ev.InboundTraffic(self.now, sibling, size))

    @precondition(lambda self: self._live() and self.role is Role.CLIENT)
    @rule(data=st.data())
    def known_candidate_again(self, data: st.DataObject) -> None:
        """A transport already known comes back or goes: the active one rediscovered
        (revived when failed) or lost, a stored candidate attached by the handshake,
        rediscovered or lost."""
        state = self.lock.state
        known = [*state.roaming.candidates]
        if state.link.active is not None:
            known.append(state.link.active)
        if not known:
            return
        transport = data.draw(st.sampled_from(known), label="known")
        self._boundary("known-candidate")
        if state.phase is CorePhase.BIRTH and transport in state.roaming.candidates:
            self._apply(ev.Attach(self.now, transport))
        elif data.draw(st.booleans(), label="lost"):
            self._apply(ev.CandidateLost(self.now, transport))
        else:
            self._apply(ev.CandidateDiscovered(self.now, transport))

    # --- path quality: scores on the margin, the dwell's end, the age limit --------------

    def _known_paths(self) -> list[TransportDescriptor]:
        """The client's known paths: the active one (failed or not), then the candidates."""
        state = self.lock.state
        active = state.link.active
        return [*([active] if active is not None else []), *state.roaming.candidates]

    def _score(self, transport: TransportDescriptor) -> PathScore | None:
        return next((s for s in self._client().quality if s.transport == transport), None)

    def _measured(self, transport: TransportDescriptor) -> bool:
        """The reference counts a measurement of `transport` at the current time."""
        score = self._score(transport)
        return score is not None and \
            self.now - score.updated_ms <= self.lock.state.ident.policy.quality_max_age_ms

    def _cost(self, transport: TransportDescriptor) -> int:
        return path_cost(self._client().quality, transport, self.lock.state.ident.policy,
                         self.now)[1]

    def _sample_to_cost(self, transport: TransportDescriptor, cost: int) -> None:
        """One RTT sample on `transport` that makes its cost `cost` under the spec's EWMA
        (the nearest sample when `cost` is out of one sample's reach). Of the eight samples
        that give the same smoothed RTT, the smallest: one that rounds down lands 1 ms
        lower."""
        score = self._score(transport)
        loss = 0 if score is None else (7 * score.loss_q16 + 4) >> 3
        want = max(1, cost - (loss * self.lock.state.ident.policy.quality_loss_penalty_ms
                              >> 16))
        rtt = want if score is None or score.srtt_ms == 0 else \
            8 * want - 7 * score.srtt_ms - 4
        self._apply(ev.RttSample(self.now, transport, min(max(rtt, 1), ev.RTT_MAX_MS)))

    def _steady_sample(self, transport: TransportDescriptor, data: st.DataObject) -> None:
        """A sample that leaves the path's smoothed RTT as it is (a fresh one if none)."""
        score = self._score(transport)
        rtt = score.srtt_ms if score is not None and score.srtt_ms else \
            data.draw(rtt_samples(), label="rtt")
        self._apply(ev.RttSample(self.now, transport, rtt))

    def _still_known(self, *paths: TransportDescriptor) -> bool:
        known = self._known_paths()
        return self._live() and all(path in known for path in paths)

    def _gap(self, incumbent: TransportDescriptor, challenger: TransportDescriptor,
             gap: int) -> bool:
        """Samples until `cost(incumbent) - cost(challenger) == gap`, both measured, by
        raising one of the two costs (one sample raises a cost anywhere, lowering it takes
        many). True when the gap is exactly reached."""
        for path in (incumbent, challenger):
            if not self._measured(path):
                # First measurements, or fresh ones for measurements that are too old.
                self._apply(ev.RttSample(self.now, path, 10 + 10 * len(self._known_paths())))
                if not self._still_known(incumbent, challenger):
                    return False
        for _ in range(2):  # a second sample when the loss EWMA moved the first one off
            now_gap = self._cost(incumbent) - self._cost(challenger)
            if now_gap == gap:
                return True
            if now_gap < gap:
                self._sample_to_cost(incumbent, self._cost(challenger) + gap)
            else:
                self._sample_to_cost(challenger, self._cost(incumbent) - gap)
            if not self._still_known(incumbent, challenger):
                return False
        return self._cost(incumbent) - self._cost(challenger) == gap

    def _ensure_candidate(self, data: st.DataObject) -> None:
        if not self.lock.state.roaming.candidates:
            port = data.draw(st.integers(min_value=40_000, max_value=40_003), label="port")
            self._apply(ev.CandidateDiscovered(self.now, TransportDescriptor.udp(
                "192.0.2.77", port)))

    @precondition(lambda self: self._live() and self.role is Role.CLIENT)
    @rule(data=st.data(), aim=st.sampled_from(_AIMS),
          losses=st.sampled_from((0, 0, 0, 0, 1, 2)))
    def costs_on_the_margin(self, data: st.DataObject, aim: str, losses: int) -> None:
        """RTT samples (after a lost probe or two, now and then) on two known paths, chosen
        so that their costs differ by exactly the migration margin (or 1 ms less or more),
        or tie (or differ by 1 ms): where `<` and `<=`, or a rounding, decide the upgrade
        target and the ranking of a recovery."""
        self._ensure_candidate(data)
        known = self._known_paths() if self._live() else []
        if len(known) < 2:
            return
        link = self.lock.state.link
        incumbent = link.active if link.active is not None and not link.active_failed \
            else data.draw(st.sampled_from(known), label="incumbent")
        challenger = data.draw(st.sampled_from([p for p in known if p != incumbent]),
                               label="challenger")
        for _ in range(losses):
            self._apply(ev.ProbeLost(self.now, data.draw(st.sampled_from(
                (incumbent, challenger)), label="lost")))
            if not self._still_known(incumbent, challenger):
                return
        kind, delta = aim.rstrip("+-1"), _AIM_DELTAS[aim]
        gap = delta + (self.lock.state.ident.policy.migration_margin_ms
                       if kind == "migration-margin" else 0)
        if self._gap(incumbent, challenger, gap):
            self._boundary(aim)

    @precondition(lambda self: self._live() and self.role is Role.CLIENT)
    @rule(data=st.data(), kind=st.sampled_from(("migration-due", "migration-due",
                                                "quality-max-age")),
          delta=st.sampled_from(_AROUND_EDGE),
          then=st.sampled_from(("tick", "tick", "sample", "timeout")))
    def quality_edge(self, data: st.DataObject, kind: str, delta: int, then: str) -> None:
        """The clock lands on the due time of a proactive migration (without a better path
        tracked: a dwell time from now) or on a measurement's age limit, -1/0/+1 ms, and a
        Tick, a sample that changes no smoothed RTT, or a delivery timeout arrives there."""
        suffix = {-1: "-1", 0: "", 1: "+1"}[delta]
        found = [(label, at) for label, at in edges(self.lock.state)
                 if label == kind + suffix]
        aged: TransportDescriptor | None = None
        if found:
            label, at = data.draw(st.sampled_from(found), label="at")
            if kind == "quality-max-age":
                aged = next(s.transport for s in self._client().quality
                            if s.updated_ms + self.lock.state.ident.policy.quality_max_age_ms
                            + delta == at)
        elif kind == "migration-due" and self.lock.state.phase is CorePhase.ATTACHED:
            label = "migration-dwell" + suffix
            at = self.now + self.lock.state.ident.policy.migration_dwell_ms + delta
        else:
            return
        if not self._keep_alive_until(at):
            return
        self.now = max(self.now, at)
        self._boundary(label)
        if then == "sample":
            others = [p for p in self._known_paths() if p != aged]
            if others:
                self._steady_sample(data.draw(st.sampled_from(others), label="sampled"),
                                    data)
                return
        if then == "timeout":
            self._apply(ev.DeliveryTimeout(self.now))
        else:
            self._apply(ev.Tick(self.now))

    @precondition(lambda self: self._live() and self.role is Role.CLIENT)
    @rule(data=st.data(), behind=st.sampled_from((0, 0, 1, 10)),
          delta=st.sampled_from(_AROUND_EDGE), hop=st.integers(min_value=1, max_value=50))
    def recovery_at_age_limit(self, data: st.DataObject, behind: int, delta: int,
                              hop: int) -> None:
        """The active path is measured as cheap as a candidate or `behind` ms cheaper, the
        candidate is measured again `hop` ms later, and a delivery timeout arrives when the
        active path's measurement is exactly (or 1 ms less or more than)
        `quality_max_age_ms` old: the first attempt goes to the active path while its
        measurement still counts, to the candidate once it no longer does."""
        if not self._attached(data):
            return
        self._ensure_candidate(data)
        if not self._live() or self.lock.state.phase is not CorePhase.ATTACHED:
            return
        active = self.lock.state.link.active
        candidates = self.lock.state.roaming.candidates
        if active is None or not candidates:
            return
        candidate = data.draw(st.sampled_from(candidates), label="candidate")
        if not self._gap(active, candidate, -behind):
            return
        self.now += hop
        self._steady_sample(candidate, data)
        score = self._score(active)
        if not self._still_known(active, candidate) or score is None:
            return
        at = score.updated_ms + self.lock.state.ident.policy.quality_max_age_ms + delta
        if at < self.now or not self._keep_alive_until(at):
            return
        self.now = at
        self._boundary("quality-max-age" + {-1: "-1", 0: "", 1: "+1"}[delta])
        self._apply(ev.DeliveryTimeout(self.now))

    def _keep_alive_until(self, at: int) -> bool:
        """Traffic on the active path now if the path would otherwise be declared lost by
        `at`; False when even then it would be (or the session's lifetime ends first)."""
        state = self.lock.state
        policy = state.ident.policy
        if at >= state.ident.created_ms + policy.session_max_lifetime_ms:
            return False
        if state.phase is CorePhase.BIRTH:
            return at < state.phase_since_ms + policy.birth_timeout_ms
        active = state.link.active
        if at >= state.link.last_rx_ms + policy.transport_lost_ttl_ms and active is not None:
            self._apply(ev.InboundTraffic(self.now, active, 100))
        return self._live() and at < self.lock.state.link.last_rx_ms + \
            policy.transport_lost_ttl_ms

    def _attached(self, data: st.DataObject) -> bool:
        """Bring the client to ATTACHED if one honest message does it (the handshake ends
        in BIRTH; the server accepts the request in flight in RECOVERING or DEGRADED);
        True when the session is ATTACHED."""
        state = self.lock.state
        pending = self._client().pending
        if state.phase is CorePhase.BIRTH:
            self._apply(ev.Attach(self.now, data.draw(transports(), label="attach")))
        elif state.phase is not CorePhase.ATTACHED and pending is not None:
            self._apply(self._accept(pending.request, pending.request.state_version + 1))
        return self.lock.state.phase is CorePhase.ATTACHED

    @precondition(lambda self: self._live() and self.role is Role.CLIENT)
    @rule(data=st.data(), beyond=st.sampled_from((0, 0, 1, 7)), challenged=st.booleans(),
          fault=_faults, challenge=st.binary(min_size=16, max_size=16))
    def migration_answered(self, data: st.DataObject, beyond: int, challenged: bool,
                           fault: NetworkFault, challenge: bytes) -> None:
        """The client attached (see `_attached`), a candidate beats the active path by the
        margin (or by `beyond` ms more), the dwell time passes, the migration request
        leaves, and the honest server answers it: with an accept, or first with a path
        challenge whose answer it then accepts (MIGRATED_TO_BETTER_PATH, unless the network
        loses the accept)."""
        if not self._attached(data):
            return
        side = self._client()
        link = self.lock.state.link
        if side.pending is None and side.better is None:
            if link.active is None or link.active_failed:
                return
            self._ensure_candidate(data)
            candidates = self.lock.state.roaming.candidates if self._live() else ()
            if not candidates or self.lock.state.link.active != link.active:
                return
            target = data.draw(st.sampled_from(candidates), label="target")
            gap = self.lock.state.ident.policy.migration_margin_ms + beyond
            if not self._gap(link.active, target, gap):
                return
        if self.lock.state.phase is not CorePhase.ATTACHED:
            return
        side = self._client()
        if side.pending is None and side.better is not None:
            due = migration_due(side, self.lock.state.roaming, self.lock.state.ident.policy)
            if due > self.now:
                if not self._keep_alive_until(due):
                    return
                self.now = due
                self._apply(ev.Tick(self.now))
        if not self._live():
            return
        side = self._client()
        pending = side.pending
        if pending is None or pending.request.challenge or pending.via != side.better:
            return  # no migration in flight
        self._boundary("migration-answered")
        request = pending.request
        if challenged:
            self._apply(self.peer.challenge(self.now, request.via, challenge=challenge,
                                            observed=request.candidate, nonce=request.nonce,
                                            state_version=request.state_version))
            answer = self.requests_seen[-1]
            if not self._live() or answer.challenge != challenge:
                return
            request = answer
        self._send_honest(self._accept(request, request.state_version + 1), fault)

    # --- the attacker ------------------------------------------------------------------------

    @precondition(lambda self: self._live())
    @rule(kind=attack_kinds(), proof=st.binary(min_size=32, max_size=32),
          other=session_ids(), source=st.one_of(rebinding_sources(), transports()),
          pick=st.integers(min_value=0, max_value=1_000), size=st.integers(0, 1500))
    def attack(self, kind: Attack, proof: bytes, other: bytes, source: TransportDescriptor,
               pick: int, size: int) -> None:
        """Forged, replayed, stale-version, future-version, wrong-session or flood."""
        if self.role is Role.SERVER:
            self._attack_server(kind, proof, other, source, pick, size)
        else:
            self._attack_client(kind, proof, other, pick)

    @precondition(lambda self: self._live() and self.role is Role.SERVER
                  and self.lock.state.link.active is not None)
    @rule(proof=st.binary(min_size=32, max_size=32))
    def forged_request_on_the_binding(self, proof: bytes) -> None:
        """The strongest forger: from the bound address, with the right session id, a fresh
        nonce, the current version and timestamp; everything but the key. Only the proof
        check can stop it."""
        active = self.lock.state.link.active
        assert active is not None
        self._apply(self._request(active, self._server().binding_version, size=200,
                                  forged=proof))

    @precondition(lambda self: self._live() and self.role is Role.CLIENT)
    @rule(first_port=st.integers(min_value=20_000, max_value=60_000))
    def candidate_storm(self, first_port: int) -> None:
        """More distinct candidates at once than the policy allows (§5.2)."""
        bound = self.lock.state.ident.policy.max_candidates
        for offset in range(bound + 2):
            self._apply(ev.CandidateDiscovered(
                self.now, TransportDescriptor.udp("192.0.2.200", first_port + offset)))

    @precondition(lambda self: self._live() and bool(self.captured))
    @rule()
    def replay_latest(self) -> None:
        """Replay the latest honest message verbatim: the one most likely to have been
        accepted, so only the replay window can stop it."""
        self._apply(self.captured[-1])

    def _attack_server(self, kind: Attack, proof: bytes, other: bytes,
                       source: TransportDescriptor, pick: int, size: int) -> None:
        version = self._server().binding_version
        if kind is Attack.FORGED:
            self._apply(self._request(source, version, size=size, forged=proof))
        elif kind is Attack.REPLAYED:
            if self.captured:
                self._apply(self.captured[pick % len(self.captured)])
        elif kind is Attack.STALE_VERSION:
            self._apply(self._request(source, max(0, version - 1 - pick % 3), size=size))
        elif kind is Attack.FUTURE_VERSION:
            self._apply(self._request(source, version + 1 + pick % 3, size=size))
        elif kind is Attack.WRONG_SESSION:
            self._apply(self._request(source, version, size=size, session_id=other))
        else:
            limit = self.lock.state.ident.policy.reattach_rate_limit
            for _ in range(limit + _FLOOD_EXTRA):
                self._apply(self._request(source, version, size=size))

    def _attack_client(self, kind: Attack, proof: bytes, other: bytes, pick: int) -> None:
        if not self.requests_seen:
            return
        request = self.requests_seen[-1]
        known = self._client().known_version
        if kind is Attack.FORGED:
            self._apply(self._accept(request, known + 1, forged=proof))
        elif kind is Attack.REPLAYED:
            if self.captured:
                self._apply(self.captured[pick % len(self.captured)])
        elif kind is Attack.STALE_VERSION:
            self._apply(self._accept(request, max(0, known - pick % 2)))
        elif kind is Attack.FUTURE_VERSION:
            # An accept for a request never sent (nonce from the future).
            self._apply(self._accept(request, known + 1, nonce=request.nonce + 1 + pick % 4))
        elif kind is Attack.WRONG_SESSION:
            self._apply(self._accept(request, known + 1, session_id=other))
        else:
            for _ in range(4 + _FLOOD_EXTRA):
                self._apply(self._accept(request, known + 1, forged=proof))


def conformance_machine(implementation: Implementation,
                        recorder: Recorder | None = None) -> type[ConformanceMachine]:
    """A `ConformanceMachine` subclass bound to `implementation` (and a `Recorder`)."""
    bound_recorder = recorder if recorder is not None else Recorder()

    class BoundConformanceMachine(ConformanceMachine):
        pass

    BoundConformanceMachine.implementation = implementation
    BoundConformanceMachine.recorder = bound_recorder
    BoundConformanceMachine.__name__ = f"ConformanceMachine[{implementation.name}]"
    return BoundConformanceMachine


@attrs.frozen
class ConformanceResult:
    """The verdict of one run: `failure` is None when the implementation conforms."""

    implementation: str
    examples: int
    failure: FailureReport | None
    coverage: Coverage = attrs.field(factory=Coverage, eq=False, repr=False)
    """What the run exercised (every example, shrinking included)."""
    caught_at: tuple[int, int] | None = None
    """`(examples, steps)` run when the first failure was seen; None when none was."""

    @property
    def ok(self) -> bool:
        """True when no divergence, invariant violation or protocol failure was found."""
        return self.failure is None


def run_conformance(implementation: Implementation, *, examples: int = DEFAULT_EXAMPLES,
                    seed: int = 0, steps: int = DEFAULT_STEPS,
                    shrink_budget: int | None = 300,
                    seconds: float | None = None) -> ConformanceResult:
    """Fuzz `implementation` against the reference; return the verdict (never raises for a
    failing implementation). Same arguments, same run: the seed fixes every draw.

    The budget is `examples` examples of up to `steps` steps each. `seconds`, when given,
    also stops generating new examples once that much wall-clock time has passed (a run
    bounded by time is not reproducible from its seed alone: how far it gets depends on
    the machine).

    Settings are fixed here on purpose (no Hypothesis profile is consulted), so a verdict
    does not depend on the caller's environment. `shrink_budget` bounds the examples
    spent shrinking after the first failure (0: report the first failure as found; None:
    shrink until Hypothesis is done).
    """
    deadline = None
    if seconds is not None:
        end = time.monotonic() + seconds
        deadline = lambda: time.monotonic() >= end  # noqa: E731 -- a one-line predicate
    recorder = Recorder(shrink_budget, deadline)
    machine = conformance_machine(implementation, recorder)
    phases = [Phase.generate, Phase.shrink] if shrink_budget != 0 else [Phase.generate]
    run_settings = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        phases=phases,
        derandomize=False,
        print_blob=False,
        report_multiple_bugs=False,
        verbosity=Verbosity.quiet,
        suppress_health_check=list(HealthCheck),
    )
    test = hypothesis_seed(seed)(get_state_machine_test(machine, settings=run_settings))
    kit_error: str | None = None
    try:
        test()
    except (ConformanceFailure, _ShrinkBudgetSpent):
        pass
    except Exception as exc:
        # Hypothesis may wrap the failure (flaky replays, exception groups); the recorder
        # knows what happened. Anything else is reported, never re-raised as a traceback.
        kit_error = f"{type(exc).__name__}: {exc}"
    failure = recorder.verdict()
    if failure is None and kit_error is not None:
        failure = FailureReport(FailureKind.CRASH, 0, "run", kit_error, "")
    return ConformanceResult(implementation.name, recorder.examples, failure,
                             recorder.coverage, recorder.caught_at)
