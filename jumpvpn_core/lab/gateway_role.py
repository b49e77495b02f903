"""The gateway agent: a reference `UdpServer` whose sessions live in a `Gateway` node.

Both lab gateways open the same SQLite file (a file is reachable from every namespace) in
`shared` ownership: any node serves any session by load, `step()`, compare-and-set. The
`store_cut` command makes this node's store unreachable (every call raises
`StoreUnavailableError`), which is what a node partitioned from its store sees: a unix
socket or a file cannot be cut by a packet filter, so the partition is injected at the
store adapter, the one place the node talks to the store.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from jumpvpn_core.effects import BindTransport, Effect, StateChanged
from jumpvpn_core.gateway import Gateway, GatewayPolicy, GatewayResult, OwnershipMode
from jumpvpn_core.phases import Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.state import SessionState
from jumpvpn_core.stores import StoredSession, StoreUnavailableError
from jumpvpn_core.stores.sqlite import SqliteStore
from jumpvpn_core.transports.udp import GatewaySessionHost, UdpServer

if TYPE_CHECKING:
    from jumpvpn_core.lab.wireguard import EndpointFollower

__all__ = ["CuttableStore", "GatewayHost", "GatewayRole"]


class CuttableStore:
    """A `SessionStore` that can be cut off: while `cut`, every call is unavailable."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.cut = False
        self.refused = 0

    def _check(self) -> None:
        if self.cut:
            self.refused += 1
            raise StoreUnavailableError("store unreachable from this node (lab partition)")

    def get(self, session_id: bytes) -> StoredSession | None:
        """`SessionStore.get` unless cut."""
        self._check()
        return self.inner.get(session_id)

    def create(self, session_id: bytes, version: int, data: bytes) -> bool:
        """`SessionStore.create` unless cut."""
        self._check()
        return self.inner.create(session_id, version, data)

    def compare_and_set(self, session_id: bytes, expected_version: int, new_version: int,
                        data: bytes) -> bool:
        """`SessionStore.compare_and_set` unless cut."""
        self._check()
        return self.inner.compare_and_set(session_id, expected_version, new_version, data)

    def delete(self, session_id: bytes, expected_version: int) -> bool:
        """`SessionStore.delete` unless cut."""
        self._check()
        return self.inner.delete(session_id, expected_version)

    def scan(self) -> Iterator[StoredSession]:
        """`SessionStore.scan` unless cut."""
        self._check()
        return self.inner.scan()

    def close(self) -> None:
        """Close the file."""
        self.inner.close()


class GatewayHost(GatewaySessionHost):
    """The UDP driver's `SessionHost` implemented by a `Gateway` node.

    The gateway returns a rejection's reason in its result, not as a `Rejected` effect for
    the driver; every rejection is counted here, by reason, in `rejections`.
    """

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway)
        self.rejections: collections.Counter[str] = collections.Counter()
        #: Called with the state of every session this node has just stepped.
        self.on_state: list[Any] = []

    def _result(self, result: GatewayResult) -> Sequence[Effect]:
        if not result.accepted and result.reason is not None:
            self.rejections[result.reason.value] += 1
        state = self.gateway.local_state(result.session_id)
        if state is not None:
            for callback in self.on_state:
                callback(state)
        return super()._result(result)


class GatewayRole:
    """Command handlers of the gateway agent."""

    def __init__(self) -> None:
        self.server: UdpServer | None = None
        self.host: GatewayHost | None = None
        self.store: CuttableStore | None = None
        self.changes: list[dict[str, Any]] = []
        self.binds: list[dict[str, Any]] = []
        self.node = ""
        self.follower: EndpointFollower | None = None
        self.follow_sid = ""

    def handlers(self) -> dict[str, Any]:
        """Command name -> coroutine."""
        return {"start": self.start, "status": self.status, "store_cut": self.store_cut,
                "wg_follow": self.wg_follow, "close": self.close}

    def _observe(self, _role: Role, now: int, effect: Effect) -> None:
        if isinstance(effect, StateChanged):
            self.changes.append({"t": now, "from": effect.from_phase.value,
                                 "to": effect.to_phase.value, "reason": effect.reason.value,
                                 "v": effect.state_version, "sid": effect.session_id.hex()})
        elif isinstance(effect, BindTransport):
            self.binds.append({"t": now, "to": str(effect.transport),
                               "sid": effect.session_id.hex()})
            if self.follower is not None and effect.session_id.hex() == self.follow_sid:
                self.follower.bind(effect.transport.host)

    def _adopt(self, state: SessionState) -> None:
        """A session another node opened reached this node through the shared store
        (failover): let the driver serve it (`UdpServer.adopt`)."""
        if self.server is not None:
            self.server.adopt(state)

    async def start(self, req: dict[str, Any]) -> dict[str, Any]:
        """Open the shared store, build the gateway node and bind the UDP server."""
        self.node = str(req["node"])
        policy = Policy.from_data(req.get("policy", {}), partial=True)
        gw_policy = GatewayPolicy(ownership=OwnershipMode.SHARED,
                                  node_ids=tuple(req["nodes"]),
                                  **req.get("gateway_policy", {}))
        self.store = CuttableStore(SqliteStore(str(req["store"]), timeout_s=1.0))
        gateway = Gateway(self.store, gw_policy, node_id=self.node, session_policy=policy)
        self.host = GatewayHost(gateway)
        self.host.on_state.append(self._adopt)
        self.server = await UdpServer.bind(str(req["host"]), int(req["port"]), policy=policy,
                                           sessions=self.host, observer=self._observe)
        return {"address": str(self.server.address)}

    async def wg_follow(self, req: dict[str, Any]) -> dict[str, Any]:
        """Let the core's bindings of session `sid` steer WireGuard peer `peer` on `ifname`."""
        from jumpvpn_core.lab.wireguard import EndpointFollower
        server = self.server
        if server is None:
            raise RuntimeError("not started")
        self.follow_sid = str(req["sid"])
        self.follower = EndpointFollower(str(req["ifname"]), str(req["peer"]))
        route = server.route(bytes.fromhex(self.follow_sid))
        if route is not None:
            self.follower.bind(route.host)
        return {}

    async def store_cut(self, req: dict[str, Any]) -> dict[str, Any]:
        """Cut this node off from the store (`on`: true) or reconnect it."""
        if self.store is None:
            raise RuntimeError("not started")
        self.store.cut = bool(req.get("on", True))
        return {}

    async def status(self, req: dict[str, Any]) -> dict[str, Any]:
        """A session's committed state and this node's counters."""
        server, host = self.server, self.host
        if server is None or host is None or self.store is None:
            raise RuntimeError("not started")
        out: dict[str, Any] = {
            "wall": time.monotonic(), "node": self.node,
            "changes": self.changes[-50:],
            "reattached": sum(1 for c in self.changes if c["reason"] == "REATTACHED"),
            "binds": self.binds,
            "rejects": dict(host.rejections),
            "drops": dict(server.drops), "store_refused": self.store.refused,
            "wg_moves": [] if self.follower is None else self.follower.moves,
            "sessions": {sid.hex(): len(seqs) for sid, seqs in server.delivered.items()},
        }
        sid_hex = req.get("sid")
        if sid_hex:
            sid = bytes.fromhex(str(sid_hex))
            route = server.route(sid)
            out["route"] = None if route is None else str(route)
            out["delivered"] = len(server.delivered.get(sid, ()))
            try:
                committed = self.store.inner.get(sid)
            except StoreUnavailableError:
                committed = None
            if committed is not None:
                from jumpvpn_core.gateway import decode_record
                state = decode_record(committed)
                out.update(phase=state.phase.value, state_version=state.state_version,
                           store_version=committed.version,
                           bound=None if state.link.active is None else str(state.link.active))
            else:
                out.update(phase=None, state_version=None, store_version=None, bound=None)
        return out

    async def close(self, _req: dict[str, Any]) -> dict[str, Any]:
        """Close the socket and the store."""
        if self.server is not None:
            await self.server.close()
            self.server = None
        if self.store is not None:
            self.store.close()
            self.store = None
        return {}
