"""`jumpvpn verify-trace FILE`: check a JSONL audit trace (exit 0 good, 1 bad, 2 usage)."""

from __future__ import annotations

from pathlib import Path

import click

from jumpvpn_core import jsonsafe
from jumpvpn_core.cli._common import CliError, emit_json, json_option, verb
from jumpvpn_core.errors import PolicyError
from jumpvpn_core.policy import Policy

__all__ = ["command"]


@verb("verify-trace", "Check a JSONL audit trace against the transition table and bounds.")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), default=None,
              help="JSON policy the traced sessions ran under (default: Policy())")
@click.option("--allow-partial", is_flag=True,
              help="accept streams that start mid-session instead of at BIRTH")
@json_option
def command(file: Path, policy_path: Path | None, allow_partial: bool, as_json: bool) -> int:
    """Handler of `jumpvpn verify-trace`."""
    from jumpvpn_core.audit.trace import verify_trace_file

    policy = Policy()
    if policy_path is not None:
        try:
            policy = Policy.from_data(jsonsafe.loads(policy_path.read_bytes()), partial=True)
        except PolicyError as exc:
            raise CliError(f"bad policy {policy_path}: {exc}") from None
        except (OSError, ValueError) as exc:
            raise CliError(f"bad policy {policy_path}: cannot read: {exc}") from None
    try:
        report = verify_trace_file(file, policy, allow_partial=allow_partial)
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
    if as_json:
        emit_json({"file": str(file), "ok": report.violation is None,
                   "violation": None if report.violation is None else str(report.violation),
                   "records": report.records, "streams": report.streams})
    elif report.violation is not None:
        click.echo(f"{file}:{report.violation}")
    else:
        click.echo(f"{file}: OK ({report.records} records, {report.streams} streams)")
    return 1 if report.violation is not None else 0
