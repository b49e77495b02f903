"""`jumpvpn_core.records.fast_init`: the faster constructor changes nothing observable."""

from __future__ import annotations

import pickle

import attrs
import pytest

from jumpvpn_core.effects import Rejected
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.reasons import ReasonClass, ReasonCode
from jumpvpn_core.records import fast_init
from jumpvpn_core.state import Link


@fast_init
@attrs.frozen
class _Plain:
    a: int
    b: str




def test_fast_init_record_keeps_attrs_behaviour() -> None:
    record = _Plain(1, b="x")
    assert (record.a, record.b) == (1, "x")
    assert record == _Plain(1, "x")
    assert hash(record) == hash(_Plain(1, "x"))
    assert record != _Plain(2, "x")
    assert repr(record).endswith("_Plain(a=1, b='x')")
    assert attrs.evolve(record, b="y") == _Plain(1, "y")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        record.a = 2  # type: ignore[misc]  # proving assignment is refused at run time
    assert pickle.loads(pickle.dumps(record))  # noqa: S301  # our own bytes == record
    with pytest.raises(TypeError):
        _Plain(1)  # type: ignore[call-arg]  # proving the signature still requires b
    assert not hasattr(record, "__dict__")


def test_fast_init_core_records_equal_attrs_built_ones() -> None:
    link = Link(None, False, 5, 1, 4, True, 6)
    assert attrs.asdict(link) == {"active": None, "active_failed": False, "last_rx_ms": 5,
                                  "loss_streak": 1, "loss_start_ms": 4,
                                  "heard_in_phase": True, "clock_ms": 6}
    rejected = Rejected(bytes(16), Role.SERVER, ReasonCode.REPLAY_DETECTED,
                        ReasonClass.SECURITY_EVENT, Phase.ATTACHED, 3, "ReattachRequest", 9,
                        7, 2)
    assert rejected.to_record()["reason"] == "REPLAY_DETECTED"
    assert (rejected.to_record()["nonce"], rejected.to_record()["request_version"]) == (7, 2)
    assert pickle.loads(pickle.dumps(rejected))  # noqa: S301  # our own bytes == rejected


@pytest.mark.parametrize(
    "field",
    [
        attrs.field(validator=attrs.validators.instance_of(int)),
        attrs.field(default=0),
        attrs.field(converter=int),
        attrs.field(kw_only=True),
        attrs.field(init=False, default=0),
        attrs.field(alias="other"),
    ],
)
def test_fast_init_refuses_fields_it_would_skip(field: object) -> None:
    record = attrs.make_class("Record", {"a": field}, frozen=True, slots=True)
    with pytest.raises(TypeError):
        fast_init(record)


def test_fast_init_refuses_post_init_hooks_and_non_attrs_classes() -> None:
    @attrs.frozen
    class Hooked:
        a: int

        def __attrs_post_init__(self) -> None:
            pass

    with pytest.raises(TypeError):
        fast_init(Hooked)
    with pytest.raises(TypeError):
        fast_init(int)
