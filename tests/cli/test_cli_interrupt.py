"""Ctrl-C ends a run with status 130 and leaves usable partial outputs.

A real process gets a real SIGINT: `simulate` closes its trace (every line whole JSON) and
writes the CSV and `summary.json` of the sessions as they were; `scenarios` writes the trace
of the scripts it replayed. One line on stderr says it was interrupted; no traceback.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _interruptible() -> None:
    # As a terminal's foreground job: Ctrl-C's default action. A shell that runs the suite
    # as a background job (`cmd &` without job control) starts it with SIGINT ignored, a
    # disposition children inherit and Python then keeps (it installs its handler only
    # over SIG_DFL).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(tmp_path: Path, *argv: str) -> subprocess.Popen[str]:
    # The arguments are this test's own constants.
    return subprocess.Popen([sys.executable, "-m", "jumpvpn_core", *argv],  # noqa: S603
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_interruptible)


def _wait_for(path: Path, process: subprocess.Popen[str], timeout_s: float = 120) -> None:
    """Until `path` has content (the run is under way); a hang guard, not a speed check."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return
        if process.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: "
                        f"{process.communicate()}")
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"{path} never got any content")


@pytest.mark.requirement("RM-6.2")
def test_ctrl_c_during_simulate_leaves_trace_csv_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "run"
    process = _start(tmp_path, "simulate", "--scenario", "nat-churn", "--sessions", "3000",
                     "--duration", "600s", "--seed", "2", "--no-plots", "--out", str(out))
    _wait_for(out / "trace.jsonl", process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == "jumpvpn simulate: interrupted"
    lines = (out / "trace.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines
    for line in lines:
        json.loads(line)  # closed cleanly: no half-written last record
    with (out / "sessions.csv").open(encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == 3000
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["interrupted"] is True
    assert 0 <= summary["reached_ms"] < 600_000
    assert summary["sessions"] == 3000
    assert stdout == ""


def test_ctrl_c_during_scenarios_still_writes_the_trace(tmp_path: Path) -> None:
    # Scripts replay fast, so interrupt one that waits: a --cmd stand-in that marks that it
    # started and then never answers.
    started = tmp_path / "started"
    stand_in = tmp_path / "silent.py"
    stand_in.write_text(f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\n"
                        "time.sleep(120)\n", encoding="utf-8")
    trace = tmp_path / "trace.jsonl"
    process = _start(tmp_path, "scenarios", "--trace", str(trace), "--cmd",
                     f"{sys.executable} {stand_in}", "--role", "client",
                     "--step-timeout-ms", "100000")
    deadline = time.monotonic() + 120
    while not started.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert started.exists(), process.communicate()
    process.send_signal(signal.SIGINT)
    _stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == "jumpvpn scenarios: interrupted"
    assert trace.exists()
