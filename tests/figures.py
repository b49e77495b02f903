"""Figures that tests measure and CI must show (race histories, exploration sizes).

A test calls `report_figures(title, line)`; `tests/conftest.py` prints every reported line
in pytest's terminal summary, so the numbers appear in CI output without `-s`.
"""

from __future__ import annotations

REPORTED: list[tuple[str, str]] = []


def report_figures(title: str, line: str) -> None:
    """Record one line of figures under `title` for the end-of-run summary."""
    REPORTED.append((title, line))
