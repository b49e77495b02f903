"""`jumpvpn conformance --cmd "<program>"`: fuzz a program against the reference over JSONL.

Exit status: 0 the program conforms, 1 a mismatch or protocol failure (the first diverging
step and a replayable counterexample are printed, as a scenario script and as conformance
requests), 2 a usage error. `--counterexample-out FILE` also writes the scenario script to
FILE; `jumpvpn scenarios --cmd "<program>" FILE` then replays the failure.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the `conformance` subcommand."""
    parser = subparsers.add_parser(
        "conformance",
        help="fuzz an implementation (any language, JSONL on stdio) against the reference",
        description="Drive a program speaking the conformance protocol "
                    "(specs/conformance-protocol.md) side by side with the reference.",
    )
    parser.add_argument("--cmd", required=True,
                        help='the program to test, e.g. "python -m '
                             'jumpvpn_core.testing.stdio_reference"')
    parser.add_argument("--examples", type=int, default=50, help="examples to run (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--steps", type=int, default=30,
                        help="steps per example (default 30)")
    parser.add_argument("--step-timeout-ms", type=int, default=2_000,
                        help="per-step timeout; the program is killed after it (default 2000)")
    parser.add_argument("--replay", type=Path, default=None, metavar="FILE",
                        help="replay a printed counterexample instead of fuzzing")
    parser.add_argument("--counterexample-out", type=Path, default=None, metavar="FILE",
                        help="on failure, write the counterexample as a scenario script "
                             "to FILE (replay it with jumpvpn scenarios --cmd ... FILE)")
    parser.set_defaults(handler=_run)


def _usage(message: str) -> int:
    print(f"jumpvpn conformance: {message}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace) -> int:
    try:
        argv = shlex.split(args.cmd)
    except ValueError as exc:
        return _usage(f"--cmd cannot be parsed: {exc}")
    if not argv:
        return _usage("--cmd is empty")
    if shutil.which(argv[0]) is None:
        return _usage(f"--cmd program {argv[0]!r} not found")
    if args.examples < 1 or args.steps < 1 or args.step_timeout_ms < 1:
        return _usage("--examples, --steps and --step-timeout-ms must be positive")
    try:
        from jumpvpn_core.testing.counterexample import counterexample_script
        from jumpvpn_core.testing.lockstep import WireError, replay_counterexample
        from jumpvpn_core.testing.stateful import run_conformance
        from jumpvpn_core.testing.stdio import StdioImplementation
    except ImportError as exc:
        return _usage(f"the conformance kit needs hypothesis (pip install "
                      f"'jumpvpn-core[testing]'): {exc}")
    impl = StdioImplementation(argv, args.step_timeout_ms)
    try:
        if args.replay is not None:
            try:
                text = args.replay.read_text(encoding="utf-8")
            except OSError as exc:
                return _usage(f"cannot read {args.replay}: {exc}")
            try:
                failure = replay_counterexample(impl, text)
            except WireError as exc:
                return _usage(f"{args.replay} is not a counterexample: {exc}")
            examples = 1
        else:
            result = run_conformance(impl, examples=args.examples, seed=args.seed,
                                     steps=args.steps)
            failure, examples = result.failure, result.examples
    finally:
        impl.close()
    if failure is None:
        print(f"CONFORMS: {argv[0]} matched the reference in {examples} example(s) "
              f"(seed {args.seed})")
        return 0
    print(failure.headline())
    if failure.counterexample:
        print(f"counterexample ({failure.step + 1} request(s)); save it and replay with "
              f"--replay FILE:")
        print(failure.counterexample)
        replay = f"jumpvpn scenarios --cmd {shlex.quote(args.cmd)} FILE"
        script = counterexample_script(failure, implementation=args.cmd, reproduce=[replay])
        print()
        if args.counterexample_out is not None:
            try:
                args.counterexample_out.write_text(script, encoding="utf-8")
            except OSError as exc:
                print(f"jumpvpn conformance: cannot write {args.counterexample_out}: {exc}",
                      file=sys.stderr)
                return 1
            print(f"counterexample as a scenario script, written to "
                  f"{args.counterexample_out}:")
        else:
            print("counterexample as a scenario script (save it; replay with "
                  f"{replay}):")
        sys.stdout.write(script)
    return 1
