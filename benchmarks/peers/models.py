"""Mutable session models shared by the two peer implementations.

The checks and actions are the ones `jumpvpn_core.machine` performs on the lifecycle's
path, written as plain methods; each peer wires them into its library as conditions (guards)
and callbacks (actions). Proof and replay primitives are the core's own, so both peers pay
exactly the same cryptography as `step()`.

What the peers do not do, and `step()` does: validate event fields on construction, check
that time does not go backwards, compute deadlines on every input (the peers are told when a
timer is due), emit audit records (`StateChanged`/`Rejected`) or effect objects other than
the outgoing message, and keep the previous state intact (the models are mutated in place).
"""

from __future__ import annotations

from benchmarks.peers.script import POLICY, SECRET, SESSION_ID
from jumpvpn_core import TransportDescriptor
from jumpvpn_core.proof import MessageType, compute_proof, derive_control_key, verify_proof
from jumpvpn_core.replay import ReplayVerdict, check_nonce, mark_nonce

__all__ = ["KEY", "ClientModel", "Message", "ServerModel"]

KEY = derive_control_key(SECRET, SESSION_ID)


class Message:
    """A reattach request (client -> server) or accept (server -> client) on the wire."""

    __slots__ = ("nonce", "proof", "session_id", "state_version", "timestamp_ms", "transport")

    def __init__(self, session_id: bytes, nonce: int, state_version: int, timestamp_ms: int,
                 transport: TransportDescriptor, proof: bytes) -> None:
        self.session_id = session_id
        self.nonce = nonce
        self.state_version = state_version
        self.timestamp_ms = timestamp_ms
        self.transport = transport
        self.proof = proof


class ClientModel:
    """Client session fields, conditions and actions."""

    def __init__(self) -> None:
        self.reset(0)

    def reset(self, now: int) -> None:
        """Back to a fresh BIRTH session (the library's state is reset by the caller)."""
        self.active: TransportDescriptor | None = None
        self.version = 0
        self.known_version = 0
        self.next_nonce = 1
        self.pending_nonce: int | None = None
        self.loss_streak = 0
        self.loss_start_ms = now
        self.heard_in_phase = False
        self.phase_since_ms = now
        self.last_rx_ms = now
        self.outbox: Message | None = None

    # --- conditions -------------------------------------------------------------------------

    def loss_crosses(self, now: int, count: int) -> bool:
        """The reported losses reach the threshold within the loss window."""
        if self.loss_streak == 0 or now - self.loss_start_ms > POLICY.loss_window_ms:
            return count >= POLICY.loss_threshold
        return self.loss_streak + count >= POLICY.loss_threshold

    def accept_session_ok(self, now: int, msg: Message) -> bool:
        return msg.session_id == SESSION_ID

    def accept_nonce_ok(self, now: int, msg: Message) -> bool:
        return self.pending_nonce is not None and msg.nonce == self.pending_nonce

    def accept_version_ok(self, now: int, msg: Message) -> bool:
        return msg.state_version > self.known_version

    def accept_proof_ok(self, now: int, msg: Message) -> bool:
        return verify_proof(KEY, msg.proof, MessageType.REATTACH_ACCEPT, SESSION_ID, msg.nonce,
                            msg.state_version, msg.timestamp_ms, msg.transport)

    def recovery_over(self, now: int) -> bool:
        return now >= self.phase_since_ms + POLICY.max_recovery_window_ms

    def heard(self, now: int) -> bool:
        return self.heard_in_phase

    # --- actions ----------------------------------------------------------------------------

    def _enter(self, now: int) -> None:
        self.version += 1
        self.phase_since_ms = now
        self.heard_in_phase = False

    def on_attach(self, now: int, transport: TransportDescriptor) -> None:
        self._enter(now)
        self.active = transport
        self.known_version = 1
        self.last_rx_ms = now

    def count_loss(self, now: int, count: int) -> None:
        if self.loss_streak == 0 or now - self.loss_start_ms > POLICY.loss_window_ms:
            self.loss_streak, self.loss_start_ms = count, now
        else:
            self.loss_streak += count

    def start_reattach(self, now: int, count: int) -> None:
        """Enter RECOVERING and put a reattach request (with its proof) in the outbox."""
        self._enter(now)
        self.loss_streak = 0
        nonce = self.next_nonce
        self.next_nonce += 1
        active = self.active
        assert active is not None
        proof = compute_proof(KEY, MessageType.REATTACH_REQUEST, SESSION_ID, nonce,
                              self.known_version, now, active)
        self.pending_nonce = nonce
        self.outbox = Message(SESSION_ID, nonce, self.known_version, now, active, proof)

    def on_accepted(self, now: int, msg: Message) -> None:
        self._enter(now)
        self.known_version = msg.state_version
        self.pending_nonce = None
        self.heard_in_phase = True
        self.last_rx_ms = now

    def on_traffic(self, now: int) -> None:
        self.heard_in_phase = True
        self.last_rx_ms = now

    def on_degrade(self, now: int) -> None:
        self._enter(now)
        self.pending_nonce = None

    def on_end(self, now: int) -> None:
        self._enter(now)
        self.pending_nonce = None


class ServerModel:
    """Server session fields, conditions and actions."""

    def __init__(self) -> None:
        self.reset(0)

    def reset(self, now: int) -> None:
        """Back to a fresh BIRTH session (the library's state is reset by the caller)."""
        self.active: TransportDescriptor | None = None
        self.version = 0
        self.binding_version = 0
        self.replay_top = 0
        self.replay_bits = 0
        self.verified_times: list[int] = []
        self.outbox: Message | None = None

    # --- conditions (cheap first, HMAC last, as in step()) -----------------------------------

    def session_ok(self, now: int, msg: Message, observed: TransportDescriptor) -> bool:
        return msg.session_id == SESSION_ID

    def rate_ok(self, now: int, msg: Message, observed: TransportDescriptor) -> bool:
        times = self.verified_times
        limit = POLICY.reattach_rate_limit
        return not (len(times) >= limit and now - times[-limit] < POLICY.reattach_rate_window_ms)

    def nonce_fresh(self, now: int, msg: Message, observed: TransportDescriptor) -> bool:
        return check_nonce(self.replay_top, self.replay_bits, POLICY.replay_window_bits,
                           msg.nonce) is ReplayVerdict.FRESH

    def version_ok(self, now: int, msg: Message, observed: TransportDescriptor) -> bool:
        return msg.state_version == self.binding_version

    def timestamp_ok(self, now: int, msg: Message, observed: TransportDescriptor) -> bool:
        return (msg.timestamp_ms + POLICY.proof_max_age_ms >= now
                and msg.timestamp_ms <= now + POLICY.max_clock_skew_ms)

    def on_active_path(self, now: int, msg: Message, observed: TransportDescriptor) -> bool:
        return observed == self.active

    def proof_ok(self, now: int, msg: Message, observed: TransportDescriptor) -> bool:
        return verify_proof(KEY, msg.proof, MessageType.REATTACH_REQUEST, SESSION_ID, msg.nonce,
                            msg.state_version, msg.timestamp_ms, msg.transport)

    # --- actions ----------------------------------------------------------------------------

    def on_attach(self, now: int, transport: TransportDescriptor) -> None:
        self.active = transport
        self.version += 1
        self.binding_version = self.version

    def on_reattached(self, now: int, msg: Message, observed: TransportDescriptor) -> None:
        """Mark the nonce, record the verified time, bump the version, answer with a proof."""
        self.replay_top, self.replay_bits = mark_nonce(
            self.replay_top, self.replay_bits, POLICY.replay_window_bits, msg.nonce)
        self.verified_times.append(now)
        del self.verified_times[:-POLICY.reattach_rate_limit]
        self.version += 1
        self.binding_version = self.version
        proof = compute_proof(KEY, MessageType.REATTACH_ACCEPT, SESSION_ID, msg.nonce,
                              self.version, now, observed)
        self.outbox = Message(SESSION_ID, msg.nonce, self.version, now, observed, proof)

    def on_end(self, now: int) -> None:
        self.version += 1
