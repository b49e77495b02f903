"""The timing harness and the result record shared by every benchmark module.

Why a harness of our own rather than pyperf: pyperf gets its stability by spawning many
worker processes and calibrating each benchmark, which on a 2-core machine shared by
several people costs minutes per benchmark and fights the other users for the cores. The
quantities here are sub-microsecond to a few microseconds, so a simple in-process harness is
enough: prepare inputs outside the timed region, warm up, disable the garbage collector
while timing, time a batch of `n` operations with `time.perf_counter_ns`, repeat, and report
the median per-operation time (with the interquartile range as a noise indicator).

The machine these figures come from is shared, and its load drifts from minute to minute.
`measure_interleaved` therefore times a whole group of benchmarks round-robin (one batch of
each per round), so that a row and the peer it is compared with see the same load; ratios
are much steadier than absolute figures.

Each timed batch is a plain `for` loop over prepared inputs, so every figure includes one
loop iteration and one Python call (about 20-30 ns here). The same holds for the peers, so
ratios are like for like; absolute figures are slightly pessimistic.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

__all__ = [
    "BenchResult",
    "Prepared",
    "Timing",
    "judge_at_most",
    "machine_info",
    "measure",
    "measure_interleaved",
]


@attrs.frozen
class BenchResult:
    """One row of the results table.

    `median_ns` is the measured median. For timings (`unit` "ns") it is nanoseconds per
    operation; for other measurements (`unit` "bytes", "MiB", "x") it is the value in `unit`.
    `ratio` is `median_ns / peer's median_ns` when `peer` names a row measured in the same
    run (below 1 means we are faster). `met` is None where the row has no target.
    """

    name: str
    median_ns: float
    unit: str = "ns"
    peer: str | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    notes: str = ""

    def to_data(self) -> dict[str, Any]:
        """JSON-ready form."""
        return attrs.asdict(self)


@attrs.frozen
class Prepared:
    """A benchmark body over inputs built in advance.

    `body()` performs exactly `n` operations and is what gets timed. `checked()` performs the
    same operations over the same inputs and asserts that each took the intended path; it is
    run once before timing in a full run and is the whole of a smoke run.
    """

    n: int
    body: Callable[[], object]
    checked: Callable[[], None]


@attrs.frozen
class Timing:
    """Per-operation nanoseconds over the timed repeats (wall clock unless named cpu)."""

    median_ns: float
    q1_ns: float
    q3_ns: float
    min_ns: float
    cpu_median_ns: float
    repeats: int
    n: int

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median (a noise indicator)."""
        return (self.q3_ns - self.q1_ns) / self.median_ns if self.median_ns else 0.0


def _time_once(make: Callable[[int], Prepared], n: int) -> tuple[float, float]:
    """Build inputs (untimed), then time one batch with the collector off.

    Returns (wall, cpu) nanoseconds per operation: `perf_counter_ns` is the figure
    reported; `process_time_ns` (CPU time of this process only) is kept beside it because
    on an overloaded machine it leaves out the time the process spent descheduled.
    """
    prepared = make(n)
    gc.collect()
    gc.disable()
    try:
        cpu_start = time.process_time_ns()
        start = time.perf_counter_ns()
        prepared.body()
        elapsed = time.perf_counter_ns() - start
        cpu = time.process_time_ns() - cpu_start
    finally:
        gc.enable()
    return elapsed / prepared.n, cpu / prepared.n


def _summarise(samples: list[tuple[float, float]], n: int) -> Timing:
    wall = [sample[0] for sample in samples]
    quartiles = statistics.quantiles(wall, n=4) if len(wall) > 1 else wall * 3
    return Timing(statistics.median(wall), quartiles[0], quartiles[2], min(wall),
                  statistics.median(sample[1] for sample in samples), len(wall), n)


def measure(make: Callable[[int], Prepared], *, n: int, repeats: int = 25,
            warmup: int = 3) -> Timing:
    """Time `make(n).body()` `repeats` times (after `warmup` untimed runs).

    Inputs are rebuilt by `make` before every repeat, outside the timed region, so a body
    that consumes its inputs (a chain of steps) always starts from the same place.
    """
    for _ in range(warmup):
        _time_once(make, n)
    return _summarise([_time_once(make, n) for _ in range(repeats)], n)


def measure_interleaved(cases: dict[str, tuple[Callable[[int], Prepared], int]], *,
                        repeats: int = 25, warmup: int = 2) -> dict[str, Timing]:
    """Time several benchmarks round-robin: each round times one batch of every case.

    `cases` maps a name to `(make, n)`. Every case sees the same stretch of machine load,
    so ratios between cases survive load that drifts during the run.
    """
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for round_index in range(warmup + repeats):
        for name, (make, n) in cases.items():
            value = _time_once(make, n)
            if round_index >= warmup:
                samples[name].append(value)
    return {name: _summarise(values, cases[name][1]) for name, values in samples.items()}


def judge_at_most(value: float, limit: float) -> bool:
    """True when `value` meets an upper-bound target."""
    return value <= limit


def machine_info() -> dict[str, Any]:
    """CPU model, cores and Python version of this machine (for the results file)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


@attrs.frozen
class Case:
    """One timed row: name, body factory, batch size, and what it is judged against.

    `target_ns` is an upper bound on the median; `peer` names another case of the same
    module whose median the ratio is taken against; `peer_ratio_max` also bounds that ratio
    (`peer_label` says what the peer is, for the target text).
    """

    name: str
    make: Callable[[int], Prepared]
    n: int
    target_ns: float | None = None
    peer: str | None = None
    notes: str = ""
    peer_ratio_max: float | None = None
    peer_label: str = ""


def run_cases(cases: Sequence[Case], smoke: bool, *, repeats: int = 25) -> list[BenchResult]:
    """Check every case's path; in smoke mode also run each body once and stop there.
    Otherwise time them interleaved and judge each median against its target."""
    for case in cases:
        prepared = case.make(8 if smoke else 64)
        prepared.checked()
        if smoke:
            prepared.body()
    if smoke:
        return [BenchResult(case.name, 0.0, notes="smoke: path checked, not timed")
                for case in cases]
    measured = measure_interleaved({case.name: (case.make, case.n) for case in cases},
                                   repeats=repeats)
    results = []
    for case in cases:
        timing = measured[case.name]
        value = timing.median_ns
        notes = "; ".join(part for part in (
            case.notes, f"min {timing.min_ns:.0f} ns, IQR {timing.spread:.0%}, "
            f"cpu-time median {timing.cpu_median_ns:.0f} ns") if part)
        ratio = value / measured[case.peer].median_ns if case.peer else None
        target_parts = []
        met: bool | None = None
        if case.target_ns is not None:
            target_parts.append(f"<= {case.target_ns / 1000:g} us")
            met = value <= case.target_ns
        if case.peer_ratio_max is not None and ratio is not None:
            target_parts.append(f"< {case.peer_ratio_max}x {case.peer_label}".rstrip())
            met = bool(met) and ratio < case.peer_ratio_max
        results.append(BenchResult(case.name, value, "ns", case.peer, ratio,
                                   " and ".join(target_parts), met, notes))
    return results
