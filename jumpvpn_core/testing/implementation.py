"""Subjects under test, as the conformance kit names them.

The protocol itself (`Implementation`, `SessionUnderTest`, `Outcome`) and the reference as
one subject (`ReferenceImplementation`) live in `jumpvpn_core.subject`, below both this kit
and the scenario runner; they are re-exported here. This module adds what needs the
world around a run: loading a subject by name and building one from the command-line forms

    --impl package.module:factory        an in-process implementation
    --cmd "<program>"                    a program speaking the conformance protocol
"""

from __future__ import annotations

import importlib
import shlex
from typing import TYPE_CHECKING

from jumpvpn_core.phases import Role
from jumpvpn_core.subject import (
    Alteration,
    Implementation,
    Outcome,
    ProtocolError,
    ReferenceImplementation,
    ReferenceSession,
    SessionUnderTest,
)
from jumpvpn_core.testing.stdio import ProgramStartError, StdioImplementation

if TYPE_CHECKING:
    from jumpvpn_core.scenarios.standin import RoleStandIn

__all__ = [
    "Alteration",
    "Implementation",
    "Outcome",
    "ReferenceImplementation",
    "ReferenceSession",
    "SessionUnderTest",
    "check_program_starts",
    "implementation_role",
    "load_implementation",
    "subject_from_spec",
]


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


def subject_from_spec(*, impl: str | None = None, cmd: str | None = None,
                      step_timeout_ms: int = 2_000) -> Implementation:
    """The subject named by `--impl package.module:factory` or `--cmd "<program>"` (exactly
    one of them). Raises `ValueError` with a readable message on a bad spec."""
    if (impl is None) == (cmd is None):
        raise ValueError("give exactly one of --impl and --cmd")
    if impl is not None:
        return load_implementation(impl)
    assert cmd is not None
    argv = shlex.split(cmd)
    if not argv:
        raise ValueError("--cmd is empty")
    return StdioImplementation(argv, step_timeout_ms)


def check_program_starts(cmd: str, step_timeout_ms: int = 2_000) -> None:
    """Start the `--cmd` program, exchange `hello`, and stop it again.

    Raises `ValueError` on a malformed command and `ProgramStartError` when the program
    cannot be executed or exits before answering `hello`. A program that runs but answers
    `hello` wrongly passes here: that is a protocol failure, reported by the run itself.
    """
    try:
        argv = shlex.split(cmd)
    except ValueError as exc:
        raise ValueError(f"--cmd cannot be parsed: {exc}") from None
    if not argv:
        raise ValueError("--cmd is empty")
    program = StdioImplementation(argv, step_timeout_ms)
    try:
        program.start()
    except ProgramStartError:
        raise
    except ProtocolError:
        pass
    finally:
        program.close()


def implementation_role(role: Role, *, impl: str | None = None, cmd: str | None = None,
                        step_timeout_ms: int = 2_000) -> RoleStandIn:
    """The subject named by `--impl`/`--cmd` (see `subject_from_spec`) playing `role` of a
    scenario script (`jumpvpn scenarios --impl/--cmd`)."""
    # Imported here: a program serving the conformance protocol never loads the runner.
    from jumpvpn_core.scenarios.standin import RoleStandIn

    return RoleStandIn(subject_from_spec(impl=impl, cmd=cmd, step_timeout_ms=step_timeout_ms),
                       role)
