"""Sharded simulation: the merged outputs are byte-identical for any number of workers, a
failing worker is an error (never a partial result), and unshardable worlds run whole."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from jumpvpn_core.cli import main
from jumpvpn_core.sim import World, build_scenario
from jumpvpn_core.sim.shards import ShardedRun, SimWorkerError, default_workers, usable_cpus
from jumpvpn_core.sim.world import config_shardable

# Facts of one run rather than figures of the world: they differ with the worker count.
_RUN_FACTS = ("workers", "wall_s", "events_per_wall_s", "outputs")


def _simulate(out: Path, workers: int, scenario: str = "nat-churn") -> int:
    return main(["simulate", "--scenario", scenario, "--sessions", "7", "--duration", "25s",
                 "--seed", "3", "--no-plots", "--json", "--out", str(out),
                 "--workers", str(workers)])


def _figures(out: Path) -> dict[str, Any]:
    data = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if k not in _RUN_FACTS}


def test_trace_csv_and_figures_are_byte_identical_for_one_two_and_three_workers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for workers in (1, 2, 3):
        assert _simulate(tmp_path / str(workers), workers) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["workers"] == workers
    one = tmp_path / "1"
    trace = (one / "trace.jsonl").read_bytes()
    assert trace.count(b'"type": "state_change"') > 7  # every session at least attached
    for name in ("2", "3"):
        assert (tmp_path / name / "trace.jsonl").read_bytes() == trace
        assert (tmp_path / name / "sessions.csv").read_bytes() == \
            (one / "sessions.csv").read_bytes()
        assert _figures(tmp_path / name) == _figures(one)


def test_a_shard_is_the_whole_world_restricted_to_its_sessions() -> None:
    # In-process, no worker: each session runs as it would beside all the others.
    config = build_scenario("loss-spike", 6, 20_000, 9)
    whole = World(config)
    whole.run()
    rows = {o.session_id: o for o in whole.outcomes()}
    events = 0
    for number in range(3):
        part = World(config, shard=(number, 3))
        part.run()
        events += part.stats.events
        assert [s.index for s in part.sessions] == list(range(number, 6, 3))
        for outcome in part.outcomes():
            assert rows[outcome.session_id] == outcome
    assert events == whole.stats.events


def test_sessions_draw_from_their_own_prng() -> None:
    # Adding sessions to a world leaves the first ones' runs as they were.
    small = World(build_scenario("nat-churn", 3, 20_000, 5))
    large = World(build_scenario("nat-churn", 8, 20_000, 5))
    small.run()
    large.run()
    assert small.outcomes() == large.outcomes()[:3]


@pytest.mark.parametrize("scenario", ["split-brain", "replay"])
def test_cluster_and_attack_worlds_run_whole_and_say_so(
        tmp_path: Path, scenario: str, capsys: pytest.CaptureFixture[str]) -> None:
    config = build_scenario(scenario, 4, 5_000, 1)
    assert not config_shardable(config)
    assert default_workers(config) == 1
    with pytest.raises(ValueError, match="cannot be sharded"):
        World(config, shard=(0, 2))
    assert _simulate(tmp_path, 3, scenario=scenario) == 0
    assert json.loads(capsys.readouterr().out)["workers"] == 1


class FailingWorld(World):
    """A world that breaks once it has run 10 s: stands in for a shard that fails."""

    def run_until(self, time_ms: int) -> None:
        super().run_until(time_ms)
        if self.now_ms >= 10_000 and self.shard[0] == 1:
            raise RuntimeError("shard broke")


class DyingWorld(World):
    """A world whose process dies without a word."""

    def run_until(self, time_ms: int) -> None:
        super().run_until(time_ms)
        if self.now_ms >= 10_000 and self.shard[0] == 1:
            os._exit(3)


@pytest.mark.parametrize(("factory", "message"), [
    (FailingWorld, "worker 1 of 2 failed: RuntimeError: shard broke"),
    (DyingWorld, "worker 1 of 2 died"),
])
def test_a_failing_worker_is_a_typed_error(factory: type[World], message: str) -> None:
    config = build_scenario("steady", 4, 30_000, 1)
    with ShardedRun(config, 2, factory=factory) as run:
        assert list(run.advance(5_000))  # the first window is whole
        with pytest.raises(SimWorkerError, match=message):
            run.advance(10_000)


def test_simulate_exits_2_without_outputs_when_a_worker_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from jumpvpn_core.cli import simulate

    def failing(config: Any, workers: int) -> ShardedRun:
        return ShardedRun(config, workers, factory=FailingWorld)

    monkeypatch.setattr(simulate, "ShardedRun", failing)
    assert _simulate(tmp_path, 2, scenario="steady") == 2
    err = capsys.readouterr().err
    assert "worker 1 of 2 failed: RuntimeError: shard broke" in err
    assert "no outputs written" in err
    assert not any((tmp_path / name).exists()
                   for name in ("trace.jsonl", "sessions.csv", "summary.json"))


def test_bad_worker_counts_are_refused(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert _simulate(tmp_path, 0) == 2
    assert "--workers must be positive" in capsys.readouterr().err
    config = build_scenario("steady", 2, 1_000, 1)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        ShardedRun(config, 0)
    with pytest.raises(ValueError, match="0 <= number < count"):
        World(config, shard=(2, 2))
    # More workers than sessions: one per session.
    with ShardedRun(config, 5) as run:
        assert run.workers == 2
        run.finish()


def _records_and_rows(workers: int, start_method: str | None = None
                      ) -> tuple[list[Any], list[Any]]:
    config = build_scenario("flapping", 5, 15_000, 2)
    with ShardedRun(config, workers, start_method=start_method) as run:
        records = [*run.advance(7_000), *run.advance(15_000)]
        return records, run.finish().outcomes


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_the_start_method_does_not_change_the_merged_run(start_method: str) -> None:
    if start_method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"this platform has no {start_method} start method")
    records, rows = _records_and_rows(1)
    assert [(t, i) for t, i, _r in records] == sorted((t, i) for t, i, _r in records)
    assert {i for _t, i, _r in records} == set(range(5))
    assert _records_and_rows(2, start_method) == (records, rows)


def test_default_workers_are_the_usable_cpus_for_a_large_world_and_one_for_a_small() -> None:
    assert default_workers(build_scenario("steady", 10, 60_000, 1)) == 1  # 600 session-s
    large = build_scenario("steady", 1_000, 600_000, 1)
    assert default_workers(large) == min(usable_cpus(), 1_000)
    assert default_workers(build_scenario("steady", 1, 10**8, 1)) == 1  # one session
