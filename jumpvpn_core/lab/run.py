"""Running cases: one fresh lab per case, bounded in time, a pass/fail table at the end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from jumpvpn_core.lab.cases import UDP_CASES
from jumpvpn_core.lab.control import AgentError, Lab
from jumpvpn_core.lab.net import LabCommandError, wireguard_available
from jumpvpn_core.lab.world import CaseResult, World

__all__ = ["CASE_NAMES", "CASE_TIMEOUT_S", "format_table", "run_case", "run_cases"]

#: Upper bound of one UDP case, setup and teardown excluded.
CASE_TIMEOUT_S = 40.0
CASE_NAMES: tuple[str, ...] = (*UDP_CASES, "wireguard")


async def run_case(name: str, *, wg_runs: int = 5, wg_megabytes: int = 50) -> CaseResult:
    """Run one case in a lab of its own; every failure becomes a FAIL with its reason."""
    start = time.monotonic()
    if name == "wireguard":
        result = CaseResult(name, "§2.2 §2.3 §7 §9")
    else:
        result = CaseResult(name, UDP_CASES[name][0])
    try:
        async with Lab() as lab:
            if name == "wireguard":
                problem = wireguard_available()
                if problem is not None:
                    result.detail = problem
                else:
                    from jumpvpn_core.lab.wireguard import wireguard_case
                    await asyncio.wait_for(
                        wireguard_case(lab, result, runs=wg_runs, megabytes=wg_megabytes),
                        60.0 + wg_runs * 40.0)
            else:
                _clauses, case, options = UDP_CASES[name]
                world = await World.start(lab, **options)
                await asyncio.wait_for(case(world, result), CASE_TIMEOUT_S)
    except TimeoutError:
        result.passed = False
        result.detail = result.detail or "case timed out"
    except (AgentError, LabCommandError, RuntimeError, OSError) as exc:
        result.passed = False
        result.detail = result.detail or f"{type(exc).__name__}: {exc}"
    if not result.passed and not result.detail:
        result.detail = "failed"
    result.seconds = time.monotonic() - start
    return result


async def run_cases(names: Sequence[str], on_result: Callable[[CaseResult], None] | None = None,
                    **options: Any) -> list[CaseResult]:
    """Run `names` one after the other (each in its own lab)."""
    results = []
    for name in names:
        result = await run_case(name, **options)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def _figures_text(figures: dict[str, Any], width: int = 70) -> str:
    parts = []
    for key, value in figures.items():
        if isinstance(value, (dict, list)):
            continue
        parts.append(f"{key}={value}")
    text = " ".join(parts)
    return text if len(text) <= width else text[: width - 3] + "..."


def format_table(results: Sequence[CaseResult]) -> str:
    """A fixed-width pass/fail table with timings and key figures."""
    rows = [("case", "clauses", "result", "time", "figures / reason")]
    for r in results:
        verdict = "PASS" if r.passed else "FAIL"
        rows.append((r.name, r.clauses, verdict, f"{r.seconds:.1f}s",
                     _figures_text(r.figures) if r.passed else r.detail[:70]))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
             for row in rows]
    passed = sum(r.passed for r in results)
    lines.append(f"{passed}/{len(results)} passed")
    return "\n".join(lines)
