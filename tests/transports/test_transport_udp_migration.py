"""Migration over real UDP on loopback, after the QUIC interop runner's test cases.

Times are compressed: the interop runner's "port changes 1 s into the transfer and every
5 s after" becomes 200 ms and every 1,000 ms here (scale 1/5), with policy timers shortened
to match (`POLICY`). Every test is bounded by `asyncio.wait_for` and ends well under 10 s.

Every test asserts that the session id never changes and that every payload sequence
number the client sent was delivered, except exactly those whose loss was injected.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from jumpvpn_core import Phase, Policy, ReasonClass, ReasonCode, Rejected, StateChanged
from jumpvpn_core.effects import SendPathChallenge, SendReattachAccept
from jumpvpn_core.gateway import Gateway, GatewayPolicy, OwnershipMode
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.testing.attacker import RawUdpPeer
from jumpvpn_core.transport import TransportDescriptor
from jumpvpn_core.transports.errors import (
    AddressInUseError,
    HandshakeTimeoutError,
    TransportError,
)
from jumpvpn_core.transports.udp import (
    ClientConfig,
    GatewaySessionHost,
    LocalSessionHost,
    UdpClient,
    UdpServer,
)
from jumpvpn_core.transports.wire import (
    WIRE_VERSION,
    DataMessage,
    HeartbeatMessage,
    MessageKind,
    WireError,
    decode,
)
from tests.transports.udp_support import CONFIG, POLICY, run, until

SCALE = 5  # interop intervals divided by this


async def pair(tap: Callable[[bytes, TransportDescriptor, TransportDescriptor], None]
               | None = None) -> tuple[UdpServer, UdpClient]:
    server = await UdpServer.bind("127.0.0.1", 0, policy=POLICY)
    client = await UdpClient.connect(server.address, policy=POLICY, config=CONFIG, tap=tap)
    return server, client


def server_state(server: UdpServer, session_id: bytes) -> Any:
    host = server.sessions
    assert isinstance(host, LocalSessionHost | GatewaySessionHost)
    return host.get(session_id)


async def finish(server: UdpServer, client: UdpClient) -> None:
    """Stop the stream, let in-flight datagrams land, and check the common invariants."""
    client.stop_stream()
    await until(lambda: client.state.phase is Phase.ATTACHED
                and server_state(server, client.session_id).phase is Phase.ATTACHED)
    await asyncio.sleep(0.1)
    sid = client.session_id
    delivered = server.delivered.get(sid, set())
    sent = set(client.sent_seqs)
    assert len(sent) > 30, "the transfer must actually have carried payload"
    assert delivered <= sent
    assert sent - delivered == client.injected_lost, "payload lost beyond the injected loss"
    assert server.route(sid) == client.local


def client_port_of(server: UdpServer, session_id: bytes) -> TransportDescriptor | None:
    return server.route(session_id)


async def close(server: UdpServer, client: UdpClient, *peers: RawUdpPeer) -> None:
    await client.close()
    await server.close()
    for peer in peers:
        peer.close()


# --- rebind-port -----------------------------------------------------------------------------


@pytest.mark.requirement("RM-2.2")
def test_rebind_port_keeps_the_session_and_loses_no_payload() -> None:
    async def scenario() -> None:
        server, client = await pair()
        sid = client.session_id
        first = client.local
        client.start_stream()
        await asyncio.sleep(1.0 / SCALE)
        ports = [first]
        for _ in range(3):
            ports.append(await client.rebind())
            await until(lambda: server.route(sid) == client.local
                        and client.state.phase is Phase.ATTACHED)
            assert client.session_id == sid
            await asyncio.sleep(5.0 / SCALE)
        await finish(server, client)
        assert len({p.port for p in ports if p is not None}) == 4
        assert server.route(sid) == ports[-1]
        assert server_state(server, sid).session_id == sid
        reasons = [e.reason for _, e in server.audit if isinstance(e, StateChanged)]
        assert reasons.count(ReasonCode.REATTACHED) == 3
        assert not client.injected_lost
        await close(server, client)

    run(scenario())


@pytest.mark.requirement("RM-2.1")
def test_loss_burst_recovers_on_the_same_path_losing_only_the_burst() -> None:
    async def scenario() -> None:
        server, client = await pair()
        sid = client.session_id
        client.start_stream()
        await asyncio.sleep(0.2)
        client.inject_loss(8)
        await until(lambda: any(isinstance(e, StateChanged)
                                and e.reason is ReasonCode.LOSS_THRESHOLD_EXCEEDED
                                for _, e in client.audit))
        await asyncio.sleep(0.3)
        await finish(server, client)
        assert len(client.injected_lost) == 8
        assert client.session_id == sid
        await close(server, client)

    run(scenario())


# --- rebind-addr -----------------------------------------------------------------------------


def _loopback_alias_usable(host: str) -> bool:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((host, 0))
    except OSError:
        return False
    finally:
        probe.close()
    return True


@pytest.mark.requirement("RM-2.2")
def test_rebind_addr_moves_the_session_to_a_new_address() -> None:
    if not _loopback_alias_usable("127.0.0.2"):
        pytest.skip("127.0.0.2 cannot be bound on this machine (loopback is not a /8 here)")

    async def scenario() -> None:
        server, client = await pair()
        sid = client.session_id
        client.start_stream()
        await asyncio.sleep(0.2)
        moved = await client.rebind(host="127.0.0.2")
        await until(lambda: server.route(sid) == moved)
        await asyncio.sleep(0.4)
        await finish(server, client)
        route = server.route(sid)
        assert route is not None
        assert route.host == "127.0.0.2"
        assert client.session_id == sid == server_state(server, sid).session_id
        await close(server, client)

    run(scenario())


# --- spoofed replay --------------------------------------------------------------------------


@pytest.mark.requirement("RM-3.2", "RM-2.3")
def test_replayed_request_from_another_port_never_moves_the_binding() -> None:
    captured: list[bytes] = []

    def tap(datagram: bytes, _local: TransportDescriptor, _remote: TransportDescriptor) -> None:
        if datagram[1] == MessageKind.REATTACH_REQUEST:
            captured.append(datagram)

    async def scenario() -> None:
        server, client = await pair(tap)
        sid = client.session_id
        client.start_stream()
        await asyncio.sleep(0.2)
        moved = await client.rebind()
        await until(lambda: server.route(sid) == moved)
        assert len(captured) == 2  # the request and its answer to the path challenge
        version = server_state(server, sid).state_version
        attacker = await RawUdpPeer.open("127.0.0.1", 0)
        for datagram in captured:
            attacker.send(datagram, server.address)
        await until(lambda: sum(1 for _, e in server.audit if isinstance(e, Rejected)
                                and e.reason is ReasonCode.REPLAY_DETECTED) == 2)
        rejects = [e for _, e in server.audit if isinstance(e, Rejected)]
        assert all(r.reason_class is ReasonClass.SECURITY_EVENT for r in rejects)
        assert server.route(sid) == moved
        assert server_state(server, sid).state_version == version
        assert attacker.bytes_received == 0
        await asyncio.sleep(0.2)
        await finish(server, client)
        assert client.session_id == sid
        await close(server, client, attacker)

    run(scenario())


# --- amplification ---------------------------------------------------------------------------


@pytest.mark.requirement("RM-2.3")
def test_unvalidated_address_never_receives_more_than_three_times_what_it_sent() -> None:
    captured: list[bytes] = []

    def tap(datagram: bytes, _local: TransportDescriptor, _remote: TransportDescriptor) -> None:
        if datagram[1] in (MessageKind.DATA, MessageKind.HEARTBEAT, MessageKind.HANDSHAKE_INIT):
            captured.append(datagram)

    async def scenario() -> None:
        server, client = await pair(tap)
        sid = client.session_id
        home = server.route(sid)
        client.start_stream()
        await asyncio.sleep(0.2)
        attacker = await RawUdpPeer.open("127.0.0.1", 0)
        # Authenticated datagrams replayed from a new address (NAT-rebinding lookalikes),
        # the captured handshake, and garbage: all of it, many times, from one port.
        replayed = captured[:40]
        for datagram in replayed:
            attacker.send(datagram, server.address)
            attacker.send(bytes((WIRE_VERSION, 6)) + b"garbage", server.address)
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.5)  # longer than path_validation_timeout_ms
        assert attacker.bytes_sent > 0
        # Replayed data and heartbeats never reach the core (data-plane replay window):
        # no path validation opens, so nothing but the cached handshake answer goes back.
        data_plane = (MessageKind.DATA, MessageKind.HEARTBEAT)
        assert server.drops["replayed"] == sum(1 for d in replayed if d[1] in data_plane)
        assert attacker.bytes_received <= POLICY.amplification_factor * attacker.bytes_sent
        for datagram in attacker.received:
            try:
                message = decode(datagram)
            except WireError:
                continue
            assert not isinstance(message, HeartbeatMessage), "payload sent to unvalidated"
        assert server.route(sid) == home
        assert server.drops["truncated"] == len(replayed)  # the garbage, counted by reason
        await finish(server, client)
        assert client.session_id == sid
        await close(server, client, attacker)

    run(scenario())


# --- errors ----------------------------------------------------------------------------------


def test_a_port_in_use_is_a_typed_error() -> None:
    async def scenario() -> None:
        holder = await RawUdpPeer.open("127.0.0.1", 0)
        try:
            with pytest.raises(AddressInUseError, match="already in use"):
                await UdpServer.bind("127.0.0.1", holder.address.port)
        finally:
            holder.close()

    run(scenario())


def test_a_silent_server_is_a_handshake_timeout() -> None:
    async def scenario() -> None:
        silent = await RawUdpPeer.open("127.0.0.1", 0)
        try:
            with pytest.raises(HandshakeTimeoutError):
                await UdpClient.connect(silent.address, config=ClientConfig(
                    handshake_timeout_ms=200, handshake_attempts=2))
            assert silent.bytes_received == 2 * 50  # two HANDSHAKE_INITs (wire version 3)
        finally:
            silent.close()

    run(scenario())


@pytest.mark.requirement("RM-6.1")
def test_a_failing_observer_never_stops_a_transition() -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("telemetry backend down")

    async def scenario() -> None:
        server = await UdpServer.bind("127.0.0.1", 0, policy=POLICY, observer=broken)
        client = await UdpClient.connect(server.address, policy=POLICY, config=CONFIG,
                                         observer=broken)
        assert client.state.phase is Phase.ATTACHED
        assert client.drops["observer_error"] >= 1
        assert server.drops["observer_error"] >= 1
        await close(server, client)

    run(scenario())



# --- a gateway behind the server ---------------------------------------------------------------


@pytest.mark.requirement("RM-2.2", "RM-4.2", "RM-3.2")
def test_a_gateway_replaces_the_local_table_through_a_port_jump_and_a_replay() -> None:
    captured: list[bytes] = []

    def tap(datagram: bytes, _local: TransportDescriptor, _remote: TransportDescriptor) -> None:
        if datagram[1] == MessageKind.REATTACH_REQUEST:
            captured.append(datagram)

    async def scenario() -> None:
        gateway = Gateway(MemoryStore(), GatewayPolicy(node_ids=("n0",)), node_id="n0",
                          session_policy=POLICY)
        server = await UdpServer.bind("127.0.0.1", 0, sessions=GatewaySessionHost(gateway))
        client = await UdpClient.connect(server.address, policy=POLICY, config=CONFIG, tap=tap)
        sid = client.session_id
        client.start_stream()
        await asyncio.sleep(0.2)
        moved = await client.rebind()
        await until(lambda: server.route(sid) == moved
                    and client.state.phase is Phase.ATTACHED)
        committed = gateway.committed(sid)
        assert committed is not None
        assert committed[1].link.active == moved  # committed before the accept went out
        attacker = await RawUdpPeer.open("127.0.0.1", 0)
        for datagram in captured:
            attacker.send(datagram, server.address)
        await until(lambda: gateway.rejection_totals.get(ReasonCode.REPLAY_DETECTED) == 2)
        assert server.route(sid) == moved
        assert attacker.bytes_received == 0
        await asyncio.sleep(0.2)
        await finish(server, client)
        await close(server, client, attacker)

    run(scenario())


@pytest.mark.requirement("RM-4.1")
def test_a_node_that_takes_a_session_over_from_the_store_serves_its_data_plane() -> None:
    data: list[bytes] = []

    def tap(datagram: bytes, _local: TransportDescriptor, _remote: TransportDescriptor) -> None:
        if datagram[1] == MessageKind.DATA:
            data.append(datagram)

    async def scenario() -> None:
        store = MemoryStore()
        nodes = GatewayPolicy(ownership=OwnershipMode.SHARED, node_ids=("a", "b"))
        first = Gateway(store, nodes, node_id="a", session_policy=POLICY)
        second = Gateway(store, nodes, node_id="b", session_policy=POLICY)
        opener = await UdpServer.bind("127.0.0.1", 0, sessions=GatewaySessionHost(first))
        taker = await UdpServer.bind("127.0.0.1", 0, sessions=GatewaySessionHost(second))
        client = await UdpClient.connect(opener.address, policy=POLICY, config=CONFIG, tap=tap)
        sid = client.session_id
        client.start_stream()
        await until(lambda: len(data) >= 2)
        client.stop_stream()
        peer = await RawUdpPeer.open("127.0.0.1", 0)
        peer.send(data[0], taker.address)  # before the takeover: no key for the session
        await until(lambda: taker.drops["unknown_session"] == 1)
        committed = first.committed(sid)
        assert committed is not None
        taker.adopt(committed[1])
        assert taker.route(sid) == client.local
        message = decode(data[1])
        assert isinstance(message, DataMessage)
        # Captured before the takeover, replayed from elsewhere: the taker's window has no
        # floor yet, so only the session's route may arm it.
        peer.send(data[1], taker.address)
        await until(lambda: taker.drops["adopted_unarmed"] == 1)
        assert message.seq not in taker.delivered.get(sid, set())
        client.server = taker.address  # the client's own traffic now reaches the taker
        client.start_stream()
        await until(lambda: bool(taker.delivered.get(sid)))  # authenticated by the taker
        client.stop_stream()
        peer.send(data[1], taker.address)  # armed: below the floor now
        await until(lambda: taker.drops["replayed"] == 1)
        assert message.seq not in taker.delivered[sid]
        assert taker.drops["bad_tag"] == 0
        assert taker.counter_floor(sid) > message.counter
        peer.close()
        await taker.close()
        await close(opener, client)

    run(scenario())


def test_an_adoption_that_carries_the_counter_floor_refuses_every_captured_datagram() -> None:
    data: list[bytes] = []

    def tap(datagram: bytes, _local: TransportDescriptor, _remote: TransportDescriptor) -> None:
        if datagram[1] == MessageKind.DATA:
            data.append(datagram)

    async def scenario() -> None:
        store = MemoryStore()
        nodes = GatewayPolicy(ownership=OwnershipMode.SHARED, node_ids=("a", "b"))
        first = Gateway(store, nodes, node_id="a", session_policy=POLICY)
        second = Gateway(store, nodes, node_id="b", session_policy=POLICY)
        opener = await UdpServer.bind("127.0.0.1", 0, sessions=GatewaySessionHost(first))
        taker = await UdpServer.bind("127.0.0.1", 0, sessions=GatewaySessionHost(second))
        client = await UdpClient.connect(opener.address, policy=POLICY, config=CONFIG, tap=tap)
        sid = client.session_id
        client.start_stream()
        await until(lambda: len(data) >= 3)
        client.stop_stream()
        last = decode(data[-1])
        assert isinstance(last, DataMessage)
        await until(lambda: opener.counter_floor(sid) >= last.counter)  # all of them arrived
        committed = first.committed(sid)
        assert committed is not None
        with pytest.raises(TransportError):
            taker.adopt(committed[1], counter_floor=-1)
        taker.adopt(committed[1], counter_floor=opener.counter_floor(sid))
        peer = await RawUdpPeer.open("127.0.0.1", 0)
        for datagram in data:
            peer.send(datagram, taker.address)
        await until(lambda: taker.drops["replayed"] == len(data))
        assert taker.drops["adopted_unarmed"] == 0
        assert not taker.delivered.get(sid)
        state = second.local_state(sid)
        assert state is None or getattr(state.side, "pending", None) is None  # no validation
        peer.close()
        await taker.close()
        await close(opener, client)

    run(scenario())


# --- timers ----------------------------------------------------------------------------------


def test_timers_fire_at_deadlines_not_on_a_period() -> None:
    async def scenario() -> None:
        server, client = await pair()
        client.stop_stream()
        await asyncio.sleep(0.1)
        server_before, client_before = server.wakeups, client.wakeups
        await asyncio.sleep(0.6)
        # Idle: the client wakes for its 250 ms keepalive (and the silence check), the
        # server for no one (every session's deadline is seconds away). A 10 ms poll
        # would have woken each about 60 times.
        assert client.wakeups - client_before <= 8
        assert server.wakeups - server_before <= 2
        assert server.sessions.next_deadline() is not None
        assert client.state.phase is Phase.ATTACHED
        await close(server, client)

    run(scenario())


def test_the_attacker_and_the_demo_need_no_hypothesis() -> None:
    probe = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'hypothesis':\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import jumpvpn_core.cli.demo, jumpvpn_core.testing.attacker\n"
        "from jumpvpn_core.transports.udp import RawUdpPeer\n"
        "print(RawUdpPeer is jumpvpn_core.testing.attacker.RawUdpPeer)\n"
    )
    # our own interpreter and a fixed script
    out = subprocess.run([sys.executable, "-c", probe],  # noqa: S603
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


# --- what the server sends an address it has not validated ----------------------------------


@pytest.mark.requirement("RM-2.3")
def test_the_server_sends_no_challenge_larger_than_the_core_charged_and_nothing_else() -> None:
    sid = bytes(range(16))

    async def scenario() -> None:
        target = await RawUdpPeer.open("127.0.0.1", 0)
        roomy = await UdpServer.bind("127.0.0.1", 0)
        tight = await UdpServer.bind("127.0.0.1", 0,
                                     policy=Policy(path_challenge_size_bytes=47))
        challenge = SendPathChallenge(target.address, sid, bytes(16), 0, 1, 0, bytes(32))
        accept = SendReattachAccept(target.address, sid, 1, 1, 0, bytes(32))
        for server in (roomy, tight):
            server._execute(challenge, 0)
            server._execute(accept, 0)  # never to an address that is not a binding
        await until(lambda: target.bytes_received > 0)
        await asyncio.sleep(0.05)
        assert target.bytes_received == 104  # one challenge to 127.0.0.1, from `roomy`
        assert tight.drops["challenge_over_charge"] == 1
        assert roomy.drops["unvalidated_target"] == tight.drops["unvalidated_target"] == 1
        with pytest.raises(TransportError, match="differs"):
            await UdpServer.bind("127.0.0.1", 0, policy=POLICY, sessions=LocalSessionHost())
        for server in (roomy, tight):
            await server.close()
        target.close()

    run(scenario())
