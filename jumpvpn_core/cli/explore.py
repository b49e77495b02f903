"""`jumpvpn explore --depth N`: exhaustive bounded exploration of the real core."""

from __future__ import annotations

import argparse
from typing import Any

from jumpvpn_core.audit.explore import explore
from jumpvpn_core.phases import Role

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add `explore`."""
    parser = subparsers.add_parser(
        "explore", help="BFS over every event sequence up to a depth, checking every step")
    parser.add_argument("--depth", type=int, default=8, help="sequence length (default 8)")
    parser.add_argument("--role", choices=["client", "server", "both"], default="both",
                        help="which role to explore on its own (default both)")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    if args.depth < 0:
        print("jumpvpn explore: --depth must be >= 0")
        return 2
    roles = list(Role) if args.role == "both" else [Role(args.role)]
    status = 0
    for role in roles:
        result = explore(role, args.depth)
        print(result.summary())
        for violation in result.violations:
            print(f"  VIOLATION {violation}")
        if result.violations:
            status = 1
    return status
