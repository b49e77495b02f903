"""Read-only views of a store's sessions for operators (`jumpvpn sessions`).

Nothing here writes to the store or prints a secret: states are shown with
`state_to_data(include_secrets=False)`. A record that does not decode is listed as
`INVALID` with the error's type (never its content).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from jumpvpn_core.codec import state_to_data
from jumpvpn_core.gateway.records import RecordInvalidError, decode_record
from jumpvpn_core.stores.base import SessionStore, StoredSession

__all__ = ["INVALID", "count_by_phase", "list_sessions", "show_session"]

#: The phase shown for a record that does not decode.
INVALID = "INVALID"


def _row(record: StoredSession) -> dict[str, Any]:
    row: dict[str, Any] = {"session_id": record.session_id.hex(),
                           "store_version": record.version}
    try:
        state = decode_record(record)
    except RecordInvalidError as exc:
        row.update(phase=INVALID, error=str(exc))
        return row
    row.update(phase=state.phase.value, state_version=state.state_version,
               active=str(state.link.active) if state.link.active is not None else None,
               clock_ms=state.link.clock_ms)
    return row


def list_sessions(store: SessionStore, limit: int | None = None) -> list[dict[str, Any]]:
    """One summary row per record (id, store version, phase, state version, active path,
    last clock), sorted by session id; at most `limit` rows."""
    rows = sorted((_row(record) for record in store.scan()), key=lambda r: r["session_id"])
    return rows if limit is None else rows[:limit]


def show_session(store: SessionStore, session_id: bytes) -> dict[str, Any] | None:
    """The full state of one session without its secrets, or None when absent."""
    record = store.get(session_id)
    if record is None:
        return None
    row = _row(record)
    if row["phase"] != INVALID:
        row["state"] = state_to_data(decode_record(record), include_secrets=False)
    return row


def count_by_phase(store: SessionStore) -> dict[str, int]:
    """How many records are in each phase (`INVALID` for those that do not decode)."""
    counts = Counter(_row(record)["phase"] for record in store.scan())
    return dict(sorted(counts.items()))
