"""`jumpvpn verify-trace FILE`: check a JSONL audit trace (exit 0 good, 1 bad, 2 usage)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from jumpvpn_core.audit.trace import describe, verify_trace_file
from jumpvpn_core.audit.trace_writer import TraceKeyError, key_option
from jumpvpn_core.errors import PolicyError
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
    parser.add_argument("--key", default=None, metavar="FILE|HEX",
                        help="the writer's trace key: check every checkpoint's MAC")
    parser.add_argument("--unchained", action="store_true",
                        help="a bare record log (trace format 1): check the records only")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    policy = Policy()
    if args.policy is not None:
        try:
            policy = Policy.from_data(json.loads(args.policy.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            reason = exc if isinstance(exc, PolicyError) else f"cannot read: {exc}"
            print(f"jumpvpn verify-trace: bad policy {args.policy}: {reason}", file=sys.stderr)
            return 2
    try:
        key = key_option(args.key)
    except TraceKeyError as exc:
        print(f"jumpvpn verify-trace: bad --key: {exc}", file=sys.stderr)
        return 2
    if key is not None and args.unchained:
        print("jumpvpn verify-trace: --key needs a framed trace, not --unchained",
              file=sys.stderr)
        return 2
    try:
        report = verify_trace_file(args.file, policy, allow_partial=args.allow_partial,
                                   chained=not args.unchained, key=key)
    except OSError as exc:
        print(f"jumpvpn verify-trace: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    if report.violation is not None:
        print(f"{args.file}:{report.violation}")
        return 1
    print(f"{args.file}: {describe(report)}")
    return 0
