"""Speak the conformance protocol (JSONL over stdio) to a program in any language.

`StdioImplementation` is the driver's side: it starts the program, sends one request line
per session creation or event, and reads one response line back. The program is treated
as hostile: malformed JSON, wrong or missing fields, a crash, or silence beyond the
per-step timeout raise `ProtocolError` with a readable reason; the process (and its
process group) is killed, and every later request fails at once with the same reason, so
a run ends promptly. The protocol is specified in `specs/conformance-protocol.md`.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import IO, Any, NoReturn

from jumpvpn_core.errors import describe
from jumpvpn_core.events import Event
from jumpvpn_core.forms import FormError, JsonObject, event_to_data, parse_json
from jumpvpn_core.phases import Phase, Role
from jumpvpn_core.policy import Policy
from jumpvpn_core.subject import Outcome, ProtocolError
from jumpvpn_core.testing.lockstep import PROTOCOL_VERSION, create_request

__all__ = [
    "MAX_LINE_BYTES",
    "ProgramStartError",
    "StdioImplementation",
    "StdioSession",
    "describe_field",
]

#: Longest response line accepted (bytes); anything longer is a protocol failure.
MAX_LINE_BYTES = 1 << 20
_STDERR_TAIL = 400


class ProgramStartError(ProtocolError):
    """The program under test cannot start: it cannot be executed, or it exits before
    answering `hello`. A usage problem (a wrong command), not a verdict on conformance:
    `jumpvpn conformance` and `jumpvpn scenarios --cmd` exit 2 with this reason."""


def describe_field(response: JsonObject, field: str) -> str:
    """What `response[field]` is, without quoting it (`jumpvpn_core.errors.describe`), or
    "nothing" when the field is missing: a program's output may echo the request (session
    secrets, proofs), so messages name the field and the kind of value."""
    return describe(response[field]) if field in response else "nothing (field missing)"


class StdioSession:
    """One session inside the program, named by a handle."""

    def __init__(self, owner: StdioImplementation, handle: str) -> None:
        self._owner = owner
        self._handle = handle

    def step(self, event: Event) -> Outcome:
        """Send a step request; return the parsed outcome."""
        return self._owner.request({"op": "step", "session": self._handle,
                                    "event": event_to_data(event)}, with_effects=True)


class StdioImplementation:
    """An implementation behind a program's stdin/stdout (conformance protocol v1)."""

    def __init__(self, argv: Sequence[str], step_timeout_ms: int = 2_000) -> None:
        if not argv:
            raise ValueError("empty command")
        if step_timeout_ms <= 0:
            raise ValueError("step timeout must be positive")
        self.argv = list(argv)
        self.step_timeout_ms = step_timeout_ms
        self.name = " ".join(self.argv)
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._buffer = b""
        self._seq = 0
        self._sessions = 0
        self._failed: str | None = None
        self._exited = False

    # --- process management -------------------------------------------------------------

    def start(self) -> None:
        """Start the program and exchange `hello`.

        Raises `ProgramStartError` when the program cannot be executed or exits before
        answering `hello`; `ProtocolError` when it runs but answers `hello` wrongly (garbage,
        silence beyond the step timeout, another protocol version).
        """
        if self._proc is not None or self._failed is not None:
            raise ProtocolError(self._failed or "program already started")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 -- closed in close()
        try:
            self._proc = subprocess.Popen(  # noqa: S603 -- running the user's program is the point
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                start_new_session=True,
            )
        except OSError as exc:
            self._failed = f"cannot start program {self.argv[0]!r}: {exc.strerror or exc}"
            raise ProgramStartError(self._failed) from None
        try:
            hello = self._exchange({"op": "hello"})
        except ProtocolError as exc:
            if self._exited:
                raise ProgramStartError(f"program exited before answering hello: "
                                        f"{exc}") from None
            raise
        if hello.get("protocol") != PROTOCOL_VERSION:
            self._fail(f"hello: field 'protocol' must be {PROTOCOL_VERSION} (the driver's "
                       f"version), got {describe_field(hello, 'protocol')}")

    def close(self) -> None:
        """Say goodbye, then make sure the program and its process group are gone."""
        proc = self._proc
        if proc is not None:
            if self._failed is None and proc.poll() is None:
                try:
                    self._write({"v": PROTOCOL_VERSION, "op": "bye"})
                    assert proc.stdin is not None
                    proc.stdin.close()
                    proc.wait(timeout=1.0)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            self._kill()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2.0)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - _STDERR_TAIL))
            tail = self._stderr.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""
        return f"; stderr ends: {tail!r}" if tail else ""

    def _fail(self, reason: str) -> NoReturn:
        self._failed = reason
        self._kill()
        raise ProtocolError(reason)

    # --- one exchange -------------------------------------------------------------------

    def _write(self, message: JsonObject) -> None:
        proc = self._proc
        assert proc is not None
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        proc.stdin.flush()

    def _read_line(self) -> bytes:
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + self.step_timeout_ms / 1000
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                if len(self._buffer) > MAX_LINE_BYTES:
                    self._fail(f"response line longer than {MAX_LINE_BYTES} bytes")
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    self._fail(f"no response within {self.step_timeout_ms} ms "
                               "(program killed)")
                chunk = os.read(fd, 65536)
                if not chunk:
                    self._exited = True
                    status = proc.wait(timeout=2.0)
                    self._fail(f"program exited (status {status}) without answering"
                               f"{self._stderr_tail()}")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _exchange(self, request: JsonObject) -> JsonObject:
        if self._failed is not None:
            raise ProtocolError(f"program already failed: {self._failed}")
        if self._proc is None:
            raise ProtocolError("program not started")
        self._seq += 1
        message = {"v": PROTOCOL_VERSION, "seq": self._seq, **request}
        try:
            self._write(message)
        except OSError:
            self._exited = True
            status = self._proc.poll()
            self._fail(f"program exited (status {status}) before reading the request"
                       f"{self._stderr_tail()}")
        line = self._read_line()
        response: Any = None
        try:
            response = parse_json(line)
        except FormError:
            self._fail(f"response is not valid JSON ({len(line)} bytes)")
        if not isinstance(response, dict):
            self._fail(f"response is not a JSON object (got {describe(response)})")
        if response.get("v") != PROTOCOL_VERSION:
            self._fail(f"response field 'v' must be {PROTOCOL_VERSION}, "
                       f"got {describe_field(response, 'v')}")
        if response.get("seq") != self._seq:
            self._fail(f"response field 'seq' must be {self._seq}, "
                       f"got {describe_field(response, 'seq')}")
        if response.get("ok") is not True:
            if response.get("ok") is False:
                self._fail(f"program reported an error (field 'error': "
                           f"{describe_field(response, 'error')}; not shown, it may quote "
                           f"the request){self._stderr_tail()}")
            self._fail(f"response field 'ok' must be true or false, "
                       f"got {describe_field(response, 'ok')}")
        checked: JsonObject = response
        return checked

    def request(self, request: JsonObject, *, with_effects: bool) -> Outcome:
        """One create or step exchange, parsed into an `Outcome`."""
        response = self._exchange(request)
        phase_text = response.get("phase")
        if phase_text not in {p.value for p in Phase}:
            self._fail(f"response field 'phase' must be a phase name, "
                       f"got {describe_field(response, 'phase')}")
        version = response.get("state_version")
        if type(version) is not int or version < 0:
            self._fail(f"response field 'state_version' must be a non-negative integer, "
                       f"got {describe_field(response, 'state_version')}")
        effects = response.get("effects", [] if not with_effects else None)
        if not isinstance(effects, list) or not all(
                isinstance(e, dict) and isinstance(e.get("type"), str) for e in effects):
            self._fail("response field 'effects' must be a list of objects with a 'type'")
        return Outcome(Phase(str(phase_text)), version, tuple(effects))

    # --- Implementation -------------------------------------------------------------------

    def create_session(self, role: Role, session_id: bytes, secret: bytes, now_ms: int,
                       policy: Policy) -> tuple[StdioSession, Outcome]:
        """Create a session in the program (starting it on first use)."""
        if self._proc is None and self._failed is None:
            self.start()
        self._sessions += 1
        handle = f"s{self._sessions}"
        request = {**create_request(role, session_id, secret, now_ms, policy),
                   "session": handle}
        outcome = self.request(request, with_effects=False)
        return StdioSession(self, handle), outcome
