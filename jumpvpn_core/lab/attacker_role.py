"""The attacker agent: on the client's path, it captures, replays, spoofs and floods.

It runs in the router namespace every uplink crosses. Capture is a packet socket
(`AF_PACKET`) on the links from the ISPs: it sees every datagram the client sends to the
gateway service address. It sends in two ways:

* `own`: from its own address, through an ordinary UDP socket (a replay from elsewhere);
* `spoof`: with a forged IPv4 source address and port, through a raw socket
  (`IPPROTO_RAW`, the header built here).

What it sends: captured datagrams unchanged (`replay`), or captured reattach requests with
a fresh nonce and a random proof (`forge`): well-formed, naming the real session, and
unverifiable without the session's control key.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import os
import random
import socket
import struct
import time
from typing import Any

import attrs

from jumpvpn_core.proof import PROOF_SIZE
from jumpvpn_core.transports.wire import (
    MessageKind,
    ReattachRequestMessage,
    WireError,
    decode,
    encode,
)

__all__ = ["AttackerRole", "ipv4_udp_packet"]

_ETH_P_IP = 0x0800
_KEEP = 4_096


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_udp_packet(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """An IPv4 + UDP packet with any source address (UDP checksum 0: allowed on IPv4)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64,
                         socket.IPPROTO_UDP, 0, socket.inet_aton(src), socket.inet_aton(dst))
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp


class AttackerRole:
    """Command handlers of the attacker agent."""

    def __init__(self) -> None:
        self.captured: dict[int, collections.deque[bytes]] = collections.defaultdict(
            lambda: collections.deque(maxlen=_KEEP))
        self._capture_socks: list[socket.socket] = []
        self._target: tuple[str, int] | None = None
        self.seen = 0
        self._rng = random.Random(0x1AB)  # noqa: S311 - attack traffic, not secrets

    def handlers(self) -> dict[str, Any]:
        """Command name -> coroutine."""
        return {"capture": self.capture, "captured": self.captured_counts,
                "send": self.send, "close": self.close}

    async def capture(self, req: dict[str, Any]) -> dict[str, Any]:
        """Capture datagrams to `dst`:`port` on the interfaces `ifaces`."""
        self._target = (str(req["dst"]), int(req["port"]))
        loop = asyncio.get_running_loop()
        for iface in req["ifaces"]:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_IP))
            sock.bind((str(iface), 0))
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._on_frame, sock)
            self._capture_socks.append(sock)
        return {}

    def _on_frame(self, sock: socket.socket) -> None:
        target = self._target
        for _ in range(256):
            try:
                frame = sock.recv(65_535)
            except BlockingIOError:
                return
            packet = frame[14:]
            if len(packet) < 28 or packet[9] != socket.IPPROTO_UDP or target is None:
                continue
            ihl = (packet[0] & 0x0F) * 4
            dst = socket.inet_ntoa(packet[16:20])
            dport = struct.unpack("!H", packet[ihl + 2:ihl + 4])[0]
            if (dst, dport) != target:
                continue
            payload = packet[ihl + 8:]
            if len(payload) >= 2:
                self.seen += 1
                self.captured[payload[1]].append(payload)

    async def captured_counts(self, _req: dict[str, Any]) -> dict[str, Any]:
        """How many datagrams of each kind were captured."""
        names = {k.value: k.name for k in MessageKind}
        return {"seen": self.seen,
                "kinds": {names.get(k, str(k)): len(v) for k, v in self.captured.items()}}

    def _pool(self, mode: str, kinds: list[str]) -> list[bytes]:
        pool: list[bytes] = []
        for name in kinds:
            pool.extend(self.captured.get(MessageKind[name].value, ()))
        if mode == "replay":
            return pool
        forged = []
        for datagram in pool[-64:]:
            try:
                message = decode(datagram)
            except WireError:
                continue
            if isinstance(message, ReattachRequestMessage):
                forged.append(encode(attrs.evolve(
                    message, nonce=message.nonce + self._rng.randrange(1, 1 << 20),
                    proof=os.urandom(PROOF_SIZE))))
        return forged

    async def send(self, req: dict[str, Any]) -> dict[str, Any]:
        """Send `mode` (`replay`|`forge`) datagrams of `kinds` at `rate`/s for `seconds`.

        `source`: `own` or `spoof` (then `spoof_src`, one IPv4 address, or `spoof_net`, a
        network whose hosts are used in turn; random ports).
        Answers with what was sent and the rate actually achieved.
        """
        if self._target is None:
            raise RuntimeError("capture first: the target is the captured flow's")
        pool = self._pool(str(req.get("mode", "replay")), list(req.get("kinds", ["DATA"])))
        if not pool:
            return {"sent": 0, "rate": 0.0, "pool": 0, "errors": 0}
        rate, seconds = float(req["rate"]), float(req["seconds"])
        spoof = req.get("source", "own") == "spoof"
        dst, dport = self._target
        if spoof:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            net = ipaddress.ip_network(str(req.get("spoof_net") or f"{req['spoof_src']}/32"))
            first, span = int(net.network_address), max(net.num_addresses - 2, 1)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("0.0.0.0", 0))  # noqa: S104 - inside the lab's attacker namespace
        sock.setblocking(False)
        sent = errors = 0
        start = time.monotonic()
        try:
            while True:
                elapsed = time.monotonic() - start
                if elapsed >= seconds:
                    break
                due = min(int(elapsed * rate) + 1, int(seconds * rate))
                batch = 0
                while sent < due and batch < 512:
                    datagram = pool[sent % len(pool)]
                    try:
                        if spoof:
                            src = str(ipaddress.IPv4Address(first + 1 + sent % span)
                                      if span > 1 else net.network_address)
                            packet = ipv4_udp_packet(src, self._rng.randrange(1024, 65535),
                                                     dst, dport, datagram)
                            sock.sendto(packet, (dst, 0))
                        else:
                            sock.sendto(datagram, (dst, dport))
                    except OSError:
                        errors += 1
                    sent += 1
                    batch += 1
                await asyncio.sleep(0.001 if sent >= due else 0)
        finally:
            sock.close()
        took = max(time.monotonic() - start, 1e-3)
        return {"sent": sent, "rate": sent / took, "pool": len(pool), "errors": errors}

    async def close(self, _req: dict[str, Any]) -> dict[str, Any]:
        """Stop capturing."""
        loop = asyncio.get_running_loop()
        for sock in self._capture_socks:
            loop.remove_reader(sock.fileno())
            sock.close()
        self._capture_socks.clear()
        return {}
