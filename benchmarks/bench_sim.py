"""The simulator end to end: events per CPU second on one core, for fixed small worlds.

An event is one call of `step()` made by the world (`WorldStats.events`). A world is built
outside the timed region (its construction attaches every session, 3 events each, which
are not counted); `World.run()` is timed with `time.process_time_ns`, the CPU time of this
process, so that time spent descheduled on a shared machine is left out. The world runs in
this process on one thread, so CPU time is one core's time.

Worlds: `steady` (clean paths) and `loss-spike` (Gilbert-Elliott burst loss on the primary
path: recoveries, reattaches with their HMACs, path switches), 300 sessions, 3 simulated
minutes, seed 1. Each is run 3 times, alternating, and the median rate is reported, beside
the rate of bare `step()` on a chain of steady traffic measured in the same run (the
ceiling a world could reach if it cost nothing but the core's cheapest step).

Target (simulator issue): >= 200,000 events/s on one core.

Sharded (`jumpvpn simulate --workers N`, `jumpvpn_core.sim.shards`): a `steady` world of
2,000 sessions and 1 simulated minute, run whole through `ShardedRun` with 1 worker (in this
process) and with 2 worker processes, alternating, 3 runs each, records merged and dropped.
Per process: events per CPU second, the CPU time of this process plus its workers' (so the
cost of starting the workers, pickling and merging is counted). Speed-up: wall time with 1
worker over wall time with 2, in the same run (at most 2 on 2 usable CPUs; lower on a
loaded machine, which the row's notes give as the load average).

Smoke: a tiny `steady` world (5 sessions, 10,999 ms) whose event count is known in
advance: every session starts within the first second and heartbeats every second on a
lossless path, so each makes exactly 10 heartbeats of 2 steps (server, then client), plus
3 events at construction. A tiny `loss-spike` world must give the same count and outcomes
twice for one seed.
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
import time

from benchmarks.fixtures import CLIENT_LOCAL, T0, attached_client
from benchmarks.harness import BenchResult
from jumpvpn_core import InboundTraffic, Phase, step
from jumpvpn_core.sim import SessionOutcome, World, build_scenario
from jumpvpn_core.sim.shards import ShardedRun, usable_cpus

__all__ = ["SCENARIOS", "TARGET_EVENTS_PER_S", "run"]

TARGET_EVENTS_PER_S = 200_000
SCENARIOS = ("steady", "loss-spike")
SESSIONS, DURATION_MS, SEED, REPEATS = 300, 180_000, 1, 3
_CONSTRUCTION_EVENTS = 3  # Attach (client), Attach (server), CandidateDiscovered (client)
_BARE_STEPS = 20_000
SHARD_SESSIONS, SHARD_DURATION_MS, SHARD_WINDOW_MS = 2_000, 60_000, 10_000


def _sharded(workers: int, sessions: int = SHARD_SESSIONS,
             duration_ms: int = SHARD_DURATION_MS) -> tuple[int, float, float,
                                                            list[SessionOutcome]]:
    """(events, wall s, CPU s of this process and its workers, outcomes) of one sharded
    `steady` run, construction included."""
    config = build_scenario("steady", sessions, duration_ms, SEED)
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    with ShardedRun(config, workers) as run:
        for mark in range(SHARD_WINDOW_MS, duration_ms + SHARD_WINDOW_MS, SHARD_WINDOW_MS):
            for _record in run.advance(mark):
                pass
        result = run.finish()
    wall = time.perf_counter() - wall_start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, joined by finish()
    cpu = (time.process_time() - cpu_start + after.ru_utime - before.ru_utime
           + after.ru_stime - before.ru_stime)
    return result.stats.events, wall, cpu, result.outcomes


def _sharded_rows() -> list[BenchResult]:
    walls: dict[int, list[float]] = {1: [], 2: []}
    rates: dict[int, list[float]] = {1: [], 2: []}
    counts: set[int] = set()
    for _ in range(REPEATS):
        for workers in (1, 2):
            events, wall, cpu, _outcomes = _sharded(workers)
            counts.add(events)
            walls[workers].append(wall)
            rates[workers].append(events / cpu)
    assert len(counts) == 1, f"event count differs with the worker count: {counts}"
    (events,) = counts
    world = f"steady, {SHARD_SESSIONS:,} sessions, {SHARD_DURATION_MS // 60_000} min virtual"
    one = f"sim: sharded {world}, 1 worker, per process"
    rows = [BenchResult(one, statistics.median(rates[1]), "events/s",
                        notes=f"{events:,} events per run; CPU time; {REPEATS} runs: "
                        + ", ".join(f"{r:,.0f}" for r in rates[1]))]
    two = statistics.median(rates[2])
    rows.append(BenchResult(
        f"sim: sharded {world}, 2 workers, per process", two, "events/s", one,
        two / statistics.median(rates[1]),
        notes="CPU time of this process and both workers; " f"{REPEATS} runs: "
        + ", ".join(f"{r:,.0f}" for r in rates[2])))
    speedup = statistics.median(walls[1]) / statistics.median(walls[2])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    rows.append(BenchResult(
        f"sim: sharded {world}, speed-up with 2 workers (wall)", speedup, "x",
        notes=f"median wall 1 worker {statistics.median(walls[1]):.2f} s, 2 workers "
        f"{statistics.median(walls[2]):.2f} s; {usable_cpus()} usable CPUs; "
        f"load average {load}"))
    return rows


def _run_world(name: str, sessions: int, duration_ms: int,
               seed: int) -> tuple[int, int, int, list[SessionOutcome]]:
    """(events at construction, events during run, CPU ns of run, outcomes)."""
    world = World(build_scenario(name, sessions, duration_ms, seed))
    built = world.stats.events
    gc.collect()
    cpu_start = time.process_time_ns()
    world.run()
    cpu = time.process_time_ns() - cpu_start
    return built, world.stats.events - built, cpu, world.outcomes()


def _bare_step_rate() -> float:
    """Steps per CPU second of a chain of steady client traffic (the core's cheapest step)."""
    start = attached_client()
    events = [InboundTraffic(T0 + 1 + i, CLIENT_LOCAL, 1200) for i in range(_BARE_STEPS)]
    state = start
    gc.collect()
    cpu_start = time.process_time_ns()
    for event in events:
        state, _ = step(state, event)
    cpu = time.process_time_ns() - cpu_start
    assert state.phase is Phase.ATTACHED
    assert state.link.last_rx_ms == events[-1].now_ms
    return _BARE_STEPS * 1e9 / cpu


def _smoke() -> list[BenchResult]:
    sessions, duration = 5, 10_999
    built, events, _cpu, outcomes = _run_world("steady", sessions, duration, SEED)
    heartbeats = duration // 1_000  # every start is in [0, 999], so exactly 10 each
    assert built == sessions * _CONSTRUCTION_EVENTS, built
    assert events == sessions * heartbeats * 2, events
    assert all(o.client_phase == o.server_phase == Phase.ATTACHED.value for o in outcomes)
    rows = [BenchResult("sim: steady (smoke)", 0.0, notes="smoke: exact event count checked")]
    first = _run_world("loss-spike", 20, 30_000, SEED)
    again = _run_world("loss-spike", 20, 30_000, SEED)
    assert first[1] > 0
    assert (first[0], first[1], first[3]) == (again[0], again[1], again[3]), "not deterministic"
    other = _run_world("loss-spike", 20, 30_000, SEED + 1)
    assert other[3] != first[3], "the seed does not reach the world"
    rows.append(BenchResult("sim: loss-spike (smoke)", 0.0,
                            notes="smoke: same events and outcomes twice for one seed"))
    whole = _sharded(1, 6, 5_000)
    sharded = _sharded(2, 6, 5_000)
    assert (whole[0], whole[3]) == (sharded[0], sharded[3]), "shards change the outcome"
    rows.append(BenchResult("sim: sharded (smoke)", 0.0,
                            notes="smoke: same events and outcomes with 1 and 2 workers"))
    return rows


def run(smoke: bool) -> list[BenchResult]:
    """Smoke: exact and deterministic event counts. Full: events per CPU second."""
    if smoke:
        return _smoke()
    rates: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    counts: dict[str, set[int]] = {name: set() for name in SCENARIOS}
    bare: list[float] = []
    for _ in range(REPEATS):
        for name in SCENARIOS:
            _built, events, cpu, _outcomes = _run_world(name, SESSIONS, DURATION_MS, SEED)
            rates[name].append(events * 1e9 / cpu)
            counts[name].add(events)
        bare.append(_bare_step_rate())
    bare_rate = statistics.median(bare)
    peer = "sim: bare step() rate, steady client traffic chain"
    results = []
    for name in SCENARIOS:
        assert len(counts[name]) == 1, f"{name}: event count differs between runs"
        rate = statistics.median(rates[name])
        (events,) = counts[name]
        results.append(BenchResult(
            f"sim: {name}, {SESSIONS} sessions, {DURATION_MS // 60_000} min virtual",
            rate, "events/s", peer, rate / bare_rate,
            f">= {TARGET_EVENTS_PER_S:,} events/s (CPU)", rate >= TARGET_EVENTS_PER_S,
            f"{events:,} events per run, seed {SEED}; CPU time of World.run; "
            f"{REPEATS} runs: " + ", ".join(f"{r:,.0f}" for r in rates[name])))
    results.append(BenchResult(peer, bare_rate, "events/s",
                               notes=f"{_BARE_STEPS:,} steps per run, CPU time, "
                               f"median of {REPEATS}"))
    return results + _sharded_rows()
