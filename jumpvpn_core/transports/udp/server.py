"""The server driver: one socket, many sessions behind a `SessionHost`.

Datagrams become core events through `jumpvpn_core.peer` (a reattach request is the
client's `SendReattachRequest` as the wire carries it, observed from its source, with the
datagram's real size); authenticated DATA and HEARTBEAT become `InboundTraffic` with
their real size. One timer is armed at the host's `next_deadline()`.

Amplification has one accountant, the core: it is fed the real size of every datagram
from an address and charges `path_challenge_size_bytes` per challenge it sends there. This
driver sends an unvalidated address nothing but those challenges (it refuses one whose
datagram is larger than that charge) and, under load, cookie replies of exactly the size of
the initiation they answer. Everything else (handshake responses, accepts,
acknowledgements) goes to validated bindings only; a handshake's own address is bound by
its session's `Attach` before the response leaves. See `docs/transports.md`.

Handshake flood (`docs/transports.md`, "Handshake flood"): when more than
`ServerConfig.handshake_load_per_s` initiations arrived in the last second, or the session
table refused a session as full since a session last ended, an initiation costs an X25519
exchange only if it carries a valid cookie for its source address; any other gets a
`COOKIE_REPLY` (one MAC). A full table admits a new client that carries a valid cookie by
ending the oldest half-open session (opened by a handshake here, no authenticated
traffic since, for at least `half_open_ms`); an established session is never evicted.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import attrs

from jumpvpn_core import peer
from jumpvpn_core.effects import (
    BindTransport,
    Effect,
    Rejected,
    SendPathChallenge,
    SendReattachAccept,
    SessionEnded,
    StateChanged,
)
from jumpvpn_core.events import Close, Event, InboundTraffic
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.proof import derive_control_key
from jumpvpn_core.state import SessionState
from jumpvpn_core.transport import TransportDescriptor, TransportKind
from jumpvpn_core.transports import wire
from jumpvpn_core.transports.counter_window import CounterWindow
from jumpvpn_core.transports.errors import HandshakeError, TransportError
from jumpvpn_core.transports.handshake import (
    CookieJar,
    HandshakeKeys,
    HandshakeLoad,
    authentic,
    cookie_address,
    derive_data_key,
    respond,
    seal,
)
from jumpvpn_core.transports.udp.endpoint import (
    Driver,
    Endpoint,
    Observer,
    RawReceive,
    decoding,
    open_endpoint,
    positive,
)
from jumpvpn_core.transports.udp.hosts import LocalSessionHost, SessionHost, SessionTableError

__all__ = ["ServerConfig", "UdpServer"]

_ZERO_TAG = bytes(wire.TAG_SIZE)
_COOKIE_AT = 2 + wire.KEY_SHARE_SIZE
_INIT_SIZE = _COOKIE_AT + wire.COOKIE_SIZE
_INIT_HEAD = bytes((wire.WIRE_VERSION, wire.MessageKind.HANDSHAKE_INIT))
_REPLY_HEAD = bytes((wire.WIRE_VERSION, wire.MessageKind.COOKIE_REPLY))
_MAX_TRACKED_HOSTS = 65_536


def _non_negative(_inst: object, attr: attrs.Attribute[int], value: object) -> None:
    if type(value) is not int or value < 0:  # like `positive`; the value is a config knob
        raise ValueError(f"{attr.name} must be a non-negative int")


@attrs.frozen
class ServerConfig:
    """Driver limits for the server.

    `tick_ms` is accepted for compatibility and unused: the timer is armed at the sessions'
    earliest deadline. `max_tracked_addresses` is unused too (the driver keeps no byte
    counters: the core is the amplification accountant).

    Handshake flood knobs: above `handshake_load_per_s` initiations in the last second
    (0: always) an initiation needs a cookie for its address; cookie secrets rotate every
    `cookie_rotation_ms`; a session with no authenticated traffic `half_open_ms` after its
    handshake is half-open, and a full table may end the oldest one for a client that
    carries a valid cookie. Under load, one source host (whatever its ports) gets at most
    `handshakes_per_host_per_s` exchanges per clock second even with valid cookies: a
    cookie proves an address, not good intent.
    """

    tick_ms: int = attrs.field(default=10, validator=positive)
    max_tracked_addresses: int = attrs.field(default=4_096, validator=positive)
    handshake_cache: int = attrs.field(default=1_024, validator=positive)
    handshake_load_per_s: int = attrs.field(default=64, validator=_non_negative)
    cookie_rotation_ms: int = attrs.field(default=120_000, validator=positive)
    half_open_ms: int = attrs.field(default=1_000, validator=positive)
    handshakes_per_host_per_s: int = attrs.field(default=8, validator=positive)


class UdpServer(Driver):
    """The server role: one socket, many sessions behind a `SessionHost`.

    Create with `await UdpServer.bind(host, port)`.
    """

    role = Role.SERVER

    def __init__(self, sessions: SessionHost, config: ServerConfig,
                 observer: Observer | None) -> None:
        super().__init__(observer)
        self.sessions = sessions
        self.config = config
        self._endpoint: Endpoint | None = None
        self._routes: dict[bytes, TransportDescriptor] = {}
        self._validated: collections.Counter[TransportDescriptor] = collections.Counter()
        self._data_keys: dict[bytes, bytes] = {}
        #: Per session: the data-plane replay window and send counter.
        self._windows: dict[bytes, CounterWindow] = {}
        # client key share -> (response datagram, the address it was answered at)
        self._handshakes: collections.OrderedDict[bytes, tuple[bytes, TransportDescriptor]] = (
            collections.OrderedDict())
        self._cookies = CookieJar(config.cookie_rotation_ms)
        self._load = HandshakeLoad(config.handshake_load_per_s)
        #: Sessions opened by a handshake here with no authenticated traffic yet -> opened at.
        self._half_open: collections.OrderedDict[bytes, int] = collections.OrderedDict()
        #: The table refused a session as full and no session has ended since.
        self._table_full = False
        #: Under load: exchanges granted per source host in the current clock second.
        self._host_second = -1
        self._host_exchanges: collections.Counter[str] = collections.Counter()
        #: The key share of the initiation whose cookie `_screen` just verified.
        self._screened: bytes | None = None
        #: Adopted sessions whose data plane has no counter floor yet (see `adopt`).
        self._unarmed: set[bytes] = set()
        #: X25519 exchanges performed for initiations (a test and benchmark aid).
        self.key_exchanges = 0
        #: Payload sequence numbers delivered, per session (a test aid).
        self.delivered: dict[bytes, set[int]] = {}

    @classmethod
    async def bind(cls, host: str = "127.0.0.1", port: int = 0, *,
                   policy: Policy | None = None, sessions: SessionHost | None = None,
                   config: ServerConfig | None = None,
                   observer: Observer | None = None) -> UdpServer:
        """Bind the server socket and arm its timer.

        `policy` is the core policy of new sessions when `sessions` is not given; with
        `sessions`, it may be omitted and must otherwise equal `sessions.policy`.
        Raises `AddressInUseError` if `host:port` is taken, `TransportError` otherwise.
        """
        if sessions is None:
            sessions = LocalSessionHost(policy)
        elif policy is not None and policy != sessions.policy:
            raise TransportError("policy differs from the session host's policy")
        self = cls(sessions, config if config is not None else ServerConfig(), observer)
        self._endpoint = await open_endpoint(host, port,
                                             self._screen(decoding(self._receive, self.drops)))
        self._arm()
        return self

    @property
    def policy(self) -> Policy:
        """The core policy of the sessions (the host's)."""
        return self.sessions.policy

    @property
    def address(self) -> TransportDescriptor:
        """Where clients reach this server."""
        if self._endpoint is None:
            raise TransportError("the server is not bound")
        return self._endpoint.descriptor

    def route(self, session_id: bytes) -> TransportDescriptor | None:
        """The validated address a session's traffic goes to, if any."""
        return self._routes.get(session_id)

    def adopt(self, state: SessionState, counter_floor: int = 0) -> None:
        """Serve a session that another node opened and this one took over from a shared
        store: its data key comes from the committed control key, and its route is the
        committed binding (already validated by the node that bound it). A TERMINATED
        session, or one with no binding, is not adopted; a session already served here is
        left as it is.

        The data-plane replay window does not travel in the store. `counter_floor` is the
        handing node's `counter_floor(session_id)` when the handover knows it: every
        counter at or below it is refused here. Without it (0), the window is armed by the
        first authenticated datagram from the session's route (counters below it are
        refused from then on); until then a datagram from any other address is dropped
        (`adopted_unarmed`), so a datagram captured before the takeover and replayed from
        elsewhere never reaches this node's core."""
        sid = state.ident.session_id
        if state.phase is Phase.TERMINATED or state.link.active is None:
            return
        if type(counter_floor) is not int or not 0 <= counter_floor <= (1 << 64) - 1:
            raise TransportError("counter_floor must be an unsigned 64-bit int")
        if sid not in self._data_keys:
            self._data_keys[sid] = derive_data_key(state.ident.control_key, sid)
            self._windows[sid] = CounterWindow(floor=counter_floor)
            if counter_floor == 0:
                self._unarmed.add(sid)
        if sid not in self._routes:
            self._routes[sid] = state.link.active
            self._validated[state.link.active] += 1

    def counter_floor(self, session_id: bytes) -> int:
        """The highest data-plane counter this node accepted for a session (0: none): what
        a node taking the session over passes to `adopt`."""
        window = self._windows.get(session_id)
        return window.top if window is not None else 0

    async def close(self) -> None:
        """Disarm the timer and close the socket. Sessions are left to their host."""
        self._timer.cancel()
        if self._endpoint is not None:
            self._endpoint.close()

    # -- timer -------------------------------------------------------------------------------

    def _arm(self) -> None:
        self._timer.arm(self.sessions.next_deadline())

    def _wake(self) -> None:
        if self._endpoint is None or self._endpoint.closed:
            return
        now = self._clock.now_ms()
        self._execute_all(self.sessions.tick(now), now)
        self._arm()

    # -- sending -----------------------------------------------------------------------------

    def _send(self, to: TransportDescriptor, datagram: bytes) -> bool:
        endpoint = self._endpoint
        if endpoint is None or to.kind is not TransportKind.UDP:
            self.drops["unsendable"] += 1
            return False
        return endpoint.send(datagram, to)

    def _send_validated(self, to: TransportDescriptor, datagram: bytes) -> bool:
        if not self._validated[to]:
            self.drops["unvalidated_target"] += 1
            return False
        return self._send(to, datagram)

    # -- effects -----------------------------------------------------------------------------

    def _execute_all(self, effects: Sequence[Effect], now: int) -> None:
        for effect in effects:
            self._execute(effect, now)

    def _execute(self, effect: Effect, now: int) -> None:
        if isinstance(effect, (StateChanged, Rejected)):
            self._record(effect, now)
        elif isinstance(effect, SendPathChallenge):
            datagram = wire.encode(wire.message_for(effect))
            # The core charged `path_challenge_size_bytes` for it: never send more.
            if len(datagram) > self.sessions.policy.path_challenge_size_bytes:
                self.drops["challenge_over_charge"] += 1
            else:
                self._send(effect.to, datagram)
            self._notify(effect, now)
        elif isinstance(effect, SendReattachAccept):
            self._send_validated(effect.to, wire.encode(wire.message_for(effect)))
        elif isinstance(effect, BindTransport):
            old = self._routes.get(effect.session_id)
            if old is not None:
                self._release(old)
            self._routes[effect.session_id] = effect.transport
            self._validated[effect.transport] += 1
            self._notify(effect, now)
        elif isinstance(effect, SessionEnded):
            old = self._routes.pop(effect.session_id, None)
            if old is not None:
                self._release(old)
            self._data_keys.pop(effect.session_id, None)
            self._windows.pop(effect.session_id, None)
            self._half_open.pop(effect.session_id, None)
            self._unarmed.discard(effect.session_id)
            self._table_full = False
            self._notify(effect, now)
        else:
            self.drops["effect_not_for_server"] += 1

    def _release(self, address: TransportDescriptor) -> None:
        self._validated[address] -= 1
        if self._validated[address] <= 0:
            del self._validated[address]

    # -- receiving ---------------------------------------------------------------------------

    def _receive(self, message: wire.Message, size: int, source: TransportDescriptor,
                 _endpoint: Endpoint) -> None:
        now = self._clock.now_ms()
        if isinstance(message, wire.HandshakeInit):
            self._on_handshake(message, source, now)
        elif isinstance(message, wire.ReattachRequestMessage):
            self._handle(message.session_id, peer.request_received(
                wire.carried_effect(message, source), now, source, size), now)
        elif isinstance(message, (wire.DataMessage, wire.HeartbeatMessage)):
            self._on_traffic(message, source, size, now)
        else:
            self.drops["unexpected_type"] += 1
        self._arm()

    def _handle(self, session_id: bytes, event: Event, now: int) -> bool:
        effects = self.sessions.handle(session_id, event)
        if effects is None:
            self.drops["unknown_session"] += 1
            return False
        self._execute_all(effects, now)
        return True

    def _on_traffic(self, message: wire.DataMessage | wire.HeartbeatMessage,
                    source: TransportDescriptor, size: int, now: int) -> None:
        sid = message.session_id
        key = self._data_keys.get(sid)
        if key is None:
            self.drops["unknown_session"] += 1
            return
        window = self._windows[sid]
        if not window.fresh(message.counter):
            # Replayed or too old, whoever sent it: dropped before the tag's MAC is spent
            # (a forged datagram with such a counter would be dropped anyway).
            self.drops["replayed"] += 1
            return
        if not authentic(key, message):
            self.drops["bad_tag"] += 1
            return
        if sid in self._unarmed:  # adopted without a floor: armed from the route only
            if source != self._routes.get(sid):
                self.drops["adopted_unarmed"] += 1
                return
            window.raise_floor(message.counter - 1)
            self._unarmed.discard(sid)
        if not window.accept(message.counter):
            # A replayed datagram (captured anywhere, sent from anywhere) is dropped before
            # it counts as traffic from any address: it cannot open a path validation or
            # refresh liveness (specs/wire-format.md).
            self.drops["replayed"] += 1
            return
        self._half_open.pop(sid, None)  # the client holds the keys: established
        seq = 0
        if isinstance(message, wire.DataMessage):
            seq = message.seq
            self.delivered.setdefault(sid, set()).add(seq)
        if not self._handle(sid, InboundTraffic(now, source, size), now):
            return
        route = self._routes.get(sid)
        if route is not None:  # acknowledgements go to the validated binding only
            self._send(route, seal(key, wire.HeartbeatMessage(sid, window.next_counter(), seq,
                                                              _ZERO_TAG)))

    def _screen(self, inner: RawReceive) -> RawReceive:
        """The server's receive path: handshake initiations are weighed here, on the raw
        datagram, before any object is built. Under load one without a valid cookie for its
        source costs one MAC and a `COOKIE_REPLY` of its own size, and stops here (no
        state kept: only a client that receives at that address can come back). Everything
        else goes on to `inner` (decode, then `_receive`)."""
        cookies, load, drops = self._cookies, self._load, self.drops
        clock = self._clock

        def receive(data: bytes, addr: tuple[Any, ...], endpoint: Endpoint) -> None:
            if len(data) != _INIT_SIZE or data[:2] != _INIT_HEAD:
                inner(data, addr, endpoint)
                return
            now = clock.now_ms()
            self._screened = None
            if load.arrive(now) or self._table_full:
                client_public, cookie = data[2:_COOKIE_AT], data[_COOKIE_AT:]
                # addr is the socket's (host str, port int, ...): no conversion needed
                reply = cookies.screen(cookie_address(addr[0], addr[1]), client_public,
                                       cookie, now)
                if reply is None:
                    self._screened = client_public
                    inner(data, addr, endpoint)
                    return
                drops["handshake_cookie_required" if cookie == wire.NO_COOKIE
                      else "handshake_bad_cookie"] += 1
                if not endpoint.send_unbuffered(_REPLY_HEAD + client_public + reply, addr):
                    drops["cookie_reply_unsent"] += 1
                return
            inner(data, addr, endpoint)

        return receive

    def _on_handshake(self, message: wire.HandshakeInit, source: TransportDescriptor,
                      now: int) -> None:
        cookie_ok = self._screened == message.client_public  # proved its address just now
        self._screened = None
        cached = self._handshakes.get(message.client_public)
        if cached is not None:
            # A retransmitted init: the same answer, no second session, and only to the
            # address that was answered (and bound) the first time.
            response, answered = cached
            if source == answered:
                self._send_validated(source, response)
            else:
                self.drops["handshake_elsewhere"] += 1
            return
        if cookie_ok and not self._host_allowed(source.host, now):
            self.drops["handshake_host_limited"] += 1
            return
        if self._table_full and not self._evictable(now):
            self.drops["session_table_full"] += 1  # no exchange for a session with no room
            return
        self.key_exchanges += 1
        try:
            server_public, keys = respond(message.client_public)
        except HandshakeError:
            self.drops["handshake_invalid"] += 1
            return
        effects = self._open(keys, source, now, cookie_ok)
        if effects is None:
            return
        self._data_keys[keys.session_id] = derive_data_key(
            derive_control_key(keys.secret, keys.session_id), keys.session_id)
        self._windows[keys.session_id] = CounterWindow()
        self._half_open[keys.session_id] = now
        self._execute_all(effects, now)
        response = wire.encode(wire.HandshakeResponse(server_public, keys.session_id))
        self._handshakes[message.client_public] = (response, source)
        while len(self._handshakes) > self.config.handshake_cache:
            self._handshakes.popitem(last=False)
        self._send_validated(source, response)  # bound by the session's Attach just now

    def _host_allowed(self, host: str, now: int) -> bool:
        """Count one exchange for `host` in this clock second; False past the limit. The
        table holds only hosts that proved their address this second (bounded anyway)."""
        second = now // 1000
        if second != self._host_second or len(self._host_exchanges) >= _MAX_TRACKED_HOSTS:
            self._host_second = second
            self._host_exchanges.clear()
        if self._host_exchanges[host] >= self.config.handshakes_per_host_per_s:
            return False
        self._host_exchanges[host] += 1
        return True

    def _open(self, keys: HandshakeKeys, source: TransportDescriptor, now: int,
              cookie_ok: bool) -> Sequence[Effect] | None:
        """Open the session; on a full table, a client that proved its address (`cookie_ok`)
        takes the place of the oldest half-open session. None when refused."""
        try:
            return self.sessions.open(keys.session_id, keys.secret, source, now)
        except SessionTableError as exc:
            if not exc.full:
                self.drops["session_table_refused"] += 1
                return None
        self._table_full = True
        while cookie_ok and self._evictable(now):
            self._evict_oldest_half_open(now)
            try:
                effects = self.sessions.open(keys.session_id, keys.secret, source, now)
            except SessionTableError as exc:
                if exc.full:  # that entry had already left the table: try the next one
                    continue
                self.drops["session_table_refused"] += 1
                return None
            self._table_full = True  # it took the place that was freed
            return effects
        self.drops["session_table_full"] += 1
        return None

    def _evictable(self, now: int) -> bool:
        for opened in self._half_open.values():  # oldest first
            return now - opened >= self.config.half_open_ms
        return False

    def _evict_oldest_half_open(self, now: int) -> None:
        sid, _opened = self._half_open.popitem(last=False)
        self.drops["half_open_evicted"] += 1
        effects = self.sessions.handle(sid, Close(now))
        if effects is not None:  # SessionEnded forgets its route, keys and window
            self._execute_all(effects, now)
