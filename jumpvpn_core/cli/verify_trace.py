"""`jumpvpn verify-trace FILE`: check a JSONL audit trace (exit 0 good, 1 bad, 2 usage)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from jumpvpn_core import jsonsafe
from jumpvpn_core.audit.trace import verify_trace_file
from jumpvpn_core.errors import JsonDecodeError, PolicyError
from jumpvpn_core.policy import Policy

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add `verify-trace`."""
    parser = subparsers.add_parser(
        "verify-trace", help="check a JSONL audit trace against the transition table and bounds")
    parser.add_argument("file", type=Path, help="the trace (one audit record per line)")
    parser.add_argument("--policy", type=Path, default=None,
                        help="JSON policy the traced sessions ran under (default: Policy())")
    parser.add_argument("--allow-partial", action="store_true",
                        help="accept streams that start mid-session instead of at BIRTH")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    policy = Policy()
    if args.policy is not None:
        try:
            policy = Policy.from_data(jsonsafe.loads(args.policy.read_bytes()), partial=True)
        except (OSError, JsonDecodeError, PolicyError) as exc:
            reason = exc if not isinstance(exc, OSError) else f"cannot read: {exc.strerror}"
            print(f"jumpvpn verify-trace: bad policy {args.policy}: {reason}", file=sys.stderr)
            return 2
    try:
        report = verify_trace_file(args.file, policy, allow_partial=args.allow_partial)
    except OSError as exc:
        print(f"jumpvpn verify-trace: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    if report.violation is not None:
        print(f"{args.file}:{report.violation}")
        return 1
    print(f"{args.file}: OK ({report.records} records, {report.streams} streams)")
    return 0
