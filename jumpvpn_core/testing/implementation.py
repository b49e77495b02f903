"""What an implementation under test offers, and the reference as one instance.

An implementation creates sessions and steps them. After every step it reports an
`Outcome`: the phase, the state_version and the effects in normalised JSON form (see
`jumpvpn_core.testing.wire.effect_to_json`). An implementation written in Python may also
expose its `SessionState` and raw effects; the conformance machine then runs every
invariant checker on it too.

    class MyImplementation:
        name = "mine"
        def create_session(self, role, session_id, secret, now_ms, policy):
            ...  # -> (session, Outcome)
        def close(self): ...

`load_implementation("package.module:factory")` imports a factory (anything callable with
no arguments returning an `Implementation`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

from jumpvpn_core.effects import Effect
from jumpvpn_core.machine import step
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.state import SessionState, new_session
from jumpvpn_core.testing.wire import JsonObject, effect_to_json

__all__ = [
    "Implementation",
    "Outcome",
    "ReferenceImplementation",
    "ReferenceSession",
    "SessionUnderTest",
    "load_implementation",
]


@attrs.frozen
class Outcome:
    """What an implementation reports after creating or stepping a session.

    `effects` are normalised (JSON objects, in order). `state` and `raw_effects` are
    optional: give them to have the invariant checkers run on your implementation.
    """

    phase: Phase
    state_version: int
    effects: tuple[JsonObject, ...] = ()
    state: SessionState | None = attrs.field(default=None, repr=False, eq=False)
    raw_effects: tuple[Effect, ...] | None = attrs.field(default=None, repr=False, eq=False)

    @classmethod
    def of(cls, state: SessionState, effects: Sequence[Effect] = ()) -> Outcome:
        """The outcome of a core step: everything exposed, effects normalised."""
        return cls(
            state.phase,
            state.state_version,
            tuple(effect_to_json(e) for e in effects),
            state,
            tuple(effects),
        )


@runtime_checkable
class SessionUnderTest(Protocol):
    """One session of an implementation under test."""

    def step(self, event: Any) -> Outcome:
        """Apply one event (a `jumpvpn_core.events` value) and report the outcome."""
        ...


@runtime_checkable
class Implementation(Protocol):
    """An implementation under test: creates sessions, owns any resources they need."""

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


class ReferenceSession:
    """A session of the reference: `jumpvpn_core.machine.step` on a `SessionState`.

    `alter` is the one hook a wrapper may override to change the reference's behaviour
    (the deliberately broken implementations in `jumpvpn_core.testing.broken` do).
    """

    def __init__(self, state: SessionState, alter: Alteration | None = None) -> None:
        self.state = state
        self._alter = alter

    def step(self, event: Any) -> Outcome:
        """Step the reference core; apply the alteration, if any."""
        before = self.state
        after, effects = step(before, event)
        if self._alter is not None:
            after, effects = self._alter(before, event, after, effects)
        self.state = after
        return Outcome.of(after, effects)


Alteration = Callable[
    [SessionState, Any, SessionState, tuple[Effect, ...]],
    tuple[SessionState, tuple[Effect, ...]],
]
"""`(before, event, after, effects) -> (after, effects)`: how a wrapper changes one step."""


class ReferenceImplementation:
    """The reference core as an `Implementation`. It conforms by definition."""

    name = "reference"

    def alter(
        self, before: SessionState, event: Any, after: SessionState, effects: tuple[Effect, ...]
    ) -> tuple[SessionState, tuple[Effect, ...]]:
        """Identity here; wrappers override it to change exactly one behaviour."""
        return after, effects

    def create_session(
        self, role: Role, session_id: bytes, secret: bytes, now_ms: int, policy: Policy
    ) -> tuple[ReferenceSession, Outcome]:
        """A fresh reference session in BIRTH."""
        state = new_session(role, session_id, secret, now_ms, policy)
        alter = None if type(self).alter is ReferenceImplementation.alter else self.alter
        return ReferenceSession(state, alter), Outcome.of(state)

    def close(self) -> None:
        """Nothing to release."""


def load_implementation(spec: str) -> Implementation:
    """Import `package.module:factory` and call the factory with no arguments.

    Raises `ValueError` with a readable message when the spec is malformed, the module or
    attribute does not exist, or the result does not look like an `Implementation`.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"implementation must be given as package.module:factory, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"{module_name!r} has no callable {attr!r}")
    impl = factory()
    if not isinstance(impl, Implementation):
        raise ValueError(f"{spec} did not return an Implementation (needs name, "
                         "create_session, close)")
    return impl
