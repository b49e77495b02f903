"""`jumpvpn sessions --store URL [list|show SID|count] [--json]`: inspect a session store.

Read-only; never prints a secret. Exit status: 0 done, 1 session not found, 2 usage or a
store that cannot be opened or read. The views are `jumpvpn_core.gateway.inspect`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from jumpvpn_core.gateway.inspect import count_by_phase, list_sessions, show_session
from jumpvpn_core.stores import StoreError, open_store

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add `sessions`."""
    parser = subparsers.add_parser(
        "sessions", help="list, show or count the sessions in a store (read-only)")
    parser.add_argument("--store", required=True,
                        help="store URL: memory://, sqlite:///f.db, redis://, postgresql://, "
                             "etcd://")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--timeout", type=float, default=5.0, help="store timeout, seconds")
    parser.add_argument("--limit", type=int, default=None, help="list at most N sessions")
    parser.add_argument("action", nargs="?", default="list", choices=("list", "show", "count"))
    parser.add_argument("session_id", nargs="?", default=None, help="hex id (for show)")
    parser.set_defaults(handler=_handle)


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


def _handle(args: argparse.Namespace) -> int:
    status, result = run(args.store, args.action, args.session_id, timeout_s=args.timeout,
                         limit=args.limit)
    if isinstance(result, str):
        print(f"jumpvpn sessions: {result}", file=sys.stderr)
        return status
    if args.json:
        print(json.dumps(result, sort_keys=True, indent=2))
    elif args.action == "count":
        for phase, count in result.items():
            print(f"{phase:<12} {count}")
    elif args.action == "show":
        print(json.dumps(result, sort_keys=True, indent=2))
    else:
        for row in result:
            print(f"{row['session_id']}  v{row['store_version']:<6} {row['phase']:<12} "
                  f"{row.get('active') or ''}")
    return status
