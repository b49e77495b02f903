"""`jumpvpn conformance --cmd "<program>"`: fuzz a program against the reference over JSONL.

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

import shlex
import shutil
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
@click.option("--cmd", required=True,
              help='the program to test, e.g. "python -m jumpvpn_core.testing.stdio_reference"')
@click.option("--examples", type=int, default=50, show_default=True, help="examples to run")
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
@json_option
def command(cmd: str, examples: int, seed: int, steps: int, step_timeout_ms: int,
            replay: Path | None, counterexample_out: Path | None,
            counterexample_jsonl: Path | None, hypothesis_dir: Path | None,
            as_json: bool) -> int:
    """Handler of `jumpvpn conformance`."""
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
        from jumpvpn_core.testing.hypothesis_setup import use_hypothesis_dir
        from jumpvpn_core.testing.lockstep import WireError, replay_counterexample
        from jumpvpn_core.testing.stateful import run_conformance
        from jumpvpn_core.testing.stdio import ProgramStartError, StdioImplementation
    except ImportError as exc:
        raise CliError(f"the conformance kit needs hypothesis (pip install "
                       f"'jumpvpn-core[testing]'): {exc}") from None
    use_hypothesis_dir(hypothesis_dir)
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
            result = run_conformance(impl, examples=examples, seed=seed, steps=steps)
            failure, ran = result.failure, result.examples
    finally:
        impl.close()
    report: dict[str, Any] = {"program": cmd, "seed": seed, "examples": ran,
                              "conforms": failure is None}
    if failure is None:
        if as_json:
            emit_json(report)
        else:
            click.echo(f"CONFORMS: {argv[0]} matched the reference in {ran} example(s) "
                       f"(seed {seed})")
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
    return 1
