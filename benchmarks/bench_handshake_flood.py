"""Forged-handshake flood: server CPU per forged initiation under load vs one X25519 exchange.

Run from a checkout: `python -m benchmarks.bench_handshake_flood` (or
`python -m benchmarks --only handshake_flood`, which also writes the results file).
All rows are timed round-robin in one process (`measure_interleaved`), so the ratios
compare figures taken under the same machine load:

* `x25519 exchange`: one `X25519PrivateKey.exchange` over prepared keys (the peer);
* `respond (keygen + exchange + HKDF)`: what the reference server spent per initiation
  before the cookie step;
* `forged init, no cookie, under load`: a 50-byte `HANDSHAKE_INIT` with a fresh key share
  handed to the server endpoint's `datagram_received` (load meter, cookie MAC, the
  `COOKIE_REPLY` built and sent with a real `sendto` on loopback to a socket nobody reads;
  on loopback that system call also does the receiving side's kernel work);
* `forged init, wrong cookie, under load`: the same with a wrong 16-byte cookie naming
  the previous secret, at a server that has rotated its cookie secret once (the steady
  state of a flood longer than `cookie_rotation_ms`): one MAC, as for every initiation;
* `forged init handling, send excluded`: the first row without the `sendto` (the socket
  write is stubbed): the server's own work per forged initiation;
* `sendto of 50 bytes on loopback`: the system call alone, the floor of any answer;
* `forged init, no cookie step`: the same initiation at a server that is never under load
  (`handshake_load_per_s` above the flood): an exchange, a session opened and a 50-byte
  response sent per datagram (what every forged initiation cost before the cookie step).

The receiving `recvfrom` of the forged datagram is not in any row: it is the same for every
way of answering. Judged: the CPU-time (`process_time`) ratio of each forged row to one
exchange, at most 0.2x. Wall-clock ratios are printed beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from benchmarks.harness import BenchResult, Prepared, measure_interleaved
from jumpvpn_core.transports.handshake import respond
from jumpvpn_core.transports.udp import LocalSessionHost, ServerConfig, UdpServer
from jumpvpn_core.transports.udp.endpoint import Endpoint
from jumpvpn_core.transports.wire import COOKIE_SIZE, HandshakeInit, encode

TARGET_RATIO = 0.2
_EXCHANGE = "x25519 exchange"
_RESPOND = "respond (keygen + exchange + HKDF)"
_NO_COOKIE = "forged init, no cookie, under load"
_BAD_COOKIE = "forged init, wrong cookie, under load"
_UNPROTECTED = "forged init, no cookie step"
_HANDLING = "forged init handling, send excluded"
_SENDTO = "sendto of 50 bytes on loopback"
_FORGED = (_NO_COOKIE, _BAD_COOKIE, _HANDLING)


def _public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _exchange_case(n: int) -> Prepared:
    ours = [X25519PrivateKey.generate() for _ in range(8)]
    theirs = [X25519PrivateKey.generate().public_key() for _ in range(8)]
    pairs = [(ours[i % 8], theirs[i % 8]) for i in range(n)]

    def body() -> None:
        for private, public in pairs:
            private.exchange(public)

    def checked() -> None:
        assert all(len(private.exchange(public)) == 32 for private, public in pairs)

    return Prepared(n, body, checked)


def _respond_case(n: int) -> Prepared:
    shares = [_public(X25519PrivateKey.generate()) for _ in range(8)]
    inputs = [shares[i % 8] for i in range(n)]

    def body() -> None:
        for share in inputs:
            respond(share)

    def checked() -> None:
        assert all(len(respond(share)[0]) == 32 for share in inputs)

    return Prepared(n, body, checked)


def _not_sent(datagram: bytes, addr: tuple[Any, ...]) -> bool:
    del datagram, addr
    return True


def _sendto_case(sink: tuple[Any, ...]) -> Callable[[int], Prepared]:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    datagram = bytes(50)

    def make(n: int) -> Prepared:
        def body() -> None:
            for _ in range(n):
                with contextlib.suppress(BlockingIOError):
                    sender.sendto(datagram, sink)

        def checked() -> None:
            assert sender.sendto(datagram, sink) == len(datagram)

        return Prepared(n, body, checked)

    return make


def _forged_case(server: UdpServer, sink: tuple[Any, ...], cookie: bytes | None,
                 expect_exchange: bool) -> Callable[[int], Prepared]:
    endpoint = server._endpoint  # the bound endpoint; the benchmark feeds it directly
    assert isinstance(endpoint, Endpoint)

    def make(n: int) -> Prepared:
        shares = [os.urandom(32) for _ in range(n)]
        datagrams = [encode(HandshakeInit(share, cookie if cookie is not None
                                          else bytes(COOKIE_SIZE))) for share in shares]

        def body() -> None:
            receive = endpoint.datagram_received
            for datagram in datagrams:
                receive(datagram, sink)

        def checked() -> None:
            before = server.key_exchanges
            body()
            done = server.key_exchanges - before
            assert done == (len(datagrams) if expect_exchange else 0), done

        return Prepared(n, body, checked)

    return make


async def _measure(smoke: bool) -> list[BenchResult]:
    sink_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink_socket.bind(("127.0.0.1", 0))  # the spoofed source: never read, the kernel drops
    sink = sink_socket.getsockname()
    loaded = await UdpServer.bind("127.0.0.1", 0, sessions=LocalSessionHost(
        max_sessions=1_000_000))
    open_server = await UdpServer.bind("127.0.0.1", 0, sessions=LocalSessionHost(
        max_sessions=1_000_000), config=ServerConfig(handshake_load_per_s=10**9))
    quiet = await UdpServer.bind("127.0.0.1", 0, sessions=LocalSessionHost(
        max_sessions=1_000_000))
    assert quiet._endpoint is not None
    # The socket write stubbed out for the "send excluded" row (an instance attribute
    # shadowing the method is what mypy calls method-assign; it is the point here).
    quiet._endpoint.send_unbuffered = _not_sent  # type: ignore[method-assign]
    try:
        for server in (loaded, quiet):  # the flood's first second: now "under load"
            _forged_case(server, sink, None, expect_exchange=True)(
                server.config.handshake_load_per_s + 1).body()
        # One rotation (a flood older than cookie_rotation_ms): a previous secret exists,
        # so a wrong cookie is checked under both secrets.
        jar = loaded._cookies
        jar.make(bytes(3), bytes(32), loaded._clock.now_ms() + jar.rotation_ms)
        assert jar._previous_tag is not None
        # A wrong cookie naming the previous secret: its reply is made under that secret.
        wrong = jar._previous_tag + b"\x5a" * (COOKIE_SIZE - 1)
        cases: dict[str, tuple[Callable[[int], Prepared], int]] = {
            _EXCHANGE: (_exchange_case, 500),
            _RESPOND: (_respond_case, 300),
            _NO_COOKIE: (_forged_case(loaded, sink, None, False), 2_000),
            _BAD_COOKIE: (_forged_case(loaded, sink, wrong, False), 2_000),
            _HANDLING: (_forged_case(quiet, sink, None, False), 2_000),
            _SENDTO: (_sendto_case(sink), 2_000),
            _UNPROTECTED: (_forged_case(open_server, sink, None, True), 200),
        }
        for make, _n in cases.values():
            make(16).checked()
        if smoke:
            return [BenchResult(name, 0.0, notes="smoke: path checked, not timed")
                    for name in cases]
        timings = measure_interleaved(cases, repeats=15)
    finally:
        await loaded.close()
        await open_server.close()
        await quiet.close()
        sink_socket.close()
    peer = timings[_EXCHANGE]
    results = []
    for name, timing in timings.items():
        cpu_ratio = timing.cpu_median_ns / peer.cpu_median_ns
        wall_ratio = timing.median_ns / peer.median_ns
        forged = name in _FORGED
        results.append(BenchResult(
            name, timing.median_ns, "ns", _EXCHANGE if name != _EXCHANGE else None,
            cpu_ratio if name != _EXCHANGE else None,
            f"cpu <= {TARGET_RATIO}x one exchange" if forged else "",
            cpu_ratio <= TARGET_RATIO if forged else None,
            f"cpu median {timing.cpu_median_ns:.0f} ns, wall ratio {wall_ratio:.3f}x, "
            f"IQR {timing.spread:.0%}"))
    return results


def run(smoke: bool) -> list[BenchResult]:
    """The rows of this benchmark (see the module docstring)."""
    return asyncio.run(_measure(smoke))


def main() -> None:
    """Print one line per row."""
    smoke = "--smoke" in sys.argv[1:]
    for row in run(smoke):
        ratio = f"{row.ratio:.3f}x" if row.ratio is not None else "-"
        met = {True: "yes", False: "NO", None: ""}[row.met]
        print(f"{row.name:<40} wall {row.median_ns / 1000:9.2f} us  cpu/exchange {ratio:>8}"
              f"  {row.target} {met}  ({row.notes})", flush=True)


if __name__ == "__main__":
    main()
