"""Every shrunk counterexample is printed as a scenario script that replays the failure:
it passes under the reference runner and fails, at the diverging step, when the broken
implementation plays the role (in-process with `--impl`, over stdio with `--cmd`)."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from jumpvpn_core.cli import main
from jumpvpn_core.phases import Role
from jumpvpn_core.scenarios import RoleStandIn, parse_script, run_script
from jumpvpn_core.testing import ReferenceImplementation, counterexample_script
from jumpvpn_core.testing.broken import BROKEN
from tests.conformance.conftest import BrokenRuns

# The clause each broken build violates, as the script's `section:` may name it (the kit's
# shrunk counterexample may reach the bug through different clauses).
_SECTIONS = {
    "accepts_replayed_nonce": {"3.2"},
    "forgets_version_bump": {"3.3"},
    "binds_before_path_validation": {"2.3"},
    "never_leaves_recovering": {"2.1", "7", "9"},
    "unbounded_candidates": {"5.2"},
    "skips_proof_check": {"8"},
}
_REQUIREMENT = {
    "accepts_replayed_nonce": "RM-3.2",
    "forgets_version_bump": "RM-3.3",
    "binds_before_path_validation": "RM-2.3",
    "never_leaves_recovering": "RM-7",
    "unbounded_candidates": "RM-5.2",
    "skips_proof_check": "RM-2.3",
}
_PY = shlex.quote(sys.executable)


def _header(text: str, key: str) -> str:
    match = re.search(rf"^{key}: (.*)$", text, re.MULTILINE)
    assert match is not None, f"no {key}: header"
    return match.group(1)


def _script(broken_runs: BrokenRuns, name: str, tmp_path: Path) -> tuple[Path, Role, int]:
    """Write the counterexample script; return it, its role and its last case's line."""
    failure = broken_runs.failure(name)
    assert failure is not None, f"{name} was not caught"
    text = counterexample_script(failure, implementation=name)
    path = tmp_path / f"{name}.txt"
    path.write_text(text, encoding="utf-8")
    script = parse_script(text, str(path))
    steps = [c for c in script.cases if c.command.startswith("step ")]
    assert len(steps) == failure.step, "one step case per event of the counterexample"
    roles = {c.command.split()[1] for c in steps}
    assert len(roles) == 1
    return path, Role(roles.pop()), script.cases[-1].line


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_counterexample_script_passes_on_reference_and_fails_under_impl_at_diverging_step(
    name: str, broken_runs: BrokenRuns, tmp_path: Path, request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    request.applymarker(pytest.mark.requirement(_REQUIREMENT[name]))
    path, role, last_line = _script(broken_runs, name, tmp_path)
    text = path.read_text(encoding="utf-8")
    section = _header(text, "section")
    assert section in _SECTIONS[name]
    script = parse_script(text, str(path))

    reference = run_script(script)
    assert reference.ok, reference.failure
    # The reference, played as an implementation under test, passes as well.
    as_impl = run_script(script, stand_in=RoleStandIn(ReferenceImplementation(), role))
    assert as_impl.ok, as_impl.failure

    broken = run_script(script, stand_in=RoleStandIn(BROKEN[name](), role))
    assert not broken.ok
    assert broken.failure is not None
    assert broken.failure.startswith(f"{path}:{last_line}: output of 'step {role.value} ")
    assert "\n--- expected\n+++ actual\n" in broken.failure

    trace = str(tmp_path / "trace.jsonl")
    assert main(["scenarios", "--trace", trace, str(path)]) == 0
    impl = f"jumpvpn_core.testing.broken:{name}"
    assert main(["scenarios", "--trace", trace, "--impl", impl, str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:{last_line}: output of 'step {role.value} " in err


def _stdio_cmd(impl: str | None = None) -> str:
    cmd = f"{_PY} -m jumpvpn_core.testing.stdio_reference"
    return cmd if impl is None else f"{cmd} --impl jumpvpn_core.testing.broken:{impl}"


@pytest.mark.requirement("RM-2.3")
def test_show_under_impl_fails_naming_the_command(tmp_path: Path) -> None:
    text = ("section: 2.3\ntitle: t\nexpect: e\n\ninit t=0\n----\n"
            "session_id=hex:000102030405060708090a0b0c0d0e0f\nclient: BIRTH v0\n"
            "server: BIRTH v0\n\nshow server\n----\nserver: BIRTH v0\n")
    script = parse_script(text, "show.txt")
    result = run_script(script, stand_in=RoleStandIn(ReferenceImplementation(),
                                                            Role.SERVER))
    assert result.failure is not None
    assert result.failure.startswith("show.txt:11: command 'show' needs the server "
                                     "session's internals")
    # The client is still the reference: show client works.
    client = run_script(parse_script(text.replace("show server", "show client"),
                                     "show.txt"),
                        stand_in=RoleStandIn(ReferenceImplementation(), Role.SERVER))
    assert client.failure is not None
    assert "output of 'show client' differs" in client.failure


def test_impl_cli_usage_errors_and_commands_needing_internals(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scripts = Path(__file__).resolve().parents[2] / "specs" / "scenarios"
    impl = "jumpvpn_core.testing.implementation:ReferenceImplementation"
    trace = str(tmp_path / "t.jsonl")
    # Every step and delivery of this script goes through what an implementation reports:
    # the reference, played as an implementation, replays it byte for byte.
    plain = scripts / "2.1-loss-spike-without-candidate.txt"
    assert main(["scenarios", "--trace", trace, "--impl", impl, str(plain)]) == 0
    assert main(["scenarios", "--trace", trace, "--cmd", _stdio_cmd(), str(plain)]) == 0
    capsys.readouterr()
    replay = scripts / "3.2-nonce-replay.txt"
    assert main(["scenarios", "--trace", trace, "--impl", impl, "--rewrite",
                 str(replay)]) == 2
    assert "--rewrite" in capsys.readouterr().err
    # `sign` computes a proof with the client's key, which an implementation keeps.
    assert main(["scenarios", "--trace", trace, "--impl", impl, str(replay)]) == 1
    assert ("3.2-nonce-replay.txt:59: command 'sign' needs the client session's internals"
            in capsys.readouterr().err)
    both = tmp_path / "both.txt"
    both.write_text("section: 2.2\ntitle: t\nexpect: e\n\ninit t=0\n----\n\n"
                    "step client Tick now_ms=1\n----\n\nstep server Tick now_ms=1\n----\n")
    assert main(["scenarios", "--trace", trace, "--impl", impl, str(both)]) == 2
    assert "give --role client|server" in capsys.readouterr().err
