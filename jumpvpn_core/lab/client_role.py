"""The client agent: a reference `UdpClient` with two uplinks (ISP-A, ISP-B).

The session's control plane and its payload stream are the reference UDP driver's. The
only thing this role adds is the uplink offer: when `auto_switch` is on and the core enters
RECOVERING, the other uplink's address is offered (`UdpClient.rebind(host=...)`, which the
core sees as `CandidateDiscovered` then `TransportFailed`); the core alone decides whether
and when the session moves (it binds only on a verified accept).

When a WireGuard tunnel rides on the session (`tunnel_route`), every `BindTransport` the
core executes also moves the route to the gateway's service address onto the bound
uplink: the tunnel follows the core's decision, never the other way round.
"""

from __future__ import annotations

import asyncio
import collections
import subprocess
import time
from typing import Any

from jumpvpn_core.effects import BindTransport, Effect, Rejected, SessionEnded, StateChanged
from jumpvpn_core.lab.net import ISP
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.transport import TransportDescriptor
from jumpvpn_core.transports.udp import ClientConfig, UdpClient

__all__ = ["ClientRole"]


def _uplink_of(host: str | None) -> str | None:
    for name, addrs in ISP.items():
        if addrs["client"] == host:
            return name
    return None


class ClientRole:
    """Command handlers of the client agent."""

    def __init__(self) -> None:
        self.client: UdpClient | None = None
        self.auto_switch = False
        self.tunnel_route: str | None = None
        self.tunnel_if = ""
        self.tunnel_peer = ""
        self.changes: list[dict[str, Any]] = []
        self.rejects: collections.Counter[str] = collections.Counter()
        self.binds: list[dict[str, Any]] = []
        self.end_reason: str | None = None
        self._offering = False
        self._offers = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    def handlers(self) -> dict[str, Any]:
        """Command name -> coroutine."""
        return {"connect": self.connect, "stream": self.stream, "status": self.status,
                "rebind": self.rebind, "close": self.close}

    # --- the observer: audit, binds, the uplink offer -------------------------------------

    def _observe(self, _role: Role, now: int, effect: Effect) -> None:
        if isinstance(effect, StateChanged):
            self.changes.append({"t": now, "from": effect.from_phase.value,
                                 "to": effect.to_phase.value, "reason": effect.reason.value,
                                 "v": effect.state_version})
            if effect.to_phase is Phase.RECOVERING and self.auto_switch:
                task = asyncio.ensure_future(self._offer_other_uplink())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        elif isinstance(effect, Rejected):
            self.rejects[effect.reason.value] += 1
        elif isinstance(effect, BindTransport):
            self.binds.append({"t": now, "to": str(effect.transport)})
            if self.tunnel_route is not None:
                self._route_tunnel(effect.transport)
        elif isinstance(effect, SessionEnded):
            self.end_reason = effect.reason.value

    async def _offer_other_uplink(self) -> None:
        client = self.client
        if client is None or self._offering or client.local is None:
            return
        current = _uplink_of(client.local.host)
        other = "B" if current == "A" else "A"
        self._offering = True
        try:
            await client.rebind(host=ISP[other]["client"])
            self._offers += 1
        finally:
            self._offering = False

    def _route_tunnel(self, bound: TransportDescriptor) -> None:
        uplink = _uplink_of(bound.host)
        if uplink is None or self.tunnel_route is None:
            return
        dev = f"eth{uplink}"
        subprocess.run(  # noqa: S603 - fixed argv, inside the lab namespace
            ["ip", "route", "replace", f"{self.tunnel_route}/32", "via",  # noqa: S607
             ISP[uplink]["nat_lan"], "dev", dev], check=False, timeout=5,
            capture_output=True)
        if self.tunnel_if and self.tunnel_peer:
            # wireguard-go keeps the source address it last received on ("sticky
            # sockets"); with source-based routing that address would keep the outer flow
            # on the old uplink. Setting the endpoint again clears it.
            from jumpvpn_core.lab.wireguard import WG_PORT, uapi
            uapi(self.tunnel_if, f"set=1\npublic_key={self.tunnel_peer}\nupdate_only=true\n"
                 f"endpoint={self.tunnel_route}:{WG_PORT}\n")

    # --- commands ---------------------------------------------------------------------------

    async def connect(self, req: dict[str, Any]) -> dict[str, Any]:
        """Handshake with the gateway service address through uplink `uplink`."""
        server = TransportDescriptor.udp(str(req["server"]), int(req["port"]))
        policy = Policy.from_data(req.get("policy", {}), partial=True)
        config = ClientConfig(**req.get("config", {}))
        self.auto_switch = bool(req.get("auto_switch", False))
        route = req.get("tunnel_route")
        self.tunnel_route = str(route) if route else None
        self.tunnel_if = str(req.get("tunnel_if") or "")
        self.tunnel_peer = str(req.get("tunnel_peer") or "")
        host = ISP[str(req.get("uplink", "A"))]["client"]
        self.client = await UdpClient.connect(server, local_host=host, policy=policy,
                                              config=config, observer=self._observe)
        if self.tunnel_route is not None and self.client.local is not None:
            self._route_tunnel(self.client.local)
        return {"session_id": self.client.session_id.hex(), "local": str(self.client.local)}

    async def stream(self, req: dict[str, Any]) -> dict[str, Any]:
        """Start or stop the reference payload stream."""
        client = self._need()
        if req.get("on", True):
            client.start_stream()
        else:
            client.stop_stream()
        return {}

    async def rebind(self, req: dict[str, Any]) -> dict[str, Any]:
        """Move to a new local socket (a new port, or the other uplink with `uplink`)."""
        client = self._need()
        uplink = req.get("uplink")
        host = ISP[str(uplink)]["client"] if uplink else None
        moved = await client.rebind(host=host)
        return {"local": str(moved)}

    async def status(self, _req: dict[str, Any]) -> dict[str, Any]:
        """Phase, session id, uplink, counters, audit of the session."""
        client = self._need()
        state = client.state
        local = client.local
        return {
            "wall": time.monotonic(),
            "session_id": client.session_id.hex(),
            "phase": state.phase.value,
            "state_version": state.state_version,
            "local": None if local is None else str(local),
            "uplink": None if local is None else _uplink_of(local.host),
            "sent": client.next_seq - 1,
            "declared_lost": client.declared_lost,
            "changes": self.changes[-50:],
            "reattached": sum(1 for c in self.changes if c["reason"] == "REATTACHED"),
            "binds": self.binds,
            "rejects": dict(self.rejects),
            "drops": dict(client.drops),
            "end_reason": self.end_reason,
            "offers": self._offers,
        }

    async def close(self, _req: dict[str, Any]) -> dict[str, Any]:
        """Close the session and its sockets."""
        if self.client is not None:
            await self.client.close()
        return {}

    def _need(self) -> UdpClient:
        if self.client is None:
            raise RuntimeError("not connected")
        return self.client
