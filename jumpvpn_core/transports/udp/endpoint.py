"""Sockets, the clock and the timer: the only I/O of the UDP drivers.

* `Clock`: `loop.time()` (monotonic) as non-decreasing integer milliseconds, here and only
  here.
* `Endpoint`: one bound UDP socket. `open_endpoint` binds it (typed errors);
  `decoding(...)` is the one receive path of both drivers: source address, decode, drop
  and count by reason, then hand a typed message to the driver. A bad datagram never
  raises out of the protocol callback, so one datagram never stops the loop.
* `DeadlineTimer`: one `loop.call_at` armed at the earliest deadline a driver knows of,
  never a polling loop.
* `Driver`: what both drivers share (clock, timer, drop counters, audit tail, observer).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import os
import socket
from collections.abc import Callable
from typing import Any, cast

import attrs

from jumpvpn_core.effects import Effect, Rejected, StateChanged
from jumpvpn_core.errors import InvalidEventError, JumpVpnError
from jumpvpn_core.phases import Role
from jumpvpn_core.transport import TransportDescriptor
from jumpvpn_core.transports.errors import AddressInUseError, TransportError
from jumpvpn_core.transports.wire import Message, WireError, decode

__all__ = [
    "AUDIT_KEEP",
    "Clock",
    "DeadlineTimer",
    "Driver",
    "Endpoint",
    "Observer",
    "Tap",
    "decoding",
    "open_endpoint",
    "positive",
]

#: Called with (role, now_ms, effect) for audit records, switches, path challenges and
#: session ends.
#: It must not block; an exception it raises is counted and otherwise ignored (§6.1).
Observer = Callable[[Role, int, Effect], None]
#: Called with (datagram, local transport, remote transport) for every datagram sent.
Tap = Callable[[bytes, TransportDescriptor, TransportDescriptor], None]
#: What a socket hands over: the raw datagram, the sender's address tuple, the socket.
RawReceive = Callable[[bytes, tuple[Any, ...], "Endpoint"], None]
#: What a driver handles: a decoded message, its size, where it came from, the socket.
MessageReceive = Callable[[Message, int, TransportDescriptor, "Endpoint"], None]

#: How many audit effects a driver keeps (and datagrams a raw peer keeps).
AUDIT_KEEP = 10_000


def positive(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    """attrs validator of the drivers' configs: a positive int."""
    if type(value) is not int or value < 1:
        raise ValueError(f"{attr.name} must be a positive int, got {value!r}")


class Clock:
    """`loop.time()` as non-decreasing integer milliseconds."""

    __slots__ = ("_last", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._last = 0

    def now_ms(self) -> int:
        """The current time in integer milliseconds; never smaller than the last answer."""
        now = int(self._loop.time() * 1000)
        if now < self._last:
            return self._last
        self._last = now
        return now

    @staticmethod
    def loop_time(ms: int) -> float:
        """The `loop.time()` at which `now_ms()` first reads `ms` (half a millisecond of
        margin against float rounding)."""
        return (ms + 0.5) / 1000


class DeadlineTimer:
    """One timer, armed at the earliest deadline it is given (`loop.call_at`).

    `arm(at_ms)` keeps an earlier armed time and replaces a later one. When it fires it
    calls `callback()` once; the callback re-arms it at the next deadline. A deadline at or
    before the last firing is moved one millisecond after it, so a deadline that is still
    due after its callback ran cannot make the loop spin.
    """

    __slots__ = ("_at", "_callback", "_clock", "_fired_ms", "_handle", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Clock,
                 callback: Callable[[], None]) -> None:
        self._loop = loop
        self._clock = clock
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._at = 0
        self._fired_ms = -1

    @property
    def armed_at(self) -> int | None:
        """The deadline the timer is armed at, or None."""
        return self._at if self._handle is not None else None

    def arm(self, at_ms: int | None) -> None:
        """Fire at `at_ms` unless already armed no later; None leaves the timer as it is."""
        if at_ms is None:
            return
        if at_ms <= self._fired_ms:
            at_ms = self._fired_ms + 1
        if self._handle is not None:
            if self._at <= at_ms:
                return
            self._handle.cancel()
        self._at = at_ms
        self._handle = self._loop.call_at(Clock.loop_time(at_ms), self._fire)

    def cancel(self) -> None:
        """Disarm."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        self._fired_ms = self._clock.now_ms()
        self._callback()


class Endpoint(asyncio.DatagramProtocol):
    """One bound UDP socket."""

    def __init__(self, receive: RawReceive) -> None:
        self._receive = receive
        self.transport: asyncio.DatagramTransport | None = None
        # A duplicate descriptor of the same (non-blocking) socket, for `send_unbuffered`.
        self._raw: socket.socket | None = None
        self.descriptor: TransportDescriptor  # set by connection_made, before any use
        self.closed = False
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        host, port = transport.get_extra_info("sockname")[:2]
        self.descriptor = TransportDescriptor.udp(host, port)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._raw = socket.socket(fileno=os.dup(sock.fileno()))

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if not self.closed:
            self._receive(data, addr, self)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable after a peer moved) are normal for UDP: count only.
        self.errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._close_raw()

    def _close_raw(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def send(self, datagram: bytes, to: TransportDescriptor) -> bool:
        """Send one datagram; False (nothing sent) once the socket is closed."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return False
        self.transport.sendto(datagram, (to.host, to.port))
        return True

    def send_unbuffered(self, datagram: bytes, addr: tuple[Any, ...]) -> bool:
        """Send one datagram now or never: no buffering when the socket is full, no event
        loop bookkeeping (for answers to floods, where dropping is right). False if not
        sent."""
        raw = self._raw
        if raw is None or self.closed:
            return False
        try:
            raw.sendto(datagram, addr)
        except OSError:
            self.errors += 1
            return False
        return True

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.closed = True
        self._close_raw()
        if self.transport is not None:
            self.transport.close()


async def open_endpoint(host: str, port: int, receive: RawReceive) -> Endpoint:
    """Bind a UDP socket. `AddressInUseError` if taken, `TransportError` otherwise."""
    loop = asyncio.get_running_loop()
    try:
        _, endpoint = await loop.create_datagram_endpoint(
            lambda: Endpoint(receive), local_addr=(host, port)
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUseError(host, port) from None
        raise TransportError(f"cannot bind udp {host}:{port}: {exc.strerror or exc}") from None
    return endpoint


def decoding(handle: MessageReceive, drops: collections.Counter[str],
             expected: TransportDescriptor | None = None) -> RawReceive:
    """The receive path of a driver: datagram -> source -> message -> `handle`.

    Each refusal is counted in `drops` by reason and stops there: a source that is not a
    UDP address (`bad_source`), a sender other than `expected` when one is given
    (`unexpected_peer`), a datagram that does not decode (its `WireError` reason), and a
    message the driver's event construction refuses (`invalid_event`).
    """

    def receive(data: bytes, addr: tuple[Any, ...], endpoint: Endpoint) -> None:
        try:
            source = TransportDescriptor.udp(str(addr[0]), int(addr[1]))
        except JumpVpnError:
            drops["bad_source"] += 1
            return
        if expected is not None and source != expected:
            drops["unexpected_peer"] += 1
            return
        try:
            message = decode(data)
        except WireError as exc:
            drops[exc.reason.value] += 1
            return
        try:
            handle(message, len(data), source, endpoint)
        except (InvalidEventError, WireError):
            drops["invalid_event"] += 1

    return receive


class Driver:
    """The part both drivers share: the clock, one deadline timer, drop counters by reason,
    the latest audit effects and the observer. A driver implements `_wake()` (the timer
    fired) and re-arms `_timer` at its next deadline."""

    role: Role

    def __init__(self, observer: Observer | None) -> None:
        loop = asyncio.get_running_loop()
        self._observer = observer
        self._clock = Clock(loop)
        self._timer = DeadlineTimer(loop, self._clock, self._fired)
        #: Datagrams dropped (or effects and sends refused), by reason.
        self.drops: collections.Counter[str] = collections.Counter()
        #: The latest audit effects, with the time they happened.
        self.audit: collections.deque[tuple[int, StateChanged | Rejected]] = (
            collections.deque(maxlen=AUDIT_KEEP))
        #: How many times the timer fired (it is armed at the next deadline; nothing polls).
        self.wakeups = 0

    def _fired(self) -> None:
        self.wakeups += 1
        self._wake()

    def _wake(self) -> None:
        raise NotImplementedError

    def _record(self, effect: StateChanged | Rejected, now: int) -> None:
        self.audit.append((now, effect))
        self._notify(effect, now)

    def _notify(self, effect: Effect, now: int) -> None:
        """Tell the observer about `effect`; one that raises is counted, never fatal."""
        if self._observer is None:
            return
        try:
            self._observer(self.role, now, effect)
        except Exception:  # a failing observer must never stop a transition (§6.1)
            self.drops["observer_error"] += 1
