"""The state diagram, drawn from the transition table itself (so it cannot drift).

`transition_rows()` reads `jumpvpn_core.phases.TRANSITION_TABLE`; `render_mermaid` turns
rows into a mermaid `stateDiagram-v2` (title, no styling beyond a dark TERMINATED, one edge
per phase pair with its reason codes), `draw_diagram` into a PNG or SVG (matplotlib, the
`sim` extra). Reasons that lead to the same phase from *every* live phase (the §8
fail-closed catch-alls) are drawn once, as a note, instead of on every edge.
`specs/state-diagram.md` is `state_diagram_markdown(rows)` of the spec's rows; a test checks
that it is current (`python -m tools.spec_tables --write` or `jumpvpn diagram --markdown`
rewrites it).

Rows are `(from, reason, to)` strings; output order is canonical (phases and reasons in
their enum order), so the same table always gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from jumpvpn_core.phases import ABSORBING, TRANSITION_TABLE, TRANSITION_TABLE_VERSION, Phase
from jumpvpn_core.reasons import ReasonCode

__all__ = [
    "DiagramEdges",
    "diagram_edges",
    "draw_diagram",
    "render_mermaid",
    "state_diagram_markdown",
    "transition_rows",
]

Row = tuple[str, str, str]
TITLE = f"Session phases (transition table v{TRANSITION_TABLE_VERSION})"
_PHASE_ORDER = [p.value for p in Phase]
_REASON_ORDER = [r.value for r in ReasonCode]


def transition_rows() -> list[Row]:
    """The code's transition table as `(from, reason, to)` strings."""
    return [(src.value, reason.value, dst.value)
            for (src, reason), dst in TRANSITION_TABLE.items()]


def _phase_key(name: str) -> tuple[int, str]:
    return (_PHASE_ORDER.index(name) if name in _PHASE_ORDER else len(_PHASE_ORDER), name)


def _reason_key(name: str) -> tuple[int, str]:
    return (_REASON_ORDER.index(name) if name in _REASON_ORDER else len(_REASON_ORDER), name)


@attrs.frozen
class DiagramEdges:
    """What the diagram draws: phases, edges with their own reasons, and the catch-alls."""

    phases: tuple[str, ...]
    #: (from, to) -> reasons, without the catch-alls; in canonical order.
    edges: tuple[tuple[str, str, tuple[str, ...]], ...]
    #: to -> reasons that lead there from every live phase.
    catch_all: tuple[tuple[str, tuple[str, ...]], ...]
    start: str


def diagram_edges(rows: Sequence[Row]) -> DiagramEdges:
    """Group `rows` into edges and catch-alls (see the module doc)."""
    phases = sorted({p for src, _r, dst in rows for p in (src, dst)}, key=_phase_key)
    absorbing = {p.value for p in ABSORBING}
    live = {p for p in phases if p not in absorbing}
    sources: dict[tuple[str, str], set[str]] = {}
    for src, reason, dst in rows:
        sources.setdefault((reason, dst), set()).add(src)
    catch = {key for key, srcs in sources.items() if len(live) > 1 and srcs == live}
    grouped: dict[tuple[str, str], list[str]] = {}
    for src, reason, dst in rows:
        if (reason, dst) not in catch:
            grouped.setdefault((src, dst), []).append(reason)
    edges = tuple(
        (src, dst, tuple(sorted(set(reasons), key=_reason_key)))
        for (src, dst), reasons in sorted(grouped.items(),
                                          key=lambda i: (_phase_key(i[0][0]), _phase_key(i[0][1])))
    )
    targets = sorted({dst for _reason, dst in catch}, key=_phase_key)
    catch_all = tuple(
        (dst, tuple(sorted((r for r, d in catch if d == dst), key=_reason_key)))
        for dst in targets
    )
    start = Phase.BIRTH.value if Phase.BIRTH.value in phases else phases[0]
    return DiagramEdges(tuple(phases), edges, catch_all, start)


def render_mermaid(rows: Sequence[Row], title: str = TITLE) -> str:
    """A mermaid `stateDiagram-v2` of `rows` (no code fence)."""
    shape = diagram_edges(rows)
    out = ["---", f"title: {title}", "---", "stateDiagram-v2", "  direction LR",
           "  classDef absorbing fill:#222,color:#fff,stroke:#222", ""]
    out.append(f"  [*] --> {shape.start}")
    for src, dst, reasons in shape.edges:
        out.append(f"  {src} --> {dst}: {'<br/>'.join(reasons)}")
    for dst, reasons in shape.catch_all:
        out += [f"  note left of {dst}", "    from every live phase:",
                *(f"    {reason}" for reason in reasons), "  end note"]
    absorbing = [p for p in shape.phases if p in {a.value for a in ABSORBING}]
    for phase in absorbing:
        out.append(f"  class {phase} absorbing")
    return "\n".join(out) + "\n"


def state_diagram_markdown(rows: Sequence[Row]) -> str:
    """The text of `specs/state-diagram.md` for `rows`."""
    return (
        "# State diagram (generated)\n\n"
        "Drawn from `specs/transition-table.md` (the same rows as\n"
        "`jumpvpn_core.phases.TRANSITION_TABLE`); regenerate with\n"
        "`python -m tools.spec_tables --write`. A test fails if this file is stale.\n"
        "Edge labels are reason codes; the note lists the reasons that end a session from\n"
        "every live phase (fail closed, §8). `jumpvpn diagram` draws the same picture as\n"
        "SVG or PNG.\n\n"
        "```mermaid\n" + render_mermaid(rows) + "```\n"
    )


# -- drawing ---------------------------------------------------------------------------------

# Hand-placed positions for the five phases (x, y); any other phase goes on a circle.
_POSITIONS: dict[str, tuple[float, float]] = {
    "BIRTH": (0.0, 0.0),
    "ATTACHED": (6.0, 0.0),
    "RECOVERING": (6.0, -3.2),
    "DEGRADED": (6.0, -6.4),
    "TERMINATED": (0.0, -6.4),
}
_FILL = {"TERMINATED": ("#222222", "white"), "BIRTH": ("#eeeeee", "black"),
         "ATTACHED": ("#d8f0d8", "black"), "RECOVERING": ("#ffe6cc", "black"),
         "DEGRADED": ("#f8d0d0", "black")}


def _positions(phases: Sequence[str]) -> dict[str, tuple[float, float]]:
    import math

    out = {p: _POSITIONS[p] for p in phases if p in _POSITIONS}
    others = [p for p in phases if p not in out]
    for index, phase in enumerate(others):
        angle = 2 * math.pi * index / max(1, len(others))
        out[phase] = (9 + 2 * math.cos(angle), -3 + 2 * math.sin(angle))
    return out


def draw_diagram(rows: Sequence[Row], path: Path, title: str = TITLE) -> None:
    """Draw `rows` to `path` (`.png` or `.svg`, by suffix) with matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shape = diagram_edges(rows)
    where = _positions(shape.phases)
    fig, ax = plt.subplots(figsize=(11, 8.5))
    ax.set_axis_off()
    boxes: dict[str, Any] = {}
    for phase, (x, y) in where.items():
        fill, ink = _FILL.get(phase, ("#dde8f5", "black"))
        boxes[phase] = ax.text(
            x, y, phase, ha="center", va="center", fontsize=11, fontweight="bold",
            color=ink, zorder=3,
            bbox={"boxstyle": "round,pad=0.6", "facecolor": fill, "edgecolor": "#333333"})
    xs = [x for x, _y in where.values()]
    ys = [y for _x, y in where.values()]
    ax.set_xlim(min(xs) - 2.4, max(xs) + 3.6)
    ax.set_ylim(min(ys) - 3.6, max(ys) + 1.6)
    ax.set_title(title, fontsize=14)
    # Fixed before the edges: their labels are placed in display space.
    fig.tight_layout()
    pairs = {(src, dst) for src, dst, _r in shape.edges}
    for src, dst, reasons in shape.edges:
        label = "\n".join(reasons)
        if src == dst:
            _self_loop(ax, where[src], label)
            continue
        (x1, y1), (x2, y2) = where[src], where[dst]
        rad = 0.0
        if (dst, src) in pairs:
            rad = 0.22  # a pair of opposite edges: each bends to its own side
        elif {src, dst} == {"ATTACHED", "DEGRADED"}:
            rad = 0.45  # around RECOVERING, which sits between them
        elif x1 != x2 and y1 != y2:
            rad = 0.15  # diagonals bend away from the column of live phases
        _edge(ax, (where[src], boxes[src]), (where[dst], boxes[dst]), rad, label)
    bx, by = where[shape.start]
    ax.annotate("", xy=(bx - 0.9, by), xytext=(bx - 1.9, by),
                arrowprops={"arrowstyle": "-|>", "color": "#333333"})
    ax.plot([bx - 1.95], [by], marker="o", color="#333333", markersize=8)
    for dst, reasons in shape.catch_all:
        x, y = where[dst]
        ax.annotate("from every live phase (fail closed):\n" + "\n".join(reasons),
                    xy=(x, y - 0.35), xytext=(x, y - 2.4), ha="center", va="center",
                    fontsize=9, zorder=2,
                    bbox={"boxstyle": "round,pad=0.5", "facecolor": "white",
                          "edgecolor": "#999999", "linestyle": "--"},
                    arrowprops={"arrowstyle": "-|>", "color": "#777777", "linestyle": "--"})
    # No date, software stamp or random ids: the same table gives the same bytes.
    if path.suffix.lower() == ".svg":
        with matplotlib.rc_context({"svg.hashsalt": "jumpvpn-core"}):
            fig.savefig(path, metadata={"Date": None, "Creator": None})
    else:
        fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _edge(ax: Any, start: tuple[tuple[float, float], Any],
          end: tuple[tuple[float, float], Any], rad: float, label: str) -> None:
    ((x1, y1), box1), ((x2, y2), box2) = start, end
    ax.annotate("", xy=(x2, y2), xytext=(x1, y1), zorder=1,
                arrowprops={"arrowstyle": "-|>", "color": "#333333", "shrinkA": 4,
                            "shrinkB": 4, "connectionstyle": f"arc3,rad={rad}",
                            "linewidth": 1.2, "mutation_scale": 14,
                            "patchA": box1.get_bbox_patch(),
                            "patchB": box2.get_bbox_patch()})
    # The midpoint of matplotlib's arc3 curve, computed as it does in display space: the
    # chord's midpoint moved by rad/2 times the chord turned clockwise. A bent edge's label
    # sits on the outside of its bend; a straight or diagonal edge's label is centred.
    to_display = ax.transData.transform
    (px1, py1), (px2, py2) = to_display((x1, y1)), to_display((x2, y2))
    ox, oy = 0.5 * rad * (py2 - py1), -0.5 * rad * (px2 - px1)
    mx, my = ax.transData.inverted().transform(((px1 + px2) / 2 + ox, (py1 + py2) / 2 + oy))
    ha = "center"
    if rad and abs(x2 - x1) < 0.5 * abs(y2 - y1):
        ha = "left" if ox > 0 else "right"
        mx += 0.12 if ox > 0 else -0.12
    ax.text(mx, my, label, ha=ha, va="center", fontsize=8.5, zorder=2,
            bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "none",
                  "alpha": 0.9})


def _self_loop(ax: Any, at: tuple[float, float], label: str) -> None:
    x, y = at
    ax.annotate("", xy=(x + 0.45, y + 0.35), xytext=(x - 0.45, y + 0.35), zorder=1,
                arrowprops={"arrowstyle": "-|>", "color": "#333333",
                            "connectionstyle": "arc3,rad=-1.6", "linewidth": 1.2})
    ax.text(x, y + 1.15, label, ha="center", va="center", fontsize=8.5)
