"""Figures of a simulator run: what happened to every session, not just a sample.

`SimTally` is fed every audit record of a run (`World(on_record=...)`) and keeps, for the
client side of all sessions, the recovery episodes and their outcomes, and how many
sessions are in each phase over time (bounded memory: a histogram and a fixed number of
time buckets). It needs nothing beyond the standard library.

`plot_recovery_cdf` and `plot_timeline` draw them (matplotlib, Agg backend; the `sim`
extra); `plot_time_on_best` and `plot_path_timeseries` draw the path-quality comparison
(`jumpvpn_core.sim.compare`). A recovery *episode* starts when a client leaves ATTACHED and
ends when it is ATTACHED again (recovered, directly or through DEGRADED) or TERMINATED
(failed); the CDF is over all episodes, so it ends at the fraction that recovered, not at 1.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from jumpvpn_core.phases import Phase

__all__ = ["PATH_COLOURS", "PHASE_COLOURS", "SimTally", "plot_path_timeseries",
           "plot_recovery_cdf", "plot_time_on_best", "plot_timeline"]

PHASE_COLOURS: dict[str, str] = {
    Phase.BIRTH.value: "#bbbbbb",
    Phase.ATTACHED.value: "#2ca02c",
    Phase.RECOVERING.value: "#ff7f0e",
    Phase.DEGRADED.value: "#d62728",
    Phase.TERMINATED.value: "#222222",
}
_PHASES = tuple(PHASE_COLOURS)
#: Colour of path number n (cycled), and of "on no path".
PATH_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
_NO_PATH = "#dddddd"
_BEHAVIOURS = (("quality", "samples fed", "#2ca02c"),
               ("baseline", "first available (no samples)", "#7f7f7f"))
_ATTACHED = Phase.ATTACHED.value
_TERMINATED = Phase.TERMINATED.value


class SimTally:
    """Client-side figures across all sessions, computed from the run's audit records.

    `sessions` start in BIRTH; `duration_ms` is split into `buckets` time buckets for the
    phase occupancy. Feed every record to `record` (others than client state changes are
    ignored), then call `finish(now_ms)`.
    """

    def __init__(self, sessions: int, duration_ms: int, buckets: int = 400) -> None:
        self.sessions = sessions
        self.duration_ms = duration_ms
        self.bucket_ms = max(1, -(-duration_ms // max(1, buckets)))
        self._counts = dict.fromkeys(_PHASES, 0)
        self._counts[Phase.BIRTH.value] = sessions
        #: Phase counts at the end of each bucket, in `_PHASES` order.
        self.occupancy: list[tuple[int, ...]] = []
        self._open: dict[str, int] = {}
        #: Completed episodes: duration (ms) -> count.
        self.recovered: Counter[int] = Counter()
        #: Episodes that ended TERMINATED, by reason.
        self.failed: Counter[str] = Counter()
        #: Sessions terminated while not recovering (e.g. BIRTH_TIMEOUT), by reason.
        self.ended_otherwise: Counter[str] = Counter()
        self.still_recovering = 0

    def record(self, record: dict[str, Any]) -> None:
        """Take one audit record (as `StateChanged.to_record()` / `Rejected.to_record()`)."""
        if record.get("type") != "state_change" or record.get("role") != "client":
            return
        ts = record["ts_ms"]
        self._advance(ts)
        before, after = record["from"], record["to"]
        self._counts[before] -= 1
        self._counts[after] += 1
        session = record["session_id"]
        if before == _ATTACHED and after != _ATTACHED and after != _TERMINATED:
            self._open[session] = ts
        elif after == _ATTACHED:
            started = self._open.pop(session, None)
            if started is not None:
                self.recovered[ts - started] += 1
        elif after == _TERMINATED:
            if self._open.pop(session, None) is not None:
                self.failed[record["reason"]] += 1
            else:
                self.ended_otherwise[record["reason"]] += 1

    def _advance(self, ts: int) -> None:
        bucket = min(ts, self.duration_ms) // self.bucket_ms
        snapshot = tuple(self._counts[p] for p in _PHASES)
        while len(self.occupancy) < bucket:
            self.occupancy.append(snapshot)

    def finish(self, now_ms: int) -> None:
        """Close the tally at `now_ms` (the time the run reached)."""
        self._advance(now_ms + self.bucket_ms)
        self.still_recovering = len(self._open)

    @property
    def episodes(self) -> int:
        """Recovery episodes started (recovered + failed + still open)."""
        return sum(self.recovered.values()) + sum(self.failed.values()) + self.still_recovering

    def percentile_ms(self, fraction: float) -> int | None:
        """Recovery time at `fraction` of *all* episodes; None when that many never
        recovered (the failures count as never)."""
        return self._rank_ms(fraction, self.episodes, None)

    def recovered_percentile_ms(self, fraction: float) -> int | None:
        """Recovery time at `fraction` of the *recovered* episodes (None: none recovered)."""
        total = sum(self.recovered.values())
        return self._rank_ms(fraction, total, max(self.recovered) if total else None)

    def _rank_ms(self, fraction: float, total: int, beyond: int | None) -> int | None:
        """The recovery time at rank ceil(`fraction` x `total`) among the recovered
        episodes, counted upwards; `beyond` when the recovered ones do not reach it."""
        if total == 0:
            return None
        rank = max(1, int(fraction * total + 0.999999))
        seen = 0
        for millis in sorted(self.recovered):
            seen += self.recovered[millis]
            if seen >= rank:
                return millis
        return beyond

    def to_data(self) -> dict[str, Any]:
        """The episode figures as JSON-ready data (part of `summary.json`)."""
        return {
            "episodes": self.episodes,
            "recovered": sum(self.recovered.values()),
            "failed": dict(sorted(self.failed.items())),
            "still_recovering": self.still_recovering,
            "terminated_outside_recovery": dict(sorted(self.ended_otherwise.items())),
            "p50_ms": self.percentile_ms(0.5),
            "p95_ms": self.percentile_ms(0.95),
            "p99_ms": self.percentile_ms(0.99),
            "recovered_p50_ms": self.recovered_percentile_ms(0.5),
            "recovered_p95_ms": self.recovered_percentile_ms(0.95),
            "recovered_p99_ms": self.recovered_percentile_ms(0.99),
        }


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=110, metadata={"Software": None})
    _pyplot().close(fig)


def plot_recovery_cdf(tally: SimTally, path: Path, *, title: str, bound_ms: int) -> None:
    """CDF of recovery time over all recovery episodes, to `path` (PNG).

    The curve ends at the recovered fraction; the rest is drawn as the failures (by
    reason). A dashed vertical line marks the recovery bound (`max_recovery_window_ms`),
    dotted ones the p50/p95/p99 of the recovered episodes; the title gives the p50/p95/p99
    of all episodes too ("not recovered" where the failures reach that percentile).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.2))
    total = tally.episodes
    recovered = sum(tally.recovered.values())
    xs: list[float] = [0.0]
    ys: list[float] = [0.0]
    seen = 0
    for millis in sorted(tally.recovered):
        seen += tally.recovered[millis]
        xs.append(millis / 1000)
        ys.append(seen / total)
    right = max([bound_ms / 1000 * 1.15, *(x * 1.05 for x in xs)])
    if total:
        xs.append(right)
        ys.append(ys[-1])
        ax.step(xs, ys, where="post", color="#1f77b4", linewidth=2,
                label=f"recovered: {recovered:,} of {total:,} episodes ({recovered / total:.1%})")
        failed = total - recovered
        if failed:
            end = recovered / total
            ax.axhspan(end, 1.0, color="#d62728", alpha=0.12, linewidth=0)
            reasons = ", ".join(f"{reason} {count:,}" for reason, count
                                in tally.failed.most_common())
            if tally.still_recovering:
                reasons += (", " if reasons else "") + \
                    f"still recovering at the end {tally.still_recovering:,}"
            ax.plot([right], [end], marker="x", color="#d62728", markersize=10,
                    linestyle="none",
                    label=f"not recovered: {failed:,} ({failed / total:.1%}): {reasons}")
    else:
        ax.text(0.5, 0.5, "no recovery episodes in this run", ha="center", va="center",
                transform=ax.transAxes)
    ax.axvline(bound_ms / 1000, color="#444444", linestyle="--", linewidth=1.2,
               label=f"recovery bound (max_recovery_window_ms = {bound_ms / 1000:g} s)")
    overall = []
    among = []
    share = recovered / total if total else 0.0
    for rank, (label, fraction) in enumerate((("p50", 0.5), ("p95", 0.95), ("p99", 0.99))):
        value = tally.percentile_ms(fraction)
        overall.append(f"{label} " + ("not recovered" if value is None
                                      else f"{value / 1000:.2f} s"))
        mine = tally.recovered_percentile_ms(fraction)
        if mine is None:
            continue
        among.append(f"{label} {mine / 1000:.2f} s")
        # Marked on the curve: the recovered episodes' percentile sits at fraction * share.
        ax.axvline(mine / 1000, color="#7f7f7f", linestyle=":", linewidth=1)
        ax.plot([mine / 1000], [fraction * share], marker="o", color="#333333", markersize=4)
        ax.annotate(f"{label} {mine / 1000:.2f} s", (mine / 1000, fraction * share),
                    xytext=(-6, 6 + 13 * rank), textcoords="offset points", ha="right",
                    fontsize="small", color="#333333")
    subtitle = f"{total:,} episodes; all: " + ", ".join(overall)
    if among and recovered < total:
        subtitle += "\nrecovered ones (marked): " + ", ".join(among)
    ax.set_xlim(0, right)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recovery time (s): client leaves ATTACHED until ATTACHED again")
    ax.set_ylabel("fraction of all recovery episodes")
    ax.set_title(f"Recovery-time CDF: {title}\n{subtitle}", fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small", framealpha=0.9)
    fig.tight_layout()
    _save(fig, path)


def plot_timeline(stats: Any, duration_ms: int, path: Path, *, title: str,
                  tally: SimTally | None = None) -> None:
    """Phase occupancy across all sessions (left, when `tally` is given) beside the
    client phase timeline of the sample sessions in `stats.timelines` (right), to `path`."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    samples = sorted(stats.timelines.items())
    panels = 2 if tally is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 4.8), squeeze=False,
                             gridspec_kw={"width_ratios": [1.2, 1][:panels]})
    if tally is not None:
        ax = axes[0][0]
        series = list(zip(*tally.occupancy, strict=True)) if tally.occupancy else []
        times = [(index + 1) * tally.bucket_ms / 1000 for index in range(len(tally.occupancy))]
        if series:
            shares = [[count / max(1, tally.sessions) for count in column] for column in series]
            ax.stackplot(times, *shares, colors=[PHASE_COLOURS[p] for p in _PHASES],
                         labels=list(_PHASES), linewidth=0)
        ax.set_xlim(0, duration_ms / 1000)
        ax.set_ylim(0, 1)
        ax.set_xlabel("virtual time (s)")
        ax.set_ylabel(f"share of all {tally.sessions:,} sessions")
        ax.set_title("client phase occupancy, all sessions", fontsize="medium")
    ax = axes[0][panels - 1]
    labels = []
    for row, (index, timeline) in enumerate(samples):
        labels.append(f"session {index}")
        for number, (start, phase) in enumerate(timeline):
            end = timeline[number + 1][0] if number + 1 < len(timeline) else duration_ms
            if phase == _TERMINATED:
                end = duration_ms
            ax.broken_barh([(start / 1000, max(end - start, 1) / 1000)], (row - 0.4, 0.8),
                           facecolors=PHASE_COLOURS.get(phase, "#1f77b4"))
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, duration_ms / 1000)
    ax.set_xlabel("virtual time (s)")
    ax.set_title(f"client phase timeline, first {len(labels)} sessions", fontsize="medium")
    handles = [Rectangle((0, 0), 1, 1, color=colour) for colour in PHASE_COLOURS.values()]
    fig.legend(handles, list(PHASE_COLOURS), loc="lower center", ncol=len(PHASE_COLOURS),
               fontsize="small", frameon=False)
    fig.suptitle(f"Session phases: {title}", fontsize="large")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    _save(fig, path)


def plot_time_on_best(rows: list[tuple[str, dict[str, Any]]], path: Path, *,
                      title: str) -> None:
    """Per scenario (`rows`: (scenario, `compare.comparison` data)): the share of the
    eligible time on the best path of each behaviour (left), and switches per session,
    mean and max, with the hysteresis bound written above (right), to `path` (PNG)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.6))
    width = 0.38
    top_switches = 1
    for offset, (key, label, colour) in enumerate(_BEHAVIOURS):
        xs = [number + (offset - 0.5) * width for number in range(len(rows))]
        shares, means, maxima = [], [], []
        for x, (_name, data) in zip(xs, rows, strict=True):
            figures = data.get(key) or {}
            share = figures.get("time_on_best")
            shares.append(0.0 if share is None else 100 * share)
            if share is not None:
                left.annotate(f"{100 * share:.1f}%", (x, 100 * share), xytext=(0, 3),
                              textcoords="offset points", ha="center", fontsize="small")
            switches = figures.get("switches_per_session", {})
            means.append(switches.get("mean", 0))
            maxima.append(switches.get("max", 0))
        top_switches = max(top_switches, *maxima)
        left.bar(xs, shares, width, color=colour, label=label)
        right.bar(xs, maxima, width, color=colour, alpha=0.35,
                  label=f"{label}: max per session")
        right.bar(xs, means, width, color=colour, label=f"{label}: mean per session")
    for number, (_name, data) in enumerate(rows):
        if all((data.get(key) or {}).get("time_on_best") is None for key, *_ in _BEHAVIOURS):
            left.text(number, 4, "no eligible time:\nno path stays best\nfor the dwell time",
                      ha="center", fontsize="small")
        right.annotate(f"bound {data['hysteresis_bound']:,}", (number, top_switches * 1.25),
                       ha="center", fontsize="small", color="#d62728")
    left.axhline(95, color="#d62728", linestyle="--", linewidth=1, label="95 %")
    names = [name for name, _data in rows]
    for ax in (left, right):
        ax.set_xticks(range(len(rows)), names, rotation=12, fontsize="small")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2,
                  fontsize="small", frameon=False)
    left.set_ylim(0, 110)
    left.set_ylabel("% of eligible time on the best path")
    left.set_title("time on the best available path\n(eligible: best for at least the "
                   "dwell time)", fontsize="medium")
    right.set_ylim(0, top_switches * 1.4)
    right.set_ylabel("switches per session")
    right.set_title("switches per session (hysteresis bound ceil(T / dwell) above)",
                    fontsize="medium")
    fig.suptitle(title, fontsize="large")
    fig.tight_layout()
    _save(fig, path)


def _strip(ax: Any, row: int, positions: list[tuple[int, int]], end_ms: int) -> None:
    """One behaviour's path over time as coloured bars (grey: on no path)."""
    for number, (start, position) in enumerate(positions):
        stop = positions[number + 1][0] if number + 1 < len(positions) else end_ms
        colour = _NO_PATH if position < 0 else PATH_COLOURS[position % len(PATH_COLOURS)]
        ax.broken_barh([(start / 1000, max(stop - start, 1) / 1000)], (row - 0.4, 0.8),
                       facecolors=colour, linewidth=0)


def plot_path_timeseries(paths: list[tuple[str, list[int]]], times_ms: list[int],
                         best: list[tuple[int, bool]],
                         positions: list[tuple[str, list[tuple[int, int]]]],
                         estimates: list[tuple[int, int, int]], end_ms: int, path: Path, *,
                         title: str) -> None:
    """One session over time, to `path` (PNG): each path's true cost (solid) and the
    client's own estimate after each sample (dots), above strips of the best path (pale
    while not yet eligible) and of the path each behaviour's client was on.

    `paths`: (name, true cost at each of `times_ms`); `best`: (best path number, eligible)
    at each of `times_ms`; `positions`: (behaviour label, (time, path number or -1))."""
    plt = _pyplot()
    from matplotlib.patches import Patch

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6.4), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.2]})
    seconds = [t / 1000 for t in times_ms]
    for number, (name, costs) in enumerate(paths):
        colour = PATH_COLOURS[number % len(PATH_COLOURS)]
        top.plot(seconds, costs, color=colour, linewidth=1.8, label=f"{name}: true cost")
        mine = [(t / 1000, cost) for t, n, cost in estimates if n == number]
        if mine:
            top.plot([x for x, _c in mine], [c for _x, c in mine], linestyle="none",
                     marker=".", markersize=1.5, color=colour, alpha=0.5,
                     label=f"{name}: client's estimate")
    top.set_ylabel("cost (ms): RTT + loss penalty")
    top.set_yscale("log")
    top.grid(True, which="both", alpha=0.25)
    top.legend(loc="upper right", fontsize="small", ncol=2, framealpha=0.9)
    labels = ["best path"]
    runs: list[tuple[int, tuple[int, bool]]] = []  # (start, (best path, eligible)), merged
    for start, state in zip(times_ms, best, strict=True):
        if not runs or runs[-1][1] != state:
            runs.append((start, state))
    for number, (start, (best_path, eligible)) in enumerate(runs):
        stop = runs[number + 1][0] if number + 1 < len(runs) else end_ms
        bottom.broken_barh([(start / 1000, (stop - start) / 1000)], (-0.4, 0.8),
                           facecolors=PATH_COLOURS[best_path % len(PATH_COLOURS)],
                           alpha=1.0 if eligible else 0.3, linewidth=0)
    for row, (label, changes) in enumerate(positions, start=1):
        labels.append(label)
        _strip(bottom, row, changes, end_ms)
    bottom.set_yticks(range(len(labels)), labels, fontsize="small")
    bottom.invert_yaxis()
    bottom.set_xlim(0, end_ms / 1000)
    bottom.set_xlabel("virtual time (s)")
    handles = [Patch(color=PATH_COLOURS[n % len(PATH_COLOURS)], label=name)
               for n, (name, _c) in enumerate(paths)]
    handles.append(Patch(color=_NO_PATH, label="on no path (not ATTACHED)"))
    bottom.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.45),
                  ncol=len(handles), fontsize="small", frameon=False)
    fig.suptitle(title, fontsize="large")
    fig.tight_layout()
    _save(fig, path)
