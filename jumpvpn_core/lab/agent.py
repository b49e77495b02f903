"""The process that runs inside one lab namespace: `python -m jumpvpn_core.lab.agent ROLE`.

Launched by the controller with `ip netns exec`. It speaks JSON lines: one request per line
on stdin (`{"id": 1, "cmd": "status", ...}`), one answer per line on stdout
(`{"id": 1, "ok": true, ...}` or `{"id": 1, "ok": false, "error": "..."}`). Roles:
`client` (a `UdpClient` with two uplinks), `gateway` (a `UdpServer` over a `Gateway` and a
shared SQLite store) and `attacker` (capture, replay, spoof, flood).

It exits when stdin closes (the controller died or finished), so a crashed controller never
leaves an agent running; it also exits after `--max-s` seconds whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from jumpvpn_core.lab.control import ControlLineError, decode_line

__all__ = ["Handler", "main", "serve"]

#: One command handler: the request's fields in, the answer's fields out.
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def serve(handlers: dict[str, Handler], max_s: float) -> None:
    """Answer requests from stdin until it closes, `exit` is asked, or `max_s` passes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(payload: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(payload, sort_keys=True) + "\n")
        sys.stdout.flush()

    async def one(request: dict[str, Any]) -> None:
        rid = request.get("id")
        handler = handlers.get(str(request.get("cmd")))
        if handler is None:
            answer({"id": rid, "ok": False, "error": f"unknown command {request.get('cmd')!r}"})
            return
        try:
            result = await handler(request)
        except Exception as exc:  # an agent answers every request; it never dies of one
            answer({"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
            return
        answer({"id": rid, "ok": True, **result})

    async def loop_requests() -> None:
        tasks: set[asyncio.Task[None]] = set()
        while True:
            line = await reader.readline()
            if not line:
                return
            try:
                request = decode_line(line)
            except ControlLineError as exc:
                answer({"id": None, "ok": False, "error": str(exc)})
                continue
            if request.get("cmd") == "exit":
                answer({"id": request.get("id"), "ok": True})
                return
            task = asyncio.ensure_future(one(request))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(loop_requests(), max_s)
    closer = handlers.get("close")
    if closer is not None:
        try:
            await asyncio.wait_for(closer({}), 3)
        except Exception:  # best effort on the way out
            sys.stderr.write("agent: close failed on exit\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point: `agent ROLE [--max-s SECONDS]`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        sys.stderr.write("usage: agent client|gateway|attacker [--max-s S]\n")
        return 2
    role, max_s = args[0], 600.0
    if "--max-s" in args:
        max_s = float(args[args.index("--max-s") + 1])

    async def go() -> None:
        handlers: dict[str, Handler]
        if role == "client":
            from jumpvpn_core.lab.client_role import ClientRole
            handlers = ClientRole().handlers()
        elif role == "gateway":
            from jumpvpn_core.lab.gateway_role import GatewayRole
            handlers = GatewayRole().handlers()
        elif role == "attacker":
            from jumpvpn_core.lab.attacker_role import AttackerRole
            handlers = AttackerRole().handlers()
        else:
            raise SystemExit(f"unknown role {role!r}")
        await serve(handlers, max_s)

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    sys.exit(main())
