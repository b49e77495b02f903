"""Golden vectors: regeneration is byte-identical and every vector replays through step()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jumpvpn_core.audit.vectors import (
    UNREACHABLE_REASONS,
    base_states,
    event_variants,
    load_vectors,
    replay_vector,
    write_vectors,
)
from jumpvpn_core.cli import main
from jumpvpn_core.codec import state_from_data
from jumpvpn_core.events import EVENT_TYPES
from jumpvpn_core.forms import event_from_data, event_to_data
from jumpvpn_core.invariants import check_step
from jumpvpn_core.machine import step
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.reasons import ReasonCode

VECTOR_DIR = Path(__file__).resolve().parent.parent / "specs" / "vectors"
FILES = ("client.jsonl", "server.jsonl", "README.md")


def _all_vectors() -> list[dict[str, object]]:
    return [v for name in ("client.jsonl", "server.jsonl")
            for v in load_vectors(VECTOR_DIR / name)]


def test_regeneration_is_byte_identical_to_the_committed_vectors(tmp_path: Path) -> None:
    write_vectors(tmp_path / "a")
    write_vectors(tmp_path / "b")
    for name in FILES:
        first = (tmp_path / "a" / name).read_bytes()
        assert first == (tmp_path / "b" / name).read_bytes(), name
        assert first == (VECTOR_DIR / name).read_bytes(), (
            f"{name} is stale: run `jumpvpn vectors generate --out specs/vectors`")


def test_vector_files_stay_small() -> None:
    total = sum((VECTOR_DIR / name).stat().st_size for name in FILES)
    assert total < 2_000_000


@pytest.mark.requirement("RM-10")
def test_every_vector_replays_through_step_with_the_same_state_and_effects() -> None:
    vectors = _all_vectors()
    assert len(vectors) > 200
    for vector in vectors:
        assert replay_vector(vector) == [], vector["id"]


@pytest.mark.requirement("RM-10")
def test_every_vector_step_satisfies_every_invariant() -> None:
    for vector in _all_vectors():
        state = state_from_data(vector["state"])
        event = event_from_data(vector["event"])
        new, effects = step(state, event)
        assert check_step(state, event, new, effects) == [], vector["id"]


def test_vectors_cover_every_phase_and_event_kind_pair_for_both_roles() -> None:
    pairs = {(v["role"], v["phase"], v["event_kind"]) for v in _all_vectors()}
    for role in Role:
        for phase in Phase:
            for kind in EVENT_TYPES:
                assert (role.value, phase.value, kind.__name__) in pairs


def test_vectors_cover_every_reason_code_not_declared_unreachable() -> None:
    seen = {
        effect["reason"]
        for vector in _all_vectors()
        for effect in vector["expected"]["effects"]  # type: ignore[index]
        if "reason" in effect
    }
    expected = {r.value for r in ReasonCode} - {r.value for r in UNREACHABLE_REASONS}
    assert expected <= seen
    readme = (VECTOR_DIR / "README.md").read_text(encoding="utf-8")
    for reason in UNREACHABLE_REASONS:
        assert reason.value in readme


def test_a_tampered_vector_is_reported() -> None:
    vector = json.loads(json.dumps(_all_vectors()[5]))
    vector["expected"]["state"]["state_version"] += 1
    assert replay_vector(vector)


def test_event_json_form_round_trips_for_every_variant() -> None:
    for role in Role:
        for state in base_states(role)[:6]:
            for _label, event in event_variants(state):
                assert event_from_data(json.loads(json.dumps(event_to_data(event)))) == event


def test_cli_generates_and_checks_vectors(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vectors", "generate", "--out", str(tmp_path)]) == 0
    assert main(["vectors", "check", str(tmp_path / "server.jsonl")]) == 0
    assert "151/151 vectors match" in capsys.readouterr().out
    lines = (tmp_path / "client.jsonl").read_text(encoding="utf-8").splitlines()
    tampered = json.loads(lines[3])
    tampered["expected"]["effects"] = []
    (tmp_path / "bad.jsonl").write_text(json.dumps(tampered) + "\n", encoding="utf-8")
    assert main(["vectors", "check", str(tmp_path / "bad.jsonl")]) == 1
    assert main(["vectors", "check", str(tmp_path / "missing.jsonl")]) == 2
