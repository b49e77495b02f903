"""Mutation testing of the core with mutmut, and the score computed from its output.

One command (from the project root, with the `test` extra installed):

    python -m tools.mutation --modules replay phases machine

It runs `mutmut run` on the chosen core modules (configuration: `[tool.mutmut]` in
`pyproject.toml`, with a fast test selection), reads `mutmut results --all true`, and
prints

    score = killed / all mutants of those modules

where every status other than `killed` (survived, timeout, suspicious, no tests, skipped,
segfault) counts as a survivor. Output it cannot parse, or a mutant left unchecked, is an
error (exit 2), never a guess. `--show` prints the diff of every survivor.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import attrs

__all__ = ["MutationOutputError", "MutationScore", "main", "parse_results", "score"]

DEFAULT_MODULES = ("replay", "phases", "machine")
KNOWN_STATUSES = frozenset({
    "killed", "survived", "timeout", "suspicious", "no tests", "skipped", "segfault",
    "caught by type check", "not checked", "check was interrupted by user",
})
_LINE = re.compile(r"^\s*(?P<name>[\w.]+__mutmut_\d+): (?P<status>[a-z ]+)$")


class MutationOutputError(RuntimeError):
    """mutmut said something this tool does not understand: fail instead of guessing."""


@attrs.frozen
class MutationScore:
    """Counts by status, and the score."""

    statuses: dict[str, int]
    survivors: tuple[str, ...]

    @property
    def total(self) -> int:
        """All mutants considered."""
        return sum(self.statuses.values())

    @property
    def killed(self) -> int:
        """Mutants some test failed on."""
        return self.statuses.get("killed", 0)

    @property
    def value(self) -> float:
        """killed / total (0.0 when there is nothing to score)."""
        return self.killed / self.total if self.total else 0.0


def parse_results(text: str) -> dict[str, str]:
    """`mutmut results --all true` output -> {mutant name: status}. Strict."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LINE.match(line)
        if match is None:
            raise MutationOutputError(f"cannot parse mutmut output line {number}: {line!r}")
        status = match.group("status")
        if status not in KNOWN_STATUSES:
            raise MutationOutputError(f"unknown mutant status {status!r} on line {number}")
        out[match.group("name")] = status
    return out


def score(results: dict[str, str], modules: Sequence[str]) -> MutationScore:
    """Score the mutants of `modules` (short names: `replay`, `machine`, ...)."""
    prefixes = tuple(f"jumpvpn_core.{m}." for m in modules)
    chosen = {name: status for name, status in results.items() if name.startswith(prefixes)}
    if not chosen:
        raise MutationOutputError(f"no mutants found for modules {list(modules)}")
    unchecked = sorted(n for n, s in chosen.items()
                       if s in ("not checked", "check was interrupted by user"))
    if unchecked:
        raise MutationOutputError(f"{len(unchecked)} mutants were not checked (run "
                                  f"incomplete), e.g. {unchecked[0]}")
    survivors = tuple(sorted(n for n, s in chosen.items() if s != "killed"))
    return MutationScore(dict(sorted(Counter(chosen.values()).items())), survivors)


def _mutmut(*args: str) -> str:
    exe = Path(sys.executable).with_name("mutmut")
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise MutationOutputError(f"mutmut {' '.join(args)} exited {done.returncode}:\n"
                                  f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def main(argv: Sequence[str] | None = None) -> int:
    """Run mutmut on the chosen modules and print the score; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m tools.mutation")
    parser.add_argument("--modules", nargs="+", default=list(DEFAULT_MODULES),
                        help="core modules to mutate (default: replay phases machine)")
    parser.add_argument("--max-children", type=int, default=2, help="parallel workers")
    parser.add_argument("--no-run", action="store_true",
                        help="only score the results of a previous run")
    parser.add_argument("--show", action="store_true", help="print each survivor's diff")
    args = parser.parse_args(argv)
    try:
        if not args.no_run:
            patterns = [f"jumpvpn_core.{m}.*" for m in args.modules]
            _mutmut("run", "--max-children", str(args.max_children), *patterns)
        result = score(parse_results(_mutmut("results", "--all", "true")), args.modules)
    except MutationOutputError as exc:
        print(f"mutation: {exc}", file=sys.stderr)
        return 2
    print(f"modules: {' '.join(args.modules)}")
    print(f"statuses: {result.statuses}")
    print(f"score: {result.killed}/{result.total} = {result.value:.1%}")
    for name in result.survivors:
        print(f"survivor: {name}")
        if args.show:
            print(_mutmut("show", name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
