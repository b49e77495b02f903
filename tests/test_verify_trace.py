"""`jumpvpn verify-trace`, record rules: reference traces pass, every broken rule is caught.

These tests check bare record logs (`chained=False`, trace format 1 as another
implementation writes it): what the records themselves show. The frame (hash chain, MACs,
ends) is tested in `test_trace_tampering.py`."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from jumpvpn_core.audit.runs import random_trace
from jumpvpn_core.audit.trace import TraceReport, verify_lines
from jumpvpn_core.cli import main
from jumpvpn_core.effects import AUDIT_RECORD_VERSION as V
from jumpvpn_core.phases import Role
from jumpvpn_core.policy import Policy

Records = list[dict[str, Any]]


def _check(lines: list[str], policy: Policy | None = None) -> TraceReport:
    return verify_lines(lines, policy, chained=False)


def _lines(records: Records) -> list[str]:
    return [json.dumps(r) for r in records]


def _trace(seed: int, role: Role = Role.SERVER, steps: int = 150) -> Records:
    return random_trace(random.Random(seed), role, steps)


def _first_violation(records: Records | list[str]) -> tuple[int, str]:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    report = verify_lines(lines, chained=False)
    assert report.violation is not None, "tampering went unnoticed"
    return report.violation.line, report.violation.message


def _transition_index(records: Records, minimum: int = 2) -> int:
    for index, record in enumerate(records):
        if record["type"] == "state_change" and record["state_version"] >= minimum:
            return index
    raise AssertionError("trace has no transition")


@pytest.mark.requirement("RM-10")
@pytest.mark.parametrize("seed", range(12))
def test_reference_traces_of_random_runs_pass(seed: int) -> None:
    role = Role.CLIENT if seed % 2 else Role.SERVER
    records = _trace(seed, role)
    assert records
    report = _check(_lines(records))
    assert report.ok, report.violation
    assert report.records == len(records)


def test_interleaved_sessions_with_extra_keys_pass() -> None:
    a = [{**r, "script": "a"} for r in _trace(100, Role.CLIENT)]
    b = [{**r, "script": "b"} for r in _trace(101, Role.SERVER)]
    merged = [r for pair in zip(a, b, strict=False) for r in pair]
    report = _check(_lines(merged))
    assert report.ok, report.violation
    assert report.streams == 2


def _seeded_with_transitions(minimum: int = 4) -> Records:
    for seed in range(200):
        records = _trace(seed)
        if sum(r["type"] == "state_change" for r in records) >= minimum:
            return records
    raise AssertionError("no run with enough transitions")


@pytest.mark.requirement("RM-6.2")
def test_dropped_record_is_caught() -> None:
    records = _seeded_with_transitions()
    index = _transition_index(records)
    line, message = _first_violation(records[:index] + records[index + 1:])
    assert line >= index + 1
    assert "version" in message or "dropped" in message


def test_reordered_records_are_caught() -> None:
    records = _seeded_with_transitions()
    index = _transition_index(records)
    later = next(i for i in range(index + 1, len(records))
                 if records[i]["type"] == "state_change")
    swapped = list(records)
    swapped[index], swapped[later] = swapped[later], swapped[index]
    line, message = _first_violation(swapped)
    assert line == index + 1
    assert "version" in message or "starts at" in message or "backwards" in message


def test_changed_version_is_caught() -> None:
    records = _seeded_with_transitions()
    index = _transition_index(records)
    records[index] = {**records[index], "state_version": records[index]["state_version"] + 1}
    line, message = _first_violation(records)
    assert line == index + 1
    assert "expected" in message
    assert "+1 per transition" in message


def test_reject_changing_the_version_is_caught() -> None:
    records = _seeded_with_transitions()
    index = next(i for i, r in enumerate(records) if r["type"] == "reject" and i > 0)
    records[index] = {**records[index], "state_version": records[index]["state_version"] + 1}
    line, message = _first_violation(records)
    assert (line, "never changes the version" in message) == (index + 1, True)


def test_reason_the_table_forbids_is_caught() -> None:
    records = _seeded_with_transitions()
    index = _transition_index(records, minimum=1)
    records[index] = {**records[index], "reason": "DEGRADED_TIMEOUT"}
    line, message = _first_violation(records)
    assert line == index + 1
    assert "not in the transition table" in message


def test_transition_after_terminated_is_caught() -> None:
    records = _seeded_with_transitions()
    index = _transition_index(records, minimum=1)
    ending = {**records[index], "from": records[index]["from"], "to": "TERMINATED",
              "reason": "CLOSED"}
    extra = {**records[index], "from": "TERMINATED", "to": "ATTACHED", "reason": "REATTACHED",
             "state_version": ending["state_version"] + 1}
    line, message = _first_violation([*records[:index], ending, extra])
    assert line == index + 2
    assert "after TERMINATED" in message
    # A legitimate-looking transition replayed after the end is caught as well.
    copied = {**records[index], "state_version": ending["state_version"] + 1}
    line, message = _first_violation([*records[:index], ending, copied])
    assert (line, message.endswith("transition after TERMINATED")) == (index + 2, True)


def test_reject_other_than_session_terminated_after_terminated_is_caught() -> None:
    records = _seeded_with_transitions()
    index = _transition_index(records, minimum=1)
    ending = {**records[index], "to": "TERMINATED", "reason": "CLOSED"}
    reject = {"v": V, "type": "reject", "class": "SECURITY_EVENT",
              "session_id": ending["session_id"], "role": ending["role"],
              "reason": "REPLAY_DETECTED", "phase": "TERMINATED",
              "state_version": ending["state_version"], "event": "ReattachRequest",
              "ts_ms": ending["ts_ms"]}
    line, message = _first_violation([*records[:index], ending, reject])
    assert line == index + 2
    assert "after TERMINATED" in message


def test_changed_session_id_is_caught() -> None:
    records = _seeded_with_transitions()
    index = _transition_index(records)
    records[index] = {**records[index], "session_id": "ab" * 16}
    line, message = _first_violation(records)
    assert line == index + 1
    assert "does not start at BIRTH" in message
    assert "session id changed" in message


def test_unknown_reason_is_caught() -> None:
    records = _seeded_with_transitions()
    records[1] = {**records[1], "reason": "BECAUSE_I_SAID_SO"}
    assert _first_violation(records) == (2, "unknown reason code 'BECAUSE_I_SAID_SO'")


def test_malformed_json_line_is_caught() -> None:
    lines = _lines(_seeded_with_transitions())
    lines[2] = lines[2][:-5]
    line, message = _first_violation(lines)
    assert line == 3
    assert message.startswith("malformed JSON")


def test_bad_record_shape_is_caught() -> None:
    records = _seeded_with_transitions()
    del records[1]["ts_ms"]
    assert _first_violation(records) == (2, "record has no 'ts_ms'")
    assert _first_violation(['["not", "an", "object"]'])[1] == "record is not a JSON object"


def test_timestamp_going_backwards_is_caught() -> None:
    records = _seeded_with_transitions()
    index = _transition_index(records)
    records[index] = {**records[index], "ts_ms": 0}
    line, message = _first_violation(records)
    assert line == index + 1
    assert "backwards" in message


def _session_records(*steps: tuple[str, str, str, int]) -> Records:
    out = []
    for version, (src, reason, dst, ts) in enumerate(steps, start=1):
        out.append({"v": V, "type": "state_change", "session_id": "00" * 16, "role": "client",
                    "from": src, "to": dst, "reason": reason, "state_version": version,
                    "ts_ms": ts})
    return out


@pytest.mark.requirement("RM-7")
def test_exceeding_the_recovery_window_is_caught() -> None:
    window = Policy().max_recovery_window_ms
    good = _session_records(("BIRTH", "ATTACH_COMPLETED", "ATTACHED", 0),
                            ("ATTACHED", "DELIVERY_TIMEOUT", "RECOVERING", 100),
                            ("RECOVERING", "RECOVERY_WINDOW_EXCEEDED", "TERMINATED",
                             100 + window))
    assert _check(_lines(good)).ok
    late = [*good[:2], {**good[2], "ts_ms": 101 + window}]
    line, message = _first_violation(late)
    assert line == 3
    assert f"max_recovery_window_ms={window}" in message
    # A tighter policy given on the command line turns the good trace into a bad one.
    report = _check(_lines(good), Policy(max_recovery_window_ms=window // 2,
                                               reattach_timeout_ms=1000))
    assert report.violation is not None
    assert report.violation.line == 3


@pytest.mark.requirement("RM-9")
def test_exceeding_recovery_rounds_is_caught() -> None:
    rounds = Policy().max_recovery_rounds
    steps = [("BIRTH", "ATTACH_COMPLETED", "ATTACHED", 0),
             ("ATTACHED", "DELIVERY_TIMEOUT", "RECOVERING", 10),
             ("RECOVERING", "RECOVERY_PARTIAL", "DEGRADED", 20)]
    for n in range(rounds):
        steps += [("DEGRADED", "CANDIDATE_AVAILABLE", "RECOVERING", 30 + 20 * n),
                  ("RECOVERING", "RECOVERY_PARTIAL", "DEGRADED", 40 + 20 * n)]
    line, message = _first_violation(_session_records(*steps))
    assert line == 4 + 2 * (rounds - 1)
    assert "max_recovery_rounds" in message


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(_lines(_trace(7))) + "\n", encoding="utf-8")
    assert main(["verify-trace", "--unchained", str(good)]) == 0
    assert "no tamper evidence" in capsys.readouterr().out
    assert main(["verify-trace", str(good)]) == 1, "a bare log is not a framed trace"
    assert "line 1: the first line is not trace_begin" in capsys.readouterr().out
    bad_records = _seeded_with_transitions()
    bad_records[1] = {**bad_records[1], "reason": "NOPE"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(_lines(bad_records)) + "\n", encoding="utf-8")
    assert main(["verify-trace", "--unchained", str(bad)]) == 1
    assert "line 2: unknown reason code 'NOPE'" in capsys.readouterr().out
    assert main(["verify-trace", str(tmp_path / "missing.jsonl")]) == 2
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"max_recovery_window_ms": 0}), encoding="utf-8")
    assert main(["verify-trace", "--unchained", "--policy", str(policy), str(good)]) == 2
    assert "bad policy" in capsys.readouterr().err


@pytest.mark.requirement("RM-7")
def test_cli_policy_turns_a_good_trace_into_a_bad_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    window = Policy().max_recovery_window_ms
    trace = tmp_path / "t.jsonl"
    trace.write_text("\n".join(_lines(_session_records(
        ("BIRTH", "ATTACH_COMPLETED", "ATTACHED", 0),
        ("ATTACHED", "DELIVERY_TIMEOUT", "RECOVERING", 100),
        ("RECOVERING", "RECOVERY_WINDOW_EXCEEDED", "TERMINATED", 100 + window)))) + "\n",
        encoding="utf-8")
    assert main(["verify-trace", "--unchained", str(trace)]) == 0
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({**Policy().to_data(), "max_recovery_window_ms": window // 2,
                                  "reattach_timeout_ms": 1000}), encoding="utf-8")
    capsys.readouterr()
    assert main(["verify-trace", "--unchained", "--policy", str(policy), str(trace)]) == 1
    assert f"line 3: session {'00' * 16} (client): RECOVERING for {window} ms, more than " \
        f"max_recovery_window_ms={window // 2}" in capsys.readouterr().out


def test_binary_garbage_is_a_malformed_line_not_a_crash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "garbage.jsonl"
    good = "\n".join(_lines(_trace(3))[:2]) + "\n"
    trace.write_bytes(good.encode() + b"\xff\xfe{\n")
    assert main(["verify-trace", "--unchained", str(trace)]) == 1
    assert "line 3: malformed line: not UTF-8" in capsys.readouterr().out


def test_scripts_reusing_one_session_id_are_separate_streams() -> None:
    # The scenario runner tags records with `script`, and every script uses one test id.
    run = _trace(7, Role.CLIENT)
    tagged = [{**r, "script": "first"} for r in run] + [{**r, "script": "second"} for r in run]
    report = _check(_lines(tagged))
    assert report.ok, report.violation
    assert report.streams == 2
    untagged = run + run
    assert not _check(_lines(untagged)).ok, "one stream restarting at BIRTH is caught"


def test_gateway_and_telemetry_records_stay_out_of_session_streams() -> None:
    run = _trace(8, Role.SERVER)
    extra: Records = [
        {"v": V, "type": "reject_summary", "window_start_ms": 0, "window_end_ms": 1000,
         "total": 3, "security_events": 1, "counts": {"REPLAY_DETECTED": 1}},
        {"v": V, "type": "telemetry_dropped", "dropped": 2, "dropped_total": 2},
    ]
    report = _check(_lines(run[:1] + extra + run[1:]))
    assert report.ok, report.violation
    assert report.streams == 1
    wrong_version = [{**extra[0], "v": 9}]
    line, message = _first_violation(run[:1] + wrong_version)
    assert (line, "unsupported record version" in message) == (2, True)


def test_a_policy_record_sets_the_bounds_of_its_script() -> None:
    # A run that spends time in RECOVERING: fine under the defaults, not under 1 ms.
    run = next(
        tagged for seed in range(200)
        for tagged in [[{**r, "script": "s"} for r in _trace(seed, Role.CLIENT)]]
        if any(a.get("to") == "RECOVERING" and b["ts_ms"] > a["ts_ms"]
               for a, b in itertools.pairwise(tagged))
    )
    strict = Policy(max_recovery_window_ms=1, reattach_timeout_ms=1)
    stated = {"v": V, "type": "policy", "script": "s", "policy": strict.to_data()}
    other = {**stated, "script": "another script"}
    assert _check(_lines(run)).ok
    assert _check(_lines([other, *run])).ok, "a policy applies to its own script only"
    tight = _check(_lines([stated, *run]))
    assert tight.violation is not None, "the stated policy was ignored"
    assert "max_recovery_window_ms=1" in tight.violation.message


def test_field_checks_refuse_floats_negatives_and_malformed_session_ids() -> None:
    record = _seeded_with_transitions()[0]
    for key, value, expected in (
            ("state_version", 1.0, "must be a non-negative integer"),
            ("ts_ms", -1, "must be a non-negative integer"),
            ("ts_ms", True, "must be a non-negative integer"),
            ("session_id", "AB" * 16, "32 lowercase hex digits"),
            ("session_id", "ab" * 15, "32 lowercase hex digits"),
            ("session_id", 7, "must be a str"),
            ("role", "peer", "unknown role 'peer'")):
        line, message = _first_violation([{**record, key: value}])
        assert line == 1
        assert expected in message, (key, value, message)


@pytest.mark.requirement("RM-3.1")
def test_server_reattach_rate_bound_is_checked() -> None:
    policy = Policy()
    limit, window = policy.reattach_rate_limit, policy.reattach_rate_window_ms
    steps = [("BIRTH", "ATTACH_COMPLETED", "ATTACHED", 0)]
    steps += [("ATTACHED", "REATTACHED", "ATTACHED", 10 + n) for n in range(limit)]
    records = [{**r, "role": "server"} for r in _session_records(*steps)]
    assert _check(_lines(records)).ok
    one_more = {**records[-1], "state_version": records[-1]["state_version"] + 1,
                "ts_ms": records[-1]["ts_ms"] + 1}
    line, message = _first_violation([*records, one_more])
    assert line == len(records) + 1
    assert f"more than reattach_rate_limit={limit} REATTACHED within " \
        f"reattach_rate_window_ms={window}" in message
    # Exactly one window after the oldest of the last `limit`, one more is allowed again.
    later = {**one_more, "ts_ms": records[1]["ts_ms"] + window}
    assert _check(_lines([*records, later])).ok
    assert not _check(_lines([*records, {**later, "ts_ms": later["ts_ms"] - 1}])).ok
    # The client's REATTACHED are bounded by the server's verification, not here.
    client = [{**r, "role": "client"} for r in [*records, one_more]]
    assert _check(_lines(client)).ok


def test_partial_traces_are_refused_unless_allowed() -> None:
    records = _seeded_with_transitions()
    index = _transition_index(records)
    tail = records[index:]
    line, message = _first_violation(tail)
    assert (line, "does not start at BIRTH" in message) == (1, True)
    report = verify_lines(_lines(tail), chained=False, allow_partial=True)
    assert report.ok, report.violation
    # Mid-session, the rules still hold: a version jump is caught.
    jumped = [tail[0], {**tail[1], "state_version": tail[1]["state_version"] + 5}]
    bad = verify_lines(_lines(jumped), chained=False, allow_partial=True)
    assert bad.violation is not None
    assert bad.violation.line == 2
    # A reject first: the stream opens at the reject's version.
    reject = next(r for r in tail if r["type"] == "reject")
    assert verify_lines(_lines([reject]), chained=False, allow_partial=True).ok


def _partial(records: Records) -> TraceReport:
    return verify_lines(_lines(records), chained=False, allow_partial=True)


def test_a_partial_stream_is_held_to_the_time_bounds_from_where_it_is_first_seen() -> None:
    window = Policy().max_recovery_window_ms
    degraded = Policy().max_degraded_ms
    # First seen mid-session, already RECOVERING at 1,000 (a reject, then a transition).
    for first_ts, src in ((1_000, "RECOVERING"), (1_000, "DEGRADED")):
        bound = window if src == "RECOVERING" else degraded
        reject = {"v": V, "type": "reject", "class": "OPERATIONAL_REJECT",
                  "session_id": "00" * 16, "role": "client", "reason": "EVENT_NOT_APPLICABLE",
                  "phase": src, "state_version": 7, "event": "PacketLoss", "ts_ms": first_ts}
        for end, ok in ((first_ts + bound, True), (first_ts + bound + 1, False)):
            change = {"v": V, "type": "state_change", "session_id": "00" * 16,
                      "role": "client", "from": src, "to": "TERMINATED",
                      "reason": "RECOVERY_WINDOW_EXCEEDED" if src == "RECOVERING"
                      else "DEGRADED_TIMEOUT", "state_version": 8, "ts_ms": end}
            report = _partial([reject, change])
            assert report.ok is ok, (src, end, report.violation)
            if not ok:
                assert report.violation is not None
                assert report.violation.line == 2
                assert f"{src} for {bound + 1} ms" in report.violation.message
    # First seen by a transition into RECOVERING: the phase began at that record.
    entered = _session_records(("ATTACHED", "DELIVERY_TIMEOUT", "RECOVERING", 500),
                               ("RECOVERING", "RECOVERY_WINDOW_EXCEEDED", "TERMINATED",
                                501 + window))
    entered = [{**r, "state_version": r["state_version"] + 3} for r in entered]
    report = _partial(entered)
    assert report.violation is not None
    assert report.violation.line == 2


def test_a_partial_stream_counts_recovery_rounds_from_where_it_is_first_seen() -> None:
    rounds = Policy().max_recovery_rounds
    steps = [("RECOVERING", "RECOVERY_PARTIAL", "DEGRADED", 20)]
    for n in range(rounds + 1):
        steps += [("DEGRADED", "CANDIDATE_AVAILABLE", "RECOVERING", 30 + 20 * n),
                  ("RECOVERING", "RECOVERY_PARTIAL", "DEGRADED", 40 + 20 * n)]
    records = [{**r, "state_version": r["state_version"] + 4}
               for r in _session_records(*steps)]
    report = _partial(records)
    assert report.violation is not None
    # The first record is not an entry; the (rounds + 1)-th entry into RECOVERING breaks it.
    assert report.violation.line == 2 + 2 * rounds
    assert "max_recovery_rounds" in report.violation.message
    # Exactly max_recovery_rounds entries seen: allowed.
    assert _partial(records[: 1 + 2 * rounds]).ok


def test_blank_lines_are_skipped_in_a_bare_log_and_counted_nowhere() -> None:
    records = _seeded_with_transitions()
    lines = _lines(records)
    spaced = [lines[0], "", "   ", *lines[1:]]
    report = _check(spaced)
    assert report.ok, report.violation
    assert report.records == len(records)
    # A blank line never ends checking: a broken record after one is still found.
    broken = [lines[0], "", json.dumps({**records[1], "reason": "NOPE"})]
    assert _first_violation(broken) == (3, "unknown reason code 'NOPE'")
