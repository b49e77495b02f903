"""Policy: every bound the risk model asks for, as one immutable, validated value.

All times are integer milliseconds. Every field is documented, with unit and default, in
`specs/policy.md`; `tests/test_spec_sync.py` fails if the two drift.
"""

from __future__ import annotations

from typing import Any

import attrs

from jumpvpn_core.errors import PolicyError, describe, field_name

__all__ = ["POLICY_FIELD_DOCS", "SWITCH_WINDOW_MS", "Policy"]

SWITCH_WINDOW_MS = 60_000
"""The sliding window of `max_switches_per_minute`: one minute, in milliseconds."""

# name -> (unit, minimum, maximum, one-line meaning). The spec table is checked against this.
POLICY_FIELD_DOCS: dict[str, tuple[str, int, int, str]] = {
    "loss_threshold": (
        "packets", 1, 10_000,
        "consecutive losses within `loss_window_ms` that mean the path looks dead (§2.1)",
    ),
    "loss_window_ms": (
        "ms", 1, 3_600_000,
        "observation window in which consecutive losses are counted (§2.1)",
    ),
    "max_recovery_window_ms": (
        "ms", 1, 3_600_000,
        "longest time a session may spend in one RECOVERING episode (§2.1, §7)",
    ),
    "reattach_timeout_ms": (
        "ms", 1, 3_600_000,
        "client: how long to wait for an answer before trying the next candidate",
    ),
    "reattach_retransmits": (
        "sends", 0, 10,
        "client: times a pending request is re-sent unchanged before the next attempt",
    ),
    "max_recovery_rounds": (
        "rounds", 1, 1_000,
        "RECOVERING episodes allowed since the session was last ATTACHED (§7, §9)",
    ),
    "max_degraded_ms": (
        "ms", 1, 86_400_000,
        "longest time a session may stay DEGRADED (§9)",
    ),
    "session_max_lifetime_ms": (
        "ms", 1, 31_536_000_000,
        "hard lifetime of a session from creation (§8 TTL)",
    ),
    "transport_lost_ttl_ms": (
        "ms", 1, 86_400_000,
        "no traffic on the active transport for this long ends the session (§8 TTL)",
    ),
    "birth_timeout_ms": (
        "ms", 1, 3_600_000,
        "longest time a session may stay in BIRTH before its handshake completes",
    ),
    "switch_cooldown_ms": (
        "ms", 0, 3_600_000,
        "minimum time between two switches of the active transport (anti-flap)",
    ),
    "max_switches_per_minute": (
        "switches", 1, 1_000,
        "switches allowed in any sliding 60,000 ms window (anti-flap)",
    ),
    "max_candidates": (
        "transports", 1, 64,
        "bound on the stored candidate set (§5.2)",
    ),
    "replay_window_bits": (
        "bits", 64, 65_536,
        "size of the sliding replay bitmap, a multiple of 64 (§3.2, §5.1)",
    ),
    "proof_max_age_ms": (
        "ms", 1, 3_600_000,
        "oldest proof timestamp accepted (§2.3 freshness)",
    ),
    "max_clock_skew_ms": (
        "ms", 0, 3_600_000,
        "how far in the future a proof timestamp may be (§2.3 freshness)",
    ),
    "path_validation_timeout_ms": (
        "ms", 1, 3_600_000,
        "server: how long a path challenge stays open (§2.3)",
    ),
    "amplification_factor": (
        "ratio", 1, 100,
        "server: bytes sent to an unvalidated address <= this x bytes received from it",
    ),
    "path_challenge_size_bytes": (
        "bytes", 1, 65_535,
        "wire size of one path challenge, charged against the amplification budget",
    ),
    "reattach_rate_limit": (
        "requests", 1, 1_000,
        "server: verified reattach requests allowed per `reattach_rate_window_ms` (§3.1)",
    ),
    "reattach_rate_window_ms": (
        "ms", 1, 3_600_000,
        "server: sliding window of the per-session reattach rate limit (§3.1)",
    ),
    "quality_max_age_ms": (
        "ms", 1, 3_600_000,
        "client: a path measurement older than this counts as no measurement",
    ),
    "quality_loss_penalty_ms": (
        "ms", 0, 600_000,
        "client: cost added to a path's smoothed RTT by 100 % smoothed probe loss",
    ),
    "migration_margin_ms": (
        "ms", 1, 600_000,
        "client: a candidate's cost must undercut the active path's by at least this",
    ),
    "migration_dwell_ms": (
        "ms", 0, 3_600_000,
        "client: ... for at least this long before a proactive migration starts",
    ),
}


def _int_field(default: int) -> Any:
    return attrs.field(default=default)


@attrs.frozen(slots=True)
class Policy:
    """Every bound the core enforces. Immutable; invalid values raise one `PolicyError`.

    >>> Policy(loss_threshold=3).loss_threshold
    3
    """

    loss_threshold: int = _int_field(5)
    loss_window_ms: int = _int_field(2_000)
    max_recovery_window_ms: int = _int_field(10_000)
    reattach_timeout_ms: int = _int_field(1_000)
    reattach_retransmits: int = _int_field(2)
    max_recovery_rounds: int = _int_field(3)
    max_degraded_ms: int = _int_field(30_000)
    session_max_lifetime_ms: int = _int_field(86_400_000)
    transport_lost_ttl_ms: int = _int_field(60_000)
    birth_timeout_ms: int = _int_field(10_000)
    switch_cooldown_ms: int = _int_field(1_000)
    max_switches_per_minute: int = _int_field(6)
    max_candidates: int = _int_field(4)
    replay_window_bits: int = _int_field(1_024)
    proof_max_age_ms: int = _int_field(5_000)
    max_clock_skew_ms: int = _int_field(1_000)
    path_validation_timeout_ms: int = _int_field(1_000)
    amplification_factor: int = _int_field(3)
    path_challenge_size_bytes: int = _int_field(144)
    reattach_rate_limit: int = _int_field(4)
    reattach_rate_window_ms: int = _int_field(1_000)
    quality_max_age_ms: int = _int_field(10_000)
    quality_loss_penalty_ms: int = _int_field(1_000)
    migration_margin_ms: int = _int_field(20)
    migration_dwell_ms: int = _int_field(5_000)

    def __attrs_post_init__(self) -> None:
        problems: list[str] = []
        for name, (unit, low, high, _doc) in POLICY_FIELD_DOCS.items():
            value = getattr(self, name)
            if type(value) is not int:
                problems.append(f"{name} must be an int ({unit}), got {describe(value)}")
            elif not low <= value <= high:
                problems.append(f"{name} must be in {low}..{high} {unit}, got {describe(value)}")
        if not problems:
            if self.replay_window_bits % 64:
                problems.append(
                    f"replay_window_bits must be a multiple of 64, got {self.replay_window_bits}"
                )
            if self.reattach_timeout_ms > self.max_recovery_window_ms:
                problems.append(
                    "reattach_timeout_ms must not exceed max_recovery_window_ms, or no "
                    "reattach could ever be answered inside a recovery window"
                )
            if self.transport_lost_ttl_ms > self.session_max_lifetime_ms:
                problems.append("transport_lost_ttl_ms must not exceed session_max_lifetime_ms")
        if problems:
            raise PolicyError(problems)

    def to_data(self) -> dict[str, int]:
        """Plain-data form: a dict of every field."""
        return {name: getattr(self, name) for name in POLICY_FIELD_DOCS}

    @classmethod
    def from_data(cls, data: Any, *, partial: bool = False) -> Policy:
        """Inverse of `to_data`: every field present, nothing else, or one `PolicyError`.

        A policy record (in a state, a trace, a conformance request) is never repaired: a
        missing field is an error, not the default. `partial=True` is for configuration
        files a person writes: absent fields then take their defaults. Unknown keys are an
        error either way, never silently dropped.
        """
        if not isinstance(data, dict):
            raise PolicyError([f"policy data must be an object, got {describe(data)}"])
        problems = [f"unknown policy field {field_name(key)}" for key in data
                    if key not in POLICY_FIELD_DOCS]
        if not partial:
            problems += [f"missing policy field {name!r}" for name in POLICY_FIELD_DOCS
                         if name not in data]
        if problems:
            raise PolicyError(problems)
        return cls(**data)
