"""`step()` on each path, the replay window check and `next_deadline`, plus the micro peers.

The micro peers (one HMAC-SHA256 verify through `cryptography`, stdlib `hmac.digest`, a bare
frozen attrs construction, a dict-dispatch call) are measured in the same run so that the
core's figures can be read against what the same interpreter does for primitive work.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import attrs
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC

from benchmarks.fixtures import (
    CLIENT_LOCAL,
    POLICY,
    SERVER_SEEN,
    T0,
    attached_client,
    attached_server,
    client_at_loss_edge,
    full_window_server,
    reattach_request,
)
from benchmarks.harness import BenchResult, Case, Prepared, run_cases
from jumpvpn_core import (
    InboundTraffic,
    PacketLoss,
    Phase,
    ReasonCode,
    Rejected,
    SendReattachAccept,
    SendReattachRequest,
    SessionState,
    StateChanged,
    TransportDescriptor,
    next_deadline,
    step,
)
from jumpvpn_core.proof import MessageType, compute_proof, encode_proof_input
from jumpvpn_core.replay import ReplayVerdict, check_nonce
from jumpvpn_core.state import ServerSide

__all__ = ["CASES", "run"]

_OTHER_SESSION = bytes(range(100, 116))


# --- step() paths -------------------------------------------------------------------------------


def _steady(role: str, fresh_descriptors: bool = False) -> Callable[[int], Prepared]:
    """Traffic on the active path in ATTACHED, each event 1 ms later (never a no-op).

    With `fresh_descriptors`, each event carries its own (equal, not identical)
    `TransportDescriptor`, as when a driver builds one per datagram: the core's
    identity shortcut for the active path does not apply and `==` is paid.
    """

    def make(n: int) -> Prepared:
        if role == "client":
            start, where = attached_client(), CLIENT_LOCAL
        else:
            start, where = attached_server(), SERVER_SEEN
        events = [
            InboundTraffic(T0 + 1 + i, TransportDescriptor(where.kind, where.host, where.port)
                           if fresh_descriptors else where, 1200)
            for i in range(n)
        ]

        def body() -> None:
            state = start
            for event in events:
                state, _ = step(state, event)

        def checked() -> None:
            state = start
            for event in events:
                new, effects = step(state, event)
                assert new is not state
                assert effects == ()
                assert new.phase is Phase.ATTACHED
                assert new.state_version == state.state_version
                assert new.link.last_rx_ms == event.now_ms
                state = new

        return Prepared(n, body, checked)

    return make


def _loss_below_threshold(n: int) -> Prepared:
    """One lost packet on a healthy client: counted, no transition."""
    start = attached_client()
    events = [PacketLoss(T0 + 1 + i) for i in range(n)]

    def body() -> None:
        for event in events:
            step(start, event)

    def checked() -> None:
        for event in events:
            new, effects = step(start, event)
            assert effects == ()
            assert new.phase is Phase.ATTACHED
            assert new.link.loss_streak == 1 < POLICY.loss_threshold

    return Prepared(n, body, checked)


def _enter_recovering(n: int) -> Prepared:
    """The loss that crosses the threshold: RECOVERING plus a reattach request (one HMAC)."""
    start, now = client_at_loss_edge()
    events = [PacketLoss(now + 1) for _ in range(n)]

    def body() -> None:
        for event in events:
            step(start, event)

    def checked() -> None:
        for event in events:
            new, effects = step(start, event)
            assert new.phase is Phase.RECOVERING
            assert len(effects) == 2
            assert isinstance(effects[0], StateChanged)
            assert effects[0].reason is ReasonCode.LOSS_THRESHOLD_EXCEEDED
            assert isinstance(effects[1], SendReattachRequest)
            assert effects[1].via == CLIENT_LOCAL

    return Prepared(n, body, checked)


_FULL: dict[str, tuple[SessionState, int]] = {}


def _full_server() -> tuple[SessionState, int]:
    """The full-window server, built once per process (1,024 real reattaches)."""
    if "server" not in _FULL:
        _FULL["server"] = full_window_server()
    return _FULL["server"]


def _accepted_reattach(n: int) -> Prepared:
    """Server: a fresh valid request on the active path (fresh nonce, matching version).

    The window is full (nonces 1..1024 accepted); each request carries nonce 1025 + i, so
    every call checks the window, the version, the freshness and verifies one HMAC, marks the
    nonce, and computes the accept proof (a second HMAC).
    """
    start, last = _full_server()
    now = last + 2 * POLICY.reattach_rate_window_ms
    requests = [reattach_request(start, now, 1025 + i) for i in range(n)]

    def body() -> None:
        for request in requests:
            step(start, request)

    def checked() -> None:
        for request in requests:
            new, effects = step(start, request)
            assert new.phase is Phase.ATTACHED
            assert new.state_version == start.state_version + 1
            assert isinstance(effects[0], StateChanged)
            assert effects[0].reason is ReasonCode.REATTACHED
            assert isinstance(effects[-1], SendReattachAccept)
            assert effects[-1].nonce == request.nonce
            side = new.side
            assert isinstance(side, ServerSide)
            assert side.replay_top == request.nonce

    return Prepared(n, body, checked)


def _rejection(kind: str) -> Callable[[int], Prepared]:
    """Server: a request refused by a cheap check, before any cryptography."""

    def make(n: int) -> Prepared:
        start, last = _full_server()
        side = start.side
        assert isinstance(side, ServerSide)
        calm = last + 2 * POLICY.reattach_rate_window_ms
        window = POLICY.replay_window_bits
        requests: list[Any]
        if kind == "replay":
            reason = ReasonCode.REPLAY_DETECTED
            requests = [reattach_request(start, calm, 1 + i % window) for i in range(n)]
        elif kind == "stale_version":
            reason = ReasonCode.STALE_STATE_VERSION
            # Stale: older than the version the request behind the binding carried.
            floor = (side.binding_version if side.last_accept is None
                     else side.last_accept.request_version)
            requests = [reattach_request(start, calm, 1025 + i, version=floor - 1)
                        for i in range(n)]
        elif kind == "rate_limited":
            reason = ReasonCode.RATE_LIMITED
            requests = [reattach_request(start, last + 1, 1025 + i) for i in range(n)]
        else:
            reason = ReasonCode.SESSION_MISMATCH
            requests = [reattach_request(start, calm, 1025 + i, session_id=_OTHER_SESSION)
                        for i in range(n)]

        def body() -> None:
            for request in requests:
                step(start, request)

        def checked() -> None:
            for request in requests:
                new, effects = step(start, request)
                assert new is start, "a rejected input must return the same state object"
                assert len(effects) == 1
                assert isinstance(effects[0], Rejected)
                assert effects[0].reason is reason

        return Prepared(n, body, checked)

    return make


def _replay_check(verdict: ReplayVerdict) -> Callable[[int], Prepared]:
    """`check_nonce` on a full 1,024-bit window."""

    def make(n: int) -> Prepared:
        start, _ = _full_server()
        side = start.side
        assert isinstance(side, ServerSide)
        top, bits, size = side.replay_top, side.replay_bits, POLICY.replay_window_bits
        nonces = ([1 + i % size for i in range(n)] if verdict is ReplayVerdict.SEEN
                  else [top + 1 + i for i in range(n)])

        def body() -> None:
            for nonce in nonces:
                check_nonce(top, bits, size, nonce)

        def checked() -> None:
            for nonce in nonces:
                assert check_nonce(top, bits, size, nonce) is verdict

        return Prepared(n, body, checked)

    return make


def _deadline(which: str) -> Callable[[int], Prepared]:
    def make(n: int) -> Prepared:
        if which == "server_attached":
            state = attached_server()
        else:
            edge, now = client_at_loss_edge()
            state, _ = step(edge, PacketLoss(now + 1))
            assert state.phase is Phase.RECOVERING
            assert state.side.pending is not None
        states = [state] * n

        def body() -> None:
            for each in states:
                next_deadline(each)

        def checked() -> None:
            for each in states:
                deadline = next_deadline(each)
                assert deadline is not None
                assert deadline > each.link.clock_ms

        return Prepared(n, body, checked)

    return make


# --- micro peers --------------------------------------------------------------------------------

_KEY = bytes(range(32))
_MESSAGE = encode_proof_input(MessageType.REATTACH_REQUEST, bytes(16), 1025, 1025, T0,
                              SERVER_SEEN)
_TAG = compute_proof(_KEY, MessageType.REATTACH_REQUEST, bytes(16), 1025, 1025, T0,
                     SERVER_SEEN)


def _hmac_cryptography(n: int) -> Prepared:
    """One HMAC-SHA256 verify through `cryptography` (what `verify_proof` does inside)."""
    tags = [_TAG] * n

    def body() -> None:
        for tag in tags:
            mac = HMAC(_KEY, hashes.SHA256())
            mac.update(_MESSAGE)
            mac.verify(tag)

    def checked() -> None:
        body()  # verify() raises InvalidSignature on a mismatch
        bad = HMAC(_KEY, hashes.SHA256())
        bad.update(_MESSAGE + b"x")
        assert bad.finalize() != _TAG

    return Prepared(n, body, checked)


def _hmac_stdlib(n: int) -> Prepared:
    """stdlib `hmac.digest` plus a constant-time compare."""
    tags = [_TAG] * n
    digest, compare = hmac.digest, hmac.compare_digest

    def body() -> None:
        for tag in tags:
            compare(digest(_KEY, _MESSAGE, "sha256"), tag)

    def checked() -> None:
        for tag in tags:
            assert compare(digest(_KEY, _MESSAGE, "sha256"), tag)

    return Prepared(n, body, checked)


@attrs.frozen
class _Small:
    a: int
    b: int
    c: int


def _attrs_construct(n: int) -> Prepared:
    """A bare frozen slotted attrs construction of a three-field class."""
    values = list(range(n))

    def body() -> None:
        for value in values:
            _Small(1, 2, value)

    def checked() -> None:
        for value in values:
            assert _Small(1, 2, value).c == value

    return Prepared(n, body, checked)


def _dispatch_target(event: object) -> object:
    return event


def _dict_dispatch(n: int) -> Prepared:
    """A function call looked up in a dict by the argument's type (how `step` dispatches)."""
    table: dict[type, Callable[[object], object]] = {InboundTraffic: _dispatch_target}
    events = [InboundTraffic(T0 + i, SERVER_SEEN) for i in range(n)]

    def body() -> None:
        for event in events:
            table[type(event)](event)

    def checked() -> None:
        for event in events:
            assert table[type(event)](event) is event

    return Prepared(n, body, checked)


# --- the table ----------------------------------------------------------------------------------



HMAC_PEER = "peer: HMAC-SHA256 verify (cryptography)"

CASES: tuple[Case, ...] = (
    Case("step: steady traffic, client ATTACHED", _steady("client"), 2000, 1500),
    Case("step: steady traffic, server ATTACHED", _steady("server"), 2000, 1500),
    Case("step: steady traffic, server, fresh descriptor per event",
         _steady("server", fresh_descriptors=True), 2000, 1500,
         notes="the event's transport is equal to, not the same object as, the binding"),
    Case("step: packet loss below threshold", _loss_below_threshold, 2000),
    Case("step: loss enters RECOVERING (+request HMAC)", _enter_recovering, 500,
         notes="includes computing the reattach request proof"),
    Case("step: accepted reattach incl. HMAC (server)", _accepted_reattach, 500, 6000,
         HMAC_PEER, notes="verify request proof + compute accept proof"),
    Case("step: rejected replay (full window)", _rejection("replay"), 2000, 500, HMAC_PEER,
         peer_ratio_max=0.3, peer_label="HMAC verify"),
    Case("step: rejected stale version", _rejection("stale_version"), 2000, 500, HMAC_PEER,
         peer_ratio_max=0.3, peer_label="HMAC verify"),
    Case("step: rejected rate-limited", _rejection("rate_limited"), 2000, 500, HMAC_PEER,
         peer_ratio_max=0.3, peer_label="HMAC verify"),
    Case("step: rejected wrong session id", _rejection("session_mismatch"), 2000,
         peer=HMAC_PEER),
    Case("replay window check: seen nonce (1024 bits)", _replay_check(ReplayVerdict.SEEN),
         5000),
    Case("replay window check: fresh nonce", _replay_check(ReplayVerdict.FRESH), 5000),
    Case("next_deadline: server ATTACHED", _deadline("server_attached"), 5000),
    Case("next_deadline: client RECOVERING (pending)", _deadline("client_recovering"), 5000),
    Case(HMAC_PEER, _hmac_cryptography, 2000),
    Case("peer: stdlib hmac.digest + compare_digest", _hmac_stdlib, 2000),
    Case("peer: frozen attrs construction (3 fields)", _attrs_construct, 5000),
    Case("peer: dict-dispatch function call", _dict_dispatch, 5000),
)


def run(smoke: bool) -> list[BenchResult]:
    """Run every case: smoke checks each path; a full run checks, then times interleaved."""
    return run_cases(CASES, smoke)
