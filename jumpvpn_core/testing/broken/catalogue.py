"""Run the broken-implementation catalogue over many seeds: how often is each one caught?

`run_catalogue` fuzzes every implementation of `CATALOGUE` (or the ones named) once per
seed at a given budget, in-process, and reports per implementation: what is planted (the
first line of its docstring), in how many seeds it was caught, and the median examples and
steps the fuzzer needed to catch it. `jumpvpn conformance --catalogue` prints the table.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence

import attrs

from jumpvpn_core.testing.broken import CATALOGUE
from jumpvpn_core.testing.stateful import DEFAULT_EXAMPLES, DEFAULT_STEPS, run_conformance

__all__ = ["TABLE_HEADER", "CatalogueRow", "format_row", "format_table", "planted",
           "run_catalogue"]


def planted(name: str) -> str:
    """What `CATALOGUE[name]` gets wrong: the first paragraph of its docstring."""
    return " ".join((CATALOGUE[name].__doc__ or "").split("\n\n")[0].split())


@attrs.frozen
class CatalogueRow:
    """One implementation over every seed."""

    name: str
    planted: str
    seeds: int
    caught: int
    median_examples: float | None
    """Median examples run until the first failure, over the seeds that caught it."""
    median_steps: float | None
    """Median steps run until the first failure, over the seeds that caught it."""
    seconds: float

    @property
    def rate(self) -> float:
        """The fraction of seeds that caught it."""
        return self.caught / self.seeds if self.seeds else 0.0


def run_catalogue(seeds: Iterable[int], *, examples: int = DEFAULT_EXAMPLES,
                  steps: int = DEFAULT_STEPS, names: Sequence[str] | None = None,
                  progress: Callable[[CatalogueRow], None] | None = None,
                  ) -> list[CatalogueRow]:
    """One row per implementation (all of `CATALOGUE` unless `names`); raises `KeyError`
    on an unknown name. Each seed is one `run_conformance` at the budget, without
    shrinking (the first failure is what counts)."""
    seed_list = list(seeds)
    rows = []
    for name in names if names is not None else list(CATALOGUE):
        factory = CATALOGUE[name]
        started = time.monotonic()
        found: list[tuple[int, int]] = []
        for seed in seed_list:
            result = run_conformance(factory(), examples=examples, steps=steps, seed=seed,
                                     shrink_budget=0)
            if result.failure is not None and result.caught_at is not None:
                found.append(result.caught_at)
        row = CatalogueRow(
            name, planted(name), len(seed_list), len(found),
            statistics.median(e for e, _ in found) if found else None,
            statistics.median(s for _, s in found) if found else None,
            time.monotonic() - started)
        if progress is not None:
            progress(row)
        rows.append(row)
    return rows


TABLE_HEADER = (f"{'implementation':34} {'caught':>8} {'examples':>9} {'steps':>7} "
                f"{'time':>7}  planted")
"""The header line of `format_table` (columns as in `format_row`)."""


def format_row(row: CatalogueRow) -> str:
    """One line of the table: implementation, caught k/n, median examples and steps to
    catch, wall time, what is planted."""
    examples = "-" if row.median_examples is None else f"{row.median_examples:g}"
    steps = "-" if row.median_steps is None else f"{row.median_steps:g}"
    return (f"{row.name:34} {row.caught:>3}/{row.seeds:<4} {examples:>9} {steps:>7} "
            f"{row.seconds:>6.1f}s  {row.planted}")


def format_table(rows: Sequence[CatalogueRow]) -> str:
    """The table as text: `TABLE_HEADER`, then one `format_row` per row."""
    return "\n".join([TABLE_HEADER, *map(format_row, rows)])
