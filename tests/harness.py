"""A self-contained virtual-time harness: one client, one server, a lossy network, a NAT.

Nothing here reads a clock or a socket. `Simulation.now` is the only clock; every event is
stamped with it. Every call into the core goes through `checked_step`, which runs
`check_step` on the result and raises `InvariantBrokenError` listing each violation, so no
test can drive the core without the invariant checkers watching.

The network model:

* The client owns local transports (`LOCALS`). A NAT maps each local transport to the
  address the server observes (`Simulation.nat`); `rebind_nat` gives a local transport a
  fresh observed address, as a NAT rebinding does.
* Control messages the core asks to send (`SendReattachRequest`, `SendPathChallenge`,
  `SendReattachAccept`) go into `Simulation.flight` and stay there until a test delivers,
  drops, duplicates or reorders them. A request takes its observed source address when it
  is sent (it crosses the NAT then); a message to the client reaches whichever local
  transport the NAT maps that address to at delivery time, or nobody.
* The harness records what a correct server may bind (`proven`): the attach address and
  every address that answered one of the server's own challenges, from that address,
  with a proof that verifies under the session key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from jumpvpn_core import (
    Attach,
    Effect,
    Event,
    InboundTraffic,
    Phase,
    Policy,
    ReasonCode,
    ReattachAccepted,
    ReattachRequest,
    Rejected,
    Role,
    SendPathChallenge,
    SendReattachAccept,
    SendReattachRequest,
    SessionState,
    Tick,
    TransportDescriptor,
    check_step,
    new_session,
    next_deadline,
    step,
)
from jumpvpn_core.peer import challenge_received
from jumpvpn_core.proof import MessageType, derive_control_key, verify_proof

__all__ = [
    "ATTACKERS",
    "LOCALS",
    "REQUEST_SIZE",
    "SECRET",
    "SESSION_ID",
    "InFlight",
    "InvariantBrokenError",
    "Simulation",
    "checked_step",
    "rejections",
]

SESSION_ID = bytes.fromhex("5e551011d0000000000000000000a11c")
SECRET = b"harness-session-secret-not-for-production"
#: The client's local transports: more than any test policy allows as candidates.
LOCALS: tuple[TransportDescriptor, ...] = tuple(
    TransportDescriptor.udp(f"10.0.0.{i}", 4000) for i in range(1, 7)
)
#: Addresses an off-path attacker sends from.
ATTACKERS: tuple[TransportDescriptor, ...] = tuple(
    TransportDescriptor.udp(f"203.0.113.{i}", 6666) for i in range(1, 4)
)
#: Wire size the harness charges for one reattach request (amplification accounting).
REQUEST_SIZE = 128

Message = SendReattachRequest | SendPathChallenge | SendReattachAccept


class InvariantBrokenError(AssertionError):
    """`check_step` (or the deadline rule) found violations after one `step()`."""


def checked_step(state: SessionState, event: Any) -> tuple[SessionState, tuple[Effect, ...]]:
    """`step()` plus every invariant checker; raises `InvariantBrokenError` on any violation.

    Besides `check_step`, it asserts that no deadline is left in the past: after a step at
    `now` that was not refused for going back in time, `next_deadline` is None or > now.
    """
    after, effects = step(state, event)
    problems = [str(v) for v in check_step(state, event, after, effects)]
    backwards = any(
        isinstance(e, Rejected) and e.reason is ReasonCode.TIME_WENT_BACKWARDS for e in effects
    )
    deadline = next_deadline(after)
    if not backwards and deadline is not None and deadline <= event.now_ms:
        problems.append(f"next_deadline {deadline} not after now {event.now_ms}")
    if problems:
        raise InvariantBrokenError(
            f"{state.role.value} {type(event).__name__} at {event.now_ms} "
            f"({state.phase} -> {after.phase}): " + "; ".join(problems)
        )
    return after, effects


def rejections(effects: Sequence[Effect]) -> list[Rejected]:
    """The `Rejected` records among `effects`."""
    return [e for e in effects if isinstance(e, Rejected)]


@attrs.define
class InFlight:
    """One control message on the wire. `source` is the observed sender address."""

    message: Message
    source: TransportDescriptor | None
    sent_ms: int


@attrs.define
class Simulation:
    """Client and server of one session, a NAT and the messages in flight between them."""

    policy: Policy
    now: int
    client: SessionState
    server: SessionState
    nat: dict[TransportDescriptor, TransportDescriptor]
    flight: list[InFlight] = attrs.field(factory=list)
    proven: set[TransportDescriptor] = attrs.field(factory=set)
    issued: set[tuple[TransportDescriptor, bytes]] = attrs.field(factory=set)
    accepted_nonces: set[int] = attrs.field(factory=set)
    #: Every request the client sent that left through the NAT, with its observed source:
    #: what an on-path attacker has captured.
    sent_requests: list[tuple[SendReattachRequest, TransportDescriptor]] = attrs.field(
        factory=list)
    terminated: set[Role] = attrs.field(factory=set)
    #: Every (role, phase) either side has been in after a step.
    phases: set[tuple[Role, Phase]] = attrs.field(factory=set)
    nat_counter: int = 0

    @classmethod
    def create(cls, policy: Policy, now: int = 1_000, attach: bool = True) -> Simulation:
        """Both sides in BIRTH; with `attach`, attached over `LOCALS[0]`."""
        sim = cls(
            policy=policy,
            now=now,
            client=new_session(Role.CLIENT, SESSION_ID, SECRET, now, policy),
            server=new_session(Role.SERVER, SESSION_ID, SECRET, now, policy),
            nat={},
        )
        for local in LOCALS:
            sim.rebind_nat(local)
        if attach:
            sim.attach(LOCALS[0])
        return sim

    @property
    def control_key(self) -> bytes:
        """The session's control key, as both legitimate ends derive it."""
        return derive_control_key(SECRET, SESSION_ID)

    # --- time and topology -----------------------------------------------------------------

    def advance(self, ms: int) -> None:
        """Move the virtual clock forward by `ms` (nothing is delivered)."""
        self.now += ms

    def rebind_nat(self, local: TransportDescriptor) -> TransportDescriptor:
        """Give `local` a fresh observed address, as a NAT rebinding does."""
        self.nat_counter += 1
        index = LOCALS.index(local) + 1
        observed = TransportDescriptor.udp(f"198.51.100.{index}", 20_000 + self.nat_counter)
        self.nat[local] = observed
        return observed

    def local_for(self, observed: TransportDescriptor) -> TransportDescriptor | None:
        """The local transport the NAT currently maps `observed` to, if any."""
        for local, address in self.nat.items():
            if address == observed:
                return local
        return None

    # --- driving the two sides -------------------------------------------------------------

    def attach(self, local: TransportDescriptor) -> None:
        """Finish the handshake on `local` at both ends."""
        observed = self.nat[local]
        self.to_client(Attach(self.now, local))
        self.to_server(Attach(self.now, observed))
        self.proven.add(observed)

    def to_client(self, event: Event) -> tuple[Effect, ...]:
        """Step the client; queue what it sends."""
        self.client, effects = checked_step(self.client, event)
        self.phases.add((Role.CLIENT, self.client.phase))
        if self.client.phase is Phase.TERMINATED:
            self.terminated.add(Role.CLIENT)
        for effect in effects:
            if isinstance(effect, SendReattachRequest):
                source = self.nat.get(effect.via)
                self.flight.append(InFlight(effect, source, self.now))
                if source is not None:
                    self.sent_requests.append((effect, source))
        return effects

    def to_server(self, event: Event) -> tuple[Effect, ...]:
        """Step the server; queue what it sends and record what it may later bind."""
        if isinstance(event, ReattachRequest) and event.challenge and (
            (event.source, event.challenge) in self.issued
            and verify_proof(self.control_key, event.proof, MessageType.REATTACH_REQUEST,
                             event.session_id, event.nonce, event.state_version,
                             event.timestamp_ms, event.candidate, event.challenge)
        ):
            self.proven.add(event.source)
        self.server, effects = checked_step(self.server, event)
        self.phases.add((Role.SERVER, self.server.phase))
        if self.server.phase is Phase.TERMINATED:
            self.terminated.add(Role.SERVER)
        if isinstance(event, ReattachRequest) and not rejections(effects):
            self.accepted_nonces.add(event.nonce)
        for effect in effects:
            if isinstance(effect, SendPathChallenge):
                self.issued.add((effect.to, effect.challenge))
                self.flight.append(InFlight(effect, None, self.now))
            elif isinstance(effect, SendReattachAccept):
                self.flight.append(InFlight(effect, None, self.now))
        return effects

    def traffic(self, size: int, client: bool = True, server: bool = True) -> None:
        """Data on the client's active path, seen by the client and/or the server."""
        local = self.client.link.active
        if local is None:
            return
        if client:
            self.to_client(InboundTraffic(self.now, local, min(size, 1_500)))
        if server:
            self.to_server(InboundTraffic(self.now, self.nat[local], size))

    # --- the network -----------------------------------------------------------------------

    def request_event(self, message: SendReattachRequest, source: TransportDescriptor,
                      **changes: Any) -> ReattachRequest:
        """The server-side event for a request `message` arriving from `source` now."""
        fields: dict[str, Any] = {
            "now_ms": self.now,
            "source": source,
            "session_id": message.session_id,
            "nonce": message.nonce,
            "state_version": message.state_version,
            "timestamp_ms": message.timestamp_ms,
            "candidate": message.candidate,
            "proof": message.proof,
            "challenge": message.challenge,
            "size": REQUEST_SIZE,
        }
        fields.update(changes)
        return ReattachRequest(**fields)

    def deliver(self, index: int, keep: bool = False) -> tuple[Effect, ...]:
        """Deliver in-flight message `index` now (and keep a copy with `keep`)."""
        item = self.flight[index] if keep else self.flight.pop(index)
        message = item.message
        if isinstance(message, SendReattachRequest):
            if item.source is None:
                return ()  # the NAT had no mapping: the packet never left
            return self.to_server(self.request_event(message, item.source))
        local = self.local_for(message.to)
        if local is None:
            return ()  # the NAT forgot that address: the packet is lost
        if isinstance(message, SendPathChallenge):
            return self.to_client(challenge_received(message, self.now, local))
        return self.to_client(ReattachAccepted(
            self.now, local, message.session_id, message.nonce, message.state_version,
            message.timestamp_ms, message.to, message.proof,
        ))

    def drop(self, index: int) -> None:
        """Lose in-flight message `index`."""
        self.flight.pop(index)

    def duplicate(self, index: int) -> None:
        """The network duplicates in-flight message `index`."""
        self.flight.append(attrs.evolve(self.flight[index]))

    def reorder(self, index: int) -> None:
        """Message `index` overtakes every other one: it moves to the front."""
        self.flight.insert(0, self.flight.pop(index))

    def run_until_quiet(self, max_rounds: int = 50) -> None:
        """Deliver everything in flight, in order, until nothing is left (bounded)."""
        for _ in range(max_rounds):
            if not self.flight:
                return
            self.deliver(0)
        raise AssertionError(f"network still busy after {max_rounds} deliveries")

    def tick_both(self) -> None:
        """Deliver `Tick(now)` to both sides."""
        self.to_client(Tick(self.now))
        self.to_server(Tick(self.now))
