"""`jumpvpn scenarios`: replay every risk-model scenario script and print the table.

Exit status: 0 when every script matches, 1 on any mismatch, failed command or invariant
violation, 2 on a usage error (missing directory, no scripts).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from jumpvpn_core.scenarios.runner import ScriptResult, run_script_file
from jumpvpn_core.scenarios.script import ScriptError

__all__ = ["register", "run"]

DEFAULT_DIR = "specs/scenarios"
DEFAULT_TRACE = "scenarios-trace.jsonl"
_HEADINGS = ("section", "expected reaction", "observed", "ok")


def register(subparsers: Any) -> None:
    """Add the `scenarios` subcommand."""
    parser = subparsers.add_parser(
        "scenarios",
        help="replay every risk-model scenario script and print the table",
        description="Replay every scenario script (*.txt, in name order), print a table of "
        "seed section, expected reaction, observed reaction and verdict, and write the "
        "JSONL audit trace.",
    )
    parser.add_argument("--dir", default=DEFAULT_DIR,
                        help=f"directory of scenario scripts (default: {DEFAULT_DIR})")
    parser.add_argument("--trace", default=DEFAULT_TRACE,
                        help=f"where to write the JSONL audit trace (default: {DEFAULT_TRACE})")
    parser.add_argument("--rewrite", action="store_true",
                        help="replace every expected block with the actual output")
    parser.set_defaults(handler=run)


def _table(rows: list[tuple[str, str, str, str]]) -> str:
    widths = [max(len(row[i]) for row in [_HEADINGS, *rows]) for i in range(len(_HEADINGS))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))

    out = [line(_HEADINGS), line(tuple("-" * w for w in widths))]
    out.extend(line(row) for row in rows)
    return "\n".join(out).rstrip() + "\n"


def run(args: argparse.Namespace) -> int:
    """Handler of `jumpvpn scenarios`."""
    directory = Path(args.dir)
    if not directory.is_dir():
        print(f"jumpvpn scenarios: error: script directory {str(directory)!r} does not exist "
              "(run from the repository root or pass --dir)", file=sys.stderr)
        return 2
    paths = sorted(directory.glob("*.txt"))
    if not paths:
        print(f"jumpvpn scenarios: error: no *.txt scripts in {str(directory)!r}",
              file=sys.stderr)
        return 2
    rows: list[tuple[str, str, str, str]] = []
    trace_lines: list[str] = []
    failures: list[str] = []
    for path in paths:
        try:
            result: ScriptResult = run_script_file(path, rewrite=args.rewrite)
        except ScriptError as exc:
            failures.append(str(exc))
            rows.append(("?", path.name, "script could not be parsed", "FAIL"))
            continue
        rows.append((f"{result.section} {result.title}", result.expect, result.observed,
                     "ok" if result.ok else "FAIL"))
        trace_lines.extend(json.dumps(record, sort_keys=True) for record in result.records)
        if result.failure is not None:
            failures.append(result.failure)
    sys.stdout.write(_table(rows))
    Path(args.trace).write_text("".join(line + "\n" for line in trace_lines), encoding="utf-8")
    passed = sum(1 for row in rows if row[3] == "ok")
    print(f"{passed}/{len(rows)} scripts ok; audit trace: {args.trace} "
          f"({len(trace_lines)} records)")
    sys.stdout.flush()
    for failure in failures:
        print(failure, file=sys.stderr)
    return 0 if not failures else 1
