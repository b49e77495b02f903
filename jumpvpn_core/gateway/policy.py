"""`GatewayPolicy`: the bounds and cluster shape of one server-side gateway node.

Immutable and validated like the core's `Policy`: every problem found is listed in one
`PolicyError`. All times are integer milliseconds; limits are integer counts.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from jumpvpn_core.errors import PolicyError, describe, field_name

__all__ = ["GATEWAY_POLICY_FIELD_DOCS", "GatewayPolicy", "OwnershipMode"]


class OwnershipMode(enum.StrEnum):
    """How a cluster decides which node may change a session (risk model §4.1)."""

    #: One owner per session, chosen by rendezvous hashing over `node_ids`; others refuse.
    STICKY = "sticky"
    #: Any node may serve any session: load, step, commit by compare-and-set.
    SHARED = "shared"


# name -> (unit, minimum, maximum, meaning)
GATEWAY_POLICY_FIELD_DOCS: dict[str, tuple[str, int, int, str]] = {
    "max_sessions": (
        "sessions", 1, 100_000_000,
        "capacity of this node's session table; a new session beyond it is refused (§5.3)",
    ),
    "session_idle_ttl_ms": (
        "ms", 1, 31_536_000_000,
        "a session whose state has not changed for this long is evicted, explicitly (§5.3)",
    ),
    "flood_interval_ms": (
        "ms", 1, 3_600_000,
        "refill interval of both flood buckets (§3.1)",
    ),
    "global_flood_limit": (
        "requests", 1, 100_000_000,
        "reattach requests this node admits per `flood_interval_ms`, all sources (§3.1)",
    ),
    "source_flood_limit": (
        "requests", 1, 100_000_000,
        "reattach requests admitted per `flood_interval_ms` from one source host (§3.1)",
    ),
    "max_tracked_sources": (
        "sources", 1, 10_000_000,
        "bound on the per-source bucket table; the least recently seen source is evicted",
    ),
    "aggregation_interval_ms": (
        "ms", 1, 86_400_000,
        "rejections are counted per reason and reported once per interval",
    ),
    "max_clock_skew_ms": (
        "ms", 0, 3_600_000,
        "clock contract of a cluster: how far apart the `now_ms` of two nodes may be; a "
        "stored record ahead of this node's clock by more is refused, never stepped or "
        "deleted (docs/operations.md)",
    ),
}


def _node_ids(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(value)
    return value  # anything else is reported by __attrs_post_init__


@attrs.frozen(slots=True)
class GatewayPolicy:
    """Bounds and cluster shape of a gateway node. Invalid values raise one `PolicyError`.

    >>> GatewayPolicy(max_sessions=10).max_sessions
    10
    """

    max_sessions: int = 100_000
    session_idle_ttl_ms: int = 600_000
    flood_interval_ms: int = 1_000
    global_flood_limit: int = 10_000
    source_flood_limit: int = 20
    max_tracked_sources: int = 100_000
    aggregation_interval_ms: int = 10_000
    max_clock_skew_ms: int = 1_000
    ownership: OwnershipMode = OwnershipMode.STICKY
    node_ids: tuple[str, ...] = attrs.field(default=("node-0",), converter=_node_ids)

    def __attrs_post_init__(self) -> None:
        problems: list[str] = []
        for name, (unit, low, high, _doc) in GATEWAY_POLICY_FIELD_DOCS.items():
            value = getattr(self, name)
            if type(value) is not int:
                problems.append(f"{name} must be an int ({unit}), got {describe(value)}")
            elif not low <= value <= high:
                problems.append(f"{name} must be in {low}..{high} {unit}, got {describe(value)}")
        if not isinstance(self.ownership, OwnershipMode):
            problems.append(
                f"ownership must be one of {[m.value for m in OwnershipMode]}, "
                f"got {field_name(self.ownership)}"
            )
        ids = self.node_ids
        if not isinstance(ids, tuple) or not ids:
            problems.append("node_ids must be a non-empty tuple of node names")
        elif not all(isinstance(i, str) and i for i in ids):
            problems.append("every node id must be a non-empty string")
        elif len(set(ids)) != len(ids):
            problems.append("node ids must be distinct")
        if (
            type(self.source_flood_limit) is int
            and type(self.global_flood_limit) is int
            and self.source_flood_limit > self.global_flood_limit
        ):
            problems.append("source_flood_limit must not exceed global_flood_limit")
        if problems:
            raise PolicyError(problems)

    def to_data(self) -> dict[str, Any]:
        """Plain-data form."""
        data: dict[str, Any] = {name: getattr(self, name) for name in GATEWAY_POLICY_FIELD_DOCS}
        data["ownership"] = self.ownership.value
        data["node_ids"] = list(self.node_ids)
        return data

    @classmethod
    def from_data(cls, data: Any) -> GatewayPolicy:
        """Inverse of `to_data`. Unknown keys are a `PolicyError`."""
        if not isinstance(data, dict):
            raise PolicyError([f"gateway policy must be an object, got {describe(data)}"])
        known = {*GATEWAY_POLICY_FIELD_DOCS, "ownership", "node_ids"}
        unknown = sorted(field_name(key) for key in data if key not in known)
        if unknown:  # names quoted only when they look like names (never a key's hex)
            raise PolicyError([f"unknown gateway policy field {name}" for name in unknown])
        values = dict(data)
        if "ownership" in values:
            try:
                values["ownership"] = OwnershipMode(values["ownership"])
            except ValueError:
                raise PolicyError(
                    [f"ownership must be sticky or shared, got {field_name(values['ownership'])}"]
                ) from None
        return cls(**values)
