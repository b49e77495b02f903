"""The lab controller: one run's namespaces, its agents, and their guaranteed teardown.

`Lab` is an async context manager. On entry it removes leftovers of earlier runs, builds the
topology under a fresh run id and a private temporary directory (the shared store file,
agent logs). On exit — normal, exception, Ctrl-C (the task is cancelled, `finally` runs) —
it stops its agents and deletes its namespaces. `install_exit_guards()` adds an `atexit`
hook and a SIGTERM/SIGHUP handler for what a `finally` cannot see; `jumpvpn lab --cleanup`
removes whatever is left after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

from jumpvpn_core import jsonsafe
from jumpvpn_core.errors import JsonDecodeError, JumpVpnError
from jumpvpn_core.lab.net import Topology, cleanup

__all__ = [
    "Agent",
    "AgentError",
    "ControlLineError",
    "Lab",
    "decode_line",
    "install_exit_guards",
    "until",
]

_ACTIVE: set[str] = set()
_AGENT_MAX_S = 300.0


class AgentError(JumpVpnError, RuntimeError):
    """An agent answered a request with an error, or did not answer in time."""


class ControlLineError(AgentError):
    """A control channel line that is not one JSON object. The message says what was
    wrong (the safe loader's reason), never what the line held."""


def decode_line(line: bytes) -> dict[str, Any]:
    """One line of the control channel (either direction) as a JSON object, read through
    the package's one JSON loader (`jumpvpn_core.jsonsafe`): bounded depth and integer
    size, no NaN, no repeated keys. Raises `ControlLineError` and nothing else."""
    try:
        value = jsonsafe.loads(line)
    except JsonDecodeError as exc:
        raise ControlLineError(f"control line: {exc}") from None
    if not isinstance(value, dict):
        raise ControlLineError("control line is not a JSON object")
    return value


def _teardown_active() -> None:
    for run_id in list(_ACTIVE):
        cleanup(run_id)
        _ACTIVE.discard(run_id)


def install_exit_guards() -> None:
    """Tear down every live run at interpreter exit and on SIGTERM/SIGHUP."""
    atexit.register(_teardown_active)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        _teardown_active()
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)


#: How much of a dead agent's log its error carries.
_LOG_TAIL_LINES = 12
_LOG_TAIL_BYTES = 4_096


def _log_tail(log: Path | None) -> str:
    """The last lines of `log` (at most a few KiB), or "" when there is none to read."""
    if log is None:
        return ""
    try:
        with log.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join(f"  | {line}" for line in lines)


class Agent:
    """A JSON-lines agent process inside one namespace."""

    def __init__(self, role: str, ns: str, proc: asyncio.subprocess.Process,
                 log: Path | None = None) -> None:
        self.role = role
        self.ns = ns
        self.proc = proc
        #: The agent's stderr: its last lines go into the error of a dead agent.
        self.log = log
        self._next = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        #: Lines from the agent that were not one JSON object.
        self.bad_lines = 0
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, role: str, ns: str, log: Path) -> Agent:
        """Launch `python -m jumpvpn_core.lab.agent ROLE` inside `ns`."""
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", ns, sys.executable, "-m", "jumpvpn_core.lab.agent",
                role, "--max-s", str(_AGENT_MAX_S),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err)
        return cls(role, ns, proc, log)

    def _gone(self, what: str) -> AgentError:
        """An error for an agent that is gone, with its exit status and last log lines
        (the log itself is deleted with the lab's directory)."""
        detail = f"{self.role} agent {what} (exit status {self.proc.returncode})"
        tail = _log_tail(self.log)
        return AgentError(f"{detail}; last lines of its log:\n{tail}" if tail else detail)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            try:
                answer = decode_line(line)
            except ControlLineError:
                self.bad_lines += 1  # cannot be matched to a request: counted, skipped
                continue
            rid = answer.get("id")
            future = self._waiting.pop(rid, None) if type(rid) is int else None
            if future is not None and not future.done():
                future.set_result(answer)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(self._gone("exited"))
        self._waiting.clear()

    async def call(self, cmd: str, timeout_s: float = 10.0, **args: Any) -> dict[str, Any]:
        """Send one request and wait for its answer."""
        if self.proc.stdin is None or self.proc.returncode is not None:
            raise self._gone("is not running")
        self._next += 1
        rid = self._next
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        self.proc.stdin.write((json.dumps({"id": rid, "cmd": cmd, **args}) + "\n").encode())
        try:
            await self.proc.stdin.drain()
            answer = await asyncio.wait_for(future, timeout_s)
        except (TimeoutError, ConnectionError) as exc:
            self._waiting.pop(rid, None)
            raise AgentError(f"{self.role}: {cmd}: no answer ({type(exc).__name__})") from None
        if not answer.get("ok"):
            raise AgentError(f"{self.role}: {cmd}: {answer.get('error')}")
        return answer

    def kill(self) -> None:
        """SIGKILL the agent (a crashed node)."""
        if self.proc.returncode is None:
            self.proc.kill()

    async def stop(self) -> None:
        """Ask the agent to close and exit; kill it if it does not within 3 s."""
        if self.proc.returncode is None and self.proc.stdin is not None:
            try:
                await self.call("close", timeout_s=3)
                self.proc.stdin.write(b'{"id": 0, "cmd": "exit"}\n')
                await self.proc.stdin.drain()
                self.proc.stdin.close()
                await asyncio.wait_for(self.proc.wait(), 3)
            except (AgentError, TimeoutError, ConnectionError, OSError):
                self.kill()
        if self.proc.returncode is None:
            self.kill()
            await self.proc.wait()
        self._reader.cancel()


class Lab:
    """One run: topology, agents, temporary directory; torn down on exit, whatever happens."""

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id if run_id is not None else secrets.token_hex(2)
        self.topo = Topology(self.run_id)
        # On tmpfs when there is one: every payload datagram commits a state to the shared
        # SQLite store (synchronous=FULL), and fsyncs on a busy disk would stall the
        # gateways' event loops; durability is not what the lab measures.
        shm = Path("/dev/shm")  # noqa: S108 - a private mkdtemp directory below it
        self.dir = Path(tempfile.mkdtemp(prefix=f"jumpvpn-lab-{self.run_id}-",
                                         dir=shm if shm.is_dir() else None))
        self.agents: list[Agent] = []
        self.cleanups: list[Callable[[], Awaitable[None]]] = []

    @property
    def store_path(self) -> str:
        """The SQLite file both gateways share."""
        return str(self.dir / "sessions.db")

    async def __aenter__(self) -> Lab:
        cleanup()  # leftovers of earlier runs (a crash, a SIGKILL)
        _ACTIVE.add(self.run_id)
        try:
            await asyncio.to_thread(self.topo.build)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def agent(self, role: str, where: str) -> Agent:
        """Start an agent of `role` in the namespace of `where` (`cli`, `gw1`, `att`...)."""
        agent = await Agent.start(role, self.topo.ns(where), self.dir / f"{where}.log")
        self.agents.append(agent)
        return agent

    async def close(self) -> None:
        """Stop agents and extra processes, delete the namespaces and the directory."""
        for closer in reversed(self.cleanups):
            try:
                await asyncio.wait_for(closer(), 5)
            except Exception:  # teardown goes on whatever one step did
                sys.stderr.write("lab: a cleanup step failed\n")
        self.cleanups.clear()
        await asyncio.gather(*(a.stop() for a in self.agents), return_exceptions=True)
        self.agents.clear()
        await asyncio.to_thread(self.topo.teardown)
        _ACTIVE.discard(self.run_id)
        keep = os.environ.get("JUMPVPN_LAB_KEEP_LOGS")
        if keep:  # debugging: keep agent logs of every run under this directory
            shutil.copytree(self.dir, Path(keep) / self.dir.name, dirs_exist_ok=True)
        shutil.rmtree(self.dir, ignore_errors=True)


async def until(probe: Callable[[], Awaitable[bool]], timeout_s: float,
                interval_s: float = 0.05) -> float | None:
    """Seconds until `probe()` holds (polled), or None if it did not within `timeout_s`."""
    start = time.monotonic()
    while True:
        if await probe():
            return time.monotonic() - start
        if time.monotonic() - start >= timeout_s:
            return None
        await asyncio.sleep(interval_s)
