"""Play one role of a scenario with an implementation under test instead of the reference.

`ImplementationRole` adapts a conformance-kit `Implementation` (in-process, or a program
behind `StdioImplementation`) to the runner's `RoleStandIn` hook; `implementation_role`
builds one from the command-line forms:

    jumpvpn scenarios --impl package.module:factory FILE...
    jumpvpn scenarios --cmd "<program>" FILE...

The implementation's outcomes are printed in the reference's output form: effects are
decoded from their normalised JSON form when the implementation does not hand over its
raw effects. When it exposes its states (an in-process implementation may), the runner
also runs every invariant checker on them (a violation is printed as
`invariant violated: ...`, so the step's output differs) and prints `state unchanged (same object)`
exactly when a step returned the very same state; otherwise that line is not compared for
the role (object identity cannot be seen through a pipe).

Needs the conformance kit (`jumpvpn_core.testing`, the `testing` extra).
"""

from __future__ import annotations

import shlex
from typing import Any

import attrs

from jumpvpn_core.effects import Effect
from jumpvpn_core.forms import FormError, effect_from_data
from jumpvpn_core.invariants import check_step
from jumpvpn_core.phases import Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.scenarios.standin import RoleOutcome, StandInError
from jumpvpn_core.state import SessionState
from jumpvpn_core.testing.implementation import (
    Implementation,
    Outcome,
    SessionUnderTest,
    load_implementation,
)
from jumpvpn_core.testing.lockstep import ProtocolError
from jumpvpn_core.testing.stdio import StdioImplementation

__all__ = ["ImplementationRole", "implementation_role"]


class ImplementationRole:
    """A `RoleStandIn` that drives one session of `implementation` in `role`."""

    def __init__(self, implementation: Implementation, role: Role) -> None:
        self.implementation = implementation
        self._role = role
        self._session: SessionUnderTest | None = None
        self._state: SessionState | None = None
        self._identity_seen = False

    @property
    def role(self) -> Role:
        """The role the implementation plays."""
        return self._role

    @property
    def name(self) -> str:
        """The implementation's name."""
        return self.implementation.name

    @property
    def observes_identity(self) -> bool:
        """True once the implementation has exposed a state (it can be compared by
        identity); a stdio program never does."""
        return self._identity_seen

    def _outcome(self, outcome: Outcome, before: SessionState | None) -> RoleOutcome:
        effects: tuple[Effect, ...]
        if outcome.raw_effects is not None:
            effects = outcome.raw_effects
        else:
            try:
                effects = tuple(effect_from_data(e) for e in outcome.effects)
            except FormError as exc:
                raise StandInError(f"effect cannot be decoded: {exc}") from None
        unchanged: bool | None = None
        if outcome.state is not None:
            self._identity_seen = True
            unchanged = before is not None and outcome.state is before
        return RoleOutcome(outcome.phase, outcome.state_version, effects, unchanged)

    def create(self, session_id: bytes, secret: bytes, now_ms: int,
               policy: Policy) -> RoleOutcome:
        """Create the implementation's session."""
        if self._session is not None:
            raise StandInError("session already created")
        try:
            self._session, outcome = self.implementation.create_session(
                self._role, session_id, secret, now_ms, policy)
        except ProtocolError as exc:
            raise StandInError(f"protocol failure: {exc}") from None
        except Exception as exc:
            raise StandInError(f"create_session raised {type(exc).__name__}: {exc}") from None
        self._state = outcome.state
        return self._outcome(outcome, None)

    def step(self, event: Any) -> RoleOutcome:
        """Step the implementation's session; check invariants on exposed states."""
        if self._session is None:
            raise StandInError("no session yet: run `init t=<ms>` first")
        before = self._state
        try:
            outcome = self._session.step(event)
        except ProtocolError as exc:
            raise StandInError(f"protocol failure: {exc}") from None
        except Exception as exc:
            raise StandInError(f"step raised {type(exc).__name__}: {exc}") from None
        result = self._outcome(outcome, before)
        if before is not None and outcome.state is not None:
            violations = check_step(before, event, outcome.state, result.effects)
            result = attrs.evolve(result, violations=tuple(str(v) for v in violations))
        self._state = outcome.state
        return result

    def close(self) -> None:
        """Release the implementation (processes, sockets)."""
        self.implementation.close()


def implementation_role(role: Role, *, impl: str | None = None, cmd: str | None = None,
                        step_timeout_ms: int = 2_000) -> ImplementationRole:
    """An `ImplementationRole` from `--impl package.module:factory` or `--cmd "<program>"`
    (exactly one of them). Raises `ValueError` with a readable message on a bad spec."""
    if (impl is None) == (cmd is None):
        raise ValueError("give exactly one of --impl and --cmd")
    implementation: Implementation
    if impl is not None:
        implementation = load_implementation(impl)
    else:
        assert cmd is not None
        argv = shlex.split(cmd)
        if not argv:
            raise ValueError("--cmd is empty")
        implementation = StdioImplementation(argv, step_timeout_ms)
    return ImplementationRole(implementation, role)
