"""`jumpvpn lab`: run the namespace lab's cases (root only; see docs/lab.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the `lab` subcommand."""
    parser = subparsers.add_parser(
        "lab", help="run the real-networking lab (namespaces, NAT, attacker, WireGuard)",
        description="Runs risk-model cases over real kernel networking in network "
        "namespaces it creates and removes. Needs root.")
    parser.add_argument("--case", action="append", default=[], metavar="NAME",
                        help="a case to run (repeatable); see --list")
    parser.add_argument("--all", action="store_true", help="run every case")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--cleanup", action="store_true",
                        help="remove every leftover lab namespace and exit")
    parser.add_argument("--wg-runs", type=int, default=5, metavar="N",
                        help="WireGuard transfers to measure (default 5)")
    parser.add_argument("--wg-mb", type=int, default=50, metavar="MB",
                        help="megabytes per WireGuard transfer (default 50)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from jumpvpn_core.lab import CASE_NAMES
    from jumpvpn_core.lab.control import install_exit_guards
    from jumpvpn_core.lab.net import cleanup, lab_available
    from jumpvpn_core.lab.run import format_table, run_cases

    if args.list:
        print("\n".join(CASE_NAMES))
        return 0
    problem = lab_available()
    if problem is not None:
        print(f"jumpvpn lab: error: {problem}", file=sys.stderr)
        return 2
    if args.cleanup:
        removed = cleanup()
        print(f"removed {len(removed)} lab namespaces")
        return 0
    names = list(CASE_NAMES) if args.all else args.case
    unknown = [n for n in names if n not in CASE_NAMES]
    if unknown or not names or args.wg_runs < 1 or args.wg_mb < 1:
        what = f"unknown case {unknown[0]!r}" if unknown else (
            "give --case NAME or --all" if not names else "--wg-runs and --wg-mb must be >= 1")
        print(f"jumpvpn lab: error: {what}", file=sys.stderr)
        return 2
    install_exit_guards()

    def progress(result: Any) -> None:
        verdict = "PASS" if result.passed else "FAIL"
        print(f"lab: {result.name}: {verdict} ({result.seconds:.1f}s) {result.detail}",
              file=sys.stderr, flush=True)

    try:
        results = asyncio.run(run_cases(names, progress, wg_runs=args.wg_runs,
                                        wg_megabytes=args.wg_mb))
    except KeyboardInterrupt:
        cleanup()
        print("jumpvpn lab: interrupted; lab namespaces removed", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps([r.to_data() for r in results], indent=2, sort_keys=True))
    else:
        print(format_table(results))
    return 0 if all(r.passed for r in results) else 1
