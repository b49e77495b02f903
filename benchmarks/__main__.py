"""`python -m benchmarks [--smoke] [--only NAME ...]`.

Discovers every `benchmarks/bench_*.py` module exposing `run(smoke: bool) ->
list[BenchResult]`, runs them in name order and prints one table. A full run writes
`benchmarks/results/latest.json` (machine, date, command, every row); `--smoke` only checks
that every benchmark body takes its intended path and writes nothing.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import pkgutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import benchmarks
from benchmarks.harness import BenchResult, machine_info

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"

Runner = Callable[[bool], Sequence[BenchResult | dict[str, Any]]]


def discover(only: Sequence[str] = ()) -> list[tuple[str, Runner]]:
    """Every `bench_*` module with a callable `run`, sorted by name."""
    found: list[tuple[str, Runner]] = []
    for info in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda m: m.name):
        if not info.name.startswith("bench_"):
            continue
        if only and info.name not in only and info.name.removeprefix("bench_") not in only:
            continue
        module: ModuleType = importlib.import_module(f"benchmarks.{info.name}")
        runner = getattr(module, "run", None)
        if callable(runner):
            found.append((info.name, runner))
    return found


def format_value(result: BenchResult) -> str:
    """Human form of a row's value in its unit."""
    value = result.median_ns
    if result.unit == "ns":
        if value >= 1_000_000:
            return f"{value / 1_000_000:.2f} ms"
        if value >= 1_000:
            return f"{value / 1_000:.2f} us"
        return f"{value:.0f} ns"
    if result.unit == "bytes":
        return f"{value:.0f} B"
    return f"{value:.1f} {result.unit}"


def _met(result: BenchResult) -> str:
    return "" if result.met is None else ("yes" if result.met else "NO")


def table(rows: list[tuple[str, BenchResult]], markdown: bool = False) -> str:
    """The results as a text (or markdown) table: what | median | ratio | target | met?"""
    header = ("what", "median", "ratio vs peer", "target", "met?")
    lines = []
    body = []
    for _, r in rows:
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}x {r.peer}"
        body.append((r.name, format_value(r), ratio, r.target, _met(r)))
    if markdown:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines.extend("| " + " | ".join(row) + " |" for row in body)
        return "\n".join(lines)
    widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(len(header))]
    widths[2] = min(widths[2], 48)
    for row in [header, *body]:
        lines.append("  ".join(str(cell)[:widths[i]].ljust(widths[i])
                               for i, cell in enumerate(row)).rstrip())
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; exit status 0 when every module ran (targets are not a gate)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true",
                        help="check every benchmark path with a few iterations; no timing")
    parser.add_argument("--only", nargs="*", default=(),
                        help="module names to run (bench_core or core, ...)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--output", type=Path, default=RESULTS,
                        help="where a full run writes its JSON (default %(default)s)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows: list[tuple[str, BenchResult]] = []
    for name, runner in discover(args.only):
        module_start = time.perf_counter()
        # Modules may return plain dicts with BenchResult's fields (bench_stores does).
        results = [r if isinstance(r, BenchResult) else BenchResult(**r)
                   for r in runner(args.smoke)]
        print(f"# {name}: {len(results)} rows in {time.perf_counter() - module_start:.1f} s",
              file=sys.stderr)
        rows.extend((name, result) for result in results)
    if not rows:
        print("no benchmark modules found", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    if args.smoke:
        print(f"smoke: {len(rows)} benchmark paths checked in {elapsed:.1f} s")
        return 0
    print(table(rows, markdown=args.markdown))
    record = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(argv if argv is not None
                                                      else sys.argv[1:]),
        "machine": machine_info(),
        "seconds": round(elapsed, 1),
        "results": [{"module": name, **result.to_data()} for name, result in rows],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output} ({elapsed:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
