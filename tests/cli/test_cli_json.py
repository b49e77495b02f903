"""Machine-readable output: `--json` on every verb that reports, `summary.json`, the tally
behind the plots, and the packaged specs the verbs read by default."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path
from typing import Any

import pytest

import jumpvpn_core.specs as specs_module
from jumpvpn_core.cli import main
from jumpvpn_core.sim.plots import SimTally

ROOT = Path(__file__).resolve().parent.parent.parent


def _json(argv: list[str], capsys: pytest.CaptureFixture[str], status: int = 0) -> Any:
    assert main([*argv, "--json"]) == status
    captured = capsys.readouterr()
    return json.loads(captured.out)


def test_scenarios_json_lists_every_script(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(["scenarios", "--trace", str(tmp_path / "t.jsonl")], capsys)
    assert data["ok"] is True
    assert data["total"] == len(list((ROOT / "specs" / "scenarios").glob("*.txt")))
    assert data["passed"] == data["total"]
    assert {"file", "section", "title", "expect", "observed", "ok"} <= set(data["scripts"][0])
    assert data["records"] == len((tmp_path / "t.jsonl").read_text().splitlines())


def test_vectors_check_defaults_to_the_packaged_vectors(
        capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(["vectors", "check"], capsys)
    assert data["ok"] is True
    assert {Path(name).name for name in data["files"]} == {"client.jsonl", "server.jsonl"}
    assert data["matched"] == data["total"] > 100


def test_explore_verify_trace_diagram_and_traceability_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    explored = _json(["explore", "--depth", "2"], capsys)
    assert explored["ok"] is True
    assert [r["role"] for r in explored["roles"]] == ["client", "server"]
    assert all(r["states"] > 1 and r["violations"] == [] for r in explored["roles"])
    assert main(["scenarios", "--trace", str(tmp_path / "t.jsonl")]) == 0
    capsys.readouterr()
    verified = _json(["verify-trace", str(tmp_path / "t.jsonl")], capsys)
    assert verified["ok"] is True
    assert verified["records"] > 0
    drawn = _json(["diagram", "--out", str(tmp_path / "d.svg")], capsys)
    assert drawn["mermaid"].startswith("---\ntitle: Session phases")
    assert (tmp_path / "d.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
    matrix = _json(["traceability"], capsys)
    assert matrix["ok"] is True
    rows = (ROOT / "specs" / "requirements.md").read_text(encoding="utf-8").splitlines()
    assert matrix["requirements"] == sum(1 for row in rows if row.startswith("| RM-"))


@pytest.mark.requirement("RM-7", "RM-9")
def test_simulate_json_equals_summary_json_and_counts_failures(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    data = _json(["simulate", "--scenario", "collapse", "--sessions", "40", "--duration",
                  "60s", "--seed", "1", "--out", str(out)], capsys)
    assert json.loads((out / "summary.json").read_text(encoding="utf-8")) == data
    episodes = data["recovery_episodes"]
    assert episodes["episodes"] == (episodes["recovered"] + sum(episodes["failed"].values())
                                    + episodes["still_recovering"])
    # Half of the sessions collapse and the long outages outlive the recovery window: the
    # failures are counted, so the recovered share is below one.
    assert sum(episodes["failed"].values()) > 0
    assert episodes["recovered"] < episodes["episodes"]
    assert data["surviving"] + sum(data["terminated"].values()) == 40
    for name in ("trace.jsonl", "sessions.csv", "summary.json", "timeline.png",
                 "recovery-cdf.png"):
        assert str(out / name) in data["outputs"]
        assert (out / name).stat().st_size > 0


def _change(session: str, ts: int, before: str, after: str, reason: str = "R") -> dict[str, Any]:
    return {"type": "state_change", "role": "client", "session_id": session, "ts_ms": ts,
            "from": before, "to": after, "reason": reason}


@pytest.mark.requirement("RM-9")
def test_tally_counts_failed_and_open_episodes_in_the_percentiles() -> None:
    tally = SimTally(sessions=4, duration_ms=10_000, buckets=10)
    for session in "abcd":
        tally.record(_change(session, 0, "BIRTH", "ATTACHED"))
    tally.record(_change("a", 1_000, "ATTACHED", "RECOVERING"))
    tally.record(_change("a", 1_500, "RECOVERING", "ATTACHED"))  # 500 ms
    tally.record(_change("b", 2_000, "ATTACHED", "RECOVERING"))
    tally.record(_change("b", 2_100, "RECOVERING", "DEGRADED"))
    tally.record(_change("b", 5_000, "DEGRADED", "ATTACHED"))  # 3,000 ms through DEGRADED
    tally.record(_change("c", 3_000, "ATTACHED", "RECOVERING"))
    tally.record(_change("c", 8_000, "RECOVERING", "TERMINATED", "NO_VIABLE_CANDIDATE"))
    tally.record(_change("d", 9_000, "ATTACHED", "RECOVERING"))
    tally.record({"type": "reject", "role": "client"})  # ignored
    tally.finish(10_000)
    assert tally.episodes == 4
    assert tally.to_data() == {
        "episodes": 4, "recovered": 2, "failed": {"NO_VIABLE_CANDIDATE": 1},
        "still_recovering": 1, "terminated_outside_recovery": {},
        "p50_ms": 3_000, "p95_ms": None, "p99_ms": None,
        "recovered_p50_ms": 500, "recovered_p95_ms": 3_000, "recovered_p99_ms": 3_000,
    }
    # Occupancy: every bucket adds up to the session count; at the end 2 ATTACHED (a, b),
    # 1 RECOVERING (d), 1 TERMINATED (c).
    assert all(sum(bucket) == 4 for bucket in tally.occupancy)
    assert tally.occupancy[-1] == (0, 2, 1, 0, 1)


def test_specs_come_from_the_package_when_it_carries_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert specs_module.specs_dir() == ROOT / "specs"  # a checkout: the one copy
    packaged = tmp_path / "_specs"
    (packaged / "scenarios").mkdir(parents=True)
    monkeypatch.setattr(importlib.resources, "files", lambda _name: tmp_path)
    assert specs_module.scenarios_dir() == packaged / "scenarios"
    monkeypatch.setattr(importlib.resources, "files",
                        lambda _name: tmp_path / "nothing")
    monkeypatch.setattr(specs_module, "checkout_root", lambda: None)
    with pytest.raises(specs_module.SpecsNotFoundError, match="pass --dir"):
        specs_module.specs_dir()
