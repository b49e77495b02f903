"""The server-side gateway: many sessions, one store, flood limits, ownership.

A tool layer over the pure core. The gateway owns the session table and the store; the
core (`step`) still makes every protocol decision. Time is passed in (`event.now_ms`,
`now_ms=`); the gateway never reads a clock, so a simulator drives it in virtual time.

Admission order of a reattach request (risk model §3.1: cheap and early first)
-----------------------------------------------------------------------------
1. global flood limit (one integer token bucket for the node)       -> FLOOD_LIMITED
2. per-source flood limit (one bucket per source host, bounded LRU)  -> SOURCE_FLOOD_LIMITED
3. ownership and session existence: a sticky node refuses sessions it does not own
   (NOT_OWNER); the session must be in the table (sticky) or the store (shared)
   (UNKNOWN_SESSION); a store that does not answer -> STORE_UNAVAILABLE
4. the core's own cheap checks (phase, session id, per-session rate, replay window,
   version, freshness, path, switch limits), inside `step()`
5. cryptography (HMAC of the proof), inside `step()`, last.

Nothing before step 4 mutates a session. Rejections are not written one by one to the
telemetry sink: they are counted per reason and reported once per
`aggregation_interval_ms` (`reject_summary` records), so a flood cannot flood the audit log.

Commit and effects: the ordering contract
-----------------------------------------
A step's new state exists only once committed. For every step that returns a state other
than the one it was given, the gateway

1. encodes the new state and commits it to the store by compare-and-set on the record's
   `version` (expected = the version the state was loaded at, new = expected + 1);
2. only if that commit succeeded, emits the step's audit records and returns its effects
   for the driver to execute (send, bind, tear down), in order.

If the commit fails, no effect of the step is executed and the request is rejected
(COMMIT_CONFLICT on a lost compare-and-set, STORE_UNAVAILABLE when the store does not
answer). A request is never accepted without its commit (§4.2). This is the contract etcd
raft states for `Ready`: persist first, then send.

The record `version` is a *commit counter*, not the core's `state_version`. It grows on
every committed change, including changes that are not transitions: a reattach request
that opens a path validation marks its nonce in the replay window without a transition,
and that too must be committed, or another node could load the older record and accept
the same nonce again (§3.2 across a cluster).

Ownership (§4.1), by configuration (`GatewayPolicy.ownership`):

* `sticky`: the owner of a session is the rendezvous hash of its id over `node_ids`; other
  nodes answer NOT_OWNER. The owner's table is authoritative and every change is still
  committed by compare-and-set, so a record changed by anyone else is detected: the
  session is terminated (OWNERSHIP_AMBIGUOUS) rather than guessed about.
* `shared`: any node serves any session: load from the store, `step()`, commit by
  compare-and-set. A lost compare-and-set rejects with COMMIT_CONFLICT.

A record that does not decode or fails `check_state` is never repaired: the session is
stepped with `StoreRecordInvalid` (TERMINATED) when a state to step exists, otherwise the
request is rejected with STORE_RECORD_INVALID.

Store record content is `json.dumps(state_to_data(state, include_secrets=True),
sort_keys=True)`: the store is trusted with the session's control key.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from jumpvpn_core.effects import Effect, Rejected, StateChanged
from jumpvpn_core.errors import PolicyError
from jumpvpn_core.events import (
    Attach,
    Event,
    Evict,
    OwnershipAmbiguous,
    ReattachRequest,
    StoreRecordInvalid,
    Tick,
)
from jumpvpn_core.gateway.aggregate import RejectAggregator
from jumpvpn_core.gateway.clock import measure_clock
from jumpvpn_core.gateway.entry import Entry
from jumpvpn_core.gateway.limits import SourceLimiter, TokenBucket
from jumpvpn_core.gateway.ownership import owner_of
from jumpvpn_core.gateway.policy import GatewayPolicy, OwnershipMode
from jumpvpn_core.gateway.records import (
    FIRST_VERSION,
    RecordInvalidError,
    decode_record,
    encode_state,
)
from jumpvpn_core.gateway.resume import ResumeReport, resume_sessions
from jumpvpn_core.machine import next_deadline, step
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.state import SessionState, new_session
from jumpvpn_core.stores.base import SessionStore, StoreError
from jumpvpn_core.telemetry.fanout import Fanout
from jumpvpn_core.telemetry.sinks import TelemetrySink
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "FIRST_VERSION",
    "INPUT_KINDS",
    "Gateway",
    "GatewayResult",
    "RecordInvalidError",
    "decode_record",
    "encode_state",
]

# Bound on re-reads when terminating a session whose record keeps changing under us.
_FAIL_CLOSED_ATTEMPTS = 3
#: Kinds of input counted in `Gateway.accepted_totals`.
INPUT_KINDS = ("open_session", "reattach", "event")
# Nothing is logged per request above DEBUG: refusals are counted and summarised instead.
_log = logging.getLogger("jumpvpn_core.gateway")


@attrs.frozen
class GatewayResult:
    """What the gateway decided for one input, and what the driver must now do.

    `accepted` is True when the session accepted the input and the resulting state was
    committed (`store_version` is then the version committed). Otherwise `reason` says
    why not. `effects` must be executed in order; each belongs to a committed state: the
    one just committed, or, for a refusal that commits nothing (`store_version` None), an
    action the committed state already held (the stored accept re-sent for an exact
    retransmission). A failed commit has no effects.
    """

    session_id: bytes
    accepted: bool
    reason: ReasonCode | None
    effects: tuple[Effect, ...] = ()
    store_version: int | None = None
    phase: Phase | None = None


class Gateway:
    """A gateway node. Synchronous and thread-safe (one lock serialises its inputs).

    `store` is any `SessionStore`; `policy` the node's bounds and cluster shape; `node_id`
    this node's name (one of `policy.node_ids`); `session_policy` the core `Policy` of
    sessions this node opens; `telemetry` is one sink or a sequence of sinks receiving
    audit and summary records.

    Telemetry never holds the gateway up (§6.1): records go to a `Fanout` that calls only
    non-blocking sinks inline and gives every other sink a bounded queue and a worker
    thread of its own (full queue: the record is dropped and counted). The `telemetry`
    attribute is that fanout; a harness may replace it with a sink of its own, which is
    then called inline and must not block.
    """

    def __init__(
        self,
        store: SessionStore,
        policy: GatewayPolicy | None = None,
        *,
        node_id: str | None = None,
        session_policy: Policy | None = None,
        telemetry: TelemetrySink | Sequence[TelemetrySink] | None = None,
    ) -> None:
        self.policy = policy if policy is not None else GatewayPolicy()
        self.node_id = node_id if node_id is not None else self.policy.node_ids[0]
        if self.node_id not in self.policy.node_ids:
            raise PolicyError([f"node_id {self.node_id!r} is not one of policy.node_ids"])
        self.store = store
        self.session_policy = session_policy if session_policy is not None else Policy()
        sinks: Sequence[TelemetrySink]
        if telemetry is None:
            sinks = ()
        elif isinstance(telemetry, Sequence):
            sinks = tuple(telemetry)
        else:
            sinks = (telemetry,)
        self._fanout = Fanout(sinks)
        self.telemetry: TelemetrySink = self._fanout
        self._sticky = self.policy.ownership is OwnershipMode.STICKY
        self._table: dict[bytes, Entry] = {}
        self._global: TokenBucket | None = None
        self._sources = SourceLimiter(
            self.policy.source_flood_limit,
            self.policy.flood_interval_ms,
            self.policy.max_tracked_sources,
        )
        self._aggregator = RejectAggregator(self.policy.aggregation_interval_ms)
        self._lock = threading.RLock()
        self._emit_errors = 0
        self._quarantined = 0
        #: REPLAY_DETECTED refusals that re-sent the stored accept (honest retransmissions).
        self.retransmissions = 0
        #: Inputs accepted and committed, per kind (`INPUT_KINDS`); `tick` is not counted.
        self.accepted_totals: dict[str, int] = dict.fromkeys(INPUT_KINDS, 0)
        self._clock_fault = False
        #: Offset (node minus store, ms) measured by the last `check_clock`, or None.
        self.clock_offset_ms: int | None = None
        #: What the last `resume()` did (None before the first).
        self.last_resume: ResumeReport | None = None

    # --- views ------------------------------------------------------------------------

    def __len__(self) -> int:
        """Sessions in this node's table."""
        return len(self._table)

    def session_ids(self) -> Iterator[bytes]:
        """Ids of the sessions in this node's table (a snapshot)."""
        with self._lock:
            return iter(list(self._table))

    def local_state(self, session_id: bytes) -> SessionState | None:
        """This node's copy of a session (authoritative in sticky mode, a cache in shared)."""
        with self._lock:
            entry = self._table.get(session_id)
            return None if entry is None else entry.state

    def committed(self, session_id: bytes) -> tuple[int, SessionState] | None:
        """The store's committed `(version, state)` of a session, or None."""
        record = self.store.get(session_id)
        return None if record is None else (record.version, decode_record(record))

    @property
    def quarantined(self) -> int:
        """Store records this node left untouched because they do not decode (all resumes)."""
        return self._quarantined

    @property
    def telemetry_errors(self) -> int:
        """Records a sink raised on (a well-behaved sink never raises; counted anyway)."""
        return self._emit_errors + (self._fanout.errors if self.telemetry is self._fanout else 0)

    @property
    def telemetry_dropped(self) -> int:
        """Records dropped on the way to a slow or failing sink (its worker's queue was full
        or the sink raised on its worker)."""
        return self._fanout.dropped

    @property
    def rejection_totals(self) -> dict[ReasonCode, int]:
        """Every rejection this node has counted, per reason."""
        with self._lock:
            return dict(self._aggregator.totals)

    def owns(self, session_id: bytes) -> bool:
        """Whether this node may change `session_id` (always True in shared mode)."""
        if not self._sticky:
            return True
        return owner_of(session_id, self.policy.node_ids) == self.node_id

    # --- public inputs ----------------------------------------------------------------

    def open_session(
        self,
        session_id: bytes,
        session_secret: bytes,
        transport: TransportDescriptor,
        now_ms: int,
    ) -> GatewayResult:
        """Create a server session whose handshake finished on `transport`, and commit it.

        Refused with NOT_OWNER (sticky, another node owns it), SESSION_TABLE_FULL (the table
        is at capacity even after idle sessions were evicted), COMMIT_CONFLICT (the store
        already has this session) or STORE_UNAVAILABLE.
        """
        with self._lock:
            self._flush_summaries(now_ms)
            if self._clock_fault:
                return self._reject(session_id, ReasonCode.TIME_WENT_BACKWARDS, now_ms)
            if not self.owns(session_id):
                return self._reject(session_id, ReasonCode.NOT_OWNER, now_ms)
            if session_id in self._table:
                return self._reject(session_id, ReasonCode.COMMIT_CONFLICT, now_ms)
            if len(self._table) >= self.policy.max_sessions:
                self._evict_idle(now_ms)
            if len(self._table) >= self.policy.max_sessions:
                return self._reject(session_id, ReasonCode.SESSION_TABLE_FULL, now_ms)
            born = new_session(Role.SERVER, session_id, session_secret, now_ms,
                               self.session_policy)
            state, effects = step(born, Attach(now_ms, transport))
            try:
                created = self.store.create(session_id, FIRST_VERSION, encode_state(state))
            except StoreError:
                return self._reject(session_id, ReasonCode.STORE_UNAVAILABLE, now_ms)
            if not created:
                return self._reject(session_id, ReasonCode.COMMIT_CONFLICT, now_ms)
            self._table[session_id] = Entry(state, FIRST_VERSION)
            self._audit(effects)
            self.accepted_totals["open_session"] += 1
            return GatewayResult(session_id, True, None, effects, FIRST_VERSION, state.phase)

    def handle_reattach(self, request: ReattachRequest) -> GatewayResult:
        """Admit a reattach request in the documented order; see the module docstring."""
        now = request.now_ms
        sid = request.session_id
        with self._lock:
            self._flush_summaries(now)
            if self._global is None:
                self._global = TokenBucket(self.policy.global_flood_limit,
                                           self.policy.flood_interval_ms, now)
            if not self._global.try_take(now):
                return self._reject(sid, ReasonCode.FLOOD_LIMITED, now)
            if not self._sources.try_take(request.source.host, now):
                return self._reject(sid, ReasonCode.SOURCE_FLOOD_LIMITED, now)
            return self._accepted("reattach", self._handle_locked(sid, request, now))

    def handle(self, session_id: bytes, event: Event) -> GatewayResult:
        """Deliver any server event to a session (reattach requests go through the limits)."""
        if isinstance(event, ReattachRequest):
            if event.session_id != session_id:
                raise ValueError("session_id does not match the request's session id")
            return self.handle_reattach(event)
        with self._lock:
            self._flush_summaries(event.now_ms)
            return self._accepted("event", self._handle_locked(session_id, event, event.now_ms))

    def tick(self, now_ms: int) -> list[GatewayResult]:
        """Fire due deadlines, evict idle sessions, close the rejection summary window.

        Call it at least as often as the earliest `next_deadline` of the sessions, or on a
        fixed period; it visits every session in the table.
        """
        with self._lock:
            self._flush_summaries(now_ms)
            results: list[GatewayResult] = []
            if self._clock_fault:
                return results  # no deadline fires on a time base we cannot trust
            for sid, entry in list(self._table.items()):
                deadline = next_deadline(entry.state)
                if self._idle(entry.state, now_ms) or (
                    deadline is not None and now_ms >= deadline
                ):
                    results.append(self._handle_locked(sid, Tick(now_ms), now_ms))
            return results

    def resume(self, now_ms: int) -> int:
        """Load this node's sessions from the store (after a restart); how many were loaded.

        Sticky: the sessions this node owns (TERMINATED records purged, sessions beyond
        capacity ended explicitly). Shared: at most `max_sessions` sessions warm the cache;
        nothing is evicted, terminated or deleted. A record that does not decode is
        quarantined: left in the store, reported (`store_record_invalid`) and counted
        (`quarantined`), and the rest resumes. `last_resume` has the full report. Raises
        `StoreUnavailableError` if the store cannot be scanned. See `gateway.resume`.
        """
        with self._lock:
            report = resume_sessions(self, now_ms)
            self.last_resume = report
        return report.resumed

    def check_clock(self, now_ms: int) -> int | None:
        """Check this node's clock against the store's; the offset (node minus store, ms).

        The clock contract of a cluster (docs/operations.md): every node passes `now_ms` on
        one time base, Unix epoch milliseconds from a synchronised clock, and two nodes are
        never more than `max_clock_skew_ms` apart. A store that keeps time (`time_ms()`:
        Redis, PostgreSQL, etcd) is the cluster's reference: when this node is off it by
        more than the bound, the node refuses every input (TIME_WENT_BACKWARDS, nothing
        stepped, committed or deleted, `tick` fires nothing) until a later check finds it
        back within the bound; each change is reported (`clock_out_of_contract` /
        `clock_within_contract`). Call it at start-up and periodically, with `now_ms` read
        just before the call (the store's round trip is part of the tolerance). Returns
        None, and changes nothing, when the store keeps no time or does not answer.
        """
        return measure_clock(self, now_ms)

    @property
    def clock_fault(self) -> bool:
        """True while the last `check_clock` found this node outside the clock contract."""
        return self._clock_fault

    def close(self, timeout_s: float = 2.0) -> None:
        """Report the open rejection window, stop the telemetry workers, forget the table.

        The store keeps every committed state and is not closed (whoever opened it does).
        Returns within `timeout_s` whatever the sinks do: records a hung sink has not taken
        by then are lost and were counted as dropped. Idempotent.
        """
        with self._lock:
            for record in self._aggregator.close():
                self._emit(record)
            self._table.clear()
        self._fanout.close(timeout_s)

    # --- internals ----------------------------------------------------------------------

    def _idle(self, state: SessionState, now_ms: int) -> bool:
        # Shared mode: the record may come from a node whose clock is behind ours by up to
        # the skew bound, so a session is idle only past the TTL plus that bound.
        margin = 0 if self._sticky else self.policy.max_clock_skew_ms
        return now_ms - state.link.clock_ms >= self.policy.session_idle_ttl_ms + margin

    def _accepted(self, kind: str, result: GatewayResult) -> GatewayResult:
        self.accepted_totals[kind] += result.accepted
        return result

    def _emit(self, record: dict[str, Any]) -> None:
        try:
            self.telemetry.emit(record)
        except Exception:  # a sink must never change a decision (§6.1); count and go on
            self._emit_errors += 1

    def _audit(self, effects: tuple[Effect, ...]) -> None:
        for effect in effects:
            if isinstance(effect, StateChanged):
                self._emit(effect.to_record())

    def _flush_summaries(self, now_ms: int) -> None:
        for record in self._aggregator.flush(now_ms):
            self._emit(record)

    def _count(self, reason: ReasonCode, now_ms: int) -> None:
        for record in self._aggregator.count(reason, now_ms):
            self._emit(record)

    def _reject(self, sid: bytes, reason: ReasonCode, now_ms: int,
                effects: tuple[Effect, ...] = (), version: int | None = None,
                phase: Phase | None = None) -> GatewayResult:
        self._count(reason, now_ms)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("session %s refused: %s", sid.hex(), reason.value)
        return GatewayResult(sid, False, reason, effects, version, phase)

    def _try_delete(self, sid: bytes, version: int) -> None:
        # Best effort: a TERMINATED record left behind is purged by the next resume().
        with contextlib.suppress(StoreError):
            self.store.delete(sid, version)

    def _load(self, sid: bytes, now_ms: int) -> Entry | GatewayResult:
        """Step 3 of admission: the session as it may be stepped, or a rejection."""
        if self._sticky:
            if not self.owns(sid):
                return self._reject(sid, ReasonCode.NOT_OWNER, now_ms)
            entry = self._table.get(sid)
            if entry is None:
                return self._reject(sid, ReasonCode.UNKNOWN_SESSION, now_ms)
            if entry.ambiguous:
                return self._fail_closed(sid, entry, now_ms)
            if entry.in_doubt is not None:
                return self._resolve_in_doubt(sid, entry, now_ms)
            return entry
        try:
            record = self.store.get(sid)
        except StoreError:
            return self._reject(sid, ReasonCode.STORE_UNAVAILABLE, now_ms)
        cached = self._table.get(sid)
        if record is None:
            self._table.pop(sid, None)
            return self._reject(sid, ReasonCode.UNKNOWN_SESSION, now_ms)
        try:
            state = decode_record(record)
        except RecordInvalidError as exc:
            _log.warning("store record of session %s (version %d) does not decode (%s): "
                         "refused, never repaired", sid.hex(), record.version,
                         type(exc).__name__)
            if cached is None:
                return self._reject(sid, ReasonCode.STORE_RECORD_INVALID, now_ms)
            # Fail closed with the last state this node saw; never repair the record.
            broken = Entry(cached.state, record.version)
            event = StoreRecordInvalid(max(now_ms, cached.state.link.clock_ms))
            result = self._step_entry(sid, broken, event, now_ms)
            return self._as_rejection(result, ReasonCode.STORE_RECORD_INVALID, now_ms)
        if cached is not None:
            if record.version < cached.version:
                # The store went backwards (restart without persistence, failover to a
                # lagging replica): serving its older record could re-accept a nonce.
                _log.error("store returned version %d of session %s after this node had "
                           "seen %d: the store went backwards; refused", record.version,
                           sid.hex(), cached.version)
                return self._reject(sid, ReasonCode.STORE_UNAVAILABLE, now_ms)
            cached.state, cached.version = state, record.version
            return cached
        entry = Entry(state, record.version)
        if len(self._table) < self.policy.max_sessions:
            self._table[sid] = entry
        return entry

    def _resolve_in_doubt(self, sid: bytes, entry: Entry, now_ms: int) -> Entry | GatewayResult:
        assert entry.in_doubt is not None
        version, data, state = entry.in_doubt
        try:
            record = self.store.get(sid)
        except StoreError:
            return self._reject(sid, ReasonCode.STORE_UNAVAILABLE, now_ms)
        if record is not None and record.version == entry.version:
            entry.in_doubt = None  # our write never landed
            return entry
        if record is not None and record.version == version and record.data == data:
            entry.in_doubt = None  # it did land: adopt it (its effects are lost, see docs)
            entry.state, entry.version = state, version
            if state.phase is Phase.TERMINATED:
                self._table.pop(sid, None)
                self._try_delete(sid, version)
                return self._reject(sid, ReasonCode.SESSION_TERMINATED, now_ms,
                                    phase=state.phase)
            return entry
        entry.in_doubt = None
        return self._fail_closed(sid, entry, now_ms)

    def _as_rejection(self, result: GatewayResult, reason: ReasonCode,
                      now_ms: int) -> GatewayResult:
        # A step refused or not committed was counted under its own reason already; a
        # committed termination was not, and is a refusal of the input: count it.
        if result.accepted:
            self._count(reason, now_ms)
        return GatewayResult(result.session_id, False, reason, result.effects,
                             result.store_version, result.phase)

    def _handle_locked(self, sid: bytes, event: Event, now_ms: int) -> GatewayResult:
        if self._clock_fault:
            return self._reject(sid, ReasonCode.TIME_WENT_BACKWARDS, now_ms)
        loaded = self._load(sid, now_ms)
        if isinstance(loaded, GatewayResult):
            return loaded
        entry = loaded
        ahead = entry.state.link.clock_ms - now_ms
        if ahead > 0:
            # Clock contract: the record was written by a node whose clock is ahead of ours.
            # Within the bound, the session's own clock is the later one: step at it. Beyond
            # it, refuse; never terminate or delete on a time base we cannot trust.
            if ahead > self.policy.max_clock_skew_ms:
                return self._reject(sid, ReasonCode.TIME_WENT_BACKWARDS, now_ms)
            now_ms = entry.state.link.clock_ms
            event = attrs.evolve(event, now_ms=now_ms)
        if entry.state.phase is not Phase.TERMINATED and self._idle(entry.state, now_ms):
            # §5.3: an idle session is ended explicitly, with its audit record.
            evicted = self._step_entry(sid, entry, Evict(now_ms), now_ms)
            if isinstance(event, Tick):
                return evicted
            if not evicted.accepted:
                return evicted
            return self._reject(sid, ReasonCode.SESSION_TERMINATED, now_ms, evicted.effects,
                                evicted.store_version, evicted.phase)
        return self._step_entry(sid, entry, event, now_ms)

    def _step_entry(self, sid: bytes, entry: Entry, event: Event, now_ms: int) -> GatewayResult:
        """Steps 4-5 (inside `step`), then commit, then (only then) audit and effects."""
        old = entry.state
        new, effects = step(old, event)
        rejected = [e for e in effects if isinstance(e, Rejected)]
        reason = rejected[-1].reason if rejected else None
        if new is old:
            assert reason is not None  # the core answers a refusal with one Rejected
            if old.phase is Phase.TERMINATED and self._table.get(sid) is entry:
                self._table.pop(sid, None)
            # Nothing changed, so nothing to commit; an action that comes with the refusal
            # re-sends what a committed state holds (the stored accept of an exact
            # retransmission) and is passed on.
            resent = tuple(e for e in effects if not isinstance(e, Rejected))
            # An exact retransmission of the accepted request: a replay by the rules
            # (§3.2), answered with the stored accept; counted apart for alerting.
            self.retransmissions += bool(resent) and reason is ReasonCode.REPLAY_DETECTED
            return self._reject(sid, reason, now_ms, resent, phase=old.phase)
        new_version = entry.version + 1
        data = encode_state(new)
        try:
            committed = self.store.compare_and_set(sid, entry.version, new_version, data)
        except StoreError:
            if self._sticky:
                entry.in_doubt = (new_version, data, new)
            return self._reject(sid, ReasonCode.STORE_UNAVAILABLE, now_ms)
        if not committed:
            if self._sticky:
                # The record changed behind the owner's back: ownership is ambiguous.
                return self._fail_closed(sid, entry, now_ms)
            return self._reject(sid, ReasonCode.COMMIT_CONFLICT, now_ms)
        # Committed: the new state exists; now, and only now, its effects.
        entry.state, entry.version = new, new_version
        self._audit(effects)
        for effect in rejected:
            self._count(effect.reason, now_ms)
        if new.phase is Phase.TERMINATED:
            self._table.pop(sid, None)
            self._try_delete(sid, new_version)
        return GatewayResult(sid, reason is None, reason, effects, new_version, new.phase)

    def _fail_closed(self, sid: bytes, entry: Entry, now_ms: int) -> GatewayResult:
        """Terminate a session whose ownership is ambiguous, on the store's own record."""
        if not entry.ambiguous:
            _log.warning("session %s: its record changed behind this node (ownership "
                         "ambiguous); terminating it", sid.hex())
        entry.ambiguous = True
        for _ in range(_FAIL_CLOSED_ATTEMPTS):
            try:
                record = self.store.get(sid)
            except StoreError:
                return self._reject(sid, ReasonCode.STORE_UNAVAILABLE, now_ms)
            if record is None:
                self._table.pop(sid, None)
                return self._reject(sid, ReasonCode.OWNERSHIP_AMBIGUOUS, now_ms)
            base: SessionState
            event: Event
            try:
                base = decode_record(record)
                event = OwnershipAmbiguous(max(now_ms, base.link.clock_ms))
            except RecordInvalidError:
                base = entry.state
                event = StoreRecordInvalid(max(now_ms, base.link.clock_ms))
            new, effects = step(base, event)
            if new is base:  # already TERMINATED in the store
                self._table.pop(sid, None)
                self._try_delete(sid, record.version)
                return self._reject(sid, ReasonCode.OWNERSHIP_AMBIGUOUS, now_ms,
                                    phase=base.phase)
            try:
                done = self.store.compare_and_set(sid, record.version, record.version + 1,
                                                  encode_state(new))
            except StoreError:
                return self._reject(sid, ReasonCode.STORE_UNAVAILABLE, now_ms)
            if done:
                self._table.pop(sid, None)
                self._audit(effects)
                self._try_delete(sid, record.version + 1)
                return self._reject(sid, ReasonCode.OWNERSHIP_AMBIGUOUS, now_ms, effects,
                                    record.version + 1, new.phase)
        return self._reject(sid, ReasonCode.COMMIT_CONFLICT, now_ms)

    def _evict_idle(self, now_ms: int) -> None:
        for sid, entry in list(self._table.items()):
            if self._idle(entry.state, now_ms):
                self._handle_locked(sid, Tick(now_ms), now_ms)
