"""The standard lab world every UDP case starts from, and the result record of a case.

Two gateway nodes (`gw1`, `gw2`) share one SQLite store and serve the service address;
routing sends it to `gw1` until a case moves it. The client connects through ISP-A and
streams the reference payload (one datagram every 20 ms). Policy timers are compressed so a
case takes seconds: a 4 s recovery window, 300 ms reattach timeout, 3 losses to declare a
path dead.
"""

from __future__ import annotations

import time
from typing import Any

import attrs

from jumpvpn_core.lab.control import Agent, Lab, until
from jumpvpn_core.lab.net import ISP, SERVICE_ADDRESS

__all__ = ["CLIENT_CONFIG", "POLICY", "PORT", "CaseResult", "World"]

PORT = 4_433
POLICY: dict[str, int] = {
    "loss_threshold": 3,
    "reattach_timeout_ms": 300,
    "switch_cooldown_ms": 100,
    "max_switches_per_minute": 60,
    "reattach_rate_limit": 16,
    "path_validation_timeout_ms": 500,
    "max_recovery_window_ms": 4_000,
}
CLIENT_CONFIG: dict[str, int] = {
    "tick_ms": 10, "data_interval_ms": 20, "ack_timeout_ms": 300,
    "delivery_timeout_ms": 1_000, "keepalive_ms": 200,
}
#: The recovery window in seconds (cases compare against it).
WINDOW_S = POLICY["max_recovery_window_ms"] / 1000


@attrs.define
class CaseResult:
    """One case's verdict, the seed clauses it proves, its figures and its reason."""

    name: str
    clauses: str
    passed: bool = False
    seconds: float = 0.0
    figures: dict[str, Any] = attrs.field(factory=dict)
    detail: str = ""

    def check(self, condition: bool, failure: str) -> bool:
        """Record a failed expectation (the first one is the case's reason)."""
        if not condition and not self.detail:
            self.detail = failure
        return condition

    def to_data(self) -> dict[str, Any]:
        """JSON form."""
        return {"case": self.name, "clauses": self.clauses, "passed": self.passed,
                "seconds": round(self.seconds, 2), "figures": self.figures,
                "detail": self.detail}


@attrs.define
class World:
    """Agents of the standard world."""

    lab: Lab
    client: Agent
    gw1: Agent
    gw2: Agent
    attacker: Agent | None
    session_id: str = ""

    @classmethod
    async def start(cls, lab: Lab, *, auto_switch: bool = False, attacker: bool = False,
                    tunnel: dict[str, str] | None = None) -> World:
        """Gateways, then (optionally) the attacker capturing, then the client, streaming.

        `tunnel` (`tunnel_if`, `tunnel_peer`): a WireGuard device in the client namespace
        whose outer flow follows the core's bindings.
        """
        gws = []
        for node in ("gw1", "gw2"):
            agent = await lab.agent("gateway", node)
            await agent.call("start", node=node, nodes=["gw1", "gw2"], store=lab.store_path,
                             host=SERVICE_ADDRESS, port=PORT, policy=POLICY)
            gws.append(agent)
        att = None
        if attacker:
            att = await lab.agent("attacker", "att")
            await att.call("capture", dst=SERVICE_ADDRESS, port=PORT,
                           ifaces=["toispa", "toispb"])
        client = await lab.agent("client", "cli")
        hello = await client.call("connect", server=SERVICE_ADDRESS, port=PORT, uplink="A",
                                  policy=POLICY, config=CLIENT_CONFIG, auto_switch=auto_switch,
                                  tunnel_route=SERVICE_ADDRESS if tunnel else None,
                                  tunnel_if=(tunnel or {}).get("tunnel_if", ""),
                                  tunnel_peer=(tunnel or {}).get("tunnel_peer", ""))
        await client.call("stream", on=True)
        world = cls(lab, client, gws[0], gws[1], att, str(hello["session_id"]))
        if await until(world.flowing, 5) is None:
            raise RuntimeError("the session did not start carrying payload")
        return world

    async def client_status(self) -> dict[str, Any]:
        """The client agent's status."""
        return await self.client.call("status")

    async def gw_status(self, gw: Agent | None = None) -> dict[str, Any]:
        """A gateway's view of the session (committed state, route, delivered count)."""
        return await (gw or self.gw1).call("status", sid=self.session_id)

    async def attached(self) -> bool:
        """The client is ATTACHED with its original session id."""
        status = await self.client_status()
        return bool(status["phase"] == "ATTACHED" and status["session_id"] == self.session_id)

    async def flowing(self, gw: Agent | None = None, window_s: float = 0.3) -> bool:
        """Payload reaches the gateway now (delivered count grows over `window_s`)."""
        before = (await self.gw_status(gw)).get("delivered", 0)
        await _sleep(window_s)
        after = (await self.gw_status(gw)).get("delivered", 0)
        return bool(after > before) and await self.attached()

    async def bound_host(self, gw: Agent | None = None) -> str | None:
        """The host part of the gateway's route for the session."""
        route = (await self.gw_status(gw)).get("route")
        return None if route is None else str(route).rsplit(":", 1)[0].removeprefix("udp:")


async def _sleep(seconds: float) -> None:
    import asyncio
    await asyncio.sleep(seconds)


def wan(isp: str) -> str:
    """An ISP NAT's public address (what the gateway sees)."""
    return ISP[isp]["nat_wan"]


def now() -> float:
    """Monotonic seconds."""
    return time.monotonic()
