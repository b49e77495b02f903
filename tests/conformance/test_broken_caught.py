"""Proof that the kit bites: every deliberately broken implementation is caught, in-process
and over stdio, and the shrunk counterexample replays the divergence."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from jumpvpn_core.cli import main
from jumpvpn_core.scenarios import parse_script
from jumpvpn_core.testing import (
    FailureKind,
    ReferenceImplementation,
    replay_counterexample,
)
from jumpvpn_core.testing.broken import BROKEN
from tests.conformance.conftest import BrokenRuns

_REQUIREMENT = {
    "accepts_replayed_nonce": "RM-3.2",
    "forgets_version_bump": "RM-3.3",
    "binds_before_path_validation": "RM-2.3",
    "never_leaves_recovering": "RM-7",
    "unbounded_candidates": "RM-5.2",
    "skips_proof_check": "RM-2.3",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_implementation_is_caught_in_process_with_replayable_counterexample(
    name: str, request: pytest.FixtureRequest, broken_runs: BrokenRuns
) -> None:
    request.applymarker(pytest.mark.requirement(_REQUIREMENT[name]))
    failure = broken_runs.failure(name)
    assert failure is not None, f"{name} was not caught"
    assert failure.kind in (FailureKind.MISMATCH, FailureKind.INVARIANT)
    lines = failure.counterexample.splitlines()
    assert lines[0].startswith('{"op":"create"')
    assert len(lines) == failure.step + 1
    # The printed counterexample is a scenario: it reproduces the divergence at the same
    # step against the broken implementation, and nothing against the reference.
    replayed = replay_counterexample(BROKEN[name](), failure.counterexample)
    assert replayed is not None
    assert (replayed.step, replayed.detail) == (failure.step, failure.detail)
    assert replay_counterexample(ReferenceImplementation(), failure.counterexample) is None


def _stdio_cmd(impl: str | None = None) -> str:
    cmd = f"{sys.executable} -m jumpvpn_core.testing.stdio_reference"
    return cmd if impl is None else f"{cmd} --impl jumpvpn_core.testing.broken:{impl}"


@pytest.mark.requirement("RM-3.3")
@pytest.mark.parametrize("name", ["forgets_version_bump", "binds_before_path_validation"])
def test_broken_implementation_is_caught_over_stdio_and_counterexample_replays(
    name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    script = tmp_path / "counterexample.txt"
    status = main(["conformance", "--cmd", _stdio_cmd(name), "--examples", "1000",
                   "--steps", "20", "--counterexample-out", str(script)])
    out = capsys.readouterr().out
    assert status == 1
    headline, _, rest = out.partition("\n")
    assert headline.startswith("MISMATCH at step ")
    step = int(headline.split()[3])
    requests, _, printed = rest.partition("\n")[2].partition("\n\n")
    saved = tmp_path / "counterexample.jsonl"
    saved.write_text(requests)
    assert main(["conformance", "--cmd", _stdio_cmd(name), "--replay", str(saved)]) == 1
    assert capsys.readouterr().out.splitlines()[0] == headline
    assert main(["conformance", "--cmd", _stdio_cmd(), "--replay", str(saved)]) == 0
    capsys.readouterr()

    # The same counterexample as a scenario script: printed, written, and replayable.
    text = script.read_text(encoding="utf-8")
    assert printed.partition("\n")[2] == text
    cases = parse_script(text, str(script)).cases
    steps = [c for c in cases if c.command.startswith("step ")]
    assert len(steps) == step  # one step case per event; step 0 is the create (init)
    trace = str(tmp_path / "trace.jsonl")
    assert main(["scenarios", "--trace", trace, str(script)]) == 0
    assert main(["scenarios", "--trace", trace, "--cmd", _stdio_cmd(), str(script)]) == 0
    capsys.readouterr()
    assert main(["scenarios", "--trace", trace, "--cmd", _stdio_cmd(name), str(script)]) == 1
    err = capsys.readouterr().err
    assert f"{script}:{cases[-1].line}: output of 'step " in err
    assert "\n--- expected\n+++ actual\n" in err
