"""Boundary-biased generation, per-run coverage, `--budget` and the broken catalogue."""

from __future__ import annotations

import json

import attrs
import pytest

from jumpvpn_core.cli import main
from jumpvpn_core.effects import Rejected
from jumpvpn_core.events import CandidateLost, Tick
from jumpvpn_core.machine import next_deadline, step
from jumpvpn_core.peer import Peer
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import SWITCH_WINDOW_MS, Policy
from jumpvpn_core.proof import U64_MAX
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.state import Roaming, ServerSide, SessionState, new_session
from jumpvpn_core.subject import ReferenceImplementation
from jumpvpn_core.testing.boundaries import edge_nonces, edges, freshness_offsets, siblings
from jumpvpn_core.testing.broken import BROKEN, CATALOGUE, PORTING_MISTAKES
from jumpvpn_core.testing.broken.catalogue import format_table, planted, run_catalogue
from jumpvpn_core.testing.coverage import NO_REASON, Coverage
from jumpvpn_core.testing.stateful import DEFAULT_EXAMPLES, run_conformance
from jumpvpn_core.transport import TransportDescriptor, TransportKind

_SID, _SECRET = bytes(range(16)), b"s" * 32
_POLICY = Policy(switch_cooldown_ms=700, max_switches_per_minute=2, reattach_rate_limit=2,
                 reattach_rate_window_ms=900)


def _server_side(state: SessionState, verified_times: tuple[int, ...]) -> ServerSide:
    side = state.side
    assert isinstance(side, ServerSide)
    return attrs.evolve(side, verified_times=verified_times)


def test_edges_name_every_armed_bound_at_minus_one_zero_plus_one() -> None:
    state = new_session(Role.SERVER, _SID, _SECRET, 1_000, _POLICY)
    state = attrs.evolve(
        state, phase=Phase.ATTACHED,
        roaming=Roaming((), (2_000, 5_000), 0),
        side=_server_side(state, (3_000, 4_000)),
        link=attrs.evolve(state.link, clock_ms=1_000))
    found = dict(edges(state))
    assert found["switch-cooldown"] == 5_000 + 700
    assert found["switch-cooldown-1"] == 5_699
    assert found["switch-cooldown+1"] == 5_701
    assert found["switch-rate-window"] == 2_000 + SWITCH_WINDOW_MS
    assert found["reattach-rate-window"] == 3_000 + 900
    assert found["deadline"] == next_deadline(state)
    assert "loss-window" not in found
    assert "recovery-window" not in found
    # Nothing before the session's clock: the core would refuse it.
    late = attrs.evolve(state, link=attrs.evolve(state.link, clock_ms=5_700))
    assert all(at >= 5_700 for _, at in edges(late))
    assert "switch-cooldown-1" not in dict(edges(late))


def test_freshness_offsets_and_edge_nonces_sit_on_the_bounds() -> None:
    offsets = dict(freshness_offsets(Policy(proof_max_age_ms=500, max_clock_skew_ms=40)))
    assert offsets == {"proof-age-1": -501, "proof-age": -500, "proof-age+1": -499,
                       "clock-skew-1": 39, "clock-skew": 40, "clock-skew+1": 41}
    nonces = dict(edge_nonces(200, 64))
    assert nonces["window-back"] == 136
    assert nonces["window-back+1"] == 137
    assert nonces["double-exact"] == 2**53 + 1
    assert float(2**53 + 1) != 2**53 + 1
    assert nonces["u64-max"] == U64_MAX
    assert nonces["window-ahead"] == 264
    assert "window-back" not in dict(edge_nonces(10, 64))  # no nonce 0 or below


def test_siblings_differ_only_by_zone() -> None:
    zoned = TransportDescriptor(TransportKind.UDP, "fe80::1%eth0", 4000)
    assert [t.host for t in siblings(zoned)] == ["fe80::1", "fe80::1%eth1"]
    assert [t.host for t in siblings(TransportDescriptor.udp("fe80::1", 1))] == [
        "fe80::1%eth0", "fe80::1%eth1"]
    assert siblings(TransportDescriptor.udp("10.0.0.1", 4000)) == []


def test_coverage_counts_triples_and_boundaries() -> None:
    coverage = Coverage()
    state = new_session(Role.CLIENT, _SID, _SECRET, 0, _POLICY)
    event = CandidateLost(0, TransportDescriptor.udp("10.0.0.9", 1))
    coverage.step(Role.CLIENT, state.phase, event, step(state, event)[1])
    coverage.step(Role.CLIENT, state.phase, Tick(0), ())
    coverage.boundary("switch-cooldown")
    data = coverage.to_data()
    assert data["steps"] == 2
    assert {(t["event"], t["reason"]) for t in data["triples"]} == {
        ("CandidateLost", "UNKNOWN_TRANSPORT"), ("Tick", NO_REASON)}
    assert data["boundaries"] == {"switch-cooldown": 1}
    assert "2 distinct" in coverage.summary()
    assert "switch-cooldown x1" in coverage.summary()


def test_reference_run_reports_coverage_and_lands_on_boundaries() -> None:
    result = run_conformance(ReferenceImplementation(), examples=30)
    assert result.ok
    assert result.caught_at is None
    assert result.coverage.steps > 100
    assert {t[0] for t in result.coverage.triples} == {"client", "server"}
    assert len(result.coverage.boundaries) >= 5


def test_the_catalogue_holds_at_least_twelve_distinct_mistakes() -> None:
    assert len(CATALOGUE) >= 12
    assert set(CATALOGUE) == set(BROKEN) | set(PORTING_MISTAKES)
    assert len({planted(name) for name in CATALOGUE}) == len(CATALOGUE)
    names = {factory().name for factory in CATALOGUE.values()}
    assert len(names) == len(CATALOGUE)
    assert "reference" not in names


def test_a_porting_mistake_changes_exactly_its_edge() -> None:
    # Server, rate window `<=`: a request exactly reattach_rate_window_ms after the oldest
    # counted one is refused by the port, accepted by the reference; 1 ms later both agree.
    impl = CATALOGUE["rate_window_inclusive"]()
    state = new_session(Role.SERVER, _SID, _SECRET, 0, _POLICY)
    state = attrs.evolve(state, phase=Phase.ATTACHED, side=_server_side(state, (100, 200)))
    request = Peer.of(state).request(1_000, TransportDescriptor.udp("10.0.0.9", 5),
                                     nonce=1, state_version=0, size=1200)
    ported = impl.alter(state, request, *step(state, request))
    assert [e.reason for e in ported[1] if isinstance(e, Rejected)] == [
        ReasonCode.RATE_LIMITED]
    assert not any(isinstance(e, Rejected) for e in step(state, request)[1])
    later = attrs.evolve(request, now_ms=1_001)
    assert impl.alter(state, later, *step(state, later))[1] == step(state, later)[1]


def test_catalogue_table_and_cli(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_catalogue([0], examples=30, steps=30, names=["forgets_version_bump"])
    assert rows[0].caught == 1
    assert rows[0].median_examples is not None
    assert "forgets_version_bump" in format_table(rows)
    assert " 1/1 " in format_table(rows)
    assert main(["conformance", "--catalogue", "--seeds", "1", "--budget", "30x30",
                 "--only", "forgets_version_bump", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"][0]["caught"] == 1
    assert report["rows"][0]["seeds"] == 1
    assert (report["examples"], report["steps"]) == (30, 30)


@pytest.mark.parametrize("argv", [
    ["--catalogue", "--only", "no_such_thing"],
    ["--catalogue", "--budget", "lots"],
    ["--catalogue", "--budget", "0x30"],
    ["--catalogue", "--budget", "0s"],
    ["--catalogue", "--cmd", "true"],
])
def test_catalogue_and_budget_usage_errors_exit_2(argv: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", *argv]) == 2
    assert "jumpvpn conformance: error:" in capsys.readouterr().err


def test_cli_default_budget_is_the_kits() -> None:
    from jumpvpn_core.cli.conformance import command
    from jumpvpn_core.testing.stateful import DEFAULT_STEPS

    defaults = {p.name: p.default for p in command.params}
    assert (defaults["examples"], defaults["steps"]) == (DEFAULT_EXAMPLES, DEFAULT_STEPS)


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_catalogued_mistake_is_caught_at_the_default_budget(name: str) -> None:
    # Seeds 0..2 at most, stopping at the first that catches (most do at seed 0), so the
    # suite stays fast; the rate over many seeds is the table printed by
    # `jumpvpn conformance --catalogue --seeds N` (figures in docs/conformance.md).
    for seed in range(3):
        result = run_conformance(CATALOGUE[name](), seed=seed, shrink_budget=0)
        if result.failure is not None:
            # Caught inside the default run (Hypothesis counts only valid examples
            # towards its budget, so the recorder's count may pass DEFAULT_EXAMPLES).
            assert result.caught_at is not None
            assert result.caught_at[0] <= result.examples
            return
    pytest.fail(f"{name} was not caught with seeds 0, 1 or 2 at the default budget")


def test_a_budget_in_seconds_stops_generating_in_time() -> None:
    # Not a timing assertion: a million examples cannot all run, so the run must have
    # stopped on its time budget, with a verdict.
    result = run_conformance(ReferenceImplementation(), examples=1_000_000, seconds=0.5)
    assert result.ok
    assert 1 <= result.examples < 1_000_000
