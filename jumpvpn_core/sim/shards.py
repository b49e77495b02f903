"""A world's sessions sharded across worker processes, merged into one deterministic run.

`ShardedRun(config, workers)` splits the sessions of a world into `workers` shards (session
`i` goes to shard `i % workers`), runs each shard as its own `World(shard=...)` in its own
process, and merges what they produce:

* audit records, ordered by (virtual time, session index, order within the session): a
  session's records come from one shard in its own order, so the merged stream is the same
  whatever the number of workers;
* the per-session outcomes (and time-on-best-path figures), in index order; the counters
  (`WorldStats`) summed.

Each session draws from its own PRNG (`world.derived_seed`), so a shard's sessions run as
they would in one world holding all of them: the merged trace, CSV and figures are
byte-identical for 1, 2, 3, ... workers. `workers=1` runs the one shard in this process
(no child process at all).

A world with a cluster or attackers is not shardable (`config_shardable`): its sessions
share a store or an attacker. It always runs whole in this process, and `ShardedRun.workers`
says 1 whatever was asked for.

The run advances window by window of virtual time (`advance(mark)`): every shard runs to
`mark`, then its records up to `mark` are merged. A shard that fails (an exception in its
world, a process that dies) raises `SimWorkerError`: the run has no result to give.

Worker processes are started with `fork` when this process runs a single thread on a
platform that has it, with `spawn` otherwise (or as `start_method` says), and with SIGINT
blocked: they ignore Ctrl-C; the parent decides what an interrupt means (`drain()`, then
`finish()`). The results do not depend on the start method.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from operator import itemgetter
from typing import Any

import attrs

from jumpvpn_core.sim.bestpath import SessionPathFigures
from jumpvpn_core.sim.session import SessionOutcome, WorldStats
from jumpvpn_core.sim.world import SimConfig, World, config_shardable

__all__ = [
    "DEFAULT_MIN_SESSION_SECONDS",
    "RunResult",
    "ShardedRun",
    "SimWorkerError",
    "default_workers",
    "merge_stats",
    "usable_cpus",
]

#: Below this many session-seconds a run uses one worker by default: starting a worker
#: process (about 0.3 s to import the package) would cost more than the run.
DEFAULT_MIN_SESSION_SECONDS = 50_000

#: One merged record: (virtual time, session index, audit record).
Keyed = tuple[int, int, dict[str, Any]]
WorldFactory = Callable[..., World]
_KEY = itemgetter(0, 1)


class SimWorkerError(RuntimeError):
    """A shard of a sharded run failed: the run has no whole result."""


@attrs.frozen
class RunResult:
    """What a (sharded) run leaves: the merged counters and per-session outcomes, and with
    the path-quality driver each session's time-on-best-path figures (index order)."""

    config: SimConfig
    stats: WorldStats
    now_ms: int
    outcomes: list[SessionOutcome]
    surviving: int
    workers: int
    path_figures: list[SessionPathFigures] = attrs.field(factory=list)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - no affinity on this platform (macOS, Windows)
        return os.cpu_count() or 1


def default_workers(config: SimConfig) -> int:
    """The number of workers `simulate` uses without `--workers`: the usable CPUs, capped at
    the number of sessions; 1 for a run under `DEFAULT_MIN_SESSION_SECONDS` or a world
    that cannot be sharded."""
    if not config_shardable(config):
        return 1
    if config.sessions * config.duration_ms // 1_000 < DEFAULT_MIN_SESSION_SECONDS:
        return 1
    return max(1, min(usable_cpus(), config.sessions))


def merge_stats(parts: list[WorldStats]) -> WorldStats:
    """The counters of several shards of one world as one `WorldStats`."""
    merged = WorldStats(recovery_histogram=[0] * len(parts[0].recovery_histogram))
    for part in parts:
        merged.events += part.events
        merged.transitions.update(part.transitions)
        merged.rejections.update(part.rejections)
        merged.security_events += part.security_events
        merged.end_reasons.update(part.end_reasons)
        merged.switches += part.switches
        merged.attacks_sent += part.attacks_sent
        merged.cluster.update(part.cluster)
        merged.recovery_histogram = [a + b for a, b in
                                     zip(merged.recovery_histogram, part.recovery_histogram,
                                         strict=True)]
        merged.timelines.update(part.timelines)
        merged.path_traces.update(part.path_traces)
    merged.timelines = dict(sorted(merged.timelines.items()))
    merged.path_traces = dict(sorted(merged.path_traces.items()))
    return merged


@attrs.frozen
class _ShardResult:
    stats: WorldStats
    now_ms: int
    outcomes: list[tuple[int, SessionOutcome]]
    surviving: int
    path_figures: list[SessionPathFigures]


class _Shard:
    """One shard's world, run in this process."""

    def __init__(self, config: SimConfig, shard: tuple[int, int], factory: WorldFactory,
                 check: bool) -> None:
        self._buffer: list[Keyed] = []
        self.world = factory(config, check=check, shard=shard,
                             on_session_record=self._keep)

    def _keep(self, now_ms: int, index: int, record: dict[str, Any]) -> None:
        self._buffer.append((now_ms, index, record))

    def take(self) -> list[Keyed]:
        """The records kept since the last call, in merge order (a stable sort keeps each
        session's own order)."""
        batch, self._buffer = self._buffer, []
        batch.sort(key=_KEY)
        return batch

    def run_until(self, mark: int) -> list[Keyed]:
        self.world.run_until(mark)
        return self.take()

    def result(self) -> _ShardResult:
        world = self.world
        return _ShardResult(world.stats, world.now_ms,
                            [(s.index, s.outcome()) for s in world.sessions],
                            world.surviving(), world.path_figures())


def _worker(conn: Connection, config: SimConfig, shard: tuple[int, int],
            factory: WorldFactory, check: bool) -> None:
    """A worker process: builds its shard, then answers `run` and `finish` commands."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        local = _Shard(config, shard, factory, check)
        while True:
            command, mark = conn.recv()
            if command == "run":
                conn.send(("ok", local.run_until(mark), local.world.stats.events))
            else:
                conn.send(("ok", local.result(), local.world.stats.events))
                return
    except EOFError:
        return  # the parent went away: nothing to report to
    except BaseException as exc:  # reported to the parent, which raises it typed
        conn.send(("error", f"{type(exc).__name__}: {exc}", 0))
    finally:
        conn.close()


class _Remote:
    """One shard in a worker process."""

    def __init__(self, context: Any, config: SimConfig, shard: tuple[int, int],
                 factory: WorldFactory, check: bool) -> None:
        self.shard = shard
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, config, shard, factory,
                                                             check),
                                       name=f"jumpvpn-sim-shard-{shard[0]}", daemon=True)
        self.process.start()
        child.close()
        self.pending = False
        self.events = 0

    def send(self, command: str, mark: int) -> None:
        self.conn.send((command, mark))
        self.pending = True

    def receive(self) -> Any:
        try:
            status, payload, events = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(5)
            raise SimWorkerError(f"worker {self.shard[0]} of {self.shard[1]} died (exit "
                                 f"status {self.process.exitcode}) before it reported"
                                 ) from None
        self.pending = False
        if status != "ok":
            raise SimWorkerError(f"worker {self.shard[0]} of {self.shard[1]} failed: "
                                 f"{payload}")
        self.events = events
        return payload

    def stop(self) -> None:
        self.conn.close()
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


def _start_method() -> str:
    """`fork` where the platform has it and this process runs one thread (a worker then
    starts without importing anything: a copy of this process); `spawn` otherwise (forking
    a process that runs other threads can copy a lock one of them holds)."""
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "spawn"


class ShardedRun:
    """A world run as `workers` shards (see the module). Use as a context manager, or call
    `close()`: it ends the worker processes."""

    def __init__(self, config: SimConfig, workers: int, *, check: bool = False,
                 factory: WorldFactory = World, start_method: str | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if not config_shardable(config):
            workers = 1
        workers = min(workers, config.sessions)
        self.config = config
        self.workers = workers
        self.mark = 0
        self._local: _Shard | None = None
        self._remotes: list[_Remote] = []
        if workers == 1:
            self._local = _Shard(config, (0, 1), factory, check)
            return
        context = multiprocessing.get_context(start_method or _start_method())
        blocked = hasattr(signal, "pthread_sigmask")
        if blocked:  # the children inherit the mask: Ctrl-C reaches this process only
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            for number in range(workers):
                self._remotes.append(_Remote(context, config, (number, workers), factory,
                                             check))
        except BaseException:
            self.close()
            raise
        finally:
            if blocked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def __enter__(self) -> ShardedRun:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def events(self) -> int:
        """Events stepped so far, over all shards (as of the last window)."""
        if self._local is not None:
            return self._local.world.stats.events
        return sum(remote.events for remote in self._remotes)

    def advance(self, mark: int) -> Iterator[Keyed]:
        """Run every shard to `mark` (ms of virtual time, capped at the duration); the
        records of the window, merged."""
        mark = min(mark, self.config.duration_ms)
        if self._local is not None:
            batch = self._local.run_until(mark)
            self.mark = mark
            return iter(batch)
        for remote in self._remotes:
            remote.send("run", mark)
        batches = [remote.receive() for remote in self._remotes]
        self.mark = mark
        return heapq.merge(*batches, key=_KEY)

    def drain(self) -> Iterator[Keyed]:
        """After an interrupt: the records of the window under way, merged (each worker
        completes it; run in this process, what the world wrote before it stopped)."""
        if self._local is not None:
            return iter(self._local.take())
        batches = [remote.receive() for remote in self._remotes if remote.pending]
        return heapq.merge(*batches, key=_KEY)

    def finish(self) -> RunResult:
        """The merged result as of the last window; ends the workers."""
        if self._local is not None:
            parts = [self._local.result()]
        else:
            for remote in self._remotes:
                if remote.pending:
                    remote.receive()
                remote.send("finish", 0)
            parts = [remote.receive() for remote in self._remotes]
            self.close()
        outcomes = sorted((pair for part in parts for pair in part.outcomes),
                          key=itemgetter(0))
        figures = sorted((f for part in parts for f in part.path_figures),
                         key=lambda f: f.index)
        return RunResult(self.config, merge_stats([part.stats for part in parts]),
                         max(part.now_ms for part in parts), [row for _i, row in outcomes],
                         sum(part.surviving for part in parts), self.workers, figures)

    def close(self) -> None:
        """End the worker processes (idempotent)."""
        remotes, self._remotes = self._remotes, []
        for remote in remotes:
            remote.stop()

