"""Every simulator scenario writes a trace that `verify-trace` accepts (RM-10)."""

from __future__ import annotations

from typing import Any

import pytest

from jumpvpn_core.audit.trace import verify_lines
from jumpvpn_core.audit.trace_writer import TraceWriter
from jumpvpn_core.sim import SCENARIOS, World, build_scenario


@pytest.mark.requirement("RM-10")
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_trace_passes_verify_trace(name: str) -> None:
    config = build_scenario(name, 40, 150_000, 5)
    lines: list[str] = []
    records: list[dict[str, Any]] = []
    key = bytes(range(32))
    with TraceWriter(lines.append, writer="jumpvpn simulate", key=key) as trace:

        def on_record(record: dict[str, Any]) -> None:
            records.append(record)
            trace.write(record)

        World(config, on_record=on_record).run()
    assert records, "the scenario wrote no audit record"
    report = verify_lines(lines, config.policy, key=key)
    assert report.ok, report.violation
    assert (report.records, report.authenticated) == (len(records), True)
