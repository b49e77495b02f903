"""`jumpvpn simulate`: run a named scenario with many sessions in virtual time.

Writes to `--out` (default `sim-out/`): `trace.jsonl` (every audit record, streamed),
`sessions.csv` (one row per session), `summary.json` (the figures of the summary table,
machine-readable) and unless `--no-plots`, `timeline.png` (phase occupancy across all
sessions beside the sample sessions' timelines) and `recovery-cdf.png` (recovery-time CDF
over all sessions). See `docs/simulator.md`.

A run whose path-quality driver probes (the `drifting-*` scenarios) runs twice, with the
same sessions, seeds and path histories: the client fed samples (`trace.jsonl`,
`sessions.csv`) and the first-available baseline fed none (`baseline-trace.jsonl`,
`baseline-sessions.csv`); `summary.json` compares them under `path_quality`, and the
plots add `time-on-best.png` and `path-timeseries.png`. `--scenario drifting` runs every
drifting scenario, each in its own subdirectory of `--out`, with one combined
`summary.json` and `time-on-best.png`.

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
from jumpvpn_core.sim.bestpath import GRID_MS, best_path, cost_series
from jumpvpn_core.sim.compare import behaviour_figures, comparison
from jumpvpn_core.sim.network import LinkSpec
from jumpvpn_core.sim.plots import SimTally
from jumpvpn_core.sim.scenarios import SCENARIOS, SUITES, ScenarioError, build_scenario
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
                "collapse_probability", "collapse_start_ms", "collapse_length_ms",
                "probe_interval_ms", "feed_samples", "drift_offset_ms")
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


def _quality_table(rows: list[tuple[str, dict[str, Any]]]) -> Any:
    """Per scenario and behaviour: time on the best path, switches against the bound,
    recovery (`path_quality` of each summary)."""
    from rich.table import Table

    table = Table(title="path quality: samples fed vs first available (same sessions, "
                        "seeds and path histories); switches per session, bound ceil(T / "
                        "dwell)")
    table.add_column("scenario")
    table.add_column("client")
    for name in ("on best", "worst", "switches", "bound", "recovered", "p50/p95",
                 "alive"):
        table.add_column(name, justify="right")
    for scenario, data in rows:
        for key, label in (("quality", "samples fed"), ("baseline", "first available")):
            figures = data.get(key)
            if figures is None:
                continue
            share = figures["time_on_best"]
            worst = figures["session_time_on_best_min"]
            switches = figures["switches_per_session"]
            p50, p95 = figures["recovery_p50_ms"], figures["recovery_p95_ms"]
            table.add_row(
                scenario, label,
                "no eligible time" if share is None else f"{100 * share:.1f}%",
                "-" if worst is None else f"{100 * worst:.1f}%",
                f"{switches['mean']:g} ({switches['max']})",
                f"{data['hysteresis_bound']:,}",
                f"{figures['recovered']:,}/{figures['recovery_episodes']:,}",
                "-" if p50 is None else f"{p50:,}/{p95:,} ms",
                f"{figures['surviving']:,}",
            )
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


@attrs.frozen
class _Outcome:
    """One run of a world: its merged result, its tally, its wall time, whether Ctrl-C
    stopped it."""

    result: RunResult
    tally: SimTally
    elapsed_s: float
    interrupted: bool


def _run_world(config: SimConfig, label: str, trace_path: Path, key: bytes | None,
               workers: int, err: Any) -> _Outcome:
    """Run `config` to its end (or Ctrl-C), streaming its trace to `trace_path`.
    `SimWorkerError` propagates (the caller removes the outputs)."""
    progress = ProgressLines("jumpvpn simulate")
    tally = SimTally(config.sessions, config.duration_ms)
    interrupted = False
    started = time.perf_counter()
    with trace_path.open("w", encoding="utf-8", newline="\n") as handle, \
            TraceWriter(handle.write, writer="jumpvpn simulate", key=key) as trace:
        sink = _recorder(trace, tally)
        # Ctrl-C while the sessions are being built is held until the run exists, so
        # that there are always sessions the CSV and summary can describe.
        with _held_sigint() as held:
            run = ShardedRun(config, workers)
        with run:
            try:
                if held:
                    raise KeyboardInterrupt
                _run(run, label, err, progress, sink)
            except KeyboardInterrupt:
                interrupted = True
                with _held_sigint():
                    sink(run.drain())
            with _held_sigint():
                result = run.finish()
    elapsed = time.perf_counter() - started
    tally.finish(min(result.now_ms, config.duration_ms))
    return _Outcome(result, tally, elapsed, interrupted)


def _sample_plot(scenario: str, config: SimConfig, fed: RunResult,
                 baseline: RunResult | None, path: Path) -> bool:
    """`path-timeseries.png` for session 0: its paths' true costs, its client's estimates
    and where each behaviour's client was. False when there is no sample session."""
    from jumpvpn_core.sim.plots import plot_path_timeseries

    trace = fed.stats.path_traces.get(0)
    if trace is None:
        return False
    end = config.duration_ms
    step = max(GRID_MS, end // 3_000 // GRID_MS * GRID_MS)
    times = list(range(0, end, step))
    series = cost_series(config.paths, config.policy, trace.offset_ms, times)
    dwell = config.policy.migration_dwell_ms
    best: list[tuple[int, bool]] = []
    since = trace.start_ms
    current = -1
    for number, moment in enumerate(times):
        now_best = best_path([costs[number] for costs in series])
        if now_best != current and moment > trace.start_ms:
            current, since = now_best, moment
        elif current < 0:
            current = now_best
        best.append((current, moment >= since + dwell))
    positions = [("samples fed", trace.positions)]
    other = baseline.stats.path_traces.get(0) if baseline is not None else None
    if other is not None:
        positions.append(("first available", other.positions))
    plot_path_timeseries([(spec.name, [cost for _kind, cost in costs])
                          for spec, costs in zip(config.paths, series, strict=True)],
                         times, best, positions, trace.estimates, end, path,
                         title=f"{scenario}, seed {config.seed}: session 0, its paths' costs "
                               "and the path each client was on")
    return True


def _simulate_one(scenario: str, config: SimConfig, out: Path, key: bytes | None,
                  workers: int, err: Any, no_plots: bool) -> tuple[dict[str, Any], list[Path]]:
    """Run one scenario (twice when its driver probes: fed samples, then the baseline),
    write its outputs to `out`; (summary data, files written). Raises KeyboardInterrupt
    after writing what there is when Ctrl-C stopped it."""
    compare = config.probe_interval_ms > 0 and config.feed_samples
    names = ["trace.jsonl", "sessions.csv", "summary.json"]
    if compare:
        names += ["baseline-trace.jsonl", "baseline-sessions.csv"]
    try:
        fed = _run_world(config, scenario, out / "trace.jsonl", key, workers, err)
        base = None
        if compare and not fed.interrupted:
            base = _run_world(attrs.evolve(config, feed_samples=False),
                              f"{scenario} baseline", out / "baseline-trace.jsonl", key,
                              workers, err)
    except SimWorkerError as exc:
        for name in names:
            (out / name).unlink(missing_ok=True)
        raise CliError(f"{exc}; the run has no result (no outputs written)") from None
    interrupted = fed.interrupted or (base is not None and base.interrupted)
    result = fed.result
    # Written also when interrupted: the trace is closed above; the CSV and the summary
    # describe the sessions as they were when the run stopped.
    _write_csv(out / "sessions.csv", result.outcomes)
    written = [out / "trace.jsonl", out / "sessions.csv"]
    if base is not None:
        _write_csv(out / "baseline-sessions.csv", base.result.outcomes)
        written += [out / "baseline-trace.jsonl", out / "baseline-sessions.csv"]
    written.append(out / "summary.json")
    data = summary_data(scenario, result, fed.tally, fed.elapsed_s, interrupted=interrupted)
    if result.path_figures:
        dwell = config.policy.migration_dwell_ms
        fed_figures = behaviour_figures(result.path_figures, fed.tally, result.surviving,
                                        dwell)
        base_figures = None if base is None else behaviour_figures(
            base.result.path_figures, base.tally, base.result.surviving, dwell)
        data["path_quality"] = comparison(config, fed_figures, base_figures)
    if not no_plots and not interrupted:
        from jumpvpn_core.sim.plots import plot_recovery_cdf, plot_time_on_best, plot_timeline

        title = f"{scenario}, seed {config.seed}, {config.sessions:,} sessions"
        plot_timeline(result.stats, config.duration_ms, out / "timeline.png", title=title,
                      tally=fed.tally)
        plot_recovery_cdf(fed.tally, out / "recovery-cdf.png", title=title,
                          bound_ms=config.policy.max_recovery_window_ms)
        written += [out / "timeline.png", out / "recovery-cdf.png"]
        if "path_quality" in data:
            plot_time_on_best([(scenario, data["path_quality"])], out / "time-on-best.png",
                              title=f"Path choice: {title}")
            written.append(out / "time-on-best.png")
            if _sample_plot(scenario, config, result, None if base is None else base.result,
                            out / "path-timeseries.png"):
                written.append(out / "path-timeseries.png")
    data["outputs"] = [str(path) for path in written]
    (out / "summary.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n",
                                      encoding="utf-8")
    if interrupted:
        raise KeyboardInterrupt
    return data, written


def _scenario_help() -> str:
    suites = "; ".join(f"{name} runs {', '.join(members)}" for name, members in SUITES.items())
    return ", ".join(sorted(SCENARIOS)) + f". Suites: {suites}."


@verb("simulate", "Run a named scenario with many sessions in virtual time.\n\n"
      "Runs many client/server session pairs through the real core in a deterministic "
      "virtual-time world, prints a summary and writes trace.jsonl, sessions.csv, "
      "summary.json and two plots to --out. A scenario whose paths drift also runs the "
      "first-available baseline and compares the time on the best path. Scenarios: "
      + _scenario_help())
@click.option("--scenario", required=True, metavar="NAME",
              help="the scenario (or suite of scenarios) to run")
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
@click.option("--no-plots", is_flag=True, help="skip the PNG plots")
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
    members = SUITES.get(scenario, (scenario,))
    overrides: Any = None
    configs: list[tuple[str, SimConfig]] = []
    for name in members:
        try:
            config = build_scenario(name, count, duration_ms, seed_value)
        except ScenarioError as exc:
            raise UsageError(f"{exc}; or a suite: {', '.join(sorted(SUITES))}"
                             if "unknown scenario" in str(exc) else str(exc)) from None
        if config_path is not None:
            if overrides is None:
                overrides = _read_config(config_path)
            config = apply_config(config, overrides)
        configs.append((name, config))
    worker_count = None if workers is None else _int_arg("workers", workers, 1)
    try:
        from rich.console import Console

        if not no_plots:
            import matplotlib

            matplotlib.use("Agg")
    except ImportError as exc:
        raise UsageError(f"{exc.name} is not installed; run: {_INSTALL_HINT}") from None
    check_output_dir(out, "--out")
    err = Console(stderr=True)
    console = Console(file=sys.stdout)
    if scenario not in SUITES:
        name, config = configs[0]
        data, written = _simulate_one(
            name, config, out, key,
            default_workers(config) if worker_count is None else worker_count, err, no_plots)
        if as_json:
            emit_json(data)
        else:
            console.print(_summary_table(data))
            if "path_quality" in data:
                console.print(_quality_table([(name, data["path_quality"])]))
            for path in written:
                click.echo(f"wrote {path}")
        return 0
    per: dict[str, Any] = {}
    written = []
    for name, config in configs:
        place = check_output_dir(out / name, "--out")
        data, files = _simulate_one(
            name, config, place, key,
            default_workers(config) if worker_count is None else worker_count, err, no_plots)
        per[name] = data
        written += files
    rows = [(name, data["path_quality"]) for name, data in per.items()
            if "path_quality" in data]
    if not no_plots and rows:
        from jumpvpn_core.sim.plots import plot_time_on_best

        plot_time_on_best(rows, out / "time-on-best.png",
                          title=f"Path choice, suite {scenario}: seed {seed_value}, "
                                f"{count:,} sessions, {duration_ms / 1000:g} s each")
        written.append(out / "time-on-best.png")
    written.append(out / "summary.json")
    suite = {"suite": scenario, "seed": seed_value, "sessions": count,
             "duration_ms": duration_ms, "scenarios": per,
             "outputs": [str(path) for path in written]}
    (out / "summary.json").write_text(json.dumps(suite, indent=2, sort_keys=True) + "\n",
                                      encoding="utf-8")
    if as_json:
        emit_json(suite)
    else:
        console.print(_quality_table(rows))
        for path in written:
            click.echo(f"wrote {path}")
    return 0
