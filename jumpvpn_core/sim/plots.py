"""Plots of a finished world (matplotlib, Agg backend; needs the `sim` extra).

Imported only by callers that want pictures, so the simulator itself needs no matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

from jumpvpn_core.phases import Phase
from jumpvpn_core.sim.world import WorldStats

__all__ = ["PHASE_COLOURS", "plot_recovery_cdf", "plot_timeline"]

PHASE_COLOURS: dict[str, str] = {
    Phase.BIRTH.value: "#bbbbbb",
    Phase.ATTACHED.value: "#2ca02c",
    Phase.RECOVERING.value: "#ff7f0e",
    Phase.DEGRADED.value: "#d62728",
    Phase.TERMINATED.value: "#222222",
}


def plot_timeline(stats: WorldStats, duration_ms: int, path: Path) -> None:
    """One row per sample session, one coloured span per client phase, to `path` (PNG)."""
    fig, ax = plt.subplots(figsize=(10, 0.5 + 0.45 * max(1, len(stats.timelines))))
    labels = []
    for row, (index, timeline) in enumerate(sorted(stats.timelines.items())):
        labels.append(f"session {index}")
        for number, (start, phase) in enumerate(timeline):
            end = timeline[number + 1][0] if number + 1 < len(timeline) else duration_ms
            if phase == Phase.TERMINATED.value:
                end = duration_ms
            ax.broken_barh([(start / 1000, max(end - start, 1) / 1000)], (row - 0.4, 0.8),
                           facecolors=PHASE_COLOURS.get(phase, "#1f77b4"))
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlim(0, duration_ms / 1000)
    ax.set_xlabel("virtual time (s)")
    ax.set_title("client phase timeline (sample sessions)")
    handles = [Rectangle((0, 0), 1, 1, color=colour) for colour in PHASE_COLOURS.values()]
    ax.legend(handles, list(PHASE_COLOURS), loc="upper center", ncol=len(PHASE_COLOURS),
              bbox_to_anchor=(0.5, -0.25 if len(labels) > 2 else -0.6), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def plot_recovery_cdf(stats: WorldStats, path: Path) -> None:
    """CDF of completed recovery times (RECOVERING -> ATTACHED), to `path` (PNG)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    histogram = stats.recovery_histogram
    total = sum(histogram)
    if total:
        xs: list[float] = []
        ys: list[float] = []
        seen = 0
        for millis, count in enumerate(histogram):
            if count:
                seen += count
                xs.append(millis / 1000)
                ys.append(seen / total)
        ax.step(xs, ys, where="post")
        ax.set_ylim(0, 1.02)
    else:
        ax.text(0.5, 0.5, "no completed recoveries", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("recovery time (s)")
    ax.set_ylabel("fraction of recoveries")
    ax.set_title(f"recovery-time CDF ({total:,} recoveries)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
