"""A thin asyncio driver for `Gateway`: every call runs on a worker thread.

Store calls block (network round trips, SQLite fsyncs); running them on the event loop
would stall every other session. `AsyncGateway` only moves each call off the loop with
`asyncio.to_thread`; all decisions stay in the synchronous `Gateway`, which serialises
its inputs with a lock, so results are the same as calling it directly. Time is still
passed in: use `AsyncGateway.now_ms()` (the loop's monotonic clock) or your own.
"""

from __future__ import annotations

import asyncio

from jumpvpn_core.events import Event, ReattachRequest
from jumpvpn_core.gateway.gateway import Gateway, GatewayResult
from jumpvpn_core.transport import TransportDescriptor

__all__ = ["AsyncGateway"]


class AsyncGateway:
    """Awaitable wrappers around a `Gateway`'s inputs."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @staticmethod
    def now_ms() -> int:
        """The running loop's monotonic clock in integer milliseconds."""
        return int(asyncio.get_running_loop().time() * 1000)

    async def open_session(
        self, session_id: bytes, session_secret: bytes, transport: TransportDescriptor,
        now_ms: int,
    ) -> GatewayResult:
        """`Gateway.open_session` off the event loop."""
        return await asyncio.to_thread(
            self.gateway.open_session, session_id, session_secret, transport, now_ms
        )

    async def handle_reattach(self, request: ReattachRequest) -> GatewayResult:
        """`Gateway.handle_reattach` off the event loop."""
        return await asyncio.to_thread(self.gateway.handle_reattach, request)

    async def handle(self, session_id: bytes, event: Event) -> GatewayResult:
        """`Gateway.handle` off the event loop."""
        return await asyncio.to_thread(self.gateway.handle, session_id, event)

    async def tick(self, now_ms: int) -> list[GatewayResult]:
        """`Gateway.tick` off the event loop."""
        return await asyncio.to_thread(self.gateway.tick, now_ms)

    async def resume(self, now_ms: int) -> int:
        """`Gateway.resume` off the event loop."""
        return await asyncio.to_thread(self.gateway.resume, now_ms)
