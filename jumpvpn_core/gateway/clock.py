"""The clock contract of a cluster, checked against the store's clock.

Every node passes `now_ms` on one time base: Unix epoch milliseconds from a synchronised
clock (NTP, PTP). Two nodes are never more than `GatewayPolicy.max_clock_skew_ms` apart.
What follows from the bound, and what the gateway does when it is broken:

* a stored record whose clock (`link.clock_ms`, the last time a node stepped it) is ahead
  of this node's `now_ms` by at most the bound is stepped at the record's clock (the
  session's time never goes backwards, an honest node a little behind still serves);
* ahead by more: the input is refused (TIME_WENT_BACKWARDS); nothing is stepped,
  terminated, committed or deleted, and `resume()` leaves such a record alone;
* shared mode: a session is idle only past `session_idle_ttl_ms` plus the bound, so a node
  ahead within the bound never evicts a session another node has just served;
* a node that is ahead or behind the store's clock by more than the bound (measured by
  `Gateway.check_clock`) refuses every input until it is back within it: a node 700 s
  ahead would otherwise end sessions that are alive.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from jumpvpn_core.stores.base import StoreError

if TYPE_CHECKING:  # the gateway imports this module; this import is for annotations only
    from jumpvpn_core.gateway.gateway import Gateway

__all__ = ["measure_clock"]

_log = logging.getLogger("jumpvpn_core.gateway")


def measure_clock(gateway: Gateway, now_ms: int) -> int | None:
    """`Gateway.check_clock`: the offset node minus store, and the contract verdict."""
    reader = getattr(gateway.store, "time_ms", None)
    if reader is None:
        return None
    try:
        store_ms = int(reader())
    except StoreError:
        return None
    offset = now_ms - store_ms
    with gateway._lock:
        gateway.clock_offset_ms = offset
        fault = abs(offset) > gateway.policy.max_clock_skew_ms
        if fault is not gateway._clock_fault:
            gateway._clock_fault = fault
            kind = "clock_out_of_contract" if fault else "clock_within_contract"
            _log.log(logging.WARNING if fault else logging.INFO,
                     "%s: node %s is %d ms off the store's clock (bound %d ms)", kind,
                     gateway.node_id, offset, gateway.policy.max_clock_skew_ms)
            gateway._emit({"v": 1, "type": kind, "node": gateway.node_id,
                           "offset_ms": offset, "bound_ms": gateway.policy.max_clock_skew_ms,
                           "ts_ms": now_ms})
    return offset
