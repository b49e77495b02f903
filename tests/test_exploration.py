"""Exhaustive bounded exploration of the real core: no invariant broken, no livelock."""

from __future__ import annotations

from typing import Any

import pytest

from jumpvpn_core import invariants as invariants_module
from jumpvpn_core.audit.explore import explore
from jumpvpn_core.cli import main
from jumpvpn_core.effects import Effect
from jumpvpn_core.machine import step
from jumpvpn_core.phases import Role
from jumpvpn_core.state import SessionState
from tests.figures import report_figures

# Figures at depth 8 when this test was written (see docs/exploration.md); the bounds sit
# a little below them so the domain cannot silently shrink.
MIN_STATES = {Role.CLIENT: 30_000, Role.SERVER: 14_000}


@pytest.mark.requirement("RM-7")
@pytest.mark.requirement("RM-9")
@pytest.mark.requirement("RM-10")
@pytest.mark.parametrize("role", list(Role))
def test_depth_8_exploration_finds_no_violation_and_no_livelock(role: Role) -> None:
    result = explore(role, 8)
    report_figures("exploration", result.summary())
    assert result.violations == ()
    assert result.max_depth == 8
    assert result.states >= MIN_STATES[role]
    assert result.edges > 2 * result.states
    assert result.reach_checked == result.live_states > 0
    assert result.zero_time_cycles == 0


def test_exploration_reports_a_broken_step(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(state: SessionState, event: Any) -> tuple[SessionState, tuple[Effect, ...]]:
        new, effects = step(state, event)
        if new is not state and new.state_version > 2:
            new = SessionState(new.ident, new.phase, new.state_version + 1, new.phase_since_ms,
                               new.link, new.roaming, new.side, new.end_reason)
        return new, effects

    # Every edge steps through `invariants.checked_step`: break the step it makes.
    monkeypatch.setattr(invariants_module, "step", broken)
    result = explore(Role.SERVER, 4)
    assert any("version_monotonic" in v for v in result.violations)


def test_cli_prints_the_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "--depth", "3", "--role", "server"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("server: depth 3: ")
    assert "0 violations" in out
