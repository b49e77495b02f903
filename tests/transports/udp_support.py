"""What the UDP transport tests share: short timers, and bounded waits on a running loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from jumpvpn_core.cli.demo import DEMO_CONFIG, DEMO_POLICY

T = TypeVar("T")

#: Short timers so that a port jump, a loss burst or a flood plays out in seconds: the
#: demo's, which tell the same story on loopback.
POLICY = DEMO_POLICY
CONFIG = DEMO_CONFIG


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 8.0) -> T:
    """Run one test scenario, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def until(condition: Callable[[], bool], timeout_s: float = 2.0,
                poll_s: float = 0.01) -> None:
    """Poll `condition` every `poll_s`; fail the test if it does not hold in time."""
    for _ in range(round(timeout_s / poll_s)):
        if condition():
            return
        await asyncio.sleep(poll_s)
    raise AssertionError("condition not reached in time")
