"""`jumpvpn lab`: run the namespace lab's cases (root only; see docs/lab.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from jumpvpn_core.cli._common import CliError, emit_json, json_option, verb

__all__ = ["command"]


@verb("lab", "Run the real-networking lab (namespaces, NAT, attacker, WireGuard).\n\n"
      "Runs risk-model cases over real kernel networking in network namespaces it creates "
      "and removes. Needs root. Exit 1 when a case fails.")
@click.option("--case", "cases", multiple=True, metavar="NAME",
              help="a case to run (repeatable); see --list")
@click.option("--all", "run_all", is_flag=True, help="run every case")
@click.option("--list", "list_cases", is_flag=True, help="list the cases and exit")
@click.option("--cleanup", is_flag=True, help="remove every leftover lab namespace and exit")
@click.option("--wg-runs", type=int, default=5, show_default=True, metavar="N",
              help="WireGuard transfers to measure")
@click.option("--wg-mb", type=int, default=50, show_default=True, metavar="MB",
              help="megabytes per WireGuard transfer")
@json_option
def command(cases: tuple[str, ...], run_all: bool, list_cases: bool, cleanup: bool,
            wg_runs: int, wg_mb: int, as_json: bool) -> int:
    """Handler of `jumpvpn lab`."""
    from jumpvpn_core.lab import CASE_NAMES
    from jumpvpn_core.lab.control import install_exit_guards
    from jumpvpn_core.lab.net import cleanup as remove_namespaces
    from jumpvpn_core.lab.net import lab_available
    from jumpvpn_core.lab.run import format_table, run_cases

    if list_cases:
        if as_json:
            emit_json(list(CASE_NAMES))
        else:
            click.echo("\n".join(CASE_NAMES))
        return 0
    names = list(CASE_NAMES) if run_all else list(cases)
    unknown = [n for n in names if n not in CASE_NAMES]
    if unknown:
        raise CliError(f"unknown case {unknown[0]!r}; see --list")
    if not names and not cleanup:
        raise CliError("give --case NAME or --all")
    if wg_runs < 1 or wg_mb < 1:
        raise CliError("--wg-runs and --wg-mb must be >= 1")
    problem = lab_available()
    if problem is not None:
        raise CliError(problem)
    if cleanup:
        removed = remove_namespaces()
        if as_json:
            emit_json({"removed": len(removed)})
        else:
            click.echo(f"removed {len(removed)} lab namespaces")
        return 0
    install_exit_guards()

    def progress(result: Any) -> None:
        verdict = "PASS" if result.passed else "FAIL"
        click.echo(f"jumpvpn lab: {result.name}: {verdict} ({result.seconds:.1f}s) "
                   f"{result.detail}", err=True)

    try:
        results = asyncio.run(run_cases(names, progress, wg_runs=wg_runs,
                                        wg_megabytes=wg_mb))
    except KeyboardInterrupt:
        remove_namespaces()  # then the one error path reports the interruption (130)
        raise
    if as_json:
        emit_json([r.to_data() for r in results])
    else:
        click.echo(format_table(results))
    return 0 if all(r.passed for r in results) else 1
