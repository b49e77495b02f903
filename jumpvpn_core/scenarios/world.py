"""The scenario runner's world: its state, argument helpers, and how a role is stepped.

The world holds one player per role (a subject's session: the reference core unless a
stand-in plays the role, `jumpvpn_core.subject`), a virtual clock, one outbox per role
with the messages that role sent and nobody has delivered yet, captured messages, the
audit records of the script, and the gateway part (stores, sinks, nodes) that the gateway
commands create. Commands (`core_cmds`, `gateway_cmds`) read and change it; `runner`
replays a script against a fresh one.

Every delivery and every hand-made request or accept is built by `jumpvpn_core.peer`.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

import attrs

from jumpvpn_core import effects
from jumpvpn_core.effects import Effect
from jumpvpn_core.errors import InvalidEventError
from jumpvpn_core.events import Event
from jumpvpn_core.forms import FormError
from jumpvpn_core.gateway import Gateway
from jumpvpn_core.invariants import Violation
from jumpvpn_core.phases import Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.scenarios.args import CommandError
from jumpvpn_core.scenarios.eventtext import format_effect
from jumpvpn_core.scenarios.sinks import Sink
from jumpvpn_core.scenarios.standin import RoleStandIn
from jumpvpn_core.state import SessionState
from jumpvpn_core.stores.faulty import FaultyStore
from jumpvpn_core.subject import (
    Implementation,
    Outcome,
    ProtocolError,
    ReferenceImplementation,
    SessionUnderTest,
    effects_of,
    violations_of,
)
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "DEFAULT_REQUEST_SIZE",
    "MAX_FLOOD",
    "SCENARIO_SECRET",
    "SCENARIO_SESSION_ID",
    "UNCHANGED",
    "GatewayWorld",
    "Message",
    "Node",
    "Player",
    "World",
    "advance",
    "apply",
    "create_player",
    "pop",
    "record",
    "status",
]

#: The session id every scenario uses (16 bytes, 00 01 .. 0f).
SCENARIO_SESSION_ID = bytes(range(16))
#: The session secret every scenario uses. A published test value, never a real secret.
SCENARIO_SECRET = b"jumpvpn scenario test secret 32b"
#: Bytes the server is told it received for a delivered reattach request (`size=`).
DEFAULT_REQUEST_SIZE = 128
#: A flood may send at most this many requests (keeps scripts and traces small).
MAX_FLOOD = 100_000
UNCHANGED = "state unchanged (same object)"

Message = effects.SendReattachRequest | effects.SendPathChallenge | effects.SendReattachAccept
"""A message one role sends the other (what an outbox holds)."""


@attrs.define
class Player:
    """One role's session in a subject: the reference core, or the subject under test."""

    subject: Implementation
    session: SessionUnderTest
    last: Outcome
    under_test: bool
    identity_seen: bool = False

    @property
    def state(self) -> SessionState | None:
        """The state the subject last exposed (None when it exposes none)."""
        return self.last.state


@attrs.define
class Node:
    """A gateway node of the script, and its own connection to its store."""

    gateway: Gateway
    view: FaultyStore
    store_name: str
    sink_name: str | None
    phases: list[str] = attrs.Factory(list)


@attrs.define
class GatewayWorld:
    """What the gateway commands created: stores, sinks and nodes, by name."""

    stores: dict[str, FaultyStore] = attrs.Factory(dict)
    sinks: dict[str, Sink] = attrs.Factory(dict)
    nodes: dict[str, Node] = attrs.Factory(dict)
    # Telemetry records emitted and not yet printed: (node, record).
    fresh: list[tuple[str, dict[str, Any]]] = attrs.Factory(list)


@attrs.define
class World:
    """Everything a script's commands share."""

    policy_overrides: dict[str, int] = attrs.Factory(dict)
    players: dict[Role, Player] = attrs.Factory(dict)
    now: int = 0
    outbox: dict[Role, deque[Message]] = attrs.Factory(
        lambda: {Role.CLIENT: deque(), Role.SERVER: deque()}
    )
    nat: dict[TransportDescriptor, TransportDescriptor] = attrs.Factory(dict)
    last_delivered: tuple[Role, Event] | None = None
    captures: dict[str, tuple[Role, Event]] = attrs.Factory(dict)
    records: list[dict[str, Any]] = attrs.Factory(list)
    phases: dict[Role, list[str]] = attrs.Factory(
        lambda: {Role.CLIENT: [], Role.SERVER: []}
    )
    rejections: Counter[str] = attrs.Factory(Counter)
    script_name: str = ""
    session_id: bytes = SCENARIO_SESSION_ID
    stand_in: RoleStandIn | None = None
    #: Whether the stand-in was asked to create its session (a script that never is
    #: tests nothing of it).
    stand_in_used: bool = False
    command: str = ""
    gateways: GatewayWorld | None = None

    @property
    def policy(self) -> Policy:
        """The policy `init` (and the gateway nodes) give their sessions."""
        return Policy(**self.policy_overrides)

    def gateway_world(self) -> GatewayWorld:
        """The gateway part, created on first use."""
        if self.gateways is None:
            self.gateways = GatewayWorld()
        return self.gateways

    def session(self, role: Role) -> SessionState:
        """The role's current state, for commands that read a session's internals."""
        if self.stand_in is not None and self.stand_in.role is role:
            raise CommandError(
                f"command {self.command!r} needs the {role.value} session's internals, "
                f"which the implementation under test ({self.stand_in.name}) does not expose")
        player = self.players.get(role)
        if player is None or player.state is None:
            raise CommandError("no sessions yet: run `init t=<ms>` first")
        return player.state

    def client_address(self) -> TransportDescriptor:
        """The client's active transport (where its requests come from)."""
        active = self.session(Role.CLIENT).link.active
        if active is None:
            raise CommandError(
                "the client has no active transport; give source= and candidate=")
        return active


# --- stepping a role --------------------------------------------------------------------------


def status(role: Role, outcome: Outcome | SessionState) -> str:
    """`<role>: <PHASE> v<version>`."""
    return f"{role.value}: {outcome.phase.value} v{outcome.state_version}"


def create_player(world: World, role: Role, session_id: bytes, secret: bytes, now: int,
                  policy: Policy) -> Player:
    """Create the role's session in its subject (the stand-in's, else the reference)."""
    stand_in = world.stand_in
    session: SessionUnderTest
    if stand_in is None or stand_in.role is not role:
        try:
            session, outcome = ReferenceImplementation().create_session(
                role, session_id, secret, now, policy)
        except InvalidEventError as exc:
            raise CommandError(f"init: {exc}") from None
        player = Player(ReferenceImplementation(), session, outcome, False, True)
    else:
        world.stand_in_used = True
        try:
            session, outcome = stand_in.subject.create_session(
                role, session_id, secret, now, policy)
        except ProtocolError as exc:
            raise CommandError(f"{stand_in.name}: protocol failure: {exc}") from None
        except Exception as exc:
            raise CommandError(f"{stand_in.name}: create_session raised "
                               f"{type(exc).__name__}: {exc}") from None
        player = Player(stand_in.subject, session, outcome, True, outcome.state is not None)
    world.players[role] = player
    return player


@attrs.frozen
class Stepped:
    """One step of a role, as the runner prints and counts it."""

    outcome: Outcome
    effects: tuple[Effect, ...]
    unchanged: bool
    violations: tuple[Violation, ...]


def _step_subject(player: Player, event: Event) -> tuple[Outcome, tuple[Effect, ...]]:
    name = player.subject.name
    try:
        outcome = player.session.step(event)
    except InvalidEventError as exc:
        if player.under_test:
            raise CommandError(f"{name}: step raised InvalidEventError: {exc}") from None
        raise CommandError(f"step() refused the event: {exc}") from None
    except ProtocolError as exc:
        raise CommandError(f"{name}: protocol failure: {exc}") from None
    except Exception as exc:
        if not player.under_test:
            raise
        raise CommandError(f"{name}: step raised {type(exc).__name__}: {exc}") from None
    try:
        return outcome, effects_of(outcome)
    except FormError as exc:
        raise CommandError(f"{name}: effect cannot be decoded: {exc}") from None


def advance(world: World, role: Role, event: Event) -> Stepped:
    """Step `role` with `event`; record its audit effects and queue its messages.

    The reference breaking an invariant fails the command; a subject under test breaking
    one is reported in the step (`Stepped.violations`), so its output differs.
    """
    player = world.players.get(role)
    if player is None:
        raise CommandError("no sessions yet: run `init t=<ms>` first")
    before = player.state
    outcome, out = _step_subject(player, event)
    violations = violations_of(before, event, outcome)
    if violations and not player.under_test:
        raise CommandError("invariant violated: " + "; ".join(str(v) for v in violations))
    player.last = outcome
    player.identity_seen = player.identity_seen or outcome.state is not None
    world.now = max(world.now, event.now_ms)
    for effect in out:
        record(world, role, effect)
    unchanged = outcome.state is not None and outcome.state is before
    return Stepped(outcome, out, unchanged, tuple(violations))


def apply(world: World, role: Role, event: Event) -> list[str]:
    """Step `role` with `event` and print the step."""
    stepped = advance(world, role, event)
    lines = [status(role, stepped.outcome)]
    if stepped.unchanged:
        lines.append(UNCHANGED)
    lines.extend(format_effect(e, session_id=world.session_id) for e in stepped.effects)
    lines.extend(f"invariant violated: {v}" for v in stepped.violations)
    return lines


def record(world: World, role: Role, effect: Effect) -> None:
    """Keep an effect: audit records into the trace, messages into the role's outbox."""
    if isinstance(effect, effects.StateChanged | effects.Rejected):
        data = effect.to_record()
        data["script"] = world.script_name
        world.records.append(data)
        if isinstance(effect, effects.StateChanged):
            world.phases[role].append(effect.to_phase.value)
        else:
            world.rejections[effect.reason.value] += 1
    elif isinstance(effect, Message):
        world.outbox[role].append(effect)


def pop(world: World, sender: Role) -> Message:
    """The sender's oldest undelivered message."""
    box = world.outbox[sender]
    if not box:
        raise CommandError(f"the {sender.value} has no undelivered message")
    return box.popleft()
