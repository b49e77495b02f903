"""A subject under test playing one role of a scenario in place of the reference.

The runner steps a subject (`jumpvpn_core.subject.Implementation`) for each role: the
reference core, unless a `RoleStandIn` names another subject for that role. The stand-in's
session is created by `init` and fed every event meant for its role; its outcome is printed
in the reference's form, its effects decoded from their normalised JSON form when it does
not hand over raw ones. When it exposes its states, every invariant checker runs on them
(a violation prints `invariant violated: ...`, so the step's output differs) and
`state unchanged (same object)` is printed exactly when a step returned the very same
state; otherwise that line is not compared for the role.

A stand-in is treated as what an implementation under test can report: phase,
state_version and effects. Commands that read a session's internals (`show`, `window`,
`forge`, `sign`, `flood`) fail with a message naming the command when they would need the
stand-in's. `jumpvpn_core.testing.implementation.implementation_role` builds a stand-in
from the command-line forms (`--impl package.module:factory`, `--cmd "<program>"`).
"""

from __future__ import annotations

import attrs

from jumpvpn_core.phases import Role
from jumpvpn_core.subject import Implementation

__all__ = ["RoleStandIn"]


@attrs.frozen
class RoleStandIn:
    """`subject` plays `role`; the reference plays the other role."""

    subject: Implementation
    role: Role

    @property
    def name(self) -> str:
        """The subject's name, used in messages."""
        return self.subject.name

    def close(self) -> None:
        """Release whatever the subject holds (processes, sockets)."""
        self.subject.close()
