"""Network failure models for the simulator. Each model owns its own state and draws from
its session's seeded `random.Random`, so a world is reproducible and worlds (and the
sessions of one world) never share state.
"""

from __future__ import annotations

import random
from typing import Protocol

import attrs

__all__ = [
    "Blackout",
    "Flapping",
    "GilbertElliott",
    "LinkModel",
    "LinkSpec",
    "Perfect",
]


class LinkModel(Protocol):
    """One direction of one path: does a packet sent at `now_ms` arrive?"""

    def delivers(self, now_ms: int, rng: random.Random) -> bool:
        """Decide the fate of one packet."""
        ...


class Perfect:
    """Never loses anything."""

    def delivers(self, now_ms: int, rng: random.Random) -> bool:
        return True


class GilbertElliott:
    """Two-state Markov burst loss: a Good and a Bad state, each with its own loss rate.

    The state moves once per packet, so losses come in bursts whose mean length is
    `1 / p_bad_to_good` packets: the §2.1 "burst loss" that makes a path look dead.
    """

    __slots__ = ("_bad", "loss_bad", "loss_good", "p_bad_to_good", "p_good_to_bad")

    def __init__(self, p_good_to_bad: float, p_bad_to_good: float, loss_good: float,
                 loss_bad: float) -> None:
        for name, value in (("p_good_to_bad", p_good_to_bad), ("p_bad_to_good", p_bad_to_good),
                            ("loss_good", loss_good), ("loss_bad", loss_bad)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        self.p_good_to_bad = p_good_to_bad
        self.p_bad_to_good = p_bad_to_good
        self.loss_good = loss_good
        self.loss_bad = loss_bad
        self._bad = False

    def delivers(self, now_ms: int, rng: random.Random) -> bool:
        if self._bad:
            if rng.random() < self.p_bad_to_good:
                self._bad = False
        elif rng.random() < self.p_good_to_bad:
            self._bad = True
        return rng.random() >= (self.loss_bad if self._bad else self.loss_good)


class Blackout:
    """Drops everything inside `[start_ms, end_ms)`; elsewhere defers to `inner`."""

    __slots__ = ("end_ms", "inner", "start_ms")

    def __init__(self, start_ms: int, end_ms: int, inner: LinkModel) -> None:
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.inner = inner

    def delivers(self, now_ms: int, rng: random.Random) -> bool:
        if self.start_ms <= now_ms < self.end_ms:
            return False
        return self.inner.delivers(now_ms, rng)


class Flapping:
    """Down for `down_ms` at the start of every `period_ms` (offset by `offset_ms`)."""

    __slots__ = ("down_ms", "inner", "offset_ms", "period_ms")

    def __init__(self, period_ms: int, down_ms: int, offset_ms: int, inner: LinkModel) -> None:
        if not 0 < down_ms < period_ms:
            raise ValueError("flapping needs 0 < down_ms < period_ms")
        self.period_ms = period_ms
        self.down_ms = down_ms
        self.offset_ms = offset_ms
        self.inner = inner

    def is_down(self, now_ms: int) -> bool:
        """True while the path is in its down part of the period."""
        return (now_ms + self.offset_ms) % self.period_ms < self.down_ms

    def delivers(self, now_ms: int, rng: random.Random) -> bool:
        if self.is_down(now_ms):
            return False
        return self.inner.delivers(now_ms, rng)


@attrs.frozen
class LinkSpec:
    """How to build one path's models for one session. Probabilities are per packet.

    `blackout_probability`: the chance a session's path suffers one blackout, starting
    uniformly in `blackout_start_ms` and lasting uniformly in `blackout_length_ms`.
    `nat_rebind_mean_ms`: mean time between NAT rebindings of this path (0: never).
    `return_loss`: extra loss on the server -> client direction only (asymmetric path).
    """

    name: str
    one_way_delay_ms: int = 20
    p_good_to_bad: float = 0.0
    p_bad_to_good: float = 1.0
    loss_good: float = 0.0
    loss_bad: float = 0.0
    return_loss: float = 0.0
    blackout_probability: float = 0.0
    blackout_start_ms: tuple[int, int] = (0, 0)
    blackout_length_ms: tuple[int, int] = (0, 0)
    flap_period_ms: int = 0
    flap_down_ms: int = 0
    nat_rebind_mean_ms: int = 0

    def build(self, rng: random.Random) -> tuple[LinkModel, LinkModel, tuple[int, int] | None]:
        """(client->server model, server->client model, blackout window or None)."""
        up: LinkModel = Perfect()
        down: LinkModel = Perfect()
        if self.p_good_to_bad > 0.0 or self.loss_good > 0.0:
            up = GilbertElliott(self.p_good_to_bad, self.p_bad_to_good, self.loss_good,
                                self.loss_bad)
            down = GilbertElliott(self.p_good_to_bad, self.p_bad_to_good, self.loss_good,
                                  self.loss_bad)
        if self.return_loss > 0.0:
            down = GilbertElliott(0.0, 1.0, self.return_loss, self.return_loss)
        if self.flap_period_ms:
            offset = rng.randrange(self.flap_period_ms)
            up = Flapping(self.flap_period_ms, self.flap_down_ms, offset, up)
            down = Flapping(self.flap_period_ms, self.flap_down_ms, offset, down)
        window = None
        if self.blackout_probability > 0.0 and rng.random() < self.blackout_probability:
            start = rng.randint(*self.blackout_start_ms)
            window = (start, start + rng.randint(*self.blackout_length_ms))
            up = Blackout(window[0], window[1], up)
            down = Blackout(window[0], window[1], down)
        return up, down, window
