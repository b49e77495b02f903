"""`jumpvpn scenarios`: replay every risk-model scenario script and print the table.

Exit status: 0 when every script matches, 1 on any mismatch, failed command or invariant
violation, 2 on a usage error (missing directory, no scripts).

`jumpvpn scenarios [--impl package.module:factory | --cmd "<program>"] [--role ROLE]
FILE...` replays the given scripts (default: every script in `--dir`) with an
implementation under test playing one role instead of the reference
(`jumpvpn_core.scenarios.standin`, built by `jumpvpn_core.testing.implementation`; needs
the conformance kit).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from jumpvpn_core.phases import Role
from jumpvpn_core.scenarios.runner import ScriptResult, run_script_file
from jumpvpn_core.scenarios.script import ScriptError, parse_script
from jumpvpn_core.scenarios.standin import RoleStandIn

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
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE",
                        help="scripts to replay (default: every *.txt in --dir)")
    under_test = parser.add_mutually_exclusive_group()
    under_test.add_argument("--impl", default=None, metavar="package.module:factory",
                            help="play one role with this in-process implementation")
    under_test.add_argument("--cmd", default=None, metavar="PROGRAM",
                            help="play one role with this program (conformance protocol "
                                 "on stdio)")
    parser.add_argument("--role", choices=[r.value for r in Role], default=None,
                        help="the role --impl/--cmd plays (default: the only role the "
                             "script's step and tick commands name)")
    parser.add_argument("--step-timeout-ms", type=int, default=2_000,
                        help="per-step timeout for --cmd (default 2000)")
    parser.set_defaults(handler=run)


def _script_role(path: Path) -> Role | None:
    """The one role a script's `step`/`tick` commands name, or None if not exactly one."""
    try:
        script = parse_script(path.read_text(encoding="utf-8"), str(path))
    except (OSError, ScriptError):
        return None
    named = {case.command.split()[1] for case in script.cases
             if case.command.split()[0] in ("step", "tick") and len(case.command.split()) > 1}
    if len(named) != 1:
        return None
    try:
        return Role(named.pop())
    except ValueError:
        return None


def _stand_in(args: argparse.Namespace, path: Path) -> RoleStandIn | str:
    """A fresh stand-in for one script, or a usage error message."""
    role = Role(args.role) if args.role is not None else _script_role(path)
    if role is None:
        return (f"{path}: cannot tell which role --impl/--cmd plays (the script steps "
                "both roles, or none); give --role client|server")
    try:
        from jumpvpn_core.testing.implementation import implementation_role
    except ImportError as exc:
        return (f"--impl/--cmd need the conformance kit (pip install "
                f"'jumpvpn-core[testing]'): {exc}")
    try:
        return implementation_role(role, impl=args.impl, cmd=args.cmd,
                                   step_timeout_ms=args.step_timeout_ms)
    except ValueError as exc:
        return str(exc)


def _table(rows: list[tuple[str, str, str, str]]) -> str:
    widths = [max(len(row[i]) for row in [_HEADINGS, *rows]) for i in range(len(_HEADINGS))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))

    out = [line(_HEADINGS), line(tuple("-" * w for w in widths))]
    out.extend(line(row) for row in rows)
    return "\n".join(out).rstrip() + "\n"


def run(args: argparse.Namespace) -> int:
    """Handler of `jumpvpn scenarios`."""
    under_test = args.impl is not None or args.cmd is not None
    if under_test and args.rewrite:
        print("jumpvpn scenarios: error: --rewrite takes the reference's output; it cannot "
              "be combined with --impl or --cmd", file=sys.stderr)
        return 2
    if args.step_timeout_ms < 1:
        print("jumpvpn scenarios: error: --step-timeout-ms must be positive", file=sys.stderr)
        return 2
    if args.files:
        paths = list(args.files)
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            print(f"jumpvpn scenarios: error: no such script(s): {', '.join(missing)}",
                  file=sys.stderr)
            return 2
    else:
        directory = Path(args.dir)
        if not directory.is_dir():
            print(f"jumpvpn scenarios: error: script directory {str(directory)!r} does not "
                  "exist (run from the repository root or pass --dir)", file=sys.stderr)
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
        stand_in: RoleStandIn | None = None
        if under_test:
            made = _stand_in(args, path)
            if isinstance(made, str):
                print(f"jumpvpn scenarios: error: {made}", file=sys.stderr)
                return 2
            stand_in = made
        try:
            result: ScriptResult = run_script_file(path, rewrite=args.rewrite,
                                                   stand_in=stand_in)
        except ScriptError as exc:
            failures.append(str(exc))
            rows.append(("?", path.name, "script could not be parsed", "FAIL"))
            continue
        finally:
            if stand_in is not None:
                stand_in.close()
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
