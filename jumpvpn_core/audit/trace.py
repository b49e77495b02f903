"""Check a JSONL audit trace: its frame (tamper evidence), then everything its records show.

A trace (`specs/trace-format.md`, format 2) is written by `audit.trace_writer.TraceWriter`:
a `trace_begin` line, then audit records (`StateChanged.to_record()`,
`Rejected.to_record()`, gateway, telemetry and `policy` records), each carrying its
position `seq` and `prev`, the SHA-256 of the line before it; session records also carry
`sseq`, their position in their stream. Periodic `checkpoint` lines and the final
`trace_end` carry an HMAC-SHA256 under the writer's key; one `stream_end` per stream
precedes `trace_end`. The frame check (`_Frame`) names the first line that breaks the
chain: a line changed (the next line's `prev` does not match), dropped or duplicated
(`seq`, `sseq`), the tail cut (no `trace_end`), a stream's end or the totals altered, and,
given the key, any rewrite that recomputed the chain (a MAC does not match). Without the
key the chain is checked but not authenticated, and the report says so. A bare record log
(format 1, another implementation's) is checked with `chained=False`: semantics only.

Records are grouped into *streams* by `(script, store, session_id, role)`, where `script`
and `store` are the record's keys of those names if it has them (the scenario runner tags
records with their script, whose sessions all reuse one test id, and a gateway's records
with the store holding the session's one chain of states);
within a stream the verifier checks:

* shape: `v` (exactly the integer `AUDIT_RECORD_VERSION`), `type`, field types, known
  phases, roles and reason codes, `class` matching the reason;
* transitions: `(from, reason) -> to` is a row of `TRANSITION_TABLE`, and each transition
  starts where the previous one ended;
* versions: +1 per transition, unchanged by rejects;
* a stream starts at BIRTH (version 0/1) unless `allow_partial`: a record whose session id
  was changed, or a dropped first record, shows up as a stream starting mid-session;
* nothing after TERMINATED except `SESSION_TERMINATED` rejections and a gateway's
  admission refusals (`UNKNOWN_SESSION`, flood limits, `NOT_OWNER`, store errors);
* time, as the core keeps it (`specs/trace-format.md`, "Time rule"): a transition is never
  older than the stream's previous transition, and a rejection decided after the core's
  time check is never older than it either. Rejections are not changes: they never move
  the clock, so a reject at 1000 may be followed by a transition at 500.
  `TIME_WENT_BACKWARDS`, `SESSION_TERMINATED` and a gateway's admission refusals carry
  the refused event's own time and are exempt;
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

import re
from collections.abc import Iterable
from hmac import compare_digest
from pathlib import Path
from typing import Any

import attrs

from jumpvpn_core.audit.trace_writer import (
    SESSION_RECORD_TYPES,
    TRACE_FORMAT_VERSION,
    key_id,
    line_hash,
    record_mac,
    stream_key,
)
from jumpvpn_core.effects import AUDIT_RECORD_VERSION, StateChanged
from jumpvpn_core.errors import describe as describe_value
from jumpvpn_core.forms import FormError, parse_json, policy_from_data, record_from_data
from jumpvpn_core.phases import TRANSITION_TABLE, Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.reasons import ReasonClass, ReasonCode, reason_class

__all__ = ["TraceReport", "TraceViolation", "describe", "verify_lines", "verify_trace_file"]

_RC = ReasonCode


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
    #: The trace was framed (format 2) and its hash chain checked.
    chained: bool = False
    #: Its checkpoints and end were MAC-checked under the given key.
    authenticated: bool = False

    @property
    def ok(self) -> bool:
        """True when the trace broke no rule."""
        return self.violation is None


@attrs.define
class _Stream:
    policy: Policy
    phase: Phase
    version: int
    clock: int
    phase_since: int
    rounds: int
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

# Rejections decided before the core looks at its clock carry the refused event's own
# (possibly late) time: a late event is refused with TIME_WENT_BACKWARDS, anything after
# the end with SESSION_TERMINATED, and a gateway refuses at admission before any step.
_OWN_TIME = _AFTER_TERMINATED | {ReasonCode.TIME_WENT_BACKWARDS}

#: Record types that gateways and telemetry sinks write beside the core's two
#: (specs/effects.md, "Other record types").
OPERATIONAL_RECORD_TYPES = frozenset(
    {"reject_summary", "session_resumed", "store_record_invalid", "telemetry_dropped"}
)


def _check_version(record: dict[str, Any]) -> None:
    # Exactly the integer: 1.0 or true compare equal to an int in Python, and are not it.
    version = record.get("v")
    if type(version) is not int or version != AUDIT_RECORD_VERSION:
        raise _RecordError(f"unsupported record version: field 'v' is "
                           f"{describe_value(version)} (expected the integer "
                           f"{AUDIT_RECORD_VERSION})")


def _parse(record: dict[str, Any]) -> tuple[str, Any]:
    """Validate the record's shape (`jumpvpn_core.forms`) and its reason; return (type,
    parsed fields)."""
    _check_version(record)
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
        raise _RecordError(f"class {effect.reason_class.value} does not match {reason.value} "
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
            _check_version(record)
            return
        kind, (session, role, reason, version, ts, src, dst) = _parse(record)
        script = record.get("script")
        store = record.get("store")
        key = (script if isinstance(script, str) else None,
               store if isinstance(store, str) else None, session, role)
        stream = self.streams.get(key)
        where = _stream_name(key)
        if stream is None:
            stream = self._open(kind, where, version, ts, src, key[0])
            self.streams[key] = stream
        if ts < stream.clock and (kind == "state_change" or reason not in _OWN_TIME):
            raise _RecordError(f"{where}: timestamp went backwards ({ts} < {stream.clock}, "
                               "the stream's last transition)")
        if kind == "state_change":
            stream.clock = ts
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
        # A stream first seen mid-way (partial mode) was in `src` at `ts` at the latest and
        # entered no RECOVERING seen so far: time in the phase and rounds are counted from
        # here, lower bounds of the true figures, so the bounds still hold on what is seen.
        return _Stream(self.policies.get(script, self.policy), src, start,
                       ts if kind == "state_change" else 0, ts, 0, [])

    def _policy(self, record: dict[str, Any]) -> None:
        _check_version(record)
        script = record.get("script")
        try:
            policy = policy_from_data(record.get("policy"))
        except FormError as exc:
            raise _RecordError(f"bad policy record ({exc})") from None
        self.policies[script if isinstance(script, str) else None] = policy

    def _check_bounds(self, stream: _Stream, where: str, reason: ReasonCode, ts: int) -> None:
        if reason is _RC.TIME_WENT_BACKWARDS:
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
        elif dst is Phase.RECOVERING:
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


_FRAMING = frozenset({"checkpoint", "stream_end", "trace_end"})
_SESSION_ID = re.compile(r"[0-9a-f]{32}")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_HEX = re.compile(r"[0-9a-fA-F]{16,}")


def _label(text: str) -> str:
    """A script or store name as messages show it: a file-name-like label as is, anything
    else (key-like hex included) only described."""
    if _LABEL.fullmatch(text) and not _HEX.fullmatch(text):
        return text
    return f"<{describe_value(text)}>"


def _stream_name(key: tuple[str | None, str | None, str, Any]) -> str:
    """`[script: ][store S: ]session ID (ROLE)`, without quoting anything a record could
    smuggle in: a session id is shown only in its 32-hex-digit form, a role only by name."""
    script, store, session, role = key
    shown_role = role.value if isinstance(role, Role) else role
    if shown_role not in {r.value for r in Role}:
        shown_role = f"<{describe_value(shown_role)}>"
    shown_session = (session if _SESSION_ID.fullmatch(session)
                     else f"<{describe_value(session)}>")
    where = f"session {shown_session} ({shown_role})"
    if store is not None:
        where = f"store {_label(store)}: {where}"
    if script is not None:
        where = f"{_label(script)}: {where}"
    return where


def _count(record: dict[str, Any], key: str) -> int:
    value = record.get(key)
    if type(value) is not int or value < 0:
        raise _RecordError(f"{key!r} must be a non-negative integer, "
                           f"got {describe_value(value)}")
    return value


@attrs.define
class _FramedStream:
    count: int = 0
    phase: Any = None
    version: Any = None
    ended: bool = False


class _Frame:
    """The tamper-evident frame of a format-2 trace (`specs/trace-format.md`)."""

    def __init__(self, key: bytes | None) -> None:
        self.key = key
        self.seq = 0
        self.prev = ""
        self.every = 0
        self.since = 0
        self.records = 0
        self.streams: dict[tuple[str | None, str | None, str, str], _FramedStream] = {}
        self.ended = False

    def begin(self, record: dict[str, Any]) -> None:
        if record.get("type") != "trace_begin":
            raise _RecordError("the first line is not trace_begin: not a framed trace "
                               "(a bare record log is checked with --unchained)")
        _check_version(record)
        fmt = record.get("trace_format")
        if type(fmt) is not int or fmt != TRACE_FORMAT_VERSION:
            raise _RecordError(f"unsupported trace format: field 'trace_format' is "
                               f"{describe_value(fmt)} (expected the integer "
                               f"{TRACE_FORMAT_VERSION})")
        self.every = _count(record, "checkpoint_every")
        if self.every < 1:
            raise _RecordError("'checkpoint_every' must be at least 1")
        stated = record.get("key_id")
        if self.key is not None:
            if stated is None:
                raise _RecordError("the trace was written without a key (key_id null) but "
                                   "a key was given: its MACs were stripped or it is "
                                   "not authenticated")
            if stated != key_id(self.key):
                raise _RecordError("the trace was MACed with another key (field 'key_id' "
                                   "does not name the given key), or its key_id was changed")

    def link(self, record: dict[str, Any], number: int) -> None:
        """The chain: `seq` is the line's position, `prev` the previous line's hash."""
        seq = record.get("seq")
        if type(seq) is not int or seq != self.seq:
            raise _RecordError(f"field 'seq' is {describe_value(seq)}, expected {self.seq}: "
                               "a line was dropped, "
                               "inserted or duplicated before this one")
        if record.get("prev") != self.prev:
            raise _RecordError(f"prev does not match the hash of line {number - 1}: that "
                               "line was changed, or lines were moved")
        if record.get("type") not in ("checkpoint", "trace_end"):
            self.since += 1
            if self.since > self.every:
                raise _RecordError(f"more than checkpoint_every={self.every} lines without "
                                   "a checkpoint")

    def mac(self, record: dict[str, Any], what: str) -> None:
        mac = record.get("mac")
        if self.key is None:
            if mac is not None and not isinstance(mac, str):
                raise _RecordError(f"{what} 'mac' must be a hex string or null")
            return
        if not isinstance(mac, str):
            raise _RecordError(f"{what} carries no MAC but a key was given")
        if not compare_digest(mac, record_mac(self.key, record)):
            raise _RecordError(f"{what} MAC does not match: a line before it was changed "
                               "(the chain was recomputed), or the key is wrong")

    def session_record(self, record: dict[str, Any]) -> None:
        key = stream_key(record)
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = _FramedStream()
        if stream.ended:
            raise _RecordError(f"record of {_stream_name(key)} after its stream_end")
        sseq = record.get("sseq")
        if type(sseq) is not int or sseq != stream.count:
            raise _RecordError(f"{_stream_name(key)}: field 'sseq' is {describe_value(sseq)}, "
                               "expected "
                               f"{stream.count}: a record of this stream was dropped or "
                               "duplicated")
        stream.count += 1
        stream.phase = record.get("to", record.get("phase"))
        stream.version = record.get("state_version")
        self.records += 1

    def framing(self, record: dict[str, Any]) -> None:
        kind = record.get("type")
        _check_version(record)
        if kind == "checkpoint":
            if _count(record, "records") != self.records:
                raise _RecordError(f"checkpoint counts {describe_value(record.get('records'))} "
                                   f"records, the trace has {self.records}")
            self.mac(record, "checkpoint")
            self.since = 0
            return
        if kind == "stream_end":
            key = stream_key(record)
            stream = self.streams.get(key)
            where = f"stream_end of {_stream_name(key)}"
            if stream is None or stream.ended:
                raise _RecordError(f"{where}: no such stream, or ended twice")
            if (_count(record, "records"), record.get("phase"),
                    record.get("state_version")) != (stream.count, stream.phase,
                                                     stream.version):
                stated = ("records", "phase", "state_version")
                differ = [name for name, have in zip(
                    stated, (stream.count, stream.phase, stream.version), strict=True)
                    if record.get(name) != have]
                raise _RecordError(
                    f"{where}: field(s) {', '.join(differ)} differ from the stream, which has "
                    f"{stream.count} records ending in {stream.phase} v{stream.version}: its "
                    "last records were dropped or changed")
            stream.ended = True
            return
        open_streams = sum(not s.ended for s in self.streams.values())
        if open_streams:
            raise _RecordError(f"trace_end before the stream_end of {open_streams} stream(s)")
        if (_count(record, "records"), _count(record, "streams")) != (self.records,
                                                                      len(self.streams)):
            raise _RecordError(f"trace_end counts {describe_value(record.get('records'))} "
                               f"records in {describe_value(record.get('streams'))} streams, "
                               f"the trace has {self.records} in {len(self.streams)}")
        self.mac(record, "trace_end")
        self.ended = True


def _decode(raw: str | bytes) -> dict[str, Any]:
    try:
        line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise _RecordError("malformed line: not UTF-8") from None
    try:
        record = parse_json(line)
    except FormError as exc:
        raise _RecordError(f"malformed JSON: {exc}") from None  # position only, no content
    except RecursionError:
        raise _RecordError("malformed JSON: nested too deeply") from None
    if not isinstance(record, dict):
        raise _RecordError("record is not a JSON object")
    return record


def verify_lines(lines: Iterable[str | bytes], policy: Policy | None = None, *,
                 allow_partial: bool = False, chained: bool = True,
                 key: bytes | None = None) -> TraceReport:
    """Check trace lines (text, or UTF-8 bytes; a trailing newline is ignored).

    `chained` (the default): a framed, hash-chained trace as `TraceWriter` writes it; a
    blank line, a missing `trace_end` or an empty trace is a violation; with `key`, every
    checkpoint and the end must carry a valid MAC under it. `chained=False`: a bare record
    log, semantics only (blank lines skipped; an empty log is still a violation). Stops at
    the first violation.
    """
    if key is not None and not chained:
        raise ValueError("a key authenticates a framed trace; it needs chained=True")
    checker = _Checker(Policy() if policy is None else policy, allow_partial)
    frame = _Frame(key) if chained else None
    count = 0
    number = 0

    def report(violation: TraceViolation | None) -> TraceReport:
        return TraceReport(count, len(checker.streams), violation, chained,
                           violation is None and key is not None)

    for number, raw in enumerate(lines, start=1):
        data = raw.encode("utf-8") if isinstance(raw, str) else raw
        data = data[:-1] if data.endswith(b"\n") else data
        try:
            if frame is None:
                if not data.strip():
                    continue
                count += 1
                checker.check(_decode(data))
                continue
            if frame.ended:
                raise _RecordError("line after trace_end")
            if not data.strip():
                raise _RecordError("blank line (a trace writer never writes one)")
            record = _decode(data)
            if number == 1:
                frame.begin(record)
            else:
                frame.link(record, number)
                if record.get("type") in _FRAMING:
                    frame.framing(record)
                else:
                    count += 1
                    checker.check(record)
                    if record.get("type") in SESSION_RECORD_TYPES:
                        frame.session_record(record)
            frame.prev = line_hash(data)
            frame.seq += 1
        except _RecordError as bad:
            return report(TraceViolation(number, str(bad)))
    if number == 0:
        return report(TraceViolation(1, "empty trace: no record at all"))
    if frame is not None and not frame.ended:
        return report(TraceViolation(number + 1, "the trace ends without trace_end: its "
                                     "tail was cut (or the writer never closed it)"))
    return report(None)


def describe(report: TraceReport) -> str:
    """One line saying what a check established (the CLI's output for a good trace)."""
    if report.violation is not None:
        return str(report.violation)
    if not report.chained:
        how = "unchained: records checked, no tamper evidence"
    elif report.authenticated:
        how = "chain intact, MACs verified"
    else:
        how = "chain intact, not authenticated (no --key)"
    return f"OK ({report.records} records, {report.streams} streams; {how})"


def verify_trace_file(path: Path, policy: Policy | None = None, *,
                      allow_partial: bool = False, chained: bool = True,
                      key: bytes | None = None) -> TraceReport:
    """Check the JSONL trace at `path` (raises `OSError` if it cannot be read); the options
    are those of `verify_lines`. A line that is not UTF-8 is reported as malformed."""
    with path.open("rb") as handle:
        return verify_lines(handle, policy, allow_partial=allow_partial, chained=chained,
                            key=key)
