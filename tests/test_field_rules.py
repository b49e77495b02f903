"""specs/field-rules.md gives an update rule for every field of specs/state-format.md.

Three sources are parsed and compared: the field table of `field-rules.md`, the field
names `state-format.md` documents, and the plain-data form the code actually writes
(`state_to_data` of states with every optional record filled in).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from jumpvpn_core.codec import state_to_data
from jumpvpn_core.effects import SendReattachAccept, SendReattachRequest
from jumpvpn_core.phases import Role
from jumpvpn_core.state import (
    AcceptRecord,
    ClientSide,
    PathScore,
    PendingPath,
    PendingReattach,
    ServerSide,
    SessionState,
    new_session,
)
from jumpvpn_core.transport import TransportDescriptor

SPECS = Path(__file__).resolve().parent.parent / "specs"
# Sub-records the table describes as one field: they are copies of an effect.
_LEAF_RECORDS = {"server.last_accept.accept", "client.pending.request"}


def _table_fields() -> list[str]:
    text = (SPECS / "field-rules.md").read_text(encoding="utf-8")
    section = text.split("## 5. Every field", 1)[1]
    fields = []
    for line in section.splitlines():
        match = re.match(r"^\| `([a-z0-9_.]+)` \|", line)
        if match:
            fields.append(match.group(1))
    return fields


def _full_states() -> list[SessionState]:
    sid = bytes(range(16))
    path = TransportDescriptor.parse("udp:192.0.2.1:4000")
    server = new_session(Role.SERVER, sid, b"s" * 32, 1_000)
    accept = SendReattachAccept(path, sid, 3, 2, 1_000, b"p" * 32)
    server_side = ServerSide(1, 3, 5, (900,), PendingPath(path, b"c" * 16, 2_000, 10, 0, False, 3),
                             1, AcceptRecord(3, 1, b"q" * 32, accept))
    client = new_session(Role.CLIENT, sid, b"s" * 32, 1_000)
    request = SendReattachRequest(path, sid, 1, 0, 1_000, path, b"", b"r" * 32)
    client_side = ClientSide(0, 2, PendingReattach(request, 1_500, 1), 1,
                             (PathScore(path, 30, 0, 1_000),), path, 1_000)
    return [
        SessionState(server.ident, server.phase, 0, 1_000, server.link, server.roaming,
                     server_side, None),
        SessionState(client.ident, client.phase, 0, 1_000, client.link, client.roaming,
                     client_side, None),
    ]


def _paths(data: dict[str, Any], prefix: str) -> set[str]:
    out: set[str] = set()
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key != "policy" and path not in _LEAF_RECORDS:
            out.add(path)  # the record itself has a row too (when it is set, when null)
            out |= _paths(value, f"{path}.")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.add(path)  # a list of records (`client.quality`): its items' fields too
            for item in value:
                out |= _paths(item, f"{path}.")
        else:
            out.add(path)
    return out


def _code_fields() -> set[str]:
    fields: set[str] = set()
    for state in _full_states():
        data = state_to_data(state, include_secrets=True)
        side = data.pop("side")
        fields |= _paths(data, "")
        fields |= _paths(side, f"{state.role.value}.")
    fields.discard("link")
    fields.discard("roaming")
    return fields


@pytest.mark.requirement("RM-10")
def test_every_field_the_code_writes_has_an_update_rule() -> None:
    missing = _code_fields() - set(_table_fields())
    assert missing == set(), f"fields without a row in specs/field-rules.md: {sorted(missing)}"


@pytest.mark.requirement("RM-10")
def test_the_field_table_names_no_field_the_state_format_lacks() -> None:
    table = _table_fields()
    assert len(table) == len(set(table)), "a field has two rows"
    stale = set(table) - _code_fields()
    assert stale == set(), f"rows for fields the state format does not have: {sorted(stale)}"


@pytest.mark.requirement("RM-10")
def test_every_field_of_state_format_md_has_a_row() -> None:
    """Every key the state format document names (its JSON block and its side paragraphs)
    is the last component of some row of the field table."""
    text = (SPECS / "state-format.md").read_text(encoding="utf-8")
    block = text.split("```json", 1)[1].split("```", 1)[0]
    documented = set(re.findall(r'"([a-z0-9_]+)":', block))
    sides = text.split("Server `side`:", 1)[1]
    documented |= set(re.findall(r"`([a-z0-9_]+)` \(", sides))
    for record in re.findall(r"[{}]([^{}]*)", sides):
        documented |= {m.group(1) for piece in record.split(",")
                       if (m := re.fullmatch(r"\s*([a-z0-9_]+)\s*(?:\(hex\))?\s*:?\s*", piece))}
    documented -= {"side", "link", "roaming", "include_secrets"}
    leaves = {row.rsplit(".", 1)[-1] for row in _table_fields()}
    # Fields of the accept and request copies are described by their record's row.
    copied = {"to", "via", "candidate", "timestamp_ms", "proof", "state_version", "nonce",
              "challenge"}
    missing = documented - leaves - copied
    assert missing == set(), f"state-format.md fields with no row: {sorted(missing)}"
    assert {"heard_in_phase", "loss_start_ms", "attempt", "sends", "recovery_rounds",
            "challenge_sent", "bytes_received", "bytes_sent", "verified_times",
            "switch_times", "quality", "srtt_ms", "loss_q16", "better",
            "better_since_ms"} <= documented
