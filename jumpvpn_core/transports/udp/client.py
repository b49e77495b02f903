"""The client driver: one session, one or more local sockets, a sequenced payload stream.

Datagrams become core events through `jumpvpn_core.peer` (a challenge or accept is the
server's effect as the wire carries it, arriving on the socket it came to); acknowledged
payloads and silence become `PacketLoss` / `DeliveryTimeout` through the sans-IO
`LossDetector`. One timer is armed at the earliest of the core's `next_deadline`, the loss
detector's deadline and the payload / keepalive schedule: nothing polls.
"""

from __future__ import annotations

import asyncio

import attrs

from jumpvpn_core import peer
from jumpvpn_core.effects import (
    BindTransport,
    Effect,
    Rejected,
    SendReattachRequest,
    SessionEnded,
    StateChanged,
)
from jumpvpn_core.events import (
    Attach,
    CandidateDiscovered,
    Close,
    DeliveryTimeout,
    Event,
    InboundTraffic,
    PacketLoss,
    Tick,
    TransportFailed,
)
from jumpvpn_core.machine import next_deadline, step
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.state import SessionState, new_session
from jumpvpn_core.transport import TransportDescriptor, TransportKind
from jumpvpn_core.transports.counter_window import CounterWindow
from jumpvpn_core.transports.errors import HandshakeError, HandshakeTimeoutError, TransportError
from jumpvpn_core.transports.handshake import (
    HandshakeKeys,
    Initiator,
    authentic,
    derive_data_key,
    seal,
)
from jumpvpn_core.transports.loss import LossDetector
from jumpvpn_core.transports.udp.endpoint import (
    Driver,
    Endpoint,
    Observer,
    Tap,
    decoding,
    open_endpoint,
    positive,
)
from jumpvpn_core.transports.wire import (
    NO_COOKIE,
    TAG_SIZE,
    CookieReply,
    DataMessage,
    HandshakeInit,
    HandshakeResponse,
    HeartbeatMessage,
    Message,
    PathChallengeMessage,
    ReattachAcceptMessage,
    carried_effect,
    encode,
    message_for,
)

__all__ = ["ClientConfig", "UdpClient"]

_ZERO_TAG = bytes(TAG_SIZE)
_CATCH_UP = 8  # payloads sent at most per timer, never a burst after a pause


@attrs.frozen
class ClientConfig:
    """Driver timing for the client (integer ms). Core bounds live in `Policy`.

    `tick_ms` is accepted for compatibility and unused: the timer is armed at the next
    deadline, not on a period.
    """

    tick_ms: int = attrs.field(default=10, validator=positive)
    data_interval_ms: int = attrs.field(default=10, validator=positive)
    payload_size: int = attrs.field(default=32, validator=positive)
    ack_timeout_ms: int = attrs.field(default=250, validator=positive)
    reorder_threshold: int = attrs.field(default=3, validator=positive)
    delivery_timeout_ms: int = attrs.field(default=1_000, validator=positive)
    keepalive_ms: int = attrs.field(default=250, validator=positive)
    handshake_timeout_ms: int = attrs.field(default=2_000, validator=positive)
    handshake_attempts: int = attrs.field(default=4, validator=positive)


class UdpClient(Driver):
    """The client role: one or more local sockets, one session, a sequenced payload stream.

    Create with `await UdpClient.connect(server_address)`. Move with `await rebind(...)`.
    """

    role = Role.CLIENT

    def __init__(self, server: TransportDescriptor, policy: Policy | None,
                 config: ClientConfig | None, observer: Observer | None,
                 tap: Tap | None) -> None:
        if server.kind is not TransportKind.UDP:
            raise TransportError(f"server must be a udp transport, got {server}")
        super().__init__(observer)
        self.server = server
        self._policy = policy
        self.config = config if config is not None else ClientConfig()
        self._tap = tap
        self._sockets: dict[TransportDescriptor, Endpoint] = {}
        self._state: SessionState | None = None
        self._data_key = b""
        self._window = CounterWindow()
        self._active: TransportDescriptor | None = None
        self._handshake: tuple[Initiator, asyncio.Future[HandshakeKeys]] | None = None
        self._handshake_endpoint: Endpoint | None = None
        self._cookie = NO_COOKIE
        self._cookie_replies = 0
        self._closed = False
        self.ended = asyncio.Event()
        #: Every BindTransport the client executed.
        self.switches: list[BindTransport] = []
        # payload stream
        self.next_seq = 1
        self.injected_lost: set[int] = set()
        self._drop_next = 0
        self._loss = LossDetector(ack_timeout_ms=self.config.ack_timeout_ms,
                                  reorder_threshold=self.config.reorder_threshold,
                                  delivery_timeout_ms=self.config.delivery_timeout_ms)
        self._streaming = False
        self._next_send_ms = 0
        self._last_tx_ms = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def connect(cls, server: TransportDescriptor, *, local_host: str = "127.0.0.1",
                      local_port: int = 0, policy: Policy | None = None,
                      config: ClientConfig | None = None, observer: Observer | None = None,
                      tap: Tap | None = None) -> UdpClient:
        """Bind a local socket, run the reference handshake and attach the session.

        Raises `AddressInUseError`/`TransportError` if the socket cannot be bound and
        `HandshakeTimeoutError` if the server does not answer.
        """
        self = cls(server, policy, config, observer, tap)
        first = await self._open(local_host, local_port)
        try:
            keys = await self._run_handshake(first)
        except BaseException:
            self._close_sockets()
            raise
        now = self._clock.now_ms()
        self._state = new_session(Role.CLIENT, keys.session_id, keys.secret, now, policy)
        self._data_key = derive_data_key(self._state.ident.control_key, keys.session_id)
        self._window = CounterWindow()
        self._last_tx_ms = self._next_send_ms = now
        self._loss.heard(now)
        self._apply(Attach(now, first.descriptor))
        return self

    async def close(self) -> None:
        """End the session (`Close`) if it is live, disarm the timer, close every socket."""
        if self._state is not None and self._state.phase is not Phase.TERMINATED:
            self._apply(Close(self._clock.now_ms()))
        self._closed = True
        self._timer.cancel()
        self._close_sockets()

    # -- introspection -----------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """The current session state (after the handshake)."""
        if self._state is None:
            raise TransportError("the client has no session yet")
        return self._state

    @property
    def session_id(self) -> bytes:
        """The session id; it never changes, whatever the transport does."""
        return self.state.session_id

    @property
    def local(self) -> TransportDescriptor | None:
        """The local transport the session's traffic currently uses."""
        return self._active

    @property
    def sent_seqs(self) -> range:
        """Every payload sequence number handed to the network (or to injected loss)."""
        return range(1, self.next_seq)

    @property
    def declared_lost(self) -> int:
        """Payloads the loss detector declared lost so far."""
        return self._loss.declared_lost

    # -- controls ----------------------------------------------------------------------------

    def start_stream(self) -> None:
        """Send one payload datagram every `data_interval_ms` while a path is usable."""
        self._streaming = True
        self._next_send_ms = self._clock.now_ms()
        self._arm()

    def stop_stream(self) -> None:
        """Stop sending payload (keepalives continue)."""
        self._streaming = False

    def inject_loss(self, count: int) -> None:
        """Drop the next `count` payload datagrams before they reach the socket."""
        if type(count) is not int or count < 1:
            raise ValueError("count must be a positive int")
        self._drop_next += count

    async def rebind(self, host: str | None = None, port: int = 0) -> TransportDescriptor:
        """Move the session to a new local socket (new port, or new address with `host`).

        The old socket is closed at once (as when a NAT or an interface drops it): the core
        sees `CandidateDiscovered(new)` then `TransportFailed(old)`, recovers through the
        new socket, and the server validates the new path before binding it.
        """
        old = self._active
        if host is None:
            host = old.host if old is not None else "127.0.0.1"
        endpoint = await self._open(host, port)
        now = self._clock.now_ms()
        self._apply(CandidateDiscovered(now, endpoint.descriptor))
        if old is not None:
            old_endpoint = self._sockets.pop(old, None)
            if old_endpoint is not None:
                old_endpoint.close()
            self._loss.forget()  # their acknowledgements go to a socket that is gone
            self._apply(TransportFailed(now, old))
        return endpoint.descriptor

    # -- sockets and handshake ---------------------------------------------------------------

    async def _open(self, host: str, port: int) -> Endpoint:
        receive = decoding(self._receive, self.drops, expected=self.server)
        endpoint = await open_endpoint(host, port, receive)
        self._sockets[endpoint.descriptor] = endpoint
        return endpoint

    def _close_sockets(self) -> None:
        for endpoint in self._sockets.values():
            endpoint.close()
        self._sockets.clear()

    def _send(self, endpoint: Endpoint, datagram: bytes) -> bool:
        if not endpoint.send(datagram, self.server):
            self.drops["send_on_closed_socket"] += 1
            return False
        if self._tap is not None:
            self._tap(datagram, endpoint.descriptor, self.server)
        return True

    async def _run_handshake(self, endpoint: Endpoint) -> HandshakeKeys:
        initiator = Initiator()
        future: asyncio.Future[HandshakeKeys] = asyncio.get_running_loop().create_future()
        self._handshake = (initiator, future)
        self._handshake_endpoint = endpoint
        self._cookie, self._cookie_replies = NO_COOKIE, 0
        attempts = self.config.handshake_attempts
        wait_s = self.config.handshake_timeout_ms / attempts / 1000
        try:
            for _ in range(attempts):
                self._send(endpoint, encode(HandshakeInit(initiator.public, self._cookie)))
                try:
                    return await asyncio.wait_for(asyncio.shield(future), wait_s)
                except TimeoutError:
                    continue
        finally:
            self._handshake = None
            self._handshake_endpoint = None
            future.cancel()
        raise HandshakeTimeoutError(
            f"no handshake response from {self.server} within "
            f"{self.config.handshake_timeout_ms} ms ({attempts} attempts)"
        )

    def _on_cookie_reply(self, message: CookieReply) -> None:
        """The server is under load: repeat the initiation at once with its cookie (at most
        `handshake_attempts` times per handshake, so replies cannot make us loop)."""
        handshake, endpoint = self._handshake, self._handshake_endpoint
        if handshake is None or endpoint is None or handshake[1].done():
            self.drops["unexpected_cookie"] += 1
            return
        initiator = handshake[0]
        if message.client_public != initiator.public:
            self.drops["cookie_for_another_initiation"] += 1
            return
        if self._cookie_replies >= self.config.handshake_attempts:
            self.drops["cookie_replies_exhausted"] += 1
            return
        self._cookie_replies += 1
        self._cookie = message.cookie
        self._send(endpoint, encode(HandshakeInit(initiator.public, message.cookie)))

    def _on_handshake_response(self, message: HandshakeResponse) -> None:
        if self._handshake is None:
            self.drops["unexpected_handshake"] += 1
            return
        initiator, future = self._handshake
        if future.done():
            return
        try:
            future.set_result(initiator.finish(message.server_public, message.session_id))
        except HandshakeError:
            self.drops["handshake_mismatch"] += 1

    # -- core --------------------------------------------------------------------------------

    def _apply(self, event: Event) -> None:
        state = self._state
        if state is None:
            return
        new, effects = step(state, event)
        self._state = new
        now = event.now_ms
        for effect in effects:
            self._execute(effect, now)
        self._arm()

    def _execute(self, effect: Effect, now: int) -> None:
        if isinstance(effect, (StateChanged, Rejected)):
            self._record(effect, now)
        elif isinstance(effect, SendReattachRequest):
            endpoint = self._sockets.get(effect.via)
            if endpoint is None:
                self.drops["no_socket_for_effect"] += 1
                return
            self._send(endpoint, encode(message_for(effect)))
        elif isinstance(effect, BindTransport):
            previous = self._active
            self._active = effect.transport
            self.switches.append(effect)
            self._loss.forget()
            if previous is not None and previous != effect.transport:
                released = self._sockets.pop(previous, None)
                if released is not None:
                    released.close()
            self._notify(effect, now)
        elif isinstance(effect, SessionEnded):
            self._streaming = False
            self.ended.set()
            self._notify(effect, now)
        else:
            self.drops["effect_not_for_client"] += 1

    # -- receiving ---------------------------------------------------------------------------

    def _receive(self, message: Message, size: int, _source: TransportDescriptor,
                 endpoint: Endpoint) -> None:
        if isinstance(message, HandshakeResponse):
            self._on_handshake_response(message)
            return
        if isinstance(message, CookieReply):
            self._on_cookie_reply(message)
            return
        now = self._clock.now_ms()
        state = self._state
        if state is None or state.phase is Phase.TERMINATED:
            self.drops["no_live_session"] += 1
            return
        if getattr(message, "session_id", None) != state.session_id:
            self.drops["session_mismatch"] += 1
            return
        via = endpoint.descriptor
        if isinstance(message, (PathChallengeMessage, ReattachAcceptMessage)):
            self._apply(peer.received(carried_effect(message, self.server), now, via))
        elif isinstance(message, HeartbeatMessage):
            if not authentic(self._data_key, message):
                self.drops["bad_tag"] += 1
                return
            if not self._window.accept(message.counter):
                self.drops["replayed"] += 1  # before it counts as traffic at all
                return
            lost = self._loss.acked(message.seq, now)
            if lost:  # reported before the traffic that revealed it
                self._apply(PacketLoss(now, lost))
            self._loss.heard(now)
            self._apply(InboundTraffic(now, via, size))
        else:
            self.drops["unexpected_type"] += 1

    # -- timer -------------------------------------------------------------------------------

    def _usable_endpoint(self) -> Endpoint | None:
        state = self._state
        if state is None or self._active is None or state.link.active_failed:
            return None
        endpoint = self._sockets.get(self._active)
        if endpoint is None or endpoint.closed:
            return None
        return endpoint

    def _arm(self) -> None:
        state = self._state
        if state is None or self._closed or self.ended.is_set():
            self._timer.cancel()
            return
        deadline = next_deadline(state)
        for due in (self._loss.next_deadline(watch_silence=state.phase is Phase.ATTACHED),
                    self._send_due()):
            if due is not None and (deadline is None or due < deadline):
                deadline = due
        self._timer.arm(deadline)

    def _send_due(self) -> int | None:
        if self._usable_endpoint() is None:
            return None
        if self._streaming:
            return self._next_send_ms
        return self._last_tx_ms + self.config.keepalive_ms

    def _wake(self) -> None:
        state = self._state
        if state is not None and state.phase is not Phase.TERMINATED and not self._closed:
            self._on_timer(self._clock.now_ms())
        self._arm()

    def _on_timer(self, now: int) -> None:
        state = self._state
        assert state is not None
        deadline = next_deadline(state)
        if deadline is not None and now >= deadline:
            self._apply(Tick(now))
        lost = self._loss.expired(now)
        if lost:
            self._apply(PacketLoss(now, lost))
        if (self._state is not None and self._state.phase is Phase.ATTACHED
                and self._loss.silent(now)):
            self._apply(DeliveryTimeout(now))
        endpoint = self._usable_endpoint()
        if endpoint is None:
            return
        config = self.config
        if self._streaming:
            if self._next_send_ms < now - _CATCH_UP * config.data_interval_ms:
                self._next_send_ms = now
            sent = 0
            while self._next_send_ms <= now and sent < _CATCH_UP and not endpoint.closed:
                self._send_payload(endpoint, now)
                self._next_send_ms += config.data_interval_ms
                sent += 1
        elif now - self._last_tx_ms >= config.keepalive_ms:
            self._send(endpoint, seal(self._data_key, HeartbeatMessage(
                self.state.session_id, self._window.next_counter(), 0, _ZERO_TAG)))
            self._last_tx_ms = now

    def _send_payload(self, endpoint: Endpoint, now: int) -> None:
        seq = self.next_seq
        self.next_seq += 1
        body = seq.to_bytes(8, "big")
        payload = (body * (self.config.payload_size // 8 + 1))[:self.config.payload_size]
        datagram = seal(self._data_key, DataMessage(self.state.session_id,
                                                    self._window.next_counter(), seq, payload,
                                                    _ZERO_TAG))
        self._loss.sent(seq, now)
        if self._drop_next:
            self._drop_next -= 1
            self.injected_lost.add(seq)
            return
        self._send(endpoint, datagram)
        self._last_tx_ms = now
