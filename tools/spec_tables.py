"""Read the normative tables in `specs/` and draw the state diagram from them.

A checkout-only tool (not in the wheel). Tests use it to check that `specs/` and the code
state the same contracts (and replay the core's transitions through an independent
`transitions.Machine` built from the spec rows); `python -m tools.spec_tables --write`
regenerates `specs/state-diagram.md` from `specs/transition-table.md` with
`jumpvpn_core.audit.diagram`, so the picture can never drift from the spec table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "SpecOracle",
    "build_oracle_machine",
    "read_table",
    "render_state_diagram",
    "transition_rows",
]

TransitionRow = tuple[str, str, str]


def read_table(path: Path, first_header: str) -> list[list[str]]:
    """Rows of the first markdown table in `path` whose first header cell is `first_header`.

    Cells are stripped of surrounding spaces and backticks. Raises `ValueError` if the
    table is missing, so a renamed column fails loudly instead of comparing nothing.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        cells = _cells(line)
        if cells and cells[0] == first_header:
            rows = []
            for row_line in lines[index + 2:]:
                row = _cells(row_line)
                if not row:
                    break
                rows.append(row)
            return rows
    raise ValueError(f"{path}: no table whose first column is {first_header!r}")


def _cells(line: str) -> list[str]:
    line = line.strip()
    if not (line.startswith("|") and line.endswith("|")):
        return []
    return [cell.strip().strip("`") for cell in line[1:-1].split("|")]


def transition_rows(path: Path) -> list[TransitionRow]:
    """The (from, reason, to) rows of `specs/transition-table.md`."""
    rows = read_table(path, "from")
    out = []
    for row in rows:
        if len(row) != 3:
            raise ValueError(f"{path}: transition row {row!r} does not have 3 cells")
        out.append((row[0], row[1], row[2]))
    return out


def _machine_spec(rows: Sequence[TransitionRow]) -> dict[str, Any]:
    states: list[str] = []
    for src, _reason, dst in rows:
        for state in (src, dst):
            if state not in states:
                states.append(state)
    transitions = [{"trigger": reason, "source": src, "dest": dst} for src, reason, dst in rows]
    return {"states": states, "transitions": transitions, "initial": rows[0][0] if rows else None,
            "auto_transitions": False, "ignore_invalid_triggers": False}


class SpecOracle:
    """An independent `transitions.Machine` built only from the spec rows.

    `fire(phase, reason)` puts the machine in `phase`, triggers `reason` and returns the
    phase it lands in; a transition the spec lacks raises `transitions.MachineError`.
    """

    def __init__(self, rows: Sequence[TransitionRow]) -> None:
        from transitions import Machine

        class _Model:
            pass

        self._model: Any = _Model()  # Machine adds trigger() and state to it at run time
        self._machine = Machine(model=self._model, **_machine_spec(rows))

    def fire(self, phase: str, reason: str) -> str:
        """Trigger `reason` from `phase`; return the resulting phase."""
        self._machine.set_state(phase, model=self._model)
        self._model.trigger(reason)
        return str(self._model.state)


def build_oracle_machine(rows: Sequence[TransitionRow]) -> SpecOracle:
    """The spec oracle for `rows` (see `SpecOracle`)."""
    return SpecOracle(rows)


def render_state_diagram(rows: Sequence[TransitionRow]) -> str:
    """`specs/state-diagram.md`'s text for the spec rows (`jumpvpn_core.audit.diagram`)."""
    from jumpvpn_core.audit.diagram import state_diagram_markdown

    return state_diagram_markdown(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Check (default) or rewrite (`--write`) `specs/state-diagram.md`."""
    parser = argparse.ArgumentParser(prog="python -m tools.spec_tables")
    parser.add_argument("--specs", type=Path, default=Path("specs"))
    parser.add_argument("--write", action="store_true", help="rewrite the diagram file")
    args = parser.parse_args(argv)
    rows = transition_rows(args.specs / "transition-table.md")
    text = render_state_diagram(rows)
    target: Path = args.specs / "state-diagram.md"
    if args.write:
        target.write_text(text, encoding="utf-8")
        return 0
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        print(f"{target} is stale; run with --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
