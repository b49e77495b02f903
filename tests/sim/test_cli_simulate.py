"""`jumpvpn simulate`: writes its four outputs, is byte-reproducible, refuses bad input."""

from __future__ import annotations

import builtins
import csv
import json
from pathlib import Path
from typing import Any

import pytest

from jumpvpn_core.cli import main
from jumpvpn_core.cli.simulate import UsageError, parse_duration_ms
from jumpvpn_core.sim import SCENARIOS

_PNG = b"\x89PNG\r\n\x1a\n"


def _simulate(out: Path, *extra: str, scenario: str = "nat-churn", seed: str = "4") -> int:
    return main(["simulate", "--scenario", scenario, "--sessions", "12", "--duration", "40s",
                 "--seed", seed, "--out", str(out), *extra])


def test_simulate_writes_trace_csv_and_both_plots(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert _simulate(tmp_path) == 0
    out = capsys.readouterr().out
    assert "sessions surviving" in out
    assert "recovery time p99" in out
    records = [json.loads(line) for line in
               (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert records
    assert {r["type"] for r in records} <= {"state_change", "reject"}
    assert sum(1 for r in records if r["to" if "to" in r else "type"] == "ATTACHED") >= 24
    with (tmp_path / "sessions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12
    assert {row["client_phase"] for row in rows} <= {"ATTACHED", "RECOVERING", "DEGRADED",
                                                    "TERMINATED"}
    for name in ("timeline.png", "recovery-cdf.png"):
        assert (tmp_path / name).read_bytes()[:8] == _PNG


def test_same_seed_writes_a_byte_identical_trace(tmp_path: Path) -> None:
    assert _simulate(tmp_path / "a", "--no-plots") == 0
    assert _simulate(tmp_path / "b", "--no-plots") == 0
    assert _simulate(tmp_path / "c", "--no-plots", seed="5") == 0
    a = (tmp_path / "a" / "trace.jsonl").read_bytes()
    assert a == (tmp_path / "b" / "trace.jsonl").read_bytes()
    assert a != (tmp_path / "c" / "trace.jsonl").read_bytes()
    assert (tmp_path / "a" / "sessions.csv").read_bytes() == \
        (tmp_path / "b" / "sessions.csv").read_bytes()
    assert not (tmp_path / "a" / "timeline.png").exists()


@pytest.mark.requirement("RM-4.1")
def test_split_brain_prints_zero_dual_bindings(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert _simulate(tmp_path, "--no-plots", scenario="split-brain") == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "cluster: dual_bindings" in x)
    assert line.split()[-2] == "0"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "nope"], "choose one of: " + ", ".join(sorted(SCENARIOS))),
        (["--scenario", "steady", "--sessions", "0"], "--sessions must be positive"),
        (["--scenario", "steady", "--sessions", "-3"], "--sessions must be positive"),
        (["--scenario", "steady", "--sessions", "many"], "--sessions must be an integer"),
        (["--scenario", "steady", "--duration", "0s"], "--duration must be greater than zero"),
        (["--scenario", "steady", "--duration", "ten minutes"], "use e.g. 600s, 10m, 5000ms"),
        (["--scenario", "steady", "--duration=-5s"], "is not a duration"),
        (["--scenario", "steady", "--seed", "-1"], "--seed must be non-negative"),
    ],
)
def test_bad_input_exits_2_with_a_message(args: list[str], message: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", *args, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"collapse_probability": 1.2}, "collapse_probability must be in [0, 1]"),
        ({"paths": [{"loss_bad": -0.5}]}, "loss_bad must be in [0, 1]"),
        ({"paths": [{"return_loss": 7}]}, "return_loss must be in [0, 1]"),
        ({"paths": [{"lossy": 1}]}, "unknown key(s) lossy; valid keys:"),
        ({"speed": 1}, "unknown key(s) speed; valid keys:"),
    ],
)
def test_bad_custom_config_exits_2(config: dict[str, Any], message: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert main(["simulate", "--scenario", "steady", "--sessions", "2", "--duration", "5s",
                 "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_custom_config_changes_the_run(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"paths": [{"name": "only", "loss_good": 1.0}]}))
    assert main(["simulate", "--scenario", "steady", "--sessions", "3", "--duration", "30s",
                 "--config", str(path), "--no-plots", "--out", str(tmp_path / "o")]) == 0
    with (tmp_path / "o" / "sessions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    # Every packet lost and no candidate: no session is still ATTACHED.
    assert all(row["client_phase"] != "ATTACHED" for row in rows)


def test_missing_sim_extra_exits_2_with_the_install_hint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_rich(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "rich" or name.startswith("rich."):
            raise ModuleNotFoundError(f"No module named {name!r}", name="rich")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rich)
    assert _simulate(tmp_path) == 2
    assert "pip install 'jumpvpn-core[sim]'" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "millis"), [("600s", 600_000), ("10m", 600_000),
                                              ("5000ms", 5_000), ("42", 42_000)])
def test_durations_parse(text: str, millis: int) -> None:
    assert parse_duration_ms(text) == millis


def test_zero_duration_is_refused() -> None:
    with pytest.raises(UsageError, match="greater than zero"):
        parse_duration_ms("0ms")
