"""Phases and the transition table: the one place that says which phase change is legal.

Everything that decides *whether* a phase change is allowed lives here, as data. The
role-specific step functions in `jumpvpn_core.machine` decide *when* to ask for a change;
they may only ask for a row that exists below, and `transition_target` refuses any other
(an internal bug, not an input error, so it raises).

`specs/transition-table.md` states the same table; `tests/test_spec_sync.py` fails if the
two drift, and `tests/test_transitions_oracle.py` replays every transition the core takes
through an independent `transitions.Machine` built from the spec file.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from jumpvpn_core.reasons import ReasonCode

__all__ = [
    "ABSORBING",
    "TRANSITION_TABLE",
    "TRANSITION_TABLE_VERSION",
    "Phase",
    "Role",
    "Transition",
    "allowed_reasons",
    "transition_target",
]

#: Version of the transition table contract. Bumped on any row change.
TRANSITION_TABLE_VERSION = 2


class Role(enum.StrEnum):
    """Which side of the session a state belongs to. Values are a public contract."""

    CLIENT = "client"
    SERVER = "server"


class Phase(enum.StrEnum):
    """The lifecycle phase of a session. String values are a public contract."""

    BIRTH = "BIRTH"
    ATTACHED = "ATTACHED"
    RECOVERING = "RECOVERING"
    DEGRADED = "DEGRADED"
    TERMINATED = "TERMINATED"


#: Phases that are never left. TERMINATED is the only one (seed §8: TERMINATED > undefined).
ABSORBING: frozenset[Phase] = frozenset({Phase.TERMINATED})

Transition = tuple[Phase, ReasonCode, Phase]

_B, _A, _R, _D, _T = (
    Phase.BIRTH,
    Phase.ATTACHED,
    Phase.RECOVERING,
    Phase.DEGRADED,
    Phase.TERMINATED,
)
_RC = ReasonCode
_LIVE = (_B, _A, _R, _D)
_AFTER_BIRTH = (_A, _R, _D)

# (from phase, reason) -> to phase. Rows are listed by seed clause; a reason that applies from
# several phases gets one row per phase so that the table reads without rules.
TRANSITION_TABLE: Mapping[tuple[Phase, ReasonCode], Phase] = {
    # Handshake done (driver) / handshake never finished.
    (_B, _RC.ATTACH_COMPLETED): _A,
    (_B, _RC.BIRTH_TIMEOUT): _T,
    # §2.1 loss spike, §2.2 NAT churn (client: delivery timeout; server: unexpected source).
    (_A, _RC.LOSS_THRESHOLD_EXCEEDED): _R,
    (_A, _RC.DELIVERY_TIMEOUT): _R,
    (_A, _RC.UNEXPECTED_SOURCE_ADDRESS): _R,
    (_A, _RC.TRANSPORT_FAILED): _R,
    # §7 total collapse: ATTACHED -> RECOVERING; DEGRADED has nothing left to fall back on.
    (_A, _RC.TRANSPORT_COLLAPSE): _R,
    (_D, _RC.TRANSPORT_COLLAPSE): _T,
    (_D, _RC.TRANSPORT_FAILED): _T,
    # §2.1/§2.3 reattach with valid proof and validated path. ATTACHED -> ATTACHED is a
    # proof-backed migration the peer asked for before this side noticed any trouble.
    (_A, _RC.REATTACHED): _A,
    (_R, _RC.REATTACHED): _A,
    (_D, _RC.REATTACHED): _A,
    # Client only: a proactive, proof-backed move to a path whose measured quality beat the
    # active one's by the policy margin for the policy dwell time (path quality).
    (_A, _RC.MIGRATED_TO_BETTER_PATH): _A,
    # Server only: validation of a new address failed while the old path kept working.
    (_R, _RC.PATH_REVERTED): _A,
    # §9 ladder.
    (_R, _RC.RECOVERY_PARTIAL): _D,
    (_R, _RC.RECOVERY_WINDOW_EXCEEDED): _T,
    (_R, _RC.NO_VIABLE_CANDIDATE): _T,
    (_D, _RC.CANDIDATE_AVAILABLE): _R,
    (_D, _RC.RECOVERY_ROUNDS_EXCEEDED): _T,
    (_D, _RC.DEGRADED_TIMEOUT): _T,
    # §8 fail closed: bounds and ambiguity end the session from any live phase.
    **{(p, _RC.SESSION_LIFETIME_EXCEEDED): _T for p in _LIVE},
    **{(p, _RC.TRANSPORT_LOST_TTL_EXPIRED): _T for p in _AFTER_BIRTH},
    **{(p, _RC.OWNERSHIP_AMBIGUOUS): _T for p in _LIVE},
    **{(p, _RC.SESSION_EVICTED): _T for p in _LIVE},
    **{(p, _RC.STORE_RECORD_INVALID): _T for p in _LIVE},
    **{(p, _RC.CLOSED): _T for p in _LIVE},
}


def transition_target(phase: Phase, reason: ReasonCode) -> Phase:
    """Return the phase that `reason` leads to from `phase`.

    Raises `KeyError` for a row the table does not have. Step functions only ask for rows
    that exist, so this firing means a bug in the core, never bad input.
    """
    return TRANSITION_TABLE[(phase, reason)]


def allowed_reasons(phase: Phase) -> frozenset[ReasonCode]:
    """Every reason that may move a session out of (or within) `phase`."""
    return frozenset(reason for (src, reason) in TRANSITION_TABLE if src is phase)
