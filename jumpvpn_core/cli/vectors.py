"""`jumpvpn vectors`: generate or check the golden vectors in `specs/vectors/`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from jumpvpn_core.audit.vectors import load_vectors, replay_vector, write_vectors

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add `vectors generate` and `vectors check`."""
    parser = subparsers.add_parser("vectors", help="golden (state, event) -> result vectors")
    sub = parser.add_subparsers(dest="vectors_command", metavar="ACTION", required=True)
    gen = sub.add_parser("generate", help="write the vectors from the reference core")
    gen.add_argument("--out", type=Path, default=Path("specs/vectors"),
                     help="output directory (default: specs/vectors)")
    gen.set_defaults(handler=_generate)
    check = sub.add_parser("check", help="replay vector files through step()")
    check.add_argument("files", type=Path, nargs="+", help=".jsonl vector files")
    check.set_defaults(handler=_check)


def _generate(args: argparse.Namespace) -> int:
    counts = write_vectors(args.out)
    for name, count in counts.items():
        print(f"{args.out / name}: {count} vectors")
    return 0


def _check(args: argparse.Namespace) -> int:
    failed = 0
    total = 0
    for path in args.files:
        if not path.is_file():
            print(f"no such file: {path}", file=sys.stderr)
            return 2
        for vector in load_vectors(path):
            total += 1
            problems = replay_vector(vector)
            if problems:
                failed += 1
                print(f"{path}: {vector.get('id')}: {'; '.join(problems)}")
    print(f"{total - failed}/{total} vectors match")
    return 1 if failed else 0
