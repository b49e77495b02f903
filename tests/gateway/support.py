"""Shared builders for gateway tests: sessions, signed reattach requests, gateways."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from jumpvpn_core.events import ReattachRequest
from jumpvpn_core.gateway import Gateway, GatewayPolicy, OwnershipMode
from jumpvpn_core.peer import FORGED_PROOF, Peer
from jumpvpn_core.stores.base import SessionStore
from jumpvpn_core.stores.memory import MemoryStore
from jumpvpn_core.telemetry import TelemetrySink
from jumpvpn_core.transport import TransportDescriptor

CLIENT = TransportDescriptor.udp("10.0.0.1", 4000)
ROAMED = TransportDescriptor.udp("10.0.0.2", 5000)
T0 = 1_000


def sid(i: int) -> bytes:
    """A deterministic 16-byte session id."""
    return i.to_bytes(16, "big")


def secret_for(session_id: bytes) -> bytes:
    """The test session secret of `session_id` (deterministic, never a real key)."""
    return hashlib.sha256(b"gateway-test-secret" + session_id).digest()


def reattach(
    session_id: bytes,
    *,
    nonce: int,
    version: int,
    now: int,
    source: TransportDescriptor = CLIENT,
    candidate: TransportDescriptor | None = None,
    challenge: bytes = b"",
    size: int = 200,
    timestamp: int | None = None,
    forge: bool = False,
) -> ReattachRequest:
    """A reattach request signed with the session's key (or a forged proof)."""
    peer = Peer.from_secret(secret_for(session_id), session_id)
    return peer.request(now, source, nonce=nonce, state_version=version, timestamp_ms=timestamp,
                        candidate=candidate, challenge=challenge, size=size,
                        forged_proof=FORGED_PROOF if forge else None)


def make_gateway(
    store: SessionStore,
    *,
    mode: OwnershipMode = OwnershipMode.SHARED,
    node: str = "n0",
    nodes: tuple[str, ...] = ("n0",),
    telemetry: TelemetrySink | Sequence[TelemetrySink] | None = None,
    **limits: int,
) -> Gateway:
    """A gateway with roomy flood limits unless the test asks for tighter ones."""
    options: dict[str, int] = {"global_flood_limit": 1_000_000, "source_flood_limit": 1_000_000}
    options.update(limits)
    policy = GatewayPolicy(ownership=mode, node_ids=nodes, **options)
    return Gateway(store, policy, node_id=node, telemetry=telemetry)


class ClockedStore(MemoryStore):
    """A memory store with a clock of its own, as Redis, PostgreSQL and etcd have, at a
    time the test sets (`now_ms`)."""

    def __init__(self, now_ms: int = T0) -> None:
        super().__init__()
        self.now_ms = now_ms

    def time_ms(self) -> int:
        return self.now_ms
