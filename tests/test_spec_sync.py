"""The normative tables in specs/ and the code state the same contracts (no drift)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jumpvpn_core.phases import TRANSITION_TABLE
from jumpvpn_core.policy import POLICY_FIELD_DOCS, Policy
from jumpvpn_core.proof import (
    MessageType,
    challenge_mac,
    compute_proof,
    derive_challenge,
    derive_control_key,
    encode_proof_input,
)
from jumpvpn_core.reasons import ReasonCode, reason_class
from jumpvpn_core.transport import TransportDescriptor
from tools.spec_tables import read_table, render_state_diagram, transition_rows

SPECS = Path(__file__).resolve().parent.parent / "specs"


@pytest.mark.requirement("RM-10")
def test_transition_table_in_specs_equals_the_code() -> None:
    spec = set(transition_rows(SPECS / "transition-table.md"))
    code = {(src.value, reason.value, dst.value) for (src, reason), dst in TRANSITION_TABLE.items()}
    assert spec - code == set(), "rows in specs/ but not in the code"
    assert code - spec == set(), "rows in the code but not in specs/"


def test_transition_table_rows_are_unique_in_specs() -> None:
    rows = transition_rows(SPECS / "transition-table.md")
    keys = [(src, reason) for src, reason, _dst in rows]
    assert len(keys) == len(set(keys))


def test_state_diagram_is_rendered_from_the_spec_table() -> None:
    rows = transition_rows(SPECS / "transition-table.md")
    committed = (SPECS / "state-diagram.md").read_text(encoding="utf-8")
    assert committed == render_state_diagram(rows), (
        "specs/state-diagram.md is stale: python -m tools.spec_tables --write"
    )


def test_reason_codes_in_specs_equal_the_code_with_their_class() -> None:
    rows = read_table(SPECS / "reason-codes.md", "code")
    spec = {row[0]: row[1] for row in rows}
    code = {c.value: reason_class(c).value for c in ReasonCode}
    assert spec == code


def test_every_transition_reason_is_a_transition_class_code() -> None:
    for (_src, reason), _dst in TRANSITION_TABLE.items():
        assert reason_class(reason).value == "TRANSITION", reason


def test_policy_fields_in_specs_equal_the_code_with_defaults_and_ranges() -> None:
    rows = read_table(SPECS / "policy.md", "field")
    defaults = Policy()
    spec = {row[0]: (row[1], int(row[2]), row[3]) for row in rows}
    code = {
        name: (unit, getattr(defaults, name), f"{low}..{high}")
        for name, (unit, low, high, _doc) in POLICY_FIELD_DOCS.items()
    }
    assert spec == code
    assert set(POLICY_FIELD_DOCS) == {a.name for a in Policy.__attrs_attrs__}


def _vector_blocks() -> tuple[dict[str, str], list[dict[str, str]]]:
    text = (SPECS / "proof-encoding.md").read_text(encoding="utf-8")
    body = text.split("## Test vectors", 1)[1].split("```", 2)[1]
    header: dict[str, str] = {}
    vectors: list[dict[str, str]] = []
    current = header
    for line in body.splitlines():
        if not line.strip():
            continue
        key, _, value = line.partition(":")
        if key == "vector":
            current = {}
            vectors.append(current)
        current[key.strip()] = value.strip()
    return header, vectors


def test_proof_test_vectors_in_specs_match_the_code() -> None:
    header, vectors = _vector_blocks()
    assert len(vectors) == 4
    secret = bytes.fromhex(header["session_secret"])
    sid = bytes.fromhex(header["session_id"])
    key = derive_control_key(secret, sid)
    assert key.hex() == header["control_key"]
    transport = TransportDescriptor.parse(header["transport"])
    for vector in vectors:
        args = (
            MessageType(int(vector["message_type"])),
            sid,
            int(vector["nonce"]),
            int(vector["state_version"]),
            int(vector["timestamp_ms"]),
            transport,
            bytes.fromhex(vector["challenge"]),
        )
        assert encode_proof_input(*args).hex() == vector["encoding"], vector["vector"]
        assert compute_proof(key, *args).hex() == vector["proof"], vector["vector"]
        if args[0] is MessageType.PATH_CHALLENGE:
            mac = challenge_mac(key, sid, args[2], args[3], args[4], transport, args[6])
            assert mac.hex() == vector["proof"]
    assert derive_challenge(key, sid, 1).hex() == header["path_challenge_counter_1"]
