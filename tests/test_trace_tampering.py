"""Tamper-evident traces (specs/trace-format.md): genuine traces verify, tampering is named.

Genuine traces: the one `jumpvpn scenarios --trace --trace-key` writes (policy, gateway
and telemetry records, 50+ streams), the demo's, and, as the base of the tamperings (cheap
enough to run for every mutant of the verifier), three seeded runs of the reference core
in two scripts with a policy and a telemetry record, written by `TraceWriter`. Each
tampering is tried twice: naively (the edited lines only), and by an attacker who
recomputes the whole hash chain but does not hold the key (the MACs then fail).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jumpvpn_core.audit.runs import random_trace
from jumpvpn_core.audit.trace import describe, verify_lines, verify_trace_file
from jumpvpn_core.audit.trace_writer import (
    TraceKeyError,
    TraceWriter,
    line_hash,
    load_trace_key,
    record_mac,
)
from jumpvpn_core.effects import AUDIT_RECORD_VERSION, Rejected, StateChanged
from jumpvpn_core.events import (
    Attach,
    CandidateLost,
    DeliveryTimeout,
    InboundTraffic,
    PacketLoss,
    ReattachRequest,
    Tick,
)
from jumpvpn_core.machine import next_deadline, step
from jumpvpn_core.phases import TRANSITION_TABLE, Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.state import new_session
from jumpvpn_core.transport import TransportDescriptor

KEY = bytes(range(32))
Record = dict[str, Any]
_FRAMING = {"trace_begin", "checkpoint", "stream_end", "trace_end"}


@pytest.fixture(scope="module")
def genuine() -> list[str]:
    runs = [
        [{**r, "script": "a"} for r in random_trace(random.Random(1), Role.SERVER, 120)],
        [{**r, "script": "a"} for r in random_trace(random.Random(17), Role.CLIENT, 120)],
        [{**r, "script": "b"} for r in random_trace(random.Random(29), Role.CLIENT, 120)],
    ]
    ended = next(i for i, r in enumerate(runs[1]) if r.get("to") == "TERMINATED")
    runs[1] = runs[1][:ended + 1]  # a session whose last record is its TERMINATED
    records: list[Record] = [{"v": AUDIT_RECORD_VERSION, "type": "policy", "script": "a",
                              "policy": Policy().to_data()}]
    for index in range(max(len(run) for run in runs)):
        records += [run[index] for run in runs if index < len(run)]
        if index == 40:
            records.append({"v": AUDIT_RECORD_VERSION, "type": "telemetry_dropped",
                            "dropped": 1, "dropped_total": 1})
    lines: list[str] = []
    with TraceWriter(lines.append, writer="test", key=KEY, checkpoint_every=16) as trace:
        trace.write_all(records)
    return [line.rstrip("\n") for line in lines]


def _dump(record: Record) -> str:
    return json.dumps(record, sort_keys=True)


def _parsed(lines: list[str]) -> list[Record]:
    return [json.loads(line) for line in lines]


def _violation(lines: list[str], key: bytes | None = KEY) -> tuple[int, str]:
    report = verify_lines(lines, key=key)
    assert report.violation is not None, "tampering went unnoticed"
    return report.violation.line, report.violation.message


def _index(lines: list[str], match: Callable[[Record], bool], start: int = 1) -> int:
    return next(i for i, record in enumerate(_parsed(lines)) if i >= start and match(record))


def _rechained(lines: list[str], tamper: Callable[[list[Record]], list[Record]]) -> list[str]:
    """What an attacker without the key can do: edit the bare records, frame them again
    and recompute the chain from the genuine header; the MACs are its best guesses."""
    bare = [{k: v for k, v in r.items() if k not in ("seq", "prev", "sseq")}
            for r in _parsed(lines) if r["type"] not in _FRAMING]
    out: list[str] = []
    every = json.loads(lines[0])["checkpoint_every"]
    with TraceWriter(out.append, writer="forger", key=b"not the writer's key!",
                     checkpoint_every=every) as forged:
        forged.write_all(tamper(bare))
    framed = [lines[0], *(line.rstrip("\n") for line in out[1:])]
    untouched = True  # the attacker keeps the genuine lines (and MACs) before the change
    for number in range(1, len(framed)):
        record = json.loads(framed[number])
        record["prev"] = line_hash(framed[number - 1].encode("utf-8"))
        if untouched and number < len(lines):
            genuine = json.loads(lines[number])
            if {k: v for k, v in genuine.items() if k != "mac"} == \
                    {k: v for k, v in record.items() if k != "mac"}:
                framed[number] = lines[number]
                continue
        untouched = False
        framed[number] = _dump(record)
    return framed


def _both_ways(lines: list[str], index: int, naive: list[str],
               tamper: Callable[[list[Record]], list[Record]]) -> tuple[int, str]:
    """Check the rechained form is caught by a MAC at or after the tampered line; return
    the naive form's violation."""
    line, message = _violation(_rechained(lines, tamper))
    assert "MAC does not match" in message
    assert line >= index + 1
    return _violation(naive)


# --- genuine traces --------------------------------------------------------------------------


def test_trace_keys_load_from_hex_or_files_and_are_never_echoed(tmp_path: Path) -> None:
    assert load_trace_key(KEY.hex()) == KEY
    hex_file = tmp_path / "hex"
    hex_file.write_text(KEY.hex() + "\n", encoding="ascii")
    assert load_trace_key(str(hex_file)) == KEY
    short = tmp_path / "short"
    short.write_bytes(b"0123456789")
    with pytest.raises(TraceKeyError) as info:
        load_trace_key(str(short))
    assert "0123456789" not in str(info.value)
    with pytest.raises(TraceKeyError):
        TraceWriter(lambda _line: None, writer="w", key=b"short")


# --- the tamperings -------------------------------------------------------------------------


@pytest.mark.requirement("RM-3.2", "RM-6.2")
def test_dropping_a_reject_is_caught(genuine: list[str]) -> None:
    index = _index(genuine, lambda r: r["type"] == "reject")
    naive = genuine[:index] + genuine[index + 1:]
    sid = json.loads(genuine[index])["session_id"]
    nth = sum(1 for r in _parsed(genuine[:index]) if r["type"] == "reject")
    line, message = _both_ways(genuine, index, naive, lambda rs: _without_nth_reject(rs, nth))
    assert line == index + 1
    assert f"expected {index}: a line was dropped" in message
    assert sid


def _without_nth_reject(records: list[Record], nth: int) -> list[Record]:
    rejects = [i for i, r in enumerate(records) if r["type"] == "reject"]
    return records[:rejects[nth]] + records[rejects[nth] + 1:]


def test_duplicating_a_reject_is_caught(genuine: list[str]) -> None:
    index = _index(genuine, lambda r: r["type"] == "reject")
    naive = genuine[:index + 1] + genuine[index:]

    def dup(records: list[Record]) -> list[Record]:
        first = next(i for i, r in enumerate(records) if r["type"] == "reject")
        return records[:first + 1] + records[first:]

    line, message = _both_ways(genuine, index, naive, dup)
    assert line == index + 2
    assert "duplicated" in message


def test_dropping_a_streams_final_terminated_is_caught(genuine: list[str]) -> None:
    records = _parsed(genuine)

    def stream(r: Record) -> tuple[Any, ...]:
        return (r.get("script"), r.get("session_id"), r.get("role"))

    index = next(i for i, r in enumerate(records) if r.get("to") == "TERMINATED" and not any(
        stream(later) == stream(r) for later in records[i + 1:]
        if later["type"] in ("state_change", "reject")))
    naive = genuine[:index] + genuine[index + 1:]
    target = json.loads(genuine[index])

    def drop(records: list[Record]) -> list[Record]:
        return [r for r in records if {k: v for k, v in r.items() if k != "sseq"}
                != {k: v for k, v in target.items() if k not in ("seq", "prev", "sseq")}]

    line, message = _both_ways(genuine, index, naive, drop)
    assert (line, "a line was dropped" in message) == (index + 1, True)
    # Renumbered so the chain holds, the stream's end still says TERMINATED.
    renumbered = _rehash_only(naive, renumber=True, drop_sseq_of=target)
    line, message = _violation(renumbered, key=None)
    assert "checkpoint counts" in message or "stream_end" in message


def test_a_stream_end_that_disagrees_with_its_stream_is_caught(genuine: list[str]) -> None:
    index = _index(genuine, lambda r: r["type"] == "stream_end" and r["phase"] == "TERMINATED")
    record = json.loads(genuine[index])
    for change in ({"phase": "RECOVERING"}, {"records": record["records"] - 1},
                   {"state_version": record["state_version"] + 1}):
        edited = _rehash([*genuine[:index], _dump({**record, **change}), *genuine[index + 1:]])
        line, message = _violation(edited, key=None)
        assert line == index + 1
        assert "its last records were dropped or changed" in message
    twice = _renumber([*genuine[:index + 1], genuine[index], *genuine[index + 1:]])
    assert "ended twice" in _violation(twice, key=None)[1]
    # A record of a stream after its end (the writer never writes one).
    lines = _framed(_records_of([Attach(500, _PATH), CandidateLost(1000, _OTHER)]))
    end = _index(lines, lambda r: r["type"] == "stream_end")
    extra = {**json.loads(lines[end - 1]), "sseq": 2}
    late = _renumber([*lines[:end + 1], _dump(extra), *lines[end + 1:]])
    assert _violation(late) == (end + 2, f"record of session {'00' * 16} (client) after its "
                                         "stream_end")


def _rehash_only(lines: list[str], *, renumber: bool, drop_sseq_of: Record) -> list[str]:
    """Recompute `seq`, `prev` and the dropped record's stream's `sseq`, keeping every
    framing line as it was (an attacker who forgets the stream's end)."""
    out = [lines[0]]
    stream = (drop_sseq_of.get("script"), drop_sseq_of["session_id"], drop_sseq_of["role"])
    for number in range(1, len(lines)):
        record = json.loads(lines[number])
        if renumber:
            record["seq"] = number
        key = (record.get("script"), record.get("session_id"), record.get("role"))
        if key == stream and "sseq" in record and record["sseq"] > drop_sseq_of["sseq"]:
            record["sseq"] -= 1
        record["prev"] = line_hash(out[-1].encode("utf-8"))
        out.append(_dump(record))
    return out


@pytest.mark.requirement("RM-6.2")
def test_cutting_the_tail_is_caught(genuine: list[str]) -> None:
    for keep in (len(genuine) - 1, len(genuine) // 2, 1):
        line, message = _violation(genuine[:keep])
        assert line == keep + 1
        assert "tail was cut" in message
    # A forged end on a cut trace does not carry the writer's MAC.
    cut = _rechained(genuine, lambda rs: rs[: len(rs) // 2])
    assert "MAC does not match" in _violation(cut)[1]


def test_swapping_a_reason_for_one_with_the_same_phases_is_caught(genuine: list[str]) -> None:
    twins = {
        (src.value, reason.value): other.value
        for (src, reason), dst in TRANSITION_TABLE.items()
        for (src2, other), dst2 in TRANSITION_TABLE.items()
        if (src, dst) == (src2, dst2) and reason != other
    }
    index = _index(genuine, lambda r: r["type"] == "state_change"
                   and (r["from"], r["reason"]) in twins)
    record = json.loads(genuine[index])
    swapped_to = twins[record["from"], record["reason"]]
    naive = [*genuine[:index], _dump({**record, "reason": swapped_to}), *genuine[index + 1:]]

    def swap(records: list[Record]) -> list[Record]:
        i = next(i for i, r in enumerate(records) if r["type"] == "state_change"
                 and r["reason"] == record["reason"])
        return [*records[:i], {**records[i], "reason": swapped_to}, *records[i + 1:]]

    line, message = _both_ways(genuine, index, naive, swap)
    assert line == index + 2
    assert f"prev does not match the hash of line {index + 1}" in message


def _whole_stream(records: list[Record], template: Record, new_sid: str) -> list[Record]:
    return [{**r, "session_id": new_sid}
            if (r.get("script"), r.get("session_id"), r.get("role"))
            == (template.get("script"), template["session_id"], template["role"]) else r
            for r in records]


def test_renaming_a_whole_stream_is_caught(genuine: list[str]) -> None:
    first = json.loads(genuine[_index(genuine, lambda r: r["type"] == "state_change")])
    index = _index(genuine, lambda r: (r.get("script"), r.get("session_id"), r.get("role"))
                   == (first.get("script"), first["session_id"], first["role"]))
    naive = [_dump(r) for r in _whole_stream(_parsed(genuine), first, "ab" * 16)]
    naive[0] = genuine[0]
    line, message = _both_ways(genuine, index, naive,
                               lambda rs: _whole_stream(rs, first, "ab" * 16))
    assert line == index + 2
    assert "prev does not match" in message


def test_injecting_a_new_stream_at_birth_is_caught(genuine: list[str]) -> None:
    index = _index(genuine, lambda r: r["type"] == "state_change")
    born = {k: v for k, v in json.loads(genuine[index]).items() if k not in ("prev", "seq")}
    born.update({"session_id": "cd" * 16, "from": "BIRTH", "to": "ATTACHED",
                 "reason": "ATTACH_COMPLETED", "state_version": 1, "sseq": 0})
    naive = [*genuine[:index + 1], _dump({**born, "seq": index + 1,
                                           "prev": line_hash(genuine[index].encode())}),
             *genuine[index + 1:]]
    line, message = _both_ways(genuine, index, naive,
                               lambda rs: [*rs[:3], {k: v for k, v in born.items()
                                                     if k != "sseq"}, *rs[3:]])
    assert line == index + 3
    assert "a line was dropped, inserted or duplicated" in message


def test_loosening_the_policy_record_is_caught(genuine: list[str]) -> None:
    index = _index(genuine, lambda r: r["type"] == "policy")
    record = json.loads(genuine[index])
    loose = {**record, "policy": {**record["policy"], "max_recovery_window_ms": 3_600_000}}
    naive = [*genuine[:index], _dump(loose), *genuine[index + 1:]]

    def loosen(records: list[Record]) -> list[Record]:
        return [{**r, "policy": loose["policy"]} if r is first_policy(records) else r
                for r in records]

    line, message = _both_ways(genuine, index, naive, loosen)
    assert (line, f"hash of line {index + 1}" in message) == (index + 2, True)


def first_policy(records: list[Record]) -> Record:
    return next(r for r in records if r["type"] == "policy")


def test_moving_a_timestamp_forward_is_caught(genuine: list[str]) -> None:
    index = _index(genuine, lambda r: r["type"] == "state_change", start=len(genuine) // 3)
    record = json.loads(genuine[index])
    naive = [*genuine[:index], _dump({**record, "ts_ms": record["ts_ms"] + 1}),
             *genuine[index + 1:]]

    def later(records: list[Record]) -> list[Record]:
        target = {k: v for k, v in record.items() if k not in ("seq", "prev", "sseq")}
        return [{**r, "ts_ms": r["ts_ms"] + 1} if r == target else r for r in records]

    line, message = _both_ways(genuine, index, naive, later)
    assert (line, "prev does not match" in message) == (index + 2, True)


@pytest.mark.parametrize("version", [float(AUDIT_RECORD_VERSION), True, "2", 1, None])
def test_a_version_that_is_not_exactly_the_integer_is_caught(genuine: list[str],
                                                              version: object) -> None:
    index = _index(genuine, lambda r: r["type"] == "reject")
    record = json.loads(genuine[index])
    naive = [*genuine[:index], _dump({**record, "v": version}), *genuine[index + 1:]]
    line, message = _violation(naive)
    assert (line, message.startswith("unsupported record version")) == (index + 1, True)
    bare = [_dump({**record, "v": version})]
    report = verify_lines(bare, chained=False)
    assert report.violation is not None
    assert "unsupported record version" in report.violation.message


def test_an_empty_or_blank_trace_is_caught(genuine: list[str]) -> None:
    assert _violation([]) == (1, "empty trace: no record at all")
    assert verify_lines([], chained=False).violation is not None
    assert _violation(genuine[:1])[1].startswith("the trace ends without trace_end")
    blank = [*genuine[:3], "", *genuine[3:]]
    assert _violation(blank) == (4, "blank line (a trace writer never writes one)")
    assert _violation([*genuine, genuine[-1]])[1] == "line after trace_end"


def test_stripping_the_macs_is_caught_when_a_key_is_given(genuine: list[str]) -> None:
    stripped = []
    for text in genuine:
        record = json.loads(text)
        if record["type"] == "trace_begin":
            record["key_id"] = None
        if "mac" in record:
            record["mac"] = None
        stripped.append(_dump(record))
    stripped = _rehash(stripped)
    assert verify_lines(stripped).ok, "without a key the chain alone holds"
    line, message = _violation(stripped)
    assert (line, "written without a key" in message) == (1, True)


def test_without_the_key_a_recomputed_chain_is_not_authenticated(genuine: list[str]) -> None:
    """The limit of an unkeyed check, stated: the chain holds, the report says it is not
    authenticated, and only `--key` catches the rewrite."""
    forged = _rechained(genuine, lambda rs: rs[:-1])
    report = verify_lines(forged)
    assert (report.ok, report.authenticated) == (True, False)
    assert not verify_lines(forged, key=KEY).ok


def test_a_checkpoint_with_a_wrong_count_or_missing_is_caught(genuine: list[str]) -> None:
    index = _index(genuine, lambda r: r["type"] == "checkpoint")
    record = json.loads(genuine[index])
    wrong = {**record, "records": record["records"] + 1}
    wrong["mac"] = record_mac(KEY, wrong)
    line, message = _violation(_rehash([*genuine[:index], _dump(wrong), *genuine[index + 1:]]))
    assert (line, "checkpoint counts" in message) == (index + 1, True)
    without = _renumber([*genuine[:index], *genuine[index + 1:]])
    line, message = _violation(without, key=None)
    assert "without a checkpoint" in message


def _rehash(lines: list[str]) -> list[str]:
    out = [lines[0]]
    for line in lines[1:]:
        record = json.loads(line)
        record["prev"] = line_hash(out[-1].encode("utf-8"))
        out.append(_dump(record))
    return out


def _renumber(lines: list[str]) -> list[str]:
    out = [lines[0]]
    for number, line in enumerate(lines[1:], start=1):
        record = json.loads(line)
        record["seq"] = number
        record["prev"] = line_hash(out[-1].encode("utf-8"))
        out.append(_dump(record))
    return out


# --- the time rule and the reject's nonce ---------------------------------------------------

_PATH = TransportDescriptor.parse("udp:192.0.2.1:4000")
_OTHER = TransportDescriptor.parse("udp:192.0.2.9:4000")


def _records_of(events: list[Any], role: Role = Role.CLIENT) -> list[Record]:
    state = new_session(role, bytes(16), b"s" * 32, 0)
    records: list[Record] = []
    for event in events:
        state, effects = step(state, event)
        records += [e.to_record() for e in effects if isinstance(e, StateChanged | Rejected)]
    return records


def _framed(records: list[Record]) -> list[str]:
    out: list[str] = []
    with TraceWriter(out.append, writer="test", key=KEY) as trace:
        trace.write_all(records)
    return [line.rstrip("\n") for line in out]


@pytest.mark.requirement("RM-3.3")
def test_a_reject_does_not_move_the_clock_the_verifier_agrees() -> None:
    # The core refuses only events older than its last change; a reject is no change.
    records = _records_of([Attach(500, _PATH), CandidateLost(1000, _OTHER),
                           DeliveryTimeout(500)])
    assert [(r["type"], r["ts_ms"]) for r in records] == [
        ("state_change", 500), ("reject", 1000), ("state_change", 500)]
    for report in (verify_lines(_framed(records), key=KEY),
                   verify_lines([_dump(r) for r in records], chained=False)):
        assert report.ok, report.violation


def test_a_transition_or_a_late_reject_older_than_the_last_transition_is_caught() -> None:
    records = _records_of([Attach(500, _PATH), DeliveryTimeout(600)])
    older = [records[0], {**records[1], "ts_ms": 499}]
    report = verify_lines([_dump(r) for r in older], chained=False)
    assert report.violation is not None
    assert "timestamp went backwards (499 < 500" in report.violation.message
    late = _records_of([Attach(500, _PATH), CandidateLost(1000, _OTHER)])
    late[1]["ts_ms"] = 400  # UNKNOWN_TRANSPORT is decided after the core's time check
    report = verify_lines([_dump(r) for r in late], chained=False)
    assert report.violation is not None
    assert report.violation.line == 2
    exempt = _records_of([Attach(500, _PATH), Tick(400)])
    assert exempt[1]["reason"] == "TIME_WENT_BACKWARDS"
    assert verify_lines([_dump(r) for r in exempt], chained=False).ok


@pytest.mark.requirement("RM-3.2")
def test_a_rejected_request_carries_its_nonce_and_version() -> None:
    request = ReattachRequest(10, _PATH, bytes(16), 7, 3, 10, _PATH, b"p" * 32)
    records = _records_of([request], Role.SERVER)
    assert (records[0]["reason"], records[0]["nonce"], records[0]["request_version"]) == (
        "EVENT_NOT_APPLICABLE", 7, 3)
    other = _records_of([Tick(10), DeliveryTimeout(20)])
    assert other
    assert all("nonce" not in r and "request_version" not in r for r in other)
    report = verify_lines([_dump({**records[0], "nonce": -1})], chained=False)
    assert report.violation is not None
    assert "'nonce'" in report.violation.message



# --- messages name the line and the field, never a value (a record may carry secrets) --------

_MARKER = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e7"


def _is(kind: str) -> Callable[[Record], bool]:
    return lambda r: r.get("type") == kind


def _session_record(r: Record) -> bool:
    return r.get("type") in ("state_change", "reject")


def _later_record(r: Record) -> bool:
    """A session record after its stream's first: moved to another stream, it starts
    that stream somewhere other than BIRTH."""
    return _session_record(r) and r.get("from", r.get("phase")) != "BIRTH"


@pytest.mark.parametrize(("match", "field", "value", "named"), [
    (_is("trace_begin"), "trace_format", _MARKER, "'trace_format'"),
    (_is("trace_begin"), "key_id", _MARKER, "'key_id'"),
    (_is("trace_begin"), "checkpoint_every", _MARKER, "'checkpoint_every'"),
    (_session_record, "seq", _MARKER, "'seq'"),
    (_session_record, "sseq", _MARKER, "'sseq'"),
    (_session_record, "v", _MARKER, "'v'"),
    (_session_record, "session_id", _MARKER, "session_id"),
    (_later_record, "script", f"{_MARKER} x", "<a string of length 50>: session"),
    (_later_record, "store", _MARKER, "store <a string of length 48>: session"),
    (_is("policy"), "policy", {"loss_threshold": _MARKER}, "policy"),
    (_is("checkpoint"), "records", _MARKER, "'records' must be a non-negative integer, got "
                                            "a string of length 48"),
    (_is("stream_end"), "records", _MARKER, "'records'"),
    (_is("stream_end"), "session_id", _MARKER, "session <a string of length 48>"),
    (_is("stream_end"), "role", _MARKER, "(<a string of length 48>)"),
    (_is("trace_end"), "streams", _MARKER, "'streams'"),
])
def test_violations_name_the_line_and_field_never_the_value(
        genuine: list[str], match: Callable[[Record], bool], field: str, value: Any,
        named: str) -> None:
    start = 0 if field in ("trace_format", "key_id", "checkpoint_every") else 1
    index = _index(genuine, match, start)
    record = json.loads(genuine[index])
    record[field] = value
    tampered = [*genuine[:index], _dump(record), *genuine[index + 1:]]
    line, message = _violation(tampered)
    assert line == index + 1
    assert _MARKER not in message
    assert _MARKER[:16] not in message
    assert named in message


# --- exact messages: what an auditor reads is part of the verdict ----------------------------


def _edited(lines: list[str], match: Callable[[Record], bool], start: int,
            **changes: Any) -> tuple[int, list[str]]:
    index = _index(lines, match, start)
    record = json.loads(lines[index])
    for field, value in changes.items():
        if value is _DROP:
            record.pop(field, None)
        else:
            record[field] = value
    return index, [*lines[:index], _dump(record), *lines[index + 1:]]


_DROP = object()


@pytest.mark.parametrize(("match", "start", "changes", "expected"), [
    (_is("trace_begin"), 0, {"type": "policy"},
     "the first line is not trace_begin: not a framed trace (a bare record log is checked "
     "with --unchained)"),
    (_is("trace_begin"), 0, {"trace_format": 1},
     "unsupported trace format: field 'trace_format' is 1 (expected the integer 2)"),
    (_is("trace_begin"), 0, {"checkpoint_every": 0}, "'checkpoint_every' must be at least 1"),
    (_is("trace_begin"), 0, {"checkpoint_every": -1},
     "'checkpoint_every' must be a non-negative integer, got -1"),
    (_is("trace_begin"), 0, {"key_id": None},
     "the trace was written without a key (key_id null) but a key was given: its MACs were "
     "stripped or it is not authenticated"),
    (_is("trace_begin"), 0, {"key_id": "00"},
     "the trace was MACed with another key (field 'key_id' does not name the given key), or "
     "its key_id was changed"),
    (_session_record, 1, {"seq": 999},
     "field 'seq' is 999, expected {seq}: a line was dropped, inserted or duplicated before "
     "this one"),
    (_session_record, 1, {"prev": "00"},
     "prev does not match the hash of line {line_before}: that line was changed, or lines "
     "were moved"),
    (_session_record, 1, {"sseq": 999},
     "{script}: session {session} ({role}): field 'sseq' is 999, expected {sseq}: a record "
     "of this "
     "stream was dropped or duplicated"),
    (_session_record, 1, {"v": 1.0},
     "unsupported record version: field 'v' is a float (expected the integer {v})"),
    (_is("checkpoint"), 1, {"records": 0}, "checkpoint counts 0 records, the trace has {n}"),
    (_is("checkpoint"), 1, {"mac": 7}, "checkpoint carries no MAC but a key was given"),
    (_is("checkpoint"), 1, {"mac": "00"},
     "checkpoint MAC does not match: a line before it was changed (the chain was "
     "recomputed), or the key is wrong"),
    (_is("trace_end"), 1, {"mac": _DROP}, "trace_end carries no MAC but a key was given"),
])
def test_tampering_messages_are_exact(genuine: list[str], match: Callable[[Record], bool],
                                      start: int, changes: dict[str, Any],
                                      expected: str) -> None:
    index, tampered = _edited(genuine, match, start, **changes)
    original = json.loads(genuine[index])
    before = _parsed(genuine[:index])
    counted = sum(1 for r in before if _session_record(r))
    line, message = _violation(tampered)
    assert line == index + 1
    assert message == expected.format(
        seq=index, line_before=index, session=original.get("session_id"),
        role=original.get("role"), sseq=original.get("sseq"), n=counted,
        script=original.get("script"), v=AUDIT_RECORD_VERSION)


def test_unkeyed_mac_field_must_be_hex_or_null(genuine: list[str]) -> None:
    index, tampered = _edited(genuine, _is("checkpoint"), 1, mac=7)
    assert _violation(tampered, key=None) == (
        index + 1, "checkpoint 'mac' must be a hex string or null")
    # Without a key, a checkpoint's MAC is neither required nor checked.
    _, stripped = _edited(genuine, _is("checkpoint"), 1, mac=None)
    assert verify_lines(stripped).violation is not None  # the chain: prev of the next line
    assert verify_lines(_rehash(stripped), key=None).violation is None


def test_good_trace_descriptions_and_files(genuine: list[str], tmp_path: Path) -> None:
    keyed = verify_lines(genuine, key=KEY)
    records = sum(1 for r in _parsed(genuine) if r.get("type") not in _FRAMING)
    streams = keyed.streams
    assert describe(keyed) == (f"OK ({records} records, {streams} streams; chain intact, "
                               "MACs verified)")
    assert describe(verify_lines(genuine)) == (
        f"OK ({records} records, {streams} streams; chain intact, not authenticated "
        "(no --key))")
    bare = [line for line in genuine if json.loads(line).get("type") not in _FRAMING]
    assert describe(verify_lines(bare, chained=False)) == (
        f"OK ({records} records, {streams} streams; unchained: records checked, no tamper "
        "evidence)")
    bad = verify_lines(genuine[:-1])
    assert describe(bad) == str(bad.violation)
    assert describe(bad).startswith(f"line {len(genuine)}: the trace ends without trace_end")
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(genuine) + "\n", encoding="utf-8")
    from_file = verify_trace_file(path, key=KEY)
    assert (from_file.violation, from_file.records, from_file.authenticated) == (
        None, records, True)
    path.write_text("\n".join(bare) + "\n", encoding="utf-8")
    assert verify_trace_file(path, chained=False).violation is None
    assert verify_trace_file(path).violation is not None  # a bare log is not framed
    partial = [line for line in bare if "BIRTH" not in (json.loads(line).get("from"),
                                                         json.loads(line).get("phase"))]
    path.write_text("\n".join(partial) + "\n", encoding="utf-8")
    assert verify_trace_file(path, chained=False).violation is not None
    assert verify_trace_file(path, chained=False, allow_partial=True).violation is None


@pytest.mark.parametrize("field", ["records", "phase", "state_version"])
def test_a_stream_end_names_the_field_that_differs(genuine: list[str], field: str) -> None:
    index = _index(genuine, _is("stream_end"))
    record = json.loads(genuine[index])
    changed = {"records": record["records"] + 1, "phase": "DEGRADED",
               "state_version": record["state_version"] + 1}[field]
    _, tampered = _edited(genuine, _is("stream_end"), 1, **{field: changed})
    line, message = _violation(tampered)
    assert line == index + 1
    assert f"field(s) {field} differ from the stream, which has {record['records']} records " \
           f"ending in {record['phase']} v{record['state_version']}" in message


def test_trace_end_counts_and_open_streams_are_exact(genuine: list[str]) -> None:
    end = len(genuine) - 1
    record = json.loads(genuine[end])
    _, tampered = _edited(genuine, _is("trace_end"), 1, records=record["records"] + 1)
    assert _violation(tampered) == (
        end + 1, f"trace_end counts {record['records'] + 1} records in {record['streams']} "
                 f"streams, the trace has {record['records']} in {record['streams']}")
    _, tampered = _edited(genuine, _is("trace_end"), 1, streams=record["streams"] + 2)
    assert _violation(tampered)[1].endswith(
        f"the trace has {record['records']} in {record['streams']}")
    # trace_end before every stream was ended: the stream_end lines dropped, rechained.
    kept = [line for line in genuine if json.loads(line).get("type") != "stream_end"]
    line, message = _violation(_renumber(kept), key=None)
    assert (line, message) == (
        len(kept), f"trace_end before the stream_end of {record['streams']} stream(s)")


@pytest.mark.parametrize("every", [1, 2, 3, 5, 16])
def test_genuine_traces_verify_at_every_checkpoint_interval(every: int) -> None:
    records = [{**r, "script": "a"} for r in random_trace(random.Random(every), Role.CLIENT,
                                                           40)]
    lines: list[str] = []
    with TraceWriter(lines.append, writer="test", key=KEY, checkpoint_every=every) as trace:
        trace.write_all(records)
    framed = [line.rstrip("\n") for line in lines]
    report = verify_lines(framed, key=KEY)
    assert report.violation is None, report.violation
    assert report.records == len(records)


def test_a_policy_record_with_no_script_name_applies_to_unnamed_streams() -> None:
    # A policy record whose `script` is not a string states the policy of records without
    # a script; a policy that the genuine run breaks proves it was applied.
    # A run that enters RECOVERING more than once breaks the tight policy below.
    runs = (random_trace(random.Random(seed), Role.CLIENT, 200) for seed in range(3, 100))
    records = next(r for r in runs if sum(x.get("to") == "RECOVERING" for x in r) > 1)
    tight = Policy(max_recovery_rounds=1, max_recovery_window_ms=1, reattach_timeout_ms=1,
                   max_degraded_ms=1)
    stated = {"v": AUDIT_RECORD_VERSION, "type": "policy", "script": 7,
              "policy": tight.to_data()}
    plain = [json.dumps(r) for r in records]
    assert verify_lines(plain, chained=False).violation is None
    assert verify_lines([json.dumps(stated), *plain], chained=False).violation is not None


def test_a_transition_with_a_rejection_reason_is_named() -> None:
    records = _records_of([Attach(500, _PATH)])
    forged = {**records[0], "reason": "REPLAY_DETECTED"}
    report = verify_lines([json.dumps(forged)], chained=False)
    assert report.violation is not None
    assert report.violation.message == "REPLAY_DETECTED is a rejection reason, not a transition"


def test_a_stream_at_birth_must_start_at_version_0() -> None:
    records = _records_of([Attach(500, _PATH)])
    late = {**records[0], "state_version": 2}
    report = verify_lines([json.dumps(late)], chained=False)
    assert report.violation is not None
    assert "stream does not start at BIRTH" in report.violation.message
    assert verify_lines([json.dumps(late)], chained=False, allow_partial=True).violation \
        is None


def test_degraded_exactly_max_degraded_ms_is_allowed_one_more_is_not() -> None:
    policy = Policy(loss_threshold=1, max_recovery_window_ms=1_000, reattach_timeout_ms=500,
                    max_degraded_ms=2_000)
    state = new_session(Role.CLIENT, bytes(16), b"s" * 32, 0, policy)
    records: list[Record] = []
    for event in (Attach(0, _PATH), PacketLoss(100, 1), InboundTraffic(200, _PATH, 10)):
        state, effects = step(state, event)
        records += [e.to_record() for e in effects if isinstance(e, StateChanged | Rejected)]
    for _ in range(10):
        deadline = next_deadline(state)
        if deadline is None or state.phase is Phase.TERMINATED:
            break
        state, effects = step(state, Tick(deadline))
        records += [e.to_record() for e in effects if isinstance(e, StateChanged | Rejected)]
    phases = [r.get("to") for r in records if r["type"] == "state_change"]
    assert phases[-2:] == ["DEGRADED", "TERMINATED"], phases
    entered, ended = records[-2]["ts_ms"], records[-1]["ts_ms"]
    assert ended - entered == policy.max_degraded_ms
    bare = [json.dumps(r) for r in records]
    stated = json.dumps({"v": AUDIT_RECORD_VERSION, "type": "policy",
                         "policy": policy.to_data()})
    assert verify_lines([stated, *bare], chained=False).violation is None
    late = {**records[-1], "ts_ms": ended + 1}
    report = verify_lines([stated, *bare[:-1], json.dumps(late)], chained=False)
    assert report.violation is not None
    assert report.violation.message.endswith(
        f"DEGRADED for {policy.max_degraded_ms + 1} ms, more than max_degraded_ms="
        f"{policy.max_degraded_ms}")
