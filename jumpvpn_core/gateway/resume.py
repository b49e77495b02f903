"""`Gateway.resume()`: what a restarted node loads from the store, and what it leaves alone.

Per ownership mode (risk model §4.1, §5.3):

* **sticky**: the node owns the sessions whose rendezvous owner it is, and only those. It
  loads them into its table; records of its own TERMINATED sessions are deleted (by
  compare-and-set on their version); sessions beyond `max_sessions` are ended explicitly
  (TERMINATED, SESSION_EVICTED), committed like any other change. Records owned by other
  nodes are not read past their id.
* **shared**: no node owns a session; the table is only a cache. Resume warms the cache
  with at most `max_sessions` sessions and *never* evicts, terminates or deletes a record:
  another node may be serving any of them. Capacity bounds the cache, nothing else.

Quarantine: a record that cannot be decoded, whatever a decoder raises on it (see
`records.DECODER_ERRORS`), is left in the store untouched, reported with a
`store_record_invalid` telemetry record (its session id and the error's type, never its
content) and counted; the rest of the store is resumed. One bad record never aborts a
restart. A record whose clock is ahead of the node's beyond `max_clock_skew_ms` is left
alone too (`store_record_ahead`): the node cannot step it without time going backwards.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import attrs

from jumpvpn_core.events import Evict
from jumpvpn_core.gateway.entry import Entry
from jumpvpn_core.gateway.records import RecordInvalidError, decode_record
from jumpvpn_core.phases import Phase

if TYPE_CHECKING:  # the gateway imports this module; this import is for annotations only
    from jumpvpn_core.gateway.gateway import Gateway

# A friend module of `gateway.py`: it works on the gateway's table under the gateway's lock.

__all__ = ["ResumeReport", "resume_sessions"]


@attrs.frozen
class ResumeReport:
    """What one `resume()` did. Every record the scan returned is in exactly one count."""

    #: Sessions loaded into the table (sticky) or the cache (shared).
    resumed: int = 0
    #: Records left untouched because they do not decode (quarantined, reported).
    quarantined: int = 0
    #: Sticky: own sessions ended explicitly because the table was full.
    evicted: int = 0
    #: Sticky: records of own TERMINATED sessions deleted.
    purged: int = 0
    #: Records left alone: another node's (sticky), already in the table, past the shared
    #: cache's capacity, TERMINATED in shared mode, or ahead of this node's clock.
    skipped: int = 0
    #: Session ids (hex) of the quarantined records, first `QUARANTINE_LIST_MAX` only.
    quarantined_ids: tuple[str, ...] = ()


_log = logging.getLogger("jumpvpn_core.gateway")

#: Bound on the ids a report lists (the count is always exact).
QUARANTINE_LIST_MAX = 100


def resume_sessions(gateway: Gateway, now_ms: int) -> ResumeReport:
    """Load this node's sessions from the store; see the module docstring.

    Caller holds the gateway's lock. Raises `StoreUnavailableError` if the store cannot
    be scanned (nothing is half-decided: what was loaded so far stays loaded).
    """
    counts = {"resumed": 0, "quarantined": 0, "evicted": 0, "purged": 0, "skipped": 0}
    quarantined: list[str] = []
    sticky = gateway._sticky
    table = gateway._table
    capacity = gateway.policy.max_sessions
    for record in gateway.store.scan():
        sid = record.session_id
        if not gateway.owns(sid) or sid in table:
            counts["skipped"] += 1
            continue
        if not sticky and len(table) >= capacity:
            counts["skipped"] += 1  # the cache is full: the record stays for whoever serves it
            continue
        try:
            state = decode_record(record)
        except RecordInvalidError as exc:
            counts["quarantined"] += 1
            gateway._quarantined += 1
            _log.warning("resume: store record of session %s (version %d) quarantined: "
                         "%s: %s", sid.hex(), record.version, type(exc).__name__,
                         str(exc)[:200])
            if len(quarantined) < QUARANTINE_LIST_MAX:
                quarantined.append(sid.hex())
            gateway._emit({"v": 1, "type": "store_record_invalid", "session_id": sid.hex(),
                          "store_version": record.version, "detail": str(exc),
                          "node": gateway.node_id, "ts_ms": now_ms})
            continue
        if state.link.clock_ms - now_ms > gateway.policy.max_clock_skew_ms:
            counts["skipped"] += 1
            _log.warning("resume: store record of session %s is ahead of this node's clock "
                         "beyond the skew bound; left alone", sid.hex())
            gateway._emit({"v": 1, "type": "store_record_ahead", "session_id": sid.hex(),
                          "record_clock_ms": state.link.clock_ms, "node": gateway.node_id,
                          "ts_ms": now_ms})
            continue
        if state.phase is Phase.TERMINATED:
            if sticky:
                gateway._try_delete(sid, record.version)
                counts["purged"] += 1
            else:
                counts["skipped"] += 1
            continue
        if sticky and len(table) >= capacity:
            entry = Entry(state, record.version)
            gateway._step_entry(sid, entry, Evict(max(now_ms, state.link.clock_ms)), now_ms)
            counts["evicted"] += 1
            continue
        table[sid] = Entry(state, record.version)
        counts["resumed"] += 1
        gateway._emit({"v": 1, "type": "session_resumed", "session_id": sid.hex(),
                      "phase": state.phase.value, "state_version": state.state_version,
                      "store_version": record.version, "node": gateway.node_id,
                      "ts_ms": now_ms})
    return ResumeReport(**counts, quarantined_ids=tuple(quarantined))
