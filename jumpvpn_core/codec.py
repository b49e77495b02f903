"""Session state <-> plain data (JSON-ready dicts), without loss.

Stores and simulators persist states through this. The control key is included only
when asked for (`include_secrets=True`); otherwise the caller supplies it again on the
way back in (`control_key=`). Decoding validates every field and raises
`StateDecodeError` naming the first bad one: a store record is never repaired silently.

The format is versioned (`STATE_FORMAT_VERSION`) and specified in `specs/state-format.md`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from jumpvpn_core.effects import SendReattachAccept, SendReattachRequest
from jumpvpn_core.errors import InvalidTransportError, PolicyError, StateDecodeError
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.proof import CONTROL_KEY_SIZE, PROOF_SIZE, SESSION_ID_SIZE
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.state import (
    AcceptRecord,
    ClientSide,
    Identity,
    Link,
    PendingPath,
    PendingReattach,
    Roaming,
    ServerSide,
    SessionState,
)
from jumpvpn_core.transport import TransportDescriptor

__all__ = ["STATE_FORMAT_VERSION", "state_from_data", "state_to_data"]

_V = TypeVar("_V")

STATE_FORMAT_VERSION = 2
# Format 1 had no `request_nonce` in a pending path validation; such a record still decodes,
# the validation read as opened by unproven traffic (0), the reading that lets a
# proof-backed request pre-empt it (see specs/state-format.md).
_FORMATS = (1, STATE_FORMAT_VERSION)


def _transport_or_none(value: TransportDescriptor | None) -> str | None:
    return None if value is None else value.to_data()


def state_to_data(state: SessionState, *, include_secrets: bool = False) -> dict[str, Any]:
    """Plain-data form of `state`. The control key appears only with `include_secrets`."""
    ident = state.ident
    link = state.link
    side = state.side
    side_data: dict[str, Any]
    if isinstance(side, ServerSide):
        pending_path = side.pending
        side_data = {
            "binding_version": side.binding_version,
            "replay_top": side.replay_top,
            "replay_bits": format(side.replay_bits, "x"),
            "verified_times": list(side.verified_times),
            "pending": None if pending_path is None else {
                "address": pending_path.address.to_data(),
                "challenge": pending_path.challenge.hex(),
                "deadline_ms": pending_path.deadline_ms,
                "bytes_received": pending_path.bytes_received,
                "bytes_sent": pending_path.bytes_sent,
                "challenge_sent": pending_path.challenge_sent,
                "request_nonce": pending_path.request_nonce,
            },
            "challenge_counter": side.challenge_counter,
            "last_accept": None if side.last_accept is None else {
                "nonce": side.last_accept.nonce,
                "request_version": side.last_accept.request_version,
                "request_proof": side.last_accept.request_proof.hex(),
                "accept": {
                    "to": side.last_accept.accept.to.to_data(),
                    "nonce": side.last_accept.accept.nonce,
                    "state_version": side.last_accept.accept.state_version,
                    "timestamp_ms": side.last_accept.accept.timestamp_ms,
                    "proof": side.last_accept.accept.proof.hex(),
                },
            },
        }
    else:
        pending = side.pending
        side_data = {
            "known_version": side.known_version,
            "next_nonce": side.next_nonce,
            "pending": None if pending is None else {
                "request": {
                    "via": pending.request.via.to_data(),
                    "nonce": pending.request.nonce,
                    "state_version": pending.request.state_version,
                    "timestamp_ms": pending.request.timestamp_ms,
                    "candidate": pending.request.candidate.to_data(),
                    "challenge": pending.request.challenge.hex(),
                    "proof": pending.request.proof.hex(),
                },
                "deadline_ms": pending.deadline_ms,
                "sends": pending.sends,
            },
            "attempt": side.attempt,
        }
    data: dict[str, Any] = {
        "format": STATE_FORMAT_VERSION,
        "role": ident.role.value,
        "session_id": ident.session_id.hex(),
        "policy": ident.policy.to_data(),
        "created_ms": ident.created_ms,
        "phase": state.phase.value,
        "state_version": state.state_version,
        "phase_since_ms": state.phase_since_ms,
        "end_reason": None if state.end_reason is None else state.end_reason.value,
        "link": {
            "active": _transport_or_none(link.active),
            "active_failed": link.active_failed,
            "last_rx_ms": link.last_rx_ms,
            "loss_streak": link.loss_streak,
            "loss_start_ms": link.loss_start_ms,
            "heard_in_phase": link.heard_in_phase,
            "clock_ms": link.clock_ms,
        },
        "roaming": {
            "candidates": [c.to_data() for c in state.roaming.candidates],
            "switch_times": list(state.roaming.switch_times),
            "recovery_rounds": state.roaming.recovery_rounds,
        },
        "side": side_data,
    }
    if include_secrets:
        data["control_key"] = ident.control_key.hex()
    return data


class _Reader:
    """Typed field access that turns every problem into a StateDecodeError with a path."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise StateDecodeError(f"{path or 'state'} must be an object")
        self.data: dict[str, Any] = data
        self.path = path

    def _get(self, key: str) -> Any:
        if key not in self.data:
            raise StateDecodeError(f"missing field {self.path}{key}")
        return self.data[key]

    def get_int(self, key: str) -> int:
        value = self._get(key)
        if type(value) is not int or value < 0:
            raise StateDecodeError(f"{self.path}{key} must be a non-negative int")
        return value

    def get_bool(self, key: str) -> bool:
        value = self._get(key)
        if type(value) is not bool:
            raise StateDecodeError(f"{self.path}{key} must be a bool")
        return value

    def get_str(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise StateDecodeError(f"{self.path}{key} must be a string")
        return value

    def get_hex(self, key: str, size: int | None = None) -> bytes:
        try:
            value = bytes.fromhex(self.get_str(key))
        except ValueError:
            raise StateDecodeError(f"{self.path}{key} must be hex") from None
        if size is not None and len(value) != size:
            raise StateDecodeError(f"{self.path}{key} must be {size} bytes")
        return value

    def get_ints(self, key: str) -> tuple[int, ...]:
        value = self._get(key)
        if not isinstance(value, list) or any(type(v) is not int or v < 0 for v in value):
            raise StateDecodeError(f"{self.path}{key} must be a list of non-negative ints")
        return tuple(value)

    def get_transport(self, key: str) -> TransportDescriptor:
        try:
            return TransportDescriptor.from_data(self.get_str(key))
        except InvalidTransportError as exc:
            raise StateDecodeError(f"{self.path}{key}: {exc}") from None

    def get_transport_or_none(self, key: str) -> TransportDescriptor | None:
        return None if self._get(key) is None else self.get_transport(key)

    def get_sub(self, key: str) -> _Reader:
        return _Reader(self._get(key), f"{self.path}{key}.")

    def get_sub_or_none(self, key: str) -> _Reader | None:
        return None if self._get(key) is None else self.get_sub(key)


def _reuse(value: _V, existing: _V | None) -> _V:
    """`existing` if it equals `value` and has its type, else `value` (shares equal objects)."""
    if existing is not None and type(existing) is type(value) and existing == value:
        return existing
    return value


def state_from_data(data: Any, *, control_key: bytes | None = None) -> SessionState:
    """Inverse of `state_to_data`. Raises `StateDecodeError` on any malformed field.

    The control key comes from `data["control_key"]` if present, else from `control_key`.
    """
    root = _Reader(data, "")
    fmt = root.get_int("format")
    if fmt not in _FORMATS:
        raise StateDecodeError(f"unsupported state format {root.data['format']!r}")
    try:
        role = Role(root.get_str("role"))
        phase = Phase(root.get_str("phase"))
        end = root._get("end_reason")
        end_reason = None if end is None else ReasonCode(root.get_str("end_reason"))
    except ValueError as exc:
        raise StateDecodeError(str(exc)) from None
    try:
        policy = Policy.from_data(root._get("policy"))
    except (PolicyError, TypeError) as exc:
        raise StateDecodeError(f"policy: {exc}") from None
    if "control_key" in root.data:
        key = root.get_hex("control_key", CONTROL_KEY_SIZE)
    elif control_key is not None and len(control_key) == CONTROL_KEY_SIZE:
        key = control_key
    else:
        raise StateDecodeError("no control key: pass control_key= or include_secrets=True data")
    ident = Identity(role, root.get_hex("session_id", SESSION_ID_SIZE), key, policy,
                     root.get_int("created_ms"))
    link_r = root.get_sub("link")
    link = Link(
        link_r.get_transport_or_none("active"),
        link_r.get_bool("active_failed"),
        link_r.get_int("last_rx_ms"),
        link_r.get_int("loss_streak"),
        link_r.get_int("loss_start_ms"),
        link_r.get_bool("heard_in_phase"),
        link_r.get_int("clock_ms"),
    )
    roam_r = root.get_sub("roaming")
    candidates_raw = roam_r._get("candidates")
    if not isinstance(candidates_raw, list):
        raise StateDecodeError("roaming.candidates must be a list")
    candidates = []
    for index, raw in enumerate(candidates_raw):
        try:
            candidates.append(TransportDescriptor.from_data(raw))
        except InvalidTransportError as exc:
            raise StateDecodeError(f"roaming.candidates[{index}]: {exc}") from None
    roaming = Roaming.of(tuple(candidates), roam_r.get_ints("switch_times"),
                      roam_r.get_int("recovery_rounds"))
    side_r = root.get_sub("side")
    side: ServerSide | ClientSide
    if role is Role.SERVER:
        try:
            bits = int(side_r.get_str("replay_bits"), 16)
        except ValueError:
            raise StateDecodeError("side.replay_bits must be hex") from None
        if bits < 0 or bits.bit_length() > policy.replay_window_bits:
            raise StateDecodeError("side.replay_bits is wider than the replay window")
        binding_version = side_r.get_int("binding_version")
        pend_r = side_r.get_sub_or_none("pending")
        pending_path = None if pend_r is None else PendingPath(
            pend_r.get_transport("address"),
            pend_r.get_hex("challenge"),
            pend_r.get_int("deadline_ms"),
            pend_r.get_int("bytes_received"),
            pend_r.get_int("bytes_sent"),
            pend_r.get_bool("challenge_sent"),
            pend_r.get_int("request_nonce") if fmt > 1 else 0,
        )
        last_r = side_r.get_sub_or_none("last_accept")
        last_accept = None
        if last_r is not None:
            acc_r = last_r.get_sub("accept")
            nonce = last_r.get_int("nonce")
            # Memory: the stored accept normally repeats the binding (its address, the
            # request's nonce, the binding version). Reuse those objects instead of
            # keeping equal copies (about 200 B per decoded server session); the decoded
            # state is equal either way.
            last_accept = AcceptRecord(
                nonce,
                last_r.get_int("request_version"),
                last_r.get_hex("request_proof", PROOF_SIZE),
                SendReattachAccept(_reuse(acc_r.get_transport("to"), link.active),
                                   ident.session_id,
                                   _reuse(acc_r.get_int("nonce"), nonce),
                                   _reuse(acc_r.get_int("state_version"), binding_version),
                                   acc_r.get_int("timestamp_ms"),
                                   acc_r.get_hex("proof", PROOF_SIZE)),
            )
        side = ServerSide(binding_version, side_r.get_int("replay_top"), bits,
                          side_r.get_ints("verified_times"), pending_path,
                          side_r.get_int("challenge_counter"), last_accept)
    else:
        pend_r = side_r.get_sub_or_none("pending")
        pending = None
        if pend_r is not None:
            req_r = pend_r.get_sub("request")
            request = SendReattachRequest(
                req_r.get_transport("via"), ident.session_id, req_r.get_int("nonce"),
                req_r.get_int("state_version"), req_r.get_int("timestamp_ms"),
                req_r.get_transport("candidate"), req_r.get_hex("challenge"),
                req_r.get_hex("proof", PROOF_SIZE),
            )
            pending = PendingReattach(request, pend_r.get_int("deadline_ms"),
                                      pend_r.get_int("sends"))
        side = ClientSide(side_r.get_int("known_version"), side_r.get_int("next_nonce"), pending,
                          side_r.get_int("attempt"))
    return SessionState(ident, phase, root.get_int("state_version"), root.get_int("phase_since_ms"),
                        link, roaming, side, end_reason)
