"""Exhaustive bounded exploration of the real core: no invariant broken, no livelock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest

from jumpvpn_core import _client as client_module
from jumpvpn_core import invariants as invariants_module
from jumpvpn_core import machine as machine_module
from jumpvpn_core.audit.explore import (
    EXPLORE_POLICY,
    explore,
    explore_migrations,
    switch_bound_violations,
)
from jumpvpn_core.cli import main
from jumpvpn_core.effects import Effect
from jumpvpn_core.machine import step
from jumpvpn_core.phases import Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.quality import migration_due
from jumpvpn_core.state import ClientSide, Roaming, SessionState
from tests.figures import report_figures

# Figures at depth 8 when this test was written (see docs/exploration.md); the bounds sit
# a little below them so the domain cannot silently shrink.
MIN_STATES = {Role.CLIENT: 80_000, Role.SERVER: 14_000}
#: Proactive migrations (MIGRATED_TO_BETTER_PATH edges) the client's domain reaches.
MIN_PROACTIVE_SWITCH_EDGES = {Role.CLIENT: 400, Role.SERVER: 0}
MIN_MIGRATION_STATES = 17_000

#: A `migration_due` replacement: (side, roaming, policy) -> when the migration may start.
Due = Callable[[ClientSide, Roaming, Policy], int]


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
    # The hysteresis bound is checked on every path that migrates; the client's paths do.
    assert result.proactive_switch_edges >= MIN_PROACTIVE_SWITCH_EDGES[role]


@pytest.mark.requirement("RM-10")
def test_depth_8_migration_domain_keeps_switches_within_the_hysteresis_bound() -> None:
    """Two paths taking turns at losing probes, at depth 8: up to two proactive switches on
    one path, every path within ceil(T / dwell) and the per-minute bound."""
    result = explore_migrations(8)
    report_figures("exploration", result.summary())
    assert result.violations == ()
    assert result.max_depth == 8
    assert result.states >= MIN_MIGRATION_STATES
    assert result.proactive_switch_edges > 0
    assert result.max_proactive_switches == 2


def _without_dwell_check(monkeypatch: pytest.MonkeyPatch, due: Due) -> None:
    """Make the client start migrations at `due`, and take away the step checker that
    knows the dwell time (`controlled_migration`): what is left to notice is the per-path
    switch bound."""
    monkeypatch.setattr(client_module, "migration_due", due)
    monkeypatch.setattr(machine_module, "migration_due", due)
    monkeypatch.setattr(invariants_module, "STEP_CHECKERS", tuple(
        c for c in invariants_module.STEP_CHECKERS if c.__name__ != "controlled_migration"))


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


def test_switch_bound_counts_windows_the_span_and_the_minute() -> None:
    policy = attrs.evolve(EXPLORE_POLICY, migration_dwell_ms=1_000,
                          max_switches_per_minute=2)
    assert switch_bound_violations((), 0, 0, policy) == []
    assert switch_bound_violations((1_000, 2_000), 0, 2_000, policy) == []
    # A span of T ms holds ceil(T / dwell) switches: one in 999 ms, none in no time at all.
    assert switch_bound_violations((999,), 0, 999, policy) == []
    assert switch_bound_violations((500,), 500, 500, policy) == [
        "1 proactive switches in 0 ms (dwell 1000 ms)"]
    # Two switches closer than the dwell time fit in a window where ceil(T / dwell) is 1.
    assert switch_bound_violations((1_000, 1_999), 0, 1_999, policy) == [
        "2 proactive switches within 1000 ms (dwell 1000 ms): [1000, 1999]"]
    # A third switch within the minute exceeds max_switches_per_minute = 2 ...
    assert switch_bound_violations((1_000, 2_000, 3_000), 0, 3_000, policy) == [
        "3 proactive switches within 2000 ms (max 2 a minute)"]
    # ... and 60 s after the first it is allowed again.
    assert switch_bound_violations((1_000, 2_000, 61_000), 0, 61_000, policy) == []
    # No dwell time: only the minute bounds them.
    no_dwell = attrs.evolve(policy, migration_dwell_ms=0)
    assert switch_bound_violations((5, 5), 0, 5, no_dwell) == []


def test_exploration_reports_a_migration_without_a_dwell_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that migrates as soon as a candidate is better switches at the session's
    very start: the fresh-session domain reports it by the per-path bound alone."""
    _without_dwell_check(monkeypatch, lambda side, roaming, policy: side.better_since_ms)
    result = explore(Role.CLIENT, 5)
    assert result.proactive_switch_edges > 0
    assert result.violations
    assert all("switch bound: 1 proactive switches in 0 ms" in v for v in result.violations)


@pytest.mark.parametrize("name", ["dwell only before the first switch", "half the dwell"])
def test_migration_domain_reports_switches_closer_than_the_dwell_time(
        monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Subtler broken hysteresis: the second switch of a path comes too soon after the
    first. The migration domain (no cooldown to hide it) reports it on that path."""
    def first_only(side: ClientSide, roaming: Roaming, policy: Policy) -> int:
        return side.better_since_ms if roaming.switch_times else \
            migration_due(side, roaming, policy)

    def half(side: ClientSide, roaming: Roaming, policy: Policy) -> int:
        return migration_due(side, roaming, policy) - policy.migration_dwell_ms // 2

    _without_dwell_check(monkeypatch, first_only if name.startswith("dwell") else half)
    result = explore_migrations(7)
    assert result.violations
    assert all("switch bound: 2 proactive switches" in v for v in result.violations)


def test_cli_prints_the_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "--depth", "3", "--role", "server"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("server: depth 3: ")
    assert "0 violations" in out
    assert main(["explore", "--depth", "3", "--role", "client"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["client", "client migrations"]
