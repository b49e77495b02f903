"""RM-3.2 / RM-5.1: the replay window rejects seen and too-old nonces in constant memory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jumpvpn_core.replay import ReplayVerdict, ReplayWindow, check_nonce, mark_nonce


@pytest.mark.requirement("RM-3.2")
def test_seen_nonce_is_rejected_and_fresh_nonce_accepted() -> None:
    window = ReplayWindow(size=64)
    after_five = window.accept(5)
    assert after_five is not None
    assert after_five.check(5) is ReplayVerdict.SEEN
    assert after_five.accept(5) is None
    assert after_five.check(4) is ReplayVerdict.FRESH
    assert after_five.check(6) is ReplayVerdict.FRESH


@pytest.mark.requirement("RM-3.2")
def test_nonce_outside_window_is_too_old() -> None:
    window = ReplayWindow(size=64).accept(100)
    assert window is not None
    assert window.check(100 - 63) is ReplayVerdict.FRESH
    assert window.check(100 - 64) is ReplayVerdict.TOO_OLD
    assert window.check(0) is ReplayVerdict.TOO_OLD


@pytest.mark.requirement("RM-5.1")
@given(st.lists(st.integers(min_value=1, max_value=1 << 40), max_size=300))
def test_window_memory_is_bounded_and_matches_a_set_model(nonces: list[int]) -> None:
    size = 128
    top, bits = 0, 0
    accepted: set[int] = set()
    for nonce in nonces:
        verdict = check_nonce(top, bits, size, nonce)
        if nonce in accepted:
            assert verdict is not ReplayVerdict.FRESH
        elif nonce <= top - size:
            assert verdict is ReplayVerdict.TOO_OLD
        else:
            assert verdict is ReplayVerdict.FRESH
        if verdict is ReplayVerdict.FRESH:
            top, bits = mark_nonce(top, bits, size, nonce)
            accepted.add(nonce)
        assert bits.bit_length() <= size
        assert bits.bit_length() <= size
        assert top == max(accepted, default=0)


@pytest.mark.requirement("RM-3.2")
def test_older_nonce_accepted_out_of_order_is_then_seen() -> None:
    top, bits = mark_nonce(0, 0, 64, 10)
    assert check_nonce(top, bits, 64, 5) is ReplayVerdict.FRESH
    top, bits = mark_nonce(top, bits, 64, 5)
    assert (top, bits) == (10, 0b100001)
    assert check_nonce(top, bits, 64, 5) is ReplayVerdict.SEEN
    assert check_nonce(top, bits, 64, 10) is ReplayVerdict.SEEN
    for fresh in (4, 6, 9, 11):
        assert check_nonce(top, bits, 64, fresh) is ReplayVerdict.FRESH


@pytest.mark.requirement("RM-3.2")
@given(st.lists(st.integers(min_value=1, max_value=200), max_size=200))
def test_window_matches_a_set_model_with_dense_repeats(nonces: list[int]) -> None:
    size = 64
    top, bits = 0, 0
    accepted: set[int] = set()
    for nonce in nonces:
        verdict = check_nonce(top, bits, size, nonce)
        if nonce <= top - size:
            assert verdict is ReplayVerdict.TOO_OLD
        elif nonce in accepted:
            assert verdict is ReplayVerdict.SEEN
        else:
            assert verdict is ReplayVerdict.FRESH
            top, bits = mark_nonce(top, bits, size, nonce)
            accepted.add(nonce)
        assert bits.bit_length() <= size


@pytest.mark.requirement("RM-5.1")
def test_sliding_one_nonce_at_a_time_keeps_exactly_the_window() -> None:
    size = 64
    top, bits = 0, 0
    for nonce in range(1, 3 * size):
        top, bits = mark_nonce(top, bits, size, nonce)
        assert bits == (1 << min(nonce, size)) - 1
