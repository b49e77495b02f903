"""The data-plane counter window: each counter accepted once, bounded memory (§3.2, §5.1)."""

from __future__ import annotations

import pytest

from jumpvpn_core.transports.counter_window import DATA_REPLAY_WINDOW_BITS, CounterWindow


@pytest.mark.requirement("RM-3.2")
def test_each_counter_is_accepted_once_in_any_order_within_the_window() -> None:
    window = CounterWindow()
    order = [5, 1, 3, 2, 4, 100, 99, 5, 1, 100]
    assert [window.accept(c) for c in order] == [True] * 7 + [False] * 3


@pytest.mark.requirement("RM-5.1")
def test_counters_older_than_the_window_and_zero_are_refused() -> None:
    window = CounterWindow()
    assert window.accept(DATA_REPLAY_WINDOW_BITS + 10)
    assert not window.accept(10)  # exactly the window behind the top: too old
    assert window.accept(11)
    assert not window.accept(0)


def test_send_counters_start_at_one_and_grow_by_one() -> None:
    window = CounterWindow()
    assert [window.next_counter() for _ in range(3)] == [1, 2, 3]


def test_fresh_answers_like_accept_without_marking() -> None:
    window = CounterWindow(floor=10)
    assert not window.fresh(10)  # at the floor
    assert window.fresh(11)
    assert window.fresh(11)  # asking twice marks nothing
    assert window.accept(11)
    assert not window.fresh(11)
    assert not window.accept(11)
    assert window.top == 11


def test_a_floor_refuses_everything_at_or_below_it_and_never_lowers() -> None:
    window = CounterWindow()
    assert window.accept(3)
    window.raise_floor(100)
    window.raise_floor(50)  # never lowers
    assert window.top == 100
    assert not window.accept(100)
    assert not window.accept(99)
    assert window.accept(101)
