"""`jumpvpn sessions --store URL [list|show SID|count] [--json]`: inspect a session store.

Read-only; never prints a secret. Exit status: 0 done, 1 session not found, 2 usage or a
store that cannot be opened or read. The views are `jumpvpn_core.gateway.inspect`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import click

from jumpvpn_core.cli._common import CliError, emit_json, json_option, verb
from jumpvpn_core.gateway.inspect import count_by_phase, list_sessions, show_session
from jumpvpn_core.stores import StoreError, open_store

__all__ = ["command", "run"]


def run(store_url: str, action: str, session_id: str | None = None, *,
        timeout_s: float = 5.0, limit: int | None = None) -> tuple[int, Any]:
    """The verb without argument parsing: (exit status, result or error text)."""
    sid: bytes | None = None
    if action == "show":
        try:
            sid = bytes.fromhex(session_id or "")
        except ValueError:
            return 2, "show needs a session id in hex"
        if not sid:
            return 2, "show needs a session id in hex"
    try:
        store = open_store(store_url, timeout_s=timeout_s)
    except (StoreError, ValueError) as exc:
        return 2, f"cannot open store: {exc}"
    try:
        if action == "count":
            return 0, count_by_phase(store)
        if action == "show":
            assert sid is not None
            shown = show_session(store, sid)
            return (1, "no such session") if shown is None else (0, shown)
        return 0, list_sessions(store, limit)
    except StoreError as exc:
        return 2, f"cannot read store: {exc}"
    finally:
        with contextlib.suppress(StoreError):
            store.close()


@verb("sessions", "List, show or count the sessions in a store (read-only).\n\n"
      "ACTION is list (default), show SESSION_ID (hex) or count (by phase). Never prints a "
      "secret. Exit 1 when `show` finds no such session.")
@click.option("--store", "store_url", required=True, metavar="URL",
              help="store URL: memory://, sqlite:///f.db, redis://, postgresql://, etcd://")
@click.option("--timeout", "timeout_s", type=float, default=5.0, show_default=True,
              help="store timeout, seconds")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="list at most N sessions")
@click.argument("action", type=click.Choice(("list", "show", "count")), default="list")
@click.argument("session_id", required=False)
@json_option
def command(store_url: str, timeout_s: float, limit: int | None, action: str,
            session_id: str | None, as_json: bool) -> int:
    """Handler of `jumpvpn sessions`."""
    status, result = run(store_url, action, session_id, timeout_s=timeout_s, limit=limit)
    if isinstance(result, str):
        raise CliError(result, status)
    if as_json or action == "show":
        emit_json(result)
    elif action == "count":
        for phase, count in result.items():
            click.echo(f"{phase:<12} {count}")
    else:
        for row in result:
            click.echo(f"{row['session_id']}  v{row['store_version']:<6} {row['phase']:<12} "
                       f"{row.get('active') or ''}")
    return status
