"""jumpvpn-core: a sans-IO control-plane core for roaming VPN sessions.

The session is the anchor, the transport is volatile, correctness dominates survivability.
"""

from jumpvpn_core.codec import STATE_FORMAT_VERSION, state_from_data, state_to_data
from jumpvpn_core.effects import (
    AUDIT_RECORD_VERSION,
    BindTransport,
    Effect,
    Rejected,
    SendPathChallenge,
    SendReattachAccept,
    SendReattachRequest,
    SessionEnded,
    StateChanged,
)
from jumpvpn_core.errors import (
    FormDecodeError,
    InvalidEventError,
    InvalidTransportError,
    JsonDecodeError,
    JumpVpnError,
    PolicyError,
    StateDecodeError,
)
from jumpvpn_core.events import (
    AllTransportsFailed,
    Attach,
    CandidateDiscovered,
    CandidateLost,
    Close,
    DeliveryTimeout,
    Event,
    Evict,
    InboundTraffic,
    OwnershipAmbiguous,
    PacketLoss,
    PathChallengeReceived,
    ProbeLost,
    ReattachAccepted,
    ReattachRequest,
    RttSample,
    StoreRecordInvalid,
    Tick,
    TransportFailed,
)
from jumpvpn_core.invariants import Violation, check_state, check_step, checked_step
from jumpvpn_core.machine import StepResult, advance_time, next_deadline, step
from jumpvpn_core.peer import Peer
from jumpvpn_core.phases import TRANSITION_TABLE, Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.reasons import ReasonClass, ReasonCode, reason_class
from jumpvpn_core.replay import ReplayVerdict, ReplayWindow
from jumpvpn_core.state import SessionState, new_session
from jumpvpn_core.transport import TransportDescriptor, TransportKind

__version__ = "0.1.0"

__all__ = [
    "AUDIT_RECORD_VERSION",
    "STATE_FORMAT_VERSION",
    "TRANSITION_TABLE",
    "AllTransportsFailed",
    "Attach",
    "BindTransport",
    "CandidateDiscovered",
    "CandidateLost",
    "Close",
    "DeliveryTimeout",
    "Effect",
    "Event",
    "Evict",
    "FormDecodeError",
    "InboundTraffic",
    "InvalidEventError",
    "InvalidTransportError",
    "JsonDecodeError",
    "JumpVpnError",
    "OwnershipAmbiguous",
    "PacketLoss",
    "PathChallengeReceived",
    "Peer",
    "Phase",
    "Policy",
    "PolicyError",
    "ProbeLost",
    "ReasonClass",
    "ReasonCode",
    "ReattachAccepted",
    "ReattachRequest",
    "Rejected",
    "ReplayVerdict",
    "ReplayWindow",
    "Role",
    "RttSample",
    "SendPathChallenge",
    "SendReattachAccept",
    "SendReattachRequest",
    "SessionEnded",
    "SessionState",
    "StateChanged",
    "StateDecodeError",
    "StepResult",
    "StoreRecordInvalid",
    "Tick",
    "TransportDescriptor",
    "TransportFailed",
    "TransportKind",
    "Violation",
    "__version__",
    "advance_time",
    "check_state",
    "check_step",
    "checked_step",
    "new_session",
    "next_deadline",
    "reason_class",
    "state_from_data",
    "state_to_data",
    "step",
]
