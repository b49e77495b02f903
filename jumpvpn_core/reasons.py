"""Reason codes: the stable vocabulary of every transition and every rejection.

Reason codes are a public contract. Their string values appear in audit traces, in
`specs/reason-codes.md` and in conformance vectors; a value is never renamed or reused.
New codes may be added in a minor version; removing one is a major version.
"""

from __future__ import annotations

import enum

__all__ = ["REASON_CODES_VERSION", "ReasonClass", "ReasonCode", "reason_class"]

#: Version of the reason-code vocabulary. Bumped when a code is added.
REASON_CODES_VERSION = 4


class ReasonCode(enum.StrEnum):
    """Why the core changed phase, or why it refused an input."""

    # --- transitions -------------------------------------------------------------
    ATTACH_COMPLETED = "ATTACH_COMPLETED"
    BIRTH_TIMEOUT = "BIRTH_TIMEOUT"
    LOSS_THRESHOLD_EXCEEDED = "LOSS_THRESHOLD_EXCEEDED"
    DELIVERY_TIMEOUT = "DELIVERY_TIMEOUT"
    UNEXPECTED_SOURCE_ADDRESS = "UNEXPECTED_SOURCE_ADDRESS"
    TRANSPORT_FAILED = "TRANSPORT_FAILED"
    TRANSPORT_COLLAPSE = "TRANSPORT_COLLAPSE"
    REATTACHED = "REATTACHED"
    PATH_REVERTED = "PATH_REVERTED"
    MIGRATED_TO_BETTER_PATH = "MIGRATED_TO_BETTER_PATH"
    RECOVERY_PARTIAL = "RECOVERY_PARTIAL"
    RECOVERY_WINDOW_EXCEEDED = "RECOVERY_WINDOW_EXCEEDED"
    NO_VIABLE_CANDIDATE = "NO_VIABLE_CANDIDATE"
    CANDIDATE_AVAILABLE = "CANDIDATE_AVAILABLE"
    RECOVERY_ROUNDS_EXCEEDED = "RECOVERY_ROUNDS_EXCEEDED"
    DEGRADED_TIMEOUT = "DEGRADED_TIMEOUT"
    SESSION_LIFETIME_EXCEEDED = "SESSION_LIFETIME_EXCEEDED"
    TRANSPORT_LOST_TTL_EXPIRED = "TRANSPORT_LOST_TTL_EXPIRED"
    OWNERSHIP_AMBIGUOUS = "OWNERSHIP_AMBIGUOUS"
    SESSION_EVICTED = "SESSION_EVICTED"
    STORE_RECORD_INVALID = "STORE_RECORD_INVALID"
    CLOSED = "CLOSED"

    # --- rejections: security (each one is also a SECURITY_EVENT) --------------------
    REPLAY_DETECTED = "REPLAY_DETECTED"
    NONCE_TOO_OLD = "NONCE_TOO_OLD"
    STALE_STATE_VERSION = "STALE_STATE_VERSION"
    VERSION_AHEAD = "VERSION_AHEAD"
    PROOF_INVALID = "PROOF_INVALID"
    PROOF_EXPIRED = "PROOF_EXPIRED"
    PROOF_FROM_FUTURE = "PROOF_FROM_FUTURE"
    SESSION_MISMATCH = "SESSION_MISMATCH"
    AMBIGUOUS_PATH = "AMBIGUOUS_PATH"
    CHALLENGE_MISMATCH = "CHALLENGE_MISMATCH"
    ACCEPT_INVALID = "ACCEPT_INVALID"
    CHALLENGE_INVALID = "CHALLENGE_INVALID"

    # --- rejections: operational ---------------------------------------------------
    RATE_LIMITED = "RATE_LIMITED"
    SWITCH_COOLDOWN = "SWITCH_COOLDOWN"
    SWITCH_RATE_EXCEEDED = "SWITCH_RATE_EXCEEDED"
    PATH_VALIDATION_IN_PROGRESS = "PATH_VALIDATION_IN_PROGRESS"
    AMPLIFICATION_LIMITED = "AMPLIFICATION_LIMITED"
    CANDIDATE_LIMIT_REACHED = "CANDIDATE_LIMIT_REACHED"
    CANDIDATE_ALREADY_KNOWN = "CANDIDATE_ALREADY_KNOWN"
    UNKNOWN_TRANSPORT = "UNKNOWN_TRANSPORT"
    SESSION_TERMINATED = "SESSION_TERMINATED"
    EVENT_NOT_APPLICABLE = "EVENT_NOT_APPLICABLE"
    TIME_WENT_BACKWARDS = "TIME_WENT_BACKWARDS"
    DUPLICATE_ACCEPT = "DUPLICATE_ACCEPT"
    CHALLENGE_STALE = "CHALLENGE_STALE"

    # --- rejections: operational, decided by a gateway before or after step() -------
    FLOOD_LIMITED = "FLOOD_LIMITED"
    SOURCE_FLOOD_LIMITED = "SOURCE_FLOOD_LIMITED"
    UNKNOWN_SESSION = "UNKNOWN_SESSION"
    SESSION_TABLE_FULL = "SESSION_TABLE_FULL"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    COMMIT_CONFLICT = "COMMIT_CONFLICT"
    NOT_OWNER = "NOT_OWNER"


class ReasonClass(enum.StrEnum):
    """How an auditor should file a reason code."""

    TRANSITION = "TRANSITION"
    SECURITY_EVENT = "SECURITY_EVENT"
    OPERATIONAL_REJECT = "OPERATIONAL_REJECT"


_SECURITY: frozenset[ReasonCode] = frozenset(
    {
        ReasonCode.REPLAY_DETECTED,
        ReasonCode.NONCE_TOO_OLD,
        ReasonCode.STALE_STATE_VERSION,
        ReasonCode.VERSION_AHEAD,
        ReasonCode.PROOF_INVALID,
        ReasonCode.PROOF_EXPIRED,
        ReasonCode.PROOF_FROM_FUTURE,
        ReasonCode.SESSION_MISMATCH,
        ReasonCode.AMBIGUOUS_PATH,
        ReasonCode.CHALLENGE_MISMATCH,
        ReasonCode.ACCEPT_INVALID,
        ReasonCode.CHALLENGE_INVALID,
    }
)

_OPERATIONAL_REJECT: frozenset[ReasonCode] = frozenset(
    {
        ReasonCode.RATE_LIMITED,
        ReasonCode.SWITCH_COOLDOWN,
        ReasonCode.SWITCH_RATE_EXCEEDED,
        ReasonCode.PATH_VALIDATION_IN_PROGRESS,
        ReasonCode.AMPLIFICATION_LIMITED,
        ReasonCode.CANDIDATE_LIMIT_REACHED,
        ReasonCode.CANDIDATE_ALREADY_KNOWN,
        ReasonCode.UNKNOWN_TRANSPORT,
        ReasonCode.SESSION_TERMINATED,
        ReasonCode.EVENT_NOT_APPLICABLE,
        ReasonCode.TIME_WENT_BACKWARDS,
        ReasonCode.DUPLICATE_ACCEPT,
        ReasonCode.CHALLENGE_STALE,
        ReasonCode.FLOOD_LIMITED,
        ReasonCode.SOURCE_FLOOD_LIMITED,
        ReasonCode.UNKNOWN_SESSION,
        ReasonCode.SESSION_TABLE_FULL,
        ReasonCode.STORE_UNAVAILABLE,
        ReasonCode.COMMIT_CONFLICT,
        ReasonCode.NOT_OWNER,
    }
)


def reason_class(reason: ReasonCode) -> ReasonClass:
    """Return whether `reason` names a transition, a security rejection or another rejection."""
    if reason in _SECURITY:
        return ReasonClass.SECURITY_EVENT
    if reason in _OPERATIONAL_REJECT:
        return ReasonClass.OPERATIONAL_REJECT
    return ReasonClass.TRANSITION
