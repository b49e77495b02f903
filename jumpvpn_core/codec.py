"""Session state <-> plain data (JSON-ready dicts), without loss.

Stores and simulators persist states through this. The control key is included only
when asked for (`include_secrets=True`); otherwise the caller supplies it again on the
way back in (`control_key=`). Decoding validates every field and raises
`StateDecodeError` naming the first bad one: a store record is never repaired silently.

The format is versioned (`STATE_FORMAT_VERSION`) and specified in `specs/state-format.md`.
"""

from __future__ import annotations

import enum
import re
from typing import Any, TypeVar

from jumpvpn_core.effects import SendReattachAccept, SendReattachRequest
from jumpvpn_core.errors import InvalidTransportError, PolicyError, StateDecodeError, describe
from jumpvpn_core.events import RTT_MAX_MS
from jumpvpn_core.phases import TRANSITION_TABLE, Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.proof import CONTROL_KEY_SIZE, PROOF_SIZE, SESSION_ID_SIZE, U64_MAX
from jumpvpn_core.quality import LOSS_ONE_Q16
from jumpvpn_core.reasons import ReasonCode
from jumpvpn_core.state import (
    AcceptRecord,
    ClientSide,
    Identity,
    Link,
    PathScore,
    PendingPath,
    PendingReattach,
    Roaming,
    ServerSide,
    SessionState,
)
from jumpvpn_core.transport import TransportDescriptor

__all__ = ["COUNTER_MAX", "STATE_FORMAT_VERSION", "state_from_data", "state_to_data"]

_V = TypeVar("_V")
_E = TypeVar("_E", bound=enum.Enum)

STATE_FORMAT_VERSION = 3
# Format 1 had no `request_nonce` in a pending path validation; such a record still decodes,
# the validation read as opened by unproven traffic (0), the reading that lets a
# proof-backed request pre-empt it (see specs/state-format.md). Formats 1 and 2 had no path
# quality: the client's `quality`, `better` and `better_since_ms` read as empty, and the
# policy's path-quality fields as their defaults (a session that never measured a path
# behaves exactly as before).
_FORMATS = (1, 2, STATE_FORMAT_VERSION)
_QUALITY_POLICY_FIELDS = ("quality_max_age_ms", "quality_loss_penalty_ms",
                          "migration_margin_ms", "migration_dwell_ms")


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
            "quality": [{
                "transport": score.transport.to_data(),
                "srtt_ms": score.srtt_ms,
                "loss_q16": score.loss_q16,
                "updated_ms": score.updated_ms,
            } for score in side.quality],
            "better": _transport_or_none(side.better),
            "better_since_ms": side.better_since_ms,
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


#: Largest value decoded for a counter the core increments (`state_version`, `next_nonce`,
#: `challenge_counter`): from any decodable state it takes 2**63 steps to reach the u64
#: limit of the proof encoding, which no session lives long enough to make.
COUNTER_MAX = (1 << 63) - 1
_MAX_CHALLENGE = 255
# Lower-case hex, two digits per byte: the only form `state_to_data` writes.
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
# The bitmap as `format(bits, "x")` writes it: no prefix, no leading zero, no separators.
_HEX_INT = re.compile(r"0|[1-9a-f][0-9a-f]*")
# Reasons that end a session: the only ones an `end_reason` may hold.
_ENDING_REASONS = frozenset(reason for (_src, reason), dst in TRANSITION_TABLE.items()
                            if dst is Phase.TERMINATED)
_LIVE_AFTER_BIRTH = frozenset({Phase.ATTACHED, Phase.RECOVERING, Phase.DEGRADED})


class _Reader:
    """Typed field access that turns every problem into a StateDecodeError with a path.

    Messages name the field and describe the bad value (`describe`): they never quote it,
    since a record holds the control key and a corrupted field may hold anything.
    """

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise StateDecodeError(f"{path.rstrip('.') or 'state'} must be an object, "
                                   f"got {describe(data)}")
        self.data: dict[str, Any] = data
        self.path = path

    def fail(self, key: str, problem: str) -> StateDecodeError:
        return StateDecodeError(f"{self.path}{key} {problem}")

    def _get(self, key: str) -> Any:
        if key not in self.data:
            raise StateDecodeError(f"missing field {self.path}{key}")
        return self.data[key]

    def get_int(self, key: str, maximum: int = U64_MAX, minimum: int = 0) -> int:
        value = self._get(key)
        if type(value) is not int or not minimum <= value <= maximum:
            raise self.fail(key, f"must be an int in {minimum}..{maximum}, "
                                 f"got {describe(value)}")
        return value

    def get_bool(self, key: str) -> bool:
        value = self._get(key)
        if type(value) is not bool:
            raise self.fail(key, f"must be a bool, got {describe(value)}")
        return value

    def get_str(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {describe(value)}")
        return value

    def get_enum(self, key: str, kind: type[_E]) -> _E:
        text = self.get_str(key)
        try:
            return kind(text)
        except ValueError:
            raise self.fail(key, f"must be a {kind.__name__} value") from None

    def get_hex(self, key: str, size: int | None = None, max_size: int | None = None) -> bytes:
        text = self.get_str(key)
        if (size is not None and len(text) != 2 * size) or \
                (max_size is not None and len(text) > 2 * max_size) or not _HEX.fullmatch(text):
            what = f"{size} bytes" if size is not None else f"at most {max_size} bytes"
            raise self.fail(key, f"must be {what} of lower-case hex, got {describe(text)}")
        return bytes.fromhex(text)

    def get_ints(self, key: str, max_items: int) -> tuple[int, ...]:
        value = self._get(key)
        if not isinstance(value, list) or len(value) > max_items or \
                any(type(v) is not int or not 0 <= v <= U64_MAX for v in value):
            raise self.fail(key, f"must be a list of at most {max_items} ints in "
                                 f"0..{U64_MAX}, got {describe(value)}")
        return tuple(value)

    def get_transport(self, key: str) -> TransportDescriptor:
        value = self._get(key)
        try:
            return TransportDescriptor.from_data(value)
        except InvalidTransportError as exc:
            raise self.fail(key, f"is not a transport: {exc}") from None

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


def _given_key(control_key: object) -> bytes:
    if type(control_key) is not bytes or len(control_key) != CONTROL_KEY_SIZE:
        raise StateDecodeError(f"control_key= must be {CONTROL_KEY_SIZE} bytes, "
                               f"got {describe(control_key)}")
    return control_key


def _server_side(side_r: _Reader, policy: Policy, ident: Identity, link: Link,
                 state_version: int, version: int = STATE_FORMAT_VERSION) -> ServerSide:
    text = side_r.get_str("replay_bits")
    if len(text) > policy.replay_window_bits // 4 or not _HEX_INT.fullmatch(text):
        raise side_r.fail("replay_bits", "must be the bitmap in lower-case hex without "
                                         "leading zeros, no wider than the replay window")
    bits = int(text, 16)
    if bits.bit_length() > policy.replay_window_bits:
        raise side_r.fail("replay_bits", "is wider than the replay window")
    binding_version = side_r.get_int("binding_version", state_version)
    pend_r = side_r.get_sub_or_none("pending")
    pending_path = None if pend_r is None else PendingPath(
        pend_r.get_transport("address"),
        pend_r.get_hex("challenge", max_size=_MAX_CHALLENGE),
        pend_r.get_int("deadline_ms"),
        pend_r.get_int("bytes_received"),
        pend_r.get_int("bytes_sent"),
        pend_r.get_bool("challenge_sent"),
        pend_r.get_int("request_nonce") if version > 1 else 0,
    )
    last_r = side_r.get_sub_or_none("last_accept")
    last_accept = None
    if last_r is not None:
        acc_r = last_r.get_sub("accept")
        nonce = last_r.get_int("nonce", minimum=1)
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
                               _reuse(acc_r.get_int("nonce", minimum=1), nonce),
                               _reuse(acc_r.get_int("state_version"), binding_version),
                               acc_r.get_int("timestamp_ms"),
                               acc_r.get_hex("proof", PROOF_SIZE)),
        )
    return ServerSide(binding_version, side_r.get_int("replay_top"), bits,
                      side_r.get_ints("verified_times", policy.reattach_rate_limit),
                      pending_path, side_r.get_int("challenge_counter", COUNTER_MAX),
                      last_accept)


def _quality(side_r: _Reader, policy: Policy) -> tuple[PathScore, ...]:
    raw = side_r._get("quality")
    bound = policy.max_candidates + 1
    if not isinstance(raw, list) or len(raw) > bound:
        raise side_r.fail("quality", f"must be a list of at most {bound} path scores, "
                                     f"got {describe(raw)}")
    scores = []
    for index, item in enumerate(raw):
        score_r = _Reader(item, f"{side_r.path}quality[{index}].")
        scores.append(PathScore(score_r.get_transport("transport"),
                                score_r.get_int("srtt_ms", RTT_MAX_MS),
                                score_r.get_int("loss_q16", LOSS_ONE_Q16),
                                score_r.get_int("updated_ms")))
    if len({score.transport for score in scores}) != len(scores):
        raise side_r.fail("quality", "must not score a transport twice")
    return tuple(scores)


def _client_side(side_r: _Reader, ident: Identity,
                 version: int = STATE_FORMAT_VERSION) -> ClientSide:
    next_nonce = side_r.get_int("next_nonce", COUNTER_MAX, minimum=1)
    pend_r = side_r.get_sub_or_none("pending")
    pending = None
    if pend_r is not None:
        req_r = pend_r.get_sub("request")
        request = SendReattachRequest(
            req_r.get_transport("via"), ident.session_id,
            req_r.get_int("nonce", next_nonce - 1, minimum=1),
            req_r.get_int("state_version"), req_r.get_int("timestamp_ms"),
            req_r.get_transport("candidate"),
            req_r.get_hex("challenge", max_size=_MAX_CHALLENGE),
            req_r.get_hex("proof", PROOF_SIZE),
        )
        pending = PendingReattach(request, pend_r.get_int("deadline_ms"),
                                  pend_r.get_int("sends"))
    if version < 3:
        return ClientSide(side_r.get_int("known_version"), next_nonce, pending,
                          side_r.get_int("attempt"), (), None, 0)
    better = side_r.get_transport_or_none("better")
    since = side_r.get_int("better_since_ms")
    if better is None and since:
        raise side_r.fail("better_since_ms", "must be 0 while no candidate is tracked")
    return ClientSide(side_r.get_int("known_version"), next_nonce, pending,
                      side_r.get_int("attempt"), _quality(side_r, ident.policy), better, since)


def state_from_data(data: Any, *, control_key: bytes | None = None) -> SessionState:
    """Inverse of `state_to_data`. Raises `StateDecodeError` on any malformed field.

    The control key comes from `data["control_key"]` if present, else from `control_key`.
    Only the canonical form `state_to_data` writes is accepted (integers as JSON integers,
    lower-case hex), every integer within its range, and the record must be consistent
    (`specs/bad-input.md` lists the rules): a record is refused, never repaired.
    """
    root = _Reader(data, "")
    version = root.get_int("format")
    if version not in _FORMATS:
        raise root.fail("format", f"is {describe(version)}, this decoder reads "
                                  f"{', '.join(map(str, _FORMATS))}")
    role = root.get_enum("role", Role)
    phase = root.get_enum("phase", Phase)
    end_reason = None if root._get("end_reason") is None else \
        root.get_enum("end_reason", ReasonCode)
    if (phase is Phase.TERMINATED) != (end_reason is not None):
        raise root.fail("end_reason", "must be set exactly when the phase is TERMINATED")
    if end_reason is not None and end_reason not in _ENDING_REASONS:
        raise root.fail("end_reason", "must be a reason that ends a session")
    policy_data = root._get("policy")
    if version < 3 and isinstance(policy_data, dict):
        newer = [name for name in _QUALITY_POLICY_FIELDS if name in policy_data]
        if newer:
            raise StateDecodeError(f"policy: field {newer[0]!r} is not in format {version}")
        defaults = Policy()
        policy_data = {**policy_data,
                       **{name: getattr(defaults, name) for name in _QUALITY_POLICY_FIELDS}}
    try:
        policy = Policy.from_data(policy_data)
    except PolicyError as exc:
        raise StateDecodeError(f"policy: {exc}") from None
    if "control_key" in root.data:
        key = root.get_hex("control_key", CONTROL_KEY_SIZE)
    elif control_key is not None:
        key = _given_key(control_key)
    else:
        raise StateDecodeError("no control key: pass control_key= or include_secrets=True data")
    ident = Identity(role, root.get_hex("session_id", SESSION_ID_SIZE), key, policy,
                     root.get_int("created_ms"))
    state_version = root.get_int("state_version", COUNTER_MAX)
    if phase is Phase.BIRTH and state_version:
        raise root.fail("state_version", "must be 0 in BIRTH")
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
    if (link.active is None and phase in _LIVE_AFTER_BIRTH) or \
            (link.active is not None and phase is Phase.BIRTH):
        raise link_r.fail("active", "must be set exactly in ATTACHED, RECOVERING and DEGRADED "
                                    "(and may be either once TERMINATED)")
    roam_r = root.get_sub("roaming")
    candidates_raw = roam_r._get("candidates")
    if not isinstance(candidates_raw, list) or len(candidates_raw) > policy.max_candidates:
        raise roam_r.fail("candidates", f"must be a list of at most {policy.max_candidates} "
                                        f"transports, got {describe(candidates_raw)}")
    candidates = []
    for index, raw in enumerate(candidates_raw):
        try:
            candidates.append(TransportDescriptor.from_data(raw))
        except InvalidTransportError as exc:
            raise roam_r.fail(f"candidates[{index}]", f"is not a transport: {exc}") from None
    if len(set(candidates)) != len(candidates):
        raise roam_r.fail("candidates", "must not repeat a transport")
    roaming = Roaming.of(tuple(candidates),
                         roam_r.get_ints("switch_times", policy.max_switches_per_minute),
                         roam_r.get_int("recovery_rounds"))
    side_r = root.get_sub("side")
    side: ServerSide | ClientSide
    if role is Role.SERVER:
        side = _server_side(side_r, policy, ident, link, state_version, version)
    else:
        side = _client_side(side_r, ident, version)
    if phase is Phase.TERMINATED and side.pending is not None:
        raise side_r.fail("pending", "must be null once TERMINATED")
    return SessionState(ident, phase, state_version, root.get_int("phase_since_ms"),
                        link, roaming, side, end_reason)
