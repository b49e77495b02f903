"""`jumpvpn traceability`: print or write the requirement -> code -> tests matrix."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from jumpvpn_core.audit.traceability import build_report, render

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add `traceability`."""
    parser = subparsers.add_parser(
        "traceability", help="requirement -> code -> tests matrix (docs/traceability.md)")
    parser.add_argument("--root", type=Path, default=Path(),
                        help="project root holding specs/ and tests/ (default: .)")
    parser.add_argument("--write", type=Path, default=None, metavar="FILE",
                        help="write the matrix to FILE instead of printing it")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    if not (args.root / "specs" / "requirements.md").is_file():
        print(f"jumpvpn traceability: no specs/requirements.md under {args.root}",
              file=sys.stderr)
        return 2
    report = build_report(args.root)
    text = render(report)
    if args.write is not None:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text, encoding="utf-8")
        print(f"wrote {args.write}")
    else:
        print(text, end="")
    if not report.ok:
        print("traceability gaps: see the summary", file=sys.stderr)
        return 1
    return 0
