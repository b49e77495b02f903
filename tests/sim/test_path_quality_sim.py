"""The simulator on drifting paths: a client fed samples against the first-available
baseline on the same sessions, seeds and path histories (`specs/path-quality.md`).

Small deterministic worlds (4 sessions, 240 s of virtual time): the figures are exact for
a seed, so the thresholds below are not statistical; they fail when path choice regresses.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import attrs
import pytest

from jumpvpn_core.cli import main
from jumpvpn_core.policy import Policy
from jumpvpn_core.quality import path_cost
from jumpvpn_core.sim import LinkSpec, SimConfig, World, build_scenario
from jumpvpn_core.sim.bestpath import (
    BestPathTracker,
    SessionPathFigures,
    best_path,
    stationary_loss,
    true_cost,
)
from jumpvpn_core.sim.compare import behaviour_figures, hysteresis_bound
from jumpvpn_core.sim.network import DriftProfile
from jumpvpn_core.sim.plots import SimTally
from jumpvpn_core.sim.scenarios import SUITES
from jumpvpn_core.sim.validation import MAX_DELAY_MS, MIN_PROBE_INTERVAL_MS
from jumpvpn_core.state import ClientSide, PathScore
from jumpvpn_core.transport import TransportDescriptor
from tests.figures import report_figures

SESSIONS = 4
DURATION_MS = 240_000
SEED = 2
_PNG = b"\x89PNG\r\n\x1a\n"
# Facts of one run rather than figures of the world.
_RUN_FACTS = ("workers", "wall_s", "events_per_wall_s", "outputs")
_DRIFTING = SUITES["drifting"]
_SLOW = ("drifting-degrading", "drifting-swap", "drifting-bufferbloat")


def _run(name: str, feed: bool, records: list[tuple[int, int, dict[str, Any]]] | None = None,
         ) -> tuple[World, list[SessionPathFigures]]:
    config = attrs.evolve(build_scenario(name, SESSIONS, DURATION_MS, SEED), feed_samples=feed)
    sink = None if records is None else (lambda t, i, r: records.append((t, i, r)))
    world = World(config, on_session_record=sink)
    world.run()
    return world, world.path_figures()


def _share(figures: list[SessionPathFigures]) -> float:
    return sum(f.on_best_ms for f in figures) / sum(f.eligible_ms for f in figures)


# -- the comparison ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", _SLOW)
def test_quality_client_spends_95_percent_on_the_best_path_and_beats_the_baseline(
        name: str) -> None:
    _fed_world, fed = _run(name, True)
    _base_world, base = _run(name, False)
    fed_share, base_share = _share(fed), _share(base)
    report_figures("path quality (simulator, 4 sessions x 240 s)",
                   f"{name}: samples fed {fed_share:.1%}, first available {base_share:.1%}")
    assert fed_share >= 0.95
    assert base_share <= fed_share - 0.15
    # Both behaviours saw the same path histories: the same eligible time per session.
    assert [f.eligible_ms for f in fed] == [f.eligible_ms for f in base]
    assert sum(f.migrations for f in fed) > 0


def test_the_baseline_is_fed_no_samples_and_keeps_its_first_path() -> None:
    world, figures = _run("drifting-degrading", False)
    for session in world.sessions:
        side = session.client.side
        assert isinstance(side, ClientSide)
        assert side.quality == ()
        assert session.client.link.active == session.paths[0].local
    assert all(f.switches == 0 and f.migrations == 0 for f in figures)
    trace = world.stats.path_traces[0]
    assert {position for _t, position in trace.positions} == {0}
    assert trace.estimates == []


@pytest.mark.parametrize("name", _DRIFTING)
def test_switches_stay_within_the_hysteresis_and_anti_flap_bounds(name: str) -> None:
    records: list[tuple[int, int, dict[str, Any]]] = []
    world, figures = _run(name, True, records)
    policy = world.config.policy
    dwell = policy.migration_dwell_ms
    for figure in figures:
        assert figure.switches <= hysteresis_bound(figure.span_ms, dwell)
        assert figure.switches == figure.migrations  # no failure: every switch is a move
    moves: dict[int, list[int]] = defaultdict(list)
    for time_ms, index, record in records:
        if record.get("reason") == "MIGRATED_TO_BETTER_PATH":
            assert record["role"] == "client"
            moves[index].append(time_ms)
    assert sum(len(times) for times in moves.values()) == sum(f.migrations for f in figures)
    for times in moves.values():
        # After a switch `better` is cleared: the next one waits a whole dwell time.
        assert all(b - a >= dwell for a, b in itertools.pairwise(times))
        for start in times:
            in_minute = [t for t in times if start <= t < start + 60_000]
            assert len(in_minute) <= policy.max_switches_per_minute


def test_faster_than_the_dwell_the_client_does_not_chase_the_swap() -> None:
    _world, figures = _run("drifting-swap-fast", True)
    # The better path changes every 4 s, within the 5 s dwell: no path is ever eligible,
    # and the hysteresis keeps the client where it is.
    assert sum(f.eligible_ms for f in figures) == 0
    assert all(f.migrations == 0 for f in figures)


def test_same_seed_same_figures_other_seed_other_figures() -> None:
    _w1, first = _run("drifting-swap", True)
    _w2, again = _run("drifting-swap", True)
    assert first == again
    config = build_scenario("drifting-swap", SESSIONS, DURATION_MS, SEED + 1)
    other = World(config)
    other.run()
    assert other.path_figures() != first


# -- the command line -------------------------------------------------------------------------


def _simulate(out: Path, *extra: str, scenario: str = "drifting-swap",
              seed: str = "3") -> int:
    return main(["simulate", "--scenario", scenario, "--sessions", "3", "--duration", "60s",
                 "--seed", seed, "--out", str(out), *extra])


def _figures(out: Path) -> dict[str, Any]:
    data = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if k not in _RUN_FACTS}


def test_traces_and_report_are_byte_identical_for_one_and_two_workers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for workers in (1, 2):
        assert _simulate(tmp_path / str(workers), "--no-plots", "--json",
                         "--workers", str(workers)) == 0
        assert json.loads(capsys.readouterr().out)["workers"] == workers
    one, two = tmp_path / "1", tmp_path / "2"
    for name in ("trace.jsonl", "baseline-trace.jsonl", "sessions.csv",
                 "baseline-sessions.csv"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    assert (one / "trace.jsonl").read_bytes() != (one / "baseline-trace.jsonl").read_bytes()
    assert b"MIGRATED_TO_BETTER_PATH" in (one / "trace.jsonl").read_bytes()
    assert b"MIGRATED_TO_BETTER_PATH" not in (one / "baseline-trace.jsonl").read_bytes()
    assert _figures(one) == _figures(two)


def test_same_seed_writes_the_same_report_and_plots_the_comparison(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _simulate(tmp_path / "a") == 0
    printed = capsys.readouterr().out
    assert "samples fed" in printed
    assert "first available" in printed
    assert _simulate(tmp_path / "b", "--no-plots") == 0
    assert _simulate(tmp_path / "c", "--no-plots", seed="4") == 0
    a, b, c = (_figures(tmp_path / x) for x in "abc")
    assert a == b
    assert a["path_quality"] != c["path_quality"]
    quality = a["path_quality"]
    assert quality["hysteresis_bound"] == math.ceil(60_000 / quality["migration_dwell_ms"])
    assert quality["quality"]["time_on_best"] > quality["baseline"]["time_on_best"]
    for name in ("time-on-best.png", "path-timeseries.png", "timeline.png",
                 "recovery-cdf.png"):
        assert (tmp_path / "a" / name).read_bytes()[:8] == _PNG
    assert not (tmp_path / "b" / "time-on-best.png").exists()


def test_the_drifting_suite_runs_every_drifting_scenario(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--scenario", "drifting", "--sessions", "2", "--duration", "30s",
                 "--seed", "1", "--no-plots", "--json", "--out", str(tmp_path)]) == 0
    suite = json.loads(capsys.readouterr().out)
    assert sorted(suite["scenarios"]) == sorted(_DRIFTING)
    for name in _DRIFTING:
        assert (tmp_path / name / "baseline-trace.jsonl").exists()
        data = suite["scenarios"][name]
        assert data["scenario"] == name
        assert set(data["path_quality"]) >= {"quality", "baseline", "hysteresis_bound"}
    assert json.loads((tmp_path / "summary.json").read_text())["scenarios"] == \
        suite["scenarios"]


def test_a_static_scenario_has_no_comparison(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert _simulate(tmp_path, "--no-plots", "--json", scenario="steady") == 0
    assert "path_quality" not in json.loads(capsys.readouterr().out)
    assert not (tmp_path / "baseline-trace.jsonl").exists()


def test_unknown_scenario_names_the_suites_too(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert _simulate(tmp_path / "o", scenario="drifting-nope") == 2
    assert "or a suite: drifting" in capsys.readouterr().err


# -- the pieces -------------------------------------------------------------------------------


def test_drift_profile_interpolates_holds_and_wraps() -> None:
    flat = DriftProfile(((1_000, 10, 0.0), (3_000, 30, 0.5)))
    assert [flat.delay_at(t) for t in (0, 1_000, 2_000, 2_999, 3_000, 10**9)] == \
        [10, 10, 20, 29, 30, 30]
    assert flat.loss_at(2_000) == pytest.approx(0.25)
    periodic = DriftProfile(((1_000, 10, 0.0), (3_000, 30, 0.0)), period_ms=5_000)
    # From the last point back to the first, reached one period later (t = 6,000).
    assert [periodic.delay_at(t) for t in (3_000, 4_500, 6_000, 8_000, -500)] == \
        [30, 20, 10, 30, 20]
    with pytest.raises(ValueError, match="strictly increasing"):
        DriftProfile(((5, 1, 0.0), (5, 2, 0.0)))
    with pytest.raises(ValueError, match=r"\[0, period\)"):
        DriftProfile(((5_000, 1, 0.0),), period_ms=5_000)


def test_true_cost_is_the_core_formula_on_the_true_rtt_and_loss() -> None:
    policy = Policy()
    local = TransportDescriptor.udp("192.168.0.2", 40_000)
    spec = LinkSpec("x", jitter_ms=10, drift=((0, 50, 0.1),))
    kept = 0.9 * 0.9  # 10 % each way
    q16 = round((1 - kept) * 65_536)
    expected = path_cost((PathScore(local, 105, q16, 7),), local, policy, 7)
    assert true_cost(spec, spec.profile(), stationary_loss(spec), local, policy, 0, 7) == \
        expected
    assert expected == (0, 105 + q16 * 1_000 // 65_536)
    # A steady Gilbert-Elliott path: its stationary loss (1/3 of packets in Bad, all lost).
    bursty = LinkSpec("y", p_good_to_bad=0.1, p_bad_to_good=0.2, loss_bad=1.0)
    up, down = stationary_loss(bursty)
    assert up == pytest.approx(1 / 3)
    assert down == up
    assert best_path([(0, 50), (0, 40), (0, 40), (1, 0)]) == 1
    assert best_path([(2, 10), (1, 0)]) == 1


def test_tracker_counts_eligible_time_after_the_dwell_and_time_on_the_best() -> None:
    # Path 0 best until 10 s, then path 1; dwell 2 s; the client on 0 until 11 s, then 1.
    tracker = BestPathTracker(lambda t: 0 if t < 10_000 else 1, 500, 2_000)
    tracker.move(600, 0)
    tracker.move(11_000, 1)
    tracker.advance(20_000)
    # Eligible: [2,500, 10,000) and [12,000, 20,000) = 7,500 + 8,000.
    assert tracker.eligible_ms == 15_500
    assert tracker.on_best_ms == 15_500
    late = BestPathTracker(lambda t: 0 if t < 10_000 else 1, 500, 2_000)
    late.move(600, 0)
    late.move(13_000, 1)  # 1 s past the new best's dwell
    late.advance(20_000)
    assert (late.eligible_ms, late.on_best_ms) == (15_500, 14_500)


def test_behaviour_figures_sum_sessions_and_count_the_bound() -> None:
    figures = [SessionPathFigures(0, 20_000, 10_000, 9_000, 2, 2, 0),
               SessionPathFigures(1, 20_000, 0, 0, 5, 5, 0)]
    data = behaviour_figures(figures, SimTally(2, 20_000), 2, 5_000)
    assert data["time_on_best"] == 0.9
    assert data["session_time_on_best_min"] == 0.9
    assert data["switches_per_session"] == {"mean": 3.5, "max": 5}
    assert data["sessions_over_hysteresis_bound"] == 1  # 5 > ceil(20 s / 5 s)


EXTREMES: list[tuple[str, dict[str, Any]]] = [
    ("probes fastest, 16 paths", {
        "probe_interval_ms": MIN_PROBE_INTERVAL_MS,
        "paths": tuple(LinkSpec(f"p{n}", jitter_ms=MAX_DELAY_MS,
                                drift=((0, n, 0.0), (1_000, MAX_DELAY_MS, 1.0)))
                       for n in range(16))}),
    ("every probe lost", {"probe_interval_ms": MIN_PROBE_INTERVAL_MS,
                          "paths": (LinkSpec("a", drift=((0, 10, 1.0),)), LinkSpec("b"))}),
    ("probes slowest", {"probe_interval_ms": 10**12}),
    ("shortest period", {"probe_interval_ms": 1_000, "drift_offset_ms": (0, 10**12),
                         "paths": (LinkSpec("a", drift=((0, 0, 0.0),), drift_period_ms=1),
                                   LinkSpec("b"))}),
]


@pytest.mark.parametrize(("name", "change"), EXTREMES, ids=[e[0] for e in EXTREMES])
def test_driver_fields_at_their_extremes_run_to_the_end(name: str,
                                                        change: dict[str, Any]) -> None:
    config = attrs.evolve(build_scenario("steady", 2, 20_000, 7), **change)
    world = World(config)
    happenings = 0
    while world.step_once():
        happenings += 1
        assert happenings <= 400_000, f"{name}: the world stalled at {world.now_ms} ms"
    assert len(world.path_figures()) == 2


BEYOND: list[tuple[dict[str, Any], str]] = [
    ({"probe_interval_ms": MIN_PROBE_INTERVAL_MS - 1}, "probe_interval_ms"),
    ({"probe_interval_ms": 1.5}, "probe_interval_ms must be an integer"),
    ({"feed_samples": 1}, "feed_samples"),
    ({"drift_offset_ms": (5, 1)}, "drift_offset_ms"),
    ({"paths": (LinkSpec("a", jitter_ms=-1),)}, "jitter_ms"),
    ({"paths": (LinkSpec("a", drift=((0, 1, 0.0), (0, 2, 0.0))),)}, "strictly increasing"),
    ({"paths": (LinkSpec("a", drift=((0, MAX_DELAY_MS + 1, 0.0),)),)},
     "drift point one_way_delay_ms"),
    ({"paths": (LinkSpec("a", drift=((0, 1, 1.5),)),)}, "drift point loss"),
    ({"paths": (LinkSpec("a", drift=((0, 1),)),)}, "drift point must be"),
    ({"paths": (LinkSpec("a", drift=((10, 1, 0.0),), drift_period_ms=10),)},
     "drift point time_ms"),
    ({"paths": (LinkSpec("a", drift_period_ms=10),)}, "drift_period_ms needs drift points"),
]


@pytest.mark.parametrize(("change", "field"), BEYOND, ids=[b[1] for b in BEYOND])
def test_driver_fields_beyond_their_range_are_refused_by_name(change: dict[str, Any],
                                                              field: str) -> None:
    with pytest.raises(ValueError, match=field):
        attrs.evolve(build_scenario("steady", 2, 20_000, 7), **change)


def test_a_config_file_can_turn_the_driver_on(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"probe_interval_ms": 500, "paths": [
        {"name": "wifi", "drift": [[0, 60, 0.0]]}, {"name": "lte", "one_way_delay_ms": 20}]}))
    assert main(["simulate", "--scenario", "steady", "--sessions", "2", "--duration", "30s",
                 "--config", str(path), "--no-plots", "--json",
                 "--out", str(tmp_path / "o")]) == 0
    quality = json.loads(capsys.readouterr().out)["path_quality"]
    # lte is better from the start: the fed client moves, the baseline stays on wifi.
    assert quality["quality"]["migrations_per_session"]["max"] == 1
    assert quality["baseline"]["time_on_best"] == 0.0
    assert quality["quality"]["time_on_best"] > 0.9


def test_sim_config_defaults_leave_the_driver_off() -> None:
    config = SimConfig(1, 1_000, 0, (LinkSpec("a"),))
    assert (config.probe_interval_ms, config.feed_samples, config.drift_offset_ms) == \
        (0, True, (0, 0))
    world = World(config)
    world.run()
    assert world.path_figures() == []
    assert world.stats.path_traces == {}
