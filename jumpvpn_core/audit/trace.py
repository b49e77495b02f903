"""Check a JSONL audit trace against everything a trace can show.

A trace is a file of JSON lines, each an audit record as `StateChanged.to_record()` or
`Rejected.to_record()` produce it (`jumpvpn_core/effects.py`); records may carry extra keys
(a node id, ...) which are ignored. Records are grouped into *streams* by
`(script, store, session_id, role)`, where `script` and `store` are the record's keys of
those names if it has them (the scenario runner tags records with their script, whose
sessions all reuse one test id, and a gateway's records with the store holding the
session's one chain of states);
within a stream the verifier checks:

* shape: `v`, `type`, field types, known phases, roles and reason codes, `class` matching
  the reason;
* transitions: `(from, reason) -> to` is a row of `TRANSITION_TABLE`, and each transition
  starts where the previous one ended;
* versions: +1 per transition, unchanged by rejects;
* a stream starts at BIRTH (version 0/1) unless `allow_partial`: a record whose session id
  was changed, or a dropped first record, shows up as a stream starting mid-session;
* nothing after TERMINATED except `SESSION_TERMINATED` rejections and a gateway's
  admission refusals (`UNKNOWN_SESSION`, flood limits, `NOT_OWNER`, store errors);
* timestamps never decrease (`TIME_WENT_BACKWARDS` and `SESSION_TERMINATED` rejections
  carry the refused event's own time, so they are exempt);
* bounds, under the policy a `policy` record stated for the stream's script (else the
  `--policy` given, else the defaults): time in RECOVERING <= `max_recovery_window_ms`,
  in DEGRADED <= `max_degraded_ms`,
  RECOVERING episodes since the last ATTACHED <= `max_recovery_rounds`, and (server) no
  more than `reattach_rate_limit` REATTACHED within `reattach_rate_window_ms` (each one
  needs a verified request, and those are rate limited). Switches of the active transport
  are not visible in a trace, so the switch cooldown and per-minute bound are not checked.

The first violation stops the check: later lines of a broken stream would only repeat it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from jumpvpn_core.effects import AUDIT_RECORD_VERSION, StateChanged
from jumpvpn_core.forms import FormError, parse_json, policy_from_data, record_from_data
from jumpvpn_core.phases import TRANSITION_TABLE, Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.reasons import ReasonClass, ReasonCode, reason_class

__all__ = ["TraceReport", "TraceViolation", "verify_lines", "verify_trace_file"]

_RC = ReasonCode
# Rejections decided before the clock is looked at carry the event's own (possibly late)
# time: a late event is refused with TIME_WENT_BACKWARDS, anything after the end with
# SESSION_TERMINATED whatever its time.
_OWN_TIME = frozenset({_RC.TIME_WENT_BACKWARDS, _RC.SESSION_TERMINATED})


@attrs.frozen
class TraceViolation:
    """The first line that breaks the trace contract, and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@attrs.frozen
class TraceReport:
    """Outcome of a check: counts, and the first violation if any."""

    records: int
    streams: int
    violation: TraceViolation | None

    @property
    def ok(self) -> bool:
        """True when the trace broke no rule."""
        return self.violation is None


@attrs.define
class _Stream:
    policy: Policy
    phase: Phase
    version: int
    last_ts: int
    phase_since: int | None
    rounds: int | None
    reattach_times: list[int]


class _RecordError(Exception):
    pass


# What may follow TERMINATED in a stream: the core's own refusal, or a gateway refusing at
# admission (it may have deleted the ended session's record, or refuse before looking).
_AFTER_TERMINATED = frozenset({
    ReasonCode.SESSION_TERMINATED, ReasonCode.UNKNOWN_SESSION, ReasonCode.FLOOD_LIMITED,
    ReasonCode.SOURCE_FLOOD_LIMITED, ReasonCode.NOT_OWNER, ReasonCode.STORE_UNAVAILABLE,
    ReasonCode.SESSION_TABLE_FULL, ReasonCode.COMMIT_CONFLICT,
})

#: Record types that gateways and telemetry sinks write beside the core's two
#: (specs/effects.md, "Other record types").
OPERATIONAL_RECORD_TYPES = frozenset(
    {"reject_summary", "session_resumed", "store_record_invalid", "telemetry_dropped"}
)


def _parse(record: dict[str, Any]) -> tuple[str, Any]:
    """Validate the record's shape (`jumpvpn_core.forms`) and its reason; return (type,
    parsed fields)."""
    try:
        effect = record_from_data(record)
    except FormError as exc:
        raise _RecordError(str(exc)) from None
    session = effect.session_id.hex()
    role, reason, version, ts = effect.role, effect.reason, effect.state_version, effect.ts_ms
    if isinstance(effect, StateChanged):
        src, dst = effect.from_phase, effect.to_phase
        if reason_class(reason) is not ReasonClass.TRANSITION:
            raise _RecordError(f"{reason.value} is a rejection reason, not a transition")
        if src is Phase.TERMINATED:
            raise _RecordError(f"transition out of TERMINATED ({reason.value} -> {dst.value}): "
                       "nothing may happen after TERMINATED")
        if TRANSITION_TABLE.get((src, reason)) is not dst:
            raise _RecordError(f"{src.value} -{reason.value}-> {dst.value} is not in the "
                       "transition table")
        return "state_change", (session, role, reason, version, ts, src, dst)
    if reason_class(reason) is ReasonClass.TRANSITION:
        raise _RecordError(f"{reason.value} is a transition reason, not a rejection")
    if effect.reason_class is not reason_class(reason):
        raise _RecordError(f"class {effect.reason_class.value!r} does not match {reason.value} "
                   f"({reason_class(reason).value})")
    return "reject", (session, role, reason, version, ts, effect.phase, effect.phase)


class _Checker:
    def __init__(self, policy: Policy, allow_partial: bool) -> None:
        self.policy = policy
        self.allow_partial = allow_partial
        self.streams: dict[tuple[str | None, str | None, str, Role], _Stream] = {}
        # Policies stated by `policy` records, by script (None: records without a script).
        self.policies: dict[str | None, Policy] = {}

    def check(self, record: dict[str, Any]) -> None:
        if record.get("type") == "policy":
            self._policy(record)
            return
        if record.get("type") in OPERATIONAL_RECORD_TYPES:
            # Gateway and telemetry records (specs/effects.md): not part of any session's
            # stream; only their version is checked here.
            if record.get("v") != AUDIT_RECORD_VERSION:
                raise _RecordError(f"unsupported record version {record.get('v')!r}")
            return
        kind, (session, role, reason, version, ts, src, dst) = _parse(record)
        script = record.get("script")
        store = record.get("store")
        key = (script if isinstance(script, str) else None,
               store if isinstance(store, str) else None, session, role)
        stream = self.streams.get(key)
        where = f"session {session} ({role.value})"
        if key[1] is not None:
            where = f"store {key[1]}: {where}"
        if key[0] is not None:
            where = f"{key[0]}: {where}"
        if stream is None:
            stream = self._open(kind, where, version, ts, src, key[0])
            self.streams[key] = stream
        if reason not in _OWN_TIME:
            if ts < stream.last_ts:
                raise _RecordError(f"{where}: timestamp went backwards ({ts} < {stream.last_ts})")
            stream.last_ts = ts
        if stream.phase is Phase.TERMINATED:
            if kind == "state_change":
                raise _RecordError(f"{where}: transition after TERMINATED")
            if reason not in _AFTER_TERMINATED:
                raise _RecordError(f"{where}: {reason.value} rejection after TERMINATED "
                           "(only SESSION_TERMINATED or a gateway admission refusal may "
                           "follow)")
        if src is not stream.phase:
            what = "transition starts at" if kind == "state_change" else "reject in phase"
            raise _RecordError(f"{where}: {what} {src.value} but the session is in "
                       f"{stream.phase.value} (records dropped or reordered?)")
        self._check_bounds(stream, where, reason, ts)
        if kind == "reject":
            if version != stream.version:
                raise _RecordError(f"{where}: reject carries state_version {version}, expected "
                           f"{stream.version} (a rejection never changes the version)")
            return
        if version != stream.version + 1:
            raise _RecordError(f"{where}: state_version {version}, expected {stream.version + 1} "
                       "(+1 per transition)")
        self._transition(stream, where, role, reason, ts, dst)
        stream.version = version

    def _open(self, kind: str, where: str, version: int, ts: int, src: Phase,
              script: str | None) -> _Stream:
        start = version - 1 if kind == "state_change" else version
        if not self.allow_partial and (src is not Phase.BIRTH or start != 0):
            raise _RecordError(f"{where}: stream does not start at BIRTH (first record in "
                               f"{src.value} "
                       f"at version {version}): session id changed or records dropped")
        return _Stream(self.policies.get(script, self.policy), src, start, ts,
                       ts if src is Phase.BIRTH else None,
                       0 if src is Phase.BIRTH else None, [])

    def _policy(self, record: dict[str, Any]) -> None:
        if record.get("v") != AUDIT_RECORD_VERSION:
            raise _RecordError(f"unsupported record version {record.get('v')!r}")
        script = record.get("script")
        try:
            policy = policy_from_data(record.get("policy"))
        except FormError as exc:
            raise _RecordError(f"bad policy record ({exc})") from None
        self.policies[script if isinstance(script, str) else None] = policy

    def _check_bounds(self, stream: _Stream, where: str, reason: ReasonCode, ts: int) -> None:
        if stream.phase_since is None or reason is _RC.TIME_WENT_BACKWARDS:
            return
        spent = ts - stream.phase_since
        policy = stream.policy
        if stream.phase is Phase.RECOVERING and spent > policy.max_recovery_window_ms:
            raise _RecordError(f"{where}: RECOVERING for {spent} ms, more than "
                       f"max_recovery_window_ms={policy.max_recovery_window_ms}")
        if stream.phase is Phase.DEGRADED and spent > policy.max_degraded_ms:
            raise _RecordError(f"{where}: DEGRADED for {spent} ms, more than "
                       f"max_degraded_ms={policy.max_degraded_ms}")

    def _transition(self, stream: _Stream, where: str, role: Role, reason: ReasonCode,
                    ts: int, dst: Phase) -> None:
        policy = stream.policy
        if dst is Phase.ATTACHED:
            stream.rounds = 0
        elif dst is Phase.RECOVERING and stream.rounds is not None:
            stream.rounds += 1
            if stream.rounds > policy.max_recovery_rounds:
                raise _RecordError(f"{where}: {stream.rounds} RECOVERING episodes since ATTACHED, "
                           f"more than max_recovery_rounds={policy.max_recovery_rounds}")
        if role is Role.SERVER and reason is _RC.REATTACHED:
            times = stream.reattach_times
            limit = policy.reattach_rate_limit
            if len(times) >= limit and ts - times[-limit] < policy.reattach_rate_window_ms:
                raise _RecordError(f"{where}: more than reattach_rate_limit={limit} "
                                   "REATTACHED within "
                           f"reattach_rate_window_ms={policy.reattach_rate_window_ms}")
            stream.reattach_times = [*times, ts][-limit:]
        stream.phase = dst
        stream.phase_since = ts


def verify_lines(lines: Iterable[str | bytes], policy: Policy | None = None, *,
                 allow_partial: bool = False) -> TraceReport:
    """Check trace lines (text, or UTF-8 bytes; blank lines are skipped).

    Stops at the first violation.
    """
    checker = _Checker(Policy() if policy is None else policy, allow_partial)
    count = 0
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        count += 1
        try:
            line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            return TraceReport(count, len(checker.streams),
                               TraceViolation(number, "malformed line: not UTF-8"))
        try:
            record = parse_json(line)
        except FormError as exc:
            return TraceReport(count, len(checker.streams),
                               TraceViolation(number, f"malformed JSON: {exc}"))
        try:
            if not isinstance(record, dict):
                raise _RecordError("record is not a JSON object")
            checker.check(record)
        except _RecordError as bad:
            return TraceReport(count, len(checker.streams), TraceViolation(number, str(bad)))
    return TraceReport(count, len(checker.streams), None)


def verify_trace_file(path: Path, policy: Policy | None = None, *,
                      allow_partial: bool = False) -> TraceReport:
    """Check the JSONL trace at `path` (raises `OSError` if it cannot be read).

    A line that is not UTF-8 is reported as malformed, like a line that is not JSON.
    """
    with path.open("rb") as handle:
        return verify_lines(handle, policy, allow_partial=allow_partial)
