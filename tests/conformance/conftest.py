"""Shared by the conformance tests: one kit run per broken implementation per session.

Finding a broken implementation is the expensive part (up to 1,000 examples); the tests
that look at the verdict, the JSONL counterexample and the scenario script share the run.
"""

from __future__ import annotations

import pytest

from jumpvpn_core.testing import FailureReport, run_conformance
from jumpvpn_core.testing.broken import BROKEN

# Fixed settings on purpose (no Hypothesis profile): each broken implementation is found
# within these budgets for seed 0; the shrink budget keeps the suite fast.
EXAMPLES, STEPS, SHRINK = 1_000, 20, 60  # search stops at the first failure


class BrokenRuns:
    """Kit verdicts against each broken implementation, computed once on first use."""

    def __init__(self) -> None:
        self._failures: dict[str, FailureReport | None] = {}

    def failure(self, name: str) -> FailureReport | None:
        """The failure the kit reports for `BROKEN[name]` (None: not caught)."""
        if name not in self._failures:
            result = run_conformance(BROKEN[name](), examples=EXAMPLES, steps=STEPS,
                                     shrink_budget=SHRINK)
            self._failures[name] = result.failure
        return self._failures[name]


@pytest.fixture(scope="session")
def broken_runs() -> BrokenRuns:
    """One shared `BrokenRuns` per test session."""
    return BrokenRuns()
