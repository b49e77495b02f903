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

Suites. mutmut's configuration is global (`[tool.mutmut]`, the core's), and changing its
test selection makes mutmut re-run every mutant. Other parts of the library have a suite
of their own in `[tool.jumpvpn.mutation.<suite>]` (keys `only_mutate` and
`pytest_add_cli_args_test_selection`, replacing those of `[tool.mutmut]`):

    python -m tools.mutation --suite gateway --modules gateway.gateway stores.sqlite

runs mutmut in `.mutation/<suite>/`, a copy of the project whose `pyproject.toml` has the
suite's `[tool.mutmut]`, so each suite keeps its own `mutants/` and its own results, and
the core's selection and results are never touched.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "MutationOutputError",
    "MutationScore",
    "main",
    "parse_results",
    "prepare_suite",
    "score",
    "suite_pyproject",
]

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


#: Keys a suite may set; each replaces the key of the same name in `[tool.mutmut]`.
SUITE_KEYS = frozenset({"only_mutate", "pytest_add_cli_args_test_selection"})
#: Where suites run (git-ignored), relative to the project root.
SUITES_DIR = ".mutation"
_SECTION = re.compile(r"^\[tool\.mutmut\]\s*$")
_HEADER = re.compile(r"^\[")


def suite_pyproject(text: str, suite: str) -> str:
    """`pyproject.toml` text with `[tool.mutmut]` replaced by the suite's configuration.

    Everything else (pytest markers and options, the package) is kept as it is. An unknown
    suite, a key a suite may not set, or a file without a `[tool.mutmut]` section is a
    `MutationOutputError`.
    """
    data = tomllib.loads(text)
    base: dict[str, Any] = data.get("tool", {}).get("mutmut", {})
    suites: dict[str, Any] = data.get("tool", {}).get("jumpvpn", {}).get("mutation", {})
    if suite not in suites:
        raise MutationOutputError(f"no suite {suite!r} in [tool.jumpvpn.mutation] "
                                  f"(known: {sorted(suites)})")
    extra = set(suites[suite]) - SUITE_KEYS
    if extra:
        raise MutationOutputError(f"suite {suite!r} sets {sorted(extra)}; a suite may set "
                                  f"only {sorted(SUITE_KEYS)}")
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _SECTION.match(line)]
    if len(starts) != 1:
        raise MutationOutputError("pyproject.toml needs exactly one [tool.mutmut] section")
    start = starts[0]
    end = next((i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])),
               len(lines))
    merged = {**base, **suites[suite]}
    # JSON strings, numbers and arrays of them are valid TOML values.
    section = [f"[tool.mutmut]  # suite {suite} (generated by tools/mutation.py)"]
    section += [f"{key} = {json.dumps(value)}" for key, value in merged.items()]
    return "\n".join([*lines[:start], *section, "", *lines[end:]]) + "\n"


def prepare_suite(root: Path, suite: str) -> Path:
    """Copy the project into `root/.mutation/<suite>` with the suite's configuration.

    The sources, tests and `also_copy` paths are copied afresh on every call (mutmut
    finds changed functions itself by hashing them); the suite's `mutants/` is kept, so
    results of earlier runs are reused.
    """
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    generated = suite_pyproject(text, suite)
    mutmut_conf: dict[str, Any] = tomllib.loads(generated)["tool"]["mutmut"]
    work = root / SUITES_DIR / suite
    work.mkdir(parents=True, exist_ok=True)
    names = {*mutmut_conf.get("source_paths", []), *mutmut_conf.get("also_copy", []), "tests"}
    for name in sorted(names):
        source = root / name
        target = work / name
        if target.is_dir():
            shutil.rmtree(target)
        if source.is_dir():
            shutil.copytree(source, target,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif source.is_file():
            shutil.copy2(source, target)
    (work / "pyproject.toml").write_text(generated, encoding="utf-8")
    return work


def _mutmut(*args: str, cwd: Path | None = None) -> str:
    exe = Path(sys.executable).with_name("mutmut")
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, check=False,  # noqa: S603
                          cwd=cwd)
    if done.returncode != 0:
        raise MutationOutputError(f"mutmut {' '.join(args)} exited {done.returncode}:\n"
                                  f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def main(argv: Sequence[str] | None = None) -> int:
    """Run mutmut on the chosen modules and print the score; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m tools.mutation")
    parser.add_argument("--modules", nargs="+", default=list(DEFAULT_MODULES),
                        help="modules to mutate, dotted under jumpvpn_core (replay, "
                             "gateway.gateway, stores.sqlite; default: replay phases machine)")
    parser.add_argument("--max-children", type=int, default=2, help="parallel workers")
    parser.add_argument("--no-run", action="store_true",
                        help="only score the results of a previous run")
    parser.add_argument("--show", action="store_true", help="print each survivor's diff")
    parser.add_argument("--suite", default=None,
                        help="a suite of [tool.jumpvpn.mutation] (own modules and tests, "
                             "run in .mutation/SUITE); default: the core's [tool.mutmut]")
    args = parser.parse_args(argv)
    cwd: Path | None = None
    try:
        if args.suite is not None:
            root = Path.cwd()
            cwd = prepare_suite(root, args.suite) if not args.no_run else (
                root / SUITES_DIR / args.suite)
        if not args.no_run:
            patterns = [f"jumpvpn_core.{m}.*" for m in args.modules]
            _mutmut("run", "--max-children", str(args.max_children), *patterns, cwd=cwd)
        result = score(parse_results(_mutmut("results", "--all", "true", cwd=cwd)),
                       args.modules)
    except MutationOutputError as exc:
        print(f"mutation: {exc}", file=sys.stderr)
        return 2
    print(f"modules: {' '.join(args.modules)}")
    print(f"statuses: {result.statuses}")
    print(f"score: {result.killed}/{result.total} = {result.value:.1%}")
    for name in result.survivors:
        print(f"survivor: {name}")
        if args.show:
            print(_mutmut("show", name, cwd=cwd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
