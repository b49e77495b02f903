"""Every simulator scenario writes a trace that `verify-trace` accepts (RM-10)."""

from __future__ import annotations

import json

import pytest

from jumpvpn_core.audit.trace import verify_lines
from jumpvpn_core.sim import SCENARIOS, World, build_scenario


@pytest.mark.requirement("RM-10")
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_trace_passes_verify_trace(name: str) -> None:
    config = build_scenario(name, 40, 150_000, 5)
    lines: list[str] = []
    World(config, on_record=lambda record: lines.append(json.dumps(record))).run()
    assert lines, "the scenario wrote no audit record"
    report = verify_lines(lines, config.policy)
    assert report.ok, report.violation
    assert report.records == len(lines)
