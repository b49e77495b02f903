"""`replay_vector` is total: a vector that is not one is a `VectorError`, nothing else.

Every part of a real vector is removed, retyped or garbled in turn, and Hypothesis
mutates whole vectors; the error never quotes the control key the vector carries.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jumpvpn_core.audit.vectors import VectorError, load_vectors, replay_vector
from jumpvpn_core.errors import JumpVpnError

VECTOR_DIR = Path(__file__).resolve().parents[1] / "specs" / "vectors"
VECTOR: dict[str, Any] = load_vectors(VECTOR_DIR / "server.jsonl")[3]
KEY = VECTOR["state"]["control_key"]


def _mutants() -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = [("not an object", []), ("a string", KEY), ("empty", {})]
    for path in (("state",), ("event",), ("expected",), ("expected", "unchanged"),
                 ("expected", "state"), ("expected", "effects")):
        for label, value in (("missing", None), ("retyped", 7), ("key", KEY),
                             ("nested", [[[]]])):
            vector = copy.deepcopy(VECTOR)
            parent = vector
            for key in path[:-1]:
                parent = parent[key]
            if label == "missing":
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
            out.append((f"{'.'.join(path)} {label}", vector))
    broken_state = copy.deepcopy(VECTOR)
    broken_state["state"]["phase"] = KEY
    out.append(("state phase holds the key", broken_state))
    broken_event = copy.deepcopy(VECTOR)
    broken_event["event"]["type"] = KEY
    out.append(("event type holds the key", broken_event))
    return out


_MUTANTS = _mutants()
_MISMATCH = "expected.effects nested"  # well-typed but wrong: a reported mismatch


@pytest.mark.parametrize(("label", "vector"), [m for m in _MUTANTS if m[0] != _MISMATCH],
                         ids=[m[0] for m in _MUTANTS if m[0] != _MISMATCH])
def test_a_broken_vector_is_a_vector_error_that_quotes_no_key(label: str, vector: Any) -> None:
    with pytest.raises(VectorError) as info:
        replay_vector(vector)
    assert isinstance(info.value, JumpVpnError)
    assert KEY not in str(info.value), label


def test_a_well_typed_wrong_part_is_a_mismatch() -> None:
    vector = dict(_MUTANTS)[_MISMATCH]
    assert replay_vector(vector)


def test_the_untouched_vector_still_matches() -> None:
    assert replay_vector(copy.deepcopy(VECTOR)) == []


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=10)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["state", "event", "expected"]), st.text(max_size=12), _json)
def test_any_one_field_replaced_gives_a_result_or_a_vector_error(part: str, key: str,
                                                                 value: Any) -> None:
    vector = json.loads(json.dumps(VECTOR))
    if isinstance(vector[part], dict) and key:
        vector[part][key] = value
    else:
        vector[part] = value
    try:
        problems = replay_vector(vector)
    except VectorError:
        return
    assert isinstance(problems, list)
