"""Child process for the RSS benchmark: hold N server sessions and report the RSS delta.

Run as `python -m benchmarks._rss_child N`; prints one JSON object. Sessions are clones of
one full-window server state (1,024 nonces accepted through `step()`), made with
`state_from_data` from per-session data so that every session has its own session id,
address, times, verified-request times, replay top and bitmap objects (no HKDF per clone:
the control key is decoded from the data, which costs the same memory as a derived one).
Every clone's `Identity` is rebuilt around one shared `Policy`. Sessions are held in a dict
keyed by session id, as a server's table would hold them.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from typing import Any

from benchmarks.fixtures import POLICY, full_window_server
from jumpvpn_core import Phase, state_from_data, state_to_data
from jumpvpn_core.state import Identity, SessionState


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def clone(template: dict[str, Any], index: int) -> SessionState:
    """A distinct session made from `template` (which is left unchanged)."""
    link = dict(template["link"])
    for key in ("last_rx_ms", "loss_start_ms", "clock_ms"):
        link[key] += index
    link["active"] = (f"udp:10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"
                      f":{1024 + index % 60000}")
    side = dict(template["side"])
    side["verified_times"] = [t + index for t in side["verified_times"]]
    side["replay_top"] += index
    if side.get("last_accept") is not None:
        # The accept behind the binding went to the binding's address, as in a real session.
        last = dict(side["last_accept"])
        last["accept"] = {**last["accept"], "to": link["active"]}
        side["last_accept"] = last
    data = dict(template)
    data.update(
        session_id=index.to_bytes(16, "big").hex(),
        created_ms=template["created_ms"] + index,
        phase_since_ms=template["phase_since_ms"] + index,
        link=link,
        side=side,
    )
    state = state_from_data(data)
    ident = state.ident
    shared = Identity(ident.role, ident.session_id, ident.control_key, POLICY,
                      ident.created_ms)
    return SessionState(shared, state.phase, state.state_version, state.phase_since_ms,
                        state.link, state.roaming, state.side, state.end_reason)


def main(count: int) -> dict[str, Any]:
    """Build `count` sessions; return the RSS before/after and the creation time."""
    template_state, _ = full_window_server()
    template = state_to_data(template_state, include_secrets=True)
    clone(template, 0)  # warm every code path once before the baseline
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    sessions: dict[bytes, SessionState] = {}
    for index in range(count):
        state = clone(template, index)
        sessions[state.ident.session_id] = state
    elapsed = time.perf_counter() - start
    gc.collect()
    after = rss_bytes()
    assert len(sessions) == count
    sample = sessions[(count - 1).to_bytes(16, "big")]
    assert sample.phase is Phase.ATTACHED
    assert sample.ident.policy is POLICY
    return {
        "sessions": count,
        "rss_before": before,
        "rss_after": after,
        "rss_delta": after - before,
        "create_seconds": elapsed,
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
