"""Boundary-biased generation: the edges a porter gets wrong, read from the session's state.

Random clocks and random integers almost never land on the one millisecond where `<` and
`<=` differ, on the nonce exactly one window behind the newest, or on an integer that a
double cannot hold. The functions here list those values for the state at hand; the
conformance machine (`jumpvpn_core.testing.stateful`) jumps its clock to them and builds
honest messages on them, beside its ordinary random rules (biased, not exclusive).

* `edges(state)`          every time edge the state arms (each deadline, the switch
                          cooldown and rate window, the loss window, the reattach rate window,
                          the client's retransmission freshness, the due time of a proactive
                          migration, the age limit of each path measurement), each at -1, 0
                          and +1 ms, labelled (`"recovery-window"`, `"switch-cooldown+1"`,
                          `"quality-max-age-1"`, ...).
* `freshness_offsets(policy)`
                          proof timestamps relative to now at the freshness bounds, labelled.
* `edge_nonces(top, size)`
                          nonces at the replay window's edges and past 2^53 / at u64 max.
* `siblings(transport)`   the same address with another IPv6 zone, or without its zone.
* `BIG_INTS`, `IPV6_HOSTS` the integers and hosts the ordinary strategies mix in.

Pure: reads nothing but its arguments.
"""

from __future__ import annotations

from jumpvpn_core.machine import next_deadline
from jumpvpn_core.phases import Phase
from jumpvpn_core.policy import SWITCH_WINDOW_MS, Policy
from jumpvpn_core.proof import U64_MAX
from jumpvpn_core.quality import migration_due
from jumpvpn_core.state import ClientSide, ServerSide, SessionState
from jumpvpn_core.transport import TransportDescriptor

__all__ = [
    "BIG_INTS",
    "DOUBLE_EXACT_MAX",
    "IPV6_HOSTS",
    "Edge",
    "edge_nonces",
    "edges",
    "freshness_offsets",
    "siblings",
]

DOUBLE_EXACT_MAX = 2**53
"""Every integer up to this one is exact in an IEEE double; 2^53 + 1 is not."""

#: Integers a port to a language with doubles or 32-bit ints gets wrong.
BIG_INTS: tuple[int, ...] = (2**31 - 1, 2**31, 2**32, DOUBLE_EXACT_MAX - 1, DOUBLE_EXACT_MAX,
                             DOUBLE_EXACT_MAX + 1, DOUBLE_EXACT_MAX + 3, U64_MAX - 1, U64_MAX)

#: IPv6 hosts, with and without a zone id (one address under two zones and none).
IPV6_HOSTS: tuple[str, ...] = ("2001:db8::7", "fe80::1", "fe80::1%eth0", "fe80::1%eth1")

Edge = tuple[str, int]
"""`(label, value)`: which boundary, and the time (or nonce) that sits on it."""

_AROUND = ((-1, "-1"), (0, ""), (1, "+1"))


def _around(label: str, at: int, out: list[Edge]) -> None:
    for delta, suffix in _AROUND:
        if 0 <= at + delta <= U64_MAX:
            out.append((label + suffix, at + delta))


def edges(state: SessionState) -> list[Edge]:
    """Every time edge armed in `state`, each at -1, 0 and +1 ms, not before its clock.

    Labels: `deadline` (the next one the core would arm, whatever it is: the session's
    lifetime only appears there), `birth-timeout`, `transport-lost-ttl`,
    `recovery-window`, `degraded-window`,
    `reattach-timeout` / `validation-timeout` (the pending deadline), `switch-cooldown`,
    `switch-rate-window`, `loss-window`, `reattach-rate-window`, `retransmit-freshness`,
    `migration-due` (client, ATTACHED, a better path tracked and no request in flight: when
    the migration to it may start, `quality.migration_due`), `quality-max-age` (client: one
    per measured known path, `updated_ms + quality_max_age_ms`, the last millisecond the
    measurement still counts).
    """
    if state.phase is Phase.TERMINATED:
        return []
    policy = state.ident.policy
    link = state.link
    out: list[Edge] = []
    deadline = next_deadline(state)
    if deadline is not None:
        _around("deadline", deadline, out)
    if state.phase is Phase.BIRTH:
        _around("birth-timeout", state.phase_since_ms + policy.birth_timeout_ms, out)
    else:
        _around("transport-lost-ttl", link.last_rx_ms + policy.transport_lost_ttl_ms, out)
    if state.phase is Phase.RECOVERING:
        _around("recovery-window", state.phase_since_ms + policy.max_recovery_window_ms, out)
    if state.phase is Phase.DEGRADED:
        _around("degraded-window", state.phase_since_ms + policy.max_degraded_ms, out)
    times = state.roaming.switch_times
    if times:
        _around("switch-cooldown", times[-1] + policy.switch_cooldown_ms, out)
        limit = policy.max_switches_per_minute
        if len(times) >= limit:
            _around("switch-rate-window", times[-limit] + SWITCH_WINDOW_MS, out)
    side = state.side
    if isinstance(side, ClientSide):
        if link.loss_streak:
            _around("loss-window", link.loss_start_ms + policy.loss_window_ms, out)
        if side.pending is not None:
            _around("reattach-timeout", side.pending.deadline_ms, out)
            _around("retransmit-freshness",
                    side.pending.request.timestamp_ms + policy.proof_max_age_ms, out)
        elif state.phase is Phase.ATTACHED and side.better is not None:
            _around("migration-due", migration_due(side, state.roaming, policy), out)
        for score in side.quality:
            if score.transport == link.active or score.transport in state.roaming.candidates:
                _around("quality-max-age", score.updated_ms + policy.quality_max_age_ms, out)
    elif isinstance(side, ServerSide):
        if side.pending is not None:
            _around("validation-timeout", side.pending.deadline_ms, out)
        limit = policy.reattach_rate_limit
        if len(side.verified_times) >= limit:
            _around("reattach-rate-window",
                    side.verified_times[-limit] + policy.reattach_rate_window_ms, out)
    clock = link.clock_ms
    return [(label, at) for label, at in out if at >= clock]


def freshness_offsets(policy: Policy) -> list[Edge]:
    """Proof timestamps relative to now (`timestamp = now + offset`) around the bounds:
    `proof-age` (oldest accepted), `clock-skew` (newest accepted), each at -1, 0, +1."""
    out: list[Edge] = []
    for delta, suffix in _AROUND:
        out.append(("proof-age" + suffix, delta - policy.proof_max_age_ms))
        out.append(("clock-skew" + suffix, policy.max_clock_skew_ms + delta))
    return out


def edge_nonces(top: int, size: int) -> list[Edge]:
    """Nonces at the replay window's edges for `top` (newest seen) and `size` (bits), and
    the big ones: `window-back` (`top - size`, the first too old) -1/0/+1, `window-ahead`
    (`top + size`), `top+1`, `double-exact` (2^53 + 1, the first integer a double rounds),
    `u64-max`."""
    out: list[Edge] = []
    _around("window-back", top - size, out)
    out.append(("top+1", top + 1))
    out.append(("window-ahead", top + size))
    out.append(("double-exact", DOUBLE_EXACT_MAX + 1))
    out.append(("u64-max", U64_MAX))
    return [(label, nonce) for label, nonce in out if 1 <= nonce <= U64_MAX]


def siblings(transport: TransportDescriptor) -> list[TransportDescriptor]:
    """Descriptors that differ from `transport` only by the IPv6 zone id (another zone, or
    none): what a parser that drops the zone would take for the same address."""
    address, percent, _zone = transport.host.partition("%")
    if ":" not in address:
        return []
    hosts = [address] if percent else []
    hosts += [f"{address}%{zone}" for zone in ("eth0", "eth1")
              if f"{address}%{zone}" != transport.host]
    return [TransportDescriptor(transport.kind, host, transport.port) for host in hosts]
