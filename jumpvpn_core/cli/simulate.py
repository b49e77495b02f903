"""`jumpvpn simulate`: run a named scenario with many sessions in virtual time.

Writes to `--out` (default `sim-out/`): `trace.jsonl` (every audit record, streamed),
`sessions.csv` (one row per session), and unless `--no-plots`, `timeline.png` (phase
timeline of the sample sessions) and `recovery-cdf.png` (recovery-time CDF). Prints a
summary table. See `docs/simulator.md`.

Exit status: 0 when the run finished, 2 on a usage error (bad scenario, sessions, duration,
seed or config) or when the `sim` extra (rich, matplotlib) is not installed.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from jumpvpn_core.audit.trace_writer import TraceKeyError, TraceWriter, key_option
from jumpvpn_core.sim.network import LinkSpec
from jumpvpn_core.sim.scenarios import SCENARIOS, ScenarioError, build_scenario
from jumpvpn_core.sim.world import SessionOutcome, SimConfig, World, WorldStats

__all__ = ["parse_duration_ms", "register", "run"]

DEFAULT_OUT = "sim-out"
_INSTALL_HINT = "pip install 'jumpvpn-core[sim]'"
# Session-seconds above which a run is long enough to deserve a progress bar.
_PROGRESS_THRESHOLD = 200_000
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m)?\s*$")
_UNITS = {"ms": 1, "s": 1_000, "m": 60_000, None: 1_000}
# Keys a `--config` file may override, beside `paths`.
_CONFIG_KEYS = ("heartbeat_ms", "delivery_timeout_ms", "start_spread_ms",
                "collapse_probability", "collapse_start_ms", "collapse_length_ms")
# Cluster counters printed even when zero: a zero here is the result (§4.1).
_CLUSTER_ROWS = ("dual_bindings", "dual_commits", "races", "store_unavailable")
_LINK_KEYS = tuple(a.name for a in attrs.fields(LinkSpec))


class UsageError(ValueError):
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


def register(subparsers: Any) -> None:
    """Add the `simulate` subcommand."""
    names = ", ".join(sorted(SCENARIOS))
    parser = subparsers.add_parser(
        "simulate",
        help="run a named scenario with many sessions in virtual time",
        description="Run many client/server session pairs through the real core in a "
        "deterministic virtual-time world, print a summary and write a trace, a per-session "
        f"CSV and plots. Scenarios: {names}.",
    )
    parser.add_argument("--scenario", required=True, help=f"one of: {names}")
    parser.add_argument("--sessions", default="1000", help="session pairs (default: 1000)")
    parser.add_argument("--duration", default="600s",
                        help="virtual time: 600s, 10m, 5000ms or plain seconds (default: 600s)")
    parser.add_argument("--seed", default="1", help="non-negative PRNG seed (default: 1)")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"output directory (default: {DEFAULT_OUT}/)")
    parser.add_argument("--config", default=None,
                        help="JSON file overriding scenario parameters: "
                        f"{', '.join(_CONFIG_KEYS)} and `paths` (a list of link objects "
                        f"with keys {', '.join(_LINK_KEYS)})")
    parser.add_argument("--no-plots", action="store_true", help="skip the two PNG plots")
    parser.add_argument("--trace-key", default=None, metavar="FILE|HEX",
                        help="MAC the trace's checkpoints with this key (verify-trace --key)")
    parser.set_defaults(handler=run)


def _int_arg(name: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"--{name} must be an integer, got {text!r}") from None
    if value < minimum:
        what = "positive" if minimum == 1 else "non-negative"
        raise UsageError(f"--{name} must be {what}, got {value}")
    return value


def _apply_config(config: SimConfig, path: str) -> SimConfig:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--config {path!r} cannot be read: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {path!r} is not JSON: {exc}") from None
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
    if "paths" in data:
        paths = data["paths"]
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
            specs.append(LinkSpec(**fields))
        changes["paths"] = tuple(specs)
    try:
        return attrs.evolve(config, **changes)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--config: {exc}") from None


def _parse(args: argparse.Namespace) -> SimConfig:
    sessions = _int_arg("sessions", args.sessions, 1)
    duration_ms = parse_duration_ms(args.duration)
    seed = _int_arg("seed", args.seed, 0)
    try:
        config = build_scenario(args.scenario, sessions, duration_ms, seed)
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    if args.config is not None:
        config = _apply_config(config, args.config)
    return config


def _write_csv(path: Path, rows: list[SessionOutcome]) -> None:
    names = [a.name for a in attrs.fields(SessionOutcome)]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow(attrs.astuple(row))


def run(args: argparse.Namespace) -> int:
    """Handler of `jumpvpn simulate`."""
    try:
        config = _parse(args)
        trace_key = key_option(args.trace_key)
    except (UsageError, TraceKeyError) as exc:
        print(f"jumpvpn simulate: error: {exc}", file=sys.stderr)
        return 2
    try:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
        if not args.no_plots:
            import matplotlib
            matplotlib.use("Agg")
    except ImportError as exc:
        print(f"jumpvpn simulate: error: {exc.name} is not installed; run: {_INSTALL_HINT}",
              file=sys.stderr)
        return 2

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trace_path = out / "trace.jsonl"
    err = Console(stderr=True)
    with trace_path.open("w", encoding="utf-8", newline="\n") as trace:
        writer = TraceWriter(trace.write, writer="jumpvpn simulate", key=trace_key)
        world = World(config, on_record=writer.write)
        long_run = config.sessions * config.duration_ms // 1_000 >= _PROGRESS_THRESHOLD
        started = time.perf_counter()
        if long_run and err.is_terminal:
            with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                          TextColumn("{task.completed:,.0f}/{task.total:,.0f} s virtual"),
                          TimeRemainingColumn(), console=err, transient=True) as bar:
                task = bar.add_task(f"simulate {args.scenario}", total=config.duration_ms / 1e3)
                world.run(progress=lambda now: bar.update(task, completed=now / 1e3))
        else:
            world.run()
        elapsed = time.perf_counter() - started
        writer.close()
    _write_csv(out / "sessions.csv", world.outcomes())
    written = [trace_path, out / "sessions.csv"]
    if not args.no_plots:
        from jumpvpn_core.sim.plots import plot_recovery_cdf, plot_timeline

        plot_timeline(world.stats, config.duration_ms, out / "timeline.png")
        plot_recovery_cdf(world.stats, out / "recovery-cdf.png")
        written += [out / "timeline.png", out / "recovery-cdf.png"]
    Console().print(_summary(args.scenario, world, elapsed))
    for path in written:
        print(f"wrote {path}")
    return 0


def _summary(scenario: str, world: World, elapsed: float) -> Any:
    from rich.table import Table

    stats: WorldStats = world.stats
    config = world.config
    table = Table(title=f"simulate {scenario}: {config.sessions:,} sessions, "
                  f"{config.duration_ms / 1000:g} s virtual, seed {config.seed}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("sessions surviving", f"{world.surviving():,}")
    for reason, count in sorted(stats.end_reasons.items()):
        table.add_row(f"  terminated: {reason}", f"{count:,}")
    for label, fraction in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        value = stats.recovery_percentile(fraction)
        table.add_row(f"recovery time {label}", "-" if value is None else f"{value:,} ms")
    table.add_row("recoveries completed", f"{sum(stats.recovery_histogram):,}")
    table.add_row("switches", f"{stats.switches:,}")
    for reason, count in sorted(stats.rejections.items()):
        table.add_row(f"  rejected: {reason}", f"{count:,}")
    table.add_row("security events", f"{stats.security_events:,}")
    if stats.attacks_sent:
        table.add_row("attack attempts", f"{stats.attacks_sent:,}")
    if config.cluster is not None:
        names = sorted({*_CLUSTER_ROWS, *stats.cluster})
        for name in names:
            table.add_row(f"cluster: {name}", f"{stats.cluster[name]:,}")
    table.add_row("events", f"{stats.events:,}")
    table.add_row("events/s (wall)", f"{stats.events / max(elapsed, 1e-9):,.0f}")
    table.add_row("wall time", f"{elapsed:.1f} s")
    return table
