"""Proof that the kit bites: every deliberately broken implementation is caught, in-process
and over stdio, and the shrunk counterexample replays the divergence."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from jumpvpn_core.cli import main
from jumpvpn_core.testing import (
    FailureKind,
    ReferenceImplementation,
    replay_counterexample,
    run_conformance,
)
from jumpvpn_core.testing.broken import BROKEN

# Fixed settings on purpose (no Hypothesis profile): each broken implementation is found
# within these budgets for seed 0; the shrink budget keeps the suite fast.
_EXAMPLES, _STEPS, _SHRINK = 1_000, 20, 60  # search stops at the first failure

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
    name: str, request: pytest.FixtureRequest
) -> None:
    request.applymarker(pytest.mark.requirement(_REQUIREMENT[name]))
    result = run_conformance(BROKEN[name](), examples=_EXAMPLES, steps=_STEPS,
                             shrink_budget=_SHRINK)
    failure = result.failure
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
    status = main(["conformance", "--cmd", _stdio_cmd(name), "--examples", "1000",
                   "--steps", "20"])
    out = capsys.readouterr().out
    assert status == 1
    headline, _, rest = out.partition("\n")
    assert headline.startswith("MISMATCH at step ")
    counterexample = rest.partition("\n")[2]
    saved = tmp_path / "counterexample.jsonl"
    saved.write_text(counterexample)
    assert main(["conformance", "--cmd", _stdio_cmd(name), "--replay", str(saved)]) == 1
    assert capsys.readouterr().out.splitlines()[0] == headline
    assert main(["conformance", "--cmd", _stdio_cmd(), "--replay", str(saved)]) == 0
