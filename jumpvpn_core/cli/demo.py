"""`jumpvpn demo`: a live session on loopback surviving a loss burst, a port jump and a replay.

Starts the reference UDP server and client on 127.0.0.1 (ephemeral ports), streams a
sequenced payload, then injects, one after another:

1. a loss burst (the next 8 payload datagrams are dropped),
2. a port jump (the client's socket is replaced by one on a new port),
3. a replay attack (an off-path socket replays the client's captured reattach requests).

It prints the session timeline as it happens and ends with a one-screen summary. The exit
status is 0 only if every outcome was observed: the burst recovered, the jump kept the same
session id on both sides with the new path validated and bound, the replays were rejected
as security events without moving the binding, and no payload was lost beyond the burst.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import attrs
import click

from jumpvpn_core.audit.trace_writer import TraceKeyError, TraceWriter, key_option
from jumpvpn_core.cli._common import CliError, emit_json, json_option, verb
from jumpvpn_core.effects import (
    BindTransport,
    Effect,
    Rejected,
    SendPathChallenge,
    SessionEnded,
    StateChanged,
)
from jumpvpn_core.errors import JumpVpnError
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.reasons import ReasonClass, ReasonCode
from jumpvpn_core.testing.attacker import RawUdpPeer
from jumpvpn_core.transport import TransportDescriptor
from jumpvpn_core.transports.udp import (
    ClientConfig,
    LocalSessionHost,
    UdpClient,
    UdpServer,
)
from jumpvpn_core.transports.wire import MessageKind

__all__ = ["DEMO_CONFIG", "DEMO_POLICY", "command", "run_demo"]

#: Short timers so the whole story fits in a few seconds.
DEMO_POLICY = Policy(
    loss_threshold=3,
    reattach_timeout_ms=200,
    switch_cooldown_ms=100,
    max_switches_per_minute=60,
    reattach_rate_limit=16,
    path_validation_timeout_ms=300,
    max_recovery_window_ms=3_000,
)
#: The client driver's timers to match (a tick and a datagram every 10 ms).
DEMO_CONFIG = ClientConfig(tick_ms=10, data_interval_ms=10, ack_timeout_ms=300,
                           delivery_timeout_ms=1_500)
_BURST = 8
_OVERALL_TIMEOUT_S = 30.0


@verb("demo", "Run a live loopback session through a loss burst, a port jump and a "
      "replay.\n\nExit 0 only if every outcome "
      "was observed: the burst recovered, the jump kept the session, the replays were "
      "rejected and no payload was lost beyond the burst.")
@click.option("--trace", "trace_path", type=click.Path(path_type=Path), default=None,
              help="also write both roles' audit records as a trace to this file")
@click.option("--trace-key", default=None, metavar="FILE|HEX",
              help="MAC the trace's checkpoints with this key (verify-trace --key)")
@json_option
def command(trace_path: Path | None, trace_key: str | None, as_json: bool) -> int:
    """Handler of `jumpvpn demo`."""
    if trace_path is not None:
        try:
            key = key_option(trace_key)
        except TraceKeyError as exc:
            raise CliError(f"bad --trace-key: {exc}") from None
        with trace_path.open("w", encoding="utf-8", newline="\n") as handle, \
                TraceWriter(handle.write, writer="jumpvpn demo", key=key) as trace:
            return _command(as_json, trace)
    return _command(as_json, None)


def _command(as_json: bool, trace: TraceWriter | None) -> int:
    if not as_json:
        return run_demo(sys.stdout, trace)
    buffer = io.StringIO()
    demo = _Demo(buffer, trace)
    status = _run(demo)
    emit_json({"ok": status == 0, "timeline": buffer.getvalue().splitlines(),
               "checks": [attrs.asdict(check) for check in demo.checks]})
    return status


def run_demo(out: TextIO, trace: TraceWriter | None = None) -> int:
    """Run the demo, writing the timeline and summary to `out` and, given a `trace`, every
    audit record of both roles to it. Returns the exit status."""
    return _run(_Demo(out, trace))


def _run(demo: _Demo) -> int:
    try:
        return asyncio.run(asyncio.wait_for(demo.run(), _OVERALL_TIMEOUT_S))
    except TimeoutError:
        demo.out.write(f"demo: did not finish within {_OVERALL_TIMEOUT_S:.0f} s\n")
    except JumpVpnError as exc:
        demo.out.write(f"demo: {type(exc).__name__}: {exc}\n")
    return 1


@attrs.frozen
class _Check:
    name: str
    ok: bool
    detail: str


class _Demo:
    def __init__(self, out: TextIO, trace: TraceWriter | None = None) -> None:
        self.out = out
        self.trace = trace
        self.t0_ms = 0
        self.captured: list[bytes] = []
        self.checks: list[_Check] = []

    # -- output ------------------------------------------------------------------------------

    def line(self, now_ms: int, who: str, text: str) -> None:
        self.out.write(f"  +{now_ms - self.t0_ms:5d} ms  {who:<6}  {text}\n")
        self.out.flush()

    def now_ms(self) -> int:
        return int(asyncio.get_running_loop().time() * 1000)

    def note(self, text: str) -> None:
        self.line(self.now_ms(), "demo", f">> {text}")

    def observe(self, role: Role, now: int, effect: Effect) -> None:
        who = role.value
        if self.trace is not None and isinstance(effect, StateChanged | Rejected):
            self.trace.write(effect.to_record())
        if isinstance(effect, StateChanged):
            self.line(now, who, f"{effect.from_phase.value} -> {effect.to_phase.value}  "
                                f"{effect.reason.value}  (v{effect.state_version})")
        elif isinstance(effect, Rejected):
            self.line(now, who, f"REJECT {effect.reason.value}  [{effect.reason_class.value}]"
                                f"  {effect.event}")
        elif isinstance(effect, BindTransport):
            before = str(effect.previous) if effect.previous is not None else "-"
            self.line(now, who, f"SWITCH {before} -> {effect.transport}")
        elif isinstance(effect, SendPathChallenge):
            self.line(now, who, f"CHALLENGE -> {effect.to}  (path validation)")
        elif isinstance(effect, SessionEnded):
            self.line(now, who, f"ENDED {effect.reason.value}")

    def tap(self, datagram: bytes, _local: TransportDescriptor,
            _remote: TransportDescriptor) -> None:
        if len(datagram) > 1 and datagram[1] == MessageKind.REATTACH_REQUEST:
            self.captured.append(datagram)

    # -- the story ---------------------------------------------------------------------------

    async def until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        for _ in range(int(timeout_s * 100)):
            if condition():
                return True
            await asyncio.sleep(0.01)
        return condition()

    async def run(self) -> int:
        self.t0_ms = self.now_ms()
        self.out.write("jumpvpn demo: the session is the anchor, the transport is volatile\n\n")
        sessions = LocalSessionHost(DEMO_POLICY)
        server = await UdpServer.bind("127.0.0.1", 0, policy=DEMO_POLICY, sessions=sessions,
                                      observer=self.observe)
        self.note(f"server listening on {server.address}")
        client = await UdpClient.connect(server.address, policy=DEMO_POLICY, config=DEMO_CONFIG,
                                         observer=self.observe, tap=self.tap)
        attacker: RawUdpPeer | None = None
        try:
            attacker = await RawUdpPeer.open("127.0.0.1", 0)
            checks = await self.story(server, sessions, client, attacker)
        finally:
            await client.close()
            await server.close()
            if attacker is not None:
                attacker.close()
        return self.summary(checks)

    async def story(self, server: UdpServer, sessions: LocalSessionHost, client: UdpClient,
                    attacker: RawUdpPeer) -> list[_Check]:
        sid = client.session_id
        self.note(f"handshake done: session {sid.hex()} on {client.local}; streaming payload")
        client.start_stream()
        await asyncio.sleep(0.3)

        # 1. loss burst
        self.note(f"loss burst: the next {_BURST} payload datagrams are dropped")
        client.inject_loss(_BURST)
        recovered = await self.until(lambda: _reasons(client, ReasonCode.REATTACHED) >= 1, 3.0)
        burst_ok = (recovered and _reasons(client, ReasonCode.LOSS_THRESHOLD_EXCEEDED) >= 1
                    and client.state.phase is Phase.ATTACHED)
        await asyncio.sleep(0.3)

        # 2. port jump
        before = client.local
        self.note(f"port jump: the client drops {before} and moves to a new port")
        self.captured.clear()
        moved = await client.rebind()
        jumped = await self.until(lambda: server.route(sid) == moved
                                  and client.state.phase is Phase.ATTACHED, 3.0)
        server_state = sessions.get(sid)
        jump_ok = (jumped and before is not None and moved.port != before.port
                   and client.session_id == sid and server_state is not None
                   and server_state.session_id == sid
                   and server_state.phase is Phase.ATTACHED)
        await asyncio.sleep(0.3)

        # 3. replay attack
        replays = list(self.captured)
        version_before = server_state.state_version if server_state is not None else -1
        self.note(f"replay attack: {len(replays)} captured reattach request(s) replayed "
                  f"from {attacker.address}")
        for datagram in replays:
            attacker.send(datagram, server.address)
        rejected = await self.until(
            lambda: _replay_rejects(server) >= len(replays) > 0, 2.0)
        after = sessions.get(sid)
        replay_ok = (rejected and server.route(sid) == moved and after is not None
                     and after.state_version == version_before
                     and attacker.bytes_received == 0)
        await asyncio.sleep(0.3)

        client.stop_stream()
        await asyncio.sleep(0.2)
        delivered = server.delivered.get(sid, set())
        sent = set(client.sent_seqs)
        lost = sent - delivered
        payload_ok = bool(sent) and lost == client.injected_lost and len(lost) == _BURST
        same_id = client.session_id == sid and after is not None and after.session_id == sid
        return [
            _Check("session id", same_id,
                   f"{sid.hex()} on both sides, unchanged from handshake to end"),
            _Check("loss burst", burst_ok,
                   f"{_BURST} payloads dropped -> RECOVERING (LOSS_THRESHOLD_EXCEEDED) -> "
                   "ATTACHED (REATTACHED) on the same path"),
            _Check("port jump", jump_ok,
                   f"{before} -> {moved}: path validated, bound by the server, same session"),
            _Check("replay attack", replay_ok,
                   f"{_replay_rejects(server)} replay(s) from {attacker.address} rejected "
                   f"(REPLAY_DETECTED, SECURITY_EVENT); binding stays {server.route(sid)}; "
                   f"attacker received {attacker.bytes_received} bytes"),
            _Check("payload", payload_ok,
                   f"{len(sent)} sent, {len(delivered & sent)} delivered, {len(lost)} lost "
                   f"= exactly the injected burst"),
        ]

    def summary(self, checks: list[_Check]) -> int:
        self.checks = checks
        passed = all(c.ok for c in checks)
        self.out.write("\n== summary ==\n")
        for check in checks:
            mark = "OK  " if check.ok else "FAIL"
            self.out.write(f"  {mark} {check.name:<14} {check.detail}\n")
        self.out.write(f"  result: {'PASS' if passed else 'FAIL'}\n")
        return 0 if passed else 1


def _reasons(client: UdpClient, reason: ReasonCode) -> int:
    return sum(1 for _, e in client.audit if isinstance(e, StateChanged) and e.reason is reason)


def _replay_rejects(server: UdpServer) -> int:
    return sum(1 for _, e in server.audit if isinstance(e, Rejected)
               and e.reason is ReasonCode.REPLAY_DETECTED
               and e.reason_class is ReasonClass.SECURITY_EVENT)
