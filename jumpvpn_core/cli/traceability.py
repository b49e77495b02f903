"""`jumpvpn traceability`: print or write the requirement -> code -> tests matrix.

A checkout-only verb: it reads `specs/requirements.md` and scans `tests/` through
`tools/traceability.py`, none of which ship in the wheel.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from jumpvpn_core.cli._common import (
    CliError,
    check_output_file,
    emit_json,
    json_option,
    needs_checkout,
    verb,
)

__all__ = ["command"]


def _is_checkout(root: Path) -> bool:
    return all((root / part).exists() for part in
               ("specs/requirements.md", "tests", "tools/traceability.py"))


@verb("traceability", "Requirement -> code -> tests matrix (docs/traceability.md).\n\n"
      "Needs a source checkout (it scans tests/ and reads specs/).")
@click.option("--root", type=click.Path(path_type=Path), default=None,
              help="source checkout holding specs/, tests/ and tools/ (default: the current "
                   "directory if it is one, else the checkout this package runs from)")
@click.option("--write", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="write the matrix to FILE instead of printing it")
@json_option
def command(root: Path | None, write: Path | None, as_json: bool) -> int:
    """Handler of `jumpvpn traceability`."""
    if root is None:
        root = Path.cwd() if _is_checkout(Path.cwd()) else needs_checkout(
            "traceability", "the traceability matrix (it scans tests/ and specs/)")
    if not _is_checkout(root):
        raise CliError(f"{root} is not a source checkout (no specs/requirements.md, tests/ "
                       "and tools/traceability.py); the traceability matrix needs one")
    if write is not None:
        check_output_file(write, "--write")
    resolved = str(root.resolve())
    if resolved not in sys.path:
        sys.path.insert(0, resolved)
    tool = importlib.import_module("tools.traceability")
    report = tool.build_report(root)
    text: str = tool.render(report)
    if write is not None:
        write.write_text(text, encoding="utf-8")
    if as_json:
        emit_json({"ok": report.ok, "requirements": len(report.requirements),
                   "tests": report.tests, "without_tests": list(report.without_tests),
                   "without_code": list(report.without_code),
                   "unknown_ids": list(report.unknown_ids),
                   "missing_code": list(report.missing_code),
                   "written": None if write is None else str(write)})
    elif write is not None:
        click.echo(f"wrote {write}")
    else:
        click.echo(text, nl=False)
    if not report.ok:
        if not as_json:
            click.echo("traceability gaps: see the summary", err=True)
        return 1
    return 0
