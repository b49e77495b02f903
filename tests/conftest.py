"""Shared test configuration: hypothesis settings profiles, and the figures summary.

Select a profile with the `HYPOTHESIS_PROFILE` environment variable:

* `ci` (default): 500 examples per property and per state machine, no per-example
  deadline (the machine is shared; timing is never a test outcome), failing examples
  printed with a reproduction blob.
* `deep`: 100,000 examples, for long soak runs.
* `dev`: a handful of examples for quick local iteration.

Hypothesis keeps its files (example database, caches) in the kit's cache directory
(`$JUMPVPN_HYPOTHESIS_DIR`, else `~/.cache/jumpvpn-core/hypothesis`), never in `.hypothesis/`.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from jumpvpn_core.testing.hypothesis_setup import use_hypothesis_dir
from tests.figures import REPORTED

use_hypothesis_dir()

_STEPS = 40

settings.register_profile(
    "ci",
    max_examples=500,
    deadline=None,
    print_blob=True,
    stateful_step_count=_STEPS,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "deep",
    max_examples=100_000,
    deadline=None,
    print_blob=True,
    stateful_step_count=_STEPS,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    max_examples=25,
    deadline=None,
    print_blob=True,
    stateful_step_count=20,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures tests reported (see tests/figures.py)."""
    if REPORTED:
        terminalreporter.section("figures")
        for title, line in REPORTED:
            terminalreporter.write_line(f"{title}: {line}")
