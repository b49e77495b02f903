"""`jumpvpn explore --depth N`: exhaustive bounded exploration of the real core."""

from __future__ import annotations

import attrs
import click

from jumpvpn_core.cli._common import CliError, ProgressLines, emit_json, json_option, verb
from jumpvpn_core.phases import Role

__all__ = ["command"]


@verb("explore", "BFS over every event sequence up to a depth, checking every step.\n\n"
      "Exit 1 when a violation is found; the figures per role are printed either way.")
@click.option("--depth", type=int, default=8, show_default=True,
              help="sequence length (0 or more)")
@click.option("--role", type=click.Choice(["client", "server", "both"]), default="both",
              show_default=True, help="which role to explore on its own")
@json_option
def command(depth: int, role: str, as_json: bool) -> int:
    """Handler of `jumpvpn explore`."""
    from jumpvpn_core.audit.explore import explore

    if depth < 0:
        raise CliError(f"--depth must be 0 or more, got {depth}")
    roles = list(Role) if role == "both" else [Role(role)]
    progress = ProgressLines("jumpvpn explore")
    results = []
    for which in roles:
        progress.update(f"exploring {which.value} to depth {depth}", force=depth >= 6)
        result = explore(which, depth)
        results.append(result)
        if not as_json:
            click.echo(result.summary())
            for violation in result.violations:
                click.echo(f"  VIOLATION {violation}")
    if as_json:
        emit_json({"depth": depth, "ok": not any(r.violations for r in results),
                   "roles": [{**attrs.asdict(r), "role": r.role.value,
                              "seconds": round(r.seconds, 3)} for r in results]})
    return 1 if any(r.violations for r in results) else 0
