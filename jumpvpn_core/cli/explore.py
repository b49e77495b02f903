"""`jumpvpn explore --depth N`: exhaustive bounded exploration of the real core."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import click

from jumpvpn_core.cli._common import CliError, ProgressLines, emit_json, json_option, verb
from jumpvpn_core.phases import Role

if TYPE_CHECKING:
    from jumpvpn_core.audit.explore import ExplorationResult

__all__ = ["command"]


@verb("explore", "BFS over every event sequence up to a depth, checking every step.\n\n"
      "With the client role, the client's migration domain is explored too.\n"
      "Exit 1 when a violation is found; the figures per role are printed either way.")
@click.option("--depth", type=int, default=8, show_default=True,
              help="sequence length (0 or more)")
@click.option("--role", type=click.Choice(["client", "server", "both"]), default="both",
              show_default=True, help="which role to explore on its own")
@json_option
def command(depth: int, role: str, as_json: bool) -> int:
    """Handler of `jumpvpn explore`."""
    from jumpvpn_core.audit.explore import explore, explore_migrations

    if depth < 0:
        raise CliError(f"--depth must be 0 or more, got {depth}")
    roles = list(Role) if role == "both" else [Role(role)]
    progress = ProgressLines("jumpvpn explore")
    jobs: list[tuple[str, Callable[[], ExplorationResult]]] = []
    for which in roles:
        jobs.append((which.value, functools.partial(explore, which, depth)))
        if which is Role.CLIENT:
            jobs.append(("client migrations", functools.partial(explore_migrations, depth)))
    results = []
    for name, run in jobs:
        progress.update(f"exploring {name} to depth {depth}", force=depth >= 6)
        result = run()
        results.append(result)
        if not as_json:
            click.echo(result.summary())
            for violation in result.violations:
                click.echo(f"  VIOLATION {violation}")
    ok = not any(r.violations for r in results)
    if as_json:
        def data(result: ExplorationResult) -> dict[str, Any]:
            return {**attrs.asdict(result), "role": result.role.value,
                    "seconds": round(result.seconds, 3)}

        out: dict[str, Any] = {"depth": depth, "ok": ok, "roles": [
            data(r) for r in results if r.domain == "session"]}
        out.update({r.domain: data(r) for r in results if r.domain != "session"})
        emit_json(out)
    return 0 if ok else 1
