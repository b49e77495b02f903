"""Coverage-guided fuzzing of one decoder with atheris (libFuzzer):

    python -m tests.fuzz.run TARGET [libFuzzer flags] [CORPUS_DIR ...]

`TARGET` is a name from `tests.fuzz.targets.TARGETS`, or `all`: every target in one run,
the first byte of each input choosing which (`all_targets`; the CI smoke test uses it).
Flags and directories go to libFuzzer unchanged. New inputs are written to the first
directory: give a scratch directory first and the committed seeds
(`tests/fuzz/corpus/TARGET`) after it. Any exception escaping the target is reported with
its traceback and a reproducer file, and the run stops with a non-zero status;
`-timeout=N` makes an input that runs longer than N seconds a failure (a hang).
`docs/fuzzing.md` gives the long-run command and its results.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    """Run libFuzzer on the target named by `argv[1]`."""
    import atheris  # only the long run and the smoke test need it

    if len(argv) < 2 or argv[1].startswith("-"):
        sys.exit("usage: python -m tests.fuzz.run TARGET [libFuzzer flags] [CORPUS_DIR ...]")
    # Coverage is collected from the library's own code only: that is what is under test.
    with atheris.instrument_imports(include=["jumpvpn_core"]):
        from tests.fuzz.targets import TARGETS, all_targets
    name = argv[1]
    if name != "all" and name not in TARGETS:
        sys.exit(f"unknown target {name!r}; targets: all, {', '.join(TARGETS)}")
    atheris.Setup([argv[0], *argv[2:]], all_targets if name == "all" else TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
