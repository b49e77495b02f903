"""The driver treats the program as hostile: every misbehaviour gets a clear verdict naming
the step, within the per-step timeout; never a traceback, never a hang."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from jumpvpn_core.cli import main

_PY = shlex.quote(sys.executable)
_REFERENCE = f"{_PY} -m jumpvpn_core.testing.stdio_reference"


def _run(cmd: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    status = main(["conformance", "--cmd", cmd, "--examples", "5",
                   *(extra or ("--step-timeout-ms", "400"))])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return status, captured.out + captured.err


def test_garbage_output_is_a_protocol_failure_at_create(
        capsys: pytest.CaptureFixture[str]) -> None:
    status, out = _run("sh -c 'echo this-is-not-json; sleep 5'", capsys)
    assert status == 1
    assert out.startswith("PROTOCOL at step 0 (create): response is not valid JSON")


def test_program_exiting_mid_run_names_the_step(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    # hello, create and two steps get through; the program is gone at the third step.
    script = tmp_path / "quits.py"
    script.write_text(
        "import itertools, sys\n"
        "from jumpvpn_core.testing.implementation import ReferenceImplementation\n"
        "from jumpvpn_core.testing.stdio_reference import serve\n"
        "serve(ReferenceImplementation(), itertools.islice(sys.stdin, 4), sys.stdout)\n"
    )
    status, out = _run(f"{_PY} {shlex.quote(str(script))}", capsys,
                       "--step-timeout-ms", "5000")
    assert status == 1
    assert out.startswith("PROTOCOL at step 3 (")
    assert "program exited (status 0) without answering" in out


def test_program_that_sleeps_forever_is_killed_after_the_step_timeout(
        capsys: pytest.CaptureFixture[str]) -> None:
    status, out = _run("sleep 600", capsys)
    assert status == 1
    assert "PROTOCOL at step 0 (create): no response within 400 ms (program killed)" in out


def test_response_missing_a_field_is_named(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    script = tmp_path / "no_version.py"
    script.write_text(
        "import json, sys\n"
        "for line in sys.stdin:\n"
        "    r = json.loads(line)\n"
        "    out = {'v': 3, 'seq': r['seq'], 'ok': True, 'protocol': 3, 'phase': 'BIRTH'}\n"
        "    print(json.dumps(out), flush=True)\n"
    )
    status, out = _run(f"{_PY} {shlex.quote(str(script))}", capsys,
                       "--step-timeout-ms", "5000")
    assert status == 1
    assert ("field 'state_version' must be a non-negative integer, got nothing (field missing)"
            in out)


def test_error_response_is_a_protocol_failure(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    script = tmp_path / "refuses.py"
    script.write_text(
        "import json, sys\n"
        "for line in sys.stdin:\n"
        "    r = json.loads(line)\n"
        "    ok = r['op'] == 'hello'\n"
        "    print(json.dumps({'v': 3, 'seq': r['seq'], 'ok': ok, 'protocol': 3,\n"
        "                      'error': 'not implemented'}), flush=True)\n"
    )
    status, out = _run(f"{_PY} {shlex.quote(str(script))}", capsys,
                       "--step-timeout-ms", "5000")
    assert status == 1
    assert out.startswith("PROTOCOL at step 0 (create): program reported an error (field "
                          "'error': a string of length 15; not shown")
    assert "not implemented" not in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--cmd", ""],
        ["--cmd", "'unbalanced"],
        ["--cmd", "no-such-program-anywhere"],
        ["--cmd", _REFERENCE, "--examples", "0"],
        ["--cmd", _REFERENCE, "--replay", "/nonexistent/counterexample.jsonl"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", *argv]) == 2
    assert "jumpvpn conformance:" in capsys.readouterr().err


def test_missing_cmd_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance"]) == 2
    assert "jumpvpn conformance: error: Missing option '--cmd'" in capsys.readouterr().err


def test_protocol_failures_never_quote_what_the_program_sent(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # A program that echoes the request's secret back in its fields: the verdict names the
    # field and the kind of value, never the value.
    script = tmp_path / "echoes.py"
    script.write_text(
        "import json, sys\n"
        "for line in sys.stdin:\n"
        "    r = json.loads(line)\n"
        "    out = {'v': 3, 'seq': r['seq'], 'ok': True, 'protocol': 3,\n"
        "           'phase': r.get('secret', 'x'), 'state_version': 0}\n"
        "    print(json.dumps(out), flush=True)\n"
    )
    status, out = _run(f"{_PY} {shlex.quote(str(script))}", capsys,
                       "--step-timeout-ms", "5000")
    assert status == 1
    assert "PROTOCOL at step 0 (create): response field 'phase' must be a phase name, got " \
           "a string of length" in out
    created = out.split("counterexample", 1)[0]  # the replayable requests carry the secret
    assert '"secret"' not in created
    secret = json.loads(out.splitlines()[2])["secret"]
    assert secret not in created


def test_garbage_is_described_not_shown(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    script = tmp_path / "garbage.py"  # builds the text, so the command line does not hold it
    script.write_text("import time\nprint('not-json-' + 'SECRET' + 'VALUE', flush=True)\n"
                      "time.sleep(5)\n")
    status, out = _run(f"{_PY} {shlex.quote(str(script))}", capsys)
    assert status == 1
    assert "response is not valid JSON (20 bytes)" in out
    assert "SECRETVALUE" not in out
