"""Every verb answers bad input with one line on stderr and exit 2, never a traceback.

The classes of bad input are the ones a new user hit: an unknown option, a value of the
wrong type, a missing input file, malformed input, and an output path that cannot be
written (checked before any work is done). Each case runs in-process through
`jumpvpn_core.cli.main` (an uncaught exception would fail the test); a few run as real
processes to show the console script, `python -m jumpvpn_core` and `--version`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from jumpvpn_core import __version__
from jumpvpn_core.cli import VERB_MODULES, main

# A regular file: any path *under* it can be neither created nor written, even as root.
Blocker = Path

_REFERENCE = f"{sys.executable} -m jumpvpn_core.testing.stdio_reference"


def _bad_json(tmp: Path) -> Path:
    path = tmp / "broken.jsonl"
    path.write_text('{"id": "x", "state": \n', encoding="utf-8")
    return path


def _not_a_vector(tmp: Path) -> Path:
    path = tmp / "shape.jsonl"
    path.write_text('{"id": "x"}\n', encoding="utf-8")
    return path


def _bad_config(body: object) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / "config.json"
        path.write_text(json.dumps(body), encoding="utf-8")
        return path

    return make


_SIM = ["simulate", "--scenario", "steady", "--sessions", "2", "--duration", "5s"]

# (verb, argv builder given tmp_path and an unwritable path, text the error line contains)
CASES: list[tuple[str, Callable[[Path, Path], list[str]], str]] = [
    # unknown option / wrong value type, for every verb
    *[(verb, lambda t, u, v=verb: [*v.split(), "--no-such-option"], "No such option")
      for verb in ("scenarios", "simulate", "vectors check", "vectors generate",
                   "verify-trace", "explore", "diagram", "conformance", "demo",
                   "traceability", "lab", "sessions")],
    ("lab", lambda t, u: ["lab", "--case", "no-such-case"], "unknown case"),
    ("lab", lambda t, u: ["lab", "--wg-runs", "many"], "is not a valid integer"),
    ("sessions", lambda t, u: ["sessions", "--store", "nosuch://x", "count"],
     "cannot open store"),
    ("sessions", lambda t, u: ["sessions", "--store", "memory://", "show", "zz"],
     "show needs a session id in hex"),
    ("sessions", lambda t, u: ["sessions", "--store", "memory://", "frobnicate"],
     "Invalid value for"),
    ("explore", lambda t, u: ["explore", "--depth", "deep"], "is not a valid integer"),
    ("explore", lambda t, u: ["explore", "--depth", "-1"], "--depth must be 0 or more"),
    ("explore", lambda t, u: ["explore", "--role", "peer"], "Invalid value for '--role'"),
    ("simulate", lambda t, u: [*_SIM, "--sessions", "many"], "--sessions must be an integer"),
    ("simulate", lambda t, u: ["simulate", "--scenario", "nope"], "unknown scenario"),
    ("scenarios", lambda t, u: ["scenarios", "--step-timeout-ms", "x"], "not a valid integer"),
    ("conformance", lambda t, u: ["conformance", "--cmd", _REFERENCE, "--examples", "0"],
     "must be positive"),
    # missing input
    ("scenarios", lambda t, u: ["scenarios", str(t / "missing.txt")], "no such script"),
    ("scenarios", lambda t, u: ["scenarios", "--dir", str(t / "nope")], "does not exist"),
    ("vectors check", lambda t, u: ["vectors", "check", str(t / "missing.jsonl")],
     "no such file"),
    ("verify-trace", lambda t, u: ["verify-trace", str(t / "missing.jsonl")], "cannot read"),
    ("simulate", lambda t, u: [*_SIM, "--config", str(t / "missing.json")], "cannot be read"),
    ("conformance", lambda t, u: ["conformance", "--cmd", _REFERENCE, "--replay",
                                  str(t / "missing.txt")], "cannot read"),
    ("traceability", lambda t, u: ["traceability", "--root", str(t)],
     "is not a source checkout"),
    # malformed input
    ("vectors check", lambda t, u: ["vectors", "check", str(_bad_json(t))], "not JSON"),
    ("vectors check", lambda t, u: ["vectors", "check", str(_not_a_vector(t))],
     "not a vector"),
    ("simulate", lambda t, u: [*_SIM, "--config", str(_bad_config("[")(t))], "must hold"),
    ("simulate", lambda t, u: [*_SIM, "--config",
                               str(_bad_config({"paths": [{"p_good_to_bad": "0.5"}]})(t))],
     "p_good_to_bad must be a number in [0, 1], got '0.5'"),
    ("simulate", lambda t, u: [*_SIM, "--config",
                               str(_bad_config({"paths": [{"flap_period_ms": -5}]})(t))],
     "flap_period_ms must be in [0,"),
    ("simulate", lambda t, u: [*_SIM, "--config",
                               str(_bad_config({"paths": [{"flap_period_ms": "10s"}]})(t))],
     "flap_period_ms must be an integer"),
    ("simulate", lambda t, u: [*_SIM, "--config",
                               str(_bad_config({"paths": [{"one_way_delay_ms": -20}]})(t))],
     "one_way_delay_ms must be in [0,"),
    ("simulate", lambda t, u: [*_SIM, "--config",
                               str(_bad_config({"paths": [{"nat_rebind_mean_ms": -3}]})(t))],
     "nat_rebind_mean_ms must be 0 (never) or in"),
    ("simulate", lambda t, u: [*_SIM, "--config", str(_bad_config({"heartbeat_ms": 0})(t))],
     "heartbeat_ms must be in [100,"),
    ("verify-trace", lambda t, u: ["verify-trace", "--policy", str(_bad_json(t)),
                                   str(_bad_json(t))], "bad policy"),
    ("diagram", lambda t, u: ["diagram", "--out", str(t / "picture.gif")],
     "give a .svg or .png"),
    # outputs that cannot be written: refused before any work
    ("simulate", lambda t, u: [*_SIM, "--out", str(u / "out")], "--out"),
    ("scenarios", lambda t, u: ["scenarios", "--trace", str(u / "trace.jsonl")], "--trace"),
    ("scenarios", lambda t, u: ["scenarios", "--trace", str(t)], "is a directory"),
    ("vectors generate", lambda t, u: ["vectors", "generate", "--out", str(u / "v")], "--out"),
    ("traceability", lambda t, u: ["traceability", "--write", str(u / "m.md")], "--write"),
    ("diagram", lambda t, u: ["diagram", "--out", str(u / "d.svg")], "--out"),
    ("diagram", lambda t, u: ["diagram", "--mermaid", str(u / "d.md")], "--mermaid"),
    ("conformance", lambda t, u: ["conformance", "--cmd", _REFERENCE, "--counterexample-out",
                                  str(u / "c.txt")], "--counterexample-out"),
]


@pytest.mark.requirement("RM-10")
@pytest.mark.parametrize(("verb", "argv", "text"), CASES,
                         ids=[f"{c[0]}-{n}" for n, c in enumerate(CASES)])
def test_bad_input_is_one_line_on_stderr_and_exit_2(
        verb: str, argv: Callable[[Path, Path], list[str]], text: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n", encoding="utf-8")
    status = main(argv(tmp_path, blocker))
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert status == 2, captured
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"jumpvpn {verb}: error: "), lines[0]
    assert text in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_every_verb_is_in_the_bad_input_table() -> None:
    covered = {case[0].split()[0] for case in CASES}
    assert covered == set(VERB_MODULES)


def test_an_unwritable_trace_is_refused_before_any_script_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    assert main(["scenarios", "--trace", str(blocker / "t.jsonl")]) == 2
    assert capsys.readouterr().out == ""  # no table: nothing was replayed


def test_the_former_hang_is_refused_at_once(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # `nat_rebind_mean_ms: -3` used to schedule rebindings in the past, for ever.
    config = tmp_path / "hang.json"
    config.write_text(json.dumps({"paths": [{"nat_rebind_mean_ms": -3}]}), encoding="utf-8")
    assert main([*_SIM, "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    assert "nat_rebind_mean_ms" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_no_verb_prints_help_on_stderr_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Commands:" in captured.err
    assert main(["vectors"]) == 2
    assert "Commands:" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    assert capsys.readouterr().err.startswith("jumpvpn: error: No such command 'frobnicate'")


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # The arguments are this test's own constants.
    return subprocess.run([sys.executable, "-m", "jumpvpn_core", *argv], cwd=cwd,  # noqa: S603
                          capture_output=True, text=True, timeout=120, check=False)


def test_python_m_and_version_work_as_a_process(tmp_path: Path) -> None:
    done = _run("--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"jumpvpn {__version__}\n")
    done = _run("explore", "--depth", "-1", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == "jumpvpn explore: error: --depth must be 0 or more, got -1\n"


def test_a_bug_is_one_line_with_status_70(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import jumpvpn_core.audit.explore as explore_module

    def broken(*_args: object) -> None:
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(explore_module, "explore", broken)
    monkeypatch.delenv("JUMPVPN_TRACEBACK", raising=False)
    assert main(["explore", "--depth", "1"]) == 70
    err = capsys.readouterr().err
    assert err.splitlines() == ["jumpvpn explore: internal error: ZeroDivisionError: injected "
                                "(a bug; set JUMPVPN_TRACEBACK=1 for the traceback)"]
