"""Replay flood against the reference UDP server on loopback: time to bind a port jump.

Run from a checkout: `python -m benchmarks.bench_replay_flood [--jumps N] [RATE ...]`.
For each rate (replayed datagrams per second, 0 = no flood) one server, one streaming
client and one attacker replaying the client's captured DATA/HEARTBEAT datagrams from
another port run in one process; the client jumps ports `--jumps` times during the flood.
Printed per rate: bind time median and worst (ms, from `rebind()` to the server routing
the new port and the client ATTACHED), replays sent, replays the server read and dropped
as `replayed`, bytes the server sent to the attacker (must be 0), final phases, and the
server transitions caused by traffic from an unexpected source (must be 0: a replay that
reached the core would open a path validation toward the attacker and send it a
challenge).

Past the rate the process keeps up with, replays queue in the socket buffer and the kernel
drops the excess (`sent - dropped` grows); the numbers say how the bind time degrades. A
jump that has not bound after 5 s is counted (`unbound_after_5s`) and the run goes on, so
the final phases say whether the session survived.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from tests.transports.test_transport_replay_flood import flood_run


async def _measure(rate: int, jumps: int) -> str:
    try:
        result = await flood_run(rate, jumps, tolerate_unbound=True)
    except AssertionError as exc:
        return f"rate={rate:>6}/s the session was lost: {exc}"
    binds = result.bind_ms or (float("nan"),)
    return (f"rate={rate:>6}/s jumps={len(result.bind_ms)}"
            f" unbound_after_5s={result.unbound_jumps}"
            f" bind_ms median={statistics.median(binds):7.1f}"
            f" worst={max(binds):7.1f} sent={result.replays_sent:>6}"
            f" dropped_replayed={result.replayed_drops:>6}"
            f" to_attacker={result.attacker_bytes_received}B"
            f" phases={result.client_phase.value}/{result.server_phase.value}"
            f" bound_to_client={result.bound_to_client}"
            f" unexpected_source_transitions={result.unexpected_source_transitions}"
            f" client_end_reason={result.client_end_reason}")


def main() -> None:
    """Parse the arguments and print one line per rate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jumps", type=int, default=8)
    parser.add_argument("rates", type=int, nargs="*", default=[0, 50, 2_000, 10_000, 30_000])
    args = parser.parse_args()
    for rate in args.rates:
        print(asyncio.run(_measure(rate, args.jumps)), flush=True)


if __name__ == "__main__":
    main()
