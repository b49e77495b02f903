"""What one conformance run exercised: (role, phase, event, reason) triples and boundaries.

A `Coverage` is filled by the conformance machine after every step the reference took: the
role, the phase the step started in, the event type and each reason code the step emitted
(`StateChanged` and `Rejected` reasons; `-` for a step that emitted none). Boundaries are
the labels of `jumpvpn_core.testing.boundaries` the machine landed on (a time edge, a
freshness offset, an edge nonce, a zone sibling). `jumpvpn conformance` prints the summary
and puts `to_data()` in its `--json` report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from jumpvpn_core.effects import Effect, Rejected, StateChanged
from jumpvpn_core.phases import Phase, Role

__all__ = ["NO_REASON", "Coverage", "Triple"]

NO_REASON = "-"
"""The reason slot of a step that emitted no reason code."""

Triple = tuple[str, str, str, str]
"""`(role, phase before the step, event type, reason code or NO_REASON)`."""


class Coverage:
    """Counts of triples and boundaries over one run (every example, shrinking included)."""

    def __init__(self) -> None:
        self.triples: Counter[Triple] = Counter()
        self.boundaries: Counter[str] = Counter()
        self.steps = 0

    def step(self, role: Role, phase: Phase, event: Any, effects: Sequence[Effect]) -> None:
        """Count one reference step."""
        self.steps += 1
        kind = type(event).__name__
        reasons = [e.reason.value for e in effects if isinstance(e, (StateChanged, Rejected))]
        for reason in reasons or [NO_REASON]:
            self.triples[(role.value, phase.value, kind, reason)] += 1

    def boundary(self, label: str) -> None:
        """Count one landing on a boundary."""
        self.boundaries[label] += 1

    def summary(self) -> str:
        """Two lines for a terminal: the distinct triples and the boundaries hit."""
        roles = sorted({t[0] for t in self.triples})
        hit = ", ".join(f"{label} x{count}" for label, count in sorted(self.boundaries.items()))
        return (f"coverage: {len(self.triples)} distinct (role, phase, event, reason) triples "
                f"over {self.steps} steps ({', '.join(roles) or 'no role'})\n"
                f"boundaries hit ({len(self.boundaries)}): {hit or 'none'}")

    def to_data(self) -> dict[str, Any]:
        """The JSON form: every triple with its count, every boundary with its count."""
        return {
            "steps": self.steps,
            "triples": [{"role": r, "phase": p, "event": e, "reason": c, "count": n}
                        for (r, p, e, c), n in sorted(self.triples.items())],
            "boundaries": dict(sorted(self.boundaries.items())),
        }
