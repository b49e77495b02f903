"""Gateway admission: policy validation, flood limits, order of checks, aggregation (RM-3.1)."""

from __future__ import annotations

import pytest

from jumpvpn_core.effects import SendPathChallenge, SendReattachAccept
from jumpvpn_core.errors import PolicyError
from jumpvpn_core.gateway import (
    SUMMARY_RECORD_TYPE,
    GatewayPolicy,
    OwnershipMode,
    RejectAggregator,
    SourceLimiter,
    TokenBucket,
    owner_of,
)
from jumpvpn_core.gateway.policy import GATEWAY_POLICY_FIELD_DOCS
from jumpvpn_core.phases import Phase
from jumpvpn_core.reasons import ReasonClass, ReasonCode, reason_class
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.telemetry import ListSink
from jumpvpn_core.transport import TransportDescriptor

from .support import CLIENT, ROAMED, T0, make_gateway, reattach, secret_for, sid

_GATEWAY_CODES = (
    ReasonCode.FLOOD_LIMITED,
    ReasonCode.SOURCE_FLOOD_LIMITED,
    ReasonCode.UNKNOWN_SESSION,
    ReasonCode.SESSION_TABLE_FULL,
    ReasonCode.STORE_UNAVAILABLE,
    ReasonCode.COMMIT_CONFLICT,
    ReasonCode.NOT_OWNER,
)


def test_gateway_reason_codes_are_operational_rejects() -> None:
    for code in _GATEWAY_CODES:
        assert reason_class(code) is ReasonClass.OPERATIONAL_REJECT
        assert ReasonCode(code.value) is code


def test_gateway_policy_lists_every_problem_in_one_error() -> None:
    with pytest.raises(PolicyError) as info:
        GatewayPolicy(max_sessions=0, flood_interval_ms=-1, node_ids=("a", "a"),
                      source_flood_limit=10, global_flood_limit=5)
    problems = info.value.problems
    assert any("max_sessions" in p for p in problems)
    assert any("flood_interval_ms" in p for p in problems)
    assert any("distinct" in p for p in problems)
    assert any("source_flood_limit must not exceed" in p for p in problems)
    assert len(problems) == 4


def test_gateway_policy_round_trips_through_plain_data() -> None:
    policy = GatewayPolicy(ownership=OwnershipMode.SHARED, node_ids=("a", "b"), max_sessions=7)
    assert GatewayPolicy.from_data(policy.to_data()) == policy
    with pytest.raises(PolicyError, match="unknown gateway policy field"):
        GatewayPolicy.from_data({"max_session": 3})


_KEY_HEX = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.mark.parametrize("data", [
    {"max_sessions": _KEY_HEX}, {"max_sessions": int(_KEY_HEX, 16)},
    {"ownership": _KEY_HEX}, {_KEY_HEX: 1}, {1: 1, "a": 2}, {"node_ids": _KEY_HEX},
    {"source_flood_limit": [_KEY_HEX]}, _KEY_HEX, [_KEY_HEX],
])
def test_gateway_policy_errors_never_quote_a_value(data: object) -> None:
    with pytest.raises(PolicyError) as info:
        GatewayPolicy.from_data(data)
    message = str(info.value)
    assert _KEY_HEX not in message
    assert str(int(_KEY_HEX, 16)) not in message
    assert _KEY_HEX[:16] not in message


def test_token_bucket_refills_in_integer_steps_without_losing_fractions() -> None:
    bucket = TokenBucket(limit=3, interval_ms=1_000, now_ms=0)
    assert [bucket.try_take(0) for _ in range(4)] == [True, True, True, False]
    # 3 tokens per 1000 ms: one token every 333.33 ms; 333 ms is not yet enough.
    assert not bucket.try_take(333)
    assert bucket.try_take(334)
    assert not bucket.try_take(334)
    # Time going backwards refills nothing.
    assert not bucket.try_take(100)
    assert bucket.try_take(1_334)
    assert bucket.try_take(1_334)


def test_source_table_is_bounded_and_evicts_the_least_recently_seen() -> None:
    limiter = SourceLimiter(limit=1, interval_ms=60_000, max_sources=2)
    assert limiter.try_take("a", 0)
    assert limiter.try_take("b", 0)
    assert not limiter.try_take("a", 1)  # a is now the most recently seen
    assert limiter.try_take("c", 2)  # evicts b, the oldest
    assert len(limiter) == 2
    assert limiter.evicted == 1
    assert not limiter.try_take("a", 3)  # a was kept, its bucket still empty
    assert limiter.try_take("b", 4)  # b was forgotten: it comes back with a full bucket


def test_rendezvous_owner_is_stable_and_spread() -> None:
    nodes = ("n0", "n1", "n2", "n3")
    owners = [owner_of(sid(i), nodes) for i in range(400)]
    assert owners == [owner_of(sid(i), tuple(reversed(nodes))) for i in range(400)]
    assert all(owners.count(n) > 50 for n in nodes)
    # Removing a node moves only that node's sessions.
    for i, owner in enumerate(owners):
        if owner != "n3":
            assert owner_of(sid(i), nodes[:3]) == owner


@pytest.mark.requirement("RM-3.1")
def test_global_flood_limit_rejects_before_anything_else() -> None:
    store = MemoryStore()
    gw = make_gateway(store, global_flood_limit=2, source_flood_limit=2, flood_interval_ms=1_000)
    opened = gw.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    assert opened.accepted
    # Unknown sessions and forged proofs still spend tokens: limits come first.
    first = gw.handle_reattach(reattach(sid(9), nonce=1, version=1, now=T0))
    second = gw.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0, forge=True))
    third = gw.handle_reattach(reattach(sid(1), nonce=2, version=1, now=T0))
    assert first.reason is ReasonCode.UNKNOWN_SESSION
    assert second.reason is ReasonCode.PROOF_INVALID
    assert third.reason is ReasonCode.FLOOD_LIMITED
    record = store.get(sid(1))
    assert record is not None
    assert record.version == 1
    # After the interval the bucket is full again and a valid request goes through.
    later = gw.handle_reattach(reattach(sid(1), nonce=2, version=1, now=T0 + 1_000))
    assert later.accepted


@pytest.mark.requirement("RM-3.1")
def test_per_source_flood_limit_isolates_one_noisy_source() -> None:
    gw = make_gateway(MemoryStore(), source_flood_limit=3, global_flood_limit=100)
    gw.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    attacker = TransportDescriptor.udp("192.0.2.66", 1)
    reasons = [gw.handle_reattach(reattach(sid(1), nonce=100 + i, version=1, now=T0,
                                           source=attacker, forge=True)).reason
               for i in range(10)]
    assert reasons[:3] == [ReasonCode.PROOF_INVALID] * 3
    assert reasons[3:] == [ReasonCode.SOURCE_FLOOD_LIMITED] * 7
    # The legitimate client, from its own address, is not affected.
    assert gw.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0)).accepted


@pytest.mark.requirement("RM-3.1")
def test_rejected_requests_never_mutate_the_store_or_the_session() -> None:
    store = MemoryStore()
    gw = make_gateway(store)
    gw.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    before = store.get(sid(1))
    state_before = gw.local_state(sid(1))
    bad = [
        reattach(sid(1), nonce=1, version=1, now=T0, forge=True),  # PROOF_INVALID
        reattach(sid(1), nonce=1, version=0, now=T0),  # STALE_STATE_VERSION
        reattach(sid(1), nonce=1, version=5, now=T0),  # VERSION_AHEAD
        reattach(sid(1), nonce=1, version=1, now=T0 + 9_000, timestamp=T0),  # PROOF_EXPIRED
        reattach(sid(2), nonce=1, version=1, now=T0),  # UNKNOWN_SESSION
    ]
    results = [gw.handle_reattach(r) for r in bad]
    assert [r.reason for r in results] == [
        ReasonCode.PROOF_INVALID,
        ReasonCode.STALE_STATE_VERSION,
        ReasonCode.VERSION_AHEAD,
        ReasonCode.PROOF_EXPIRED,
        ReasonCode.UNKNOWN_SESSION,
    ]
    assert all(not r.accepted and r.effects == () and r.store_version is None for r in results)
    assert store.get(sid(1)) == before
    assert gw.local_state(sid(1)) == state_before


def test_accepted_reattach_commits_then_returns_the_accept() -> None:
    store = MemoryStore()
    gw = make_gateway(store)
    gw.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    result = gw.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 10))
    assert result.accepted
    assert result.store_version == 2
    assert result.phase is Phase.ATTACHED
    accepts = [e for e in result.effects if isinstance(e, SendReattachAccept)]
    assert len(accepts) == 1
    assert accepts[0].state_version == 2
    record = store.get(sid(1))
    assert record is not None
    assert record.version == 2
    committed = gw.committed(sid(1))
    assert committed is not None
    assert committed[1].state_version == 2


@pytest.mark.requirement("RM-3.1")
def test_rejections_are_aggregated_into_one_summary_per_interval() -> None:
    sink = ListSink()
    gw = make_gateway(MemoryStore(), telemetry=sink, aggregation_interval_ms=10_000)
    gw.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    for i in range(500):
        gw.handle_reattach(reattach(sid(1), nonce=10 + i, version=1, now=T0 + i, forge=True))
        gw.handle_reattach(reattach(sid(7), nonce=10 + i, version=1, now=T0 + i))
    assert [r for r in sink.records if r["type"] == SUMMARY_RECORD_TYPE] == []
    gw.tick(20_000)
    summaries = [r for r in sink.records if r["type"] == SUMMARY_RECORD_TYPE]
    assert len(summaries) == 1
    summary = summaries[0]
    assert summary["counts"] == {"PROOF_INVALID": 500, "UNKNOWN_SESSION": 500}
    assert summary["security_events"] == 500
    assert summary["total"] == 1_000
    assert (summary["window_start_ms"], summary["window_end_ms"]) == (0, 10_000)
    # Only the session's own transition record and the summary reached the sink.
    assert len(sink.records) == 2
    assert gw.rejection_totals[ReasonCode.PROOF_INVALID] == 500


def test_aggregator_closes_a_window_when_a_later_rejection_arrives() -> None:
    agg = RejectAggregator(100)
    assert agg.count(ReasonCode.REPLAY_DETECTED, 5) == []
    assert agg.count(ReasonCode.REPLAY_DETECTED, 99) == []
    closed = agg.count(ReasonCode.RATE_LIMITED, 100)
    assert len(closed) == 1
    assert closed[0]["counts"] == {"REPLAY_DETECTED": 2}
    assert agg.pending() == {ReasonCode.RATE_LIMITED: 1}


@pytest.mark.requirement("RM-4.1")
def test_path_validation_marks_the_nonce_and_is_committed_without_a_transition() -> None:
    store = MemoryStore()
    node_a = make_gateway(store, nodes=("n0", "n1"), node="n0")
    node_b = make_gateway(store, nodes=("n0", "n1"), node="n1")
    node_a.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    request = reattach(sid(1), nonce=1, version=1, now=T0 + 5, source=ROAMED)
    opened = node_a.handle_reattach(request)
    assert opened.accepted
    assert [type(e) for e in opened.effects] == [SendPathChallenge]
    committed = node_a.committed(sid(1))
    assert committed is not None
    version, state = committed
    assert version == 2  # a commit ...
    assert state.state_version == 1  # ... without a transition
    # The same nonce replayed to another node is caught by the committed replay window.
    replayed = node_b.handle_reattach(request)
    assert replayed.reason is ReasonCode.REPLAY_DETECTED


@pytest.mark.requirement("RM-4.1")
def test_sticky_non_owner_refuses_with_not_owner() -> None:
    store = MemoryStore()
    nodes = ("n0", "n1")
    session = next(sid(i) for i in range(100) if owner_of(sid(i), nodes) == "n1")
    n0 = make_gateway(store, mode=OwnershipMode.STICKY, nodes=nodes, node="n0")
    n1 = make_gateway(store, mode=OwnershipMode.STICKY, nodes=nodes, node="n1")
    assert n0.open_session(session, secret_for(session), CLIENT, T0).reason is \
        ReasonCode.NOT_OWNER
    assert n1.open_session(session, secret_for(session), CLIENT, T0).accepted
    assert n0.handle_reattach(reattach(session, nonce=1, version=1, now=T0)).reason is \
        ReasonCode.NOT_OWNER
    assert n1.handle_reattach(reattach(session, nonce=1, version=1, now=T0)).accepted


@pytest.mark.parametrize("mode", [OwnershipMode.SHARED, OwnershipMode.STICKY])
def test_exact_retransmission_gets_the_stored_accept_without_a_commit(
    mode: OwnershipMode,
) -> None:
    # The accept of a committed reattach was lost; the client re-sends its request
    # unchanged. The core answers REPLAY_DETECTED plus the stored accept (specs/events.md);
    # the gateway must pass that accept on (nothing new to commit), not swallow it.
    store = MemoryStore()
    gw = make_gateway(store, mode=mode)
    gw.open_session(sid(1), secret_for(sid(1)), CLIENT, T0)
    request = reattach(sid(1), nonce=1, version=1, now=T0 + 10)
    first = gw.handle_reattach(request)
    assert first.accepted
    again = gw.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1_010,
                                        timestamp=T0 + 10))
    assert not again.accepted
    assert again.reason is ReasonCode.REPLAY_DETECTED
    assert again.store_version is None
    resent = [e for e in again.effects if isinstance(e, SendReattachAccept)]
    assert resent == [e for e in first.effects if isinstance(e, SendReattachAccept)]
    # Counted apart from real replays (docs/operations.md): one retransmission so far.
    assert gw.retransmissions == 1
    replayed = gw.handle_reattach(reattach(sid(1), nonce=1, version=1, now=T0 + 1_020,
                                           timestamp=T0 + 10, source=ROAMED))
    assert replayed.reason is ReasonCode.REPLAY_DETECTED
    assert gw.retransmissions == 1 + bool(replayed.effects)
    record = store.get(sid(1))
    assert record is not None
    assert record.version == 2


@pytest.mark.parametrize("name", sorted(GATEWAY_POLICY_FIELD_DOCS))
def test_every_gateway_policy_bound_is_inclusive_and_named(name: str) -> None:
    unit, low, high, _doc = GATEWAY_POLICY_FIELD_DOCS[name]
    roomy = {"global_flood_limit": 100_000_000} if name == "source_flood_limit" else {}
    if name == "global_flood_limit":
        roomy = {"source_flood_limit": 1}
    for ok in (low, high):
        assert getattr(GatewayPolicy.from_data({name: ok, **roomy}), name) == ok
    for bad in (low - 1, high + 1):
        with pytest.raises(PolicyError) as info:
            GatewayPolicy.from_data({name: bad, **roomy})
        expected = [f"{name} must be in {low}..{high} {unit}, got {bad}"]
        if (name == "global_flood_limit" and bad < 1) or (
            name == "source_flood_limit" and bad > high
        ):  # the pair is out of order too
            expected.append("source_flood_limit must not exceed global_flood_limit")
        assert list(info.value.problems) == expected
    with pytest.raises(PolicyError) as info:
        GatewayPolicy.from_data({name: True, **roomy})
    assert list(info.value.problems) == [f"{name} must be an int ({unit}), got True"]


def test_gateway_policy_ownership_and_node_ids_are_checked_exactly() -> None:
    # Lists are converted to tuples.
    assert GatewayPolicy(node_ids=["a", "b"]).node_ids == ("a", "b")
    cases: list[tuple[dict[str, object], str]] = [
        ({"ownership": "sticky"}, "ownership must be one of ['sticky', 'shared'], "
                                  "got 'sticky'"),
        ({"node_ids": ()}, "node_ids must be a non-empty tuple of node names"),
        ({"node_ids": "ab"}, "node_ids must be a non-empty tuple of node names"),
        ({"node_ids": ("a", "")}, "every node id must be a non-empty string"),
        ({"node_ids": ("a", 1)}, "every node id must be a non-empty string"),
        ({"node_ids": ("a", "b", "a")}, "node ids must be distinct"),
        ({"source_flood_limit": 11, "global_flood_limit": 10},
         "source_flood_limit must not exceed global_flood_limit"),
        ({"source_flood_limit": "x"},
         "source_flood_limit must be an int (requests), got a string of length 1"),
    ]
    for fields, problem in cases:
        with pytest.raises(PolicyError) as info:
            GatewayPolicy(**fields)  # type: ignore[arg-type]  # wrong types on purpose
        assert list(info.value.problems) == [problem], fields
    assert GatewayPolicy(source_flood_limit=10, global_flood_limit=10).source_flood_limit == 10


def test_gateway_policy_plain_data_is_exact_and_refuses_what_it_does_not_know() -> None:
    policy = GatewayPolicy(node_ids=("a",))
    assert policy.to_data() == {
        "max_sessions": 100_000, "session_idle_ttl_ms": 600_000, "flood_interval_ms": 1_000,
        "global_flood_limit": 10_000, "source_flood_limit": 20,
        "max_tracked_sources": 100_000, "aggregation_interval_ms": 10_000,
        "max_clock_skew_ms": 1_000, "ownership": "sticky", "node_ids": ["a"],
    }
    assert GatewayPolicy.from_data({"max_sessions": 5}) == GatewayPolicy(max_sessions=5)
    with pytest.raises(PolicyError) as info:
        GatewayPolicy.from_data([1])
    assert list(info.value.problems) == ["gateway policy must be an object, got a list of 1 items"]
    with pytest.raises(PolicyError) as info:
        GatewayPolicy.from_data({"zz": 1, "aa": 2})
    assert list(info.value.problems) == ["unknown gateway policy field 'aa'",
                                   "unknown gateway policy field 'zz'"]
    with pytest.raises(PolicyError) as info:
        GatewayPolicy.from_data({"ownership": "owner"})
    assert list(info.value.problems) == ["ownership must be sticky or shared, got 'owner'"]
    assert GatewayPolicy.from_data({"ownership": "shared"}).ownership is OwnershipMode.SHARED


def test_token_bucket_and_source_table_refuse_empty_bounds() -> None:
    for limit, interval in ((0, 1), (1, 0)):
        with pytest.raises(ValueError, match=r"^limit and interval_ms must be positive$"):
            TokenBucket(limit, interval, 0)
    assert TokenBucket(1, 1, 0).try_take(0)
    with pytest.raises(ValueError, match=r"^max_sources must be positive$"):
        SourceLimiter(1, 1, 0)
    one = SourceLimiter(1, 1_000, 1)
    assert one.try_take("a", 0)
    assert one.try_take("b", 0)  # "a" forgotten to keep one bucket
    assert (len(one), one.evicted) == (1, 1)
    assert one.try_take("a", 0)
    assert (len(one), one.evicted) == (1, 2)


def test_token_bucket_forgets_credit_once_full_and_refills_at_the_exact_rate() -> None:
    bucket = TokenBucket(limit=2, interval_ms=1_000, now_ms=0)
    assert bucket.try_take(0)  # 1 token left
    assert (bucket.tokens, bucket.last_ms) == (1, 0)
    assert bucket.try_take(400)  # no refill yet (800/1000 of a token kept as credit)
    assert not bucket.try_take(499)  # 998/1000
    assert bucket.try_take(500)  # exactly one token earned at 500 ms
    assert not bucket.try_take(500)
    # Refilled to full at 1500 ms: the remainder is dropped, not saved for later.
    assert bucket.try_take(1_500)
    assert bucket.try_take(1_500)
    assert bucket.tokens == 0
    assert not bucket.try_take(1_999)
    assert bucket.try_take(2_000)
    # A full bucket keeps no credit while it waits.
    idle = TokenBucket(limit=2, interval_ms=1_000, now_ms=0)
    assert idle.try_take(10_000)
    assert idle.try_take(10_000)
    assert not idle.try_take(10_499)
    assert idle.try_take(10_500)


def test_token_bucket_drops_the_remainder_when_a_refill_fills_it() -> None:
    # 3 tokens per 1000 ms: one token per 333.33 ms, so 333 ms is just too short.
    bucket = TokenBucket(limit=3, interval_ms=1_000, now_ms=0)
    for _ in range(3):
        assert bucket.try_take(0)
    for _ in range(3):  # 1100 ms refill 3.3 tokens: full, the 0.3 dropped
        assert bucket.try_take(1_100)
    assert not bucket.try_take(1_433)
    assert bucket.try_take(1_434)
    idle = TokenBucket(limit=3, interval_ms=1_000, now_ms=0)
    for _ in range(3):  # full all along: it saved no credit while waiting
        assert idle.try_take(10_000)
    assert not idle.try_take(10_333)
    assert idle.try_take(10_334)
