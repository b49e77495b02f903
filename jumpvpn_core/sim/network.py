"""Network failure models for the simulator. Each model owns its own state and draws from
its session's seeded `random.Random`, so a world is reproducible and worlds (and the
sessions of one world) never share state.

Paths may also drift: a `DriftProfile` (from `LinkSpec.drift`) gives a path's one-way
delay and per-packet loss as piecewise-linear functions of virtual time, optionally
periodic, and `Drifting` applies that loss on top of the path's other models.
"""

from __future__ import annotations

import bisect
import itertools
import random
from typing import Any, Protocol

import attrs

__all__ = [
    "Blackout",
    "DriftProfile",
    "Drifting",
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


#: One point of a drift schedule: (time ms, one-way delay ms, per-packet loss in [0, 1]).
DriftPoint = tuple[int, int, float]


class DriftProfile:
    """A path's one-way delay and per-packet loss over virtual time: linear between the
    points of `points` ((time ms, one-way delay ms, loss), times strictly increasing).

    Not periodic (`period_ms == 0`): before the first point the first values hold, after
    the last the last ones. Periodic: the schedule repeats every `period_ms` (every point
    time is below it), and from the last point the values move linearly back to the first
    point's, reached at its time plus one period. Delays are integers (floor of the
    interpolation), losses floats: the same (profile, time) gives the same values on every
    platform.
    """

    __slots__ = ("_delays", "_losses", "_times", "period_ms")

    def __init__(self, points: tuple[DriftPoint, ...], period_ms: int = 0) -> None:
        if not points:
            raise ValueError("a drift profile needs at least one point")
        times = [t for t, _d, _l in points]
        if any(b <= a for a, b in itertools.pairwise(times)):
            raise ValueError("drift point times must be strictly increasing")
        ext = list(points)
        if period_ms:
            if times[0] < 0 or times[-1] >= period_ms:
                raise ValueError("periodic drift point times must lie in [0, period)")
            last, first = points[-1], points[0]
            ext = [(last[0] - period_ms, last[1], last[2]), *ext,
                   (first[0] + period_ms, first[1], first[2])]
        self.period_ms = period_ms
        self._times = [t for t, _d, _l in ext]
        self._delays = [d for _t, d, _l in ext]
        self._losses = [float(x) for _t, _d, x in ext]

    def _segment(self, time_ms: int) -> tuple[int, int]:
        """(index of the segment's left point, time folded into the period)."""
        if self.period_ms:
            time_ms %= self.period_ms
        right = bisect.bisect_right(self._times, time_ms)
        return right - 1, time_ms

    def delay_at(self, time_ms: int) -> int:
        """One-way delay (ms) at `time_ms` of the profile's own time."""
        left, t = self._segment(time_ms)
        delays = self._delays
        if left < 0:
            return delays[0]
        if left >= len(delays) - 1:
            return delays[-1]
        t0, t1 = self._times[left], self._times[left + 1]
        d0, d1 = delays[left], delays[left + 1]
        return d0 + (d1 - d0) * (t - t0) // (t1 - t0)

    def loss_at(self, time_ms: int) -> float:
        """Per-packet loss probability (each direction) at `time_ms` of the profile's time."""
        left, t = self._segment(time_ms)
        losses = self._losses
        if left < 0:
            return losses[0]
        if left >= len(losses) - 1:
            return losses[-1]
        t0, t1 = self._times[left], self._times[left + 1]
        l0, l1 = losses[left], losses[left + 1]
        return l0 + (l1 - l0) * (t - t0) / (t1 - t0)


class Drifting:
    """The drifting part of a path's loss: a packet the `inner` model delivers is lost with
    the profile's current loss probability. `offset_ms` is where the session's own history
    stands at time 0 (profile time = `now_ms + offset_ms`). No draw while the loss is 0."""

    __slots__ = ("inner", "offset_ms", "profile")

    def __init__(self, profile: DriftProfile, offset_ms: int, inner: LinkModel) -> None:
        self.profile = profile
        self.offset_ms = offset_ms
        self.inner = inner

    def delivers(self, now_ms: int, rng: random.Random) -> bool:
        if not self.inner.delivers(now_ms, rng):
            return False
        loss = self.profile.loss_at(now_ms + self.offset_ms)
        return loss <= 0.0 or rng.random() >= loss


def _drift_points(value: Any) -> Any:
    """`LinkSpec.drift` as a tuple of tuples (JSON gives lists); anything else is left as
    it is for the validation to refuse by name."""
    if isinstance(value, list | tuple) and all(isinstance(p, list | tuple) for p in value):
        return tuple(tuple(p) for p in value)
    return value


@attrs.frozen
class LinkSpec:
    """How to build one path's models for one session. Probabilities are per packet.

    `blackout_probability`: the chance a session's path suffers one blackout, starting
    uniformly in `blackout_start_ms` and lasting uniformly in `blackout_length_ms`.
    `nat_rebind_mean_ms`: mean time between NAT rebindings of this path (0: never).
    `return_loss`: extra loss on the server -> client direction only (asymmetric path).
    `drift`: points (time ms, one-way delay ms, per-packet loss) of a `DriftProfile`,
    periodic with `drift_period_ms` when that is not 0; while set, the path's delay follows
    the profile (`one_way_delay_ms` is unused) and its loss is added in each direction.
    The world shifts every path of a session by the session's drift offset
    (`SimConfig.drift_offset_ms`). `jitter_ms`: a probe's round trip takes twice the
    one-way delay plus a uniform draw in [0, jitter_ms].
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
    drift: tuple[DriftPoint, ...] = attrs.field(default=(), converter=_drift_points)
    drift_period_ms: int = 0
    jitter_ms: int = 0

    def profile(self) -> DriftProfile | None:
        """This path's drift profile, or None when its delay and loss do not drift."""
        return DriftProfile(self.drift, self.drift_period_ms) if self.drift else None

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
