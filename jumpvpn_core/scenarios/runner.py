"""Replay scenario scripts: the loop.

`run_script` builds a fresh `World` (`jumpvpn_core.scenarios.world`), runs each case's
command from `COMMANDS` (the core and gateway command sets, `core_cmds` and
`gateway_cmds`, whose names are distinct) and compares its output with the expected
block. Every role is played by a subject (`jumpvpn_core.subject`): the reference core,
unless a `RoleStandIn` plays it; every step of the reference goes through
`jumpvpn_core.invariants.checked_step` and a violation fails the script.

Output of a step, one line each: `<role>: <PHASE> v<version>`, then
`state unchanged (same object)` when the step returned the very same state object, then
every effect in `format_effect` form.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import attrs

from jumpvpn_core.phases import Role
from jumpvpn_core.scenarios import gateway_cmds
from jumpvpn_core.scenarios.args import (
    CommandError,
)
from jumpvpn_core.scenarios.core_cmds import CORE_COMMANDS, Command
from jumpvpn_core.scenarios.gateway_cmds import GATEWAY_COMMANDS
from jumpvpn_core.scenarios.script import Script, ScriptError, parse_script, render_script
from jumpvpn_core.scenarios.standin import RoleStandIn
from jumpvpn_core.scenarios.world import (
    DEFAULT_REQUEST_SIZE,
    SCENARIO_SECRET,
    SCENARIO_SESSION_ID,
    UNCHANGED,
    World,
)

__all__ = [
    "COMMANDS",
    "DEFAULT_REQUEST_SIZE",
    "SCENARIO_SECRET",
    "SCENARIO_SESSION_ID",
    "ScriptResult",
    "run_script",
    "run_script_file",
]


def _merge(*tables: dict[str, Command]) -> dict[str, Command]:
    merged: dict[str, Command] = {}
    for table in tables:
        shared = sorted(set(merged) & set(table))
        if shared:
            raise ValueError(f"command names defined twice: {', '.join(shared)}")
        merged.update(table)
    return merged


COMMANDS: dict[str, Command] = _merge(CORE_COMMANDS, GATEWAY_COMMANDS)
"""Every script command, by name."""


@attrs.frozen
class ScriptResult:
    """What replaying one script gave."""

    name: str
    section: str
    title: str
    expect: str
    observed: str
    ok: bool
    failure: str | None
    records: tuple[dict[str, Any], ...]
    outputs: dict[int, tuple[str, ...]]
    #: With a stand-in: whether it was asked to create its session (False: the script never
    #: creates a session of its role, so nothing of the implementation under test ran).
    #: None without a stand-in.
    exercised: bool | None = None


def _observed(world: World) -> str:
    parts = []
    for role in (Role.CLIENT, Role.SERVER):
        if not world.phases[role] and world.gateways is not None:
            continue  # a role a gateway script never created
        path: list[str] = []
        for phase in world.phases[role]:
            if not path or path[-1] != phase:
                path.append(phase)
        parts.append(f"{role.value} {'>'.join(path) or '-'}")
    parts.extend(gateway_cmds.observed(world))
    if world.rejections:
        shown = ",".join(f"{r}x{n}" for r, n in sorted(world.rejections.items()))
        parts.append(f"rejected {shown}")
    return "; ".join(parts)


def _comparable(world: World, lines: tuple[str, ...]) -> tuple[str, ...]:
    """The lines to compare: without `state unchanged` lines of a role whose stand-in
    cannot observe object identity."""
    stand_in = world.stand_in
    player = None if stand_in is None else world.players.get(stand_in.role)
    if stand_in is None or (player is not None and player.identity_seen):
        return lines
    out: list[str] = []
    current: Role | None = None
    for line in lines:
        for role in Role:
            if line.startswith((f"{role.value}: ", f"{role.value} <- ")):
                current = role
        if line == UNCHANGED and current is stand_in.role:
            continue
        out.append(line)
    return tuple(out)


def run_script(script: Script, *, stand_in: RoleStandIn | None = None) -> ScriptResult:
    """Replay every case of `script`. Stops at the first failing command, invariant
    violation or mismatch; `outputs` holds the actual output of every case run.

    With `stand_in`, that stand-in plays its role instead of the reference
    (`jumpvpn_core.scenarios.standin`)."""
    world = World(script_name=script.name, stand_in=stand_in)
    outputs: dict[int, tuple[str, ...]] = {}
    failure: str | None = None
    for case in script.cases:
        name, *args = case.command.split()
        world.command = name
        command = COMMANDS.get(name)
        try:
            if command is None:
                raise CommandError(f"unknown command {name!r}; commands: {', '.join(COMMANDS)}")
            actual = tuple(command(world, args))
        except CommandError as exc:
            failure = str(ScriptError(script.path, case.line, str(exc)))
            break
        outputs[case.line] = actual
        if _comparable(world, actual) != _comparable(world, case.expected) and \
                failure is None:
            diff = "\n".join(difflib.unified_diff(
                list(case.expected), list(actual), "expected", "actual", lineterm=""))
            failure = f"{script.path}:{case.line}: output of {case.command!r} differs\n{diff}"
    exercised: bool | None = None
    if stand_in is not None:
        exercised = world.stand_in_used
        if not exercised and failure is None:
            failure = (f"{script.path}: the implementation under test ({stand_in.name}) played "
                       f"no part: the script never creates a {stand_in.role.value} session "
                       "(gateway commands run the reference core), so nothing was tested")
    return ScriptResult(
        name=script.name,
        section=script.header["section"],
        title=script.header["title"],
        expect=script.header["expect"],
        observed=_observed(world),
        ok=failure is None,
        failure=failure,
        records=tuple(world.records),
        outputs=outputs,
        exercised=exercised,
    )


def run_script_file(path: Path, *, rewrite: bool = False,
                    stand_in: RoleStandIn | None = None) -> ScriptResult:
    """Parse and replay the script at `path`. With `rewrite`, expected blocks are replaced
    by the actual output (when every command ran) and the file is written back. With
    `stand_in`, that stand-in plays its role (never together with `rewrite`).

    Raises `ScriptError` when the file itself is malformed.
    """
    if rewrite and stand_in is not None:
        raise ValueError("rewrite takes the reference's output; it cannot use a stand-in")
    script = parse_script(path.read_text(encoding="utf-8"), str(path))
    result = run_script(script, stand_in=stand_in)
    if rewrite and len(result.outputs) == len(script.cases):
        path.write_text(render_script(script, result.outputs), encoding="utf-8")
        result = attrs.evolve(result, ok=True, failure=None)
    return result
