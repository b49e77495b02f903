"""Write the seed corpus: `python -m tests.fuzz.seeds` (into `tests/fuzz/corpus/<target>/`).

Seeds are valid inputs of each decoder, taken from real runs (a simulated client/server
pair, the golden vectors), so a fuzzer starts from the shapes that reach deep into the
decoder instead of having to discover JSON from nothing. File names are the SHA-1 of the
content (as libFuzzer names what it finds), so re-running adds nothing twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jumpvpn_core.audit.vectors import load_vectors
from jumpvpn_core.codec import state_to_data
from jumpvpn_core.effects import Effect, Rejected, StateChanged
from jumpvpn_core.events import (
    CandidateDiscovered,
    DeliveryTimeout,
    InboundTraffic,
    PacketLoss,
    ReattachRequest,
    Tick,
)
from jumpvpn_core.forms import effect_to_data as effect_to_json
from jumpvpn_core.forms import event_to_data as event_to_json
from jumpvpn_core.gateway.gateway import encode_state
from jumpvpn_core.phases import Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.state import SessionState
from jumpvpn_core.testing.lockstep import PROTOCOL_VERSION, create_request, format_counterexample
from jumpvpn_core.transport import TransportDescriptor
from jumpvpn_core.transports import wire as udp_wire
from tests.fuzz.targets import FUZZ_SESSION_ID, TARGETS
from tests.harness import LOCALS, SECRET, SESSION_ID, Simulation

__all__ = ["CORPUS", "write_seeds"]

CORPUS = Path(__file__).parent / "corpus"
_VECTORS = Path(__file__).resolve().parents[2] / "specs" / "vectors"


def _run() -> tuple[list[SessionState], list[Effect], list[Any]]:
    """A client/server pair through loss, NAT rebinding, reattach and traffic."""
    sim = Simulation.create(Policy(max_recovery_window_ms=3_000, reattach_timeout_ms=500),
                            now=0)
    states = [sim.client, sim.server]
    effects: list[Effect] = []
    events: list[Any] = [Tick(5), DeliveryTimeout(7), PacketLoss(9, 2),
                         CandidateDiscovered(11, LOCALS[1]),
                         InboundTraffic(13, LOCALS[0], 100),
                         ReattachRequest(15, LOCALS[0], SESSION_ID, 1, 1, 15, LOCALS[1],
                                         bytes(32))]
    sim.to_client(DeliveryTimeout(10))
    sim.rebind_nat(LOCALS[0])
    for _ in range(8):
        sim.advance(100)
        if sim.flight:
            effects += sim.deliver(0)
        states += [sim.client, sim.server]
        sim.to_client(PacketLoss(sim.now, 5))
        sim.traffic(200)
        sim.to_client(CandidateDiscovered(sim.now, LOCALS[1]))
        sim.tick_both()
        states += [sim.client, sim.server]
    return states, effects, events


def _dumps(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _seeds() -> Iterator[tuple[str, bytes]]:
    states, effects, events = _run()
    unique = {_dumps(state_to_data(s, include_secrets=True)): s for s in states}
    for blob, state in unique.items():
        yield "state", blob
        yield "json", blob
        if state.role is Role.SERVER:
            data = state_to_data(state, include_secrets=True)
            data["session_id"] = FUZZ_SESSION_ID.hex()
            yield "store_record", _dumps(data)
    for state in states[:2]:
        yield "store_record", encode_state(state)
    for line in (_VECTORS / "server.jsonl", _VECTORS / "client.jsonl"):
        for vector in load_vectors(line)[:6]:
            yield "state", _dumps(vector["state"])
            yield "form_event", _dumps(vector["event"])
            for effect in vector["expected"]["effects"]:
                yield "form_effect", _dumps(effect)
    policy = Policy().to_data()
    yield "policy", _dumps(policy)
    yield "policy", _dumps({"loss_threshold": 3, "max_candidates": 2})
    for text in ("udp:10.0.0.1:4000", "tcp:[::1]:443", "quic:example.org:8443",
                 "udp:[fe80::1%eth0]:1", "udp:a-b.example.:65535"):
        yield "transport_text", text.encode()
    for event in events:
        yield "form_event", _dumps(event_to_json(event))
    for effect in effects:
        yield "form_effect", _dumps(effect_to_json(effect))
    create = {**create_request(Role.SERVER, SESSION_ID, SECRET, 0, Policy()),
              "session": "s1"}
    steps = [{"op": "step", "session": "s1", "event": event_to_json(e)} for e in events]
    lines = [{"v": PROTOCOL_VERSION, "seq": 1, "op": "hello"},
             {"v": PROTOCOL_VERSION, "seq": 2, **create},
             *({"v": PROTOCOL_VERSION, "seq": 3 + i, **s} for i, s in enumerate(steps)),
             {"v": PROTOCOL_VERSION, "seq": 99, "op": "bye"}]
    yield "conformance_request", b"\n".join(_dumps(line) for line in lines)
    yield "conformance_request", b"\n".join(_dumps(line) for line in lines[1:4])
    yield "counterexample", format_counterexample([create, *steps]).encode()
    audit = [e.to_record() for e in effects if isinstance(e, StateChanged | Rejected)]
    for record in audit:
        yield "audit_record", _dumps(record)
    yield "trace", b"\n".join(_dumps(r) for r in audit)
    yield "trace", b"\n".join([_dumps({"v": 1, "type": "policy", "script": "s",
                                       "policy": policy}), *(_dumps(r) for r in audit)])
    peer = TransportDescriptor.udp("198.51.100.7", 5000)
    for message in (
        udp_wire.HandshakeInit(bytes(range(32))),
        udp_wire.HandshakeInit(bytes(range(32)), bytes(range(16))),
        udp_wire.CookieReply(bytes(range(32)), bytes(range(16))),
        udp_wire.HandshakeResponse(bytes(32), SESSION_ID),
        udp_wire.ReattachRequestMessage(SESSION_ID, 1, 2, 3, peer, b"", bytes(32)),
        udp_wire.PathChallengeMessage(SESSION_ID, 0, 1, 3, b"\x01" * 16, peer, bytes(32)),
        udp_wire.ReattachAcceptMessage(SESSION_ID, 1, 2, 3, peer, bytes(32)),
        udp_wire.DataMessage(SESSION_ID, 1, 7, b"payload", bytes(udp_wire.TAG_SIZE)),
        udp_wire.HeartbeatMessage(SESSION_ID, 2, 0, bytes(udp_wire.TAG_SIZE)),
    ):
        yield "udp_datagram", udp_wire.encode(message)


def write_seeds(root: Path = CORPUS) -> dict[str, int]:
    """Write every seed; return how many files each target's directory holds."""
    for target, blob in _seeds():
        assert target in TARGETS, target
        folder = root / target
        folder.mkdir(parents=True, exist_ok=True)
        (folder / hashlib.sha1(blob, usedforsecurity=False).hexdigest()).write_bytes(blob)
    return {name: len(list((root / name).iterdir())) for name in TARGETS}


if __name__ == "__main__":
    for name, count in write_seeds().items():
        print(f"{name}: {count} files")
