"""A forged-handshake flood costs the server a MAC, and a full table still admits a client.

Under load (`ServerConfig.handshake_load_per_s`, or a table that refused a session as full)
an initiation gets an X25519 exchange only with a cookie for its source address; any other
gets a `COOKIE_REPLY` of its own size. A full table admits a client that carries a valid
cookie in place of the oldest half-open session, never an established one
(`specs/wire-format.md`, "Handshake cookies"). These tests assert behaviour only; the CPU
cost per forged initiation is measured by `benchmarks/bench_handshake_flood.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from jumpvpn_core import Phase
from jumpvpn_core.gateway import Gateway, GatewayPolicy
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.testing.attacker import RawUdpPeer
from jumpvpn_core.transport import TransportDescriptor
from jumpvpn_core.transports import handshake
from jumpvpn_core.transports.errors import HandshakeTimeoutError
from jumpvpn_core.transports.handshake import CookieJar, HandshakeLoad, cookie_address
from jumpvpn_core.transports.udp import (
    ClientConfig,
    GatewaySessionHost,
    LocalSessionHost,
    ServerConfig,
    UdpClient,
    UdpServer,
)
from jumpvpn_core.transports.wire import NO_COOKIE, CookieReply, HandshakeInit, decode, encode

T = TypeVar("T")
LOAD = 20
CONFIG = ServerConfig(handshake_load_per_s=LOAD, half_open_ms=200)
CLIENT = ClientConfig(keepalive_ms=50)
A = cookie_address("127.0.0.1", 4000)
B = cookie_address("127.0.0.1", 4001)


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 20.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(bounded())


async def until(condition: Any, timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s * 100)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


# --- the pieces, without sockets ---------------------------------------------------------------


def _counting_random() -> Any:
    made = iter(range(1, 1_000))
    return lambda n: bytes([next(made)]) * n


def test_a_cookie_verifies_only_for_its_address_and_key_share() -> None:
    jar = CookieJar(1_000, _counting_random())
    pub, other = bytes(range(32)), bytes(range(1, 33))
    cookie = jar.make(A, pub, 0)
    assert len(cookie) == 16
    assert cookie != NO_COOKIE
    assert jar.check(A, pub, cookie, 10)
    assert not jar.check(B, pub, cookie, 10)  # another address
    assert not jar.check(A, other, cookie, 10)  # another initiation
    assert not jar.check(A, pub, NO_COOKIE, 10)
    assert "secret" not in repr(jar)
    assert cookie.hex() not in repr(jar)


def test_a_cookie_lives_through_one_rotation_and_not_two() -> None:
    jar = CookieJar(1_000, _counting_random())
    pub = bytes(32)
    cookie = jar.make(A, pub, 0)
    assert jar.check(A, pub, cookie, 1_500)  # rotated once: the previous secret still counts
    assert jar.make(A, pub, 1_500) != cookie
    assert not jar.check(A, pub, cookie, 2_600)  # rotated twice
    late = CookieJar(1_000, _counting_random())
    stale = late.make(A, pub, 0)
    assert not late.check(A, pub, stale, 5_000)  # long silence: both secrets replaced


def test_every_screened_initiation_costs_exactly_one_mac(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the cookie says (none, wrong, naming the current or the previous secret or
    no secret at all, valid under either), `screen` computes one MAC; a wrong cookie's reply
    is that MAC's cookie, and it verifies."""
    calls: list[int] = []
    real = handshake._mac

    def counted(keyed: Any, address: bytes, client_public: bytes) -> bytes:
        calls.append(1)
        return real(keyed, address, client_public)

    monkeypatch.setattr(handshake, "_mac", counted)
    jar = CookieJar(1_000, _counting_random())
    pub = bytes(range(32))
    old = jar.make(A, pub, 0)
    new = jar.make(A, pub, 1_000)  # rotated: `old` is under the previous secret
    assert old[0] != new[0]  # the generation tags differ
    wrong_old, wrong_new = old[:1] + bytes(15), new[:1] + bytes(15)
    cases = [(NO_COOKIE, new), (wrong_new, new), (bytes([new[0] + 7]) + bytes(15), new),
             (wrong_old, old), (old, None), (new, None)]
    for cookie, reply in cases:
        calls.clear()
        assert jar.screen(A, pub, cookie, 1_500) == reply
        assert len(calls) == 1, cookie.hex()
        if reply is not None:
            assert jar.check(A, pub, reply, 1_500)


def test_a_reply_under_the_previous_secret_is_good_until_the_next_rotation() -> None:
    jar = CookieJar(1_000, _counting_random())
    pub = bytes(32)
    old = jar.make(A, pub, 0)
    jar.make(A, pub, 1_000)
    reply = jar.screen(A, pub, old[:1] + bytes(15), 1_200)
    assert reply == old
    assert jar.check(A, pub, reply, 1_999)
    assert not jar.check(A, pub, reply, 2_000)  # rotated again: two generations old
    fresh = jar.screen(A, pub, reply, 2_000)  # answered under the current secret
    assert fresh is not None
    assert fresh[0] == old[0] + 2
    assert jar.check(A, pub, fresh, 2_000)


def test_the_generation_tag_skips_zero_and_a_cookie_255_generations_old_fails() -> None:
    made = iter(range(1_000))
    jar = CookieJar(1, lambda n: hashlib.sha256(bytes([next(made) % 256, 7])).digest()[:n])
    pub = bytes(32)
    first = jar.make(A, pub, 0)
    assert first[0] == 1
    tags = [jar.make(A, pub, t)[0] for t in range(1, 256)]
    assert tags[253:] == [255, 1]  # 255 then 1 again: never 0
    assert 0 not in tags
    assert not jar.check(A, pub, first, 255)  # the same tag, another secret
    assert jar.check(A, pub, jar.make(A, pub, 255), 255)


def test_load_is_the_initiations_of_the_last_second() -> None:
    load = HandshakeLoad(3)
    for t in (0, 10, 20):
        load.note(t)
    assert not load.over(30)
    load.note(40)
    assert load.over(40)
    assert load.over(1_100)  # the previous second still weighs 90 %
    assert not load.over(1_900)  # 10 % of 4
    assert not load.over(5_000)
    assert HandshakeLoad(0).over(0)  # 0: always under load
    with pytest.raises(ValueError, match="per_second"):
        HandshakeLoad(-1)
    with pytest.raises(ValueError, match="rotation_ms"):
        CookieJar(0)


def test_the_knobs_are_checked() -> None:
    with pytest.raises(ValueError, match="handshake_load_per_s"):
        ServerConfig(handshake_load_per_s=-1)
    with pytest.raises(ValueError, match="half_open_ms"):
        ServerConfig(half_open_ms=0)
    with pytest.raises(ValueError, match="handshakes_per_host_per_s"):
        ServerConfig(handshakes_per_host_per_s=0)


# --- on loopback -------------------------------------------------------------------------------


async def _flood(attacker: RawUdpPeer, to: TransportDescriptor, stop: asyncio.Event,
                 per_tick: int = 10) -> int:
    """Forged initiations (fresh key shares, never a cookie) every 5 ms until `stop`."""
    sent = 0
    while not stop.is_set():
        for _ in range(per_tick):
            attacker.send(encode(HandshakeInit(os.urandom(32))), to)
            sent += 1
        await asyncio.sleep(0.005)
    return sent


async def _established(server: UdpServer) -> UdpClient:
    client = await UdpClient.connect(server.address, config=CLIENT)
    client.start_stream()
    sid = client.session_id
    await until(lambda: bool(server.delivered.get(sid)))
    client.stop_stream()
    return client


def test_a_legitimate_client_completes_its_handshake_during_a_forged_flood() -> None:
    async def scenario() -> None:
        host = LocalSessionHost(max_sessions=64)
        server = await UdpServer.bind("127.0.0.1", 0, sessions=host, config=CONFIG)
        attacker = await RawUdpPeer.open("127.0.0.1", 0)
        stop = asyncio.Event()
        flood = asyncio.create_task(_flood(attacker, server.address, stop))
        await until(lambda: server.drops["handshake_cookie_required"] >= 100)
        client = await UdpClient.connect(server.address, config=CLIENT)
        sid = client.session_id
        await until(lambda: client.state.phase is Phase.ATTACHED)
        client.start_stream()
        await until(lambda: bool(server.delivered.get(sid)))  # both hold the same keys
        stop.set()
        forged = await flood
        state = host.get(sid)
        assert state is not None
        assert state.phase is Phase.ATTACHED
        assert server.route(sid) == client.local
        # The flood cost exchanges only until the load was seen (at most the threshold of
        # one second plus the weighted one before it), then one MAC each.
        assert forged >= 100
        assert server.key_exchanges <= 2 * (LOAD + 1) + 1
        assert server.drops["handshake_cookie_required"] >= forged - 2 * (LOAD + 1)
        assert len(host) <= 2 * (LOAD + 1) + 1
        # Cookie replies are the size of what was sent (no amplification).
        assert attacker.bytes_received <= attacker.bytes_sent
        await client.close()
        attacker.close()
        await server.close()

    run(scenario())


def _local(capacity: int) -> LocalSessionHost | GatewaySessionHost:
    return LocalSessionHost(max_sessions=capacity)


def _gateway(capacity: int) -> LocalSessionHost | GatewaySessionHost:
    return GatewaySessionHost(Gateway(MemoryStore(), GatewayPolicy(max_sessions=capacity)))


@pytest.mark.parametrize("make_host", [_local, _gateway], ids=["local", "gateway"])
def test_a_full_table_admits_a_client_with_a_cookie_in_place_of_a_half_open_session(
        make_host: Callable[[int], LocalSessionHost | GatewaySessionHost]) -> None:
    async def scenario() -> None:
        host = make_host(4)
        server = await UdpServer.bind("127.0.0.1", 0, sessions=host, config=CONFIG)
        old = await _established(server)
        attacker = await RawUdpPeer.open("127.0.0.1", 0)
        for _ in range(3):  # half-open: handshakes nobody finishes (below the load)
            attacker.send(encode(HandshakeInit(os.urandom(32))), server.address)
        await until(lambda: len(host) == 4)
        await asyncio.sleep(CONFIG.half_open_ms / 1000 + 0.05)
        stop = asyncio.Event()
        flood = asyncio.create_task(_flood(attacker, server.address, stop))
        await until(lambda: server.drops["handshake_cookie_required"] >= 50)
        new = await UdpClient.connect(server.address, config=CLIENT)
        new.start_stream()
        await until(lambda: bool(server.delivered.get(new.session_id)))
        stop.set()
        await flood
        assert server.drops["half_open_evicted"] == 1
        assert len(host) == 4
        for client in (old, new):  # the established session was not touched
            state = host.get(client.session_id)
            assert state is not None
            assert state.phase is Phase.ATTACHED
            assert server.route(client.session_id) == client.local
        for client in (old, new):
            await client.close()
        attacker.close()
        await server.close()

    run(scenario())


def test_a_table_full_of_established_sessions_evicts_none() -> None:
    async def scenario() -> None:
        host = LocalSessionHost(max_sessions=2)
        server = await UdpServer.bind("127.0.0.1", 0, sessions=host, config=CONFIG)
        established = [await _established(server) for _ in range(2)]
        await asyncio.sleep(CONFIG.half_open_ms / 1000 + 0.05)
        with pytest.raises(HandshakeTimeoutError):
            await UdpClient.connect(server.address, config=ClientConfig(
                handshake_timeout_ms=600, handshake_attempts=3))
        assert server.drops["session_table_full"] >= 1
        assert server.drops["half_open_evicted"] == 0
        # Once the table was seen full, a cookie is required before any exchange.
        assert server.drops["handshake_cookie_required"] >= 1
        for client in established:
            state = host.get(client.session_id)
            assert state is not None
            assert state.phase is Phase.ATTACHED
            await client.close()
        await server.close()

    run(scenario())


def test_under_load_one_host_gets_a_bounded_number_of_exchanges_even_with_cookies() -> None:
    async def scenario() -> None:
        config = ServerConfig(handshake_load_per_s=0, handshakes_per_host_per_s=2)
        server = await UdpServer.bind("127.0.0.1", 0, config=config)
        once = ClientConfig(handshake_timeout_ms=300, handshake_attempts=1)
        results = await asyncio.gather(
            *(UdpClient.connect(server.address, config=once) for _ in range(6)),
            return_exceptions=True)
        clients = [r for r in results if isinstance(r, UdpClient)]
        refused = [r for r in results if isinstance(r, HandshakeTimeoutError)]
        assert len(clients) + len(refused) == 6
        # Every initiation carried a valid cookie (each client answered its reply); at most
        # 2 exchanges per clock second for 127.0.0.1, and 300 ms span at most 2 seconds.
        assert 2 <= len(clients) <= 4
        assert server.key_exchanges == len(clients)
        assert server.drops["handshake_host_limited"] == len(refused)
        assert server.drops["handshake_cookie_required"] == 6
        for client in clients:
            await client.close()
        await server.close()

    run(scenario())


def test_a_client_repeats_its_initiation_only_with_the_cookie_for_its_own_key_share() -> None:
    sent: list[tuple[bytes, TransportDescriptor]] = []

    def tap(datagram: bytes, local: TransportDescriptor, _remote: TransportDescriptor) -> None:
        sent.append((datagram, local))

    async def scenario() -> None:
        fake = await RawUdpPeer.open("127.0.0.1", 0)  # plays a server under load
        connecting = asyncio.create_task(UdpClient.connect(fake.address, tap=tap,
                                                           config=ClientConfig(
            handshake_timeout_ms=4_000, handshake_attempts=2)))
        await until(lambda: bool(sent))
        first, local = sent[0]
        init = decode(first)
        assert isinstance(init, HandshakeInit)
        assert init.cookie == NO_COOKIE
        other = bytes(b ^ 0xFF for b in init.client_public)
        fake.send(encode(CookieReply(other, b"\x01" * 16)), local)
        await asyncio.sleep(0.1)
        assert len(sent) == 1  # a cookie for another initiation is ignored
        fake.send(encode(CookieReply(init.client_public, b"\x02" * 16)), local)
        await until(lambda: len(sent) == 2)
        again = decode(sent[1][0])
        assert isinstance(again, HandshakeInit)
        assert again.client_public == init.client_public
        assert again.cookie == b"\x02" * 16
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connecting
        fake.close()

    run(scenario())


def test_a_cookie_reply_is_a_typed_wire_message_the_size_of_an_initiation() -> None:
    reply = CookieReply(bytes(32), bytes(range(16)))
    assert decode(encode(reply)) == reply
    assert len(encode(reply)) == len(encode(HandshakeInit(bytes(32))))
