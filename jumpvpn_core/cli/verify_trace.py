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
@click.option("--key", "key_spec", default=None, metavar="FILE|HEX",
              help="the writer's trace key: check every checkpoint's MAC")
@click.option("--unchained", is_flag=True,
              help="a bare record log (trace format 1): check the records only")
@json_option
def command(file: Path, policy_path: Path | None, allow_partial: bool, key_spec: str | None,
            unchained: bool, as_json: bool) -> int:
    """Handler of `jumpvpn verify-trace`."""
    from jumpvpn_core.audit.trace import describe, verify_trace_file
    from jumpvpn_core.audit.trace_writer import TraceKeyError, key_option

    try:
        key = key_option(key_spec)
    except TraceKeyError as exc:
        raise CliError(f"bad --key: {exc}") from None
    if key is not None and unchained:
        raise CliError("--key needs a framed trace, not --unchained")

    policy = Policy()
    if policy_path is not None:
        try:
            policy = Policy.from_data(jsonsafe.loads(policy_path.read_bytes()), partial=True)
        except PolicyError as exc:
            raise CliError(f"bad policy {policy_path}: {exc}") from None
        except (OSError, ValueError) as exc:
            raise CliError(f"bad policy {policy_path}: cannot read: {exc}") from None
    try:
        report = verify_trace_file(file, policy, allow_partial=allow_partial,
                                   chained=not unchained, key=key)
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
    if as_json:
        emit_json({"file": str(file), "ok": report.violation is None,
                   "violation": None if report.violation is None else str(report.violation),
                   "records": report.records, "streams": report.streams,
                   "chained": report.chained, "authenticated": report.authenticated})
    elif report.violation is not None:
        click.echo(f"{file}:{report.violation}")
    else:
        click.echo(f"{file}: {describe(report)}")
    return 1 if report.violation is not None else 0
