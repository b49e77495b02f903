"""Genuine traces verify: the ones `jumpvpn scenarios`, `jumpvpn demo` and the CLI's
`--trace-key` / `--key` write and check (specs/trace-format.md; simulate's traces are
checked in tests/sim/test_sim_traces_verify.py). Tampering: tests/test_trace_tampering.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from jumpvpn_core.audit.trace import verify_lines
from jumpvpn_core.audit.trace_writer import TraceWriter
from jumpvpn_core.cli import main

KEY = bytes(range(32))
SPECS = Path(__file__).resolve().parent.parent / "specs" / "scenarios"


def _parsed(lines: list[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def scenario_trace(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    trace = tmp_path_factory.mktemp("trace") / "scenarios.jsonl"
    assert main(["scenarios", "--dir", str(SPECS), "--trace", str(trace),
                 "--trace-key", KEY.hex()]) == 0
    return trace.read_text(encoding="utf-8").splitlines()


@pytest.mark.requirement("RM-10", "RM-6.2")
def test_the_scenario_trace_verifies_with_its_key(scenario_trace: list[str]) -> None:
    genuine = scenario_trace
    report = verify_lines(genuine, key=KEY)
    assert report.ok, report.violation
    assert (report.chained, report.authenticated) == (True, True)
    assert report.streams > 26
    kinds = [r["type"] for r in _parsed(genuine)]
    assert kinds[0] == "trace_begin"
    assert kinds[-1] == "trace_end"
    assert "policy" in kinds
    assert "checkpoint" in kinds
    assert kinds.count("stream_end") == report.streams
    without_key = verify_lines(genuine)
    assert (without_key.ok, without_key.authenticated) == (True, False)


@pytest.mark.requirement("RM-10")
def test_the_demo_trace_verifies() -> None:
    from jumpvpn_core.cli.demo import run_demo

    lines: list[str] = []
    with TraceWriter(lines.append, writer="jumpvpn demo", key=KEY) as trace:
        assert run_demo(io.StringIO(), trace) == 0
    report = verify_lines(lines, key=KEY)
    assert report.ok, report.violation
    assert report.streams == 2
    replays = [r for r in _parsed(lines) if r.get("reason") == "REPLAY_DETECTED"]
    assert replays
    assert all(type(r["nonce"]) is int for r in replays)


def test_cli_trace_key_and_verify_key(scenario_trace: list[str], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.jsonl"
    trace.write_text("\n".join(scenario_trace) + "\n", encoding="utf-8")
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    assert main(["verify-trace", "--key", str(key_file), str(trace)]) == 0
    assert "chain intact, MACs verified" in capsys.readouterr().out
    assert main(["verify-trace", str(trace)]) == 0
    assert "not authenticated (no --key)" in capsys.readouterr().out
    assert main(["verify-trace", "--key", "ab" * 32, str(trace)]) == 1
    assert "line 1: the trace was MACed with another key" in capsys.readouterr().out
    assert main(["verify-trace", "--key", "abc", str(trace)]) == 2
    assert "bad --key" in capsys.readouterr().err
    assert main(["verify-trace", "--key", KEY.hex(), "--unchained", str(trace)]) == 2
    assert main(["scenarios", "--trace", str(trace), "--trace-key", "zz"]) == 2




@pytest.mark.requirement("RM-10")
def test_the_simulate_cli_writes_a_trace_its_key_verifies(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY.hex(), encoding="ascii")
    assert main(["simulate", "--scenario", "replay", "--sessions", "6", "--duration", "30s",
                 "--seed", "3", "--out", str(tmp_path / "sim"), "--no-plots",
                 "--trace-key", str(key_file)]) == 0
    capsys.readouterr()
    trace = tmp_path / "sim" / "trace.jsonl"
    assert main(["verify-trace", "--key", str(key_file), str(trace)]) == 0
    assert "chain intact, MACs verified" in capsys.readouterr().out
    assert main(["simulate", "--scenario", "replay", "--out", str(tmp_path / "x"),
                 "--trace-key", str(tmp_path / "missing")]) == 2
