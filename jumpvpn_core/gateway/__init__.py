"""Server-side gateway: a session table, flood limits, ownership and commits over a store.

A tool layer over the pure core (the core never imports it). See `gateway.gateway` for
the admission order and the commit/effects ordering contract, and `docs/deployment.md`.
"""

from jumpvpn_core.gateway.aggregate import SUMMARY_RECORD_TYPE, RejectAggregator
from jumpvpn_core.gateway.aio import AsyncGateway
from jumpvpn_core.gateway.gateway import (
    FIRST_VERSION,
    Gateway,
    GatewayResult,
    RecordInvalidError,
    decode_record,
    encode_state,
)
from jumpvpn_core.gateway.limits import SourceLimiter, TokenBucket
from jumpvpn_core.gateway.ownership import owner_of
from jumpvpn_core.gateway.policy import GATEWAY_POLICY_FIELD_DOCS, GatewayPolicy, OwnershipMode

__all__ = [
    "FIRST_VERSION",
    "GATEWAY_POLICY_FIELD_DOCS",
    "SUMMARY_RECORD_TYPE",
    "AsyncGateway",
    "Gateway",
    "GatewayPolicy",
    "GatewayResult",
    "OwnershipMode",
    "RecordInvalidError",
    "RejectAggregator",
    "SourceLimiter",
    "TokenBucket",
    "decode_record",
    "encode_state",
    "owner_of",
]
