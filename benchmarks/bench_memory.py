"""Memory per session, RSS for many sessions, and how step cost grows with history/sessions.

* Per-session bytes (tracemalloc): `count` sessions are built through `step()` while
  tracing, all sharing one `Policy`; the traced memory still alive afterwards (minus the list
  holding them) divided by `count`. Servers have a full 1,024-bit window (1,024 accepted
  reattaches each); clients are ATTACHED after traffic (a client keeps no replay window).
  One session of each kind is built first, untraced, so one-time allocations are not counted.
* RSS for 10**6 server sessions: measured in a child process (`benchmarks._rss_child`).
* Step cost with history: 10**3 steady-traffic steps timed on a fresh session and on the
  same session after 10**6 events (traffic, with an accepted reattach every 1,000 events).
* Step cost with sessions: 10**3 steady-traffic steps on one session vs spread round-robin
  over 10**4 sessions (the core has no shared table, so only cache effects can differ).
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

from benchmarks.fixtures import (
    POLICY,
    T0,
    attached_client,
    attached_server,
    full_window_server,
    reattach_request,
)
from benchmarks.harness import BenchResult, Prepared, measure_interleaved
from jumpvpn_core import InboundTraffic, Phase, SessionState, TransportDescriptor, step
from jumpvpn_core.state import ServerSide

__all__ = ["history_session", "per_session_bytes", "run"]

MIB = 1 << 20
GIB = 1 << 30


def _address(index: int) -> TransportDescriptor:
    return TransportDescriptor.udp(f"10.1.{(index >> 8) & 255}.{index & 255}",
                                   1024 + index % 60000)


def _server(index: int) -> SessionState:
    state, _ = full_window_server(index.to_bytes(16, "big"), _address(index))
    return state


def _client(index: int) -> SessionState:
    state = attached_client(index.to_bytes(16, "big"), T0, _address(index))
    for offset in range(1, 11):
        state, _ = step(state, InboundTraffic(T0 + offset, state.link.active or _address(0),
                                              1200))
    return state


def per_session_bytes(build: Callable[[int], SessionState], count: int) -> float:
    """Traced bytes still alive per session after building `count` of them."""
    build(10**6)  # warm-up, untraced: one-time allocations are not per-session cost
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        sessions = [build(index) for index in range(count)]
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base - sys.getsizeof(sessions)
    finally:
        tracemalloc.stop()
    assert all(s.ident.policy is POLICY for s in sessions)
    return used / count


def _rss(count: int) -> dict[str, Any]:
    """Run the RSS child for `count` sessions (bounded by a timeout)."""
    done = subprocess.run(  # noqa: S603  # our own interpreter and module, fixed arguments
        [sys.executable, "-m", "benchmarks._rss_child", str(count)],
        capture_output=True, text=True, timeout=900, check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- history ------------------------------------------------------------------------------------


def history_session(events: int) -> tuple[SessionState, int]:
    """A server session after `events` events: traffic every 1 ms, a reattach every 1,000."""
    state = attached_server()
    active = state.link.active
    assert active is not None
    now = T0
    nonce = 0
    for index in range(events):
        now += 1
        if index % 1000 == 999:
            nonce += 1
            state, effects = step(state, reattach_request(state, now, nonce))
            assert state.phase is Phase.ATTACHED, effects
            assert len(effects) == 2, effects
        else:
            state, _ = step(state, InboundTraffic(now, active, 1200))
    side = state.side
    assert isinstance(side, ServerSide)
    assert side.replay_top == nonce
    return state, now


def _traffic_from(start: SessionState, now: int) -> Callable[[int], Prepared]:
    active = start.link.active
    assert active is not None

    def make(n: int) -> Prepared:
        events = [InboundTraffic(now + 1 + i, active, 1200) for i in range(n)]

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
                state = new

        return Prepared(n, body, checked)

    return make


def _round_robin(count: int) -> Callable[[int], Prepared]:
    """Steady traffic spread over `count` distinct sessions, one step each in turn."""
    sessions = [attached_server(index.to_bytes(16, "big"), T0, _address(index))
                for index in range(count)]

    def make(n: int) -> Prepared:
        pairs = [(index % count, InboundTraffic(T0 + 1 + index // count,
                                                _address(index % count), 1200))
                 for index in range(n)]

        def body() -> None:
            table = list(sessions)
            for slot, event in pairs:
                table[slot], _ = step(table[slot], event)

        def checked() -> None:
            table = list(sessions)
            for slot, event in pairs:
                new, effects = step(table[slot], event)
                assert new is not table[slot]
                assert effects == ()
                table[slot] = new

        return Prepared(n, body, checked)

    return make


def run(smoke: bool) -> list[BenchResult]:
    """Memory and growth measurements (smoke: tiny sizes, paths checked, nothing judged)."""
    count = 2 if smoke else 20
    server_bytes = per_session_bytes(_server, count)
    client_bytes = per_session_bytes(_client, count)
    rss_sessions = 2_000 if smoke else 1_000_000
    rss = _rss(rss_sessions)
    history = 10_000 if smoke else 1_000_000
    aged, aged_now = history_session(history)
    fresh = attached_server()
    spread = 100 if smoke else 10_000
    growth: dict[str, Callable[[int], Prepared]] = {
        "fresh": _traffic_from(fresh, T0),
        "aged": _traffic_from(aged, aged_now),
        "one": _traffic_from(fresh, T0),
        "spread": _round_robin(spread),
    }
    for make in growth.values():
        make(16).checked()
    if smoke:
        for make in growth.values():
            make(16).body()
        assert server_bytes > 0
        assert client_bytes > 0
        assert rss["rss_delta"] > 0
        return [BenchResult(name, 0.0, notes="smoke: path checked, not judged") for name in (
            "memory: per-session bytes", "memory: RSS", "history growth", "session growth")]
    timing = {name: result.median_ns for name, result in measure_interleaved(
        {name: (make, 1000) for name, make in growth.items()}, repeats=31).items()}
    per_rss = rss["rss_delta"] / rss_sessions
    history_ratio = timing["aged"] / timing["fresh"]
    return [
        BenchResult("memory: server session, full 1024-bit window (tracemalloc)",
                    server_bytes, "bytes", target="<= 700 bytes",
                    met=server_bytes <= 700,
                    notes=f"mean over {count} sessions built through step(); shared Policy"),
        BenchResult("memory: client session, ATTACHED (tracemalloc)", client_bytes, "bytes",
                    target="<= 700 bytes", met=client_bytes <= 700,
                    notes=f"mean over {count} sessions; a client keeps no replay window"),
        BenchResult(f"memory: RSS delta for {rss_sessions:,} server sessions",
                    rss["rss_delta"] / MIB, "MiB", target="<= 1024 MiB",
                    met=rss["rss_delta"] <= GIB,
                    notes=f"{per_rss:.0f} bytes/session incl. dict slot; clones via "
                          f"state_from_data, built in {rss['create_seconds']:.1f} s"),
        BenchResult("history: steady step, first 10^3 events", timing["fresh"], "ns"),
        BenchResult(f"history: steady step after {history:,} events", timing["aged"], "ns",
                    "history: steady step, first 10^3 events", history_ratio,
                    "within 10% of the first 10^3", abs(history_ratio - 1) <= 0.10),
        BenchResult("sessions: steady step, one session", timing["one"], "ns"),
        BenchResult(f"sessions: steady step, round-robin over {spread:,} sessions",
                    timing["spread"], "ns", "sessions: steady step, one session",
                    timing["spread"] / timing["one"]),
    ]
