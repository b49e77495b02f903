"""The gateway's admission of a reattach request: flood rejections and the accepted path.

Rows (all timed round-robin in one run, so ratios see the same load):

* **flood, global limit**: a node whose global bucket is empty (`global_flood_limit` 1,
  spent by one accepted request at the same millisecond) receives a stream of valid
  requests; each is refused with FLOOD_LIMITED by `handle_reattach` before anything else.
* **flood, per-source limit**: the global bucket is ample, the source host's bucket
  (`source_flood_limit` 1) is spent; each request is refused with SOURCE_FLOOD_LIMITED.
* **accepted reattach, sticky / shared**: a chain of valid reattach requests on the
  active path, one every 260 ms (just over the core's per-session rate limit), each
  accepted and committed to a `MemoryStore`. Sticky: the node's table is authoritative,
  one encode plus one compare-and-set per call. Shared: each call also loads the record
  from the store, decodes it and runs `check_state` on it.
* **bare step(), same chain**: the same requests stepped directly from the same state,
  the peer of both accepted rows: the ratio is the gateway's overhead on top of the core.
* **accepted reattach, shared, blocking custom sink / null sink**: the shared chain with
  telemetry going to a custom sink whose `emit` sleeps 100 ms per record (a SIEM that
  crawls), against the same chain with a `NullSink`. The gateway only enqueues: the custom
  sink runs on a worker of its own, its bounded queue fills and further records are dropped
  and counted. Target (risk model §6.1, the cluster issue): the blocking-sink row within
  10% of the null-sink row, both timed in the same run.
* **peer: step() refusing a wrong session id**: the core's cheapest refusal, i.e. what a
  flood request would cost at least had it reached the core.

The flood rows run in shared ownership mode, where every admitted request reads the store:
`checked()` counts store calls through a wrapper and asserts that none happened during the
flood. The target for the flood rows is the gateway issue's "<= 1 microsecond median".
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from benchmarks.fixtures import (
    POLICY,
    SECRET,
    SERVER_SEEN,
    SESSION_ID,
    T0,
    attached_server,
    reattach_request,
)
from benchmarks.harness import BenchResult, Case, Prepared, run_cases
from jumpvpn_core import Phase, ReasonCode, ReattachRequest, SessionState, StateChanged, step
from jumpvpn_core.effects import Rejected, SendReattachAccept
from jumpvpn_core.gateway import Gateway, GatewayPolicy
from jumpvpn_core.gateway.policy import OwnershipMode
from jumpvpn_core.gateway.records import decode_record
from jumpvpn_core.stores.base import StoredSession
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.telemetry import NullSink, TelemetrySink

__all__ = ["CASES", "CountingStore", "run"]

#: Spacing of the accepted chain: just over the per-session rate limit (4 per second).
SPACING_MS = POLICY.reattach_rate_window_ms // POLICY.reattach_rate_limit + 10
_AMPLE = 100_000_000
_OTHER_SESSION = bytes(range(100, 116))


class CountingStore:
    """A `SessionStore` that counts every call by method name, then delegates."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def get(self, session_id: bytes) -> StoredSession | None:
        self.calls["get"] += 1
        return self.inner.get(session_id)

    def create(self, session_id: bytes, version: int, data: bytes) -> bool:
        self.calls["create"] += 1
        return self.inner.create(session_id, version, data)

    def compare_and_set(self, session_id: bytes, expected_version: int, new_version: int,
                        data: bytes) -> bool:
        self.calls["compare_and_set"] += 1
        return self.inner.compare_and_set(session_id, expected_version, new_version, data)

    def delete(self, session_id: bytes, expected_version: int) -> bool:
        self.calls["delete"] += 1
        return self.inner.delete(session_id, expected_version)

    def scan(self) -> Iterator[StoredSession]:
        self.calls["scan"] += 1
        return self.inner.scan()

    def close(self) -> None:
        self.inner.close()


class BlockingSink:
    """A custom telemetry sink that takes 100 ms per record (not declared non-blocking)."""

    def __init__(self) -> None:
        self.seen = 0

    def emit(self, record: Any) -> None:
        self.seen += 1
        time.sleep(0.1)

    def close(self) -> None:
        return None


#: Gateways built for the sink rows; each is closed (its worker stopped) when the next is made.
_OPEN: list[Gateway] = []


def _gateway(policy: GatewayPolicy,
             telemetry: TelemetrySink | None = None) -> tuple[Gateway, CountingStore]:
    """A node with the benchmark session open on `SERVER_SEEN` at `T0` (= `attached_server()`)."""
    store = CountingStore(MemoryStore())
    gateway = Gateway(store, policy, session_policy=POLICY, telemetry=telemetry)
    opened = gateway.open_session(SESSION_ID, SECRET, SERVER_SEEN, T0)
    assert opened.accepted, opened
    return gateway, store


# --- the accepted chain, shared by the gateway rows and the bare-step peer ----------------------

_CHAINS: dict[int, tuple[SessionState, list[ReattachRequest], SessionState]] = {}


def _chain(n: int) -> tuple[SessionState, list[ReattachRequest], SessionState]:
    """`n` valid requests, each accepted by the state the one before produced; and the end.

    Built once per size (requests and states are immutable), outside any timed region.
    """
    if n not in _CHAINS:
        start = state = attached_server()
        now = T0
        requests = []
        for nonce in range(1, n + 1):
            now += SPACING_MS
            request = reattach_request(state, now, nonce)
            requests.append(request)
            state, effects = step(state, request)
            assert isinstance(effects[0], StateChanged), effects
            assert effects[0].reason is ReasonCode.REATTACHED
        _CHAINS[n] = (start, requests, state)
    return _CHAINS[n]


def _accepted(ownership: OwnershipMode,
              sink: Callable[[], TelemetrySink] | None = None) -> Callable[[int], Prepared]:
    def make(n: int) -> Prepared:
        _start, requests, end = _chain(n)
        while _OPEN:
            _OPEN.pop().close(0.0)
        gateway, store = _gateway(GatewayPolicy(global_flood_limit=_AMPLE,
                                                source_flood_limit=_AMPLE,
                                                ownership=ownership),
                                  sink() if sink is not None else None)
        if sink is not None:
            _OPEN.append(gateway)

        def body() -> None:
            for request in requests:
                gateway.handle_reattach(request)

        def checked() -> None:
            before = store.calls.copy()
            for number, request in enumerate(requests, start=2):
                result = gateway.handle_reattach(request)
                assert result.accepted, result
                assert result.reason is None
                assert result.store_version == number  # version 1 was the creation
                assert result.phase is Phase.ATTACHED
                assert isinstance(result.effects[-1], SendReattachAccept)
                assert result.effects[-1].nonce == request.nonce
            commits = store.calls["compare_and_set"] - before["compare_and_set"]
            assert commits == len(requests), commits
            reads = store.calls["get"] - before["get"]
            assert reads == (len(requests) if ownership is OwnershipMode.SHARED else 0), reads
            record = store.inner.get(SESSION_ID)
            assert record is not None
            assert record.version == len(requests) + 1
            # The committed state is exactly what bare step() reaches on the same chain.
            assert decode_record(record) == end

        return Prepared(n, body, checked)

    return make


def _bare_step(n: int) -> Prepared:
    start, requests, end = _chain(n)

    def body() -> None:
        state = start
        for request in requests:
            state, _ = step(state, request)

    def checked() -> None:
        state = start
        for request in requests:
            new, effects = step(state, request)
            assert new is not state
            assert new.phase is Phase.ATTACHED
            assert isinstance(effects[-1], SendReattachAccept)
            state = new
        assert state == end

    return Prepared(n, body, checked)


# --- flood rejections ---------------------------------------------------------------------------

_FLOODS: dict[int, tuple[ReattachRequest, list[ReattachRequest]]] = {}


def _flood_requests(n: int) -> tuple[ReattachRequest, list[ReattachRequest]]:
    """One valid request that spends the bucket, then `n` more in the same millisecond."""
    if n not in _FLOODS:
        start = attached_server()
        now = T0 + SPACING_MS
        first = reattach_request(start, now, 1)
        _FLOODS[n] = (first, [reattach_request(start, now, 2 + i) for i in range(n)])
    return _FLOODS[n]


def _flood(limit: str) -> Callable[[int], Prepared]:
    if limit == "global":
        policy = GatewayPolicy(global_flood_limit=1, source_flood_limit=1,
                               ownership=OwnershipMode.SHARED)
        reason = ReasonCode.FLOOD_LIMITED
    else:
        policy = GatewayPolicy(global_flood_limit=_AMPLE, source_flood_limit=1,
                               ownership=OwnershipMode.SHARED)
        reason = ReasonCode.SOURCE_FLOOD_LIMITED

    def make(n: int) -> Prepared:
        first, flood = _flood_requests(n)
        gateway, store = _gateway(policy)
        admitted = gateway.handle_reattach(first)  # spends the one token (untimed)
        assert admitted.accepted, admitted

        def body() -> None:
            for request in flood:
                gateway.handle_reattach(request)

        def checked() -> None:
            before = sum(store.calls.values())
            for request in flood:
                result = gateway.handle_reattach(request)
                assert not result.accepted
                assert result.reason is reason, result
                assert result.effects == ()
                assert result.store_version is None
            # Refused before the store: not one read (shared mode reads for every admission).
            assert sum(store.calls.values()) == before, store.calls
            assert gateway._aggregator.pending().get(reason) == len(flood)

        return Prepared(n, body, checked)

    return make


def _core_refusal(n: int) -> Prepared:
    """The core's cheapest refusal: a request for another session id."""
    start = attached_server()
    requests = [reattach_request(start, T0 + SPACING_MS, 1 + i, session_id=_OTHER_SESSION)
                for i in range(n)]

    def body() -> None:
        for request in requests:
            step(start, request)

    def checked() -> None:
        for request in requests:
            new, effects = step(start, request)
            assert new is start
            assert len(effects) == 1
            assert isinstance(effects[0], Rejected)
            assert effects[0].reason is ReasonCode.SESSION_MISMATCH

    return Prepared(n, body, checked)


# --- the table ----------------------------------------------------------------------------------



CORE_REFUSAL = "peer: step() refusing a wrong session id"
NULL_SINK = "gateway: accepted reattach, shared, memory store, null sink"
BARE_STEP = "peer: bare step(), same accepted reattach chain"

CASES: tuple[Case, ...] = (
    Case("gateway: flood request refused, global limit (FLOOD_LIMITED)", _flood("global"),
         2000, 1000, CORE_REFUSAL, "whole handle_reattach call; zero store calls checked"),
    Case("gateway: flood request refused, per-source limit (SOURCE_FLOOD_LIMITED)",
         _flood("source"), 2000, 1000, CORE_REFUSAL,
         "global bucket passes, source bucket empty; zero store calls checked"),
    Case(CORE_REFUSAL, _core_refusal, 2000),
    Case("gateway: accepted reattach, sticky, memory store", _accepted(OwnershipMode.STICKY),
         200, peer=BARE_STEP, notes="step + JSON encode + compare-and-set + audit"),
    Case("gateway: accepted reattach, shared, memory store", _accepted(OwnershipMode.SHARED),
         200, peer=BARE_STEP,
         notes="store read + JSON decode + check_state + step + encode + compare-and-set"),
    Case(BARE_STEP, _bare_step, 200, notes="2 HMACs per request (verify + accept proof)"),
    Case(NULL_SINK, _accepted(OwnershipMode.SHARED, NullSink), 200,
         notes="telemetry to a NullSink, called inline"),
    Case("gateway: accepted reattach, shared, memory store, blocking custom sink",
         _accepted(OwnershipMode.SHARED, BlockingSink), 200, target_ns=1_000_000,
         peer=NULL_SINK, peer_ratio_max=1.10, peer_label="the null-sink row",
         notes="sink sleeps 100 ms per record on its own worker; the gateway only enqueues"),
)


def run(smoke: bool) -> list[BenchResult]:
    """Run every case: smoke checks each path; a full run checks, then times interleaved."""
    return run_cases(CASES, smoke)
