"""asyncio UDP drivers for both roles of the sans-IO core.

The drivers are thin: they turn datagrams and timers into core events, call `step()`, and
execute the effects it returns, in order. They own all I/O and the clock; the core owns
every decision. Specifically:

* Clock: `loop.time()` (monotonic) converted to integer milliseconds here and only here.
* A malformed datagram is dropped and counted by reason (`drops`); the receive path never
  raises out of the protocol callback, so one bad datagram never stops the loop.
* `UdpServer` never sends payload traffic (acknowledgements) to an address that is not the
  validated binding of a session. Everything else it sends to an unvalidated address
  (handshake responses, path challenges) passes an amplification guard that counts real
  bytes: at most `policy.amplification_factor` times what that address sent.
* Server sessions live behind the small `SessionHost` interface (`open`, `handle`, `tick`);
  `LocalSessionHost` keeps them in a dict. A gateway (session table, shared store) can
  replace it without touching the socket code.
* Payload: a sequenced test stream. The client numbers DATA datagrams from 1; the server
  records each delivered number and acknowledges it with a HEARTBEAT. The client's loss
  detector (packet threshold on acknowledgements, plus a time threshold) feeds `PacketLoss`;
  silence feeds `DeliveryTimeout`.

Reference quality: one process, one clock. Proof freshness compares client and server
timestamps, so across hosts an embedder must use a shared time base.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import hmac
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import attrs

from jumpvpn_core.effects import (
    BindTransport,
    Effect,
    Rejected,
    SendPathChallenge,
    SendReattachAccept,
    SendReattachRequest,
    SessionEnded,
    StateChanged,
)
from jumpvpn_core.errors import InvalidEventError, JumpVpnError
from jumpvpn_core.events import (
    Attach,
    CandidateDiscovered,
    Close,
    DeliveryTimeout,
    Event,
    InboundTraffic,
    PacketLoss,
    PathChallengeReceived,
    ReattachAccepted,
    ReattachRequest,
    Tick,
    TransportFailed,
)
from jumpvpn_core.machine import next_deadline, step
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.state import SessionState, new_session
from jumpvpn_core.transport import TransportDescriptor, TransportKind
from jumpvpn_core.transports.counter_window import CounterWindow
from jumpvpn_core.transports.errors import (
    AddressInUseError,
    HandshakeError,
    HandshakeTimeoutError,
    TransportError,
)
from jumpvpn_core.transports.handshake import (
    HandshakeKeys,
    Initiator,
    data_tag,
    derive_data_key,
    respond,
)
from jumpvpn_core.transports.wire import (
    TAG_SIZE,
    DataMessage,
    HandshakeInit,
    HandshakeResponse,
    HeartbeatMessage,
    Message,
    PathChallengeMessage,
    ReattachAcceptMessage,
    ReattachRequestMessage,
    WireError,
    decode,
    encode,
)

__all__ = [
    "ClientConfig",
    "LocalSessionHost",
    "Observer",
    "RawUdpPeer",
    "ServerConfig",
    "SessionHost",
    "SessionTableError",
    "Tap",
    "UdpClient",
    "UdpServer",
]

#: Called with (role, now_ms, effect) for audit records, switches, path challenges and
#: session ends.
#: It must not block; an exception it raises is counted and otherwise ignored (§6.1).
Observer = Callable[[Role, int, Effect], None]
#: Called with (datagram, local transport, remote transport) for every datagram sent.
Tap = Callable[[bytes, TransportDescriptor, TransportDescriptor], None]

_AUDIT_KEEP = 10_000
_ZERO_TAG = bytes(TAG_SIZE)


def _positive(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"{attr.name} must be a positive int, got {value!r}")


class _Clock:
    """`loop.time()` as non-decreasing integer milliseconds."""

    __slots__ = ("_last", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._last = 0

    def now_ms(self) -> int:
        now = max(self._last, int(self._loop.time() * 1000))
        self._last = now
        return now


# --- sockets ---------------------------------------------------------------------------------

_Receive = Callable[[bytes, tuple[Any, ...], "_Endpoint"], None]


class _Endpoint(asyncio.DatagramProtocol):
    """One bound UDP socket."""

    def __init__(self, receive: _Receive) -> None:
        self._receive = receive
        self.transport: asyncio.DatagramTransport | None = None
        self.descriptor: TransportDescriptor  # set by connection_made, before any use
        self.closed = False
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        host, port = transport.get_extra_info("sockname")[:2]
        self.descriptor = TransportDescriptor.udp(host, port)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if not self.closed:
            self._receive(data, addr, self)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable after a peer moved) are normal for UDP: count only.
        self.errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def send(self, datagram: bytes, to: TransportDescriptor) -> bool:
        if self.closed or self.transport is None or self.transport.is_closing():
            return False
        self.transport.sendto(datagram, (to.host, to.port))
        return True

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


async def _open_endpoint(host: str, port: int, receive: _Receive) -> _Endpoint:
    loop = asyncio.get_running_loop()
    try:
        _, endpoint = await loop.create_datagram_endpoint(
            lambda: _Endpoint(receive), local_addr=(host, port)
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUseError(host, port) from None
        raise TransportError(f"cannot bind udp {host}:{port}: {exc.strerror or exc}") from None
    return endpoint


def _notify(observer: Observer | None, drops: collections.Counter[str], role: Role, now: int,
            effect: Effect) -> None:
    if observer is None:
        return
    try:
        observer(role, now, effect)
    except Exception:  # a failing observer must never stop a transition (§6.1)
        drops["observer_error"] += 1


def _signed_data(key: bytes, session_id: bytes, counter: int, seq: int,
                 payload: bytes) -> bytes:
    draft = DataMessage(session_id, counter, seq, payload, _ZERO_TAG)
    return encode(attrs.evolve(draft, tag=data_tag(key, draft.tag_input())))


def _signed_heartbeat(key: bytes, session_id: bytes, counter: int, seq: int) -> bytes:
    draft = HeartbeatMessage(session_id, counter, seq, _ZERO_TAG)
    return encode(attrs.evolve(draft, tag=data_tag(key, draft.tag_input())))


def _tag_ok(key: bytes, message: DataMessage | HeartbeatMessage) -> bool:
    return hmac.compare_digest(data_tag(key, message.tag_input()), message.tag)


# --- client ----------------------------------------------------------------------------------


@attrs.frozen
class ClientConfig:
    """Driver timing for the client (integer ms). Core bounds live in `Policy`."""

    tick_ms: int = attrs.field(default=10, validator=_positive)
    data_interval_ms: int = attrs.field(default=10, validator=_positive)
    payload_size: int = attrs.field(default=32, validator=_positive)
    ack_timeout_ms: int = attrs.field(default=250, validator=_positive)
    reorder_threshold: int = attrs.field(default=3, validator=_positive)
    delivery_timeout_ms: int = attrs.field(default=1_000, validator=_positive)
    keepalive_ms: int = attrs.field(default=250, validator=_positive)
    handshake_timeout_ms: int = attrs.field(default=2_000, validator=_positive)
    handshake_attempts: int = attrs.field(default=4, validator=_positive)


class UdpClient:
    """The client role: one or more local sockets, one session, a sequenced payload stream.

    Create with `await UdpClient.connect(server_address)`. Move with `await rebind(...)`.
    """

    def __init__(self, server: TransportDescriptor, policy: Policy | None,
                 config: ClientConfig | None, observer: Observer | None,
                 tap: Tap | None) -> None:
        if server.kind is not TransportKind.UDP:
            raise TransportError(f"server must be a udp transport, got {server}")
        self.server = server
        self._policy = policy
        self.config = config if config is not None else ClientConfig()
        self._observer = observer
        self._tap = tap
        self._clock = _Clock(asyncio.get_running_loop())
        self._sockets: dict[TransportDescriptor, _Endpoint] = {}
        self._state: SessionState | None = None
        self._data_key = b""
        self._window = CounterWindow()
        self._active: TransportDescriptor | None = None
        self._handshake: tuple[Initiator, asyncio.Future[HandshakeKeys]] | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._closed = False
        self.ended = asyncio.Event()
        #: Datagrams dropped on receive (or effects not executable), by reason.
        self.drops: collections.Counter[str] = collections.Counter()
        #: The latest audit effects, with the time they happened.
        self.audit: collections.deque[tuple[int, StateChanged | Rejected]] = (
            collections.deque(maxlen=_AUDIT_KEEP))
        #: Every BindTransport the client executed.
        self.switches: list[BindTransport] = []
        # payload stream
        self.next_seq = 1
        self.injected_lost: set[int] = set()
        self.declared_lost = 0
        self._drop_next = 0
        self._outstanding: collections.OrderedDict[int, int] = collections.OrderedDict()
        self._streaming = False
        self._next_send_ms = 0
        self._last_rx_ms = 0
        self._last_tx_ms = 0
        self._timeout_reported = False

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
        self._data_key = derive_data_key(keys.secret, keys.session_id)
        self._window = CounterWindow()
        self._state = new_session(Role.CLIENT, keys.session_id, keys.secret, now, policy)
        self._last_rx_ms = self._last_tx_ms = self._next_send_ms = now
        self._apply(Attach(now, first.descriptor))
        self._pump_task = asyncio.get_running_loop().create_task(self._pump())
        return self

    async def close(self) -> None:
        """End the session (`Close`) if it is live, stop the timer and close every socket."""
        if self._state is not None and self._state.phase is not Phase.TERMINATED:
            self._apply(Close(self._clock.now_ms()))
        self._closed = True
        task, self._pump_task = self._pump_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
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

    # -- controls ----------------------------------------------------------------------------

    def start_stream(self) -> None:
        """Send one payload datagram every `data_interval_ms` while a path is usable."""
        self._streaming = True
        self._next_send_ms = self._clock.now_ms()

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
            self._outstanding.clear()  # their acknowledgements go to a socket that is gone
            self._apply(TransportFailed(now, old))
        return endpoint.descriptor

    # -- internals ---------------------------------------------------------------------------

    async def _open(self, host: str, port: int) -> _Endpoint:
        endpoint = await _open_endpoint(host, port, self._on_datagram)
        self._sockets[endpoint.descriptor] = endpoint
        return endpoint

    def _close_sockets(self) -> None:
        for endpoint in self._sockets.values():
            endpoint.close()
        self._sockets.clear()

    def _send(self, endpoint: _Endpoint, datagram: bytes) -> bool:
        if not endpoint.send(datagram, self.server):
            self.drops["send_on_closed_socket"] += 1
            return False
        if self._tap is not None:
            self._tap(datagram, endpoint.descriptor, self.server)
        return True

    async def _run_handshake(self, endpoint: _Endpoint) -> HandshakeKeys:
        initiator = Initiator()
        future: asyncio.Future[HandshakeKeys] = asyncio.get_running_loop().create_future()
        self._handshake = (initiator, future)
        datagram = encode(HandshakeInit(initiator.public))
        attempts = self.config.handshake_attempts
        wait_s = self.config.handshake_timeout_ms / attempts / 1000
        try:
            for _ in range(attempts):
                self._send(endpoint, datagram)
                try:
                    return await asyncio.wait_for(asyncio.shield(future), wait_s)
                except TimeoutError:
                    continue
        finally:
            self._handshake = None
            future.cancel()
        raise HandshakeTimeoutError(
            f"no handshake response from {self.server} within "
            f"{self.config.handshake_timeout_ms} ms ({attempts} attempts)"
        )

    def _apply(self, event: Event) -> tuple[Effect, ...]:
        state = self._state
        if state is None:
            return ()
        new, effects = step(state, event)
        self._state = new
        now = event.now_ms
        for effect in effects:
            self._execute(effect, now)
        return effects

    def _execute(self, effect: Effect, now: int) -> None:
        if isinstance(effect, (StateChanged, Rejected)):
            self.audit.append((now, effect))
            _notify(self._observer, self.drops, Role.CLIENT, now, effect)
        elif isinstance(effect, SendReattachRequest):
            endpoint = self._sockets.get(effect.via)
            if endpoint is None:
                self.drops["no_socket_for_effect"] += 1
                return
            self._send(endpoint, encode(ReattachRequestMessage(
                effect.session_id, effect.nonce, effect.state_version, effect.timestamp_ms,
                effect.candidate, effect.challenge, effect.proof)))
        elif isinstance(effect, BindTransport):
            previous = self._active
            self._active = effect.transport
            self.switches.append(effect)
            self._outstanding.clear()
            if previous is not None and previous != effect.transport:
                released = self._sockets.pop(previous, None)
                if released is not None:
                    released.close()
            _notify(self._observer, self.drops, Role.CLIENT, now, effect)
        elif isinstance(effect, SessionEnded):
            self._streaming = False
            self.ended.set()
            _notify(self._observer, self.drops, Role.CLIENT, now, effect)
        else:
            self.drops["effect_not_for_client"] += 1

    def _on_datagram(self, data: bytes, addr: tuple[Any, ...], endpoint: _Endpoint) -> None:
        if (addr[0], addr[1]) != (self.server.host, self.server.port):
            self.drops["unexpected_peer"] += 1
            return
        try:
            message = decode(data)
        except WireError as exc:
            self.drops[exc.reason.value] += 1
            return
        try:
            self._dispatch(message, len(data), endpoint)
        except (InvalidEventError, WireError):
            self.drops["invalid_event"] += 1

    def _dispatch(self, message: Message, size: int, endpoint: _Endpoint) -> None:
        now = self._clock.now_ms()
        if isinstance(message, HandshakeResponse):
            self._on_handshake_response(message)
            return
        state = self._state
        if state is None or state.phase is Phase.TERMINATED:
            self.drops["no_live_session"] += 1
            return
        if getattr(message, "session_id", None) != state.session_id:
            self.drops["session_mismatch"] += 1
            return
        via = endpoint.descriptor
        if isinstance(message, PathChallengeMessage):
            self._apply(PathChallengeReceived(now, via, message.challenge, message.observed,
                                              message.nonce, message.state_version,
                                              message.timestamp_ms, message.mac))
        elif isinstance(message, ReattachAcceptMessage):
            self._apply(ReattachAccepted(now, via, message.session_id, message.nonce,
                                         message.state_version, message.timestamp_ms,
                                         message.bound, message.proof))
        elif isinstance(message, HeartbeatMessage):
            if not _tag_ok(self._data_key, message):
                self.drops["bad_tag"] += 1
                return
            if not self._window.accept(message.counter):
                self.drops["replayed"] += 1  # before it counts as traffic at all
                return
            self._on_ack(message.seq, now)
            self._last_rx_ms = now
            self._timeout_reported = False
            self._apply(InboundTraffic(now, via, size))
        else:
            self.drops["unexpected_type"] += 1

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

    def _on_ack(self, seq: int, now: int) -> None:
        if seq == 0 or self._outstanding.pop(seq, None) is None:
            return
        # Packet threshold: anything `reorder_threshold` older than an acknowledged number
        # is lost. Reported before the traffic that revealed it.
        threshold = self.config.reorder_threshold
        lost = [q for q in self._outstanding if q + threshold <= seq]
        for q in lost:
            del self._outstanding[q]
        if lost:
            self.declared_lost += len(lost)
            self._apply(PacketLoss(now, len(lost)))

    def _usable_endpoint(self) -> _Endpoint | None:
        state = self._state
        if state is None or self._active is None or state.link.active_failed:
            return None
        endpoint = self._sockets.get(self._active)
        if endpoint is None or endpoint.closed:
            return None
        return endpoint

    def _send_payload(self, endpoint: _Endpoint, now: int) -> None:
        seq = self.next_seq
        self.next_seq += 1
        body = seq.to_bytes(8, "big")
        payload = (body * (self.config.payload_size // 8 + 1))[:self.config.payload_size]
        datagram = _signed_data(self._data_key, self.state.session_id,
                                self._window.next_counter(), seq, payload)
        self._outstanding[seq] = now
        if self._drop_next:
            self._drop_next -= 1
            self.injected_lost.add(seq)
            return
        self._send(endpoint, datagram)
        self._last_tx_ms = now

    async def _pump(self) -> None:
        interval = self.config.tick_ms / 1000
        while not self._closed and not self.ended.is_set():
            self._on_timer(self._clock.now_ms())
            await asyncio.sleep(interval)

    def _on_timer(self, now: int) -> None:
        state = self._state
        if state is None or state.phase is Phase.TERMINATED:
            return
        deadline = next_deadline(state)
        if deadline is not None and now >= deadline:
            self._apply(Tick(now))
        config = self.config
        timeout = config.ack_timeout_ms
        expired = [q for q, sent in self._outstanding.items() if now - sent >= timeout]
        for q in expired:
            del self._outstanding[q]
        if expired:
            self.declared_lost += len(expired)
            self._apply(PacketLoss(now, len(expired)))
        if (self._state is not None and self._state.phase is Phase.ATTACHED
                and not self._timeout_reported
                and now - self._last_rx_ms >= config.delivery_timeout_ms):
            self._timeout_reported = True
            self._apply(DeliveryTimeout(now))
        endpoint = self._usable_endpoint()
        if endpoint is None:
            return
        if self._streaming:
            # Bounded catch-up: at most 8 datagrams per timer, never a burst after a pause.
            if self._next_send_ms < now - 8 * config.data_interval_ms:
                self._next_send_ms = now
            sent = 0
            while self._next_send_ms <= now and sent < 8 and not endpoint.closed:
                self._send_payload(endpoint, now)
                self._next_send_ms += config.data_interval_ms
                sent += 1
        elif now - self._last_tx_ms >= config.keepalive_ms:
            self._send(endpoint, _signed_heartbeat(self._data_key, self.state.session_id,
                                                   self._window.next_counter(), 0))
            self._last_tx_ms = now


# --- server ----------------------------------------------------------------------------------


class SessionTableError(JumpVpnError):
    """The session table refused to open a session (full, or the id already exists)."""


class SessionHost(Protocol):
    """Where the server's sessions live. The UDP driver only ever talks to this.

    Every effect carries its session id, so the driver executes effects without looking
    at any state. A gateway with a session table and a shared store implements the same
    three calls.
    """

    def open(self, session_id: bytes, secret: bytes, transport: TransportDescriptor,
             now_ms: int) -> Sequence[Effect]:
        """Create a session whose handshake finished on `transport`; return its effects.

        Raises `SessionTableError` when the session cannot be created.
        """
        ...

    def handle(self, session_id: bytes, event: Event) -> Sequence[Effect] | None:
        """Step one session; None when no live session has that id."""
        ...

    def tick(self, now_ms: int) -> Sequence[Effect]:
        """Fire every deadline due at `now_ms`, across all sessions."""
        ...


class LocalSessionHost:
    """`SessionHost` in a dict: sessions of one process, no store. Ended sessions are kept
    (at most `keep_ended`) so callers can inspect how they ended."""

    def __init__(self, policy: Policy | None = None, max_sessions: int = 1_024,
                 keep_ended: int = 1_024) -> None:
        self.policy = policy if policy is not None else Policy()
        self.max_sessions = max_sessions
        self._live: dict[bytes, SessionState] = {}
        self._ended: collections.OrderedDict[bytes, SessionState] = collections.OrderedDict()
        self._keep_ended = keep_ended

    def __len__(self) -> int:
        return len(self._live)

    def get(self, session_id: bytes) -> SessionState | None:
        """The live or recently ended state of a session."""
        return self._live.get(session_id) or self._ended.get(session_id)

    def open(self, session_id: bytes, secret: bytes, transport: TransportDescriptor,
             now_ms: int) -> Sequence[Effect]:
        if session_id in self._live:
            raise SessionTableError("a live session already has this id")
        if len(self._live) >= self.max_sessions:
            raise SessionTableError(f"session table full ({self.max_sessions} sessions)")
        state = new_session(Role.SERVER, session_id, secret, now_ms, self.policy)
        self._live[session_id] = state
        effects = self.handle(session_id, Attach(now_ms, transport))
        return effects if effects is not None else ()

    def handle(self, session_id: bytes, event: Event) -> Sequence[Effect] | None:
        state = self._live.get(session_id)
        if state is None:
            return None
        new, effects = step(state, event)
        if new.phase is Phase.TERMINATED:
            del self._live[session_id]
            self._ended[session_id] = new
            while len(self._ended) > self._keep_ended:
                self._ended.popitem(last=False)
        else:
            self._live[session_id] = new
        return effects

    def tick(self, now_ms: int) -> Sequence[Effect]:
        out: list[Effect] = []
        for session_id, state in list(self._live.items()):
            deadline = next_deadline(state)
            if deadline is not None and now_ms >= deadline:
                out.extend(self.handle(session_id, Tick(now_ms)) or ())
        return out


@attrs.frozen
class ServerConfig:
    """Driver limits for the server."""

    tick_ms: int = attrs.field(default=10, validator=_positive)
    max_tracked_addresses: int = attrs.field(default=4_096, validator=_positive)
    handshake_cache: int = attrs.field(default=1_024, validator=_positive)


class UdpServer:
    """The server role: one socket, many sessions behind a `SessionHost`.

    Create with `await UdpServer.bind(host, port)`.
    """

    def __init__(self, sessions: SessionHost, policy: Policy, config: ServerConfig,
                 observer: Observer | None) -> None:
        self.sessions = sessions
        self.policy = policy
        self.config = config
        self._observer = observer
        self._clock = _Clock(asyncio.get_running_loop())
        self._endpoint: _Endpoint | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._closed = False
        self._routes: dict[bytes, TransportDescriptor] = {}
        self._validated: collections.Counter[TransportDescriptor] = collections.Counter()
        self._data_keys: dict[bytes, bytes] = {}
        #: Per session: the data-plane replay window and send counter.
        self._windows: dict[bytes, CounterWindow] = {}
        # address -> [bytes received from it, bytes sent to it while unvalidated]
        self._budget: collections.OrderedDict[TransportDescriptor, list[int]] = (
            collections.OrderedDict())
        self._handshakes: collections.OrderedDict[bytes, bytes] = collections.OrderedDict()
        #: Datagrams dropped (or sends refused), by reason.
        self.drops: collections.Counter[str] = collections.Counter()
        #: The latest audit effects, with the time they happened.
        self.audit: collections.deque[tuple[int, StateChanged | Rejected]] = (
            collections.deque(maxlen=_AUDIT_KEEP))
        #: Payload sequence numbers delivered, per session (a test aid).
        self.delivered: dict[bytes, set[int]] = {}

    @classmethod
    async def bind(cls, host: str = "127.0.0.1", port: int = 0, *,
                   policy: Policy | None = None, sessions: SessionHost | None = None,
                   config: ServerConfig | None = None,
                   observer: Observer | None = None) -> UdpServer:
        """Bind the server socket and start its timer.

        Raises `AddressInUseError` if `host:port` is taken, `TransportError` otherwise.
        `policy` sets the amplification factor the driver enforces on real bytes; it is
        also the policy of new sessions when `sessions` is not given.
        """
        policy = policy if policy is not None else Policy()
        host_sessions = sessions if sessions is not None else LocalSessionHost(policy)
        self = cls(host_sessions, policy, config if config is not None else ServerConfig(),
                   observer)
        self._endpoint = await _open_endpoint(host, port, self._on_datagram)
        self._pump_task = asyncio.get_running_loop().create_task(self._pump())
        return self

    @property
    def address(self) -> TransportDescriptor:
        """Where clients reach this server."""
        if self._endpoint is None:
            raise TransportError("the server is not bound")
        return self._endpoint.descriptor

    def route(self, session_id: bytes) -> TransportDescriptor | None:
        """The validated address a session's traffic goes to, if any."""
        return self._routes.get(session_id)

    async def close(self) -> None:
        """Stop the timer and close the socket. Sessions are left to their host."""
        self._closed = True
        task, self._pump_task = self._pump_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._endpoint is not None:
            self._endpoint.close()

    # -- sending -----------------------------------------------------------------------------

    def _send(self, to: TransportDescriptor, datagram: bytes) -> bool:
        """Send, unless `to` is unvalidated and over its amplification budget."""
        endpoint = self._endpoint
        if endpoint is None or to.kind is not TransportKind.UDP:
            self.drops["unsendable"] += 1
            return False
        if not self._validated[to]:
            budget = self._budget.get(to)
            received, sent = (budget[0], budget[1]) if budget is not None else (0, 0)
            if sent + len(datagram) > self.policy.amplification_factor * received:
                self.drops["amplification_capped"] += 1
                return False
            if budget is not None:
                budget[1] += len(datagram)
        return endpoint.send(datagram, to)

    def _account(self, source: TransportDescriptor, size: int) -> None:
        budget = self._budget.get(source)
        if budget is None:
            self._budget[source] = [size, 0]
            while len(self._budget) > self.config.max_tracked_addresses:
                # An evicted address starts again from zero: fail closed.
                self._budget.popitem(last=False)
        else:
            budget[0] += size
            self._budget.move_to_end(source)

    # -- effects -----------------------------------------------------------------------------

    def _execute_all(self, effects: Sequence[Effect], now: int) -> None:
        for effect in effects:
            self._execute(effect, now)

    def _execute(self, effect: Effect, now: int) -> None:
        if isinstance(effect, (StateChanged, Rejected)):
            self.audit.append((now, effect))
            _notify(self._observer, self.drops, Role.SERVER, now, effect)
        elif isinstance(effect, SendPathChallenge):
            self._send(effect.to, encode(PathChallengeMessage(
                effect.session_id, effect.nonce, effect.state_version, effect.timestamp_ms,
                effect.challenge, effect.to, effect.mac)))
            _notify(self._observer, self.drops, Role.SERVER, now, effect)
        elif isinstance(effect, SendReattachAccept):
            self._send(effect.to, encode(ReattachAcceptMessage(
                effect.session_id, effect.nonce, effect.state_version, effect.timestamp_ms,
                effect.to, effect.proof)))
        elif isinstance(effect, BindTransport):
            old = self._routes.get(effect.session_id)
            if old is not None:
                self._release(old)
            self._routes[effect.session_id] = effect.transport
            self._validated[effect.transport] += 1
            _notify(self._observer, self.drops, Role.SERVER, now, effect)
        elif isinstance(effect, SessionEnded):
            old = self._routes.pop(effect.session_id, None)
            if old is not None:
                self._release(old)
            self._data_keys.pop(effect.session_id, None)
            self._windows.pop(effect.session_id, None)
            _notify(self._observer, self.drops, Role.SERVER, now, effect)
        else:
            self.drops["effect_not_for_server"] += 1

    def _release(self, address: TransportDescriptor) -> None:
        self._validated[address] -= 1
        if self._validated[address] <= 0:
            del self._validated[address]

    # -- receiving ---------------------------------------------------------------------------

    def _on_datagram(self, data: bytes, addr: tuple[Any, ...], endpoint: _Endpoint) -> None:
        try:
            source = TransportDescriptor.udp(str(addr[0]), int(addr[1]))
        except JumpVpnError:
            self.drops["bad_source"] += 1
            return
        self._account(source, len(data))
        try:
            message = decode(data)
        except WireError as exc:
            self.drops[exc.reason.value] += 1
            return
        try:
            self._dispatch(message, source, len(data), self._clock.now_ms())
        except (InvalidEventError, WireError):
            self.drops["invalid_event"] += 1

    def _handle(self, session_id: bytes, event: Event, now: int) -> bool:
        effects = self.sessions.handle(session_id, event)
        if effects is None:
            self.drops["unknown_session"] += 1
            return False
        self._execute_all(effects, now)
        return True

    def _dispatch(self, message: Message, source: TransportDescriptor, size: int,
                  now: int) -> None:
        if isinstance(message, HandshakeInit):
            self._on_handshake(message, source, now)
        elif isinstance(message, ReattachRequestMessage):
            m = message
            self._handle(m.session_id, ReattachRequest(
                now, source, m.session_id, m.nonce, m.state_version, m.timestamp_ms,
                m.candidate, m.proof, m.challenge, size), now)
        elif isinstance(message, (DataMessage, HeartbeatMessage)):
            key = self._data_keys.get(message.session_id)
            if key is None:
                self.drops["unknown_session"] += 1
                return
            if not _tag_ok(key, message):
                self.drops["bad_tag"] += 1
                return
            window = self._windows[message.session_id]
            if not window.accept(message.counter):
                # A replayed datagram (captured anywhere, sent from anywhere) is dropped
                # before it counts as traffic from any address: it cannot open a path
                # validation or refresh liveness.
                self.drops["replayed"] += 1
                return
            if isinstance(message, DataMessage):
                self.delivered.setdefault(message.session_id, set()).add(message.seq)
            if not self._handle(message.session_id, InboundTraffic(now, source, size), now):
                return
            route = self._routes.get(message.session_id)
            if route is not None:  # acknowledgements go to the validated binding only
                self._send(route, _signed_heartbeat(
                    key, message.session_id, window.next_counter(),
                    message.seq if isinstance(message, DataMessage) else 0))
        else:
            self.drops["unexpected_type"] += 1

    def _on_handshake(self, message: HandshakeInit, source: TransportDescriptor,
                      now: int) -> None:
        cached = self._handshakes.get(message.client_public)
        if cached is not None:  # a retransmitted init: same answer, no second session
            self._send(source, cached)
            return
        try:
            server_public, keys = respond(message.client_public)
        except HandshakeError:
            self.drops["handshake_invalid"] += 1
            return
        try:
            effects = self.sessions.open(keys.session_id, keys.secret, source, now)
        except SessionTableError:
            self.drops["session_table_refused"] += 1
            return
        self._data_keys[keys.session_id] = derive_data_key(keys.secret, keys.session_id)
        self._windows[keys.session_id] = CounterWindow()
        self._execute_all(effects, now)
        response = encode(HandshakeResponse(server_public, keys.session_id))
        self._handshakes[message.client_public] = response
        while len(self._handshakes) > self.config.handshake_cache:
            self._handshakes.popitem(last=False)
        self._send(source, response)

    async def _pump(self) -> None:
        interval = self.config.tick_ms / 1000
        while not self._closed:
            now = self._clock.now_ms()
            self._execute_all(self.sessions.tick(now), now)
            await asyncio.sleep(interval)


# --- a raw peer for tests, demos and conformance runs ------------------------------------------


class RawUdpPeer:
    """A bare UDP socket that sends arbitrary bytes and counts what it receives.

    Used to play an off-path attacker: replay a captured datagram from another port, and
    measure how many bytes the server sends back to an address it never validated.
    """

    def __init__(self, endpoint: _Endpoint) -> None:
        self._endpoint = endpoint
        self.bytes_sent = 0
        self.bytes_received = 0
        self.received: list[bytes] = []

    @classmethod
    async def open(cls, host: str = "127.0.0.1", port: int = 0) -> RawUdpPeer:
        """Bind the socket (`AddressInUseError` if taken)."""
        holder: list[RawUdpPeer] = []

        def receive(data: bytes, _addr: tuple[Any, ...], _ep: _Endpoint) -> None:
            peer = holder[0]
            peer.bytes_received += len(data)
            if len(peer.received) < _AUDIT_KEEP:
                peer.received.append(data)

        endpoint = await _open_endpoint(host, port, receive)
        peer = cls(endpoint)
        holder.append(peer)
        return peer

    @property
    def address(self) -> TransportDescriptor:
        """The address the peer sends from."""
        return self._endpoint.descriptor

    def send(self, datagram: bytes, to: TransportDescriptor) -> None:
        """Send `datagram` to `to` and count its bytes."""
        if self._endpoint.send(datagram, to):
            self.bytes_sent += len(datagram)

    def close(self) -> None:
        """Close the socket."""
        self._endpoint.close()
