"""Scenario scripts replay exactly; the script language fails clearly; the CLI is stable.

Each script in `specs/scenarios/` demonstrates one risk-model clause, so its replay test
carries that clause's requirement id (from the script's `section:` header).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import cast

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jumpvpn_core.cli import main
from jumpvpn_core.events import EVENT_TYPES, Event, PathChallengeReceived
from jumpvpn_core.invariants import Violation
from jumpvpn_core.scenarios import (
    COMMANDS,
    EventTextError,
    ScriptError,
    format_event,
    parse_event,
    parse_script,
    run_script,
    run_script_file,
)
from jumpvpn_core.scenarios.core_cmds import CORE_COMMANDS
from jumpvpn_core.scenarios.gateway_cmds import GATEWAY_COMMANDS
from jumpvpn_core.transport import TransportDescriptor, TransportKind

ROOT = Path(__file__).resolve().parent.parent
SCRIPT_DIR = ROOT / "specs" / "scenarios"
SCRIPTS = sorted(SCRIPT_DIR.glob("*.txt"))
REQUIRED_SECTIONS = {"2.1", "2.2", "2.3", "3.1", "3.2", "3.3", "4.1", "4.2", "5.1", "5.2", "5.3",
                     "6.1", "6.2", "7", "8", "9"}


def _section(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("section:"):
            return line.partition(":")[2].strip()
    raise AssertionError(f"{path.name} has no section header")


def _params() -> list[object]:
    return [
        pytest.param(path, id=path.name,
                     marks=pytest.mark.requirement(f"RM-{_section(path)}"))
        for path in SCRIPTS
    ]


@pytest.mark.parametrize("path", _params())
def test_script_replays_exactly(path: Path) -> None:
    result = run_script_file(path)
    assert result.failure is None, result.failure
    assert result.ok
    assert result.records, "a scenario must produce audit records"


def test_every_required_seed_section_has_a_script() -> None:
    assert {_section(path) for path in SCRIPTS} >= REQUIRED_SECTIONS


@pytest.mark.requirement("RM-8")
def test_section_8_has_a_script_per_fail_closed_trigger() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in SCRIPTS if _section(p) == "8")
    for reason in ("OWNERSHIP_AMBIGUOUS", "PROOF_INVALID", "STALE_STATE_VERSION",
                   "VERSION_AHEAD", "TRANSPORT_LOST_TTL_EXPIRED", "REPLAY_DETECTED"):
        assert reason in text


# --- the script language --------------------------------------------------------------------

HEADER = "section: 0\ntitle: t\nexpect: e\n\n"


def _run_text(text: str, name: str = "case.txt") -> str | None:
    return run_script(parse_script(text, name)).failure


def test_unknown_command_names_file_and_line() -> None:
    failure = _run_text(HEADER + "init t=0\n----\n\nfly away\n----\n")
    assert failure is not None
    assert failure.startswith("case.txt:8: unknown command 'fly'")


def test_unknown_event_names_file_and_line() -> None:
    failure = _run_text(HEADER + "init t=0\n----\n\nstep client Teleport now_ms=1\n----\n")
    assert failure is not None
    assert failure.startswith("case.txt:8: unknown event 'Teleport'")


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("step client PacketLoss now_ms=1 count=x", "PacketLoss.count must be a decimal"),
        ("step client PacketLoss now_ms=1 colour=red", "PacketLoss has no field 'colour'"),
        ("step client PacketLoss count=2", "PacketLoss: missing field(s) now_ms"),
        ("step client PacketLoss now_ms=1 count=0", "count must be a positive int"),
        ("step server Attach now_ms=1 transport=udp:nowhere", "kind:host:port"),
        ("step client ReattachAccepted now_ms=1 proof=hex:zz", "malformed hex"),
    ],
)
def test_bad_field_names_file_and_line(command: str, message: str) -> None:
    failure = _run_text(HEADER + f"init t=0\n----\n\n{command}\n----\n")
    assert failure is not None
    assert failure.startswith("case.txt:8: ")
    assert message in failure


def test_invalid_policy_names_file_and_line() -> None:
    failure = _run_text(HEADER + "policy replay_window_bits=100\n----\n")
    assert failure is not None
    assert failure.startswith("case.txt:5: invalid policy")
    assert "multiple of 64" in failure


def test_command_without_separator_is_a_parse_error() -> None:
    with pytest.raises(ScriptError, match=r"^case.txt:5: command 'init t=0' must be followed"):
        parse_script(HEADER + "init t=0\n", "case.txt")


def test_missing_header_is_a_parse_error() -> None:
    with pytest.raises(ScriptError, match="missing header directive"):
        parse_script("init t=0\n----\n", "case.txt")


def test_mismatch_reports_line_and_diff() -> None:
    failure = _run_text(HEADER + "init t=0\n----\nclient: ATTACHED v9\n")
    assert failure is not None
    assert failure.startswith("case.txt:5: output of 'init t=0' differs")
    assert "-client: ATTACHED v9" in failure
    assert "+client: BIRTH v0" in failure


def test_invariant_violation_fails_the_script(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object) -> list[Violation]:
        return [Violation("version_monotonic", "seeded violation")]

    monkeypatch.setattr("jumpvpn_core.invariants.check_step", broken)
    text = HEADER + "init t=0\n----\n\nattach t=0 via=udp:10.0.0.1:4000\n----\n"
    failure = _run_text(text)
    assert failure is not None
    assert failure.startswith("case.txt:8: invariant violated: version_monotonic")


def test_rejected_step_prints_same_object_marker() -> None:
    text = HEADER + "init t=0\n----\n\nstep client PacketLoss now_ms=1\n----\n"
    result = run_script(parse_script(text, "case.txt"))
    assert result.outputs[8] == (
        "client: BIRTH v0",
        "state unchanged (same object)",
        "Rejected EVENT_NOT_APPLICABLE class=OPERATIONAL_REJECT phase=BIRTH v=0 "
        "event=PacketLoss t=1",
    )


# --- canonical event text -------------------------------------------------------------------

_U64 = (1 << 64) - 1
_hosts = st.one_of(
    st.ip_addresses().map(str),
    st.from_regex(r"\A[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9]{0,10}){0,2}\Z"),
)
_transports = st.builds(TransportDescriptor, st.sampled_from(list(TransportKind)), _hosts,
                        st.integers(1, 65535))
_BY_NAME = {
    "now_ms": st.integers(0, _U64),
    "timestamp_ms": st.integers(0, _U64),
    "state_version": st.integers(0, _U64),
    "nonce": st.integers(1, _U64),
    "count": st.integers(1, _U64),
    "size": st.integers(0, 1 << 20),
    "rtt_ms": st.integers(1, 600_000),
    "session_id": st.binary(min_size=16, max_size=16),
    "proof": st.binary(min_size=32, max_size=32),
    "mac": st.binary(min_size=32, max_size=32),
    "challenge": st.binary(max_size=255),
}


def _event_strategy(cls: type) -> st.SearchStrategy[object]:
    fields: dict[str, st.SearchStrategy[object]] = {}
    for field in attrs.fields(cls):
        fields[field.name] = _BY_NAME.get(field.name, _transports)
    if cls is PathChallengeReceived:
        fields["challenge"] = st.binary(min_size=1, max_size=255)
    return st.builds(cls, **fields)


_events = st.one_of([_event_strategy(cls) for cls in EVENT_TYPES])


@given(_events)
def test_event_text_round_trips_for_every_event_type(event: object) -> None:
    text = format_event(cast(Event, event))
    assert "\n" not in text
    assert parse_event(text) == event
    assert format_event(parse_event(text)) == text


def test_event_text_is_canonical() -> None:
    event = parse_event("ReattachRequest now_ms=5 source=udp:10.0.0.1:4000 nonce=1 "
                        "state_version=1 timestamp_ms=5 candidate=udp:10.0.0.1:4000 "
                        "proof=hex:" + "ab" * 32, session_id=bytes(range(16)))
    assert format_event(event) == (
        "ReattachRequest now_ms=5 source=udp:10.0.0.1:4000 "
        "session_id=hex:000102030405060708090a0b0c0d0e0f nonce=1 state_version=1 "
        "timestamp_ms=5 candidate=udp:10.0.0.1:4000 proof=hex:" + "ab" * 32
        + " challenge=hex: size=0"
    )


def test_parse_event_without_default_session_id_requires_it() -> None:
    with pytest.raises(EventTextError, match="missing field"):
        parse_event("ReattachAccepted now_ms=1 via=udp:10.0.0.1:1 nonce=1 state_version=1 "
                    "timestamp_ms=1 bound=udp:10.0.0.1:1 proof=hex:" + "00" * 32)


# --- the CLI ----------------------------------------------------------------------------------


def test_two_cli_runs_write_byte_identical_traces(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert main(["scenarios", "--dir", str(SCRIPT_DIR), "--trace", str(first)]) == 0
    table = capsys.readouterr().out
    assert main(["scenarios", "--dir", str(SCRIPT_DIR), "--trace", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    lines = first.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    framing = ("trace_begin", "checkpoint", "trace_end")  # specs/trace-format.md
    assert {r["script"] for r in records if r["type"] not in framing} == {
        p.name for p in SCRIPTS}
    assert all(line == json.dumps(json.loads(line), sort_keys=True) for line in lines)
    assert "2.1" in table
    assert "FAIL" not in table
    assert f"{len(SCRIPTS)}/{len(SCRIPTS)} scripts ok" in table


def test_cli_fails_on_wrong_expected_block_and_rewrite_fixes_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "9-demo.txt"
    script.write_text(HEADER + "init t=0\n----\nclient: ATTACHED v1\n\n"
                      "step client Close now_ms=5\n----\n", encoding="utf-8")
    trace = str(tmp_path / "trace.jsonl")
    assert main(["scenarios", "--dir", str(tmp_path), "--trace", trace]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out
    assert f"{script}:5: output of 'init t=0' differs" in captured.err
    assert main(["scenarios", "--dir", str(tmp_path), "--trace", trace, "--rewrite"]) == 0
    text = script.read_text(encoding="utf-8")
    assert "client: BIRTH v0" in text
    assert "StateChanged BIRTH -> TERMINATED reason=CLOSED v=1 t=5" in text
    assert main(["scenarios", "--dir", str(tmp_path), "--trace", trace]) == 0


def test_cli_missing_directory_is_a_usage_error(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    assert main(["scenarios", "--dir", str(missing), "--trace",
                 str(tmp_path / "t.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --- the README -------------------------------------------------------------------------------

EXAMPLE = ROOT / "docs" / "examples" / "embedding.py"


def _readme_python_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("```python\n") + len("```python\n")
    return text[start:text.index("```", start)]


def test_readme_embedding_block_is_the_example_file() -> None:
    assert _readme_python_block() == EXAMPLE.read_text(encoding="utf-8")


def test_readme_setup_block_is_exact() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert (
        "```\n"
        "# main job: run every risk-model scenario script and print the table\n"
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/jumpvpn scenarios\n"
        "# tests\n"
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' -c requirements-dev.txt "
        "&& .venv/bin/python -m pytest\n"
        "```\n"
    ) in text


def test_embedding_example_runs_to_an_explicit_end() -> None:
    # S603 silenced: the argv is fixed (this interpreter, a file of this repo), no shell.
    completed = subprocess.run(  # noqa: S603
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "send reattach request via udp:192.168.1.20:51820" in completed.stdout
    assert completed.stdout.rstrip().endswith("session ended: RECOVERY_WINDOW_EXCEEDED")


# --- gateway commands -------------------------------------------------------------------------


def test_gateway_command_naming_an_unknown_node_fails_at_its_line() -> None:
    failure = _run_text(HEADER + "store s0\n----\n\nopen g9 t=0 via=udp:10.0.0.1:4000\n----\n")
    assert failure is not None
    assert failure.startswith("case.txt:8: no gateway 'g9'")


def test_core_and_gateway_command_tables_are_explicit_and_distinct() -> None:
    # One table each, no name in both: every command line means one thing, whatever module
    # was imported first.
    assert not set(CORE_COMMANDS) & set(GATEWAY_COMMANDS)
    assert COMMANDS == {**CORE_COMMANDS, **GATEWAY_COMMANDS}
    # `deliver server->client` and `show client` are the core's; the gateway forms have
    # names of their own.
    failure = _run_text(HEADER + "init t=0\n----\n\ndeliver server->client\n----\n")
    assert failure is not None
    assert "the server has no undelivered message" in failure
    failure = _run_text(HEADER + "show-gateway g0\n----\n")
    assert failure is not None
    assert "no gateway 'g0'" in failure
    failure = _run_text(HEADER + "show gateway g0\n----\n")
    assert failure is not None
    assert "usage: show <client|server>" in failure


@pytest.mark.requirement("RM-6.1")
def test_a_hung_audit_backend_drops_and_counts_instead_of_blocking() -> None:
    text = (HEADER + "sink hung blocking capacity=1\n----\n\nstore s0\n----\n\n"
            "gateway g0 store=s0 sink=hung\n----\n\nopen g0 t=0 via=udp:10.0.0.1:4000\n----\n\n"
            "open g0 t=1 via=udp:10.0.0.2:4000 sid=hex:" + "aa" * 16 + "\n----\n\n"
            "sink hung close\n----\n")
    script = parse_script(text, "case.txt")
    result = run_script(script)
    closing = result.outputs[script.cases[-1].line]
    # One audit record fits the queue, the next is dropped; both are in the trace.
    assert closing == ("sink hung closed: offered=2 delivered=1 dropped=1 reported_dropped=1",)
    assert len(result.records) >= 2


# --- layering -------------------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


@pytest.mark.requirement("RM-10")
def test_scenarios_sit_below_the_conformance_kit_and_share_its_subject_protocol() -> None:
    # One direction only: the kit turns counterexamples into scripts (it imports the
    # runner); the runner never imports the kit, so there is no package cycle. Both step
    # subjects of `jumpvpn_core.subject`.
    package = ROOT / "jumpvpn_core"
    for path in (package / "scenarios").glob("*.py"):
        assert not {m for m in _imports(path) if m.startswith("jumpvpn_core.testing")}, path
    assert "jumpvpn_core.scenarios.runner" in _imports(package / "testing" / "counterexample.py")
    assert "jumpvpn_core.subject" in _imports(package / "scenarios" / "world.py")
    assert "jumpvpn_core.subject" in _imports(package / "testing" / "lockstep.py")
