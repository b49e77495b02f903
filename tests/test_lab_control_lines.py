"""The lab control channel reads every line through the package's one JSON loader.

No namespaces are needed: `decode_line` is pure, and the controller's reader is driven
here by a stand-in process whose stdout is a list of lines.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from jumpvpn_core.errors import JumpVpnError
from jumpvpn_core.lab.control import Agent, AgentError, ControlLineError, decode_line

MARKER = "5ec2e75ec2e75ec2e75ec2e7"  # stands for a value no message may quote


@pytest.mark.parametrize("line", [
    b"", b"not json", b"[1, 2]", b"42", b'"text"', b"\xff\xfe",
    b"[" * 10_000 + b"]" * 10_000,  # deeper than the loader allows: no RecursionError
    b'{"id": ' + b"9" * 5_000 + b"}",  # past the int-digit bound: no ValueError
    b'{"id": NaN}', b'{"id": 1, "id": 2}',
    b'{"' + MARKER.encode() + b'": ',
])
def test_a_bad_line_is_a_typed_error_that_quotes_nothing(line: bytes) -> None:
    with pytest.raises(ControlLineError) as info:
        decode_line(line)
    assert isinstance(info.value, AgentError)
    assert isinstance(info.value, JumpVpnError)
    assert MARKER not in str(info.value)


def test_a_good_line_is_its_object() -> None:
    assert decode_line(b'{"id": 3, "ok": true, "port": 4000}\n') == {
        "id": 3, "ok": True, "port": 4000}


class _Stdout:
    def __init__(self, lines: list[bytes]) -> None:
        self._lines = lines

    async def readline(self) -> bytes:
        await asyncio.sleep(0)
        return self._lines.pop(0) if self._lines else b""


class _Stdin:
    def write(self, _data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass


class _Proc:
    def __init__(self, lines: list[bytes]) -> None:
        self.stdout = _Stdout(lines)
        self.stdin = _Stdin()
        self.returncode: int | None = None


def test_the_controller_skips_and_counts_bad_answers_and_still_matches_good_ones() -> None:
    async def scenario() -> dict[str, Any]:
        lines = [b"garbage\n", b"[1]\n", b'{"id": "1"}\n', b"[" * 5_000 + b"\n",
                 b'{"id": 1, "ok": true, "value": 7}\n']
        agent = Agent("client", "ns", _Proc(lines))  # type: ignore[arg-type]  # a stand-in process
        answer = await agent.call("status", timeout_s=5)
        assert agent.bad_lines == 3  # the string id is an object: unmatched, not bad
        return answer

    assert asyncio.run(scenario())["value"] == 7


def test_a_dead_agent_names_its_exit_status_and_the_end_of_its_log(tmp_path: Path) -> None:
    log = tmp_path / "cli.log"
    log.write_text("".join(f"line {n}\n" for n in range(40)) + "Traceback: boom\n")

    async def scenario() -> str:
        proc = _Proc([])
        agent = Agent("client", "ns", proc, log)  # type: ignore[arg-type]  # a stand-in process
        proc.returncode = -9
        with pytest.raises(AgentError) as caught:
            await agent.call("status", timeout_s=1)
        return str(caught.value)

    message = asyncio.run(scenario())
    assert message.startswith("client agent is not running (exit status -9); last lines")
    assert message.endswith("  | Traceback: boom")
    assert "  | line 29" in message  # the last 12 lines only
    assert "line 28" not in message


def test_a_dead_agent_without_a_readable_log_still_says_what_happened(tmp_path: Path) -> None:
    async def scenario() -> str:
        proc = _Proc([])
        missing = tmp_path / "missing.log"
        agent = Agent("client", "ns", proc, missing)  # type: ignore[arg-type]  # a stand-in process
        proc.returncode = 1
        with pytest.raises(AgentError) as caught:
            await agent.call("status", timeout_s=1)
        return str(caught.value)

    assert asyncio.run(scenario()) == "client agent is not running (exit status 1)"
