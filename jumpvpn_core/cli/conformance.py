"""`jumpvpn conformance --cmd "<program>"`: fuzz a program against the reference over JSONL.

Every run prints its coverage (after a failure on stderr): the distinct (role, phase,
event, reason) triples the reference went through and the boundaries the fuzzer landed on
(the full lists are in `--json`). `--budget` bounds a run: `EXAMPLESxSTEPS` (reproducible
from the seed; the default is 400x30) or `SECONDSs` (wall clock: as many examples as fit,
not reproducible).
`--catalogue` runs the broken-implementation catalogue in-process instead and prints how
often each one is caught over `--seeds` seeds at the budget.

Exit status: 0 the program conforms, 1 a mismatch or protocol failure (the first diverging
step and a replayable counterexample are printed, as a scenario script and as conformance
requests), 2 a usage error, including a program that cannot start (it cannot be executed,
or it exits before answering `hello`). `--counterexample-out FILE` also writes the
scenario script to FILE (`jumpvpn scenarios --cmd "<program>" FILE` replays it);
`--counterexample-jsonl FILE` writes the JSONL requests that `--replay FILE` reads.
Hypothesis keeps its files under `--hypothesis-dir` (default: `$JUMPVPN_HYPOTHESIS_DIR`, else
a per-user cache directory; never `.hypothesis/` in the working directory).
"""

from __future__ import annotations

import re
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

import click

from jumpvpn_core.cli._common import (
    CliError,
    check_output_file,
    emit_json,
    json_option,
    verb,
)
from jumpvpn_core.subject import ProtocolError

__all__ = ["command"]


@verb("conformance", "Fuzz an implementation (any language, JSONL on stdio) against the "
      "reference.\n\nDrives a program speaking the conformance protocol "
      "(specs/conformance-protocol.md) side by side with the reference.")
@click.option("--cmd", default=None,
              help='the program to test, e.g. "python -m jumpvpn_core.testing.stdio_reference"'
              " (required unless --catalogue)")
# 400 and 30: `DEFAULT_EXAMPLES` and `DEFAULT_STEPS` of jumpvpn_core.testing.stateful (not
# imported here: the kit needs hypothesis, the rest of the command does not).
@click.option("--examples", type=int, default=400, show_default=True, help="examples to run")
@click.option("--seed", type=int, default=0, show_default=True, help="random seed")
@click.option("--steps", type=int, default=30, show_default=True, help="steps per example")
@click.option("--step-timeout-ms", type=int, default=2_000, show_default=True,
              help="per-step timeout; the program is killed after it")
@click.option("--replay", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="replay a printed counterexample instead of fuzzing")
@click.option("--counterexample-out", type=click.Path(path_type=Path), default=None,
              metavar="FILE", help="on failure, write the counterexample as a scenario script "
              "to FILE (replay it with jumpvpn scenarios --cmd ... FILE)")
@click.option("--counterexample-jsonl", type=click.Path(path_type=Path), default=None,
              metavar="FILE", help="on failure, write the counterexample as JSONL "
              "conformance requests to FILE (replay it with --replay FILE)")
@click.option("--hypothesis-dir", type=click.Path(path_type=Path), default=None,
              metavar="DIR", help="where Hypothesis keeps its files (default: "
              "$JUMPVPN_HYPOTHESIS_DIR, else ~/.cache/jumpvpn-core/hypothesis)")
@click.option("--budget", default=None, metavar="EXAMPLESxSTEPS|SECONDSs",
              help="bound of one run: e.g. 50x30 (examples x steps, reproducible; overrides "
              "--examples and --steps) or 20s (wall clock, as many examples as fit)")
@click.option("--catalogue", is_flag=True, help="run the broken-implementation catalogue "
              "in-process and print how often each is caught (no --cmd)")
@click.option("--seeds", type=int, default=20, show_default=True,
              help="with --catalogue: seeds 0..N-1 per implementation")
@click.option("--only", multiple=True, metavar="NAME",
              help="with --catalogue: only this implementation (repeatable)")
@json_option
def command(cmd: str | None, examples: int, seed: int, steps: int, step_timeout_ms: int,
            replay: Path | None, counterexample_out: Path | None,
            counterexample_jsonl: Path | None, hypothesis_dir: Path | None,
            budget: str | None, catalogue: bool, seeds: int, only: tuple[str, ...],
            as_json: bool) -> int:
    """Handler of `jumpvpn conformance`."""
    seconds: float | None = None
    if budget is not None:
        examples, steps, seconds = _parse_budget(budget, steps)
    if catalogue:
        if cmd is not None or replay is not None:
            raise CliError("--catalogue runs in-process: no --cmd or --replay")
        _use_hypothesis_dir(hypothesis_dir)
        return _catalogue(seeds, examples, steps, only, as_json)
    if cmd is None:
        raise CliError("Missing option '--cmd' (or give --catalogue)")
    try:
        argv = shlex.split(cmd)
    except ValueError as exc:
        raise CliError(f"--cmd cannot be parsed: {exc}") from None
    if not argv:
        raise CliError("--cmd is empty")
    if shutil.which(argv[0]) is None:
        raise CliError(f"--cmd program {argv[0]!r} not found")
    if examples < 1 or steps < 1 or step_timeout_ms < 1:
        raise CliError("--examples, --steps and --step-timeout-ms must be positive")
    replay_text = None
    if replay is not None:
        try:
            replay_text = replay.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read {replay}: {exc}") from None
    if counterexample_out is not None:
        check_output_file(counterexample_out, "--counterexample-out")
    if counterexample_jsonl is not None:
        check_output_file(counterexample_jsonl, "--counterexample-jsonl")
    if counterexample_out is not None and counterexample_out == counterexample_jsonl:
        raise CliError("--counterexample-out and --counterexample-jsonl name the same file")
    try:
        from jumpvpn_core.testing.counterexample import counterexample_script
        from jumpvpn_core.testing.lockstep import WireError, replay_counterexample
        from jumpvpn_core.testing.stateful import run_conformance
        from jumpvpn_core.testing.stdio import ProgramStartError, StdioImplementation
    except ImportError as exc:
        raise CliError(f"the conformance kit needs hypothesis (pip install "
                       f"'jumpvpn-core[testing]'): {exc}") from None
    _use_hypothesis_dir(hypothesis_dir)
    impl = StdioImplementation(argv, step_timeout_ms)
    try:
        impl.start()
    except ProgramStartError as exc:
        impl.close()
        raise CliError(f"the program under test cannot start: {exc}") from None
    except ProtocolError:
        # It runs but answers hello wrongly: a verdict, reported at step 0 by a fresh run.
        impl.close()
        impl = StdioImplementation(argv, step_timeout_ms)
    try:
        if replay_text is not None:
            try:
                failure = replay_counterexample(impl, replay_text)
            except WireError as exc:
                raise CliError(f"{replay} is not a counterexample: {exc}") from None
            ran = 1
        else:
            result = run_conformance(impl, examples=examples, seed=seed, steps=steps,
                                     seconds=seconds)
            failure, ran, coverage = result.failure, result.examples, result.coverage
    finally:
        impl.close()
    report: dict[str, Any] = {"program": cmd, "seed": seed, "examples": ran,
                              "conforms": failure is None}
    if replay_text is None:
        report["coverage"] = coverage.to_data()
    if failure is None:
        if as_json:
            emit_json(report)
        else:
            click.echo(f"CONFORMS: {argv[0]} matched the reference in {ran} example(s) "
                       f"(seed {seed})")
            if replay_text is None:
                click.echo(coverage.summary())
        return 0
    replay_cmd = f"jumpvpn scenarios --cmd {shlex.quote(cmd)} FILE"
    script = (counterexample_script(failure, implementation=cmd, reproduce=[replay_cmd])
              if failure.counterexample else None)
    if script is not None and counterexample_out is not None:
        counterexample_out.write_text(script, encoding="utf-8")
    jsonl_written = counterexample_jsonl is not None and bool(failure.counterexample)
    if jsonl_written and counterexample_jsonl is not None:
        counterexample_jsonl.write_text(failure.counterexample + "\n", encoding="utf-8")
    report.update(failure=failure.headline(), step=failure.step,
                  counterexample=failure.counterexample or None, script=script,
                  script_written_to=None if counterexample_out is None or script is None
                  else str(counterexample_out),
                  jsonl_written_to=str(counterexample_jsonl) if jsonl_written else None)
    if as_json:
        emit_json(report)
        return 1
    click.echo(failure.headline())
    if script is not None:
        if jsonl_written:
            click.echo(f"counterexample ({failure.step + 1} request(s)), written to "
                       f"{counterexample_jsonl}; replay with --replay {counterexample_jsonl}:")
        else:
            click.echo(f"counterexample ({failure.step + 1} request(s)); save it and replay "
                       "with --replay FILE (or give --counterexample-jsonl FILE):")
        click.echo(failure.counterexample)
        click.echo()
        if counterexample_out is not None:
            click.echo(f"counterexample as a scenario script, written to {counterexample_out}:")
        else:
            click.echo(f"counterexample as a scenario script (save it; replay with "
                       f"{replay_cmd}):")
        click.echo(script, nl=False)
    if replay_text is None:
        # On stderr: stdout holds the counterexample and the script, to be saved as they are.
        click.echo(coverage.summary(), err=True)
    return 1


def _use_hypothesis_dir(directory: Path | None) -> None:
    """Point Hypothesis's files at `directory` (or the kit's default cache directory)."""
    try:
        from jumpvpn_core.testing.hypothesis_setup import use_hypothesis_dir
    except ImportError as exc:
        raise CliError(f"the conformance kit needs hypothesis (pip install "
                       f"'jumpvpn-core[testing]'): {exc}") from None
    use_hypothesis_dir(directory)


_BUDGET = re.compile(r"(?:(\d+)x(\d+)|(\d+(?:\.\d+)?)s)")


def _parse_budget(text: str, steps: int) -> tuple[int, int, float | None]:
    """`EXAMPLESxSTEPS` -> (examples, steps, None); `SECONDSs` -> (a million, steps, s)."""
    match = _BUDGET.fullmatch(text.strip())
    if match is None:
        raise CliError(f"--budget must look like 50x30 or 20s, got {text!r}")
    if match.group(3) is not None:
        seconds = float(match.group(3))
        if seconds <= 0:
            raise CliError("--budget seconds must be positive")
        return 1_000_000, steps, seconds
    examples, per = int(match.group(1)), int(match.group(2))
    if examples < 1 or per < 1:
        raise CliError("--budget examples and steps must be positive")
    return examples, per, None


def _catalogue(seeds: int, examples: int, steps: int, only: tuple[str, ...],
               as_json: bool) -> int:
    if seeds < 1 or examples < 1 or steps < 1:
        raise CliError("--seeds, --examples and --steps must be positive")
    try:
        from jumpvpn_core.testing.broken import CATALOGUE
        from jumpvpn_core.testing.broken.catalogue import (
            TABLE_HEADER,
            CatalogueRow,
            format_row,
            run_catalogue,
        )
    except ImportError as exc:
        raise CliError(f"the conformance kit needs hypothesis (pip install "
                       f"'jumpvpn-core[testing]'): {exc}") from None
    unknown = sorted(set(only) - set(CATALOGUE))
    if unknown:
        raise CliError(f"--only: unknown implementation(s) {unknown}; known: "
                       f"{sorted(CATALOGUE)}")
    def progress(row: CatalogueRow) -> None:
        click.echo(format_row(row))

    if not as_json:
        click.echo(f"catalogue: {len(only) or len(CATALOGUE)} implementation(s), seeds "
                   f"0..{seeds - 1}, budget {examples}x{steps} each")
        click.echo(TABLE_HEADER)
    started = time.monotonic()
    rows = run_catalogue(range(seeds), examples=examples, steps=steps,
                         names=list(only) or None, progress=None if as_json else progress)
    elapsed = time.monotonic() - started
    if as_json:
        emit_json({"examples": examples, "steps": steps, "seeds": seeds,
                   "rows": [{"implementation": r.name, "planted": r.planted,
                             "caught": r.caught, "seeds": r.seeds,
                             "median_examples": r.median_examples,
                             "median_steps": r.median_steps,
                             "seconds": round(r.seconds, 3)} for r in rows],
                   "seconds": round(elapsed, 3)})
    else:
        caught = sum(r.caught for r in rows)
        click.echo(f"caught in {caught}/{seeds * len(rows)} runs; "
                   f"{sum(r.rate >= 0.95 for r in rows)}/{len(rows)} implementation(s) "
                   f"caught in >= 95% of seeds; {elapsed:.1f} s")
    return 0
