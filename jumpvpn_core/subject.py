"""The subject under test: what the scenario runner and the conformance kit step.

A subject (`Implementation`) creates sessions and steps them. After every step it reports
an `Outcome`: the phase, the state_version and the effects in their normalised JSON form
(`jumpvpn_core.forms.effect_to_data`). A subject written in Python may also expose its
`SessionState` and raw effects; whoever steps it then runs every invariant checker on it
too (`violations_of`) and can tell whether a step returned the very same state.

The reference core is one subject (`ReferenceImplementation`): the scenario runner steps it
for every role no other subject plays, the conformance kit steps it beside the subject
under test. A program in another language is a subject behind
`jumpvpn_core.testing.stdio.StdioImplementation`.

    class MyImplementation:
        name = "mine"
        def create_session(self, role, session_id, secret, now_ms, policy):
            ...  # -> (session, Outcome)
        def close(self): ...

Pure: this module reads no clock, randomness, files or network (it sits inside the core's
import contract); loading a subject by name lives in `jumpvpn_core.testing.implementation`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import attrs

from jumpvpn_core.effects import Effect
from jumpvpn_core.events import Event
from jumpvpn_core.forms import JsonObject, effect_from_data, effect_to_data
from jumpvpn_core.invariants import Violation, check_state, check_step, checked_step
from jumpvpn_core.machine import step
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.state import SessionState, new_session

__all__ = [
    "Alteration",
    "Implementation",
    "Outcome",
    "ProtocolError",
    "ReferenceImplementation",
    "ReferenceSession",
    "SessionUnderTest",
    "effects_of",
    "violations_of",
]


class ProtocolError(Exception):
    """A subject broke the conformance protocol (garbage, crash, hang)."""


@attrs.frozen
class Outcome:
    """What a subject reports after creating or stepping a session.

    `effects` are normalised (JSON objects, in order). `state` and `raw_effects` are
    optional: give them to have the invariant checkers run on your implementation.
    `violations` is set by a subject that checked its own step (the reference does).
    """

    phase: Phase
    state_version: int
    effects: tuple[JsonObject, ...] = ()
    state: SessionState | None = attrs.field(default=None, repr=False, eq=False)
    raw_effects: tuple[Effect, ...] | None = attrs.field(default=None, repr=False, eq=False)
    violations: tuple[Violation, ...] | None = attrs.field(default=None, repr=False, eq=False)

    @classmethod
    def of(cls, state: SessionState, effects: Sequence[Effect] = (),
           violations: Sequence[Violation] | None = None) -> Outcome:
        """The outcome of a core step: everything exposed, effects normalised."""
        return cls(
            state.phase,
            state.state_version,
            tuple(effect_to_data(e) for e in effects),
            state,
            tuple(effects),
            None if violations is None else tuple(violations),
        )


@runtime_checkable
class SessionUnderTest(Protocol):
    """One session of a subject."""

    def step(self, event: Event) -> Outcome:
        """Apply one event (a `jumpvpn_core.events` value) and report the outcome."""
        ...


@runtime_checkable
class Implementation(Protocol):
    """A subject: creates sessions, owns any resources they need."""

    @property
    def name(self) -> str:
        """A short label used in verdicts."""
        ...

    def create_session(
        self, role: Role, session_id: bytes, secret: bytes, now_ms: int, policy: Policy
    ) -> tuple[SessionUnderTest, Outcome]:
        """Create a session in BIRTH; return it with its initial outcome (no effects)."""
        ...

    def close(self) -> None:
        """Release resources (processes, sockets). Called once, when a run ends."""
        ...


Alteration = Callable[
    [SessionState, Event, SessionState, tuple[Effect, ...]],
    tuple[SessionState, tuple[Effect, ...]],
]
"""`(before, event, after, effects) -> (after, effects)`: how a wrapper changes one step."""


def _checked(before: SessionState, event: Event, after: SessionState,
             effects: Sequence[Effect]) -> list[Violation]:
    return [*check_step(before, event, after, effects), *check_state(after)]


class ReferenceSession:
    """A session of the reference: `invariants.checked_step` on a `SessionState`.

    `alter` is the one hook a wrapper may use to change the reference's behaviour (the
    deliberately broken implementations in `jumpvpn_core.testing.broken` do); an altered
    step is checked after the alteration.
    """

    def __init__(self, state: SessionState, alter: Alteration | None = None) -> None:
        self.state = state
        self._alter = alter

    def step(self, event: Event) -> Outcome:
        """Step the reference core (raises `InvalidEventError` on a malformed event)."""
        before = self.state
        if self._alter is None:
            after, effects, violations = checked_step(before, event)
        else:
            after, effects = self._alter(before, event, *step(before, event))
            violations = _checked(before, event, after, effects)
        self.state = after
        return Outcome.of(after, effects, violations)


class ReferenceImplementation:
    """The reference core as a subject. It conforms by definition."""

    name = "reference"

    def alter(
        self, before: SessionState, event: Event, after: SessionState, effects: tuple[Effect, ...]
    ) -> tuple[SessionState, tuple[Effect, ...]]:
        """Identity here; wrappers override it to change exactly one behaviour."""
        return after, effects

    def create_session(
        self, role: Role, session_id: bytes, secret: bytes, now_ms: int, policy: Policy
    ) -> tuple[ReferenceSession, Outcome]:
        """A fresh reference session in BIRTH (raises `InvalidEventError` on bad
        parameters)."""
        state = new_session(role, session_id, secret, now_ms, policy)
        alter = None if type(self).alter is ReferenceImplementation.alter else self.alter
        return ReferenceSession(state, alter), Outcome.of(state)

    def close(self) -> None:
        """Nothing to release."""


def effects_of(outcome: Outcome) -> tuple[Effect, ...]:
    """The outcome's effects as values: the raw effects when the subject handed them over,
    else decoded from their JSON form (raises `FormError` on an undecodable one)."""
    if outcome.raw_effects is not None:
        return outcome.raw_effects
    return tuple(effect_from_data(e) for e in outcome.effects)


def violations_of(before: SessionState | None, event: Event, outcome: Outcome) -> list[Violation]:
    """The invariants one step broke, as far as the subject lets us see: what it reported
    itself, else every checker run on the states it exposed, else nothing."""
    if outcome.violations is not None:
        return list(outcome.violations)
    if before is None or outcome.state is None or outcome.raw_effects is None:
        return []
    return _checked(before, event, outcome.state, outcome.raw_effects)
