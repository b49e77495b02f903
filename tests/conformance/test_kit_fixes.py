"""Kit fixes: no false pass, a JSONL counterexample file, exit 2 for a program that cannot
start, Hypothesis's files outside the working directory, a step-0 counterexample script,
the typed API with `st.from_type(Event)`, and the `jumpvpn` settings profile."""

from __future__ import annotations

import inspect
import os
import shlex
import subprocess
import sys
import typing
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, cast

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.configuration import storage_directory
from hypothesis.database import DirectoryBasedExampleDatabase

from jumpvpn_core.cli import main
from jumpvpn_core.events import EVENT_TYPES, Event, ReattachRequest
from jumpvpn_core.phases import Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.subject import Outcome, ReferenceSession, SessionUnderTest
from jumpvpn_core.testing import ReferenceImplementation, counterexample_script, run_conformance
from jumpvpn_core.testing.hypothesis_setup import (
    HYPOTHESIS_DIR_ENV,
    PROFILE,
    hypothesis_dir,
    use_hypothesis_dir,
)
from jumpvpn_core.testing.stdio import ProgramStartError, StdioImplementation
from jumpvpn_core.testing.strategies import client_events, events, server_events

_PY = shlex.quote(sys.executable)
_REFERENCE = f"{_PY} -m jumpvpn_core.testing.stdio_reference"
_BROKEN = f"{_REFERENCE} --impl jumpvpn_core.testing.broken:skips_proof_check"
_SPECS = Path(__file__).resolve().parents[2] / "specs" / "scenarios"
_GATEWAY_SCRIPT = _SPECS / "3.1-gateway-flood-limits.txt"
_SERVER_SCRIPT = _SPECS / "3.1-spoofed-challenges-do-not-stall-recovery.txt"


def _out(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    return text


# --- (a) no false pass -----------------------------------------------------------------------


@pytest.mark.parametrize("cmd", ["no-such-program-anywhere", "false", _REFERENCE])
def test_a_gateway_script_with_cmd_playing_the_server_never_passes(
        cmd: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # The gateway script creates no server session of its own (gateway commands run the
    # reference core), so --cmd --role server would test nothing: never "ok", exit 2.
    status = main(["scenarios", "--cmd", cmd, "--role", "server", str(_GATEWAY_SCRIPT),
                   "--trace", str(tmp_path / "t.jsonl")])
    out = _out(capsys)
    assert status == 2
    assert "1/1 scripts ok" not in out
    if cmd == _REFERENCE:  # it starts: the row is not run and the error names why
        assert "0/1 scripts ok" in out
        assert "played no part in 1 script(s) (3.1-gateway-flood-limits.txt)" in out
        assert "none creates a server session" in out
    else:
        assert "the program under test cannot start" in out


def test_a_script_that_steps_the_role_still_runs_the_program(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status = main(["scenarios", "--cmd", _REFERENCE, "--role", "server", str(_SERVER_SCRIPT),
                   "--trace", str(tmp_path / "t.jsonl")])
    out = _out(capsys)
    assert (status, "1/1 scripts ok" in out, "played no part" in out) == (0, True, False)


def test_a_program_that_dies_mid_script_fails_the_script(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # It answers hello, then exits: it starts, so this is a failed script (exit 1).
    quits = tmp_path / "quits.py"
    quits.write_text(
        "import itertools, sys\n"
        "from jumpvpn_core.testing.implementation import ReferenceImplementation\n"
        "from jumpvpn_core.testing.stdio_reference import serve\n"
        "serve(ReferenceImplementation(), itertools.islice(sys.stdin, 1), sys.stdout)\n"
    )
    status = main(["scenarios", "--cmd", f"{_PY} {shlex.quote(str(quits))}", "--role",
                   "server", str(_SERVER_SCRIPT), "--trace", str(tmp_path / "t.jsonl")])
    out = _out(capsys)
    assert status == 1
    assert "0/1 scripts ok" in out
    assert "program exited (status 0) without answering" in out


# --- (b) the JSONL counterexample file ----------------------------------------------------


def test_counterexample_jsonl_is_written_and_replays(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    jsonl, script = tmp_path / "cx.jsonl", tmp_path / "cx.txt"
    status = main(["conformance", "--cmd", _BROKEN, "--examples", "300", "--steps", "20",
                   "--counterexample-jsonl", str(jsonl), "--counterexample-out", str(script)])
    out = _out(capsys)
    assert status == 1
    headline = out.splitlines()[0]
    assert headline.startswith("MISMATCH at step ")
    assert f"written to {jsonl}; replay with --replay {jsonl}" in out
    lines = jsonl.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith('{"op":"create"')
    assert all(line.startswith('{"op":"step"') for line in lines[1:])
    assert script.read_text(encoding="utf-8").startswith("# Counterexample found")
    # The file is exactly what --replay reads: the same failure again, and the reference
    # passes it.
    assert main(["conformance", "--cmd", _BROKEN, "--replay", str(jsonl)]) == 1
    assert _out(capsys).splitlines()[0] == headline
    assert main(["conformance", "--cmd", _REFERENCE, "--replay", str(jsonl)]) == 0
    assert _out(capsys).startswith("CONFORMS")


def test_the_two_counterexample_files_must_differ(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    same = str(tmp_path / "cx")
    assert main(["conformance", "--cmd", _REFERENCE, "--counterexample-out", same,
                 "--counterexample-jsonl", same]) == 2
    assert "name the same file" in _out(capsys)


# --- (c) a program that cannot start is a usage error ----------------------------------------


@pytest.mark.parametrize("cmd", [
    f"{_PY} -m no_such_module_anywhere",  # the interpreter starts, the program cannot
    f"{_PY} -c 'import sys; sys.exit(3)'",  # exits before answering hello
])
def test_a_program_that_cannot_start_exits_2_with_the_reason(
        cmd: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["conformance", "--cmd", cmd, "--examples", "2"]) == 2
    out = _out(capsys)
    assert ("jumpvpn conformance: error: the program under test cannot start: program exited "
            "before answering hello") in out
    assert "MISMATCH" not in out
    assert "PROTOCOL at" not in out
    assert main(["scenarios", "--cmd", cmd, "--role", "server", str(_SERVER_SCRIPT),
                 "--trace", str(tmp_path / "t.jsonl")]) == 2
    assert "jumpvpn scenarios: error: the program under test cannot start" in _out(capsys)


def test_the_stderr_of_a_program_that_cannot_start_is_shown(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--cmd", f"{_PY} -m no_such_module_anywhere"]) == 2
    assert "No module named no_such_module_anywhere" in _out(capsys)


def test_start_error_types(tmp_path: Path) -> None:
    not_executable = tmp_path / "impl"
    not_executable.write_text("#!/bin/sh\n", encoding="utf-8")
    program = StdioImplementation([str(not_executable)])
    with pytest.raises(ProgramStartError, match=r"cannot start program .*Permission denied"):
        program.start()
    program.close()
    silent = StdioImplementation(["sleep", "5"], step_timeout_ms=200)
    with pytest.raises(Exception, match="no response within 200 ms") as caught:
        silent.start()  # it runs and stays silent: a protocol failure, not a start error
    assert not isinstance(caught.value, ProgramStartError)
    silent.close()


# --- (d) Hypothesis's files, and the step-0 script --------------------------------------------


def test_hypothesis_dir_resolution() -> None:
    assert hypothesis_dir({HYPOTHESIS_DIR_ENV: "/a", "HYPOTHESIS_STORAGE_DIRECTORY": "/b"}) \
        == Path("/a")
    assert hypothesis_dir({"HYPOTHESIS_STORAGE_DIRECTORY": "/b", "XDG_CACHE_HOME": "/c"}) \
        == Path("/b")
    assert hypothesis_dir({"XDG_CACHE_HOME": "/c", "HOME": "/h"}) \
        == Path("/c/jumpvpn-core/hypothesis")
    assert hypothesis_dir({"HOME": "/h"}) == Path("/h/.cache/jumpvpn-core/hypothesis")
    assert hypothesis_dir({HYPOTHESIS_DIR_ENV: "", "HOME": "/h"}) \
        == Path("/h/.cache/jumpvpn-core/hypothesis")


def test_conformance_writes_no_hypothesis_dir_in_the_working_directory(
        tmp_path: Path) -> None:
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    env = {**os.environ, HYPOTHESIS_DIR_ENV: str(cache)}
    env.pop("HYPOTHESIS_STORAGE_DIRECTORY", None)
    done = subprocess.run(  # noqa: S603 -- a fresh process: Hypothesis caches once per process
        [sys.executable, "-m", "jumpvpn_core", "conformance", "--cmd", _REFERENCE,
         "--examples", "3"], cwd=work, env=env, capture_output=True, text=True, timeout=120,
        check=False)
    assert (done.returncode, done.stdout[:9]) == (0, "CONFORMS:"), done.stderr
    assert list(work.iterdir()) == []
    assert (cache / ".gitignore").is_file()  # Hypothesis's files went where they were told


def test_hypothesis_dir_option_points_hypothesis_there(
        capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    chosen = tmp_path / "chosen"
    try:
        assert main(["conformance", "--cmd", _REFERENCE, "--examples", "2",
                     "--hypothesis-dir", str(chosen)]) == 0
        assert storage_directory("examples", intent_to_write=False).home_directory == chosen
    finally:
        use_hypothesis_dir()  # back to the suite's directory
    assert _out(capsys).startswith("CONFORMS")
    assert not (tmp_path / ".hypothesis").exists()


class _WrongAtCreate(ReferenceImplementation):
    """Diverges at step 0: reports version 1 for a fresh session."""

    name = "wrong-at-create"

    def create_session(self, role: Role, session_id: bytes, secret: bytes, now_ms: int,
                       policy: Policy) -> tuple[ReferenceSession, Outcome]:
        session, outcome = super().create_session(role, session_id, secret, now_ms, policy)
        return session, attrs.evolve(outcome, state_version=outcome.state_version + 1)


def test_a_step_0_failure_script_says_there_are_no_events() -> None:
    result = run_conformance(_WrongAtCreate(), examples=5, shrink_budget=0)
    assert result.failure is not None
    assert result.failure.step == 0
    script = counterexample_script(result.failure)
    assert "Steps 1..0" not in script
    assert "# No events: the " in script
    assert "diverges when the session is created (step 0, the init command)" in script


# --- (e) the typed API and st.from_type(Event) ------------------------------------------------


def test_the_hypothesis_entry_point_is_installed() -> None:
    names = {e.value for e in entry_points(group="hypothesis")}
    assert "jumpvpn_core.testing._hypothesis_entry:setup_hook" in names


# `Event` is a union, which Hypothesis's type stubs do not accept as a class: the cast is
# for mypy only (at run time st.from_type takes the union and draws one of its classes).
@settings(max_examples=60)
@given(event=st.from_type(cast(Any, Event)))
def test_from_type_event_draws_valid_events(event: Event) -> None:
    assert isinstance(event, EVENT_TYPES)


@settings(max_examples=5)
@given(data=st.data())
def test_from_type_reaches_every_event_class(data: st.DataObject) -> None:
    for cls in EVENT_TYPES:
        assert isinstance(data.draw(st.from_type(cls)), cls)
    assert isinstance(data.draw(st.from_type(ReattachRequest)), ReattachRequest)


def test_step_and_strategies_are_typed_with_event() -> None:
    hints = typing.get_type_hints(SessionUnderTest.step)
    assert hints["event"] == Event
    for strategy in (client_events, server_events, events):
        returned = inspect.signature(strategy).return_annotation
        assert returned == "st.SearchStrategy[Event]", strategy.__name__


# --- (f) the jumpvpn settings profile ---------------------------------------------------------


def test_the_jumpvpn_profile() -> None:
    profile = settings.get_profile(PROFILE)
    assert profile.deadline is None
    assert profile.max_examples == 200
    assert profile.stateful_step_count == 30
    assert isinstance(profile.database, DirectoryBasedExampleDatabase)
    assert Path(profile.database.path) == hypothesis_dir() / "examples"
