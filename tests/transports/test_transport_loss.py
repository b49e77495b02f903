"""The sans-IO loss detector: packet threshold, time threshold, silence, deadlines.

The property test replays random streams against a plain model of the rules (the
detector the UDP client used before it was extracted) and requires the same answers.
"""

from __future__ import annotations

import collections

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jumpvpn_core.transports.loss import LossDetector


def detector(now_ms: int = 0) -> LossDetector:
    return LossDetector(ack_timeout_ms=250, reorder_threshold=3, delivery_timeout_ms=1_000,
                        now_ms=now_ms)


@pytest.mark.requirement("RM-2.1")
def test_an_ack_declares_lost_every_payload_three_numbers_older() -> None:
    loss = detector()
    for seq in range(1, 11):
        loss.sent(seq, seq)
    assert loss.acked(5, 20) == 2  # 1 and 2 are lost; 3 and 4 may still be reordered
    assert loss.acked(6, 21) == 1  # now 3 is
    assert loss.acked(6, 22) == 0  # a duplicate reveals nothing
    assert loss.acked(1, 23) == 0  # nor does an ack of a payload already declared lost
    assert loss.acked(0, 24) == 0  # nor a keepalive
    assert loss.declared_lost == 3
    assert loss.outstanding == 5  # 4, 7, 8, 9, 10


@pytest.mark.requirement("RM-2.1")
def test_a_payload_unacknowledged_for_the_ack_timeout_is_lost() -> None:
    loss = detector()
    loss.sent(1, 0)
    loss.sent(2, 10)
    loss.sent(3, 20)
    assert loss.next_deadline(watch_silence=False) == 250
    assert loss.expired(249) == 0
    assert loss.expired(250) == 1
    assert loss.next_deadline(watch_silence=False) == 260
    assert loss.expired(1_000) == 2
    assert loss.next_deadline(watch_silence=False) is None
    assert loss.declared_lost == 3


@pytest.mark.requirement("RM-2.2")
def test_silence_is_reported_once_per_silent_period() -> None:
    loss = detector(now_ms=100)
    assert loss.next_deadline() == 1_100
    assert not loss.silent(1_099)
    assert loss.silent(1_100)
    assert not loss.silent(5_000)  # the same silent period
    assert loss.next_deadline() is None
    loss.heard(6_000)
    assert loss.next_deadline() == 7_000
    assert loss.silent(7_000)


def test_forgotten_payloads_are_never_declared_lost() -> None:
    loss = detector()
    loss.sent(1, 0)
    loss.sent(2, 0)
    loss.forget()
    assert loss.expired(10_000) == 0
    assert loss.acked(2, 10_000) == 0
    assert loss.declared_lost == 0


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="reorder_threshold"):
        LossDetector(ack_timeout_ms=1, reorder_threshold=0, delivery_timeout_ms=1)
    with pytest.raises(ValueError, match="ack_timeout_ms"):
        LossDetector(ack_timeout_ms=True, reorder_threshold=1, delivery_timeout_ms=1)


class _Model:
    """The rules written as plainly as possible (scan everything, every time)."""

    def __init__(self) -> None:
        self.outstanding: collections.OrderedDict[int, int] = collections.OrderedDict()
        self.last_rx = 0
        self.reported = False

    def acked(self, seq: int) -> int:
        if seq == 0 or self.outstanding.pop(seq, None) is None:
            return 0
        lost = [q for q in self.outstanding if q + 3 <= seq]
        for q in lost:
            del self.outstanding[q]
        return len(lost)

    def expired(self, now: int) -> int:
        lost = [q for q, sent in self.outstanding.items() if now - sent >= 250]
        for q in lost:
            del self.outstanding[q]
        return len(lost)

    def silent(self, now: int) -> bool:
        if not self.reported and now - self.last_rx >= 1_000:
            self.reported = True
            return True
        return False


_OPS = st.lists(st.tuples(st.sampled_from(["send", "ack", "expire", "silent", "heard",
                                           "forget"]),
                          st.integers(0, 400), st.integers(0, 12)), max_size=80)


@pytest.mark.requirement("RM-2.1")
@settings(max_examples=300, deadline=None)
@given(_OPS)
def test_the_detector_answers_as_the_plain_rules_do(ops: list[tuple[str, int, int]]) -> None:
    loss, model = detector(), _Model()
    now, next_seq = 0, 1
    for op, step_ms, back in ops:
        now += step_ms
        if op == "send":
            loss.sent(next_seq, now)
            model.outstanding[next_seq] = now
            next_seq += 1
        elif op == "ack":
            seq = max(0, next_seq - 1 - back)
            assert loss.acked(seq, now) == model.acked(seq)
        elif op == "expire":
            assert loss.expired(now) == model.expired(now)
        elif op == "silent":
            assert loss.silent(now) == model.silent(now)
        elif op == "heard":
            loss.heard(now)
            model.last_rx, model.reported = now, False
        else:
            loss.forget()
            model.outstanding.clear()
        assert loss.outstanding == len(model.outstanding)
        deadline = loss.next_deadline(watch_silence=False)
        oldest = min(model.outstanding.values(), default=None)
        assert deadline == (None if oldest is None else oldest + 250)

