"""The kit and path quality: the scoring mistakes in the catalogue, the edges the machine
aims at (costs on the migration margin, the dwell's due time, a measurement's age limit)
and the migrations it has the honest server answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from jumpvpn_core import events as ev
from jumpvpn_core.effects import SendReattachRequest
from jumpvpn_core.machine import step
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.quality import migration_due
from jumpvpn_core.state import ClientSide, new_session
from jumpvpn_core.subject import Outcome, ReferenceImplementation, effects_of
from jumpvpn_core.testing import FailureKind, Implementation, replay_counterexample
from jumpvpn_core.testing.boundaries import edges
from jumpvpn_core.testing.broken import CATALOGUE, PORTING_MISTAKES
from jumpvpn_core.testing.stateful import run_conformance
from jumpvpn_core.transport import TransportDescriptor

_SID, _SECRET = bytes(range(16)), b"q" * 32
C1 = TransportDescriptor.udp("10.0.0.1", 4000)
C2 = TransportDescriptor.udp("10.0.0.2", 4000)
_POLICY = Policy(migration_margin_ms=20, migration_dwell_ms=1_000, switch_cooldown_ms=0,
                 quality_max_age_ms=5_000, quality_loss_penalty_ms=1_000)

_SCORING = ("migration_margin_strict", "migration_dwell_exclusive", "quality_age_inclusive",
            "ewma_rounds_down", "unmeasured_as_cheapest")


def _run(impl: Implementation, policy: Policy, events: Sequence[Any]) -> list[Outcome]:
    """A client session of `impl` attached on C1 with candidate C2, then `events`: the
    outcome of each of `events`."""
    session, _ = impl.create_session(Role.CLIENT, _SID, _SECRET, 0, policy)
    session.step(ev.Attach(0, C1))
    session.step(ev.CandidateDiscovered(0, C2))
    return [session.step(event) for event in events]


def _requests(outcome: Outcome) -> list[SendReattachRequest]:
    return [e for e in effects_of(outcome) if isinstance(e, SendReattachRequest)]


def _diverging(name: str, policy: Policy, events: Sequence[Any]) -> list[int]:
    """Indexes of `events` where CATALOGUE[name] and the reference send other requests."""
    reference = _run(ReferenceImplementation(), policy, events)
    ported = _run(CATALOGUE[name](), policy, events)
    return [n for n, (want, got) in enumerate(zip(reference, ported, strict=True))
            if _requests(want) != _requests(got)]


def test_the_scoring_mistakes_are_catalogued_porting_mistakes() -> None:
    assert set(_SCORING) <= set(PORTING_MISTAKES)
    for name in _SCORING:
        assert CATALOGUE[name].__doc__, name
        assert CATALOGUE[name]().name == name.replace("_", "-")


def test_margin_strict_misses_a_candidate_exactly_one_margin_cheaper() -> None:
    policy = attrs.evolve(_POLICY, migration_dwell_ms=0)
    # C2 costs 30, C1 50: exactly the margin (the reference migrates at once, dwell 0).
    on_margin = [ev.RttSample(1, C1, 50), ev.RttSample(2, C2, 30)]
    assert _diverging("migration_margin_strict", policy, on_margin) == [1]
    (request,) = _requests(_run(ReferenceImplementation(), policy, on_margin)[1])
    assert request.via == request.candidate == C2
    # 1 ms more than the margin: both migrate.
    beyond = [ev.RttSample(1, C1, 51), ev.RttSample(2, C2, 30)]
    assert _diverging("migration_margin_strict", policy, beyond) == []
    assert _requests(_run(CATALOGUE["migration_margin_strict"](), policy, beyond)[1])


def test_dwell_exclusive_migrates_one_millisecond_late() -> None:
    samples = [ev.RttSample(0, C1, 60), ev.RttSample(0, C2, 30)]
    at_due = [*samples, ev.Tick(999), ev.Tick(1_000), ev.Tick(1_001)]
    assert _diverging("migration_dwell_exclusive", _POLICY, at_due) == [3, 4]
    ported = _run(CATALOGUE["migration_dwell_exclusive"](), _POLICY, at_due)
    assert [len(_requests(outcome)) for outcome in ported] == [0, 0, 0, 0, 1]


def test_age_inclusive_drops_a_measurement_exactly_max_age_old() -> None:
    # Equal costs: recovery tries the active path first while its measurement counts. At
    # exactly quality_max_age_ms the spec still counts it; the port tries C2 first.
    samples = [ev.RttSample(0, C1, 30), ev.RttSample(10, C2, 30)]
    vias = {}
    for at in (4_999, 5_000, 5_001):
        events = [*samples, ev.DeliveryTimeout(at)]
        reference = _run(ReferenceImplementation(), _POLICY, events)[-1]
        ported = _run(CATALOGUE["quality_age_inclusive"](), _POLICY, events)[-1]
        vias[at] = (_requests(reference)[0].via, _requests(ported)[0].via)
    assert vias == {4_999: (C1, C1), 5_000: (C1, C2), 5_001: (C2, C2)}


def test_ewma_rounding_down_puts_a_candidate_on_the_margin() -> None:
    policy = attrs.evolve(_POLICY, migration_dwell_ms=0)
    # C2: 30, then 34: (7 * 30 + 34 + 4) // 8 = 31 (the port: 30). C1 measured at 50 last:
    # 31 + 20 > 50 for the spec, 30 + 20 <= 50 for the port, which migrates at once.
    events = [ev.RttSample(0, C2, 30), ev.RttSample(1, C2, 34), ev.RttSample(2, C1, 50)]
    assert _diverging("ewma_rounds_down", policy, events) == [2]
    # Samples that round the same either way change nothing.
    exact = [ev.RttSample(0, C2, 30), ev.RttSample(1, C2, 38), ev.RttSample(2, C1, 52)]
    assert _diverging("ewma_rounds_down", policy, exact) == []
    ported = _run(CATALOGUE["ewma_rounds_down"](), policy, exact)
    assert _requests(ported[2])  # (7 * 30 + 38 + 4) // 8 = 31: 31 + 20 <= 52


def test_ewma_rounding_down_also_rounds_the_loss() -> None:
    # One lost probe, then answered ones: the smoothed loss decays by 7/8 per sample, and
    # from the seventh sample on the two roundings part.
    impl = CATALOGUE["ewma_rounds_down"]()
    session, _ = impl.create_session(Role.CLIENT, _SID, _SECRET, 0, _POLICY)
    session.step(ev.Attach(0, C1))
    session.step(ev.ProbeLost(1, C1))
    spec = port = 65_536
    losses = []
    for now in range(2, 12):
        state = session.step(ev.RttSample(now, C1, 40)).state
        assert state is not None
        assert isinstance(state.side, ClientSide)
        losses.append(state.side.quality[0].loss_q16)
        spec, port = (7 * spec + 4) >> 3, (7 * port) >> 3
        assert losses[-1] == port
    assert losses[:6] == [(65_536 * 7**k) >> (3 * k) for k in range(1, 7)]
    assert port != spec


def test_unmeasured_as_cheapest_tries_and_picks_a_path_never_measured() -> None:
    # Recovery: the measured active path comes first for the spec, C2 (no measurement)
    # for the port.
    events = [ev.RttSample(1, C1, 50), ev.DeliveryTimeout(2)]
    reference = _run(ReferenceImplementation(), _POLICY, events)[-1]
    ported = _run(CATALOGUE["unmeasured_as_cheapest"](), _POLICY, events)[-1]
    assert (_requests(reference)[0].via, _requests(ported)[0].via) == (C1, C2)
    # Migration: an unmeasured candidate is never an upgrade target; the port migrates.
    policy = attrs.evolve(_POLICY, migration_dwell_ms=0)
    assert _diverging("unmeasured_as_cheapest", policy, [ev.RttSample(1, C1, 50)]) == [0]
    # Once C2 is measured (and costs more), both agree again.
    measured = [ev.RttSample(1, C2, 60), ev.RttSample(2, C1, 50), ev.DeliveryTimeout(3)]
    assert _diverging("unmeasured_as_cheapest", policy, measured) == []


def test_edges_include_the_migration_due_time_and_each_age_limit() -> None:
    state = new_session(Role.CLIENT, _SID, _SECRET, 0, _POLICY)
    for event in (ev.Attach(0, C1), ev.CandidateDiscovered(0, C2), ev.RttSample(5, C1, 60),
                  ev.RttSample(7, C2, 30)):
        state, _ = step(state, event)
    side = state.side
    assert isinstance(side, ClientSide)
    assert side.better == C2
    found = dict(edges(state))
    due = migration_due(side, state.roaming, _POLICY)
    assert due == 7 + 1_000
    assert (found["migration-due-1"], found["migration-due"], found["migration-due+1"]) == (
        due - 1, due, due + 1)
    ages = sorted(at for label, at in edges(state) if label == "quality-max-age")
    assert ages == [5 + 5_000, 7 + 5_000]
    # With a request in flight the migration is not due: no edge for it.
    started, _ = step(state, ev.Tick(due))
    assert state.phase is started.phase is Phase.ATTACHED
    assert "migration-due" not in dict(edges(started))


def test_reference_run_measures_paths_and_migrates() -> None:
    result = run_conformance(ReferenceImplementation(), examples=120, seed=0)
    assert result.ok, result.failure and result.failure.render()
    triples = result.coverage.triples
    assert triples[("client", "ATTACHED", "ReattachAccepted", "MIGRATED_TO_BETTER_PATH")] > 0
    assert triples[("client", "ATTACHED", "RttSample", "-")] > 0
    hit = result.coverage.boundaries
    for label in ("migration-margin", "cost-tie", "quality-max-age", "migration-answered"):
        assert hit[label] > 0, label


@pytest.mark.parametrize("name", _SCORING)
def test_a_scoring_mistake_is_caught_with_a_replayable_counterexample(name: str) -> None:
    # Seeds 0..2 at a budget well under the default, stopping at the first that catches.
    for seed in range(3):
        result = run_conformance(CATALOGUE[name](), examples=150, seed=seed,
                                 shrink_budget=0)
        if result.failure is not None:
            break
    else:
        pytest.fail(f"{name} was not caught with seeds 0, 1 or 2 at 150x30")
    failure = result.failure
    assert failure.kind in (FailureKind.MISMATCH, FailureKind.INVARIANT)
    replayed = replay_counterexample(CATALOGUE[name](), failure.counterexample)
    assert replayed is not None
    assert (replayed.step, replayed.detail) == (failure.step, failure.detail)
    assert replay_counterexample(ReferenceImplementation(), failure.counterexample) is None
