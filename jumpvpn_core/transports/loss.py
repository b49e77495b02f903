"""Sans-IO loss detection for an acknowledged payload stream.

`LossDetector` answers two questions a driver must turn into core events, and nothing
else: which sent payloads are lost (`PacketLoss(now, count)`), and when the path has gone
silent (`DeliveryTimeout(now)`). It keeps no clock: every call takes `now_ms` (integer
milliseconds), and `next_deadline()` says when the detector next needs to be asked, so a
driver arms one timer instead of polling. Same calls, same answers, bit for bit.

Rules (after QUIC's loss detection, RFC 9002 §6.1, reduced to what the core needs):

* **Packet threshold.** When payload `seq` is acknowledged, every payload still
  unacknowledged that is at least `reorder_threshold` numbers older is lost.
* **Time threshold.** A payload unacknowledged `ack_timeout_ms` after it was sent is lost.
* **Silence.** `delivery_timeout_ms` after the last authenticated inbound traffic the path
  is silent; that is reported once per silent period (traffic heard again starts a new one).

Users: the reference UDP client (`jumpvpn_core.transports.udp.client`) feeds it real
datagrams. A simulator reuses it as is: call `sent(seq, now)` for each payload or
heartbeat it numbers, `acked(seq, now)` and `heard(now)` when the echo arrives, and at
`next_deadline()` call `expired(now)` / `silent(now)`; turn a non-zero count into
`PacketLoss(now, count)` and a True silence into `DeliveryTimeout(now)`.

The module is pure (no clock, randomness or I/O; an import-linter contract checks it), so
the simulator can import it without importing the asyncio drivers.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["LossDetector"]


def _check_positive(name: str, value: object) -> int:
    if type(value) is not int or value < 1:
        raise ValueError(f"{name} must be a positive int")
    return value


class LossDetector:
    """Outstanding payloads of one stream, and the time the path was last heard.

    Sequence numbers must be handed to `sent` in increasing order (a payload stream numbers
    them so); times never go backwards.
    """

    __slots__ = ("_ack_timeout", "_delivery_timeout", "_last_heard", "_outstanding",
                 "_reorder", "_silence_reported", "declared_lost")

    def __init__(self, *, ack_timeout_ms: int, reorder_threshold: int,
                 delivery_timeout_ms: int, now_ms: int = 0) -> None:
        self._ack_timeout = _check_positive("ack_timeout_ms", ack_timeout_ms)
        self._reorder = _check_positive("reorder_threshold", reorder_threshold)
        self._delivery_timeout = _check_positive("delivery_timeout_ms", delivery_timeout_ms)
        # seq -> time sent; insertion order is seq order, so lost payloads are a prefix.
        self._outstanding: OrderedDict[int, int] = OrderedDict()
        self._last_heard = now_ms
        self._silence_reported = False
        #: Payloads declared lost so far (packet and time threshold together).
        self.declared_lost = 0

    @property
    def outstanding(self) -> int:
        """How many sent payloads are neither acknowledged nor declared lost."""
        return len(self._outstanding)

    def sent(self, seq: int, now_ms: int) -> None:
        """Payload `seq` left (or was handed to the network and dropped before it)."""
        self._outstanding[seq] = now_ms

    def acked(self, seq: int, now_ms: int) -> int:
        """Payload `seq` was acknowledged: how many older payloads that reveals as lost.

        An unknown number (0, a duplicate, one already declared lost) reveals nothing.
        """
        if self._outstanding.pop(seq, None) is None:
            return 0
        return self._declare_lost(seq - self._reorder, -1)

    def heard(self, now_ms: int) -> None:
        """Authenticated traffic arrived: the path is not silent (a new silent period)."""
        self._last_heard = now_ms
        self._silence_reported = False

    def expired(self, now_ms: int) -> int:
        """How many payloads passed `ack_timeout_ms` unacknowledged (now declared lost)."""
        return self._declare_lost(-1, now_ms - self._ack_timeout)

    def silent(self, now_ms: int) -> bool:
        """True, once per silent period, when nothing was heard for `delivery_timeout_ms`."""
        if self._silence_reported or now_ms - self._last_heard < self._delivery_timeout:
            return False
        self._silence_reported = True
        return True

    def forget(self) -> None:
        """Drop every outstanding payload without declaring it lost (its acknowledgement
        can no longer arrive: the socket it would come to is gone, or the path changed)."""
        self._outstanding.clear()

    def _declare_lost(self, seq_at_most: int, sent_at_most: int) -> int:
        # Outstanding payloads are in seq order and so in send-time order: the lost ones
        # (numbered <= seq_at_most, or sent <= sent_at_most) are a prefix.
        outstanding = self._outstanding
        lost = 0
        for seq, sent_ms in outstanding.items():
            if seq > seq_at_most and sent_ms > sent_at_most:
                break
            lost += 1
        for _ in range(lost):
            outstanding.popitem(last=False)
        self.declared_lost += lost
        return lost

    def next_deadline(self, *, watch_silence: bool = True) -> int | None:
        """When `expired` or `silent` next has something to say, or None.

        `watch_silence=False` leaves silence out (a driver reports it only in some phases).
        """
        deadline: int | None = None
        if self._outstanding:
            deadline = next(iter(self._outstanding.values())) + self._ack_timeout
        if watch_silence and not self._silence_reported:
            silence = self._last_heard + self._delivery_timeout
            if deadline is None or silence < deadline:
                deadline = silence
        return deadline
