"""The reference passes its own conformance run, in-process and over stdio."""

from __future__ import annotations

import sys

import pytest

from jumpvpn_core.cli import main
from jumpvpn_core.testing import ReferenceImplementation, run_conformance


@pytest.mark.requirement("RM-8")
def test_reference_conforms_in_process_with_every_invariant_checked() -> None:
    result = run_conformance(ReferenceImplementation(), examples=60, seed=1)
    assert result.failure is None, result.failure.render() if result.failure else ""
    assert result.examples >= 60


def test_reference_conforms_over_stdio(capsys: pytest.CaptureFixture[str]) -> None:
    cmd = f"{sys.executable} -m jumpvpn_core.testing.stdio_reference"
    status = main(["conformance", "--cmd", cmd, "--examples", "15", "--seed", "3"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.startswith("CONFORMS:")
