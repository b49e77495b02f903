"""The `jumpvpn` command. Each subcommand lives in its own module of this package.

A subcommand module exposes `register(subparsers)`, which adds its parser and sets
`handler` (a function taking the parsed namespace and returning the exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

# One line per subcommand module, in the order `jumpvpn --help` lists them.
_SUBCOMMAND_MODULES: tuple[str, ...] = (
    "scenarios",
    "demo",
    "conformance",
    "vectors",
    "verify_trace",
    "explore",
    "traceability",
    "simulate",
    "lab",
    "sessions",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="jumpvpn",
        description="jumpvpn-core: the session is the anchor, the transport is volatile.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        module = importlib.import_module(f"jumpvpn_core.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `jumpvpn` console script. Returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    status: int = handler(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
