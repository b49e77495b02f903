"""`jumpvpn simulate`: run a named scenario with many sessions in virtual time.

Writes to `--out` (default `sim-out/`): `trace.jsonl` (every audit record, streamed),
`sessions.csv` (one row per session), `summary.json` (the figures of the summary table,
machine-readable) and unless `--no-plots`, `timeline.png` (phase occupancy across all
sessions beside the sample sessions' timelines) and `recovery-cdf.png` (recovery-time CDF
over all sessions). See `docs/simulator.md`.

The sessions are sharded across `--workers` processes (`jumpvpn_core.sim.shards`): the
trace, CSV and figures are byte-identical for a seed whatever the number of workers.

Exit status: 0 when the run finished, 2 on a usage error (bad scenario, sessions, duration,
seed, workers, config or output directory), when the `sim` extra (rich, matplotlib) is not
installed or when a worker fails (no outputs are left then), 130 on Ctrl-C: the trace is
closed and the CSV and summary of the sessions so far are written (`"interrupted": true`
in summary.json).
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import click

from jumpvpn_core import jsonsafe
from jumpvpn_core.audit.trace_writer import TraceKeyError, TraceWriter, key_option
from jumpvpn_core.cli._common import (
    CliError,
    ProgressLines,
    check_output_dir,
    emit_json,
    json_option,
    verb,
)
from jumpvpn_core.errors import JsonDecodeError
from jumpvpn_core.sim.network import LinkSpec
from jumpvpn_core.sim.plots import SimTally
from jumpvpn_core.sim.scenarios import SCENARIOS, ScenarioError, build_scenario
from jumpvpn_core.sim.shards import (
    Keyed,
    RunResult,
    ShardedRun,
    SimWorkerError,
    default_workers,
)
from jumpvpn_core.sim.world import SessionOutcome, SimConfig

__all__ = ["UsageError", "apply_config", "command", "parse_duration_ms", "summary_data"]

DEFAULT_OUT = "sim-out"
_INSTALL_HINT = "pip install 'jumpvpn-core[sim]'"
# Session-seconds above which a run is long enough to deserve a progress bar.
_PROGRESS_THRESHOLD = 200_000
# Virtual time run by every worker between two merges (and progress reports).
_WINDOW_MS = 10_000
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m)?\s*$")
_UNITS = {"ms": 1, "s": 1_000, "m": 60_000, None: 1_000}
# Keys a `--config` file may override, beside `paths`.
_CONFIG_KEYS = ("heartbeat_ms", "delivery_timeout_ms", "start_spread_ms",
                "collapse_probability", "collapse_start_ms", "collapse_length_ms")
# Cluster counters printed even when zero: a zero here is the result (§4.1).
_CLUSTER_ROWS = ("dual_bindings", "dual_commits", "races", "store_unavailable")
_LINK_KEYS = tuple(a.name for a in attrs.fields(LinkSpec))


class UsageError(CliError):
    """A command-line value that cannot be used; the message says which and why."""


def parse_duration_ms(text: str) -> int:
    """`600s`, `10m`, `5000ms` or plain seconds (`600`) -> milliseconds (> 0)."""
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(f"--duration {text!r} is not a duration; use e.g. 600s, 10m, "
                         "5000ms or plain seconds")
    millis = int(match.group(1)) * _UNITS[match.group(2)]
    if millis <= 0:
        raise UsageError(f"--duration must be greater than zero, got {text!r}")
    return millis


def _int_arg(name: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"--{name} must be an integer, got {text!r}") from None
    if value < minimum:
        what = "positive" if minimum == 1 else "non-negative"
        raise UsageError(f"--{name} must be {what}, got {value}")
    return value


def apply_config(config: SimConfig, data: Any) -> SimConfig:
    """`config` with the overrides of a `--config` document applied (validated by the
    config classes themselves; `UsageError` names the field)."""
    if not isinstance(data, dict):
        raise UsageError("--config must hold a JSON object")
    known = {*_CONFIG_KEYS, "paths"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"--config: unknown key(s) {', '.join(unknown)}; valid keys: "
                         f"{', '.join(sorted(known))}")
    changes: dict[str, Any] = {}
    for key in _CONFIG_KEYS:
        if key in data:
            value = data[key]
            changes[key] = tuple(value) if isinstance(value, list) else value
    try:
        if "paths" in data:
            changes["paths"] = _paths(data["paths"])
        return attrs.evolve(config, **changes)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--config: {exc}") from None


def _paths(paths: Any) -> tuple[LinkSpec, ...]:
    if not isinstance(paths, list) or not paths:
        raise UsageError("--config: paths must be a non-empty list of link objects")
    specs = []
    for number, item in enumerate(paths):
        if not isinstance(item, dict):
            raise UsageError(f"--config: paths[{number}] must be an object")
        bad = sorted(set(item) - set(_LINK_KEYS))
        if bad:
            raise UsageError(f"--config: paths[{number}]: unknown key(s) {', '.join(bad)}; "
                             f"valid keys: {', '.join(_LINK_KEYS)}")
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in item.items()}
        fields.setdefault("name", f"path{number}")
        try:
            specs.append(LinkSpec(**fields))
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--config: paths[{number}]: {exc}") from None
    return tuple(specs)


def _read_config(path: Path) -> Any:
    try:
        return jsonsafe.loads(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"--config {str(path)!r} cannot be read: {exc.strerror}") from None
    except JsonDecodeError as exc:
        raise UsageError(f"--config {str(path)!r} is not JSON: {exc}") from None


def _write_csv(path: Path, rows: list[SessionOutcome]) -> None:
    names = [a.name for a in attrs.fields(SessionOutcome)]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow(attrs.astuple(row))


def _recorder(trace: TraceWriter, tally: SimTally) -> Callable[[Iterable[Keyed]], None]:
    """Stream merged audit records to the trace and into the tally."""
    write = trace.write
    feed = tally.record

    def on_records(records: Iterable[Keyed]) -> None:
        for _time, _index, record in records:
            write(record)
            feed(record)

    return on_records


def summary_data(scenario: str, result: RunResult, tally: SimTally, elapsed_s: float, *,
                 interrupted: bool = False) -> dict[str, Any]:
    """The run's figures as one JSON-ready dict (written to `summary.json`).

    The same for a seed whatever the number of workers, except the facts of this run:
    `workers`, `wall_s` and `events_per_wall_s` (and `outputs`, added by the command).
    """
    stats = result.stats
    config = result.config
    recovered = sum(stats.recovery_histogram)
    percentiles = {label: stats.recovery_percentile(fraction)
                   for label, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}
    data: dict[str, Any] = {
        "scenario": scenario,
        "seed": config.seed,
        "sessions": config.sessions,
        "duration_ms": config.duration_ms,
        "reached_ms": min(result.now_ms, config.duration_ms),
        "interrupted": interrupted,
        "surviving": result.surviving,
        "terminated": dict(sorted(stats.end_reasons.items())),
        "recovery_ms": percentiles,
        "recovery_bound_ms": config.policy.max_recovery_window_ms,
        "recoveries_completed": recovered,
        "recovery_episodes": tally.to_data(),
        "switches": stats.switches,
        "rejected": dict(sorted(stats.rejections.items())),
        "security_events": stats.security_events,
        "attack_attempts": stats.attacks_sent,
        "events": stats.events,
        "workers": result.workers,
        "wall_s": round(elapsed_s, 3),
        "events_per_wall_s": round(stats.events / max(elapsed_s, 1e-9)),
    }
    if config.cluster is not None:
        data["cluster"] = {name: stats.cluster[name]
                           for name in sorted({*_CLUSTER_ROWS, *stats.cluster})}
    return data


def _summary_table(data: dict[str, Any]) -> Any:
    from rich.table import Table

    title = (f"simulate {data['scenario']}: {data['sessions']:,} sessions, "
             f"{data['duration_ms'] / 1000:g} s virtual, seed {data['seed']}")
    if data["interrupted"]:
        title += f" (interrupted at {data['reached_ms'] / 1000:g} s)"
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("sessions surviving", f"{data['surviving']:,}")
    for reason, count in data["terminated"].items():
        table.add_row(f"  terminated: {reason}", f"{count:,}")
    for label, value in data["recovery_ms"].items():
        table.add_row(f"recovery time {label}", "-" if value is None else f"{value:,} ms")
    table.add_row("recoveries completed", f"{data['recoveries_completed']:,}")
    episodes = data["recovery_episodes"]
    table.add_row("recovery episodes (any exit)", f"{episodes['episodes']:,}")
    table.add_row("  ended ATTACHED again", f"{episodes['recovered']:,}")
    for reason, count in episodes["failed"].items():
        table.add_row(f"  ended TERMINATED: {reason}", f"{count:,}")
    if episodes["still_recovering"]:
        table.add_row("  still open at the end", f"{episodes['still_recovering']:,}")
    table.add_row("switches", f"{data['switches']:,}")
    for reason, count in data["rejected"].items():
        table.add_row(f"  rejected: {reason}", f"{count:,}")
    table.add_row("security events", f"{data['security_events']:,}")
    if data["attack_attempts"]:
        table.add_row("attack attempts", f"{data['attack_attempts']:,}")
    for name, count in data.get("cluster", {}).items():
        table.add_row(f"cluster: {name}", f"{count:,}")
    table.add_row("events", f"{data['events']:,}")
    table.add_row("events/s (wall)", f"{data['events_per_wall_s']:,}")
    table.add_row("workers", f"{data['workers']:,}")
    table.add_row("wall time", f"{data['wall_s']:.1f} s")
    return table


@contextlib.contextmanager
def _held_sigint() -> Iterator[list[int]]:
    """Hold SIGINT for the block; the yielded list is non-empty if one arrived."""
    held: list[int] = []

    def hold(signum: int, _frame: Any) -> None:
        held.append(signum)

    try:
        previous = signal.signal(signal.SIGINT, hold)
    except ValueError:  # not the main thread: nothing to hold
        yield held
        return
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)


def _run(run: ShardedRun, scenario: str, err: Any, progress: ProgressLines,
         sink: Callable[[Iterable[Keyed]], None]) -> None:
    """Run to the end window by window, with a bar on a terminal and plain lines elsewhere.

    With worker processes, Ctrl-C takes effect between two windows (a window is short), so
    that no answer of a worker is cut in half; in this process, at once.
    """
    config = run.config
    long_run = config.sessions * config.duration_ms // 1_000 >= _PROGRESS_THRESHOLD
    total_s = config.duration_ms / 1e3
    marks = range(_WINDOW_MS, config.duration_ms + _WINDOW_MS, _WINDOW_MS)

    def lines(now: int) -> None:
        progress.update(f"{now / 1e3:,.0f}/{total_s:,.0f} s virtual "
                        f"({100 * now // config.duration_ms}%), {run.events:,} events")

    def windows(report: Callable[[int], None]) -> None:
        hold: contextlib.AbstractContextManager[list[int]] = (
            _held_sigint() if run.workers > 1 else contextlib.nullcontext([]))
        with hold as held:
            for mark in marks:
                sink(run.advance(mark))
                report(run.mark)
                if held:
                    raise KeyboardInterrupt

    if long_run and err.is_terminal:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                      TextColumn("{task.completed:,.0f}/{task.total:,.0f} s virtual"),
                      TimeRemainingColumn(), console=err, transient=True) as bar:
            task = bar.add_task(f"simulate {scenario}", total=total_s)
            windows(lambda now: bar.update(task, completed=now / 1e3))
    else:
        windows(lines)


@verb("simulate", "Run a named scenario with many sessions in virtual time.\n\n"
      "Runs many client/server session pairs through the real core in a deterministic "
      "virtual-time world, prints a summary and writes trace.jsonl, sessions.csv, "
      "summary.json and two plots to --out. Scenarios: " + ", ".join(sorted(SCENARIOS)) + ".")
@click.option("--scenario", required=True, metavar="NAME", help="the scenario to run")
@click.option("--sessions", default="1000", show_default=True, help="session pairs")
@click.option("--duration", default="600s", show_default=True,
              help="virtual time: 600s, 10m, 5000ms or plain seconds")
@click.option("--seed", default="1", show_default=True, help="non-negative PRNG seed")
@click.option("--out", type=click.Path(path_type=Path), default=Path(DEFAULT_OUT),
              show_default=True, help="output directory")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="JSON file overriding scenario parameters: "
                   f"{', '.join(_CONFIG_KEYS)} and `paths` (a list of link objects with keys "
                   f"{', '.join(_LINK_KEYS)})")
@click.option("--no-plots", is_flag=True, help="skip the two PNG plots")
@click.option("--workers", default=None, metavar="N",
              help="worker processes the sessions are sharded across (default: the usable "
                   "CPUs; 1 for a small run); the outputs are the same for any N. A world "
                   "with a cluster or attackers runs in one process")
@click.option("--trace-key", default=None, metavar="FILE|HEX",
              help="MAC the trace's checkpoints with this key (verify-trace --key)")
@json_option
def command(scenario: str, sessions: str, duration: str, seed: str, out: Path,
            config_path: Path | None, no_plots: bool, workers: str | None,
            trace_key: str | None, as_json: bool) -> int:
    """Handler of `jumpvpn simulate`."""
    try:
        key = key_option(trace_key)
    except TraceKeyError as exc:
        raise UsageError(f"bad --trace-key: {exc}") from None
    count = _int_arg("sessions", sessions, 1)
    duration_ms = parse_duration_ms(duration)
    seed_value = _int_arg("seed", seed, 0)
    try:
        config = build_scenario(scenario, count, duration_ms, seed_value)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    if config_path is not None:
        config = apply_config(config, _read_config(config_path))
    worker_count = (default_workers(config) if workers is None
                    else _int_arg("workers", workers, 1))
    try:
        from rich.console import Console

        if not no_plots:
            import matplotlib

            matplotlib.use("Agg")
    except ImportError as exc:
        raise UsageError(f"{exc.name} is not installed; run: {_INSTALL_HINT}") from None
    check_output_dir(out, "--out")

    trace_path = out / "trace.jsonl"
    err = Console(stderr=True)
    progress = ProgressLines("jumpvpn simulate")
    interrupted = False
    tally = SimTally(config.sessions, config.duration_ms)
    started = time.perf_counter()
    try:
        with trace_path.open("w", encoding="utf-8", newline="\n") as handle, \
                TraceWriter(handle.write, writer="jumpvpn simulate", key=key) as trace:
            sink = _recorder(trace, tally)
            # Ctrl-C while the sessions are being built is held until the run exists, so
            # that there are always sessions the CSV and summary can describe.
            with _held_sigint() as held:
                run = ShardedRun(config, worker_count)
            with run:
                try:
                    if held:
                        raise KeyboardInterrupt
                    _run(run, scenario, err, progress, sink)
                except KeyboardInterrupt:
                    interrupted = True
                    with _held_sigint():
                        sink(run.drain())
                with _held_sigint():
                    result = run.finish()
    except SimWorkerError as exc:
        for name in ("trace.jsonl", "sessions.csv", "summary.json"):
            (out / name).unlink(missing_ok=True)
        raise CliError(f"{exc}; the run has no result (no outputs written)") from None
    elapsed = time.perf_counter() - started
    tally.finish(min(result.now_ms, config.duration_ms))
    # Written also when interrupted: the trace is closed above; the CSV and the summary
    # describe the sessions as they were when the run stopped.
    _write_csv(out / "sessions.csv", result.outcomes)
    data = summary_data(scenario, result, tally, elapsed, interrupted=interrupted)
    written = [trace_path, out / "sessions.csv", out / "summary.json"]
    if not no_plots and not interrupted:
        from jumpvpn_core.sim.plots import plot_recovery_cdf, plot_timeline

        title = f"{scenario}, seed {config.seed}, {config.sessions:,} sessions"
        plot_timeline(result.stats, config.duration_ms, out / "timeline.png", title=title,
                      tally=tally)
        plot_recovery_cdf(tally, out / "recovery-cdf.png", title=title,
                          bound_ms=config.policy.max_recovery_window_ms)
        written += [out / "timeline.png", out / "recovery-cdf.png"]
    data["outputs"] = [str(path) for path in written]
    (out / "summary.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n",
                                      encoding="utf-8")
    if interrupted:
        raise KeyboardInterrupt
    if as_json:
        emit_json(data)
    else:
        Console(file=sys.stdout).print(_summary_table(data))
        for path in written:
            click.echo(f"wrote {path}")
    return 0
