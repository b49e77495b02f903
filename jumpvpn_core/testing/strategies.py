"""Hypothesis strategies for conformance testing: policies, transports, events, chaos, attacks.

The strategies draw from small pools on purpose (a handful of hosts and ports, short
timers) so that collisions, deadlines and limits are reached within a few dozen steps.

* `policies()`            valid `Policy` values with short timers and small bounds.
* `transports()`          descriptors from a small pool (udp/tcp/quic, 10.0.0.x, 192.0.2.x,
                          and one IPv6 host in three: with and without a zone id).
* `client_events(now)` / `server_events(now)` / `events(role, now)`
                          any event a peer, a network or a driver could deliver to a role,
                          with arbitrary (mostly invalid) proofs; nonces, versions and
                          timestamps now and then past 2^31, 2^53 or at u64 max.
* `rtt_samples()`          round-trip samples, mostly a few values 10 ms apart.
* `loss_bursts()`, `clock_jumps()`, `network_faults()`, `rebinding_sources()`
                          network chaos: loss bursts, NAT rebinding, clock jumps (also
                          backwards), and drop / duplicate / reorder of in-flight messages.
* `attack_kinds()`        forged, replayed, stale-version, future-version, wrong-session,
                          flood. The conformance machine turns a kind into a concrete event
                          from what it has captured so far (see `ConformanceMachine.attack`).
"""

from __future__ import annotations

import enum

from hypothesis import strategies as st

from jumpvpn_core import events as ev
from jumpvpn_core.events import Event
from jumpvpn_core.phases import Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.proof import PROOF_SIZE, SESSION_ID_SIZE
from jumpvpn_core.testing.boundaries import BIG_INTS, IPV6_HOSTS
from jumpvpn_core.transport import TransportDescriptor, TransportKind

__all__ = [
    "HOSTS",
    "Attack",
    "NetworkFault",
    "attack_kinds",
    "client_events",
    "clock_jumps",
    "events",
    "loss_bursts",
    "network_faults",
    "policies",
    "rebinding_sources",
    "rtt_samples",
    "server_events",
    "session_ids",
    "session_secrets",
    "transports",
]

#: The host pool every transport strategy draws from.
HOSTS: tuple[str, ...] = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "192.0.2.7", "198.51.100.9")
_PORTS: tuple[int, ...] = (4000, 4001, 51820)


class Attack(enum.StrEnum):
    """What an attacker on the path can do to a session."""

    FORGED = "forged"
    REPLAYED = "replayed"
    STALE_VERSION = "stale_version"
    FUTURE_VERSION = "future_version"
    WRONG_SESSION = "wrong_session"
    FLOOD = "flood"


class NetworkFault(enum.StrEnum):
    """What the network does to the next in-flight message."""

    DELIVER = "deliver"
    DROP = "drop"
    DUPLICATE = "duplicate"
    REORDER = "reorder"


def transports() -> st.SearchStrategy[TransportDescriptor]:
    """A descriptor from the small pool (mostly UDP)."""
    return st.builds(
        TransportDescriptor,
        st.sampled_from((TransportKind.UDP, TransportKind.UDP, TransportKind.TCP,
                         TransportKind.QUIC)),
        st.one_of(st.sampled_from(HOSTS), st.sampled_from(HOSTS), st.sampled_from(IPV6_HOSTS)),
        st.sampled_from(_PORTS),
    )


def rebinding_sources() -> st.SearchStrategy[TransportDescriptor]:
    """A NAT rebinding: the same hosts seen from a new UDP port (one host in three IPv6,
    with and without a zone id, so a binding moves onto a zoned address too)."""
    return st.builds(TransportDescriptor.udp,
                     st.one_of(st.sampled_from(HOSTS), st.sampled_from(HOSTS),
                               st.sampled_from(IPV6_HOSTS)),
                     st.integers(min_value=30000, max_value=30003))


def session_ids() -> st.SearchStrategy[bytes]:
    """16-byte session ids."""
    return st.binary(min_size=SESSION_ID_SIZE, max_size=SESSION_ID_SIZE)


def session_secrets() -> st.SearchStrategy[bytes]:
    """Session secrets (test material only; 16 to 32 bytes)."""
    return st.binary(min_size=16, max_size=32)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """Valid policies with short timers and small bounds, so limits are reached quickly."""
    recovery = draw(st.integers(min_value=200, max_value=5_000))
    lifetime = draw(st.integers(min_value=20_000, max_value=600_000))
    return Policy(
        loss_threshold=draw(st.integers(min_value=1, max_value=5)),
        loss_window_ms=draw(st.integers(min_value=100, max_value=3_000)),
        max_recovery_window_ms=recovery,
        reattach_timeout_ms=draw(st.integers(min_value=50, max_value=recovery)),
        max_recovery_rounds=draw(st.integers(min_value=1, max_value=4)),
        max_degraded_ms=draw(st.integers(min_value=100, max_value=10_000)),
        session_max_lifetime_ms=lifetime,
        transport_lost_ttl_ms=draw(st.integers(min_value=5_000,
                                                max_value=min(lifetime, 60_000))),
        birth_timeout_ms=draw(st.integers(min_value=1_000, max_value=10_000)),
        switch_cooldown_ms=draw(st.integers(min_value=0, max_value=2_000)),
        max_switches_per_minute=draw(st.integers(min_value=1, max_value=6)),
        max_candidates=draw(st.integers(min_value=1, max_value=4)),
        replay_window_bits=draw(st.sampled_from((64, 128, 1024))),
        proof_max_age_ms=draw(st.integers(min_value=100, max_value=5_000)),
        max_clock_skew_ms=draw(st.integers(min_value=0, max_value=1_000)),
        path_validation_timeout_ms=draw(st.integers(min_value=50, max_value=2_000)),
        amplification_factor=draw(st.integers(min_value=1, max_value=5)),
        path_challenge_size_bytes=draw(st.integers(min_value=16, max_value=256)),
        reattach_rate_limit=draw(st.integers(min_value=1, max_value=6)),
        reattach_rate_window_ms=draw(st.integers(min_value=100, max_value=2_000)),
        quality_max_age_ms=draw(st.integers(min_value=200, max_value=10_000)),
        quality_loss_penalty_ms=draw(st.sampled_from((0, 100, 1_000))),
        migration_margin_ms=draw(st.sampled_from((1, 10, 20))),
        migration_dwell_ms=draw(st.integers(min_value=0, max_value=3_000)),
    )


def loss_bursts() -> st.SearchStrategy[int]:
    """How many consecutive packets one loss report covers."""
    return st.integers(min_value=1, max_value=8)


def rtt_samples() -> st.SearchStrategy[int]:
    """Round-trip samples in ms: mostly from a few values 10 ms apart, so a cost difference
    lands exactly on a migration margin (1, 10, 20) often; now and then anything."""
    return st.one_of(st.sampled_from((1, 10, 20, 21, 30, 40, 50, 100)),
                     st.sampled_from((1, 10, 20, 21, 30, 40, 50, 100)),
                     st.integers(min_value=1, max_value=ev.RTT_MAX_MS))


def clock_jumps() -> st.SearchStrategy[int]:
    """Clock movement in ms: mostly small steps, sometimes big jumps, rarely backwards."""
    small = st.integers(min_value=0, max_value=300)
    return st.one_of(
        small,
        small,
        st.integers(min_value=300, max_value=3_000),
        st.integers(min_value=3_000, max_value=20_000),
        st.integers(min_value=-500, max_value=-1),
    )


def network_faults() -> st.SearchStrategy[NetworkFault]:
    """Deliver, drop, duplicate or reorder the next in-flight message."""
    return st.sampled_from(tuple(NetworkFault))


def attack_kinds() -> st.SearchStrategy[Attack]:
    """Which attack to mount next."""
    return st.sampled_from(tuple(Attack))


def _times(now: int) -> st.SearchStrategy[int]:
    near = st.integers(min_value=max(0, now - 2_000), max_value=now + 2_000)
    return st.one_of(near, near, near, st.sampled_from(BIG_INTS))


def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    """Small integers, and one draw in four an integer a port gets wrong (2^31, 2^53...)."""
    small = st.integers(min_value=low, max_value=high)
    return st.one_of(small, small, small, st.sampled_from(BIG_INTS))


def _proofs() -> st.SearchStrategy[bytes]:
    return st.binary(min_size=PROOF_SIZE, max_size=PROOF_SIZE)


def _common(now: int) -> st.SearchStrategy[Event]:
    t = st.just(now)
    return st.one_of(
        st.builds(ev.Tick, t),
        st.builds(ev.Attach, t, transports()),
        st.builds(ev.InboundTraffic, t, transports(), st.integers(min_value=0, max_value=1500)),
        # The four ways to end a session share one branch, so runs do not end too soon.
        st.sampled_from((ev.Close, ev.OwnershipAmbiguous, ev.Evict, ev.StoreRecordInvalid)).map(
            lambda cls: cls(now)),
    )


def client_events(now: int) -> st.SearchStrategy[Event]:
    """Any event a client session may be given at `now`, proofs arbitrary."""
    t = st.just(now)
    return st.one_of(
        _common(now),
        st.builds(ev.PacketLoss, t, loss_bursts()),
        st.builds(ev.DeliveryTimeout, t),
        st.builds(ev.TransportFailed, t, transports()),
        st.builds(ev.AllTransportsFailed, t),
        st.builds(ev.CandidateDiscovered, t, transports()),
        st.builds(ev.CandidateLost, t, transports()),
        st.builds(ev.RttSample, t, transports(), rtt_samples()),
        st.builds(ev.ProbeLost, t, transports()),
        st.builds(ev.PathChallengeReceived, t, transports(),
                  st.binary(min_size=1, max_size=32), transports(),
                  _ints(0, 20), _ints(0, 20), _times(now), _proofs()),
        st.builds(ev.ReattachAccepted, t, transports(), session_ids(),
                  _ints(1, 20), _ints(0, 20), _times(now), transports(), _proofs()),
    )


def server_events(now: int) -> st.SearchStrategy[Event]:
    """Any event a server session may be given at `now`, proofs arbitrary."""
    t = st.just(now)
    return st.one_of(
        _common(now),
        st.builds(ev.ReattachRequest, t, transports(), session_ids(),
                  _ints(1, 20), _ints(0, 20), _times(now), transports(), _proofs(),
                  st.binary(max_size=16),
                  st.integers(min_value=0, max_value=1500)),
    )


def events(role: Role, now: int) -> st.SearchStrategy[Event]:
    """Any event for `role` at `now`."""
    return client_events(now) if role is Role.CLIENT else server_events(now)
