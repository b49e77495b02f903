"""`jumpvpn scenarios`: replay every risk-model scenario script and print the table.

The scripts come from the installed package (`specs/scenarios/`, shipped as package data)
unless `--dir` or FILE arguments name others. Exit status: 0 when every script matches, 1 on
any mismatch, failed command or invariant violation, 2 on a usage error, 130 on Ctrl-C (the
trace of the scripts replayed so far is still written).

`jumpvpn scenarios [--impl package.module:factory | --cmd "<program>"] [--role ROLE]
FILE...` replays the given scripts with an implementation under test playing one role
instead of the reference (`jumpvpn_core.scenarios.standin`, built by
`jumpvpn_core.testing.implementation`; needs the conformance kit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from jumpvpn_core.audit.trace_writer import TraceKeyError, key_option, write_trace
from jumpvpn_core.cli._common import (
    CliError,
    ProgressLines,
    check_output_file,
    emit_json,
    fit_table,
    json_option,
    verb,
)
from jumpvpn_core.phases import Role
from jumpvpn_core.scenarios import ScriptError, ScriptResult, parse_script, run_script_file
from jumpvpn_core.scenarios.standin import RoleStandIn

__all__ = ["DEFAULT_TRACE", "command"]

DEFAULT_TRACE = "scenarios-trace.jsonl"


def _script_role(path: Path) -> Role | None:
    """The one role a script's `step`/`tick` commands name, or None if not exactly one."""
    try:
        script = parse_script(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError, ScriptError):
        return None
    named = {case.command.split()[1] for case in script.cases
             if case.command.split()[0] in ("step", "tick") and len(case.command.split()) > 1}
    if len(named) != 1:
        return None
    try:
        return Role(named.pop())
    except ValueError:
        return None


def _stand_in(path: Path, role_name: str | None, impl: str | None, cmd: str | None,
              step_timeout_ms: int) -> RoleStandIn:
    """A fresh stand-in for one script; `CliError` when it cannot be made."""
    role = Role(role_name) if role_name is not None else _script_role(path)
    if role is None:
        raise CliError(f"{path}: cannot tell which role --impl/--cmd plays (the script steps "
                       "both roles, or none); give --role client|server")
    try:
        from jumpvpn_core.testing.implementation import implementation_role
    except ImportError as exc:
        raise CliError(f"--impl/--cmd need the conformance kit (pip install "
                       f"'jumpvpn-core[testing]'): {exc}") from None
    try:
        return implementation_role(role, impl=impl, cmd=cmd, step_timeout_ms=step_timeout_ms)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _check_program_starts(cmd: str, step_timeout_ms: int) -> None:
    """`CliError` (exit 2) when the `--cmd` program cannot start: a usage error, not a
    verdict on the scripts."""
    try:
        from jumpvpn_core.testing.implementation import check_program_starts
        from jumpvpn_core.testing.stdio import ProgramStartError
    except ImportError as exc:
        raise CliError(f"--cmd needs the conformance kit (pip install "
                       f"'jumpvpn-core[testing]'): {exc}") from None
    try:
        check_program_starts(cmd, step_timeout_ms)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except ProgramStartError as exc:
        raise CliError(f"the program under test cannot start: {exc}") from None


def _script_paths(files: tuple[Path, ...], directory: Path | None) -> list[Path]:
    if files:
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise CliError(f"no such script(s): {', '.join(missing)}")
        return list(files)
    if directory is None:
        from jumpvpn_core.specs import SpecsNotFoundError, scenarios_dir

        try:
            directory = scenarios_dir()
        except SpecsNotFoundError as exc:
            raise CliError(str(exc)) from None
    if not directory.is_dir():
        raise CliError(f"script directory {str(directory)!r} does not exist")
    paths = sorted(directory.glob("*.txt"))
    if not paths:
        raise CliError(f"no *.txt scripts in {str(directory)!r}")
    return paths


def _row(result: ScriptResult | None, path: Path) -> dict[str, Any]:
    if result is None:
        return {"file": path.name, "section": "?", "title": path.name, "expect": "",
                "observed": "script could not be parsed", "ok": False}
    return {"file": path.name, "section": result.section, "title": result.title,
            "expect": result.expect, "observed": result.observed, "ok": result.ok}


def _table(rows: list[dict[str, Any]], wide: bool) -> str:
    headings: tuple[str, ...]
    cells: list[tuple[str, ...]]
    if wide:
        headings = ("section", "scenario", "expected reaction", "observed", "ok", "file")
        cells = [(r["section"], r["title"], r["expect"], r["observed"],
                  "ok" if r["ok"] else "FAIL", r["file"]) for r in rows]
        return fit_table(headings, cells, width=10**6)
    headings = ("ok", "section", "scenario", "observed")
    cells = [("ok" if r["ok"] else "FAIL", r["section"], r["title"], r["observed"])
             for r in rows]
    return fit_table(headings, cells, flexible=(2, 3))


@verb("scenarios", "Replay every risk-model scenario script and print the table.\n\n"
      "Replays each *.txt script (in name order) through the real core, prints seed "
      "section, scenario and observed reaction (--wide adds the expected reaction and the "
      "file), and writes the JSONL audit trace. Exit 1 if any script does not match.")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path), metavar="[FILE]...")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None,
              help="directory of scenario scripts (default: the packaged specs/scenarios)")
@click.option("--trace", type=click.Path(path_type=Path), default=Path(DEFAULT_TRACE),
              show_default=True, help="where to write the JSONL audit trace")
@click.option("--trace-key", default=None, metavar="FILE|HEX",
              help="MAC the trace's checkpoints with this key (verify-trace --key)")
@click.option("--rewrite", is_flag=True,
              help="replace every expected block with the actual output (edits the files)")
@click.option("--impl", default=None, metavar="package.module:factory",
              help="play one role with this in-process implementation")
@click.option("--cmd", default=None, metavar="PROGRAM",
              help="play one role with this program (conformance protocol on stdio)")
@click.option("--role", type=click.Choice([r.value for r in Role]), default=None,
              help="the role --impl/--cmd plays (default: the only role the script's step "
                   "and tick commands name)")
@click.option("--step-timeout-ms", type=int, default=2_000, show_default=True,
              help="per-step timeout for --cmd")
@click.option("--wide", is_flag=True, help="show every column, unclipped")
@json_option
def command(files: tuple[Path, ...], directory: Path | None, trace: Path,
            trace_key: str | None, rewrite: bool, impl: str | None, cmd: str | None,
            role: str | None, step_timeout_ms: int, wide: bool, as_json: bool) -> int:
    """Handler of `jumpvpn scenarios`."""
    try:
        key = key_option(trace_key)
    except TraceKeyError as exc:
        raise CliError(f"bad --trace-key: {exc}") from None
    if impl is not None and cmd is not None:
        raise CliError("--impl and --cmd cannot be combined: give one implementation")
    under_test = impl is not None or cmd is not None
    if under_test and rewrite:
        raise CliError("--rewrite takes the reference's output; it cannot be combined with "
                       "--impl or --cmd")
    if step_timeout_ms < 1:
        raise CliError(f"--step-timeout-ms must be positive, got {step_timeout_ms}")
    paths = _script_paths(files, directory)
    if rewrite and not files and directory is None:
        from jumpvpn_core.specs import checkout_root

        if checkout_root() is None:
            raise CliError("--rewrite edits scripts in place; the packaged ones are read-only "
                           "(give --dir or FILE...)")
    check_output_file(trace, "--trace")
    if cmd is not None:
        try:
            _check_program_starts(cmd, step_timeout_ms)
        except KeyboardInterrupt:
            write_trace(trace, [], writer="jumpvpn scenarios", key=key)  # as promised: the
            raise  # trace of every script replayed so far (none)

    rows: list[dict[str, Any]] = []
    unexercised: list[str] = []
    trace_records: list[dict[str, Any]] = []
    failures: list[str] = []
    progress = ProgressLines("jumpvpn scenarios")
    try:
        for number, path in enumerate(paths, start=1):
            stand_in = (_stand_in(path, role, impl, cmd, step_timeout_ms)
                        if under_test else None)
            try:
                result: ScriptResult | None = run_script_file(path, rewrite=rewrite,
                                                              stand_in=stand_in)
            except ScriptError as exc:
                failures.append(str(exc))
                result = None
            except (OSError, UnicodeDecodeError) as exc:
                raise CliError(f"{path}: cannot read: {exc}") from None
            finally:
                if stand_in is not None:
                    stand_in.close()
            rows.append(_row(result, path))
            if result is not None and result.exercised is False:
                unexercised.append(path.name)
                rows[-1].update(ok=False, observed="not run: " + rows[-1]["observed"])
            elif result is not None:
                trace_records.extend(result.records)
                if result.failure is not None:
                    failures.append(result.failure)
            progress.update(f"{number}/{len(paths)} scripts replayed")
    finally:
        # Written even when interrupted: the trace of every script replayed so far.
        write_trace(trace, trace_records, writer="jumpvpn scenarios", key=key)
    passed = sum(1 for row in rows if row["ok"])
    if as_json:
        emit_json({"scripts": rows, "passed": passed, "total": len(rows),
                   "ok": not failures and not unexercised, "trace": str(trace),
                   "records": len(trace_records), "failures": failures,
                   "not_exercised": unexercised})
    else:
        click.echo(_table(rows, wide), nl=False)
        click.echo(f"{passed}/{len(rows)} scripts ok; audit trace: {trace} "
                   f"({len(trace_records)} records)")
        for failure in failures:
            click.echo(failure, err=True)
    if unexercised:
        # A usage error, never a pass: the implementation under test did not run at all.
        whose = f"a {role}" if role is not None else "a session of the role it plays, no"
        raise CliError(f"{impl or cmd} played no part in {len(unexercised)} script(s) "
                       f"({', '.join(unexercised)}): none creates {whose} session "
                       "(gateway commands run the reference core); give scripts that step "
                       "the role it plays")
    return 0 if not failures else 1
