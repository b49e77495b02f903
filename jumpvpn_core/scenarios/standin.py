"""The runner's hook for replacing the reference in one role.

By default the scenario runner steps `jumpvpn_core.machine.step` for both roles. A
`RoleStandIn` takes one role over: the runner creates that role's session through it,
feeds it every event meant for that role and prints what it reports, in the same form as
the reference's output. `jumpvpn_core.scenarios.impl.ImplementationRole` is the stand-in
that drives a conformance-kit `Implementation` (in-process or over stdio).

A stand-in exposes only what an implementation under test can report: phase,
state_version and effects. Commands that read a session's internals (`show`, `window`,
`forge`, `sign`, `flood`) fail with a message naming the
command when they would need the stand-in's internals.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs

from jumpvpn_core.effects import Effect
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy

__all__ = ["RoleOutcome", "RoleStandIn", "StandInError"]


class StandInError(Exception):
    """The stand-in could not create or step its session (crash, protocol failure,
    invariant violation). The runner fails the script at the current command."""


@attrs.frozen
class RoleOutcome:
    """What a stand-in reports after creating or stepping its session."""

    phase: Phase
    state_version: int
    effects: tuple[Effect, ...] = ()
    unchanged: bool | None = None
    """True when the step returned the very same state object, False when it returned
    another, None when the stand-in cannot tell (identity is not observable)."""
    violations: tuple[str, ...] = ()
    """Invariants the stand-in's own states broke in this step (when it exposes them);
    the runner prints each as `invariant violated: ...`, so the step's output differs."""


class RoleStandIn(Protocol):
    """Plays one role of a scenario in place of the reference."""

    @property
    def role(self) -> Role:
        """The role this stand-in plays."""
        ...

    @property
    def name(self) -> str:
        """A short label used in messages."""
        ...

    @property
    def observes_identity(self) -> bool:
        """Whether `RoleOutcome.unchanged` is ever known. When it is not, the runner does
        not compare `state unchanged (same object)` lines of this role."""
        ...

    def create(self, session_id: bytes, secret: bytes, now_ms: int,
               policy: Policy) -> RoleOutcome:
        """Create the role's session in BIRTH."""
        ...

    def step(self, event: Any) -> RoleOutcome:
        """Apply one event; raise `StandInError` when the session cannot be stepped."""
        ...

    def close(self) -> None:
        """Release whatever the stand-in holds (processes, sockets)."""
        ...
